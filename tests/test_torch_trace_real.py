"""The torch backend's Chrome-trace parsing on REAL profiler output (tests/data/torch_cuda_trace_real.json),
beside the hand-built tests/data/torch_cuda_trace.json the other tests use. Its "mlms_ir_fixture" key says
where each trace comes from and what was changed:

* ``torch_2_14_cpu``: torch 2.14.1 (Kineto's C++ writer, the default export path) recorded here by
  ``TorchSession.trace`` on CPU: the host side of a traced session (run and node ranges, cpu ops);
* ``kineto_v100_2024``: a torch 2.x trace from a V100 (CUDA activity only): runtime and driver launches,
  kernels, memcpys, flows, and a CUPTI thread id Kineto did not map to the system thread id;
* ``kineto_h100_2026``: libkineto's own writer in 2026 (CUPTI 28, CUDA driver 13000): kernel args with
  ``graph id``/``graph node id``, ``cuda_sync`` events, a kernel without ``External id``;
* ``hta_a100_2022``: a pre-2.0 excerpt: a range on the main thread, the launch on the autograd thread.

No trace in reach had CUDA launches inside record_function ranges, so attribution *into* node ranges
on real device events is not covered here (tests/test_torch_backend.py covers it on the hand-built trace).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mlms_ir.backends.base import TraceResult
from mlms_ir.backends.torch_trace import (
    DEVICE_CATS,
    HOST_CATS,
    LAUNCH_CATS,
    NODE_PREFIX,
    RUN_PREFIX,
    attribute_kernels,
    find_device_work,
    kernel_coverage,
    split_trace,
    trace_events,
)
from mlms_ir.gpu.kernels import gpu_profile, kernel_details

DATA = Path(__file__).parent / "data"
OPS = {"n0": "Conv", "n1": "Relu", "n2": "Flatten", "n3": "Gemm"}


@pytest.fixture(scope="module")
def real() -> dict:
    return json.loads((DATA / "torch_cuda_trace_real.json").read_text())["traces"]


def test_fixture_names_its_sources():
    doc = json.loads((DATA / "torch_cuda_trace_real.json").read_text())["mlms_ir_fixture"]
    for source in ("torch 2.14.1", "agostini01/rms-norm-exercise", "pytorch/kineto", "HolisticTraceAnalysis"):
        assert source in doc


def test_categories_we_read_are_the_ones_real_traces_write(real):
    cats = {e.get("cat") for t in real.values() for e in t["traceEvents"] if e.get("ph") == "X"}
    assert cats == {"cpu_op", "user_annotation", "cuda_runtime", "cuda_driver", "kernel", "gpu_memcpy", "cuda_sync", "Trace"}
    assert {"kernel", "gpu_memcpy"} <= DEVICE_CATS and LAUNCH_CATS == {"cuda_runtime", "cuda_driver"} <= cats
    assert HOST_CATS == {"cpu_op", "user_annotation"}
    flows = {(e["ph"], e["cat"]) for t in real.values() for e in t["traceEvents"] if e.get("ph") in ("s", "f")}
    assert flows == {("s", "ac2g"), ("f", "ac2g")}  # read by nobody: correlation ids link launches to work


# ---------------------------------------------------------------------------------------------- torch 2.14, host side
def test_torch_2_14_session_trace_splits_into_runs_and_nodes(real):
    trace = real["torch_2_14_cpu"]
    ranges = [e for e in trace_events(trace) if e["cat"] == "user_annotation"]
    assert [e["name"] for e in ranges] == [RUN_PREFIX + "0", *(NODE_PREFIX + n for n in OPS),
                                           RUN_PREFIX + "1", *(NODE_PREFIX + n for n in OPS)]
    assert all({"External id", "Record function id", "Ev Idx"} <= set(e["args"]) for e in ranges)
    assert len({(e["pid"], e["tid"]) for e in ranges}) == 1  # one thread: the caller's
    runs = split_trace(trace, OPS, {"n0": "/conv/Conv"})
    assert len(runs) == 2
    for (events, wall), run in zip(runs, [r for r in ranges if r["name"].startswith(RUN_PREFIX)]):
        assert wall == pytest.approx(run["dur"])
        assert [(e.kind, e.covers, e.op_type) for e in events] == [("node", [n], OPS[n]) for n in OPS]
        assert events[0].name == "/conv/Conv" and events[1].name == "n1"
        starts = [e.start_us for e in events]
        assert starts == sorted(starts) and 0 < starts[0] and all(e.start_us + e.time_us <= wall for e in events)
        assert all(e.args == {} for e in events)  # no device work on the CPU
    assert attribute_kernels(trace) == []


# ---------------------------------------------------------------------------------------------- V100, CUDA activity
def test_v100_kernels_memcpys_and_their_launches(real):
    trace = real["kineto_v100_2024"]
    ks = attribute_kernels(trace)
    assert [k.args["category"] for k in ks] == ["kernel", "gpu_memcpy", "kernel"] * 2
    assert all(k.kind == "kernel" and k.track == "cuda:0 stream 7" for k in ks)
    # times from the first event (the profiler's "Trace" span), durations as written
    assert [k.start_us for k in ks] == pytest.approx([307, 1233, 1511, 1678, 1826, 2069])
    assert [k.time_us for k in ks] == pytest.approx([98, 2, 102, 98, 2, 102])
    dist, copy_, rms = ks[:3]
    assert dist.args["grid"] == [640, 1, 1] and dist.args["block"] == [256, 1, 1]
    assert (dist.args["registers_per_thread"], dist.args["shared_memory"], dist.args["occupancy_pct"]) == (39, 0, 75)
    assert dist.args["blocks_per_sm"] == pytest.approx(8.0) and dist.args["warps_per_sm"] == pytest.approx(64.0)
    assert (dist.args["device"], dist.args["stream"], dist.args["correlation"]) == (0, 7, 66)
    assert kernel_details(dist.args) == {"grid": [640, 1, 1], "block": [256, 1, 1], "registers_per_thread": 39,
                                         "shared_memory": 0, "occupancy_pct": 75, "blocks_per_sm": 8.0,
                                         "warps_per_sm": 64.0, "stream": 7, "category": "kernel"}
    # the launch each one came from: runtime calls, and the driver call Triton launches with
    assert [k.args["launch_call"] for k in ks] == ["cudaLaunchKernel", "cudaMemcpyAsync", "cuLaunchKernel"] * 2
    assert dist.args["launch_us"] == pytest.approx(292) and dist.args["launch_dur_us"] == pytest.approx(19)
    assert rms.name == "rms_norm_0d1d2d3de4de5" and rms.args["launch_us"] == pytest.approx(1496)
    assert copy_.args["bytes"] == 16384 and copy_.args["bandwidth_gbs"] == pytest.approx(6.8267, abs=1e-4)
    # no node ranges in this trace, and "External id" is the call's own correlation id (Kineto of
    # that time): nothing may be attributed
    assert all(k.covers == [] and "attributed_by" not in k.args for k in ks)
    assert kernel_coverage(ks) == 0.0


def test_v100_run_profile(real):
    (events, wall), = split_trace(real["kineto_v100_2024"])  # no run ranges: the whole trace
    assert wall == pytest.approx(2202.0)
    assert [e.kind for e in events] == ["kernel"] * 6
    nodes, summary = gpu_profile([TraceResult({}, events, wall)])
    assert nodes == {}
    assert summary.kernels == 6 and summary.busy_us == pytest.approx(404.0) and summary.memory_us == pytest.approx(4.0)
    assert summary.span_us == pytest.approx(2069 + 102) and summary.idle_us == pytest.approx(2171 - 404)
    assert summary.launch_latency_us == pytest.approx(16.0)  # (15 + 18 + 15 + 15 + 18 + 15) / 6
    assert summary.streams == ["cuda:0 stream 7"] and summary.device == "cuda:0"


def test_v100_unmapped_launch_thread_falls_back_to_the_external_id(real):
    """Kineto writes a runtime call's tid as CUPTI's thread id unless it mapped that thread to its
    system id (here tid 81150400 in process 134579). Were the process's node ranges on its system
    thread, the launch would lie in none of its thread's ranges. The host events added below are
    SYNTHETIC, in the layout torch 2.14 writes (see torch_2_14_cpu); the launches' External ids name
    the innermost op, as Kineto has written them since late 2024."""
    trace = copy.deepcopy(real["kineto_v100_2024"])
    host = {"pid": 134579, "tid": 134579}
    trace["traceEvents"] += [
        {"ph": "X", "cat": "user_annotation", "name": NODE_PREFIX + "n0", **host, "ts": 1713773815813780, "dur": 40,
         "args": {"External id": 9001, "Record function id": 0, "Ev Idx": 0}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::normal_", **host, "ts": 1713773815813785, "dur": 30,
         "args": {"External id": 9002, "Record function id": 0, "Ev Idx": 1}},
        {"ph": "X", "cat": "user_annotation", "name": NODE_PREFIX + "n1", **host, "ts": 1713773815814990, "dur": 40,
         "args": {"External id": 9003, "Record function id": 0, "Ev Idx": 2}},
        {"ph": "X", "cat": "cpu_op", "name": "triton_rms_norm", **host, "ts": 1713773815814995, "dur": 30,
         "args": {"External id": 9004, "Record function id": 0, "Ev Idx": 3}},
    ]
    calls = {e["args"]["correlation"]: e for e in trace["traceEvents"] if e.get("cat") in LAUNCH_CATS}
    calls[66]["args"]["External id"] = 9002  # inside aten::normal_: n0
    calls[98]["args"]["External id"] = 9004  # inside triton_rms_norm: n1
    calls[115]["args"]["External id"] = 9002  # names aten::normal_, but the call lies far outside it
    work = {w.event["args"]["correlation"]: w for w in find_device_work(trace_events(trace))}
    assert (work[66].node, work[66].via) == ("n0", "external id")
    assert (work[98].node, work[98].via) == ("n1", "external id")
    assert (work[115].node, work[115].via) == (None, "")
    assert work[66].launch_ts == pytest.approx(1713773815813792)  # still the call's own start
    assert all(w.node is None for c, w in work.items() if c not in (66, 98))


# ---------------------------------------------------------------------------------------------- Kineto 2026 (CUDA 13 driver)
def test_kineto_2026_kernel_args_and_sync_events(real):
    trace = real["kineto_h100_2026"]
    assert (trace["cuda_driver_version"], trace["cupti_version"]) == (13000, 28)
    ks = attribute_kernels(trace)
    assert len(ks) == 1  # the two cuda_sync events are waits, not device work
    (k,) = ks
    assert k.name == "Kernel" and k.track == "cuda:0 stream 1" and k.time_us == pytest.approx(0.02)
    assert (k.args["graph_id"], k.args["graph_node_id"]) == (0, 0)
    assert k.args["grid"] == [1, 1, 1] and k.args["occupancy_pct"] == 0
    assert k.args["launch_call"] == "cudaLaunchKernel" and k.args["launch_us"] == pytest.approx(0.010, abs=1e-4)
    assert k.start_us == pytest.approx(0.030, abs=1e-4)  # from the "Trace" span's start (ts read as doubles: ~1e-5 us steps)
    # the kernel carries no External id (Kineto leaves it out without a linked op), the launch
    # lies in cpu_op op1 but in no node range: unattributed
    raw = next(e for e in trace["traceEvents"] if e.get("cat") == "kernel")
    assert "External id" not in raw["args"] and k.covers == []
    syncs = [e for e in trace_events(trace) if e["cat"] == "cuda_sync"]
    assert [e["args"]["cuda_sync_kind"] for e in syncs] == ["Stream Wait Event", "Event Sync"]
    assert not DEVICE_CATS & {"cuda_sync"}


# ---------------------------------------------------------------------------------------------- pre-2.0 excerpt
def test_launch_on_another_thread_is_not_taken_by_a_range_it_overlaps(real):
    trace = real["hta_a100_2022"]
    (w,) = find_device_work(trace_events(trace))
    assert w.launch is not None and w.launch["tid"] == 24922 and w.launch_ts == pytest.approx(1666149715364374)
    # mlms_ir::n0 (tid 3914) spans the launch's time, but on the main thread; the call's External id
    # is its own correlation id (2131433), which names no host op
    assert (w.node, w.via) == (None, "")
    (k,) = attribute_kernels(trace)
    assert k.args["grid"] == [32, 1, 2] and k.args["registers_per_thread"] == 240 and k.args["shared_memory"] == 98304
