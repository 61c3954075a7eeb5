"""The measurement harness: warm-up, many timed iterations (or a minimum time), percentiles.

Each iteration is timed with ``time.perf_counter_ns`` around the backend's run and, on a GPU,
its synchronisation, so the figure is the latency a caller sees. Feeds are validated once, before
the loop, so the loop adds nothing but the timer to what it measures.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class LatencyStats:
    """Latency of one configuration in milliseconds, over ``iterations`` timed runs."""

    mean: float
    stdev: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    iterations: int
    warmup: int

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarise(samples_ms: list[float], warmup: int) -> LatencyStats:
    s = sorted(samples_ms)
    return LatencyStats(
        mean=statistics.fmean(s),
        stdev=statistics.stdev(s) if len(s) > 1 else 0.0,
        min=s[0],
        p50=percentile(s, 50),
        p90=percentile(s, 90),
        p95=percentile(s, 95),
        p99=percentile(s, 99),
        max=s[-1],
        iterations=len(s),
        warmup=warmup,
    )


def measure(
    run: Callable[[], object],
    *,
    synchronize: Callable[[], None] | None = None,
    warmup: int = 10,
    iterations: int = 100,
    min_time_s: float = 0.0,
    max_iterations: int = 100_000,
) -> LatencyStats:
    """Time ``run()``: ``warmup`` untimed calls, then at least ``iterations`` timed ones and at least
    ``min_time_s`` seconds of them (capped at ``max_iterations``)."""
    sync = synchronize or (lambda: None)
    for _ in range(max(0, warmup)):
        run()
    sync()
    samples: list[float] = []
    clock = time.perf_counter_ns
    begin = clock()
    deadline = begin + int(min_time_s * 1e9)
    while len(samples) < max(1, iterations) or (clock() < deadline and len(samples) < max_iterations):
        t0 = clock()
        run()
        sync()
        samples.append((clock() - t0) / 1e6)
    return summarise(samples, warmup)
