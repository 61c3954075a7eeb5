"""MLPerf Inference scenarios: MLCommons' LoadGen drives the queries, a backend session serves them.

:func:`run_scenarios` is the library behind ``mlms_ir run --scenario``. For each backend it
prepares a session (and one at the largest batch where the model's leading dim is free), builds a
query sample library (QSL) of seeded random samples (:func:`mlms_ir.inputs.feeds_for`, one seed per
sample), and hands LoadGen a system under test (SUT) that runs them:

- SingleStream, MultiStream and Offline queries are served on LoadGen's issuing thread (LoadGen
  issues the next one only when this one is done), their samples in batches of up to ``max_batch``;
- Server queries go to a worker thread, which runs what is waiting in batches of up to
  ``max_batch`` (dynamic batching), so arrivals keep their Poisson schedule while the SUT is busy.

LoadGen runs in PerformanceOnly mode with small, settable minimums (``duration_s``,
``min_queries``); its expected latency / QPS come from a short calibration with the harness
(:func:`mlms_ir.harness.measure`) so that it generates enough queries. The verdict, percentiles and
throughput are LoadGen's own, read from its detail log; the histogram and the throughput over
time are measured in the SUT.

``find_peak`` searches the highest Server target QPS that LoadGen finds valid: doubling (or
halving) from the calibrated capacity, then bisection to ``peak_tolerance``. A Server run at a
QPS far beyond the SUT is stopped after ``max_queries`` (default: what 2x the calibrated capacity
would serve in ``duration_s``) instead of draining millions of queued queries; it is invalid
either way, and its reasons say so.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir._lazy import lazy_import
from mlms_ir.errors import MlmsIrError
from mlms_ir.harness import measure
from mlms_ir.inputs import feeds_for
from mlms_ir.ir import Graph, load
from mlms_ir.ir.load import ModelSource
from mlms_ir.ir.shapes import Dims, InputShapes
from mlms_ir.progress import progress_bar
from mlms_ir.results.base import model_ref
from mlms_ir.results.scenario import LatencyHistogram, PeakProbe, QpsTimeline, ScenarioRecord, ScenarioReport

log = logging.getLogger(__name__)

#: Our scenario names (lower case, as the CLI takes them) -> LoadGen's.
SCENARIOS = {"singlestream": "SingleStream", "multistream": "MultiStream", "server": "Server", "offline": "Offline"}
#: The largest batch the SUT forms when none is given (SingleStream never batches; MultiStream
#: takes its samples per query).
DEFAULT_MAX_BATCH = {"singlestream": 1, "multistream": 8, "server": 8, "offline": 32}
#: LoadGen's default samples per MultiStream query.
MULTISTREAM_SAMPLES = 8
#: Minimum queries by default: LoadGen's own default (100), or what early stopping needs to accept a
#: run with no query over the bound: MultiStream's 662 (LoadGen's figure for its p99), Server's
#: ceil(log 0.01 / log p) at the bound's percentile p (459 at p99); Offline is one query.
DEFAULT_MIN_QUERIES = {"singlestream": 100, "multistream": 662, "offline": 1}
#: A Server run is stopped after the queries this many times the calibrated capacity serves in the
#: test's duration (``max_queries`` None): beyond it the run is invalid anyway.
QUERY_CAP_FACTOR = 2.0
#: Offline's query holds this many times the samples per second a short pilot test served.
OFFLINE_MARGIN = 2.0
#: An Offline query sized by mlms_ir that still ends before the minimum duration (the machine
#: sped up after the pilot) is sized again from what it served, at most this many times.
OFFLINE_RESIZES = 3
#: Python's GIL switch interval while LoadGen runs (its default, 5 ms, shows up in Server's p99).
SWITCH_INTERVAL_S = 1e-4


def scenario_key(name: str) -> str:
    """``server``, ``Server``, ``single-stream``, ``single_stream`` -> our key (``server``, ``singlestream``)."""
    key = str(name).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in SCENARIOS:
        raise MlmsIrError(f"unknown scenario '{name}'; one of: {', '.join(SCENARIOS)}")
    return key


def loadgen():
    """The ``mlperf_loadgen`` module (the ``loadgen`` extra: ``mlcommons-loadgen``)."""
    return lazy_import("mlperf_loadgen")


def server_min_queries(percentile: float) -> int:
    """Queries Server's early stopping needs to accept a run with none over the bound: the
    smallest n with percentile**n <= 0.01 (459 at the 99th percentile)."""
    return math.ceil(math.log(0.01) / math.log(percentile))


# ----------------------------------------------------------------------------- samples


@dataclass
class Samples:
    """The QSL's samples: one feed dict each (at the batch-1 graph's shapes), and whether rows of
    several samples can be stacked along the leading dim into one batch."""

    feeds: list[dict[str, Any]]
    stackable: bool


def _graphs(model: ModelSource, max_batch: int, input_shapes: InputShapes, dims: Dims) -> tuple[Graph, Graph | None]:
    """The model at batch 1, and at ``max_batch`` where every input's leading dim is free (None
    where it is fixed, or the inputs are not all tensors: such a model runs one sample at a time)."""
    g1 = load(model, input_shapes=input_shapes, batch=1, dims=dims)
    names = g1.input_names
    tensors = [g1.tensors[n] for n in names]
    if max_batch <= 1 or not names or any(t.value_kind != "tensor" or not t.shape or t.shape[0] != 1 for t in tensors):
        return g1, None
    try:
        gb = load(model, input_shapes=input_shapes, batch=max_batch, dims=dims)
    except MlmsIrError:
        return g1, None
    if all((gb.tensors[n].shape or [None])[0] == max_batch for n in names):
        return g1, gb
    return g1, None


def make_samples(graph: Graph, count: int, inputs: str | dict | None, seed: int, stackable: bool) -> Samples:
    """``count`` seeded random samples (seed, seed+1, ...), or the rows of ``inputs`` (an ``.npz``
    path or a dict) where rows can be stacked, else ``inputs`` as the one sample."""
    if inputs is None:
        return Samples([feeds_for(graph, None, seed + i) for i in range(count)], stackable)
    given = feeds_for(graph, inputs, seed) if isinstance(inputs, str) else {k: np.asarray(v) for k, v in inputs.items()}
    rows = {np.shape(v)[0] if np.ndim(v) else None for v in given.values()}
    one_row = all((graph.tensors[n].shape or [None])[0] == 1 for n in graph.input_names if n in graph.tensors)
    if one_row and len(rows) == 1 and None not in rows:  # the model takes one row: each row is a sample
        (n,) = rows
        return Samples([{k: v[i:i + 1] for k, v in given.items()} for i in range(n)], stackable)
    return Samples([given], False)


# ----------------------------------------------------------------------------- the system under test


class Batcher:
    """Runs samples on a session at batch 1 and, where the model allows, one at ``max_batch``
    (a partial batch is padded with copies of its last sample); counts the batch sizes.

    A padded batch costs a full one: fewer than :attr:`batch_from` samples run one by one instead
    (set by :func:`calibrate` from the measured costs). On a CPU, where a batch of 8 of ResNet-50
    costs about 8 single runs, two queries arriving together were padded to 8: the SUT fell behind
    at a tenth of its capacity and the queue never drained."""

    def __init__(self, samples: Samples, session1: Any, session_b: Any | None, max_batch: int) -> None:
        self.samples = samples
        self.session_b = session_b
        self.max_batch = max_batch if session_b is not None else 1
        self.batch_from = 2
        # one pre-validated runner per sample: the hot path of SingleStream adds nothing but a call
        self.single = [session1.runner(f) for f in samples.feeds]
        self.batches: collections.Counter[int] = collections.Counter()

    def batched(self, n: int) -> bool:
        """Whether ``n`` samples run as one (padded) batch rather than one by one."""
        return n > 1 and n >= self.batch_from

    def run(self, indices: Sequence[int]) -> None:
        if not self.batched(len(indices)):
            for i in indices:
                self.single[i]()
            self.batches[1] += len(indices)
            return
        b = self.max_batch
        idx = list(indices) + [indices[-1]] * (b - len(indices))
        feeds = {k: np.concatenate([self.samples.feeds[i][k] for i in idx], axis=0) for k in self.samples.feeds[0]}
        self.session_b.run(feeds)
        self.batches[b] += 1

    def chunks(self, items: list) -> list[list]:
        b = self.max_batch
        return [items[i:i + b] for i in range(0, len(items), b)]


class Sut:
    """LoadGen's system under test over a :class:`Batcher`. It notes, per sample, when it reached the
    SUT and when it completed (``perf_counter_ns``); a failure of the backend is kept in ``error``
    and every sample is still completed, so LoadGen never waits for ever."""

    def __init__(self, lg: Any, server: Batcher, threaded: bool, single: bool = False) -> None:
        self.lg = lg
        self.server = server
        self.threaded = threaded
        self.received: list[int] = []
        self.completed: list[int] = []
        self.error: BaseException | None = None
        self._pending: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.handle = lg.ConstructSUT(self._single_stream() if single else self._issue, self._flush)

    def start(self) -> None:
        if self.threaded:
            self._thread = threading.Thread(target=self._worker, name="mlms_ir-sut", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            with self._cv:
                self._stop = True
                self._cv.notify()
            self._thread.join()
            self._thread = None

    def destroy(self) -> None:
        self.stop()
        self.lg.DestroySUT(self.handle)

    # LoadGen's callbacks (on its threads): they never raise
    def _issue(self, query_samples: list) -> None:
        now = time.perf_counter_ns()
        items = [(q.id, q.index, now) for q in query_samples]
        if self.threaded:
            with self._cv:
                self._pending.extend(items)
                self._cv.notify()
            return
        for chunk in self.server.chunks(items):
            self._serve(chunk)

    def _single_stream(self) -> Callable[[list], None]:
        """SingleStream's callback: one sample per query, nothing but its run between LoadGen's two
        timestamps (names bound here: every attribute lookup would count as latency)."""
        runners, clock = self.server.single, time.perf_counter_ns
        complete, response = self.lg.QuerySamplesComplete, self.lg.QuerySampleResponse
        received, completed = self.received.append, self.completed.append

        def issue(query_samples: list) -> None:
            q = query_samples[0]
            t0 = clock()
            try:
                runners[q.index]()
            except BaseException as exc:  # noqa: BLE001 - kept and reported; LoadGen must get its response
                self.error = exc
            t1 = clock()
            complete([response(q.id, 0, 0)])
            received(t0)
            completed(t1)

        return issue

    def _flush(self) -> None:
        pass

    def _worker(self) -> None:
        b = self.server.max_batch
        while True:
            with self._cv:
                while not self._pending and not self._stop:
                    self._cv.wait()
                if not self._pending:
                    return
                chunk = [self._pending.popleft() for _ in range(min(b, len(self._pending)))]
            self._serve(chunk)

    def _serve(self, chunk: list) -> None:
        lg = self.lg
        if len(chunk) > 1 and not self.server.batched(len(chunk)):
            for c in chunk:  # one by one, each answered when it is done
                self._serve([c])
            return
        if self.error is None:
            try:
                self.server.run([c[1] for c in chunk])
            except BaseException as exc:  # noqa: BLE001 - kept and reported; LoadGen must get its responses
                self.error = exc
        done = time.perf_counter_ns()
        lg.QuerySamplesComplete([lg.QuerySampleResponse(c[0], 0, 0) for c in chunk])
        for c in chunk:
            self.received.append(c[2])
            self.completed.append(done)


# ----------------------------------------------------------------------------- LoadGen's logs


def read_detail_log(path: Path) -> dict[str, Any]:
    """LoadGen's ``mlperf_log_detail.txt`` as key -> value (a repeated key keeps every value in a
    list, under ``key + "[]"``; errors and warnings also under ``"errors"`` and ``"warnings"``)."""
    out: dict[str, Any] = {"errors": [], "warnings": []}
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            d = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        key, value, meta = d.get("key"), d.get("value"), d.get("metadata") or {}
        out[key] = value
        out.setdefault(key + "[]", []).append(value)
        if meta.get("is_error"):
            out["errors"].append(str(value))
        elif meta.get("is_warning"):
            out["warnings"].append(str(value))
    return out


_PERCENTILES = (("p50", "50.00"), ("p90", "90.00"), ("p95", "95.00"), ("p97", "97.00"), ("p99", "99.00"), ("p99.9", "99.90"))


def _ms(ns: Any) -> float | None:
    return float(ns) / 1e6 if isinstance(ns, (int, float)) and not isinstance(ns, bool) else None


def latency_figures(d: dict[str, Any]) -> dict[str, float]:
    """LoadGen's per-query latency figures in ms."""
    lat = {"min": _ms(d.get("result_min_latency_ns")), "mean": _ms(d.get("result_mean_latency_ns"))}
    for name, p in _PERCENTILES:
        lat[name] = _ms(d.get(f"result_{p}_percentile_latency_ns"))
    lat["max"] = _ms(d.get("result_max_latency_ns"))
    return {k: v for k, v in lat.items() if v is not None}


