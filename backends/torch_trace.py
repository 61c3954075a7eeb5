"""Chrome traces of the torch backend's traced runs, cut into runs and attributed to graph nodes.

A traced :class:`~mlms_ir.backends.torch_backend.TorchSession` wraps each node's submodule in a
``torch.profiler.record_function("mlms_ir::<id>")`` range (:data:`NODE_PREFIX`) and each run in an
``mlms_ir.run::<k>`` range (:data:`RUN_PREFIX`), and exports ``torch.profiler``'s Chrome trace.
The functions here read it: one ``node`` event per range (host time), and on CUDA one ``kernel``
event per kernel, memcpy and memset, attributed to the node whose range enclosed its launch
(:func:`find_device_work`, :func:`attribute_kernels`). They are pure functions over the parsed
trace, tested without a GPU on a trace in torch.profiler's CUDA layout, and import no torch.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlms_ir.backends.base import NodeTrace

#: Name prefix of the ``record_function`` range around each graph node (``mlms_ir::n12``).
NODE_PREFIX = "mlms_ir::"
#: Name prefix of the range around each traced run (``mlms_ir.run::0``).
RUN_PREFIX = "mlms_ir.run::"
#: Chrome-trace categories of device work, of the host calls that launch it, and of host ranges.
DEVICE_CATS = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
LAUNCH_CATS = frozenset({"cuda_runtime", "cuda_driver"})
HOST_CATS = frozenset({"cpu_op", "user_annotation"})
#: Kernel args copied from the trace, under our names.
KERNEL_ARGS = {
    "grid": "grid",
    "block": "block",
    "registers per thread": "registers_per_thread",
    "shared memory": "shared_memory",
    "blocks per SM": "blocks_per_sm",
    "warps per SM": "warps_per_sm",
    "est. achieved occupancy %": "occupancy_pct",
    "device": "device",
    "stream": "stream",
    "correlation": "correlation",
    "bytes": "bytes",
    "memory bandwidth (GB/s)": "bandwidth_gbs",
    # Kineto built against CUDA >= 12 adds these to kernels, memcpys and memsets (0 outside a
    # CUDA graph): libkineto CuptiActivity.h getGraphNodeMetadata
    "graph id": "graph_id",
    "graph node id": "graph_node_id",
}
#: How far (us) a launch call may lie outside the host op its ``External id`` names and still be
#: taken as launched by it: the runtime/driver call is timed by CUPTI, the op by torch's clock.
LAUNCH_SLACK_US = 2.0


# ---------------------------------------------------------------------------------------------- chrome traces
def trace_events(trace: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The complete ('X') events of a Chrome trace (a dict with ``traceEvents`` or the list)."""
    events = trace.get("traceEvents", []) if isinstance(trace, Mapping) else trace
    return [e for e in events if e.get("ph") == "X" and "ts" in e]


def _node_id(name: str) -> str | None:
    if name.startswith(NODE_PREFIX):
        return name[len(NODE_PREFIX):] or None
    return None


class _Ranges:
    """Node ranges of one thread (or stream), for innermost-enclosing lookups."""

    def __init__(self, ranges: Iterable[tuple[float, float, str]]) -> None:
        items = sorted(ranges)
        self.starts = [s for s, _, _ in items]
        self.ends = [e for _, e, _ in items]
        self.ids = [i for _, _, i in items]
        self.max_end: list[float] = []
        m = float("-inf")
        for e in self.ends:
            m = max(m, e)
            self.max_end.append(m)

    def at(self, t: float) -> str | None:
        """The innermost range containing ``t`` (the latest-starting one)."""
        k = bisect.bisect_right(self.starts, t) - 1
        while k >= 0 and self.max_end[k] >= t:
            if self.ends[k] >= t:
                return self.ids[k]
            k -= 1
        return None


@dataclass
class DeviceWork:
    """One kernel, memcpy or memset, with where it was launched from and the node it belongs to."""

    event: dict[str, Any]
    node: str | None
    launch_ts: float | None
    via: str  # "launch" (its launch call lay in a node range), "external id", "gpu range" or ""
    #: The runtime/driver call (or host op) that launched it, when the trace links one.
    launch: dict[str, Any] | None = None


def _thread(e: Mapping[str, Any]) -> tuple[Any, Any]:
    return (e.get("pid"), e.get("tid"))


