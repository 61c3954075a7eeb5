"""The CUDA execution profile (mlms_ir.gpu.kernels), the execution-profile Chrome trace, the GPU
device table and profile_backend's CUDA path, all on the recorded trace
tests/data/torch_cuda_trace.json (hand-built in torch.profiler's CUDA layout; no GPU here).

Expected figures are derived by hand from that file (run 0, microseconds from the run's start):

    work            start  dur   launched at  node
    memcpy HtoD      16.0  1.6     8.0        -
    fill             29.0  1.3    23.5        -
    conv (xmma)      70.0  8.5    55.0        n0   host range 30..90
    add (bias)       80.0  2.2    76.0        n0
    relu            119.0  1.9   112.0        n1   host range 100..130
    gemm (nvjet)    192.0  3.1   180.0        n2   host range 140..210
    memcpy DtoH     231.0  1.4   225.0        -
"""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from rich.console import Console

from cuda_replay import ReplayBackend, conv_relu_gemm, recorded_traces
from mlms_ir.backends import registry
from mlms_ir.backends.base import TraceResult
from mlms_ir.errors import UnknownDeviceError
from mlms_ir.gpu.kernels import gpu_profile, kernel_details
from mlms_ir.passes.roofline import known_devices, match_gpu, resolve_device
from mlms_ir.report.chrome_trace import chrome_trace
from mlms_ir.runner import node_kernels, profile_backend


@pytest.fixture(scope="module")
def traces() -> list[TraceResult]:
    return recorded_traces()


# ---------------------------------------------------------------------------------------------- per node / per run
def test_per_node_cuda_profile(traces):
    nodes, summary = gpu_profile(traces)
    assert set(nodes) == {"n0", "n1", "n2"}
    n0, n1, n2 = nodes["n0"], nodes["n1"], nodes["n2"]
    # kernel count and GPU time
    assert (n0.kernels, n1.kernels, n2.kernels) == (2, 1, 1)
    assert n0.gpu_us == pytest.approx(8.5 + 2.2) and n1.gpu_us == pytest.approx(1.9) and n2.gpu_us == pytest.approx(3.1)
    # launch overhead = host time of the node's range - its GPU time
    assert (n0.cpu_us, n1.cpu_us, n2.cpu_us) == pytest.approx((60.0, 30.0, 70.0))
    assert n0.launch_overhead_us == pytest.approx(60.0 - 10.7)
    assert n2.launch_overhead_us == pytest.approx(70.0 - 3.1)
    # idle gaps right before each of a node's kernels: conv after the fill ended at 30.3, the bias
    # add after the conv ended at 78.5; relu after 82.2; gemm after 120.9
    assert n0.idle_us == pytest.approx((70.0 - 30.3) + (80.0 - 78.5))
    assert n1.idle_us == pytest.approx(119.0 - 82.2)
    assert n2.idle_us == pytest.approx(192.0 - 120.9)
    # launch call start -> kernel start
    assert n0.launch_latency_us == pytest.approx(((70 - 55) + (80 - 76)) / 2)
    assert n2.launch_latency_us == pytest.approx(12.0)
    # the run: 20 us of work, from 0 to the DtoH copy's end at 232.4
    assert summary.runs == 2 and summary.kernels == 7
    assert summary.busy_us == pytest.approx(20.0)
    assert summary.span_us == pytest.approx(232.4) and summary.idle_us == pytest.approx(212.4)
    assert summary.wall_us == pytest.approx(400.0) and summary.utilization == pytest.approx(0.05)
    assert summary.memory_us == pytest.approx(1.6 + 1.4)
    lat = [8.0, 5.5, 15.0, 4.0, 7.0, 12.0, 6.0]
    assert summary.launch_latency_us == pytest.approx(sum(lat) / len(lat))
    assert summary.streams == ["cuda:0 stream 7"]
    json.dumps(summary.to_dict()), json.dumps(n0.to_dict())


