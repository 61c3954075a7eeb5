#!/usr/bin/env python3
"""Write the zoo's manifests from torchvision's and timm's own metadata (and the shipped digits-cnn).

**torchvision**: one manifest per (model, weights) pair that torchvision registers: every builder of
``torchvision.models.list_models()`` (classification, quantization, detection, segmentation,
video, optical_flow) times every member of ``get_model_weights(name)``. Each manifest carries what
torchvision publishes: the weights URL and the sha256 prefix in its file name, ``meta["_metrics"]``
(accuracies as fractions), ``num_params``, ``_ops`` (GFLOPS), ``_file_size``, ``recipe``,
``min_size``, the preprocessing of ``transforms()`` and a reference to the label set.

**timm**: one manifest per model of :data:`TIMM_MODELS`, a curated list of timm models that
torchvision does not have (small ViTs and hybrids, mobile CNNs, ...). Each is built once with random
weights (``timm.create_model(name, pretrained=False)``, nothing downloaded) to read its
``pretrained_cfg`` (input size, mean, std, interpolation, crop_pct, num_classes, licence, hub id),
the evaluation transform timm builds for it, its parameter count and its multiply-adds
(``torch.utils.flop_counter``, attention unfused). timm's weights are on the Hugging Face hub, which
gives no checksum to pin: the manifests have no weights URL. timm's package has no accuracy table,
so their ``reference`` is empty.

Outputs (under ``--out``, default the ``zoo/`` folder beside this script's folder)::

    manifests/torchvision.json   # a JSON list, one manifest per line, sorted by name
    manifests/timm.json          # the same for TIMM_MODELS
    manifests/builtin.json       # digits-cnn, from builtin/digits_cnn.json
    labels.json                  # {label set id: [names]}; every label set once

Names: the DEFAULT weights of builder ``B`` are ``B``; any other weights ``W`` are ``B.w`` (the
member name in lower case), e.g. ``resnet50`` (IMAGENET1K_V2) and ``resnet50.imagenet1k_v1``. The
DEFAULT entry lists ``B.w`` of its own weights as an alias. A timm model ``arch.tag`` is ``arch``
when ``tag`` is timm's default tag for ``arch`` (alias ``arch.tag``), else ``arch.tag``.

Detection models resize and normalise inside themselves; the script builds each once with random
parameters (no download) to read that from ``model.transform``.

Usage::

    .venv/bin/python tools/make_zoo_manifests.py [--out zoo] [--check]
    .venv/bin/python tools/make_zoo_manifests.py --export-timm DIR   # also export every timm entry to ONNX

``--check`` writes nothing and exits 1 when the files on disk differ from what would be written.
``--export-timm DIR`` converts every model of TIMM_MODELS with
``mlms_ir.converters.torch.from_timm`` into ``DIR/<name>/model.onnx`` (checked against torch) and
prints, per model, the exporter, the error and mlms_ir's params and MACs next to the manifest's.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "zoo"
#: torchvision's code licence (its weights' terms are stated per weights where torchvision states them).
CODE_LICENCE = "BSD-3-Clause"
#: meta["_metrics"] values given in percent, stored as fractions.
PERCENT_METRICS = {"acc@1": "top1", "acc@5": "top5", "box_map": "box_map", "mask_map": "mask_map", "kp_map": "kp_map",
                   "miou": "miou", "pixel_acc": "pixel_acc", "fl_all": "fl_all"}
#: meta["_metrics"] values kept in their own unit (end-point error in pixels).
PIXEL_METRICS = {"epe": "epe_px", "per_image_epe": "per_image_epe_px"}

#: The timm models of the zoo (``arch.tag``: the weights whose pretrained_cfg the entry describes):
#: popular timm architectures that torchvision does not have, each exported to ONNX, checked against
#: torch and analysed with ``--export-timm``. ``test_vit`` and ``test_efficientnet`` are timm's own
#: tiny models (0.4M parameters, real ImageNet weights at 160x160), which the tests build in seconds.
#: Left out after trying (timm 1.0.31, torch 2.14.1): ``efficientnetv2_rw_t`` and ``mobileone_s0``,
#: whose random-weights outputs grow so large (~6e2 and ~5e14) that torch itself differs between
#: batch 1 and 3 beyond the check's tolerance.
TIMM_MODELS = (
    # transformers and hybrids
    "deit_tiny_patch16_224.fb_in1k",
    "deit_small_patch16_224.fb_in1k",
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
    "levit_128s.fb_dist_in1k",
    "pit_ti_224.in1k",
    "crossvit_tiny_240.in1k",
    "xcit_tiny_12_p16_224.fb_in1k",
    "cait_xxs24_224.fb_dist_in1k",
    "convit_tiny.fb_in1k",
    "tiny_vit_5m_224.dist_in22k_ft_in1k",
    "mobilevit_xxs.cvnets_in1k",
    "mobilevitv2_050.cvnets_in1k",
    "efficientformer_l1.snap_dist_in1k",
    "efficientformerv2_s0.snap_dist_in1k",
    "fastvit_t8.apple_in1k",
    "edgenext_xx_small.in1k",
    "poolformer_s12.sail_in1k",
    "maxvit_nano_rw_256.sw_in1k",
    "coatnet_0_rw_224.sw_in1k",
    "mvitv2_tiny.fb_in1k",
    "hiera_tiny_224.mae_in1k_ft_in1k",
    "efficientvit_m0.r224_in1k",
    "efficientvit_b0.r224_in1k",
    "test_vit.r160_in1k",
    # CNNs
    "convnext_atto.d2_in1k",
    "convnextv2_atto.fcmae_ft_in1k",
    "tf_efficientnetv2_b0.in1k",
    "regnetz_b16.ra3_in1k",
    "resnetrs50.tf_in1k",
    "ghostnet_100.in1k",
    "mixnet_s.ft_in1k",
    "lcnet_050.ra2_in1k",
    "cspdarknet53.ra_in1k",
    "dla34.in1k",
    "rexnet_100.nav_in1k",
    "mobilenetv4_conv_small.e2400_r224_in1k",
    "repvit_m1.dist_in1k",
    "resnest14d.gluon_in1k",
    "eca_nfnet_l0.ra2_in1k",
    "hgnetv2_b0.ssld_stage2_ft_in1k",
    "test_efficientnet.r160_in1k",
)
#: The label set of timm's 1000-class ImageNet heads: torchvision's ``imagenet-1k`` (both use the
#: ILSVRC-2012 class order, the sorted WordNet ids; checked in :func:`timm_manifests`).
TIMM_IMAGENET_LABELS = "imagenet-1k"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def model_name(builder: str, w: Any, default: Any) -> str:
    """``builder`` for the DEFAULT weights, ``builder.member`` (lower case) for the others."""
    return builder if w is default else f"{builder}.{w.name.lower()}"


def reference(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """``meta["_metrics"]`` as ``[{"dataset", metric: value}]``; percentages as fractions (5 decimals)."""
    out = []
    for dataset, metrics in meta.get("_metrics", {}).items():
        entry: dict[str, Any] = {"dataset": dataset}
        if all(math.isnan(float(v)) for v in metrics.values()):
            continue  # vgg16 IMAGENET1K_FEATURES: feature-extractor weights, no accuracy published
        for k, v in metrics.items():
            if k in PERCENT_METRICS:
                entry[PERCENT_METRICS[k]] = round(float(v) / 100.0, 7)
            elif k in PIXEL_METRICS:
                entry[PIXEL_METRICS[k]] = float(v)
            else:
                raise SystemExit(f"unknown metric {k!r} in {dataset}: add it to PERCENT_METRICS or PIXEL_METRICS")
        out.append(entry)
    return out


class LabelSets:
    """Collects each distinct label list once and names it after its dataset."""

    def __init__(self) -> None:
        self.by_slug: dict[str, list[tuple[str, ...]]] = {}

    def add(self, dataset: str, labels: list[str]) -> tuple[str, tuple[str, ...]]:
        slug = _slug(dataset)
        key = tuple(str(x) for x in labels)
        sets = self.by_slug.setdefault(slug, [])
        if key not in sets:
            sets.append(key)
        return slug, key

    def ids(self) -> dict[tuple[str, tuple[str, ...]], str]:
        out = {}
        for slug, sets in self.by_slug.items():
            for key in sets:
                out[(slug, key)] = slug if len(sets) == 1 else f"{slug}-{len(key)}"
        return out


def torchvision_manifests(labels: LabelSets) -> list[dict[str, Any]]:
    import torch
    import torchvision
    from torchvision import models as M

    from mlms_ir.converters import torchvision_spec as spec

    manifests: list[dict[str, Any]] = []
    for builder in M.list_models():
        enum = M.get_model_weights(builder)
        default = enum.DEFAULT
        task = spec.task_of(builder)
        detection_model = None
        if task in ("object-detection", "instance-segmentation", "keypoint-detection"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                detection_model = M.get_model(builder, weights=None, **spec.builder_kwargs(builder, default)).eval()
        for w in enum:
            meta = w.meta
            kwargs = spec.builder_kwargs(builder, w)
            name = model_name(builder, w, default)
            res = spec.resolution_of(builder, w) or spec.detection_resolution(detection_model)
            dataset = next(iter(meta.get("_metrics", {})), builder)
            m: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "name": name,
                "aliases": [f"{builder}.{w.name.lower()}"] if w is default else [],
                "task": task,
                "framework": "pytorch",
                "source": {
                    "kind": "torchvision",
                    "builder": builder,
                    "weights": spec.weights_full_name(w),
                    "default": w is default,
                    "builder_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                    "torchvision_version": torchvision.__version__.split("+")[0],
                },
                "weights": {
                    "url": w.url,
                    "file": w.url.rsplit("/", 1)[-1],
                    "sha256_prefix": spec.sha256_prefix_of(w.url),
                    "size_mb": meta.get("_file_size"),
                },
                "inputs": spec.input_spec(builder, res, frames=spec.VIDEO_FRAMES),
                "resolution": list(res),
                "preprocessing": spec.preprocessing(builder, w, detection_model),
                "labels": None,
                "licence": {
                    "code": CODE_LICENCE,
                    "weights": meta.get("license"),
                    "weights_note": (
                        "torchvision states these terms for the weights" if meta.get("license") else
                        f"torchvision states no licence for these weights; the terms of the training data ({dataset}) may apply"
                    ),
                },
                "reference": reference(meta),
                "num_params": int(meta["num_params"]),
                "gflops": float(meta["_ops"]),
                "recipe": meta.get("recipe"),
                "min_size": list(meta.get("min_size", ())) or None,
            }
            if meta.get("categories"):
                m["labels"] = labels.add(dataset, meta["categories"])
            if "keypoint_names" in meta:
                m["keypoints"] = labels.add(dataset + "-keypoints", meta["keypoint_names"])
            if task == "video-classification":
                m["frames"] = spec.VIDEO_FRAMES
                m["clip_len"] = spec.clip_len_of(w)
                m["min_temporal_size"] = meta.get("min_temporal_size")
            if spec.is_quantized(builder):
                m["quantized"] = {"backend": meta.get("backend"), "unquantized": str(meta.get("unquantized", "")) or None}
            manifests.append(m)
    return manifests


def timm_model_name(arch: str, tag: str | None, default_tag: str | None) -> str:
    """``arch`` for timm's default tag of ``arch``, ``arch.tag`` for another one."""
    return arch if tag is None or tag == default_tag else f"{arch}.{tag}"


