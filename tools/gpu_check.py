"""GPU checks: the torch backend on CUDA for a CNN and a transformer, with kernel attribution,
NVML telemetry and the profiling overhead. Run through tools/gpu_check.sh on a machine with an
NVIDIA GPU; it prints what it measured (and writes it as JSON with --json)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlms_ir
from mlms_ir.runner import profile_backend, run_backends
from mlms_ir.system import system_facts


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,vit_b_16")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    facts = system_facts()
    gpu = facts["gpu"]
    print(f"== mlms_ir {mlms_ir.__version__}; GPU: {gpu.get('available')} {gpu.get('reason', '')}")
    for g in gpu.get("gpus", []):
        print(f"   GPU {g['index']}: {g['name']}, CC {g['compute_capability']}, {g['memory_total_bytes'] / 2**30:.0f} GiB, "
              f"SM max {g['sm_clock_max_mhz']} MHz, power limit {g['power_limit_w']} W; driver {gpu.get('driver')}")
    results = {"system": facts, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            t0 = time.perf_counter()
            path = export(name, Path(tmp))
            print(f"== {name}: exported in {time.perf_counter() - t0:.1f} s")
            for b in (int(x) for x in args.batches.split(",")):
                rr = run_backends(path, ["torch"], device="cuda", batches=[b], iterations=args.iters, warmup=10, system=False)
                rec = rr.runs[0]
                if rec.status != "ok":
                    print(f"   batch {b}: torch/cuda {rec.status}: {rec.error}")
                    continue
                lat = rec.latency_ms
                tele = (rec.gpu or {}).get("gpus", [{}])[0] if rec.gpu else {}
                print(f"   batch {b}: mean {lat['mean']:.3f} ms, p50 {lat['p50']:.3f}, p99 {lat['p99']:.3f}; {rec.throughput:,.0f} images/s; "
                      f"GPU util {tele.get('gpu_utilization_pct')}, power {tele.get('power_w')}, memory {tele.get('memory_used_bytes')}")
                report, traces = profile_backend(path, "torch", device="cuda", batch=b, runs=args.runs, iterations=args.iters, system=False)
                kernels = sum(1 for tr in traces for ev in tr.events if ev.kind == "kernel") / max(1, len(traces))
                print(f"   batch {b}: kernel attribution coverage {report.coverage:.2%} (goal >= 98%), {kernels:.0f} kernels/run, "
                      f"traced run {report.traced_wall_ms:.3f} ms vs untraced {report.latency_ms['mean']:.3f} ms "
                      f"(overhead {report.tracing_overhead:+.1%})")
                for n in report.nodes[:5]:
                    print(f"      {n.id:>6} {n.op_type:<12} {n.time_us:9.1f} µs GPU  {n.share:6.1%}  "
                          f"{(n.achieved_flops_per_s or 0) / 1e12:7.2f} TFLOP/s  {n.name[:60]}")
                for u in report.unattributed[:3]:
                    print(f"      unattributed: {u['name'][:70]} {u['time_us']:.1f} µs")
                results["models"].setdefault(name, {})[str(b)] = {"run": rec.__dict__, "profile": report.to_dict()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
