"""Attributing profiled kernels to graph nodes (:func:`attribute_counters`): each node's kernels
summed, measured FLOPs and DRAM bytes set beside the static counts, with their ratio, on the
roofline of the GPU.

FLOPs are counted from SIMT instructions: ``add + mul + 2 * fma`` per precision
(:func:`kernel_flops`). Tensor-core instructions are counted separately and their FLOPs are *not*
in that count: torch runs float32 convolutions as TF32 on tensor cores by default, so a Conv's
measured FLOPs can be far below its static count. No per-architecture factor is invented for
them; the report says so instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlms_ir.gpu.ncu_metrics import (
    DRAM_READ,
    DRAM_WRITE,
    FLOP_METRICS,
    MEMORY_PCT,
    OCCUPANCY,
    SM_PCT,
    TENSOR_CYCLES,
    TENSOR_INST,
)
from mlms_ir.results.counters import CounterFigures, CountersReport, KernelCounters, NodeCounters


def kernel_flops(k: KernelCounters) -> dict[str, float | None]:
    """SIMT FLOPs of a kernel per precision (``add + mul + 2 * fma``); None for a precision none
    of whose three metrics was collected."""
    out: dict[str, float | None] = {}
    for prec, (add, mul, fma) in FLOP_METRICS.items():
        vals = [k.metrics.get(m) for m in (add, mul, fma)]
        if all(v is None for v in vals):
            out[prec] = None
        else:
            a, m, f = (v or 0.0 for v in vals)
            out[prec] = a + m + 2.0 * f
    return out


def _sum(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(sum(vals)) if vals else None


def _weighted(kernels: Sequence[KernelCounters], metric: str) -> float | None:
    num = den = 0.0
    for k in kernels:
        v, t = k.metrics.get(metric), k.time_s
        if v is None or t is None or t <= 0:
            continue
        num += v * t
        den += t
    return num / den if den > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _figures(kernels: Sequence[KernelCounters], target: CounterFigures, static_flops: int | None, static_bytes: int | None,
             peak: float | None, bandwidth: float | None) -> None:
    t = target
    t.kernels = len(kernels)
    time_s = _sum(k.time_s for k in kernels) or 0.0
    t.gpu_time_us = time_s * 1e6
    per = [kernel_flops(k) for k in kernels]
    t.flops_by_precision = {prec: _sum(p[prec] for p in per) for prec in FLOP_METRICS}
    t.flops = _sum(t.flops_by_precision.values())
    t.tensor_inst = _sum(k.metrics.get(TENSOR_INST) for k in kernels)
    t.tensor_cycles = _sum(k.metrics.get(TENSOR_CYCLES) for k in kernels)
    t.tensor_core = bool(t.tensor_inst) or bool(t.tensor_cycles)
    t.dram_read_bytes = _sum(k.metrics.get(DRAM_READ) for k in kernels)
    t.dram_write_bytes = _sum(k.metrics.get(DRAM_WRITE) for k in kernels)
    t.dram_bytes = _sum((t.dram_read_bytes, t.dram_write_bytes))
    t.sm_pct = _weighted(kernels, SM_PCT)
    t.memory_pct = _weighted(kernels, MEMORY_PCT)
    t.occupancy_pct = _weighted(kernels, OCCUPANCY)
    t.achieved_flops_per_s = t.flops / time_s if t.flops is not None and time_s > 0 else None
    t.intensity = _ratio(t.flops, t.dram_bytes)
    t.static_flops = static_flops
    t.static_bytes = static_bytes
    t.flops_ratio = _ratio(t.flops, static_flops)
    t.bytes_ratio = _ratio(t.dram_bytes, static_bytes)
    if peak and bandwidth and t.intensity is not None:
        t.attainable_flops_per_s = min(peak, t.intensity * bandwidth)
        t.roofline_share = _ratio(t.achieved_flops_per_s, t.attainable_flops_per_s)
        t.bound = "compute" if t.intensity >= peak / bandwidth else "memory"


def attribute_counters(kernels: Sequence[KernelCounters], static_nodes: Any, device: Any = None) -> CountersReport:
    """Sum ``kernels`` per graph node and set the measured figures beside the static ones.

    ``static_nodes``: the :class:`~mlms_ir.results.analysis.NodeCost` list of an analysis (or the
    :class:`~mlms_ir.results.analysis.Analysis` itself). ``device``: a
    :class:`~mlms_ir.passes.roofline.Device` or a name :func:`~mlms_ir.passes.roofline.resolve_device`
    knows; with it, each node's measured intensity is placed on the device's roofline. SIMT FLOPs
    are placed under the fp32 (CUDA-core) peak, or the fp64 peak where fp64 work dominates and the
    device table gives one. Nodes come longest GPU time first."""
    from mlms_ir.passes.roofline import resolve_device

    nodes_in = list(getattr(static_nodes, "nodes", static_nodes) or [])
    static = {n.id: n for n in nodes_in}
    dev = resolve_device(device) if device is not None else None
    by_node: dict[str, list[KernelCounters]] = {}
    unattributed: list[KernelCounters] = []
    for k in kernels:
        if k.node is None:
            unattributed.append(k)
        else:
            by_node.setdefault(k.node, []).append(k)
    total_time = _sum(k.time_s for k in kernels) or 0.0

    def roof(flops_by_precision: Mapping[str, float | None]) -> tuple[float | None, str | None]:
        if dev is None:
            return None, None
        fp64 = flops_by_precision.get("fp64") or 0.0
        rest = (flops_by_precision.get("fp32") or 0.0) + (flops_by_precision.get("fp16") or 0.0)
        kind = "fp64" if fp64 > rest and "fp64" in dev.peak_flops else "fp32"
        return dev.peak_flops[kind], kind

    out_nodes: list[NodeCounters] = []
    for nid, ks in by_node.items():
        n = static.get(nid)
        sb = (n.bytes_read + n.bytes_written) if n is not None and n.bytes_read is not None and n.bytes_written is not None else None
        nc = NodeCounters(id=nid, name=n.name if n is not None else "", op_type=n.op_type if n is not None else "")
        fl = {prec: _sum(p[prec] for p in (kernel_flops(k) for k in ks)) for prec in FLOP_METRICS}
        peak, _ = roof(fl)
        _figures(ks, nc, n.flops if n is not None else None, sb, peak, dev.bandwidth_bytes_per_s if dev else None)
        nc.share = (nc.gpu_time_us * 1e-6) / total_time if total_time > 0 else 0.0
        nc.kernel_names = [k.name for k in sorted(ks, key=lambda k: -(k.time_s or 0.0))][:5]
        out_nodes.append(nc)
    out_nodes.sort(key=lambda n: -n.gpu_time_us)
    top = [n for n in nodes_in if getattr(n, "parent", None) is None]
    static_flops = sum(n.flops for n in top if n.flops is not None) if top else None
    static_bytes = sum(n.bytes_read + n.bytes_written for n in top
                       if n.bytes_read is not None and n.bytes_written is not None) if top else None
    totals = CounterFigures()
    all_fl = {prec: _sum(p[prec] for p in (kernel_flops(k) for k in kernels)) for prec in FLOP_METRICS}
    peak, kind = roof(all_fl)
    _figures(kernels, totals, static_flops, static_bytes, peak, dev.bandwidth_bytes_per_s if dev else None)
    attributed = sum(k.time_s or 0.0 for k in kernels if k.node is not None)
    report = CountersReport(
        nodes=out_nodes,
        totals=totals,
        coverage=attributed / total_time if total_time > 0 else 0.0,
        unattributed=sorted(unattributed, key=lambda k: -(k.time_s or 0.0)),
        kernels=list(kernels),
        nodes_without_kernels=[n.id for n in top if n.id not in by_node],
        device=dev.name if dev else None,
        peak_flops_per_s=peak,
        peak_kind=kind,
        bandwidth_bytes_per_s=dev.bandwidth_bytes_per_s if dev else None,
        ridge_intensity=(peak / dev.bandwidth_bytes_per_s) if dev and peak else None,
    )
    report.notes = _notes(report)
    return report


def _notes(report: CountersReport) -> list[str]:
    notes: list[str] = []
    tc = [n for n in report.nodes if n.tensor_core]
    if tc:
        ops = sorted({n.op_type for n in tc if n.op_type})
        notes.append(f"{len(tc)} node(s) ran tensor-core instructions ({', '.join(ops) or 'unknown ops'}): their tensor-core "
                     "FLOPs are not in the measured (SIMT) FLOPs, so measured/static FLOPs understates them; torch runs "
                     "float32 convolutions as TF32 on tensor cores by default (torch.backends.cudnn.allow_tf32)")
    if report.kernels and all(TENSOR_INST not in k.metrics and TENSOR_CYCLES not in k.metrics for k in report.kernels):
        notes.append(f"tensor-core instructions were not counted ({TENSOR_INST} not collected): measured FLOPs leave out "
                     "any tensor-core work")
    if report.unattributed:
        t = sum(k.time_s or 0.0 for k in report.unattributed) * 1e6
        notes.append(f"{len(report.unattributed)} kernel(s) ({t:.3g} us) ran inside the counted run but outside every "
                     "node's range (input/output copies, allocator fills)")
    return notes
