"""Backends on a GPU: these run where a device (and the backend's extra) exists and skip with the
reason elsewhere, so they are ready for tools/gpu_check.sh's machine and for TensorRT hosts."""

from __future__ import annotations

import numpy as np
import pytest

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.inputs import random_feeds
from mlms_ir.runner import aggregate

from test_backends import conv_net


def _need(name: str, device: str):
    be = registry.get(name)
    avail = be.available(device)
    if not avail:
        pytest.skip(f"{name} on {device}: {avail.reason}")
    return be


@pytest.fixture
def graph():
    return mlms_ir.load(conv_net(), batch=4)


def _reference(graph, feeds):
    with registry.get("ort").prepare(graph, "cpu") as s:
        return s.run(feeds)


@pytest.mark.parametrize("name, device", [("ort", "cuda"), ("ort", "tensorrt"), ("torch", "cuda"), ("tensorrt", "cuda")])
def test_gpu_backend_matches_the_cpu(graph, name, device):
    be = _need(name, device)
    feeds = random_feeds(graph)
    with be.prepare(graph, device) as s:
        out = s.run(feeds)
        stats, _ = s.measure(feeds, warmup=2, iterations=5)
    np.testing.assert_allclose(out["y"], _reference(graph, feeds)["y"], rtol=1e-2, atol=1e-3)  # TF32 and fused kernels
    assert stats.iterations == 5


@pytest.mark.parametrize("name", ["torch", "tensorrt"])
def test_gpu_kernels_are_attributed_to_nodes(graph, name):
    be = _need(name, "cuda")
    with be.prepare(graph, "cuda") as s:
        traces = s.trace(random_feeds(graph), runs=3)
    flops = {n.id: n.flops or 0 for n in mlms_ir.analyze(graph).nodes}
    times, _, coverage, _ = aggregate(traces, graph, flops)
    assert coverage >= 0.9
    assert {"n0", "n2", "n8"} <= set(times)  # both convolutions and the Gemm ran on the device
