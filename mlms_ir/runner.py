"""Cross-backend runs and per-node profiles: the library behind ``run`` and ``profile``.

A backend that is unavailable or fails is recorded as such and the rest goes on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlms_ir.errors import MlmsIrError
from mlms_ir.gpu.kernels import gpu_profile, kernel_details
from mlms_ir.comparator import compare_outputs, model_precision, tolerances
from mlms_ir.harness import LatencyStats, measure
from mlms_ir.inputs import batch_of, feeds_for
from mlms_ir.ir import Graph, load
from mlms_ir.ir.load import ModelSource
from mlms_ir.ir.shapes import Dims, InputShapes
from mlms_ir.progress import progress_bar
from mlms_ir.results.base import model_ref
from mlms_ir.results.profile import NodeTime, ProfileReport
from mlms_ir.results.run import RunRecord, RunReport

log = logging.getLogger(__name__)


def _backends():
    from mlms_ir.backends import registry

    return registry


def run_backends(
    model: ModelSource,
    backends: Sequence[str] = ("ort",),
    *,
    device: str = "cpu",
    batches: Sequence[int | None] = (None,),
    input_shapes: InputShapes = None,
    dims: Dims = None,
    inputs: str | dict | None = None,
    iterations: int = 100,
    warmup: int = 10,
    min_time_s: float = 0.0,
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
    system: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
    progress: bool = False,
    timeout_s: float | None = None,
) -> RunReport:
    """Time ``model`` on each backend and batch size; compare every backend's outputs with the
    first one that ran (max abs / rel error, and the verdict: elements beyond
    ``atol + rtol*|first|``; by default :data:`~mlms_ir.comparator.TOLERANCES` of the precision
    the model computes in, :func:`~mlms_ir.comparator.model_precision`: fp32's 1e-4 and 1e-3 for
    most models). ``options`` maps a backend name to its session options (e.g.
    ``{"ort": {"opt": "none"}}``). ``progress`` shows a bar on stderr (one step per backend and
    batch size). ``timeout_s`` bounds each backend's measurement on the CPU (in its child): one
    that runs longer is stopped and its row failed (default: :data:`ISOLATED_TIMEOUT_S`)."""
    if timeout_s is not None and not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise MlmsIrError(f"the timeout must be a positive number of seconds, got {timeout_s}")
    for v in (atol, rtol):
        if v is not None and not (v >= 0 and math.isfinite(v)):
            raise MlmsIrError(f"atol and rtol must be finite non-negative numbers, got {atol} and {rtol}")
    precision = None
    registry = _backends()
    records: list[RunRecord] = []
    model_info: dict[str, Any] = {}
    from mlms_ir.system import GpuSampler, system_facts

    # on the CPU each backend is measured in a forked child (timed inside it), so one that crashes
    # (a segfault in a runtime's C++, an abort on a failed allocation) fails its row and the others
    # go on; one backend alone too: its crash is then an error line, not this process' abort
    isolate = device == "cpu" and hasattr(os, "fork")
    # ... except one whose thread pool this process has already loaded (and may have started),
    # which a forked child cannot use: it runs here, unisolated, rather than hang
    loaded_before = set(sys.modules)

    with progress_bar(len(batches) * len(backends), "run", enabled=progress) as bar:
        for batch in batches:
            graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims)
            model_info = model_ref(graph)
            if precision is None:
                precision = model_precision(graph)
                atol, rtol = tolerances(precision, atol, rtol)
            feeds = feeds_for(graph, inputs, seed)
            b = batch_of(feeds)
            reference: tuple[str, dict[str, np.ndarray]] | None = None
            for name in backends:
                bar.advance(0, note=f"{name}" + (f", batch {b}" if len(batches) > 1 else ""))
                try:
                    opts = dict((options or {}).get(name, {}))
                    rec = RunRecord(backend=name, device=device, batch=b, status="ok", options=opts)
                    records.append(rec)
                    backend, why_not = registry.usable(name, device, **opts)
                    if backend is None:
                        rec.status, rec.error = "unavailable", why_not
                        continue
                    try:
                        if isolate and backend.thread_pool_module not in loaded_before:
                            rec.options, stats, outputs = _measure_in_child(backend, graph, device, opts, feeds, warmup, iterations,
                                                                            min_time_s, timeout_s or ISOLATED_TIMEOUT_S)
                        else:
                            with backend.prepare(graph, device, **opts) as session:
                                rec.options = dict(session.options)
                                with GpuSampler() as sampler:
                                    stats, outputs = session.measure(feeds, warmup=warmup, iterations=iterations, min_time_s=min_time_s)
                                rec.gpu = sampler.summary() if device != "cpu" else None
                    except MlmsIrError as exc:
                        rec.status, rec.error = "failed", str(exc)
                        continue
                    except Exception as exc:  # noqa: BLE001 - a backend crash is recorded, the rest goes on
                        log.debug("backend %s failed", name, exc_info=True)
                        rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
                        continue
                    rec.latency_ms = stats.as_dict()
                    rec.throughput = b / (stats.mean / 1000.0) if stats.mean > 0 else None
                    if reference is None:
                        reference = (name, outputs)
                    else:
                        diff = compare_outputs(reference[1], outputs, atol=atol, rtol=rtol)
                        rec.max_abs_diff, rec.max_rel_diff = diff["max_abs_diff"], diff["max_rel_diff"]
                        rec.beyond_tolerance, rec.outputs_agree = diff["beyond_tolerance"], diff["agree"]
                        rec.compared_with = reference[0]
                finally:
                    bar.advance()

    settings = {"iterations": iterations, "warmup": warmup, "min_time_s": min_time_s, "seed": seed, "atol": atol, "rtol": rtol,
                "model_precision": precision,
                "inputs": inputs if isinstance(inputs, str) else ("given" if inputs else "random"), "device": device}
    return RunReport(model=model_info, system=system_facts() if system else {}, settings=settings, runs=records)


def _measure_in_child(backend, graph: Graph, device: str, opts: dict[str, Any], feeds: dict, warmup: int, iterations: int,
                      min_time_s: float, timeout_s: float) -> tuple[dict[str, Any], LatencyStats, dict]:
    """``session.measure`` in a forked child: (session options, latency, outputs). The child sends
    JSON and an ``.npz`` back (never a pickle); its failure is a :class:`BackendError`."""
    import io

    from mlms_ir.backends.agent import pack_values, unpack_values
    from mlms_ir.errors import BackendError
    from mlms_ir.ir.guard import GuardedCrash, GuardedError, frame, run_guarded, unframe
    from mlms_ir.results.base import json_safe

    def child() -> bytes:
        with backend.prepare(graph, device, **opts) as session:
            stats, outputs = session.measure(feeds, warmup=warmup, iterations=iterations, min_time_s=min_time_s)
            options = dict(session.options)
        arrays, layout = pack_values(outputs)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return frame({"options": json_safe(options), "stats": stats.as_dict(), "layout": layout}, buf.getvalue())

    try:
        data = run_guarded(child, timeout_s=timeout_s)
    except GuardedCrash as exc:
        raise BackendError(f"the {backend.name} backend {str(exc).removeprefix('it ')}") from None
    except GuardedError as exc:
        raise BackendError(exc.message or exc.type_name) from None
    head, body = unframe(data)
    with np.load(io.BytesIO(body), allow_pickle=False) as z:
        outputs = unpack_values({k: z[k] for k in z.files}, head["layout"] or {})
    return head["options"], LatencyStats(**head["stats"]), outputs


#: Seconds one backend's measurement may take in its child before it is stopped.
ISOLATED_TIMEOUT_S = 24 * 3600.0


def aggregate(traces, graph: Graph, flops: dict[str, int]) -> tuple[dict[str, float], list[dict[str, Any]], float, dict[str, list[str]]]:
    """Per-node median time over traced runs (of device kernels when the traces hold any, else
    of backend nodes).

    An event covering several graph nodes (a fused kernel) is split among them in proportion to
    their static FLOPs (equally when they have none). Returns (time per node id, unattributed work,
    coverage, fusion groups).
    """
    per_run: list[dict[str, float]] = []
    unattributed: dict[tuple[str, str], list[float]] = defaultdict(list)
    attributed_total = total = 0.0
    groups: dict[str, list[str]] = {}
    # on a GPU the kernels are the work: node ranges there only measure launches
    kind = "kernel" if any(ev.kind == "kernel" for tr in traces for ev in tr.events) else "node"
    for tr in traces:
        times: dict[str, float] = defaultdict(float)
        for ev in tr.events:
            if ev.kind != kind:
                continue
            total += ev.time_us
            if not ev.covers:
                unattributed[(ev.name, ev.op_type)].append(ev.time_us)
                continue
            attributed_total += ev.time_us
            weights = [max(flops.get(c, 0), 0) for c in ev.covers]
            s = sum(weights)
            for c, w in zip(ev.covers, weights):
                times[c] += ev.time_us * (w / s if s else 1 / len(ev.covers))
            if len(ev.covers) > 1:
                for c in ev.covers:
                    groups[c] = list(ev.covers)
        per_run.append(times)
    ids = {k for t in per_run for k in t}
    median = {k: statistics.median([t.get(k, 0.0) for t in per_run]) for k in ids}
    runs = max(1, len(per_run))
    unatt = [
        {"name": n, "op_type": op, "time_us": sum(v) / runs, "events": len(v) / runs}
        for (n, op), v in sorted(unattributed.items(), key=lambda kv: -sum(kv[1]))
    ]
    coverage = attributed_total / total if total else 0.0
    return median, unatt, coverage, groups


def node_kernels(traces, top: int = 8) -> dict[str, list[dict[str, Any]]]:
    """The device kernels (or, without any, the backend ops) that ran for each graph node: name,
    mean time and calls per run, the longest first, and for kernels their launch configuration as
    first seen (grid, block, registers per thread, shared memory, estimated achieved occupancy,
    stream). A fused kernel is listed, whole, under every node it covers."""
    kind = "kernel" if any(ev.kind == "kernel" for tr in traces for ev in tr.events) else "node"
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    details: dict[tuple[str, str], dict[str, Any]] = {}
    for tr in traces:
        for ev in tr.events:
            if ev.kind != kind:
                continue
            for c in ev.covers:
                slot = acc[c][ev.name]
                slot[0] += ev.time_us
                slot[1] += 1
                if kind == "kernel" and (c, ev.name) not in details:
                    details[(c, ev.name)] = kernel_details(ev.args)
    runs = max(1, len(traces))
    return {nid: [{"name": name, "time_us": t / runs, "calls": n / runs, **details.get((nid, name), {})}
                  for name, (t, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]]
            for nid, by_name in acc.items()}


@dataclass
class Profiled:
    """What :func:`profile_model` measured and what it analysed on the way (so a report of the
    profile needs no second analysis): the profile, the raw traces, the static analysis, the graph."""

    report: ProfileReport
    traces: list
    analysis: Any
    graph: Graph


def profile_backend(model: ModelSource, backend: str = "ort", **kwargs: Any) -> tuple[ProfileReport, list]:
    """:func:`profile_model`'s profile and raw traces (for a Chrome trace); the same arguments."""
    p = profile_model(model, backend, **kwargs)
    return p.report, p.traces