def invalid_reasons(d: dict[str, Any]) -> list[str]:
    """Why LoadGen found a run invalid, in its words."""
    reasons = []
    if d.get("result_perf_constraints_met") is False:
        reasons.append("latency bound not met")
    if d.get("result_min_duration_met") is False:
        reasons.append("minimum duration not met")
    if d.get("result_min_queries_met") is False:
        reasons.append("minimum query count not met")
    if d.get("early_stopping_met") is False:
        reasons.append("early stopping not met: " + " ".join(str(d.get("early_stopping_result", "")).replace("*", "").split()))
    text = str(d.get("result_invalid_reason") or "").strip()
    if text:
        reasons += [r.strip().rstrip(".") + "." for r in text.split(". ") if r.strip(" .")]
    return reasons


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ----------------------------------------------------------------------------- the SUT's own figures


def histogram(latencies_ms: np.ndarray, bins: int = 40) -> LatencyHistogram | None:
    """Log-spaced bins from the fastest to the slowest sample."""
    if latencies_ms.size == 0:
        return None
    lo, hi = float(latencies_ms.min()), float(latencies_ms.max())
    lo = max(lo, 1e-6)
    if hi <= lo:
        return LatencyHistogram([lo, hi], [int(latencies_ms.size)])
    edges = np.geomspace(lo, hi, bins + 1)
    counts, _ = np.histogram(np.clip(latencies_ms, lo, hi), bins=edges)
    return LatencyHistogram([float(e) for e in edges], [int(c) for c in counts])