def find_device_work(events: Sequence[Mapping[str, Any]]) -> list[DeviceWork]:
    """Attribute every device event of a parsed Chrome trace to a graph node.

    A kernel is linked to the runtime or driver call that launched it by ``args.correlation``; the
    innermost ``mlms_ir::<id>`` host range (``user_annotation``) around that call on the same
    thread is its node. Without a launch record, the host op with the kernel's ``External id``
    stands in for it. When the launch call lies in no node range of its thread, the host op its
    ``External id`` names (the innermost torch op around the launch, on torch's own thread id and
    clock) decides, provided the call lies within that op: Kineto writes a runtime call's ``tid``
    as CUPTI's thread id, mapped to the system thread id only for threads it registered (an
    unmapped one looks like ``81150400`` beside a process id of ``134579``), and times it with
    CUPTI's clock. Failing all that, the ``mlms_ir::<id>`` range the profiler projects onto the
    kernel's stream (``gpu_user_annotation``) that contains it. Otherwise it stays unattributed.
    """
    host: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    device_ranges: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    launches: dict[Any, Mapping[str, Any]] = {}
    by_external: dict[Any, Mapping[str, Any]] = {}
    for e in events:
        cat = e.get("cat")
        args = e.get("args") or {}
        if cat in HOST_CATS:
            ext = args.get("External id")
            if ext is not None:
                by_external.setdefault(ext, e)
            nid = _node_id(str(e.get("name", ""))) if cat == "user_annotation" else None
            if nid is not None:
                host[_thread(e)].append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), nid))
        elif cat in LAUNCH_CATS:
            corr = args.get("correlation")
            if corr is not None:
                launches.setdefault(corr, e)
        elif cat == "gpu_user_annotation":
            nid = _node_id(str(e.get("name", "")))
            if nid is not None:
                device_ranges[_thread(e)].append((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), nid))
    host_idx = {k: _Ranges(v) for k, v in host.items()}
    dev_idx = {k: _Ranges(v) for k, v in device_ranges.items()}
    work: list[DeviceWork] = []
    for e in events:
        if e.get("cat") not in DEVICE_CATS:
            continue
        args = e.get("args") or {}
        node, via, launch_ts = None, "", None
        launch = launches.get(args.get("correlation")) if args.get("correlation") is not None else None
        if launch is None and args.get("External id") is not None:
            launch = by_external.get(args.get("External id"))
            kind = "external id"
        else:
            kind = "launch"
        if launch is not None:
            launch_ts = float(launch["ts"])
            idx = host_idx.get(_thread(launch))
            node = idx.at(launch_ts) if idx is not None else None
            if node is None and launch.get("cat") == "user_annotation":
                node = _node_id(str(launch.get("name", "")))
            if node is not None:
                via = kind
        if node is None and launch is not None and launch.get("cat") in LAUNCH_CATS:
            # the call lies in no node range of its thread: try the host op its External id names.
            # Kineto before 2024 (pytorch/kineto#873, #1001) wrote the call's own CUPTI
            # correlation id there, a number from another sequence: the op must enclose the call
            op = by_external.get((launch.get("args") or {}).get("External id"))
            if op is not None:
                start = float(op["ts"])
                if start - LAUNCH_SLACK_US <= launch_ts <= start + float(op.get("dur", 0)) + LAUNCH_SLACK_US:
                    idx = host_idx.get(_thread(op))
                    node = idx.at(start) if idx is not None else None
                    if node is None and op.get("cat") == "user_annotation":
                        node = _node_id(str(op.get("name", "")))
                    if node is not None:
                        via = "external id"
        if node is None:
            idx = dev_idx.get(_thread(e))
            if idx is not None:
                mid = float(e["ts"]) + float(e.get("dur", 0)) / 2
                node = idx.at(mid)
                if node is not None:
                    via = "gpu range"
        work.append(DeviceWork(dict(e), node, launch_ts, via, dict(launch) if launch is not None else None))
    return work


def _kernel_trace(w: DeviceWork, origin: float, op_types: Mapping[str, str]) -> NodeTrace:
    e = w.event
    args_in = e.get("args") or {}
    args: dict[str, Any] = {"category": e.get("cat")}
    for key, ours in KERNEL_ARGS.items():
        if key in args_in:
            args[ours] = args_in[key]
    if w.via:
        args["attributed_by"] = w.via
    if w.launch is not None and w.launch.get("cat") in LAUNCH_CATS:
        args["launch_us"] = float(w.launch["ts"]) - origin
        args["launch_dur_us"] = float(w.launch.get("dur", 0))
        args["launch_call"] = str(w.launch.get("name", ""))
    stream = args_in.get("stream", e.get("tid"))
    device = args_in.get("device", e.get("pid"))
    return NodeTrace(
        name=str(e.get("name", "")),
        op_type=op_types.get(w.node, "") if w.node else "",
        start_us=float(e["ts"]) - origin,
        time_us=float(e.get("dur", 0)),
        covers=[w.node] if w.node else [],
        track=f"cuda:{device} stream {stream}",
        kind="kernel",
        args=args,
    )


