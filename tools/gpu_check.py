"""GPU checks: the torch backend on CUDA for a CNN and a transformer at two batch sizes, with kernel
attribution coverage (goal >= 98%), the per-node CUDA execution profile (kernels, launch
overhead, idle gaps), NVML telemetry, the profiling overhead, a Chrome/Perfetto trace, and Nsight
Compute counters for the top nodes. Run through tools/gpu_check.sh on a machine with an NVIDIA
GPU; it prints what it measured (and writes it as JSON with --json, traces with --out)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlms_ir
from mlms_ir.errors import MlmsIrError
from mlms_ir.report.chrome_trace import chrome_trace
from mlms_ir.runner import profile_backend, run_backends
from mlms_ir.system import system_facts

#: The backend checked (tests swap in a replay of a recorded CUDA trace).
BACKEND = "torch"


def export(name: str, out: Path) -> Path:
    import torch
    import torchvision

    torch.backends.mha.set_fastpath_enabled(False)
    model = torchvision.models.get_model(name, weights=None).eval()
    path = out / f"{name}.onnx"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} µs"


def _g(v: float | None) -> str:
    """A counter figure, short: '-' where it was not measured."""
    return "-" if v is None else f"{v:.4g}"


def _save(args, results: dict) -> None:
    """Write the results so far (after every step: a run cut short still leaves what it measured)."""
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


def _step(what: str, slot: dict, key: str, fn, *args) -> None:
    """Run one step of the check; a failure is printed and recorded in ``slot[key]``, and the rest goes on."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - a check script: report and go on
        print(f"   {what}: FAILED {type(exc).__name__}: {exc}")
        slot[key] = {"error": f"{type(exc).__name__}: {exc}"}


def profile_one(path: Path, name: str, b: int, args, out: Path | None, results: dict) -> None:
    rr = run_backends(path, [BACKEND], device="cuda", batches=[b], iterations=args.iters, warmup=10, system=False)
    rec = rr.runs[0]
    if rec.status != "ok":
        print(f"   batch {b}: {BACKEND}/cuda {rec.status}: {rec.error}")
        return
    lat = rec.latency_ms
    print(f"   batch {b}: mean {lat['mean']:.3f} ms, p50 {lat['p50']:.3f}, p99 {lat['p99']:.3f}; {rec.throughput or 0:,.0f} images/s")
    t0 = time.perf_counter()
    report, traces = profile_backend(path, BACKEND, device="cuda", batch=b, runs=args.runs, iterations=args.iters, system=False)
    gpu = report.gpu or {}
    print(f"   batch {b}: profiled in {time.perf_counter() - t0:.1f} s; roofline device {report.roofline_device}")
    print(f"      kernel attribution coverage {report.coverage:.2%} (goal >= 98%); {gpu.get('kernels', 0):.0f} kernels/run on "
          f"{len(gpu.get('streams') or [])} stream(s)")
    print(f"      traced run median {report.traced_wall_ms:.3f} ms vs untraced p50 {report.latency_ms['p50']:.3f} ms "
          f"(profiling overhead {report.tracing_overhead:+.1%})")
    if "busy_us" in gpu:
        print(f"      GPU busy {_us(gpu['busy_us'])}, idle {_us(gpu['idle_us'])}, utilisation {gpu['utilization']:.1%} of the traced run, "
              f"memcpy/memset {_us(gpu['memory_us'])}, launch->start {_us(gpu.get('launch_latency_us'))}")
    tele = (gpu.get("telemetry") or {})
    sampled = tele.get("gpus") or []
    # the GPU that ran it (NVML numbers GPUs its own way); the only one sampled where that is unknown
    g0 = next((g for g in sampled if g.get("index") == gpu.get("telemetry_gpu")), sampled[0] if len(sampled) == 1 else None)
    if tele.get("available") and g0 is not None:
        figs = {k: (g0.get(k) or {}).get("mean") for k in ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c",
                                                            "gpu_utilization_pct", "memory_used_bytes")}
        print(f"      NVML GPU {g0.get('index')} over the timed runs (mean): {json.dumps(figs)}")
    elif tele.get("available"):
        print(f"      NVML: {len(sampled)} GPUs sampled; which one ran this is unknown")
    else:
        print(f"      NVML: {tele.get('reason') or 'no telemetry'}")
    for n in report.nodes[:5]:
        print(f"      {n.id:>6} {n.op_type:<14} {n.time_us:9.1f} µs GPU {n.share:6.1%}  {n.kernel_count or 0:3.0f} kernels  "
              f"host {_us(n.cpu_us)}  launch overhead {_us(n.launch_overhead_us)}  idle before {_us(n.idle_us)}  "
              f"{(n.achieved_flops_per_s or 0) / 1e12:7.2f} TFLOP/s  {n.name[:50]}")
        for k in n.kernels[:2]:
            print(f"             {k['time_us']:8.1f} µs grid {k.get('grid')} block {k.get('block')} regs {k.get('registers_per_thread')} "
                  f"smem {k.get('shared_memory')} occ {k.get('occupancy_pct')}%  {k['name'][:70]}")
    for u in report.unattributed[:3]:
        print(f"      unattributed: {u['name'][:70]} {u['time_us']:.1f} µs")
    if out is not None:
        trace = out / f"{name}_b{b}_trace.json"
        trace.write_text(json.dumps(chrome_trace(traces, {n.id: n.name or n.id for n in report.nodes}, f"{BACKEND}:cuda")))
        print(f"      wrote {trace.name} ({trace.stat().st_size / 2**20:.1f} MiB)")
    results["models"].setdefault(name, {})[str(b)] = {"run": rec.__dict__, "profile": report.to_dict()}