def timeline(received_ns: np.ndarray, completed_ns: np.ndarray, bins: int = 50) -> QpsTimeline | None:
    """Completed samples per second over the test, in ``bins`` bins (of at least 10 ms)."""
    if completed_ns.size == 0:
        return None
    t0 = int(received_ns.min())
    span_s = max((int(completed_ns.max()) - t0) / 1e9, 1e-9)
    bin_s = max(span_s / bins, 0.01)
    n = max(1, math.ceil(span_s / bin_s))
    idx = np.minimum(((completed_ns - t0) / 1e9 / bin_s).astype(np.int64), n - 1)
    counts = np.bincount(idx, minlength=n)
    return QpsTimeline(bin_s=bin_s, samples_per_s=[float(c) / bin_s for c in counts])


# ----------------------------------------------------------------------------- one LoadGen test


@dataclass
class Calibration:
    """The harness's p50 of one sample and of one full batch (ms), for LoadGen's expectations."""

    single_ms: float
    batch_ms: float
    max_batch: int

    @property
    def capacity_qps(self) -> float:
        """Samples per second the SUT could serve if it only ran full batches back to back."""
        return self.max_batch / (self.batch_ms / 1000.0) if self.batch_ms > 0 else math.inf


def calibrate(server: Batcher) -> Calibration:
    """A short measurement with the harness: one sample, and one full batch where the SUT batches."""
    one = measure(lambda: server.run([0]), warmup=5, iterations=20, min_time_s=0.05)
    if server.max_batch > 1:
        idx = [i % len(server.samples.feeds) for i in range(server.max_batch)]
        server.batch_from = 2
        many = measure(lambda: server.run(idx), warmup=3, iterations=10, min_time_s=0.05)
        batch_ms = many.p50
        # pad to a batch only where that beats running the samples one by one
        server.batch_from = min(server.max_batch, max(2, math.ceil(batch_ms / one.p50))) if one.p50 > 0 else 2
    else:
        batch_ms = one.p50
    server.batches.clear()
    return Calibration(single_ms=one.p50, batch_ms=batch_ms, max_batch=server.max_batch)