def _check_timm_imagenet_order(imagenet_labels: list[str]) -> None:
    """timm's ImageNet-1k class i is torchvision's class i (torchvision's name starts with timm's first lemma)."""
    import timm.data

    info = timm.data.ImageNetInfo()
    bad = [i for i in range(info.num_classes())
           if not imagenet_labels[i].lower().startswith(info.index_to_description(i).split(",")[0].strip().lower())]
    if info.num_classes() != len(imagenet_labels) or bad:
        raise SystemExit(f"timm's ImageNet-1k classes differ from torchvision's at {bad[:5]}: give timm entries their own label set")


def timm_manifests(imagenet_labels: list[str]) -> list[dict[str, Any]]:
    """One manifest per model of :data:`TIMM_MODELS`, from timm's own metadata (see the module docstring)."""
    import timm
    import torch

    from mlms_ir.converters import timm_spec

    _check_timm_imagenet_order(imagenet_labels)
    version = timm.__version__.split("+")[0]
    manifests: list[dict[str, Any]] = []
    for full in TIMM_MODELS:
        cfg = timm_spec.pretrained_cfg(full)
        arch, tag = cfg["architecture"], cfg.get("tag")
        if f"{arch}.{tag}" != full:
            raise SystemExit(f"timm resolves {full} to {arch}.{tag}: fix TIMM_MODELS")
        default = timm_spec.default_tag(arch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            model = timm_spec.create(full)
        res = timm_spec.resolution_of(model)
        name = timm_model_name(arch, tag, default)
        num_classes = int(cfg.get("num_classes") or 0)
        min_size = cfg.get("min_input_size")
        m: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "aliases": [full] if name != full else [],
            "task": "image-classification",
            "framework": "pytorch",
            "source": {
                "kind": "timm",
                "model": full,
                "architecture": arch,
                "tag": tag,
                "weights": timm_spec.weights_entry(cfg)["hf_hub_id"],
                "default": tag == default,
                "builder_kwargs": timm_spec.builder_kwargs(cfg),
                "timm_version": version,
            },
            "weights": timm_spec.weights_entry(cfg),
            "inputs": timm_spec.input_spec(res),
            "resolution": list(res),
            "preprocessing": timm_spec.preprocessing(model),
            "labels": TIMM_IMAGENET_LABELS if num_classes == len(imagenet_labels) else None,
            "licence": timm_spec.licence(cfg),
            "reference": [],
            "num_params": timm_spec.num_params(model),
            "gflops": timm_spec.count_macs(model, res) / 1e9,
            "gflops_note": ("counted by mlms_ir for one image with torch.utils.flop_counter (attention unfused); "
                            "timm's package publishes no figure"),
            "recipe": cfg.get("origin_url") or None,
            "paper": cfg.get("paper_ids") or cfg.get("paper_name") or None,
            "min_size": [int(v) for v in min_size[-2:]] if min_size else None,
            "fixed_input_size": bool(cfg.get("fixed_input_size", False)),
        }
        if cfg.get("test_input_size"):
            m["test_input_size"] = [int(v) for v in cfg["test_input_size"][-2:]]
        manifests.append(m)
    return manifests


