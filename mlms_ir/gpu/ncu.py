"""The process Nsight Compute profiles: ``python -m mlms_ir.gpu.ncu child SPEC.json``.

:func:`mlms_ir.gpu.ncu_run.run_counters` writes the spec and starts this module under ``ncu``. It
loads the model, prepares the torch backend on CUDA, warms up outside any counted range, then runs
once inside the NVTX range ``mlms_ir.counters`` with a range per graph node
(:meth:`~mlms_ir.backends.base.Session.nvtx_ranges`), and writes the GPU's name (or its error) to
the spec's result file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlms_ir.errors import MlmsIrError
from mlms_ir.gpu.ncu_command import check_cuda
from mlms_ir.gpu.ncu_metrics import COUNTERS_RANGE


def _child(spec_path: str) -> int:
    """What runs under ncu: load, prepare torch on CUDA, warm up, then one run inside the counted
    NVTX range with a range per node. Writes the GPU's name (or the error) to the spec's result file;
    prints nothing on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    result_path = Path(spec["result"])
    result: dict[str, Any] = {}

    def write() -> None:
        result_path.write_text(json.dumps(result))

    try:
        from mlms_ir.backends import registry
        from mlms_ir.inputs import load_feeds, random_feeds
        from mlms_ir.ir import load

        check_cuda()
        import torch

        dev = str(spec.get("cuda_device") or "cuda")
        index = int(dev.partition(":")[2] or 0)
        result.update(gpu=torch.cuda.get_device_name(index), torch=torch.__version__, cuda=torch.version.cuda,
                      capability=".".join(map(str, torch.cuda.get_device_capability(index))),
                      cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
                      matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32))
        graph = load(spec["model"], input_shapes=spec.get("input_shapes"), batch=spec.get("batch"), dims=spec.get("dims"))
        feeds = load_feeds(spec["inputs"]) if spec.get("inputs") else random_feeds(graph, int(spec.get("seed", 0)))
        with registry.get("torch").prepare(graph, dev, precision=spec.get("precision", "fp32")) as session:
            for _ in range(int(spec.get("warmup", 2))):
                session.run(feeds)
            session.synchronize()
            torch.cuda.nvtx.range_push(spec.get("range", COUNTERS_RANGE))
            try:
                with session.nvtx_ranges():
                    session.run(feeds)
                session.synchronize()
            finally:
                torch.cuda.nvtx.range_pop()
            result["unmapped"] = list(session.unmapped)
        result["ok"] = True
    except MlmsIrError as exc:
        result.update(error=str(exc), type=type(exc).__name__)
        write()
        print(f"mlms_ir: error: {exc}", file=sys.stderr)
        return 2
    write()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlms_ir.gpu.ncu child SPEC.json``: the process ncu profiles."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "child":
        print("usage: python -m mlms_ir.gpu.ncu child SPEC.json (started by mlms_ir.gpu.ncu_run.run_counters)", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("MLMS_IR_LOG", "WARNING").upper())
    return _child(args[1])


if __name__ == "__main__":
    sys.exit(main())