def profile_model(
    model: ModelSource,
    backend: str = "ort",
    *,
    device: str = "cpu",
    batch: int | None = None,
    input_shapes: InputShapes = None,
    dims: Dims = None,
    inputs: str | dict | None = None,
    runs: int = 10,
    warmup: int = 5,
    iterations: int = 50,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    roofline_device: str | None = None,
    system: bool = True,
    progress: bool = False,
) -> Profiled:
    """Per-node times of ``model`` on one backend, merged with its static cost.

    Measured in levels: the latency comes from untraced runs; per-node times from traced runs;
    the tracing overhead is the ratio of the two. ``progress`` shows a bar on stderr (its steps:
    session, latency, traced runs, analysis)."""
    from mlms_ir.passes.analyze import analyze
    from mlms_ir.system import GpuSampler, system_facts

    registry = _backends()
    graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims)
    on_gpu = str(device).startswith("cuda") or device == "tensorrt"
    if roofline_device is not None:
        from mlms_ir.passes.roofline import resolve_device

        resolve_device(roofline_device)  # a bad device fails before anything runs
    feeds = feeds_for(graph, inputs, seed)
    be = registry.get(backend)
    telemetry = None
    with progress_bar(4, f"profile {backend}", enabled=progress) as bar:
        bar.advance(0, note="preparing the session")
        with be.prepare(graph, device, **(options or {})) as session:
            run = session.runner(feeds)
            bar.advance(note=f"latency: {warmup} + {iterations} runs")
            with (GpuSampler() if on_gpu else contextlib.nullcontext()) as sampler:
                stats = measure(run, synchronize=session.synchronize, warmup=warmup, iterations=iterations)
            if sampler is not None:
                telemetry = sampler.summary()
            bar.advance(note=f"{runs} traced runs")
            session.trace(feeds, runs=1)  # warm the traced path (ORT builds a second session)
            traces = session.trace(feeds, runs=runs)
            # only where names differ from graph ids (a one-to-one mapping says nothing)
            mapping = {k: v for k, v in session.node_mapping.items() if v != [k]}
            opts = dict(session.options)
        bar.advance(note="static analysis")
        gpu_name, telemetry_gpu = _run_gpu(device) if on_gpu else (None, None)
        if roofline_device is None and gpu_name:
            from mlms_ir.passes.roofline import match_gpu

            matched = match_gpu(gpu_name)
            roofline_device = matched.name if matched is not None else None
        analysis = analyze(graph, device=roofline_device)
    static = {n.id: n for n in analysis.nodes}
    flops = {k: (n.flops or 0) for k, n in static.items()}
    median, unattributed, coverage, groups = aggregate(traces, graph, flops)
    node_total = sum(median.values()) + sum(u["time_us"] for u in unattributed)
    kernels = node_kernels(traces)
    gpu_nodes, gpu_summary = gpu_profile(traces)
    nodes: list[NodeTime] = []
    for nid, t in sorted(median.items(), key=lambda kv: -kv[1]):
        n = static.get(nid)
        g = gpu_nodes.get(nid)
        nodes.append(NodeTime(
            id=nid,
            name=n.name if n else "",
            op_type=n.op_type if n else "",
            time_us=t,
            share=t / node_total if node_total else 0.0,
            events=sum(1 for tr in traces for ev in tr.events if nid in ev.covers) // max(1, len(traces)),
            macs=n.macs if n else None,
            flops=n.flops if n else None,
            achieved_flops_per_s=(n.flops / (t * 1e-6)) if n and n.flops and t > 0 else None,
            intensity=n.intensity if n else None,
            bound=n.bound if n else None,
            time_lower_bound_us=n.time_lower_bound_us if n else None,
            fused_with=[c for c in groups.get(nid, []) if c != nid],
            kernels=kernels.get(nid, []),
            kernel_count=g.kernels if g else None,
            cpu_us=g.cpu_us if g else None,
            launch_overhead_us=g.launch_overhead_us if g else None,
            idle_us=g.idle_us if g else None,
            launch_latency_us=g.launch_latency_us if g else None,
        ))
    gpu = None
    if gpu_summary is not None or telemetry is not None:
        gpu = {**(gpu_summary.to_dict() if gpu_summary is not None else {}), "name": gpu_name, "telemetry": telemetry,
               "telemetry_gpu": telemetry_gpu}
    # medians on both sides: one slow run (a first-call allocation, a page fault) skews a mean
    traced_wall_ms = statistics.median(tr.wall_us for tr in traces) / 1000.0
    report = ProfileReport(
        model=model_ref(graph),
        system=system_facts() if system else {},
        backend=backend,
        device=device,
        options=opts,
        batch=batch_of(feeds),
        runs=len(traces),
        coverage=coverage,
        node_time_us=node_total,
        latency_ms=stats.as_dict(),
        traced_wall_ms=traced_wall_ms,
        tracing_overhead=(traced_wall_ms / stats.p50 - 1.0) if stats.p50 > 0 else 0.0,
        nodes=nodes,
        unattributed=unattributed,
        mapping=mapping,
        roofline_device=roofline_device,
        gpu=gpu,
    )
    return Profiled(report, traces, analysis, graph)


def _run_gpu(device: str) -> tuple[str | None, int | None]:
    """The name of the GPU a run on ``device`` (``cuda``, ``cuda:N``, ``tensorrt``) used, and the
    NVML index of its telemetry. Where torch has CUDA up (the torch backend), its name for the
    device; else NVML's GPU N. NVML numbers GPUs its own way (it ignores CUDA_VISIBLE_DEVICES):
    the telemetry index is the NVML GPU of that name when only one has it, else N when
    CUDA_VISIBLE_DEVICES is unset, else unknown (None)."""
    import os
    import sys

    from mlms_ir.system import gpu_facts

    _, _, tail = str(device).partition(":")
    index = int(tail) if tail.isdigit() else 0
    name = None
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                name = torch.cuda.get_device_name(index)
        except Exception:  # noqa: BLE001 - a name is a nicety
            name = None
    gpus = gpu_facts().get("gpus") or []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if name is None and visible is None and index < len(gpus):
        name = gpus[index].get("name")
    same = [g["index"] for g in gpus if name and g.get("name") == name]
    if len(same) == 1:
        return name, same[0]
    return name, (index if visible is None and index < len(gpus) else None)