@dataclass
class Plan:
    """What one LoadGen test is asked: the scenario and its settings (``None``: LoadGen's default)."""

    scenario: str
    duration_s: float
    min_queries: int | None = None
    max_queries: int | None = None
    target_qps: float | None = None
    latency_bound_ms: float | None = None
    latency_percentile: float | None = None
    samples_per_query: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def make_settings(lg: Any, plan: Plan, cal: Calibration) -> tuple[Any, dict[str, Any]]:
    """LoadGen's TestSettings for ``plan`` (PerformanceOnly) and what mlms_ir set, for the record."""
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, SCENARIOS[plan.scenario])
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = max(1, int(round(plan.duration_s * 1000)))
    asked: dict[str, Any] = {"min_duration_ms": ts.min_duration_ms}
    min_q = plan.min_queries
    if min_q is None:
        min_q = (server_min_queries(plan.latency_percentile or ts.server_target_latency_percentile) if plan.scenario == "server"
                 else DEFAULT_MIN_QUERIES[plan.scenario])
    ts.min_query_count = int(min_q)
    asked["min_query_count"] = ts.min_query_count
    # LoadGen pre-generates its queries from these expectations: too slow a guess runs out of
    # queries before the minimum duration (invalid), so guess twice as fast as calibrated
    single_ns = max(1.0, cal.single_ms * 1e6 * 0.5)
    if plan.scenario == "singlestream":
        ts.single_stream_expected_latency_ns = int(single_ns)
        asked["single_stream_expected_latency_ns"] = ts.single_stream_expected_latency_ns
    elif plan.scenario == "multistream":
        spq = plan.samples_per_query or MULTISTREAM_SAMPLES
        ts.multi_stream_samples_per_query = int(spq)
        per_query_ms = math.ceil(spq / cal.max_batch) * cal.batch_ms if cal.max_batch > 1 else spq * cal.single_ms
        ts.multi_stream_expected_latency_ns = int(max(1.0, per_query_ms * 1e6 * 0.5))
        asked["multi_stream_samples_per_query"] = ts.multi_stream_samples_per_query
        asked["multi_stream_expected_latency_ns"] = ts.multi_stream_expected_latency_ns
    elif plan.scenario == "offline":
        # a guess too low ends the one query before the minimum duration: guess high
        ts.offline_expected_qps = float(plan.target_qps if plan.target_qps else max(1.0, cal.capacity_qps * 1.5))
        asked["offline_expected_qps"] = ts.offline_expected_qps
    else:
        if plan.target_qps is None:
            raise MlmsIrError("the Server scenario needs a target QPS (--target-qps) or --find-peak")
        ts.server_target_qps = float(plan.target_qps)
        asked["server_target_qps"] = ts.server_target_qps
        if plan.latency_bound_ms is not None:
            ts.server_target_latency_ns = int(round(plan.latency_bound_ms * 1e6))
            asked["server_target_latency_ns"] = ts.server_target_latency_ns
        if plan.latency_percentile is not None:
            ts.server_target_latency_percentile = float(plan.latency_percentile)
            asked["server_target_latency_percentile"] = ts.server_target_latency_percentile
        cap = plan.max_queries
        if cap is None:
            cap = max(ts.min_query_count, math.ceil(QUERY_CAP_FACTOR * cal.capacity_qps * plan.duration_s))
            cap = cap if cap < plan.target_qps * plan.duration_s else 0
        if cap:
            ts.max_query_count = int(cap)
            asked["max_query_count"] = ts.max_query_count
    if plan.scenario != "server" and plan.max_queries:
        ts.max_query_count = int(plan.max_queries)
        asked["max_query_count"] = ts.max_query_count
    for k, v in plan.extra.items():  # any other TestSettings field, by LoadGen's name
        if not hasattr(ts, k):
            raise MlmsIrError(f"LoadGen's TestSettings has no field '{k}'")
        setattr(ts, k, v)
        asked[k] = v
    return ts, asked


