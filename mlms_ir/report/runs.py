"""Data model of ``run`` and ``profile`` results (JSON with ``schema_version``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mlms_ir.report.model import json_safe

RUN_SCHEMA_VERSION = "1.0"


@dataclass
class RunRecord:
    """One backend on one device at one batch size. ``status``: ok, failed or unavailable."""

    backend: str
    device: str
    batch: int
    status: str
    options: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    latency_ms: dict[str, float] | None = None
    throughput: float | None = None  # items (batch rows) per second, from the mean latency
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    compared_with: str | None = None
    #: the verdict against ``compared_with``: elements beyond ``atol + rtol*|ref|`` (the run's
    #: settings hold the tolerance), and whether there are none
    beyond_tolerance: int | None = None
    outputs_agree: bool | None = None
    gpu: dict[str, Any] | None = None


@dataclass
class RunReport:
    model: dict[str, Any]
    system: dict[str, Any]
    settings: dict[str, Any]
    runs: list[RunRecord]
    schema_version: str = RUN_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json_safe({"schema_version": self.schema_version, "model": self.model, "settings": self.settings,
                       "system": self.system, "runs": [dataclasses.asdict(r) for r in self.runs]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


@dataclass
class NodeTime:
    """Measured time of one graph node merged with its static cost."""

    id: str
    name: str
    op_type: str
    time_us: float
    share: float
    events: int
    macs: int | None
    flops: int | None
    achieved_flops_per_s: float | None
    intensity: float | None
    bound: str | None = None
    time_lower_bound_us: float | None = None
    fused_with: list[str] = field(default_factory=list)
    #: The kernels (or backend ops) that ran for it: ``{"name", "time_us", "calls"}`` per run, and
    #: for CUDA kernels their launch configuration (grid, block, registers_per_thread, ...).
    kernels: list[dict[str, Any]] = field(default_factory=list)
    #: On CUDA (:mod:`mlms_ir.gpu.kernels`): device work items per run, host time of the node's
    #: range, launch overhead (host minus GPU time), GPU idle time right before its kernels, and
    #: mean launch latency. None elsewhere.
    kernel_count: float | None = None
    cpu_us: float | None = None
    launch_overhead_us: float | None = None
    idle_us: float | None = None
    launch_latency_us: float | None = None


@dataclass
class ProfileReport:
    model: dict[str, Any]
    system: dict[str, Any]
    backend: str
    device: str
    options: dict[str, Any]
    batch: int
    runs: int
    coverage: float
    node_time_us: float
    latency_ms: dict[str, float]
    traced_wall_ms: float
    tracing_overhead: float
    nodes: list[NodeTime]
    unattributed: list[dict[str, Any]]
    mapping: dict[str, list[str]] = field(default_factory=dict)
    roofline_device: str | None = None
    #: On CUDA: the run-level execution profile (:class:`mlms_ir.gpu.kernels.GpuSummary` as a
    #: dict) and the NVML telemetry sampled during the timed runs (``telemetry``). None elsewhere.
    gpu: dict[str, Any] | None = None
    schema_version: str = RUN_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        order = ["schema_version", "model", "backend", "device", "options", "batch", "runs", "coverage",
                 "node_time_us", "latency_ms", "traced_wall_ms", "tracing_overhead", "roofline_device",
                 "gpu", "system", "nodes", "unattributed", "mapping"]
        return json_safe({k: d[k] for k in order})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"
