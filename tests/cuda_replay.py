"""A recorded CUDA profile replayed through a fake backend, for tests of the CUDA paths without a
GPU: tests/data/torch_cuda_trace.json (hand-built in torch.profiler's CUDA layout: two runs of a
Conv -> Relu -> Gemm model, nodes n0, n1, n2) and a small model whose first nodes carry those ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from mlms_ir.backends.base import Availability, Backend, Session, TraceResult
from mlms_ir.backends.torch_trace import split_trace
from onnx import TensorProto, helper, numpy_helper

DATA = Path(__file__).parent / "data"
OPS = {"n0": "Conv", "n1": "Relu", "n2": "Gemm"}


def recorded_traces() -> list[TraceResult]:
    """The recorded trace cut into its two runs, as the torch backend's traced session returns them."""
    trace = json.loads((DATA / "torch_cuda_trace.json").read_text())
    return [TraceResult(outputs={}, events=evs, wall_us=wall) for evs, wall in split_trace(trace, OPS)]


def conv_relu_gemm() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    N = helper.make_node
    inits = [numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "fc")]
    nodes = [N("Conv", ["x", "w"], ["c"], name="/conv/Conv"), N("Relu", ["c"], ["r"], name="/relu/Relu"),
             N("Flatten", ["r"], ["f"], name="/flatten/Flatten"), N("Gemm", ["f", "fc"], ["y"], name="/fc/Gemm", transB=1)]
    g = helper.make_graph(nodes, "crg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


class ReplaySession(Session):
    """Runs nothing; its traced runs are the recorded CUDA trace."""

    def __init__(self, graph, device, traces):
        super().__init__("replay", device, graph)
        self._traces = traces

    def _run_impl(self, feeds):
        return {"y": np.zeros((1, 4), np.float32)}

    def _trace_impl(self, feeds, runs):
        return [TraceResult({"y": np.zeros((1, 4), np.float32)}, list(t.events), t.wall_us) for t in self._traces][:runs]


class ReplayBackend(Backend):
    name = "replay"
    devices = ("cpu", "cuda")

    def __init__(self, traces):
        self._traces = traces

    def _available_impl(self, device, **options):
        return Availability(True)

    def _prepare_impl(self, graph, device, **options):
        return ReplaySession(graph, device, self._traces)


