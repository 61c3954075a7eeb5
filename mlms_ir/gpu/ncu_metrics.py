"""What Nsight Compute collects: the NVTX ranges that select and attribute kernels, the metric
names and the named metric sets (:func:`resolve_metrics`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from mlms_ir.errors import MlmsIrError

# the result reads these three itself (a kernel's time and DRAM bytes): one definition, there
from mlms_ir.results.counters import DRAM_READ, DRAM_WRITE, TIME

#: The NVTX push/pop range around the one counted run; ``ncu`` profiles only the kernels in it.
COUNTERS_RANGE = "mlms_ir.counters"
#: Name prefix of the NVTX range around each graph node (the torch backend's ``NODE_PREFIX``).
NODE_PREFIX = "mlms_ir::"

#: SIMT floating-point thread instructions (predicated on) per precision: (add, mul, fma).
#: FLOPs = add + mul + 2 * fma, as Nsight Compute's nvprof table defines ``flop_count_sp`` etc.
FLOP_METRICS: dict[str, tuple[str, str, str]] = {
    "fp32": ("smsp__sass_thread_inst_executed_op_fadd_pred_on.sum",
             "smsp__sass_thread_inst_executed_op_fmul_pred_on.sum",
             "smsp__sass_thread_inst_executed_op_ffma_pred_on.sum"),
    "fp16": ("smsp__sass_thread_inst_executed_op_hadd_pred_on.sum",
             "smsp__sass_thread_inst_executed_op_hmul_pred_on.sum",
             "smsp__sass_thread_inst_executed_op_hfma_pred_on.sum"),
    "fp64": ("smsp__sass_thread_inst_executed_op_dadd_pred_on.sum",
             "smsp__sass_thread_inst_executed_op_dmul_pred_on.sum",
             "smsp__sass_thread_inst_executed_op_dfma_pred_on.sum"),
}
#: Warp instructions executed on the tensor pipe (their FLOPs are not in the SIMT count). Known on
#: Volta to Ampere; Hopper splits the pipe (hmma/gmma/...), so a GPU may not know it (it is then
#: dropped and the run repeated) or leave warpgroup (GMMA) work out of it.
TENSOR_INST = "sm__inst_executed_pipe_tensor.sum"
#: Cycles the tensor pipe was active: the architecture-independent sign that tensor cores ran.
TENSOR_CYCLES = "sm__pipe_tensor_cycles_active.sum"
#: Compute (SM) throughput, % of peak (Nsight Compute's Speed Of Light "Compute (SM) Throughput").
SM_PCT = "sm__throughput.avg.pct_of_peak_sustained_elapsed"
#: Memory throughput, % of peak (Speed Of Light "Memory Throughput": the busiest of DRAM, L2, L1).
MEMORY_PCT = "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"
#: Achieved occupancy: active warps per active cycle, % of the SM's maximum.
OCCUPANCY = "sm__warps_active.avg.pct_of_peak_sustained_active"
#: Theoretical occupancy of the launch configuration, %.
THEORETICAL_OCCUPANCY = "sm__maximum_warps_per_active_cycle_pct"
GRID_SIZE = "launch__grid_size"
BLOCK_SIZE = "launch__block_size"
REGISTERS = "launch__registers_per_thread"

_FLOPS = [m for prec in ("fp32", "fp16", "fp64") for m in FLOP_METRICS[prec]]
#: Named metric sets (``--metric-set``). Every set starts with the kernel duration.
METRIC_SETS: dict[str, tuple[str, ...]] = {
    "roofline": (TIME, *_FLOPS, TENSOR_INST, TENSOR_CYCLES, DRAM_READ, DRAM_WRITE, SM_PCT, MEMORY_PCT,
                 GRID_SIZE, BLOCK_SIZE, REGISTERS, OCCUPANCY),
    "throughput": (TIME, SM_PCT, MEMORY_PCT, DRAM_READ, DRAM_WRITE),
    "occupancy": (TIME, GRID_SIZE, BLOCK_SIZE, REGISTERS, OCCUPANCY, THEORETICAL_OCCUPANCY, SM_PCT),
}
DEFAULT_METRIC_SET = "roofline"

_METRIC_NAME = re.compile(r"^(regex:.+|[A-Za-z0-9_]+__[A-Za-z0-9_.]+)$")


def resolve_metrics(metric_set: str | None = DEFAULT_METRIC_SET, metrics: str | Iterable[str] | None = None) -> list[str]:
    """The metrics to collect: the named set (``None`` for none) plus ``metrics`` (a list or a
    comma-separated string), without repeats, always starting with the kernel duration."""
    out: list[str] = [TIME]
    if metric_set is not None and str(metric_set).lower() not in ("", "none"):
        key = str(metric_set).lower()
        if key not in METRIC_SETS:
            raise MlmsIrError(f"unknown metric set '{metric_set}'; known sets: {', '.join(METRIC_SETS)} (or none, with --metrics)")
        out += METRIC_SETS[key]
    if metrics:
        extra = metrics.split(",") if isinstance(metrics, str) else list(metrics)
        for m in (str(x).strip() for x in extra):
            if not m:
                continue
            if not _METRIC_NAME.match(m):
                raise MlmsIrError(f"'{m}' is not an Nsight Compute metric name (like dram__bytes_read.sum); "
                                  "list the GPU's metrics with: ncu --query-metrics")
            out.append(m)
    return list(dict.fromkeys(out))
