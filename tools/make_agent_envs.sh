#!/usr/bin/env bash
# Create the framework-agent environments used by the worker backends
# (mlms_ir.backends.worker): each framework that cannot share an environment
# with the core gets its own virtualenv, and backends/agent.py runs inside it.
#
#   mxnet    mxnet==1.9.1, numpy<1.24 (1.23.5), onnx==1.18.0
#   onnx-tf  tensorflow-cpu==2.15.1, tensorflow-addons==0.23.0,
#            tensorflow-probability==0.23.0, onnx-tf==1.10.0, onnx==1.18.0, numpy<2
#
# The envs live at ${MLMS_IR_ENVS:-${MLMS_IR_CACHE:-$HOME/.cache/mlms_ir}/envs}/<name>
# (mlms_ir.backends.worker.envs_dir), which is where the mxnet and onnx-tf
# backends look when no python=PATH option and no MLMS_IR_MXNET_PYTHON /
# MLMS_IR_ONNX_TF_PYTHON variable is given.
#
# Usage:  bash tools/make_agent_envs.sh              # both envs
#         bash tools/make_agent_envs.sh mxnet        # only one
#         PYTHON=python3.11 MLMS_IR_ENVS=/some/dir bash tools/make_agent_envs.sh
#         MLMS_IR_CACHE=/big/disk bash tools/make_agent_envs.sh   # envs in /big/disk/envs
#         FORCE=1 bash tools/make_agent_envs.sh      # rebuild even when the probe passes
#
# Idempotent: an env whose probe (the agent's own "probe" request) already
# passes is skipped. Exits non-zero when an env cannot be made to pass it.
set -euo pipefail

CACHE="${MLMS_IR_CACHE:-$HOME/.cache/mlms_ir}"
CACHE="${CACHE/#\~/$HOME}"  # a leading ~ as mlms_ir expands it (Path.expanduser)
ENVS="${MLMS_IR_ENVS:-$CACHE/envs}"
ENVS="${ENVS/#\~/$HOME}"
PYTHON="${PYTHON:-python3.11}"
FORCE="${FORCE:-0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AGENT="$HERE/../backends/agent.py"

requirements() {
    case "$1" in
        # mxnet 1.9.1 needs numpy<1.24 (np.bool, np.PZERO); onnx<=1.18 keeps onnx.mapping,
        # which mxnet's ONNX importer imports.
        mxnet) echo 'mxnet==1.9.1 numpy==1.23.5 onnx==1.18.0' ;;
        # tensorflow-probability is needed by onnx-tf but not declared; onnx>=1.19 drops
        # onnx.mapping (which onnx-tf imports); tensorflow 2.15 needs numpy<2.
        onnx-tf) echo 'tensorflow-cpu==2.15.1 tensorflow-addons==0.23.0 tensorflow-probability==0.23.0 onnx-tf==1.10.0 onnx==1.18.0 numpy<2' ;;
        *) echo "unknown env '$1' (known: mxnet onnx-tf)" >&2; return 1 ;;
    esac
}

# The agent's probe: imports the framework and writes a result JSON; prints the versions,
# exits 0 iff the status is ok.
probe() {
    local name="$1" py="$ENVS/$1/bin/python"
    [ -x "$py" ] || return 1
    local tmp rc
    tmp="$(mktemp -d)"
    printf '{"protocol": 1, "framework": "probe", "target": "%s", "result": "%s/result.json"}' "$name" "$tmp" > "$tmp/request.json"
    rc=0
    timeout 120 "$py" "$AGENT" "$tmp/request.json" >"$tmp/out" 2>&1 || rc=$?
    if [ "$rc" = 0 ] && "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   ", r.get("framework_version"), "python", r.get("python"), "numpy", r.get("numpy_version")); sys.exit(r.get("status") != "ok")' "$tmp/result.json" 2>/dev/null; then
        rm -rf "$tmp"
        return 0
    fi
    if [ -f "$tmp/result.json" ]; then
        echo "    probe: $(cat "$tmp/result.json")" >&2
    else
        echo "    probe failed (exit $rc): $(tail -n 5 "$tmp/out")" >&2
    fi
    rm -rf "$tmp"
    return 1
}

# pip, quiet, less the warnings about local index folders that this machine's pip config names
quiet_pip() {
    local py="$1"
    shift
    "$py" -m pip --quiet "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2)
}

make_env() {
    local name="$1" dir="$ENVS/$1" reqs
    reqs="$(requirements "$name")" || return 1
    local found
    if [ "$FORCE" != 1 ] && found="$(probe "$name" 2>/dev/null)"; then
        echo "[$name] ok already at $dir (skipped; FORCE=1 rebuilds)"
        echo "$found"
        return 0
    fi
    local start=$SECONDS
    echo "[$name] creating $dir with $PYTHON"
    mkdir -p "$ENVS"
    if [ "$FORCE" = 1 ] || [ ! -x "$dir/bin/python" ]; then
        rm -rf "$dir"
        "$PYTHON" -m venv "$dir"
    fi
    quiet_pip "$dir/bin/python" install --upgrade pip
    echo "[$name] pip install $reqs"
    # shellcheck disable=SC2086 - the requirement list is split on purpose
    quiet_pip "$dir/bin/python" install $reqs
    if ! probe "$name"; then
        echo "[$name] FAILED: the env was built but the agent's probe does not pass" >&2
        return 1
    fi
    echo "[$name] ready in $((SECONDS - start)) s, $(du -sh "$dir" | cut -f1)"
}

if [ ! -f "$AGENT" ]; then
    echo "cannot find the agent script at $AGENT" >&2
    exit 1
fi
if ! command -v "$PYTHON" >/dev/null; then
    echo "no $PYTHON here: set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mxnet onnx-tf)
for n in "${names[@]}"; do
    requirements "$n" >/dev/null || exit 2
done
total=$SECONDS
failed=0
for n in "${names[@]}"; do
    make_env "$n" || failed=1
done
echo "done in $((SECONDS - total)) s; envs under $ENVS"
exit "$failed"