def attribute_kernels(trace: Mapping[str, Any] | Sequence[Mapping[str, Any]], op_types: Mapping[str, str] | None = None,
                      origin: float | None = None) -> list[NodeTrace]:
    """One ``kernel`` NodeTrace per kernel, memcpy and memset of a ``torch.profiler`` Chrome trace,
    covering the graph node whose ``mlms_ir::<id>`` range launched it (``[]`` when none did).
    ``start_us`` counts from ``origin`` (default: the trace's first event). Args carry the grid,
    block, registers per thread, shared memory, blocks and warps per SM, estimated achieved
    occupancy, device, stream and correlation id where the trace has them."""
    events = trace_events(trace)
    if origin is None:
        origin = min((float(e["ts"]) for e in events), default=0.0)
    ops = op_types or {}
    return [_kernel_trace(w, origin, ops) for w in sorted(find_device_work(events), key=lambda w: float(w.event["ts"]))]


def kernel_coverage(events: Iterable[NodeTrace]) -> float:
    """The share of device time (``kernel`` events) attributed to graph nodes; 0.0 without any."""
    total = attributed = 0.0
    for ev in events:
        if ev.kind != "kernel":
            continue
        total += ev.time_us
        if ev.covers:
            attributed += ev.time_us
    return attributed / total if total else 0.0


def split_trace(trace: Mapping[str, Any] | Sequence[Mapping[str, Any]], op_types: Mapping[str, str] | None = None,
                names: Mapping[str, str] | None = None) -> list[tuple[list[NodeTrace], float]]:
    """Cut a traced session's Chrome trace into runs (``mlms_ir.run::<k>`` ranges; the whole
    trace is one run when it has none): per run, the ``node`` events of its node ranges and the
    ``kernel`` events of the device work it launched, times from the run's start, and its wall
    time. Node events carry ``device_us`` (the time of their kernels) and ``kernels`` when any
    device work was attributed to them."""
    events = trace_events(trace)
    ops = op_types or {}
    nm = names or {}
    runs = sorted((e for e in events if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith(RUN_PREFIX)),
                  key=lambda e: float(e["ts"]))
    if runs:
        windows = [(float(r["ts"]), float(r["ts"]) + float(r.get("dur", 0))) for r in runs]
    else:
        start = min((float(e["ts"]) for e in events), default=0.0)
        end = max((float(e["ts"]) + float(e.get("dur", 0)) for e in events), default=0.0)
        windows = [(start, end)]
    starts = [s for s, _ in windows]

    def run_of(t: float) -> int | None:
        k = bisect.bisect_right(starts, t) - 1
        return k if k >= 0 and t <= windows[k][1] else None

    nodes: list[list[NodeTrace]] = [[] for _ in windows]
    for e in events:
        if e.get("cat") != "user_annotation":
            continue
        nid = _node_id(str(e.get("name", "")))
        if nid is None or str(e.get("name", "")).startswith(RUN_PREFIX):
            continue
        k = run_of(float(e["ts"]))
        if k is None:
            continue
        nodes[k].append(NodeTrace(name=nm.get(nid, nid), op_type=ops.get(nid, ""), start_us=float(e["ts"]) - windows[k][0],
                                  time_us=float(e.get("dur", 0)), covers=[nid], track="cpu", kind="node"))
    kernels: list[list[NodeTrace]] = [[] for _ in windows]
    for w in find_device_work(events):
        k = run_of(w.launch_ts if w.launch_ts is not None else float(w.event["ts"]))
        if k is None:
            continue
        kernels[k].append(_kernel_trace(w, windows[k][0], ops))
    out = []
    for k, (start, end) in enumerate(windows):
        dev: dict[str, list[float]] = defaultdict(list)
        for kt in kernels[k]:
            if kt.covers:
                dev[kt.covers[0]].append(kt.time_us)
        for nt in nodes[k]:
            times = dev.get(nt.covers[0])
            if times:
                nt.args = {"device_us": sum(times), "kernels": len(times)}
        evs = sorted(nodes[k], key=lambda n: n.start_us) + sorted(kernels[k], key=lambda n: n.start_us)
        # on CUDA the run ends when its last kernel does, which the host range already waits for
        last = max((kt.start_us + kt.time_us for kt in kernels[k]), default=0.0)
        out.append((evs, max(end - start, last)))
    return out
