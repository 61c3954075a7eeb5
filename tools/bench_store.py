"""Overheads of the results store and of the sweep scheduler.

* Store: the time to record one run (run row, per-node rows, compressed report, one
  transaction, WAL), for a small report (the digits CNN, 11 nodes) and a ResNet-50-sized
  profile (169 nodes), best and median over ``--records`` writes; and the file's growth.
* Analyses (``--analysis MODEL``, repeatable): the CPU time of recording an ``analyze`` of
  MODEL as the CLI records it (``records_from_analysis`` with the JSON text the output shares,
  then ``Store.add`` into a fresh store), median over ``--analysis-records`` writes, against
  the CPU time of the analysis itself (load and analyze, once).
* Scheduler: ``--jobs`` analyze jobs of the digits CNN through the local executor (one worker
  process per job) and, with ``--ray``, through a local Ray (``num_cpus=2``), against the same
  analyses run back to back in one process; the difference per job is the scheduler's cost
  (process start, imports, store writes, bookkeeping).

    python tools/bench_store.py [--records 200] [--jobs 12] [--ray] [--analysis MODEL ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _profile_like(n_nodes: int) -> dict:
    nodes = [{"id": f"n{i}", "name": f"/layer{i // 10}/conv{i % 10}/Conv", "op_type": "Conv", "time_us": 100.0 + i, "share": 1 / n_nodes,
              "macs": 10**8 + i, "flops": 2 * 10**8 + i, "events": 1, "achieved_flops_per_s": 1e11, "intensity": 50.0, "bound": "compute",
              "time_lower_bound_us": 30.0, "fused_with": [], "kernels": [{"name": f"k{i}", "time_us": 100.0 + i, "calls": 1}]}
             for i in range(n_nodes)]
    return {"schema_version": "1.0", "model": {"name": "resnet50.onnx", "path": None}, "backend": "ort", "device": "cpu", "options": {},
            "batch": 1, "runs": 10, "coverage": 0.999, "node_time_us": 38000.0, "latency_ms": {"p50": 38.5, "p90": 39.0, "p99": 40.0,
            "mean": 38.6}, "traced_wall_ms": 40.0, "tracing_overhead": 0.03, "roofline_device": None, "system": {"host": "bench"},
            "nodes": nodes, "unattributed": [], "mapping": {}}


def bench_store(records: int) -> dict:
    from mlms_ir.store import Store, records_from_profile

    out = {}
    for label, n in (("11 nodes", 11), ("169 nodes", 169)):
        rec = records_from_profile(_profile_like(n))[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "s.sqlite"
            with Store(path) as st:
                st.add(rec)  # schema, first pages
                times = []
                for _ in range(records):
                    t0 = time.perf_counter()
                    st.add(rec)
                    times.append(time.perf_counter() - t0)
            size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        out[label] = {"best_ms": 1000 * min(times), "median_ms": 1000 * statistics.median(times), "p90_ms": 1000 * sorted(times)[int(0.9 * len(times))],
                      "bytes_per_run": size / (records + 1)}
        print(f"   store, {label:>9}: {out[label]['median_ms']:.2f} ms per recorded run (best {out[label]['best_ms']:.2f}, "
              f"p90 {out[label]['p90_ms']:.2f}); {out[label]['bytes_per_run'] / 1024:.1f} KiB per run on disk")
    return out


def bench_analysis_record(model: str, records: int) -> dict:
    from mlms_ir.passes.analyze import analyze
    from mlms_ir.store import Store, compress_json, records_from_analysis

    t0 = time.process_time()
    result = analyze(model)
    analysis_s = time.process_time() - t0
    pieces: list[str] = []

    class Sink:  # as the CLI's --format json keeps the text: one list of pieces, shared with the store
        write = pieces.append

    result.write_json(Sink())
    build, write = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(records):
            t0 = time.process_time()
            recs = records_from_analysis(result, {"device": None}, payload_zlib=compress_json(pieces))
            t1 = time.process_time()
            with Store(Path(tmp) / f"s{i}.sqlite") as st:
                st.add_all(recs)
            build.append(t1 - t0)
            write.append(time.process_time() - t1)
    total = [a + b for a, b in zip(build, write)]
    out = {"nodes": len(result.nodes), "json_bytes": sum(map(len, pieces)), "analysis_cpu_s": analysis_s,
           "records_cpu_s": statistics.median(build), "add_cpu_s": statistics.median(write), "record_cpu_s": statistics.median(total)}
    print(f"   analyze record, {len(result.nodes):,} nodes: {out['record_cpu_s']:.3f} s CPU (median of {records}; records "
          f"{out['records_cpu_s']:.3f} s, Store.add {out['add_cpu_s']:.3f} s) = {100 * out['record_cpu_s'] / analysis_s:.1f}% "
          f"of the analysis' {analysis_s:.2f} s")
    return out


def bench_scheduler(jobs: int, use_ray: bool) -> dict:
    from mlms_ir.passes.analyze import analyze
    from mlms_ir.sweep import Job, Spec, run_sweep
    from mlms_ir.zoo import builtin_path

    model = str(builtin_path())
    t0 = time.perf_counter()
    for _ in range(jobs):
        analyze(model, batch=1)
    inproc = (time.perf_counter() - t0) / jobs
    out = {"in_process_s_per_job": inproc}
    print(f"   analyze in one process: {1000 * inproc:.1f} ms per job")
    executors = ["local"] + (["ray"] if use_ray else [])
    for ex in executors:
        spec = Spec(name=f"bench-{ex}", jobs=[Job(sweep=f"bench-{ex}", kind="analyze", model=model, backend=None, device="cpu", batch=b,
                                                  precision="fp32") for b in range(1, jobs + 1)])
        with tempfile.TemporaryDirectory() as tmp:
            extra = {}
            if ex == "ray":
                import ray

                t0 = time.perf_counter()
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                extra["ray_start_s"] = time.perf_counter() - t0
            try:
                res = run_sweep(spec, Path(tmp) / "s.sqlite", executor=ex, progress=False)
            finally:
                if ex == "ray":
                    ray.shutdown()
        per_job = res.seconds / jobs
        out[ex] = {"wall_s": res.seconds, "s_per_job": per_job, "overhead_s_per_job": per_job - inproc, "ok": res.ok, **extra}
        print(f"   {ex} executor: {jobs} jobs in {res.seconds:.2f} s ({res.ok} ok) = {1000 * per_job:.0f} ms per job, "
              f"{1000 * (per_job - inproc):.0f} ms of it scheduling (worker start, imports, store)"
              + (f"; Ray started in {extra['ray_start_s']:.1f} s" if extra else "") + (" [2 jobs at once]" if ex == "ray" else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--ray", action="store_true")
    ap.add_argument("--analysis", action="append", default=[], metavar="MODEL",
                    help="time recording an analyze of MODEL (repeatable); only these when --jobs 0")
    ap.add_argument("--analysis-records", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import platform

    print(f"== {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores")
    res = {"store": bench_store(args.records)}
    if args.analysis:
        res["analysis_record"] = {m: bench_analysis_record(m, args.analysis_records) for m in args.analysis}
    if args.jobs > 0:
        res["scheduler"] = bench_scheduler(args.jobs, args.ray)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
