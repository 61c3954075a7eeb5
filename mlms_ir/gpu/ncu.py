"""Hardware counters per graph node, through Nsight Compute (``ncu``).

The model runs in a child process under ``ncu`` (:func:`run_counters`). The child loads the model,
prepares the torch backend on CUDA, runs warm-up iterations outside any counted range, then pushes
the NVTX range ``mlms_ir.counters`` and runs once more under
:meth:`~mlms_ir.backends.torch_backend.TorchSession.nvtx_ranges`, which wraps every graph node's
call in a push/pop range named ``mlms_ir::<node id>`` (the default NVTX domain). ``ncu`` profiles
only the kernels launched inside ``mlms_ir.counters`` (``--nvtx --nvtx-include mlms_ir.counters/``;
the trailing slash selects push/pop ranges), collects a chosen metric set per kernel and writes
one CSV table to a log file (``--csv --log-file``), so nothing the child prints can break parsing.

:func:`parse_ncu_csv` reads both layouts ``ncu`` writes: the ``details`` page (one row per kernel
and metric) and the ``raw`` page (one row per kernel, a row of units under the header), with the
``==PROF==``/``==WARNING==`` lines before the table, thousands separators, ``n/a`` values and
scaled units. Each kernel's NVTX stack (the column ``thread Domain:Push/Pop_Range:...``, cells like
``123  "<default domain>:mlms_ir.counters:none:..."  "<default domain>:mlms_ir::n0:none:..."``,
outermost first) names the node whose range is innermost. :func:`attribute_counters` sums the
kernels per node and sets measured FLOPs and DRAM bytes beside the static counts, with their
ratio, on the roofline of the GPU.

FLOPs are counted from SIMT instructions: ``add + mul + 2 * fma`` per precision. Tensor-core
instructions are counted separately and their FLOPs are *not* in that count: torch runs float32
convolutions as TF32 on tensor cores by default, so a Conv's measured FLOPs can be far below its
static count. No per-architecture factor is invented for them; the report says so instead.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from mlms_ir.errors import CountersUnavailableError, MlmsIrError
from mlms_ir.report.model import json_safe

log = logging.getLogger(__name__)

#: The NVTX push/pop range around the one counted run; ``ncu`` profiles only the kernels in it.
COUNTERS_RANGE = "mlms_ir.counters"
#: Name prefix of the NVTX range around each graph node (the torch backend's ``NODE_PREFIX``).
NODE_PREFIX = "mlms_ir::"
#: Environment variable naming the ``ncu`` executable to use.
NCU_ENV = "MLMS_IR_NCU"
#: Where ``ncu`` is looked for after ``$MLMS_IR_NCU`` and ``PATH`` (then ``/opt/nvidia/nsight-compute/*/ncu``).
NCU_PATHS: tuple[str, ...] = ("/usr/local/cuda/bin/ncu",)

# ---------------------------------------------------------------------------------------------- metrics
#: Kernel duration.
TIME = "gpu__time_duration.sum"
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
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
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


# ---------------------------------------------------------------------------------------------- finding ncu
def _executable(path: str | os.PathLike) -> str | None:
    p = Path(path).expanduser()
    if p.is_file() and os.access(p, os.X_OK):
        return str(p)
    return shutil.which(str(path)) if os.sep not in str(path) else None


_GET_NCU = ("install Nsight Compute (it ships with the CUDA toolkit, or from https://developer.nvidia.com/nsight-compute) "
            f"and put ncu on PATH, or set ${NCU_ENV} to its path")


def find_ncu(ncu: str | os.PathLike | None = None) -> str:
    """The ``ncu`` executable: ``ncu`` if given (a path or a command name), else ``$MLMS_IR_NCU``,
    else ``ncu`` on ``PATH``, else :data:`NCU_PATHS` and ``/opt/nvidia/nsight-compute/*/ncu``.

    Raises:
        mlms_ir.errors.CountersUnavailableError: none of these is an executable file.
    """
    if ncu:
        found = _executable(ncu)
        if found is None:
            raise CountersUnavailableError(f"the Nsight Compute executable '{ncu}' does not exist or is not executable; {_GET_NCU}")
        return found
    env = os.environ.get(NCU_ENV)
    if env:
        found = _executable(env)
        if found is None:
            raise CountersUnavailableError(f"${NCU_ENV} names '{env}', which does not exist or is not executable; "
                                           f"point it at Nsight Compute's ncu or unset it")
        return found
    found = shutil.which("ncu")
    if found:
        return found
    candidates = list(NCU_PATHS) + sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"), reverse=True)
    for c in candidates:
        found = _executable(c)
        if found:
            return found
    raise CountersUnavailableError(f"Nsight Compute's ncu was not found (not on PATH, ${NCU_ENV} unset, not in "
                                   f"{', '.join(NCU_PATHS)}); {_GET_NCU}")


def check_cuda() -> None:
    """Raise :class:`~mlms_ir.errors.CountersUnavailableError` unless the torch backend can run on
    CUDA here (torch with CUDA, a visible GPU, onnx2torch): the counted run needs it."""
    from mlms_ir.backends import registry

    avail = registry.get("torch").available("cuda")
    if not avail:
        raise CountersUnavailableError(f"hardware counters run the model with the torch backend on a CUDA GPU, which cannot run "
                                       f"here: {avail.reason}")


# ---------------------------------------------------------------------------------------------- the command
#: ``--replay-mode``: ``kernel`` (ncu's default) replays each kernel once per pass of the metric set,
#: saving and restoring the memory it writes; the whole model runs once.
REPLAY_MODE = "kernel"
#: ``--cache-control``: ``all`` (ncu's default) flushes the caches before every pass, so each
#: kernel's DRAM bytes are its cold-cache traffic and do not depend on the kernel before it.
CACHE_CONTROL = "all"
#: ``--clock-control``: ``base`` locks the GPU clocks to base, so figures repeat from run to run;
#: times are then longer than at boost clocks. (``base`` was ncu's default; the Nsight Compute
#: 2026.1 CLI manual lists ``boost`` as the default and adds ``boost``/``force-boost``, so it is
#: always passed explicitly.)
CLOCK_CONTROL = "base"
#: Values ``--clock-control`` takes (Nsight Compute CLI manual, "Profile" options, v2026.1).
CLOCK_CONTROLS = ("base", "boost", "force-boost", "none", "reset")


def ncu_command(
    ncu: str,
    child_argv: Sequence[str],
    metrics: Sequence[str],
    log_file: str | os.PathLike,
    *,
    page: str = "raw",
    nvtx_range: str | None = COUNTERS_RANGE,
    replay_mode: str = REPLAY_MODE,
    cache_control: str = CACHE_CONTROL,
    clock_control: str = CLOCK_CONTROL,
    launch_count: int | None = None,
    launch_skip: int | None = None,
    kernel_name: str | None = None,
    kernel_id: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``ncu`` command line that profiles ``child_argv``.

    ``ncu --target-processes all --nvtx --nvtx-include "mlms_ir.counters/" --metrics ...
    --replay-mode kernel --cache-control all --clock-control base --csv --page raw
    --print-units base --log-file LOG [limits] CHILD...``: only kernels inside the push/pop range
    ``nvtx_range`` (default domain; the trailing ``/`` selects push/pop rather than start/end
    ranges) are profiled, the CSV goes to ``log_file``. ``launch_count`` (``--launch-count``) stops
    after that many profiled kernels, ``launch_skip`` (``--launch-skip``) skips the first ones,
    ``kernel_name`` (``--kernel-name``, ``regex:`` allowed) and ``kernel_id`` (``--kernel-id``,
    ``context:stream:name:invocation``) filter kernels further. ``--print-units base`` keeps
    values unscaled (nanoseconds, bytes); :func:`parse_ncu_csv` scales other units anyway.
    """
    if page not in ("raw", "details"):
        raise MlmsIrError(f"the ncu CSV page must be 'raw' or 'details', not '{page}'")
    for name, value, allowed in (("replay mode", replay_mode, ("kernel", "application", "range", "app-range")),
                                 ("cache control", cache_control, ("all", "none")),
                                 ("clock control", clock_control, CLOCK_CONTROLS)):
        if value not in allowed:
            raise MlmsIrError(f"ncu {name} must be one of {', '.join(allowed)}, not '{value}'")
    if not metrics:
        raise MlmsIrError("no metrics to collect")
    cmd = [str(ncu), "--target-processes", "all"]
    if nvtx_range:
        cmd += ["--nvtx", "--nvtx-include", f"{nvtx_range}/"]
    cmd += ["--metrics", ",".join(metrics),
            "--replay-mode", replay_mode, "--cache-control", cache_control, "--clock-control", clock_control,
            "--csv", "--page", page, "--print-units", "base", "--log-file", os.fspath(log_file)]
    for flag, value in (("--launch-count", launch_count), ("--launch-skip", launch_skip)):
        if value is not None:
            if int(value) < 0 or (flag == "--launch-count" and int(value) == 0):
                raise MlmsIrError(f"{flag} must be a positive integer, not {value}")
            cmd += [flag, str(int(value))]
    if kernel_name:
        cmd += ["--kernel-name", kernel_name]
    if kernel_id:
        cmd += ["--kernel-id", kernel_id]
    cmd += list(extra_args)
    cmd += list(child_argv)
    return cmd


# ---------------------------------------------------------------------------------------------- parsing
@dataclass
class KernelCounters:
    """One profiled kernel: its figures in SI base units (seconds, bytes; percentages as ``%``;
    instruction and other counts as counts), and the graph node whose NVTX range was innermost
    when it was launched (None: launched outside every node's range)."""

    id: int
    name: str
    node: str | None
    metrics: dict[str, float | None]
    #: The unit of each figure in ``metrics`` after scaling (``second``, ``byte``, ``%``, ...).
    units: dict[str, str] = field(default_factory=dict)
    grid: tuple[int, int, int] | None = None
    block: tuple[int, int, int] | None = None
    registers: int | None = None
    #: The graph nodes on the kernel's NVTX stack, outermost first (the last one is ``node``).
    ranges: list[str] = field(default_factory=list)
    process_id: int | None = None
    device: str | None = None
    stream: str | None = None
    cc: str | None = None

    @property
    def time_s(self) -> float | None:
        return self.metrics.get(TIME)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grid"] = list(self.grid) if self.grid else None
        d["block"] = list(self.block) if self.block else None
        return d


_NA = frozenset({"", "n/a", "na", "nan", "-", "--", "(!)"})
_FIXED = frozenset({
    "ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Kernel Time", "Context", "Stream",
    "Block Size", "Grid Size", "Device", "CC", "Section Name", "Metric Name", "Metric Unit", "Metric Value",
    "Rule Name", "Rule Type", "Rule Description", "Estimated Speedup Type", "Estimated Speedup",
})
_PREFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "\u00b5": Decimal("1e-6"), "m": Decimal("1e-3"),
           "K": Decimal("1e3"), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
           "T": Decimal("1e12"), "P": Decimal("1e15"),
           "Ki": Decimal(1 << 10), "Mi": Decimal(1 << 20), "Gi": Decimal(1 << 30), "Ti": Decimal(1 << 40)}
_BASES = ("second", "byte", "cycle", "inst", "sector", "request", "warp", "thread", "block", "register",
          "wavefront", "transaction")
_ABBREV = {"ns": ("second", Decimal("1e-9")), "us": ("second", Decimal("1e-6")), "\u00b5s": ("second", Decimal("1e-6")),
           "ms": ("second", Decimal("1e-3")), "s": ("second", Decimal(1))}
_ONE = Decimal(1)


def _unit_word(word: str) -> tuple[str, Decimal]:
    w = word.strip()
    if w in _ABBREV:
        return _ABBREV[w]
    if w.lower().endswith("hz"):
        prefix = w[:-2]
        if prefix == "":
            return "hz", _ONE
        if prefix in _PREFIX or prefix.upper() in _PREFIX:
            return "hz", _PREFIX.get(prefix, _PREFIX.get(prefix.upper(), _ONE))
    for base in _BASES:
        if w.endswith(base):
            prefix = w[: -len(base)]
            if prefix == "":
                return base, _ONE
            if prefix in _PREFIX:
                return base, _PREFIX[prefix]
    return w, _ONE


def unit_scale(unit: str) -> tuple[str, Decimal]:
    """The SI base unit of an ncu unit and the factor to it: ``usecond`` -> (``second``, 1e-6),
    ``Kbyte`` -> (``byte``, 1e3), ``Gbyte/second`` -> (``byte/second``, 1e9), ``%`` -> (``%``, 1).
    An unknown unit is kept with factor 1."""
    u = (unit or "").strip()
    if u in ("", "%"):
        return u, _ONE
    if "/" in u:
        num, _, den = u.partition("/")
        nb, nf = _unit_word(num)
        db, df = unit_scale(den)
        return f"{nb}/{db}", nf / df
    return _unit_word(u)


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    t = str(text).strip().strip('"').strip()
    if t.lower() in _NA:
        return None
    t = t.replace(",", "")  # thousands separators: ncu writes 1,234,567
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def scale_value(text: str | None, unit: str) -> tuple[float | None, str]:
    """``("1,536", "Kbyte")`` -> ``(1536000.0, "byte")``; ``n/a`` and non-numbers -> None. The
    product is exact (decimal), so the same quantity written in different units gives the same float."""
    base, factor = unit_scale(unit)
    d = _decimal(text)
    return (float(d * factor) if d is not None else None), base


_NODE_RANGE = re.compile(re.escape(NODE_PREFIX) + r"([^\s\"':]+)")


def _is_nvtx_column(name: str) -> bool:
    n = name.strip()
    return "Push/Pop" in n or "Start/Stop" in n or n.lower().startswith("nvtx") or "Domain:" in n


def node_ranges(cells: Iterable[str]) -> list[str]:
    """The graph node ids named by ``mlms_ir::<id>`` ranges in NVTX cells, in order (outermost first)."""
    out: list[str] = []
    for cell in cells:
        out += _NODE_RANGE.findall(cell or "")
    return out


def _dims(text: str | None) -> tuple[int, int, int] | None:
    nums = re.findall(r"\d+", text or "")
    if len(nums) != 3:
        return None
    return int(nums[0]), int(nums[1]), int(nums[2])


def _int(text: str | None) -> int | None:
    d = _decimal(text)
    return int(d) if d is not None and d == d.to_integral_value() else None


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the CSV table in ncu's output (``==PROF==`` lines and anything else
    before the header skipped; repeated headers and ``==`` lines inside dropped)."""
    lines = text.lstrip("\ufeff").splitlines()
    start = None
    for i, line in enumerate(lines):
        s = line.strip().lstrip("\ufeff")
        if s.startswith(('"ID"', "ID,")):
            start = i
            break
    if start is None:
        return [], []
    body = [ln for ln in lines[start:] if not ln.lstrip().startswith("==")]
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    if not rows:
        return [], []
    header = [h.strip() for h in rows[0]]
    data = [r for r in rows[1:] if r and [c.strip() for c in r] != header]
    return header, data


class _Builder:
    def __init__(self, row: list[str], header: list[str], idx: dict[str, int], nvtx: list[int]) -> None:
        def get(col: str) -> str | None:
            k = idx.get(col)
            return row[k].strip() if k is not None and k < len(row) else None

        push = [row[k] for k in nvtx if k < len(row) and "Push/Pop" in header[k]]
        other = [row[k] for k in nvtx if k < len(row) and "Push/Pop" not in header[k]]
        ranges = node_ranges(push) or node_ranges(other)
        self.kernel = KernelCounters(
            id=_int(get("ID")) or 0,
            name=get("Kernel Name") or "",
            node=ranges[-1] if ranges else None,
            metrics={},
            units={},
            grid=_dims(get("Grid Size")),
            block=_dims(get("Block Size")),
            ranges=ranges,
            process_id=_int(get("Process ID")),
            device=get("Device"),
            stream=get("Stream"),
            cc=get("CC"),
        )

    def add(self, name: str, value: str | None, unit: str) -> None:
        v, base = scale_value(value, unit)
        self.kernel.metrics[name] = v
        self.kernel.units[name] = base

    def done(self) -> KernelCounters:
        reg = self.kernel.metrics.get(REGISTERS)
        self.kernel.registers = int(reg) if reg is not None else None
        return self.kernel


def parse_ncu_csv(text: str, metrics: Iterable[str] | None = None) -> list[KernelCounters]:
    """Kernels from ncu's CSV output, either layout: the ``details`` page (columns ``ID``,
    ``Process ID``, ..., ``Kernel Name``, ..., ``Metric Name``, ``Metric Unit``, ``Metric Value``;
    one row per kernel and metric) or the ``raw`` page (one column per metric, a row of units
    under the header, one row per kernel). Lines before the header (``==PROF==``, ``==WARNING==``,
    the program's own output) are skipped. Values are scaled to SI base units, thousands separators
    removed, ``n/a`` read as None. The kernel's node is the innermost ``mlms_ir::<id>`` range in
    its NVTX columns (push/pop ranges first). Kernels come in ncu's order (by ID).

    ``metrics``: keep only these metrics (and the registers per thread) on each kernel; a name
    without a suffix (``dram__bytes``, which ncu expands) keeps its sub-metrics, a ``regex:`` name
    keeps everything. The real ``--page raw`` table also carries every automatically collected metric
    (``device__attribute_*``, ``launch__*``, ``nvlink__*``, ``numa__*``, ``profiler__*``: 464 columns
    per kernel in the B200 sample tests/data/ncu_real_raw_b200.csv), which would otherwise fill every
    kernel and the report."""
    names = None if metrics is None else list(metrics)
    if names is not None and any(m.startswith("regex:") for m in names):
        names = None

    def wanted(name: str) -> bool:
        return names is None or name == REGISTERS or any(name == m or name.startswith(m + ".") for m in names)

    header, rows = _table(text)
    if not header:
        return []
    idx: dict[str, int] = {}
    for k, h in enumerate(header):
        idx.setdefault(h, k)
    nvtx = [k for k, h in enumerate(header) if _is_nvtx_column(h)]
    kernels: dict[tuple, _Builder] = {}
    if "Metric Name" in idx and "Metric Value" in idx:  # details page
        i_name, i_value, i_unit = idx["Metric Name"], idx["Metric Value"], idx.get("Metric Unit")
        for row in rows:
            if _int(row[idx["ID"]] if idx["ID"] < len(row) else None) is None:
                continue
            name = row[i_name].strip() if i_name < len(row) else ""
            if not name:  # a rule's row, not a metric's
                continue
            if not wanted(name):  # a section's label row ("Duration") or a metric not asked for
                continue
            key = (_cell(row, idx.get("Process ID")), _cell(row, idx["ID"]))
            b = kernels.get(key)
            if b is None:
                b = kernels[key] = _Builder(row, header, idx, nvtx)
            unit = row[i_unit].strip() if i_unit is not None and i_unit < len(row) else ""
            b.add(name, row[i_value] if i_value < len(row) else None, unit)
    else:  # raw page
        metric_cols = [k for k, h in enumerate(header) if h not in _FIXED and k not in nvtx and "__" in h
                       and wanted(h)]
        units = [""] * len(header)
        for row in rows:
            id_cell = _cell(row, idx.get("ID"))
            if not id_cell:
                if any(c.strip() for c in row):  # the units row
                    units = [c.strip() for c in row] + [""] * (len(header) - len(row))
                continue
            if _int(id_cell) is None:
                continue
            b = kernels[(_cell(row, idx.get("Process ID")), id_cell)] = _Builder(row, header, idx, nvtx)
            for k in metric_cols:
                b.add(header[k], row[k] if k < len(row) else None, units[k] if k < len(units) else "")
    out = [b.done() for b in kernels.values()]
    out.sort(key=lambda kc: (kc.process_id or 0, kc.id))
    return out


def _cell(row: list[str], k: int | None) -> str:
    return row[k].strip() if k is not None and k < len(row) else ""


# ---------------------------------------------------------------------------------------------- attribution
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


@dataclass(kw_only=True)
class CounterFigures:
    """Measured figures of a set of kernels (a node's, or all of them), beside the static counts.

    Every measured figure is None when its metrics were not collected. ``flops`` counts SIMT
    floating-point work only (``add + mul + 2 * fma``); tensor-core work is in ``tensor_inst``
    (warp instructions), not in ``flops``."""

    kernels: int = 0
    gpu_time_us: float = 0.0
    flops_by_precision: dict[str, float | None] = field(default_factory=dict)
    flops: float | None = None
    tensor_inst: float | None = None
    #: Cycles the tensor pipe was active (``sm__pipe_tensor_cycles_active.sum``).
    tensor_cycles: float | None = None
    #: Tensor-core instructions ran: ``flops`` (and its ratio to the static count) leaves their work out.
    tensor_core: bool = False
    dram_read_bytes: float | None = None
    dram_write_bytes: float | None = None
    dram_bytes: float | None = None
    #: Kernel-time-weighted means of the per-kernel percentages.
    sm_pct: float | None = None
    memory_pct: float | None = None
    occupancy_pct: float | None = None
    achieved_flops_per_s: float | None = None
    #: Measured arithmetic intensity: SIMT FLOPs per DRAM byte.
    intensity: float | None = None
    static_flops: int | None = None
    static_bytes: int | None = None
    #: Measured / static.
    flops_ratio: float | None = None
    bytes_ratio: float | None = None
    #: The roofline at the measured intensity: min(peak, intensity x bandwidth), and the share of it achieved.
    attainable_flops_per_s: float | None = None
    roofline_share: float | None = None
    bound: str | None = None


@dataclass(kw_only=True)
class NodeCounters(CounterFigures):
    """The kernels launched inside one graph node's NVTX range, summed."""

    id: str
    name: str = ""
    op_type: str = ""
    #: The node's kernels, longest first (names as ncu prints them), at most five.
    kernel_names: list[str] = field(default_factory=list)
    #: Share of all profiled kernel time.
    share: float = 0.0


#: Version of the :class:`CountersReport` JSON layout.
COUNTERS_VERSION = 1


@dataclass
class CountersReport:
    """Hardware counters of one model run, per graph node and in total (``to_dict`` is JSON-safe)."""

    nodes: list[NodeCounters]
    totals: CounterFigures
    #: Share of profiled kernel time attributed to graph nodes.
    coverage: float
    #: Kernels launched inside the counted range but outside every node's range.
    unattributed: list[KernelCounters]
    kernels: list[KernelCounters]
    #: Graph nodes that launched no kernel (views such as Flatten or Reshape, folded constants).
    nodes_without_kernels: list[str] = field(default_factory=list)
    device: str | None = None
    peak_flops_per_s: float | None = None
    peak_kind: str | None = None
    bandwidth_bytes_per_s: float | None = None
    ridge_intensity: float | None = None
    gpu: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    metric_set: str | None = None
    metrics: list[str] = field(default_factory=list)
    #: Metrics this GPU or ncu does not know, dropped before the run that produced the figures.
    missing_metrics: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    version: int = COUNTERS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


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

    ``static_nodes``: the :class:`~mlms_ir.report.model.NodeCost` list of an analysis (or the
    :class:`~mlms_ir.report.model.Analysis` itself). ``device``: a
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


# ---------------------------------------------------------------------------------------------- running ncu
_PERM_FIX = ("Nsight Compute may not read this GPU's performance counters (ERR_NVGPUCTRPERM): run as root (sudo -E), or "
             "let every user read them with 'options nvidia NVreg_RestrictProfilingToAdminUsers=0' in a file under "
             "/etc/modprobe.d and a driver reload or reboot; in a container add --cap-add=SYS_ADMIN "
             "(https://developer.nvidia.com/ERR_NVGPUCTRPERM)")
_MISSING_METRIC = re.compile(r"Failed to find metric\s+(?:regex:)?\^?([A-Za-z0-9_]+)")


def _model_file(model: Any, tmp: Path) -> str:
    from mlms_ir.ir import Graph

    if isinstance(model, Graph):
        loaded = getattr(model, "loaded", None)
        model = (loaded.path or loaded.source) if loaded is not None else model.model
    if isinstance(model, (str, os.PathLike)):
        return os.path.abspath(os.fspath(model))
    path = tmp / "model.onnx"
    if isinstance(model, (bytes, bytearray, memoryview)):
        path.write_bytes(bytes(model))
    else:
        path.write_bytes(model.SerializeToString())
    return str(path)


def _known_errors() -> dict[str, type]:
    from mlms_ir.backends import base  # noqa: F401 - registers the backend errors as subclasses

    out: dict[str, type] = {}
    stack: list[type] = [MlmsIrError]
    while stack:
        c = stack.pop()
        out[c.__name__] = c
        stack += c.__subclasses__()
    return out


def _run(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``cmd`` in its own process group; on timeout, kill that group (ncu and the child).

    ncu formats numbers by the locale: real ``--csv`` output from a Spanish locale groups digits
    with dots ("2.508.800" bytes), which :func:`scale_value` would read as 2.5. ``LC_ALL=C`` makes
    it print plain (or comma-grouped) numbers; the child Python is unaffected (PEP 538 coerces the
    C locale to UTF-8)."""
    env = {**os.environ, "LC_ALL": "C"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM first: ncu then restores the GPU clocks it locked (--clock-control base)
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                proc.kill() if sig == signal.SIGKILL else proc.terminate()
            try:
                proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return proc.returncode, out, err


def _tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:]


def run_counters(
    model: Any,
    *,
    batch: int | None = None,
    dims: Any = None,
    input_shapes: Any = None,
    inputs: str | Mapping[str, Any] | None = None,
    seed: int = 0,
    metric_set: str | None = DEFAULT_METRIC_SET,
    metrics: str | Iterable[str] | None = None,
    ncu: str | None = None,
    device: Any = None,
    precision: str = "fp32",
    cuda_device: str = "cuda",
    warmup: int = 2,
    timeout: float = 1800.0,
    page: str = "raw",
    replay_mode: str = REPLAY_MODE,
    cache_control: str = CACHE_CONTROL,
    clock_control: str = CLOCK_CONTROL,
    launch_count: int | None = None,
    launch_skip: int | None = None,
    kernel_name: str | None = None,
    kernel_id: str | None = None,
    workdir: str | os.PathLike | None = None,
) -> CountersReport:
    """Run ``model`` once on the torch backend on CUDA under Nsight Compute and attribute the
    per-kernel counters to its graph nodes.

    ``batch``/``dims``/``input_shapes`` bind the model's dims as for :func:`mlms_ir.load`;
    ``inputs`` is an ``.npz`` file or a dict of arrays (default: seeded random feeds). The metrics
    are the named ``metric_set`` (see :data:`METRIC_SETS`; ``None`` for none) plus ``metrics``.
    ``device`` is the roofline device (a table name, a spec or a
    :class:`~mlms_ir.passes.roofline.Device`); by default the table's entry for the GPU the model
    ran on. ``precision`` is the torch backend's (``fp32``, ``fp16``, ``bf16``), ``cuda_device`` the GPU (``cuda`` or ``cuda:N``). ``warmup`` runs
    precede the counted one, outside the counted range. The ``ncu`` settings and limits are those
    of :func:`ncu_command`. ``workdir`` keeps the spec, ncu's log (the CSV) and the child's result
    there instead of in a temporary folder. A metric the GPU or ncu does not know is dropped and the
    run repeated once (listed in ``missing_metrics``).

    Raises:
        mlms_ir.errors.CountersUnavailableError: no ncu, no CUDA GPU for torch, no permission to
            read the counters, ncu failed or ran past ``timeout`` seconds, or no kernel was profiled.
        mlms_ir.errors.MlmsIrError: the model or a binding is bad (the usual load errors), or the
            torch backend failed on it.
    """
    from mlms_ir.ir import load
    from mlms_ir.passes.analyze import analyze

    check_cuda()
    exe = find_ncu(ncu)
    wanted = resolve_metrics(metric_set, metrics)
    if device is not None:  # a bad roofline device fails now, not after the ncu run
        from mlms_ir.passes.roofline import resolve_device

        device = resolve_device(device)
    if not (cuda_device == "cuda" or (cuda_device.startswith("cuda:") and cuda_device[5:].isdigit())):
        raise MlmsIrError(f"cuda_device must be 'cuda' or 'cuda:N', not '{cuda_device}'")
    graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims)
    analysis = analyze(graph)
    with tempfile.TemporaryDirectory(prefix="mlms_ir_ncu_") as scratch:
        tmp = Path(workdir) if workdir is not None else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        feeds_path = None
        if isinstance(inputs, Mapping):
            import numpy as np

            feeds_path = str(tmp / "inputs.npz")
            np.savez(feeds_path, **{k: np.asarray(v) for k, v in inputs.items()})
        elif inputs is not None:
            feeds_path = os.path.abspath(os.fspath(inputs))
        result_path = tmp / "result.json"
        spec = {
            "model": _model_file(model, tmp),
            "input_shapes": input_shapes if not isinstance(input_shapes, tuple) else list(input_shapes),
            "batch": batch,
            "dims": dims,
            "inputs": feeds_path,
            "seed": seed,
            "warmup": int(warmup),
            "precision": precision,
            "cuda_device": cuda_device,
            "range": COUNTERS_RANGE,
            "result": str(result_path),
        }
        spec_path = tmp / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        child = [sys.executable, "-m", "mlms_ir.gpu.ncu", "child", str(spec_path)]
        log_file = tmp / "ncu.csv"
        metric_list = list(wanted)
        dropped: list[str] = []
        # ncu stops at an unknown metric ("==ERROR== Failed to find metric regex:^name..."); it is not
        # known to name every unknown one at once, so drop and rerun a few times, not just once.
        retries = 3
        for attempt in range(retries + 1):
            for p in (log_file, result_path):
                p.unlink(missing_ok=True)
            cmd = ncu_command(exe, child, metric_list, log_file, page=page, replay_mode=replay_mode,
                              cache_control=cache_control, clock_control=clock_control, launch_count=launch_count,
                              launch_skip=launch_skip, kernel_name=kernel_name, kernel_id=kernel_id)
            log.info("running: %s", " ".join(cmd))
            try:
                rc, out, err = _run(cmd, timeout)
            except subprocess.TimeoutExpired:
                raise CountersUnavailableError(
                    f"ncu did not finish within {timeout:g} s (it replays every kernel once per pass of the metric set); "
                    "raise the timeout, profile fewer kernels (launch_count, --launch-count) or use a smaller metric set "
                    "(--metric-set throughput)") from None
            except OSError as exc:
                raise CountersUnavailableError(f"cannot start ncu ({exe}): {exc}") from exc
            text = log_file.read_text(errors="replace") if log_file.is_file() else ""
            everything = f"{text}\n{out}\n{err}"
            missing = {m.group(1) for m in _MISSING_METRIC.finditer(everything)}
            if missing:
                gone = [m for m in metric_list if m.removeprefix("regex:").split(".")[0].lstrip("^") in missing]
                keep = [m for m in metric_list if m not in gone]
                if attempt < retries and gone and TIME in keep:
                    log.warning("ncu does not know %s on this GPU; running again without", ", ".join(gone))
                    dropped += gone
                    metric_list = keep
                    continue
                raise CountersUnavailableError(f"ncu does not know the metric(s) {', '.join(sorted(missing))} on this GPU; "
                                               "choose others (ncu --query-metrics lists them)")
            break
        result: dict[str, Any] = {}
        if result_path.is_file():
            try:
                result = json.loads(result_path.read_text())
            except json.JSONDecodeError:
                result = {}
        if "ERR_NVGPUCTRPERM" in everything:
            raise CountersUnavailableError(_PERM_FIX)
        if result.get("error"):
            cls = _known_errors().get(str(result.get("type")), CountersUnavailableError)
            if not (isinstance(cls, type) and issubclass(cls, MlmsIrError)):
                cls = CountersUnavailableError
            raise cls(str(result["error"]))
        errors = [ln.strip() for ln in everything.splitlines() if ln.strip().startswith("==ERROR==")]
        kernels = parse_ncu_csv(text, metrics=metric_list)
        if errors and not kernels:
            raise CountersUnavailableError(f"ncu failed: {errors[0].removeprefix('==ERROR==').strip()[:400]}")
        if not (result.get("ok") or (not result and rc == 0)):
            raise CountersUnavailableError(f"the profiled run failed (ncu exit status {rc}): {_tail(err or out or text) or '(no output)'}")
        if not kernels:
            raise CountersUnavailableError(
                f"ncu profiled no kernel inside the NVTX range '{COUNTERS_RANGE}' (exit status {rc}; did the model run on "
                f"the GPU?); its last words: {_tail(text or err or out) or '(none)'}")
        for e in errors:
            log.warning("ncu: %s", e)
    dev = device
    if dev is None and result.get("gpu"):
        from mlms_ir.passes.roofline import match_gpu

        dev = match_gpu(result["gpu"])
    report = attribute_counters(kernels, analysis.nodes, dev)
    loaded = getattr(graph, "loaded", None)
    report.model = {"name": loaded.name if loaded else graph.proto.name,
                    "path": str(loaded.path) if loaded and loaded.path else None,
                    "batch": batch, "dims": dims if isinstance(dims, (str, dict)) or dims is None else str(dims),
                    "input_shapes": input_shapes if isinstance(input_shapes, (str, dict, list)) or input_shapes is None
                    else str(input_shapes)}
    report.gpu = result.get("gpu")
    report.metric_set = metric_set
    report.metrics = metric_list
    report.missing_metrics = dropped
    report.settings = {
        "ncu": exe, "page": page, "replay_mode": replay_mode, "cache_control": cache_control,
        "clock_control": clock_control, "launch_count": launch_count, "launch_skip": launch_skip,
        "kernel_name": kernel_name, "kernel_id": kernel_id, "precision": precision, "warmup": int(warmup),
        **{k: result[k] for k in ("torch", "cuda", "cudnn_allow_tf32", "matmul_allow_tf32", "capability") if k in result},
    }
    if workdir is not None:
        report.settings["log_file"] = str(Path(workdir) / "ncu.csv")
    if dropped:
        report.notes.append(f"this GPU or ncu does not know {', '.join(dropped)}: left out")
    if clock_control == "base":
        report.notes.append("ncu locked the GPU clocks to base (--clock-control base): kernel times are longer than at "
                            "boost clocks; quote latency from 'mlms_ir run', not from here")
    if cache_control == "all":
        report.notes.append("caches were flushed before every kernel (--cache-control all): DRAM bytes are cold-cache traffic")
    if dev is None:
        report.notes.append(f"no roofline: GPU '{result.get('gpu') or '?'}' has no entry in the device table "
                            "(give one with --roofline NAME, or fp32=FLOPS,bw=BYTES_PER_S; device= in Python)")
    return report


# ---------------------------------------------------------------------------------------------- the child
def _child(spec_path: str) -> int:
    """What runs under ncu: load, prepare torch on CUDA, warm up, then one run inside the counted
    NVTX range with a range per node. Writes the GPU's name (or the error) to the spec's result file;
    prints nothing on stdout."""
    spec = json.loads(Path(spec_path).read_text())
    result_path = Path(spec["result"])
    result: dict[str, Any] = {}

    def write() -> None:
        result_path.write_text(json.dumps(result))

    try:
        from mlms_ir.backends import registry
        from mlms_ir.inputs import load_feeds, random_feeds
        from mlms_ir.ir import load

        check_cuda()
        import torch

        dev = str(spec.get("cuda_device") or "cuda")
        index = int(dev.partition(":")[2] or 0)
        result.update(gpu=torch.cuda.get_device_name(index), torch=torch.__version__, cuda=torch.version.cuda,
                      capability=".".join(map(str, torch.cuda.get_device_capability(index))),
                      cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
                      matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32))
        graph = load(spec["model"], input_shapes=spec.get("input_shapes"), batch=spec.get("batch"), dims=spec.get("dims"))
        feeds = load_feeds(spec["inputs"]) if spec.get("inputs") else random_feeds(graph, int(spec.get("seed", 0)))
        with registry.get("torch").prepare(graph, dev, precision=spec.get("precision", "fp32")) as session:
            for _ in range(int(spec.get("warmup", 2))):
                session.run(feeds)
            session.synchronize()
            torch.cuda.nvtx.range_push(spec.get("range", COUNTERS_RANGE))
            try:
                with session.nvtx_ranges():
                    session.run(feeds)
                session.synchronize()
            finally:
                torch.cuda.nvtx.range_pop()
            result["unmapped"] = list(getattr(session, "unmapped", []) or [])
        result["ok"] = True
    except MlmsIrError as exc:
        result.update(error=str(exc), type=type(exc).__name__)
        write()
        print(f"mlms_ir: error: {exc}", file=sys.stderr)
        return 2
    write()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlms_ir.gpu.ncu child SPEC.json``: the process ncu profiles."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "child":
        print("usage: python -m mlms_ir.gpu.ncu child SPEC.json (started by mlms_ir.gpu.ncu.run_counters)", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("MLMS_IR_LOG", "WARNING").upper())
    return _child(args[1])


# ---------------------------------------------------------------------------------------------- rendering
def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _hc(v: float | None, unit: str = "") -> str:
    from mlms_ir.report.text import human_count

    return "-" if v is None else human_count(v, unit)


def _fmt_share(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if v >= 1e-3 or v == 0 else f"{v * 100:.2g}%"


def _fmt_pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render_counters(report: CountersReport, console: Any = None, top: int = 20) -> None:
    """Print ``report`` as rich tables: the summary, the ``top`` nodes by GPU time, the
    unattributed kernels and the notes."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from mlms_ir.report.text import fit_table, human_time_us

    console = console or Console()
    t = report.totals
    head = Table(title=Text(f"mlms_ir counters: {report.model.get('name') or '?'} on {report.gpu or 'GPU ?'} (Nsight Compute)"),
                 box=box.SIMPLE_HEAVY, show_header=False)
    head.add_column("what", style="bold")
    head.add_column("value")
    s = report.settings
    head.add_row("metrics", Text(f"{report.metric_set or 'custom'} ({len(report.metrics)} metrics); replay {s.get('replay_mode', '?')}, "
                                 f"cache control {s.get('cache_control', '?')}, clock control {s.get('clock_control', '?')}"))
    head.add_row("kernels", f"{t.kernels} profiled, {human_time_us(t.gpu_time_us)} GPU time; "
                            f"{report.coverage:.1%} attributed to graph nodes")
    head.add_row("FLOPs (SIMT)", f"{_hc(t.flops)} measured, {_hc(t.static_flops)} static (ratio {_fmt_ratio(t.flops_ratio)})"
                 + (f"; {_hc(t.tensor_inst)} tensor-core instructions not counted" if t.tensor_core else ""))
    head.add_row("DRAM bytes", f"{_hc(t.dram_bytes, 'B')} measured, {_hc(t.static_bytes, 'B')} static "
                               f"(ratio {_fmt_ratio(t.bytes_ratio)})")
    head.add_row("throughput", f"{_hc(t.achieved_flops_per_s, 'FLOP/s')}; SM {_fmt_pct(t.sm_pct)} %, memory "
                               f"{_fmt_pct(t.memory_pct)} % of peak (time-weighted)")
    if report.device:
        head.add_row("roofline", f"{report.device}: {_hc(report.peak_flops_per_s, 'FLOP/s')} ({report.peak_kind}), "
                                 f"{_hc(report.bandwidth_bytes_per_s, 'B/s')}, ridge {_fmt_ratio(report.ridge_intensity)} FLOP/B")
    console.print(head)
    cols = ["id", "name", "op", "kernels", "GPU time", "share", "FLOPs", "static", "ratio", "DRAM B", "static B", "B ratio",
            "FLOP/B", "FLOP/s"]
    if report.device:
        cols += ["% of roof", "bound"]
    cols += ["SM %", "mem %", "TC"]
    rows = []
    for n in report.nodes[:top]:
        row = [n.id, n.name or "-", n.op_type or "-", str(n.kernels), human_time_us(n.gpu_time_us), f"{n.share:.1%}",
               _hc(n.flops), _hc(n.static_flops), _fmt_ratio(n.flops_ratio), _hc(n.dram_bytes),
               _hc(n.static_bytes), _fmt_ratio(n.bytes_ratio), _fmt_ratio(n.intensity), _hc(n.achieved_flops_per_s)]
        if report.device:
            row += [_fmt_share(n.roofline_share), n.bound or "-"]
        row += [_fmt_pct(n.sm_pct), _fmt_pct(n.memory_pct), "yes" if n.tensor_core else ""]
        rows.append(row)
    console.print(fit_table(f"top {top} nodes by GPU time", cols, rows, left=("id", "name", "op", "bound", "TC")))
    if report.unattributed:
        u = Table(title="kernels outside every node's range", box=box.SIMPLE)
        for c in ("ID", "kernel", "GPU time", "DRAM B"):
            u.add_column(c, justify="left" if c == "kernel" else "right", overflow="ellipsis", no_wrap=True,
                         max_width=60 if c == "kernel" else None)
        for k in report.unattributed[:10]:
            dram = _sum((k.metrics.get(DRAM_READ), k.metrics.get(DRAM_WRITE)))
            u.add_row(str(k.id), Text(k.name), human_time_us((k.time_s or 0.0) * 1e6), _hc(dram))
        console.print(u)
    for note in report.notes:
        console.print(Text(note, style="yellow"))


if __name__ == "__main__":
    sys.exit(main())
