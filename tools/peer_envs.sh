#!/usr/bin/env bash
# Create a separate virtualenv holding the "peer" ONNX analysis tools that
# mlms_ir is benchmarked against:
#   * onnx-tool==1.0.1  (python -m onnx_tool -i MODEL -m profile)
#   * onnxsim==0.8.1    (onnxsim.model_info.ModelInfo)
#
# torch is deliberately NOT installed: onnxsim imports it when present, which
# would add seconds and hundreds of MB to every measurement.
#
# Usage:  bash tools/peer_envs.sh            # venv at ${PEERS_VENV:-/tmp/mlms_peers}
#         PEERS_VENV=/some/dir bash tools/peer_envs.sh
#         PYTHON=python3.11 bash tools/peer_envs.sh
#
# Also installs GNU time (/usr/bin/time, used with -v for max RSS) via apt-get
# when it is missing and we are root.
set -euo pipefail

PEERS_VENV="${PEERS_VENV:-/tmp/mlms_peers}"
PYTHON="${PYTHON:-python3}"
ONNX_TOOL_VERSION="${ONNX_TOOL_VERSION:-1.0.1}"
ONNXSIM_VERSION="${ONNXSIM_VERSION:-0.8.1}"

if [ ! -x "$PEERS_VENV/bin/python" ]; then
    echo "creating venv $PEERS_VENV"
    "$PYTHON" -m venv "$PEERS_VENV"
fi
VPY="$PEERS_VENV/bin/python"

"$VPY" -m pip install --quiet --upgrade pip
# numpy/tabulate/onnx are onnx-tool's requirements; onnxsim only declares onnx
# but its model_info imports numpy.  No extras (they pull torch/transformers).
# ml_dtypes<0.7 as mlms_ir's own install has it: 0.7.0 takes ~1 s to import (onnx imports it),
# which would slow every peer run by as much and flatter mlms_ir in the comparison.
"$VPY" -m pip install --quiet \
    "onnx-tool==${ONNX_TOOL_VERSION}" \
    "onnxsim==${ONNXSIM_VERSION}" \
    "ml_dtypes<0.7" numpy tabulate

if "$VPY" -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)"; then
    echo "ERROR: torch is installed in $PEERS_VENV; onnxsim would import it." >&2
    echo "       remove it: $VPY -m pip uninstall -y torch" >&2
    exit 1
fi

# Smoke test: both entry points the benchmark uses must import.
"$VPY" - <<'EOF'
import importlib.metadata as md
import onnx, onnx_tool
from onnxsim.model_info import ModelInfo  # noqa: F401
for p in ("onnx", "onnx-tool", "onnxsim", "numpy", "ml_dtypes"):
    print(f"{p}=={md.version(p)}")
EOF

if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq time
    else
        echo "WARNING: /usr/bin/time (GNU time) missing; install package 'time'." >&2
    fi
fi

echo "peer venv ready: $PEERS_VENV"