def test_idle_is_measured_per_device_across_streams():
    """Work overlapping on two streams of one device leaves no idle gap; a second device keeps its own clock."""
    from mlms_ir.backends.base import NodeTrace

    def k(start, dur, node, track):
        return NodeTrace("k", "", start, dur, [node] if node else [], track=track, kind="kernel", args={"category": "kernel"})

    events = [
        k(10.0, 10.0, "n0", "cuda:0 stream 7"),
        k(12.0, 4.0, "n1", "cuda:0 stream 9"),    # inside n0's kernel: no gap, no extra busy time
        k(25.0, 5.0, "n2", "cuda:0 stream 7"),    # 5 us after the device went idle at 20
        k(3.0, 2.0, "n3", "cuda:1 stream 7"),     # its own device: idle from 0 to 3
    ]
    nodes, s = gpu_profile([TraceResult({}, events, 50.0)])
    assert nodes["n0"].idle_us == 10.0 and nodes["n1"].idle_us == 0.0 and nodes["n2"].idle_us == 5.0
    assert nodes["n3"].idle_us == 3.0
    # the run's figures are the busiest device's; each device keeps its own
    assert s.device == "cuda:0" and s.busy_us == pytest.approx(10 + 5) and s.span_us == 30.0 and s.idle_us == 15.0
    assert s.utilization == pytest.approx(15 / 50)
    assert s.devices["cuda:1"] == pytest.approx({"busy_us": 2.0, "span_us": 5.0, "idle_us": 3.0, "utilization": 2 / 50})
    assert nodes["n0"].cpu_us is None and nodes["n0"].launch_overhead_us is None  # no host range traced
    assert nodes["n0"].launch_latency_us is None and s.launch_latency_us is None


def test_cpu_traces_have_no_cuda_profile():
    from mlms_ir.backends.base import NodeTrace

    assert gpu_profile([TraceResult({}, [NodeTrace("Conv", "Conv", 0, 5.0, ["n0"])], 6.0)]) == ({}, None)
    assert gpu_profile([]) == ({}, None)


def test_kernel_launch_configuration_per_node(traces):
    kernels = node_kernels(traces)
    conv, add = kernels["n0"]
    assert conv["name"].startswith("sm90_xmma_fprop") and conv["time_us"] == pytest.approx(8.5) and conv["calls"] == 1
    assert conv["grid"] == [4, 1, 1] and conv["block"] == [384, 1, 1]
    assert conv["registers_per_thread"] == 168 and conv["shared_memory"] == 196608
    assert conv["occupancy_pct"] == 1 and conv["stream"] == 7 and conv["category"] == "kernel"
    assert add["grid"] == [32, 1, 1] and add["registers_per_thread"] == 26
    assert kernel_details({"grid": [1, 1, 1], "correlation": 5, "launch_us": 3.0}) == {"grid": [1, 1, 1]}


def test_kernel_events_carry_their_launch(traces):
    conv = next(e for e in traces[0].events if e.kind == "kernel" and e.covers == ["n0"])
    assert conv.args["launch_us"] == pytest.approx(55.0) and conv.args["launch_dur_us"] == pytest.approx(6.0)
    assert conv.args["launch_call"] == "cudaLaunchKernel"
    gemm = next(e for e in traces[0].events if e.kind == "kernel" and e.covers == ["n2"])
    assert gemm.args["launch_call"] == "cuLaunchKernelEx"


