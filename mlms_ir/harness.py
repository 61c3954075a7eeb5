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
from typing import Any

import numpy as np


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


#: The default tolerance of :func:`compare`'s verdict (fp32 backends; the converters use the same).
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


def abs_diff(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """``|got - ref|`` element by element, for two numeric arrays of one shape, in float64
    (complex128 when either is complex): equal values (equal infinities too) and NaN on both
    sides give 0, NaN on one side only gives ``inf``. The one rule behind :func:`compare`'s
    verdict and the converters' check (:func:`mlms_ir.converters._compare.check_close`)."""
    kind = np.complex128 if "c" in ref.dtype.kind + got.dtype.kind else np.float64
    r, g = ref.astype(kind), got.astype(kind)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (r == g) | (np.isnan(r) & np.isnan(g))  # equal infinities, whose difference is NaN
        diff = np.where(same, 0.0, np.abs(g - r))
    return np.where(np.isnan(diff), np.inf, diff)


def compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], *, atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL) -> dict[str, Any]:
    """``other``'s outputs against ``reference``'s.

    Returns ``max_abs_diff`` and ``max_rel_diff`` (infinite when a shape differs, an output is
    missing, or a value is not finite on one side only), ``outputs_compared``, and the verdict:
    ``beyond_tolerance``, the number of elements with ``|other - ref| > atol + rtol*|ref|`` (NaN
    on both sides agrees; a shape mismatch or a missing output counts all its elements; values
    that are not numbers must be equal), of ``elements_compared``, and ``agree`` (none beyond).
    Complex outputs are compared as complex numbers.
    """
    max_abs = max_rel = 0.0
    compared = beyond = elements = 0
    for name, ref in reference.items():
        a = np.asarray(ref)
        if name not in other or np.asarray(other[name]).shape != a.shape:
            b_size = np.asarray(other[name]).size if name in other else 0
            max_abs = max_rel = math.inf
            beyond += max(a.size, b_size, 1)
            elements += max(a.size, b_size)
            continue
        b = np.asarray(other[name])
        compared += 1
        elements += a.size
        if a.size == 0:
            continue
        if a.dtype.kind not in "fciub" or b.dtype.kind not in "fciub":
            differ = int(np.count_nonzero(a != b))
            beyond += differ
            if differ:
                max_abs = max_rel = math.inf
            continue
        diff = abs_diff(a, b)
        max_abs = max(max_abs, float(diff.max()))
        mag = np.abs(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(diff == 0, 0.0, diff / np.maximum(np.nan_to_num(mag, nan=0.0), 1e-12))
        max_rel = max(max_rel, float(rel.max()))
        beyond += int((diff > atol + rtol * np.where(np.isfinite(mag), mag, 0.0)).sum())
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel, "outputs_compared": compared,
            "beyond_tolerance": beyond, "elements_compared": elements, "agree": beyond == 0}
