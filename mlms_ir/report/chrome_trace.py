"""Per-node traces as a Chrome/Perfetto trace file (``profile --trace``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def chrome_trace(traces: Sequence[Any], graph_names: Mapping[str, str], backend: str) -> dict[str, Any]:
    """A Chrome/Perfetto trace (``chrome://tracing``, ui.perfetto.dev): one track per backend
    thread or stream, runs laid end to end, events named after the graph nodes they cover.

    On CUDA it is the execution profile: node ranges on the host track with the runtime/driver
    call that launched each kernel nested in them, each kernel on its stream's track, and a flow
    arrow from every launch to its kernel. Kernel slices carry the kernel's own name, grid, block,
    registers, shared memory and occupancy in their args."""
    events: list[dict[str, Any]] = []
    offset = 0.0
    tids: dict[str, int] = {}
    flow = 0
    for k, tr in enumerate(traces):
        events.append({"name": f"run {k}", "cat": "run", "ph": "X", "ts": offset, "dur": tr.wall_us, "pid": backend, "tid": 0})
        launched: set[tuple[float, str]] = set()  # one slice per launch call (a graph launch starts several kernels)
        for ev in tr.events:
            tid = tids.setdefault(ev.track, len(tids) + 1)
            name = graph_names.get(ev.covers[0], ev.name) if len(ev.covers) == 1 else ev.name
            events.append({
                "name": name or ev.name, "cat": ev.kind, "ph": "X", "ts": offset + ev.start_us, "dur": ev.time_us,
                "pid": backend, "tid": tid, "args": {"op_type": ev.op_type, "covers": ev.covers, "backend_name": ev.name, **ev.args},
            })
            launch = ev.args.get("launch_us") if ev.kind == "kernel" else None
            if not isinstance(launch, (int, float)):
                continue
            host = tids.setdefault("cpu", len(tids) + 1)
            flow += 1
            ts = offset + launch
            call = str(ev.args.get("launch_call") or "launch")
            if (launch, call) not in launched:
                launched.add((launch, call))
                events.append({"name": call, "cat": "launch", "ph": "X", "ts": ts, "dur": float(ev.args.get("launch_dur_us") or 0.0),
                               "pid": backend, "tid": host, "args": {"kernel": ev.name, "covers": ev.covers}})
            events.append({"name": "launch", "cat": "launch", "ph": "s", "id": flow, "ts": ts, "pid": backend, "tid": host})
            events.append({"name": "launch", "cat": "launch", "ph": "f", "bp": "e", "id": flow, "ts": offset + ev.start_us,
                           "pid": backend, "tid": tid})
        offset += tr.wall_us + 10.0
    meta = [{"name": "thread_name", "ph": "M", "pid": backend, "tid": t, "args": {"name": track}} for track, t in tids.items()]
    meta.append({"name": "thread_name", "ph": "M", "pid": backend, "tid": 0, "args": {"name": "runs"}})
    meta += [{"name": "thread_sort_index", "ph": "M", "pid": backend, "tid": t, "args": {"sort_index": t}} for t in [0, *tids.values()]]
    return {"traceEvents": meta + events, "displayTimeUnit": "ms"}