# ---------------------------------------------------------------------------------------------- timeline
def test_execution_profile_chrome_trace(traces):
    names = {"n0": "/conv/Conv", "n1": "/relu/Relu", "n2": "/fc/Gemm"}
    ct = chrome_trace(traces, names, "torch:cuda")
    json.dumps(ct)
    evs = ct["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in evs if e.get("name") == "thread_name"}
    assert set(threads.values()) == {"runs", "cpu", "cuda:0 stream 7"}
    cpu = next(t for t, n in threads.items() if n == "cpu")
    stream = next(t for t, n in threads.items() if n == "cuda:0 stream 7")
    # node ranges on the host track, kernels on their stream, named after the graph
    slices = [e for e in evs if e.get("ph") == "X"]
    host_nodes = [e for e in slices if e["cat"] == "node"]
    assert [e["name"] for e in host_nodes[:3]] == ["/conv/Conv", "/relu/Relu", "/fc/Gemm"] and {e["tid"] for e in host_nodes} == {cpu}
    kernels = [e for e in slices if e["cat"] == "kernel"]
    assert len(kernels) == 14 and {e["tid"] for e in kernels} == {stream}
    conv = next(e for e in kernels if e["args"]["covers"] == ["n0"])
    assert conv["name"] == "/conv/Conv" and conv["args"]["backend_name"].startswith("sm90_xmma")
    assert conv["args"]["grid"] == [4, 1, 1] and conv["args"]["registers_per_thread"] == 168
    # one launch slice per kernel on the host track, nested in its node's range, and a flow to the kernel
    launches = [e for e in slices if e["cat"] == "launch"]
    assert len(launches) == 14 and {e["tid"] for e in launches} == {cpu}
    conv_launch = next(e for e in launches if e["args"]["covers"] == ["n0"])
    assert conv_launch["name"] == "cudaLaunchKernel" and conv_launch["ts"] == pytest.approx(55.0) and conv_launch["dur"] == 6.0
    conv_node = host_nodes[0]
    assert conv_node["ts"] <= conv_launch["ts"] and conv_launch["ts"] + conv_launch["dur"] <= conv_node["ts"] + conv_node["dur"]
    starts = {e["id"]: e for e in evs if e.get("ph") == "s"}
    ends = {e["id"]: e for e in evs if e.get("ph") == "f"}
    assert set(starts) == set(ends) and len(starts) == 14
    for i, s in starts.items():
        f = ends[i]
        assert s["tid"] == cpu and f["tid"] == stream and f["bp"] == "e" and f["ts"] > s["ts"]
    # run 1 is laid after run 0
    assert max(e["ts"] for e in kernels) > 400.0


# ---------------------------------------------------------------------------------------------- device table
@pytest.mark.parametrize("name, entry", [
    ("NVIDIA H200", "h200"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA A10", "a10"),
    ("Tesla V100-SXM2-32GB", "v100"),
    ("Tesla T4", "t4"),
    ("NVIDIA L4", "l4"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"),
    ("Orin (nvgpu)", "jetson-agx-orin"),
    ("NVIDIA Jetson Orin Nano", "jetson-orin-nano"),
])
def test_gpu_names_match_the_device_table(name, entry):
    assert match_gpu(name).name == entry


def test_unknown_gpu_names_match_nothing():
    assert match_gpu("NVIDIA GeForce GTX 1080") is None
    assert match_gpu("") is None and match_gpu(None) is None


def test_user_devices_extend_the_table(tmp_path, monkeypatch):
    f = tmp_path / "devices.json"
    f.write_text(json.dumps({"my-gpu": {"description": "lab GPU", "peak_flops": {"fp32": 2e13, "fp16": 1.6e14},
                                        "bandwidth_bytes_per_s": 1e12, "match": "GTX 1080"},
                             "H200": {"peak_flops": {"fp32": 1e13}, "bandwidth_bytes_per_s": 1e12}}))
    monkeypatch.setenv("MLMS_IR_DEVICES", str(f))
    table = known_devices()
    assert table["my-gpu"].peak("fp16") == 1.6e14 and table["h200"].peak_flops == {"fp32": 1e13}  # replaced, by lower-case name
    assert match_gpu("NVIDIA GeForce GTX 1080").name == "my-gpu"
    assert resolve_device("my-gpu").bandwidth_bytes_per_s == 1e12
    f.write_text("{not json")
    with pytest.raises(UnknownDeviceError, match="MLMS_IR_DEVICES"):
        known_devices()
    f.write_text(json.dumps({"bad": {"peak_flops": {"fp16": 1}, "bandwidth_bytes_per_s": 1}}))
    with pytest.raises(UnknownDeviceError, match="'bad' needs a positive 'fp32'"):
        known_devices()


# ---------------------------------------------------------------------------------------------- profile on "CUDA"
def test_profile_backend_on_cuda_fills_the_execution_profile(traces, monkeypatch, tmp_path):
    from mlms_ir import system

    monkeypatch.setitem(registry._cache, "replay", ReplayBackend(traces))
    monkeypatch.setattr(system, "gpu_facts", lambda: {"available": True, "gpus": [{"index": 0, "name": "NVIDIA H200"}]})
    path = tmp_path / "crg.onnx"
    onnx.save(conv_relu_gemm(), path)
    report, _ = profile_backend(str(path), "replay", device="cuda", runs=2, iterations=3, warmup=1, system=False)
    assert report.roofline_device == "h200"  # the GPU the run is on, from NVML's name
    by_id = {n.id: n for n in report.nodes}
    conv = by_id["n0"]
    assert conv.time_us == pytest.approx(10.7) and conv.kernel_count == 2
    assert conv.cpu_us == pytest.approx(60.0) and conv.launch_overhead_us == pytest.approx(49.3)
    assert conv.idle_us == pytest.approx(41.2) and conv.launch_latency_us == pytest.approx(9.5)
    assert conv.kernels[0]["grid"] == [4, 1, 1] and conv.bound in ("compute", "memory")
    assert by_id["n2"].kernel_count == 1  # the trace's n2 (here the Flatten) got the gemm kernel
    assert report.coverage == pytest.approx(0.785)
    gpu = report.gpu
    assert gpu["busy_us"] == pytest.approx(20.0) and gpu["utilization"] == pytest.approx(0.05)
    assert gpu["telemetry"]["available"] in (True, False)  # NVML here or not: reported either way
    d = report.to_dict()
    json.dumps(d)
    assert d["gpu"]["kernels"] == 7 and d["nodes"][0]["kernel_count"] is not None
    # the table shows the CUDA columns and the GPU line
    from mlms_ir.report.run_text import render_profile

    buf = io.StringIO()
    render_profile(report, console=Console(file=buf, width=250, color_system=None))
    text = buf.getvalue()
    assert "launch overhead" in text and "GPU idle before" in text and "7 kernels per run on 1 stream(s)" in text
    assert "utilisation 5.0%" in text


def test_profile_on_cpu_has_no_cuda_fields(tmp_path):
    path = tmp_path / "crg.onnx"
    onnx.save(conv_relu_gemm(), path)
    report, _ = profile_backend(str(path), "ort", runs=2, iterations=3, warmup=1, system=False)
    assert report.gpu is None and report.roofline_device is None
    assert all(n.kernel_count is None and n.launch_overhead_us is None for n in report.nodes)


def test_one_launch_slice_per_launch_call():
    """A CUDA graph launch starts several kernels: one host slice, one flow arrow per kernel."""
    from mlms_ir.backends.base import NodeTrace

    def k(start, node):
        return NodeTrace("k", "", start, 2.0, [node], track="cuda:0 stream 7", kind="kernel",
                         args={"category": "kernel", "launch_us": 5.0, "launch_dur_us": 3.0, "launch_call": "cudaGraphLaunch"})

    ct = chrome_trace([TraceResult({}, [k(10.0, "n0"), k(12.0, "n1"), k(14.0, "n2")], 20.0)], {}, "torch:cuda")
    evs = ct["traceEvents"]
    assert [e["name"] for e in evs if e.get("ph") == "X" and e["cat"] == "launch"] == ["cudaGraphLaunch"]
    assert len([e for e in evs if e.get("ph") == "s"]) == 3 and len([e for e in evs if e.get("ph") == "f"]) == 3


def test_kernels_without_launch_records_get_no_flow():
    from mlms_ir.backends.base import NodeTrace

    ev = NodeTrace("k", "", 1.0, 2.0, [], track="cuda:0 stream 7", kind="kernel", args={"category": "kernel"})
    ct = chrome_trace([TraceResult({}, [ev], 5.0)], {}, "torch:cuda")
    assert not [e for e in ct["traceEvents"] if e.get("cat") == "launch"]


def test_device_table_ties_and_bad_patterns(tmp_path, monkeypatch):
    assert match_gpu("NVIDIA GH200 480GB") is None  # not an H200
    assert match_gpu("NVIDIA A100-PCIE-40GB").name == "a100-40gb" and match_gpu("NVIDIA A100-SXM4-80GB").name == "a100"
    f = tmp_path / "devices.json"
    f.write_text(json.dumps({"my-h200": {"peak_flops": {"fp32": 1e13}, "bandwidth_bytes_per_s": 1e12, "match": "H200"}}))
    monkeypatch.setenv("MLMS_IR_DEVICES", str(f))
    assert match_gpu("NVIDIA H200").name == "my-h200"  # yours wins a tie with the built-in entry
    f.write_text(json.dumps({"bad": {"peak_flops": {"fp32": 1e13}, "bandwidth_bytes_per_s": 1e12, "match": "H200("}}))
    with pytest.raises(UnknownDeviceError, match="'match' is not a regular expression"):
        match_gpu("NVIDIA H200")


def test_nvml_telemetry_of_the_run_gpu_is_shown(traces, monkeypatch, tmp_path):
    from mlms_ir.report.run_text import render_profile

    monkeypatch.setitem(registry._cache, "replay", ReplayBackend(traces))
    path = tmp_path / "crg.onnx"
    onnx.save(conv_relu_gemm(), path)
    report, _ = profile_backend(str(path), "replay", device="cuda", runs=2, iterations=3, warmup=1, system=False,
                                roofline_device="h200")

    def figs(sm, mem, power):
        def c(v):
            return {"min": v, "mean": v, "max": v}
        return {"sm_clock_mhz": c(sm), "mem_clock_mhz": c(mem), "power_w": c(power), "temperature_c": c(40),
                "gpu_utilization_pct": c(90), "memory_used_bytes": c(2**30), "memory_utilization_pct": c(10)}

    report.gpu["telemetry"] = {"available": True, "reason": "", "gpus": [{"index": 0, "samples": 4, **figs(1100, 2600, 100)},
                                                                         {"index": 1, "samples": 4, **figs(1980, 3201, 650)}]}
    report.gpu["telemetry_gpu"] = 1

    def text() -> str:
        buf = io.StringIO()
        render_profile(report, console=Console(file=buf, width=250, color_system=None))
        return buf.getvalue()

    out = text()
    assert "NVML GPU 1 (timed runs, mean)" in out and "1980 MHz SM, 3201 MHz memory, 650 W, 40 °C, 90 % busy, 1024 MiB used" in out
    report.gpu["telemetry_gpu"] = None  # several GPUs and no way to know which ran it: say so, show none
    assert "2 GPUs sampled; which one ran this is unknown" in text()
    report.gpu["telemetry"] = {"available": False, "reason": "NVML is unavailable: no driver"}
    assert "unavailable: NVML is unavailable: no driver" in text()


def test_nvtx_ranges_wrap_every_node(monkeypatch):
    """NVTX push/pop pairs named after the nodes, balanced, on a CUDA session; refused on the CPU."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx2torch")
    import mlms_ir
    from mlms_ir.backends.base import BackendError

    graph = mlms_ir.load(conv_relu_gemm())
    feeds = {"x": np.zeros((1, 3, 4, 4), np.float32)}
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda name: calls.append("push " + name))
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: calls.append("pop"))
    with registry.get("torch").prepare(graph, "cpu") as s:
        with pytest.raises(BackendError, match="NVTX ranges need the torch backend on a CUDA device"):
            with s.nvtx_ranges():
                pass
        with s._ranges(profiler=False, nvtx=True):
            s.run(feeds)
        assert calls == [c for nid in ("n0", "n1", "n2", "n3") for c in (f"push mlms_ir::{nid}", "pop")]
        calls.clear()
        s.run(feeds)  # plain runs carry no range
        assert calls == []


def test_figures_are_medians_over_runs():
    """Three runs, the conv kernel slower in one: per-node GPU time and idle are medians, kernels a mean."""
    import copy
    from pathlib import Path

    from mlms_ir.backends.torch_trace import split_trace

    trace = json.loads((Path(__file__).parent / "data" / "torch_cuda_trace.json").read_text())
    runs = [TraceResult({}, evs, wall) for evs, wall in split_trace(trace, {"n0": "Conv"})]
    slow = copy.deepcopy(runs[1])
    for ev in slow.events:
        if ev.kind == "kernel" and ev.name.startswith("sm90_xmma"):
            ev.time_us = 20.5  # 12 us longer (only the node's summed kernel time matters here)
    nodes, summary = gpu_profile([runs[0], slow, runs[1]])
    assert nodes["n0"].gpu_us == pytest.approx(10.7)  # median of 10.7, 22.7, 10.7
    nodes2, _ = gpu_profile([slow, slow, runs[0]])
    assert nodes2["n0"].gpu_us == pytest.approx(22.7)
    assert nodes["n0"].kernels == 2 and summary.runs == 3
