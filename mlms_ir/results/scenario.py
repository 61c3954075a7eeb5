"""The ``run --scenario`` result: MLPerf LoadGen's verdict and figures for each backend.

Written by :func:`mlms_ir.scenarios.run_scenarios`; JSON with ``kind`` and ``schema_version``
(``docs/scenarios.rst``). The verdict, percentiles and throughput are LoadGen's own (read from its
detail log); the latency histogram, the throughput over time and the batch sizes are what the
system under test saw (from the query reaching it to its completion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import ModelRef, Result

#: Version of the scenario JSON layout.
SCENARIO_SCHEMA_VERSION = "1.0"


@dataclass
class LatencyHistogram:
    """Sample latencies as the system under test saw them: ``counts[i]`` samples took between
    ``edges_ms[i]`` and ``edges_ms[i + 1]`` (log-spaced bins)."""

    edges_ms: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


@dataclass
class QpsTimeline:
    """Completed samples per second in consecutive bins of ``bin_s`` seconds from the test's start."""

    bin_s: float = 0.0
    samples_per_s: list[float] = field(default_factory=list)


@dataclass
class PeakProbe:
    """One Server run of a peak search: its target, LoadGen's verdict and what it reached."""

    target_qps: float
    valid: bool
    samples_per_s: float | None = None
    latency_ms: float | None = None  # at the bound's percentile (p99 by default)
    reasons: list[str] = field(default_factory=list)


@dataclass
class ScenarioRecord:
    """One backend under one LoadGen scenario. ``status``: ok (LoadGen ran; ``valid`` is its
    verdict), failed or unavailable. ``scenario`` is LoadGen's name (SingleStream, MultiStream,
    Server, Offline)."""

    backend: str
    device: str
    scenario: str
    status: str
    options: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    #: LoadGen's verdict (``Result is : VALID``) and, when invalid, why (its reasons, unmet
    #: minimums, the latency bound, early stopping)
    valid: bool | None = None
    invalid_reasons: list[str] = field(default_factory=list)
    #: Server: the target QPS and the latency bound at ``latency_percentile``; Offline: the
    #: expected QPS LoadGen sized its query with
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    latency_percentile: float | None = None
    #: samples per second: Server completed, Offline and SingleStream as LoadGen reports them
    #: (with its overhead), MultiStream from the queries' completions
    samples_per_s: float | None = None
    scheduled_samples_per_s: float | None = None
    #: LoadGen's latency figures per query (min, mean, p50, p90, p95, p97, p99, p99.9, max)
    latency_ms: dict[str, float] | None = None
    query_count: int | None = None
    samples_per_query: int | None = None
    overlatency_queries: int | None = None
    early_stopping: str = ""
    #: the largest batch the system under test ran and how many runs had each batch size
    #: (a partial batch is padded to the largest); ``batch_from``: fewer samples than this ran one
    #: by one, where the calibration found a padded batch dearer than single runs
    max_batch: int = 1
    batches: dict[str, int] = field(default_factory=dict)
    batch_from: int | None = None
    histogram: LatencyHistogram | None = None
    timeline: QpsTimeline | None = None
    #: ``--find-peak``: the highest valid target QPS found and every probe on the way
    peak_qps: float | None = None
    probes: list[PeakProbe] = field(default_factory=list)
    #: LoadGen's effective settings (``effective_*`` in its detail log) and its summary, verbatim
    loadgen_settings: dict[str, Any] = field(default_factory=dict)
    loadgen_summary: str = ""
    loadgen_errors: list[str] = field(default_factory=list)


@dataclass
class ScenarioReport(Result):
    """Every backend of one ``run --scenario``: the model, the system, the settings, LoadGen's results."""

    kind = "scenario"
    key_order = ("schema_version", "model", "settings", "system", "runs")

    model: ModelRef
    system: dict[str, Any]
    settings: dict[str, Any]
    runs: list[ScenarioRecord]
    schema_version: str = SCENARIO_SCHEMA_VERSION
