"""Does the harness distort what it measures? And what does per-node tracing cost?

In one process, on the same ORT CPU session options and inputs, this times (A) a bare loop of
``session.run`` under ``time.perf_counter`` and (B) mlms_ir's harness (``measure`` over the
backend session), in alternating rounds, and reports the ratio of their medians (goal: within
1.03). It then profiles the model (default ORT optimisations) and reports the coverage of
per-node times (goal: >= 95% on CNNs and transformers) and the tracing overhead (traced run
against the untraced mean).

    python tools/bench_harness.py MODEL.onnx [--batch 1] [--iters 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import onnxruntime as ort

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.harness import measure
from mlms_ir.inputs import random_feeds
from mlms_ir.runner import profile_backend
from mlms_ir.system import cpu_facts


def bare_loop(sess, feeds, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        sess.run(None, feeds)
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="traced runs for the profile")
    args = ap.parse_args(argv)

    cpu = cpu_facts()
    print(f"== environment: {cpu.get('model')} ({cpu.get('logical_cores')} cores), {platform.platform()}, "
          f"Python {platform.python_version()}, onnxruntime {ort.__version__}, mlms_ir {mlms_ir.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    graph = mlms_ir.load(args.model, batch=args.batch)
    feeds = random_feeds(graph)
    session = registry.get("ort").prepare(graph, "cpu")
    bare = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    ratios = []
    for r in range(args.rounds):
        a = bare_loop(bare, feeds, args.warmup, args.iters)
        b = measure(session.runner(feeds), warmup=args.warmup, iterations=args.iters).p50
        ratios.append(b / a)
        print(f"  round {r}: bare session.run p50 {a:.4f} ms   mlms_ir harness p50 {b:.4f} ms   ratio {b / a:.4f}")
    ratio = statistics.median(ratios)
    print(f"harness / bare loop (median of {args.rounds} rounds): {ratio:.4f}  [{'PASS' if ratio <= 1.03 else 'FAIL'}: goal <= 1.03]")

    report, _ = profile_backend(args.model, "ort", batch=args.batch, runs=args.runs, iterations=args.iters // 2,
                                warmup=args.warmup, system=False)
    print(f"profile (ORT default optimisations, {report.runs} traced runs): coverage {report.coverage:.2%} "
          f"[{'PASS' if report.coverage >= 0.95 else 'FAIL'}: goal >= 95%], untraced mean {report.latency_ms['mean']:.3f} ms, "
          f"traced run {report.traced_wall_ms:.3f} ms, tracing overhead {report.tracing_overhead:+.1%}")
    top = ", ".join(f"{u['name']} ({u['time_us']:.0f} µs)" for u in report.unattributed[:3])
    print(f"  unattributed: {len(report.unattributed)} backend nodes{': ' + top if top else ''}")
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
