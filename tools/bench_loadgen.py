"""What does the LoadGen path add to a latency? SingleStream through MLPerf LoadGen against the bare harness.

In one process, on one ORT session of the model (default: the embedded digits-cnn at batch 1; ``--batch N`` makes every sample N rows),
it alternates rounds of (A) mlms_ir's harness (``measure`` over the session's runner: warm-up,
then timed iterations on one sample) and (B) ``run_scenarios(scenario="singlestream")``, LoadGen
issuing one query after another to the same kind of session, twice: with a QSL of one sample
(the harness's input: the path's own overhead) and of 64 (the default: each query another input,
as MLPerf's QSL has). It reports each round's p50s and the ratio of the medians over rounds
(goal: within 1.05). LoadGen's p50 is its own (from its detail log: issue to
``QuerySamplesComplete``), so B includes the pybind callbacks and the SUT's bookkeeping.

    python tools/bench_loadgen.py [MODEL.onnx] [--batch 1] [--duration 2] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import onnxruntime as ort

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.harness import measure
from mlms_ir.inputs import random_feeds
from mlms_ir.scenarios import loadgen, run_scenarios
from mlms_ir.system import cpu_facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default=None, help="an .onnx file (default: the embedded digits-cnn)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0, help="LoadGen's minimum duration per round (s)")
    ap.add_argument("--iters", type=int, default=2000, help="harness iterations per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's own)")
    args = ap.parse_args(argv)

    if args.model is None:
        from mlms_ir.zoo import builtin_path

        args.model = str(builtin_path())
    loadgen()  # the loadgen extra, or its one-line error
    cpu = cpu_facts()
    from importlib.metadata import version

    print(f"== environment: {cpu.get('model')} ({cpu.get('logical_cores')} cores), {platform.platform()}, "
          f"Python {platform.python_version()}, onnxruntime {ort.__version__}, mlcommons-loadgen {version('mlcommons-loadgen')}, "
          f"mlms_ir {mlms_ir.__version__}, load average {os.getloadavg()[0]:.2f}")
    opts = {"threads": args.threads} if args.threads else {}
    graph = mlms_ir.load(args.model, batch=args.batch)
    feeds = random_feeds(graph)
    # a sample of LoadGen's QSL is one feed of the harness's shapes (--batch rows)
    shapes = {n: list(graph.tensors[n].shape) for n in graph.input_names}
    bare, via1, via = [], [], []
    with registry.get("ort").prepare(graph, "cpu", **opts) as session:
        run = session.runner(feeds)
        for r in range(args.rounds):
            a = measure(run, warmup=50, iterations=args.iters).p50
            bare.append(a)
            line = f"round {r + 1}: harness p50 {a * 1000:.2f} µs"
            for n, got in ((1, via1), (64, via)):
                rep = run_scenarios(args.model, ["ort"], scenario="singlestream", duration_s=args.duration, sample_count=n,
                                    input_shapes=shapes, options={"ort": opts}, system=False)
                rec = rep.runs[0]
                if rec.status != "ok":
                    print(f"LoadGen round failed: {rec.error}", file=sys.stderr)
                    return 1
                got.append(rec.latency_ms["p50"])
                line += (f"; LoadGen p50 ({n} sample{'s' if n > 1 else ''}) {got[-1] * 1000:.2f} µs ({rec.query_count} queries, "
                         f"{'VALID' if rec.valid else 'INVALID'}, ratio {got[-1] / a:.3f})")
            print(line)
    ma = statistics.median(bare)
    print(f"== median over {args.rounds} rounds: harness p50 {ma * 1000:.2f} µs")
    for n, got in ((1, via1), (64, via)):
        mb = statistics.median(got)
        print(f"   LoadGen SingleStream, QSL of {n:2d}: p50 {mb * 1000:.2f} µs, ratio {mb / ma:.3f} (goal <= 1.05), "
              f"{(mb - ma) * 1000:+.2f} µs per query")
    return 0


if __name__ == "__main__":
    sys.exit(main())