@dataclass
class Outcome:
    """One LoadGen test: its detail log, its summary text, and what the SUT saw."""

    detail: dict[str, Any]
    summary_text: str
    latencies_ms: np.ndarray
    received_ns: np.ndarray
    completed_ns: np.ndarray
    batches: dict[str, int]
    asked: dict[str, Any]


def run_loadgen(lg: Any, server: Batcher, plan: Plan, cal: Calibration, log_dir: Path) -> Outcome:
    """One LoadGen test of ``server`` under ``plan``; its logs are written into ``log_dir``."""
    ts, asked = make_settings(lg, plan, cal)
    log_dir.mkdir(parents=True, exist_ok=True)
    n = len(server.samples.feeds)
    qsl = lg.ConstructQSL(n, n, lambda _s: None, lambda _s: None)
    sut = Sut(lg, server, threaded=plan.scenario == "server", single=plan.scenario == "singlestream")
    server.batches.clear()
    try:
        ls = lg.LogSettings()
        ls.log_output.outdir = str(log_dir)
        ls.log_output.copy_summary_to_stdout = False
        ls.enable_trace = False
        sut.start()
        # LoadGen's threads, the SUT's worker and the caller share one GIL: at Python's default 5 ms
        # switch interval a query can wait milliseconds for it, which LoadGen counts as latency
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            # a missing audit file: an audit.config in the working folder must not change the test
            lg.StartTestWithLogSettings(sut.handle, qsl, ts, ls, str(log_dir / "no-audit.config"))
        finally:
            sys.setswitchinterval(interval)
    finally:
        sut.destroy()
        lg.DestroyQSL(qsl)
    if sut.error is not None:
        exc = sut.error
        if isinstance(exc, MlmsIrError):
            raise exc
        raise MlmsIrError(f"the backend failed while serving LoadGen's queries: {type(exc).__name__}: {exc}") from exc
    detail_path = log_dir / "mlperf_log_detail.txt"
    if not detail_path.is_file():
        raise MlmsIrError(f"LoadGen wrote no detail log in '{log_dir}'")
    summary_path = log_dir / "mlperf_log_summary.txt"
    if plan.scenario == "singlestream":
        server.batches[1] += len(sut.completed)
    received = np.asarray(sut.received, dtype=np.int64)
    completed = np.asarray(sut.completed, dtype=np.int64)
    return Outcome(detail=read_detail_log(detail_path),
                       summary_text=summary_path.read_text(errors="replace") if summary_path.is_file() else "",
                       latencies_ms=(completed - received) / 1e6, received_ns=received, completed_ns=completed,
                       batches={str(k): v for k, v in sorted(server.batches.items())}, asked=asked)


