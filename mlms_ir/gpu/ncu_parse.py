"""Reading the CSV table Nsight Compute writes (:func:`parse_ncu_csv`) into
:class:`~mlms_ir.results.counters.KernelCounters`.

Both layouts are read: the ``details`` page (one row per kernel and metric) and the ``raw`` page
(one row per kernel, a row of units under the header), with the ``==PROF==``/``==WARNING==`` lines
before the table, thousands separators, ``n/a`` values and scaled units. Each kernel's NVTX stack
(the column ``thread Domain:Push/Pop_Range:...``, cells like
``123  "<default domain>:mlms_ir.counters:none:..."  "<default domain>:mlms_ir::n0:none:..."``,
outermost first) names the node whose range is innermost.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from mlms_ir.gpu.ncu_metrics import NODE_PREFIX, REGISTERS
from mlms_ir.results.counters import KernelCounters

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
