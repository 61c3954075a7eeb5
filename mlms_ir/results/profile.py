"""The ``profile`` result: measured time per graph node, merged with its static cost.

Written by :func:`mlms_ir.runner.profile_backend` (``mlms_ir profile``); JSON with ``kind`` and
``schema_version`` (``docs/backends.rst``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import ModelRef, Result
from mlms_ir.results.run import RUN_SCHEMA_VERSION


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
class ProfileReport(Result):
    """Per-node times of one backend on one device at one batch, over ``runs`` traced runs."""

    kind = "profile"
    key_order = ("schema_version", "model", "backend", "device", "options", "batch", "runs", "coverage",
                 "node_time_us", "latency_ms", "traced_wall_ms", "tracing_overhead", "roofline_device",
                 "gpu", "system", "nodes", "unattributed", "mapping")

    model: ModelRef
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