def fill_record(rec: ScenarioRecord, out: Outcome, plan: Plan) -> None:
    """``rec``'s figures from one LoadGen test."""
    d = out.detail
    rec.valid = d.get("result_validity") == "VALID"
    rec.invalid_reasons = [] if rec.valid else invalid_reasons(d)
    rec.loadgen_errors = list(d.get("errors") or [])
    if not rec.valid and any("Max query count reached" in e for e in rec.loadgen_errors):
        # our cap, not a too-low target: LoadGen's advice to raise the target does not apply
        cap = out.asked.get("max_query_count")
        rec.invalid_reasons = [r for r in rec.invalid_reasons if not r.startswith("Increase the target QPS")]
        if plan.max_queries:  # the user's cap: it ended the test before the minimum duration or query count
            # (LoadGen's advice to pre-generate more queries does not apply either)
            rec.invalid_reasons = [r for r in rec.invalid_reasons if not r.startswith("Decrease the expected latency")]
            rec.invalid_reasons.append(f"stopped after {cap} queries, the cap --max-queries set, before LoadGen's minimum "
                                       "duration and query count were reached (raise --max-queries, or 0 for no cap)")
        else:
            rec.invalid_reasons.append(f"stopped after {cap} queries, far more than the SUT serves in the test's duration "
                                       "(--max-queries 0 lifts the cap)")
    rec.latency_ms = latency_figures(d)
    rec.query_count = int(d["result_query_count"]) if isinstance(d.get("result_query_count"), int) else None
    rec.samples_per_query = d.get("effective_samples_per_query")
    rec.overlatency_queries = d.get("result_overlatency_query_count")
    rec.early_stopping = " ".join(str(d.get("early_stopping_result") or "").replace(" * ", "\n").split(" \n")).strip()
    rec.latency_percentile = _number(d.get("effective_target_latency_percentile"))
    if plan.scenario == "server":
        rec.target_qps = _number(d.get("effective_target_qps"))
        rec.latency_bound_ms = _ms(d.get("effective_target_latency_ns"))
        rec.samples_per_s = _number(d.get("result_completed_samples_per_sec"))
        rec.scheduled_samples_per_s = _number(d.get("result_scheduled_samples_per_sec"))
    elif plan.scenario == "offline":
        rec.target_qps = _number(d.get("effective_target_qps"))
        rec.samples_per_s = _number(d.get("result_samples_per_second"))
    elif plan.scenario == "singlestream":
        rec.samples_per_s = _number(d.get("result_qps_with_loadgen_overhead"))
    if rec.samples_per_s is None and out.completed_ns.size:
        span = (int(out.completed_ns.max()) - int(out.received_ns.min())) / 1e9
        rec.samples_per_s = out.completed_ns.size / span if span > 0 else None
    rec.batches = out.batches
    rec.histogram = histogram(out.latencies_ms)
    rec.timeline = timeline(out.received_ns, out.completed_ns)
    rec.loadgen_settings = {k[len("effective_"):]: v for k, v in d.items() if k.startswith("effective_") and not k.endswith("[]")}
    rec.loadgen_summary = out.summary_text


def find_peak(lg: Any, server: Batcher, plan: Plan, cal: Calibration, log_dir: Path, *, tolerance: float = 0.05,
              max_probes: int = 12, on_probe: Callable[[PeakProbe], None] | None = None
              ) -> tuple[Outcome | None, list[PeakProbe], Outcome | None]:
    """The highest Server target QPS LoadGen finds valid: from the plan's target (default: half the
    calibrated capacity),
    doubling while valid (halving while invalid), then bisecting until the bounds are within
    ``tolerance`` of each other. Returns the best valid test (None when none was), every probe,
    and the last test."""
    probes: list[PeakProbe] = []
    best: Outcome | None = None
    last: Outcome | None = None
    lo, hi = 0.0, math.inf

    def probe(qps: float) -> bool:
        nonlocal best, last, lo, hi
        step = Plan(**{**plan.__dict__, "target_qps": qps})
        out = last = run_loadgen(lg, server, step, cal, log_dir / f"probe{len(probes):02d}")
        rec = ScenarioRecord(backend="", device="", scenario="Server", status="ok")
        fill_record(rec, out, step)
        p = PeakProbe(target_qps=qps, valid=bool(rec.valid), samples_per_s=rec.samples_per_s,
                      latency_ms=(rec.latency_ms or {}).get("p99"), reasons=rec.invalid_reasons)
        probes.append(p)
        if on_probe:
            on_probe(p)
        if rec.valid:
            lo = max(lo, qps)
            if best is None or qps >= float(best.asked.get("server_target_qps", 0)):
                best = out
        else:
            hi = min(hi, qps)
        return bool(rec.valid)

    start = plan.target_qps or (0.5 * cal.capacity_qps if math.isfinite(cal.capacity_qps) else 100.0)
    qps = max(1.0, _round_qps(start))
    if probe(qps):
        while len(probes) < max_probes and hi == math.inf:
            probe(_round_qps(lo * 2))
    else:
        while len(probes) < max_probes and lo == 0.0 and qps > 1.0:
            qps = max(1.0, _round_qps(qps / 2))
            probe(qps)
    while len(probes) < max_probes and lo > 0 and math.isfinite(hi) and (hi - lo) > tolerance * lo:
        probe(_round_qps((lo + hi) / 2))
    return best, probes, last


def offline_pilot(lg: Any, server: Batcher, plan: Plan, cal: Calibration, log_dir: Path) -> float:
    """The expected QPS of Offline's one query, from a short Offline test (a tenth of the duration,
    0.05 to 0.5 s) rather than from the calibration alone: with LoadGen's threads beside the
    backend's, a loaded machine serves several times fewer samples than the bare harness says, and
    a query sized on that would run for many times the duration. Twice what the pilot served, so
    that the query outlasts the minimum duration even when the machine speeds up after the pilot
    (a query that ends early is invalid)."""
    pilot = Plan(**{**plan.__dict__, "duration_s": max(0.05, min(0.5, plan.duration_s / 10)), "max_queries": None,
                    "target_qps": None})
    out = run_loadgen(lg, server, pilot, cal, log_dir)
    rate = _number(out.detail.get("result_samples_per_second"))
    return float(_round_qps(OFFLINE_MARGIN * rate)) if rate else max(1.0, cal.capacity_qps * 1.5)


