#!/usr/bin/env bash
# Install mlms_ir as a user does (a wheel, not editable, in a fresh venv outside the source tree)
# and run every verb once on the embedded model. Catches what an editable install hides: a
# package or data file the wheel leaves out (setup.py discovers packages; a hand-kept list once
# dropped mlms_ir.datasets and broke `evaluate`).
#
#   bash tools/check_wheel.sh            # PYTHON=python3.11 by default
#
# Exits non-zero on the first verb that fails or prints a traceback.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "check_wheel: building the wheel"
"$PYTHON" -m venv "$WORK/build"
"$WORK/build/bin/pip" install -q --upgrade pip setuptools wheel >/dev/null
# from a copy: a stale build/ folder in the checkout would fill the gaps of a bad package list
mkdir "$WORK/src"
(cd "$HERE" && tar --exclude=build --exclude=dist --exclude='*.egg-info' --exclude=__pycache__ --exclude=.venv \
    -cf - setup.py setup.cfg README.md mlms_ir backends converters zoo) | tar -xf - -C "$WORK/src"
"$WORK/build/bin/pip" wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src" >/dev/null 2>"$WORK/build.log" \
    || { cat "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/mlms_ir-*.whl)"
echo "check_wheel: $(basename "$WHEEL")"

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "${WHEEL}[datasets]" >/dev/null 2>"$WORK/pip.log" || { cat "$WORK/pip.log"; exit 1; }
PY="$WORK/venv/bin/python"
cd "$WORK"  # never import from the source tree

echo "check_wheel: importing every module of the installed package"
"$PY" - <<'EOF'
import importlib, pathlib, pkgutil, sys
import mlms_ir
root = pathlib.Path(mlms_ir.__file__).parent
assert "site-packages" in str(root), f"imported from {root}, not the installed wheel"
names = [m.name for m in pkgutil.walk_packages([str(root)], "mlms_ir.")]
for pkg in ("mlms_ir.datasets", "mlms_ir.backends", "mlms_ir.converters", "mlms_ir.zoo", "mlms_ir.passes.ops"):
    assert pkg in names, f"{pkg} is not installed"
for name in names:
    importlib.import_module(name)
for top in ("backends", "converters", "zoo"):
    assert importlib.util.find_spec(top) is None, f"the wheel installs a top-level '{top}'"
print(f"  {len(names)} modules import")
EOF

STORE="$WORK/store.db"
fail=0
verb() {
    # verb EXPECTED_STATUS ARGS...: run `mlms_ir ARGS`, check its exit status and that no traceback shows
    local want="$1"; shift
    local rc=0
    "$PY" -m mlms_ir "$@" >"$WORK/out.txt" 2>&1 || rc=$?
    if [ "$rc" -ne "$want" ] || grep -q "Traceback (most recent call last)" "$WORK/out.txt"; then
        echo "  FAIL (exit $rc, expected $want): mlms_ir $*"
        tail -20 "$WORK/out.txt" | sed 's/^/    /'
        fail=1
    else
        echo "  ok   mlms_ir $*"
    fi
}
cat >"$WORK/sweep.yaml" <<EOF
name: wheel-check
kind: run
models: [$("$PY" -c 'import mlms_ir.zoo as z; print(z.builtin_path())')]
backends: [ort]
batches: [1]
iterations: 3
warmup: 1
EOF

echo "check_wheel: every verb on the embedded model"
verb 0 version
verb 0 analyze --batch 1
verb 0 analyze --batch 1 --format json --output "$WORK/analysis.json"
verb 0 analyze --batch 1 --html "$WORK/analysis.html"
verb 0 analyze --html "$WORK/symbolic.html"
verb 0 analyze --solve "peak_activation_bytes<=1GiB"
verb 0 analyze --sweep-dim batch=1:64 --format json --output "$WORK/sweep.json"
verb 0 run --backends ort,reference --batch 1 --iters 3 --warmup 1 --store "$STORE"
verb 0 run --backends ort --batch 1 --iters 3 --warmup 1 --format json --output "$WORK/run.json" --store none
verb 0 profile --batch 1 --runs 2 --iters 3 --store "$STORE"
verb 0 diverge --backends ort,reference --batch 1 --store none
verb 0 evaluate --backends ort --limit 64 --store none
verb 0 report --runs "$WORK/run.json" --output "$WORK/report.html"
verb 0 sweep "$WORK/sweep.yaml" --store "$STORE"
verb 0 runs list --store "$STORE"
verb 0 datasets list
verb 0 zoo list
verb 0 backends
verb 0 devices
verb 0 ops
verb 2 analyze "$WORK/no-such-model.onnx"
[ "$fail" -eq 0 ] && echo "check_wheel: passed" || { echo "check_wheel: FAILED"; exit 1; }
