"""The CUDA execution profile of traced runs, per graph node and per run.

Input: the :class:`~mlms_ir.backends.base.TraceResult` list of a traced CUDA session (the torch
backend's, whose ``kernel`` events are already attributed to nodes by
:func:`mlms_ir.backends.torch_trace.find_device_work`). Pure functions over those events, so
tests use recorded traces and no GPU.

Per node (:class:`NodeGpu`):

* ``kernels``: device work items (kernels, memcpys, memsets) it launched, per run;
* ``gpu_us``: the summed duration of that work (median over runs);
* ``cpu_us``: the host time of its range (median), and ``launch_overhead_us = cpu_us - gpu_us``:
  how much longer the host took to issue the node than the GPU took to run it (positive: the node
  is launch-bound; a run of such nodes leaves the GPU waiting);
* ``idle_us``: the time the GPU sat idle right before each of the node's kernels (median of the
  per-run sum). Gaps are measured per device against the end of all earlier work on any of its
  streams, and the first gap of a run starts at the run's start: over a run, busy plus idle time is
  the span up to the last kernel's end;
* ``launch_latency_us``: mean time from the launch call's start to the kernel's start.

Per run (:class:`GpuSummary`): kernels, busy, idle and span, the GPU utilisation over the run's
wall time (of the device that did the most work, and of each device in ``devices``), launch
latency, memcpy/memset time, and the streams used.

Host times come from traced runs, whose profiler ranges and CUPTI callbacks add to every launch:
launch overhead is an upper bound on what an untraced run pays (the profile states the tracing
overhead beside it).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Categories of device work that copies or fills memory rather than computing.
MEMORY_CATS = frozenset({"gpu_memcpy", "gpu_memset"})


@dataclass
class NodeGpu:
    """The CUDA execution profile of one graph node (per run; medians over runs)."""

    id: str
    kernels: float
    gpu_us: float
    cpu_us: float | None
    launch_overhead_us: float | None
    idle_us: float
    launch_latency_us: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class GpuSummary:
    """Whole-run CUDA figures (medians over runs, except where noted)."""

    runs: int
    kernels: float  #: device work items per run (mean)
    busy_us: float  #: union of the device's work intervals
    idle_us: float  #: from the run's start to the device's last kernel's end, minus busy
    span_us: float  #: from the run's start to the device's last kernel's end
    wall_us: float  #: the traced run's wall time
    utilization: float  #: busy / wall
    memory_us: float  #: memcpy and memset time
    launch_latency_us: float | None  #: mean launch call start to kernel start, over all runs
    streams: list[str]
    #: The device the busy, idle, span and utilisation figures are of: the one that did the most
    #: work (``cuda:0``); ``devices`` has them for every device that ran work.
    device: str = ""
    devices: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _device_of(track: str) -> str:
    """``cuda:0 stream 7`` -> ``cuda:0``."""
    return track.split(" stream ", 1)[0]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def gpu_profile(traces: Sequence[Any]) -> tuple[dict[str, NodeGpu], GpuSummary | None]:
    """Per-node and per-run CUDA figures of traced runs; ``({}, None)`` when they hold no device
    work (a CPU run). A kernel covering several nodes (never the case for the torch backend)
    counts for its first node."""
    if not any(ev.kind == "kernel" for tr in traces for ev in tr.events):
        return {}, None
    per_run_gpu: list[dict[str, float]] = []
    per_run_idle: list[dict[str, float]] = []
    per_run_cpu: list[dict[str, float]] = []
    counts: dict[str, int] = defaultdict(int)
    latencies: dict[str, list[float]] = defaultdict(list)
    all_latencies: list[float] = []
    wall_l, mem_l, kernels_l = [], [], []
    per_dev: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"busy_us": [], "span_us": []})
    streams: set[str] = set()
    for tr in traces:
        gpu: dict[str, float] = defaultdict(float)
        idle: dict[str, float] = defaultdict(float)
        cpu: dict[str, float] = defaultdict(float)
        for ev in tr.events:
            if ev.kind == "node" and ev.covers:
                cpu[ev.covers[0]] += ev.time_us
        work = sorted((ev for ev in tr.events if ev.kind == "kernel"), key=lambda e: (e.start_us, e.time_us))
        ends: dict[str, float] = {}  # device -> latest end so far (the run starts at 0)
        busy_by: dict[str, float] = defaultdict(float)
        memory = 0.0
        for ev in work:
            dev = _device_of(ev.track)
            streams.add(ev.track)
            prev = ends.get(dev, 0.0)
            gap = max(0.0, ev.start_us - prev)
            end = ev.start_us + ev.time_us
            busy_by[dev] += max(0.0, end - max(prev, ev.start_us))
            ends[dev] = max(prev, end)
            if ev.args.get("category") in MEMORY_CATS:
                memory += ev.time_us
            launch = ev.args.get("launch_us")
            if isinstance(launch, (int, float)):
                all_latencies.append(ev.start_us - launch)
            if not ev.covers:
                continue
            nid = ev.covers[0]
            gpu[nid] += ev.time_us
            idle[nid] += gap
            counts[nid] += 1
            if isinstance(launch, (int, float)):
                latencies[nid].append(ev.start_us - launch)
        for dev, end in ends.items():
            per_dev[dev]["busy_us"].append(busy_by[dev])
            per_dev[dev]["span_us"].append(end)
        per_run_gpu.append(gpu)
        per_run_idle.append(idle)
        per_run_cpu.append(cpu)
        wall_l.append(tr.wall_us)
        mem_l.append(memory)
        kernels_l.append(len(work))
    runs = len(traces)
    nodes: dict[str, NodeGpu] = {}
    for nid in sorted(counts):
        g = _median([r.get(nid, 0.0) for r in per_run_gpu])
        cpu_values = [r[nid] for r in per_run_cpu if nid in r]
        c = _median(cpu_values) if cpu_values else None
        lat = latencies.get(nid)
        nodes[nid] = NodeGpu(
            id=nid,
            kernels=counts[nid] / runs,
            gpu_us=g,
            cpu_us=c,
            launch_overhead_us=(c - g) if c is not None else None,
            idle_us=_median([r.get(nid, 0.0) for r in per_run_idle]),
            launch_latency_us=statistics.fmean(lat) if lat else None,
        )
    wall = _median(wall_l)
    devices: dict[str, dict[str, float]] = {}
    for dev, figs in per_dev.items():
        # a device without work in some run was idle that whole run: count it busy 0, span 0
        busy_d = _median(figs["busy_us"] + [0.0] * (runs - len(figs["busy_us"])))
        span_d = _median(figs["span_us"] + [0.0] * (runs - len(figs["span_us"])))
        devices[dev] = {"busy_us": busy_d, "span_us": span_d, "idle_us": max(0.0, span_d - busy_d),
                        "utilization": busy_d / wall if wall > 0 else 0.0}
    primary = max(sorted(devices), key=lambda d: devices[d]["busy_us"])
    main = devices[primary]
    summary = GpuSummary(
        runs=runs,
        kernels=statistics.fmean(kernels_l),
        busy_us=main["busy_us"],
        idle_us=main["idle_us"],
        span_us=main["span_us"],
        wall_us=wall,
        utilization=main["utilization"],
        memory_us=_median(mem_l),
        launch_latency_us=statistics.fmean(all_latencies) if all_latencies else None,
        streams=sorted(streams),
        device=primary,
        devices=devices,
    )
    return nodes, summary


#: Launch configuration fields kept for each kernel in a profile's per-node kernel lists.
KERNEL_DETAILS = ("grid", "block", "registers_per_thread", "shared_memory", "occupancy_pct", "blocks_per_sm",
                  "warps_per_sm", "stream", "category")


def kernel_details(args: dict[str, Any]) -> dict[str, Any]:
    """The launch configuration of a ``kernel`` event's args (grid, block, registers per thread,
    shared memory, estimated achieved occupancy, stream), those the trace has."""
    return {k: args[k] for k in KERNEL_DETAILS if k in args}