def resized_offline_qps(asked: float, out: Outcome) -> float:
    """The expected QPS of Offline's query after one sized at ``asked`` ended before the minimum
    duration: twice what that query served, and at least twice ``asked`` (a query of one sample
    serves too little to measure a rate)."""
    rate = _number(out.detail.get("result_samples_per_second")) or 0.0
    return float(_round_qps(max(2.0 * asked, OFFLINE_MARGIN * rate)))


def _round_qps(q: float) -> float:
    """Three significant digits: probes read 1230, not 1234.5678."""
    if q <= 0 or not math.isfinite(q):
        return q
    digits = 3 - int(math.floor(math.log10(q))) - 1
    return float(round(q, digits))


# ----------------------------------------------------------------------------- the API


def run_scenarios(
    model: ModelSource,
    backends: Sequence[str] = ("ort",),
    *,
    scenario: str = "singlestream",
    device: str = "cpu",
    target_qps: float | None = None,
    latency_bound_ms: float | None = None,
    latency_percentile: float | None = None,
    duration_s: float = 10.0,
    min_queries: int | None = None,
    max_queries: int | None = None,
    samples_per_query: int | None = None,
    find_peak_qps: bool = False,
    peak_tolerance: float = 0.05,
    max_batch: int | None = None,
    input_shapes: InputShapes = None,
    dims: Dims = None,
    inputs: str | dict | None = None,
    sample_count: int = 64,
    seed: int = 0,
    options: dict[str, dict[str, Any]] | None = None,
    loadgen_settings: dict[str, Any] | None = None,
    log_dir: str | Path | None = None,
    system: bool = True,
    progress: bool = False,
) -> ScenarioReport:
    """Run ``model`` on each backend under one MLPerf LoadGen scenario.

    ``scenario``: singlestream, multistream, server or offline. Server needs ``target_qps`` (or
    ``find_peak_qps``); ``latency_bound_ms`` is its bound at ``latency_percentile`` (LoadGen's
    defaults: 100 ms at the 99th). ``duration_s`` and ``min_queries`` are LoadGen's minimums
    (defaults: 10 s, and what early stopping needs); ``max_queries`` stops a test early (0: never;
    None: Server stops after 2x what the calibrated capacity serves in ``duration_s``).
    ``max_batch`` is the largest batch the SUT forms (default by scenario; 1 where the model's
    leading dim is fixed). ``loadgen_settings`` sets any other TestSettings field by LoadGen's name.
    ``log_dir`` keeps LoadGen's logs (one folder per backend); by default they go to a temporary folder.
    """
    key = scenario_key(scenario)
    lg = loadgen()
    if not (isinstance(duration_s, (int, float)) and duration_s > 0 and math.isfinite(duration_s)):
        raise MlmsIrError(f"the duration must be a positive number of seconds, got {duration_s!r}")
    if target_qps is not None and not (target_qps > 0 and math.isfinite(target_qps)):
        raise MlmsIrError(f"the target QPS must be a positive number, got {target_qps!r}")
    if latency_bound_ms is not None and not (latency_bound_ms > 0 and math.isfinite(latency_bound_ms)):
        raise MlmsIrError(f"the latency bound must be a positive number of ms, got {latency_bound_ms!r}")
    if latency_percentile is not None and not (0 < latency_percentile < 1):
        raise MlmsIrError(f"the latency percentile is a fraction between 0 and 1 (0.99), got {latency_percentile!r}")
    if key != "server" and (find_peak_qps or latency_bound_ms is not None):
        raise MlmsIrError("--find-peak and --latency-bound belong to the Server scenario (--scenario server)")
    if key == "server" and target_qps is None and not find_peak_qps:
        raise MlmsIrError("the Server scenario needs a target QPS: give --target-qps N, or --find-peak to search the highest valid one")
    if key in ("singlestream", "multistream") and target_qps is not None:
        raise MlmsIrError(f"--target-qps sets the Server's arrival rate (or Offline's expected QPS); {SCENARIOS[key]} issues "
                          "one query after another")
    for name, v in (("min_queries", min_queries), ("max_queries", max_queries), ("samples_per_query", samples_per_query),
                    ("max_batch", max_batch)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "max_queries" else 1)):
            raise MlmsIrError(f"{name} must be a positive integer, got {v!r}")
    batch = max_batch or (samples_per_query or MULTISTREAM_SAMPLES if key == "multistream" else DEFAULT_MAX_BATCH[key])
    if key == "singlestream":
        batch = 1
    g1, gb = _graphs(model, batch, input_shapes, dims)
    samples = make_samples(g1, max(1, int(sample_count)), inputs, seed, stackable=gb is not None)
    if not samples.stackable:
        gb = None
    registry = _registry()
    plan = Plan(scenario=key, duration_s=float(duration_s), min_queries=min_queries, max_queries=max_queries,
                    target_qps=None if target_qps is None else float(target_qps), latency_bound_ms=latency_bound_ms,
                    latency_percentile=latency_percentile, samples_per_query=samples_per_query, extra=dict(loadgen_settings or {}))
    records: list[ScenarioRecord] = []
    keep = Path(log_dir) if log_dir is not None else None
    with tempfile.TemporaryDirectory(prefix="mlms_ir-loadgen-") as tmp, \
            progress_bar(len(backends), f"{SCENARIOS[key]}", enabled=progress) as bar:
        for name in backends:
            bar.advance(0, note=name)
            opts = dict((options or {}).get(name, {}))
            rec = ScenarioRecord(backend=name, device=device, scenario=SCENARIOS[key], status="ok", options=opts)
            records.append(rec)
            try:
                be, why_not = registry.usable(name, device, **opts)
                if be is None:
                    rec.status, rec.error = "unavailable", why_not
                    continue
                where = (keep if keep is not None else Path(tmp)) / name
                _run_one(lg, be, rec, g1, gb, samples, batch, device, opts, plan, where, find_peak_qps, peak_tolerance, bar)
            except MlmsIrError as exc:
                rec.status, rec.error = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - a backend crash is recorded, the rest goes on
                log.debug("backend %s failed", name, exc_info=True)
                rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                bar.advance()
    from mlms_ir.system import system_facts

    settings = {"scenario": SCENARIOS[key], "target_qps": target_qps, "latency_bound_ms": latency_bound_ms,
                "latency_percentile": latency_percentile, "duration_s": float(duration_s), "min_queries": min_queries,
                "max_queries": max_queries, "find_peak": bool(find_peak_qps), "max_batch": batch, "sample_count": len(samples.feeds),
                "seed": seed, "inputs": inputs if isinstance(inputs, str) else ("given" if inputs else "random"), "device": device,
                "loadgen": _loadgen_version(lg), "gil_switch_interval_s": SWITCH_INTERVAL_S}
    if loadgen_settings:
        settings["loadgen_settings"] = dict(loadgen_settings)
    return ScenarioReport(model=model_ref(g1), system=system_facts() if system else {}, settings=settings, runs=records)