def export_timm(out: Path) -> int:
    """Convert every model of TIMM_MODELS to ONNX under ``out`` and compare mlms_ir's counts with the manifest."""
    import time

    import mlms_ir
    from mlms_ir.converters.torch import from_timm
    from mlms_ir.errors import MlmsIrError

    failed = 0
    manifests = {m["source"]["model"]: m for m in json.loads((DEFAULT_OUT / "manifests" / "timm.json").read_text())}
    for full in TIMM_MODELS:
        m = manifests.get(full)
        start = time.perf_counter()
        try:
            r = from_timm(full, out / full / "model.onnx", resolution=m["resolution"] if m else None)
        except MlmsIrError as exc:
            failed += 1
            print(f"FAIL {full} ({time.perf_counter() - start:.0f} s): {exc}", flush=True)
            continue
        a = mlms_ir.analyze(mlms_ir.load(r.path, dims={"batch": 1}))
        cmp = ""
        if m:
            cmp = (f"params {a.totals.params} vs {m['num_params']} ({a.totals.params / m['num_params'] - 1:+.2%}), "
                   f"GMACs {a.totals.macs / 1e9:.4g} vs {m['gflops']:.4g} ({a.totals.macs / 1e9 / m['gflops'] - 1:+.2%})")
        print(f"OK {full} ({time.perf_counter() - start:.0f} s): exporter {r.exporter}, max abs error {r.max_abs_error:.2g}; {cmp}",
              flush=True)
    return 1 if failed else 0


