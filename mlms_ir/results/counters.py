"""The ``counters`` result: hardware counters of one model run under Nsight Compute, per graph node
and in total (:func:`mlms_ir.gpu.ncu_run.run_counters` makes it,
:func:`mlms_ir.report.counters_text.render_counters` prints it).

JSON: ``kind`` (``"counters"``) and ``schema_version`` come first, then the fields of
:class:`CountersReport` in order. ``version`` (the integer 1) is the layout's first version
number, kept as it was; ``schema_version`` 1.1 adds ``kind`` and ``schema_version``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import ModelRef, Result, to_plain

#: The metric holding a kernel's duration (:attr:`KernelCounters.time_s`).
TIME = "gpu__time_duration.sum"
#: DRAM bytes read and written (:attr:`KernelCounters.dram_bytes`).
DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"

#: Version of the :class:`CountersReport` JSON layout (the integer ``version`` key).
COUNTERS_VERSION = 1
#: ``schema_version`` of the counters JSON. 1.1 adds ``kind`` and ``schema_version``.
COUNTERS_SCHEMA_VERSION = "1.1"


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

    @property
    def dram_bytes(self) -> float | None:
        """DRAM bytes read plus written; None when neither was collected."""
        vals = [v for v in (self.metrics.get(DRAM_READ), self.metrics.get(DRAM_WRITE)) if v is not None]
        return float(sum(vals)) if vals else None

    def to_dict(self) -> dict[str, Any]:
        """The kernel as JSON data (``grid`` and ``block`` as lists)."""
        return to_plain(self)


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


@dataclass
class CountersModel(ModelRef):
    """The shared model header and the bindings the counters were taken at (as given)."""

    batch: int | None = None
    dims: str | dict[str, Any] | None = None
    input_shapes: str | dict[str, Any] | list[Any] | None = None


@dataclass
class CountersReport(Result):
    """Hardware counters of one model run, per graph node and in total (``to_dict`` is JSON-safe;
    ``CountersReport.from_dict(report.to_dict())`` gives back an equal report)."""

    kind = "counters"
    key_order = ("schema_version",)

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
    model: CountersModel = field(default_factory=lambda: CountersModel(name="", path=None))
    metric_set: str | None = None
    metrics: list[str] = field(default_factory=list)
    #: Metrics this GPU or ncu does not know, dropped before the run that produced the figures.
    missing_metrics: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The layout's first version number (1), kept beside ``schema_version``.
    version: int = COUNTERS_VERSION
    #: Version of this JSON layout; 1.1 adds ``kind`` and ``schema_version``.
    schema_version: str = COUNTERS_SCHEMA_VERSION
