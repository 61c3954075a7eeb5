#!/usr/bin/env bash
# GPU checks for mlms_ir, for a machine with an NVIDIA GPU and PyTorch with CUDA already installed
# (such as the project's H200 device machine). Uses the repository in place (no install).
# Missing pure-Python dependencies can travel as wheels in .whl/ (see the device tool's README):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl fire rich networkx onnx2torch
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlms_site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/mlms_site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi not found"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
PYTHONUNBUFFERED=1 $PY tools/gpu_check.py "$@"