def digits_manifest(labels: LabelSets) -> dict[str, Any]:
    """The shipped digits-cnn, from ``zoo/builtin/digits_cnn.json`` and its ONNX file (params, MACs)."""
    import mlms_ir
    from mlms_ir.zoo import builtin_manifest, builtin_path

    b = builtin_manifest("digits-cnn")
    analysis = mlms_ir.analyze(mlms_ir.load(builtin_path("digits-cnn"), dims={"batch": 1}))
    shape = b["input"]["shape"]
    acc = b["accuracy"]
    ds = b["dataset"]
    return {
        "schema_version": SCHEMA_VERSION,
        "name": b["name"],
        "aliases": [],
        "task": b["task"],
        "framework": b["framework"],
        "source": {"kind": "builtin", "file": f"builtin/{b['file']}", "script": b["source"], "sha256": b["sha256"]},
        "weights": {"url": None, "file": b["file"], "sha256": b["sha256"], "size_mb": round(b["size_bytes"] / 1e6, 3),
                    "trained": True},
        "inputs": [{"name": b["input"]["name"], "shape": shape, "dtype": b["input"]["dtype"]}],
        "resolution": [int(shape[-2]), int(shape[-1])],
        "preprocessing": {
            "transform": "sklearn-digits", "resize": None, "crop": None, "mean": [0.0], "std": [1.0], "interpolation": None,
            "layout": "NCHW", "dtype": "float32", "scale": 1.0 / 16.0, "note": b["preprocessing"],
        },
        "labels": labels.add(ds["name"], b["labels"]),
        "licence": {"code": "Apache-2.0", "weights": "Apache-2.0",
                    "weights_note": "trained by mlms_ir on scikit-learn's bundled digits data (BSD-3-Clause)"},
        "reference": [{"dataset": f"{ds['name']} test split ({ds['n_test']} images)", "top1": acc["top1"], "top5": acc["top5"],
                       "measured_with": acc["measured_with"]}],
        "num_params": int(analysis.totals.params),
        "gflops": analysis.totals.macs / 1e9,
        "recipe": b["source"],
        "min_size": None,
    }