def _run_one(lg, be, rec: ScenarioRecord, g1: Graph, gb: Graph | None, samples: Samples, batch: int, device: str, opts: dict,
             plan: Plan, where: Path, peak: bool, tolerance: float, bar) -> None:
    with be.prepare(g1, device, **opts) as s1:
        rec.options = dict(s1.options)
        sb = be.prepare(gb, device, **opts) if gb is not None and plan.scenario != "singlestream" else None
        try:
            server = Batcher(samples, s1, sb, batch)
            rec.max_batch = server.max_batch
            bar.advance(0, note=f"{rec.backend}: calibrating")
            cal = calibrate(server)
            rec.batch_from = server.batch_from if server.max_batch > 1 else None
            if peak:
                def note(p: PeakProbe) -> None:
                    bar.advance(0, note=f"{rec.backend}: {p.target_qps:g} QPS {'valid' if p.valid else 'invalid'}")

                best, probes, last = find_peak(lg, server, plan, cal, where, tolerance=tolerance, on_probe=note)
                shown = best or last  # no valid target: the figures of the last (lowest) one tried
                fill_record(rec, shown, Plan(**{**plan.__dict__, "target_qps": shown.asked["server_target_qps"]}))
                rec.probes = probes
                if best is None:
                    rec.invalid_reasons = [f"no target QPS was valid, down to {probes[-1].target_qps:g} after {len(probes)} "
                                           "tries"] + rec.invalid_reasons
                else:
                    rec.peak_qps = float(best.asked["server_target_qps"])
            else:
                sized = plan.scenario == "offline" and plan.target_qps is None
                if sized:
                    bar.advance(0, note=f"{rec.backend}: sizing Offline's query")
                    plan = Plan(**{**plan.__dict__, "target_qps": offline_pilot(lg, server, plan, cal, where / "pilot")})
                bar.advance(0, note=f"{rec.backend}: LoadGen {plan.duration_s:g} s")
                out = run_loadgen(lg, server, plan, cal, where)
                for _ in range(OFFLINE_RESIZES if sized else 0):  # a user's own --target-qps is kept as asked
                    if out.detail.get("result_min_duration_met") is not False:
                        break
                    plan = Plan(**{**plan.__dict__, "target_qps": resized_offline_qps(plan.target_qps, out)})
                    bar.advance(0, note=f"{rec.backend}: query ended early, resized to {plan.target_qps:g} QPS")
                    out = run_loadgen(lg, server, plan, cal, where)
                fill_record(rec, out, plan)
        finally:
            if sb is not None:
                sb.close()


def _registry():
    from mlms_ir.backends import registry

    return registry


def _loadgen_version(lg: Any) -> str | None:
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # noqa: BLE001 - a version is a nicety
        return getattr(lg, "__version__", None)
