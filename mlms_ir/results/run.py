"""The ``run`` result: latency, throughput and the output check of each backend, device and batch.

Written by :func:`mlms_ir.runner.run_backends` (``mlms_ir run``); JSON with ``kind`` and
``schema_version`` (``docs/backends.rst``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import ModelRef, Result

#: Version of the run and profile JSON layouts. 1.1: ``kind`` added.
RUN_SCHEMA_VERSION = "1.1"


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
class RunReport(Result):
    """Every (backend, device, batch) of one ``run``: the model, the system it ran on, the settings."""

    kind = "run"
    key_order = ("schema_version", "model", "settings", "system", "runs")

    model: ModelRef
    system: dict[str, Any]
    settings: dict[str, Any]
    runs: list[RunRecord]
    schema_version: str = RUN_SCHEMA_VERSION