def counters_one(path: Path, name: str, b: int, args, out: Path | None, results: dict) -> None:
    from mlms_ir.gpu.ncu_run import run_counters

    t0 = time.perf_counter()
    try:
        rep = run_counters(path, batch=b, metric_set=args.metric_set, timeout=args.ncu_timeout,
                           workdir=(out / f"{name}_b{b}_ncu") if out else None)
    except MlmsIrError as exc:
        print(f"   counters batch {b}: unavailable: {exc}")
        results["counters"].setdefault(name, {})[str(b)] = {"error": str(exc)}
        return
    t = rep.totals
    print(f"   counters batch {b} ({time.perf_counter() - t0:.0f} s under ncu on {rep.gpu}, roofline {rep.device}): "
          f"{t.kernels} kernels, coverage {rep.coverage:.2%}; missing metrics {rep.missing_metrics or 'none'}")
    print(f"      totals: SIMT FLOPs {_g(t.flops)} vs static {_g(t.static_flops)} (ratio {_g(t.flops_ratio)}), "
          f"tensor-core inst {_g(t.tensor_inst)}; DRAM {_g(t.dram_bytes)} B vs static {_g(t.static_bytes)} B "
          f"(ratio {_g(t.bytes_ratio)}); SM {_g(t.sm_pct)}%, memory {_g(t.memory_pct)}%")
    for n in rep.nodes[:args.top_counters]:
        print(f"      {n.id:>6} {n.op_type:<12} {n.gpu_time_us:8.1f} µs  FLOPs {_g(n.flops_ratio)} of static  "
              f"DRAM {_g(n.bytes_ratio)} of static  SM {_g(n.sm_pct)}%  mem {_g(n.memory_pct)}%  TC {n.tensor_core}  "
              f"{_g(n.achieved_flops_per_s)} FLOP/s of attainable {_g(n.attainable_flops_per_s)}")
    for note in rep.notes:
        print(f"      note: {note}")
    results["counters"].setdefault(name, {})[str(b)] = rep.to_dict()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,vit_b_16")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--counters-batches", default="1", help="batches to run under ncu ('' for none)")
    ap.add_argument("--metric-set", default="roofline")
    ap.add_argument("--top-counters", type=int, default=5)
    ap.add_argument("--ncu-timeout", type=float, default=240.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--out", type=Path, help="write Chrome traces and ncu CSVs here")
    args = ap.parse_args(argv)
    facts = system_facts()
    gpu = facts["gpu"]
    print(f"== mlms_ir {mlms_ir.__version__}; GPU: {gpu.get('available')} {gpu.get('reason', '')}")
    for g in gpu.get("gpus", []):
        mem = g.get("memory_total_bytes")
        print(f"   GPU {g['index']}: {g['name']}, CC {g['compute_capability']}, {'-' if mem is None else f'{mem / 2**30:.0f}'} GiB, "
              f"SM max {g['sm_clock_max_mhz']} MHz, power limit {g['power_limit_w']} W; driver {gpu.get('driver')}")
    from mlms_ir.gpu.ncu_command import find_ncu

    try:
        print(f"   ncu: {find_ncu()}")
    except MlmsIrError as exc:
        print(f"   ncu: {exc}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"system": facts, "models": {}, "counters": {}}
    counter_batches = [int(x) for x in args.counters_batches.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        # a check script: whatever fails is reported and the rest goes on
        for name in args.models.split(","):
            t0 = time.perf_counter()
            try:
                path = export(name, Path(tmp))
            except Exception as exc:  # noqa: BLE001
                print(f"== {name}: export FAILED {type(exc).__name__}: {exc}")
                results["models"][name] = {"error": f"export: {type(exc).__name__}: {exc}"}
                _save(args, results)
                continue
            print(f"== {name}: exported in {time.perf_counter() - t0:.1f} s")
            for b in (int(x) for x in args.batches.split(",")):
                _step(f"batch {b}", results["models"].setdefault(name, {}), str(b), profile_one,
                      path, name, b, args, args.out, results)
                _save(args, results)
            for b in counter_batches:
                _step(f"counters batch {b}", results["counters"].setdefault(name, {}), str(b), counters_one,
                      path, name, b, args, args.out, results)
                _save(args, results)
    _save(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
