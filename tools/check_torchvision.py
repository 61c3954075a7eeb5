"""Check mlms_ir's static counts against torchvision's published figures, for every
classification model (or a subset).

Models are exported by ``tools/export_torchvision.py`` into a cache (``--cache``, default
``~/.cache/mlms_ir/torchvision``); missing ones are exported first (with random weights: nothing is
downloaded). For each model this prints params and MACs next to torchvision's ``num_params`` and
``_ops`` ("GFLOPS", one multiply-add counted once) with the relative difference, and flags any
beyond the tolerances (params 1.5%, MACs 2%). A training-only branch absent from the inference
graph (InceptionV3's ``AuxLogits``) is taken off the published parameter count, and said so.

    python tools/check_torchvision.py                     # every model (export ~15 min on 2 cores)
    python tools/check_torchvision.py --models resnet50,vit_b_16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import export_torchvision as tvx  # noqa: E402

import mlms_ir  # noqa: E402

TRAINING_ONLY = {"inception_v3": "AuxLogits"}
PARAMS_TOL, MACS_TOL = 0.015, 0.02


def training_only_params(name: str) -> int:
    prefix = TRAINING_ONLY.get(name)
    if not prefix:
        return 0
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=tvx.DEFAULT_OUT)
    ap.add_argument("--models", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--exporter", choices=tvx.EXPORTERS, default="legacy")
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m] or tvx.list_classification_models()
    rows, failures = [], 0
    print(f"{'model':24s} {'params':>13s} {'published':>13s} {'diff':>8s}   {'GMACs':>8s} {'published':>9s} {'diff':>8s}  verdict")
    for name in names:
        meta = tvx.read_meta(name, args.cache, args.exporter)
        if meta is None or meta.get("status") != "ok":
            try:
                tvx.export_one(name, args.cache, args.exporter)
            except Exception as exc:  # noqa: BLE001 - one model's export failure must not stop the sweep
                print(f"{name:24s} export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                failures += 1
                continue
            meta = tvx.read_meta(name, args.cache, args.exporter)
        if meta is None or meta.get("status") != "ok":
            print(f"{name:24s} export failed: {meta.get('error') if meta else 'no result'}")
            failures += 1
            continue
        path = tvx.model_dir(name, args.cache, args.exporter) / "model.onnx"
        t0 = time.perf_counter()
        try:
            a = mlms_ir.analyze(path)
        except mlms_ir.MlmsIrError as exc:
            print(f"{name:24s} analysis failed: {exc}")
            failures += 1
            continue
        seconds = time.perf_counter() - t0
        aux = training_only_params(name)
        ref_params = meta["published_num_params"] - aux
        ref_gmacs = meta["published_gflops"]
        dp = (a.totals.params - ref_params) / ref_params
        dm = (a.totals.macs / 1e9 - ref_gmacs) / ref_gmacs
        ok = abs(dp) <= PARAMS_TOL and abs(dm) <= MACS_TOL and a.totals.complete
        failures += not ok
        note = f" (published minus {aux:,} training-only)" if aux else ""
        print(f"{name:24s} {a.totals.params:13,d} {ref_params:13,d} {dp:+8.2%}   {a.totals.macs / 1e9:8.3f} {ref_gmacs:9.3f} {dm:+8.2%}  "
              f"{'ok' if ok else 'OUT'}{'' if a.totals.complete else ' (incomplete)'}{note}  [{seconds:.1f} s]")
        rows.append({"model": name, "params": a.totals.params, "published_params": ref_params, "training_only_params": aux,
                     "macs": a.totals.macs, "published_gflops": ref_gmacs, "params_diff": dp, "macs_diff": dm,
                     "complete": a.totals.complete, "ok": ok, "analyze_seconds": seconds})
    print(f"{len(rows) - sum(not r['ok'] for r in rows)} of {len(names)} models within tolerance "
          f"(params {PARAMS_TOL:.1%}, MACs {MACS_TOL:.0%})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