def _finish_labels(manifests: list[dict[str, Any]], labels: LabelSets) -> dict[str, list[str]]:
    ids = labels.ids()
    for m in manifests:
        for key in ("labels", "keypoints"):
            if isinstance(m.get(key), tuple):
                m[key] = ids[m[key]]
    return {ids[k]: list(k[1]) for k in sorted(ids, key=lambda k: ids[k])}


def dump_list(items: list[dict[str, Any]]) -> str:
    """A JSON list with one compact object per line."""
    return "[\n" + ",\n".join(json.dumps(m, separators=(",", ":"), sort_keys=False) for m in items) + "\n]\n"


def build_all() -> dict[str, str]:
    """Relative path -> text of every file the zoo's manifests consist of."""
    labels = LabelSets()
    tv = sorted(torchvision_manifests(labels), key=lambda m: m["name"])
    digits = digits_manifest(labels)
    label_sets = _finish_labels([*tv, digits], labels)
    if TIMM_IMAGENET_LABELS not in label_sets:
        raise SystemExit(f"no label set '{TIMM_IMAGENET_LABELS}' for the timm entries")
    timm_entries = sorted(timm_manifests(label_sets[TIMM_IMAGENET_LABELS]), key=lambda m: m["name"])
    lines = [f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}" for k, v in label_sets.items()]
    label_text = "{\n" + ",\n".join(lines) + "\n}\n"
    return {"manifests/torchvision.json": dump_list(tv), "manifests/timm.json": dump_list(timm_entries),
            "manifests/builtin.json": dump_list([digits]), "labels.json": label_text}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the zoo folder (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files differ")
    ap.add_argument("--export-timm", type=Path, metavar="DIR",
                    help="only export every timm entry to DIR/<name>/model.onnx and compare counts; writes no manifest")
    args = ap.parse_args(argv)
    if args.export_timm:
        return export_timm(args.export_timm)
    files = build_all()
    stale = []
    for rel, text in files.items():
        path = args.out / rel
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if args.check:
        for rel in stale:
            print(f"out of date: {args.out / rel}", file=sys.stderr)
        return 1 if stale else 0
    counts: dict[str, int] = {}
    for rel in ("manifests/torchvision.json", "manifests/timm.json", "manifests/builtin.json"):
        for m in json.loads(files[rel]):
            counts[m["task"]] = counts.get(m["task"], 0) + 1
    print(f"wrote {sum(counts.values())} manifests to {args.out / 'manifests'}: "
          + ", ".join(f"{t} {n}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
