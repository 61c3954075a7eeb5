#!/usr/bin/env python3
"""Write the zoo's manifests from torchvision's own metadata (and the shipped digits-cnn).

One manifest per (model, weights) pair that torchvision registers: every builder of
``torchvision.models.list_models()`` (classification, quantization, detection, segmentation,
video, optical_flow) times every member of ``get_model_weights(name)``. Each manifest carries what
torchvision publishes: the weights URL and the sha256 prefix in its file name, ``meta["_metrics"]``
(accuracies as fractions), ``num_params``, ``_ops`` (GFLOPS), ``_file_size``, ``recipe``,
``min_size``, the preprocessing of ``transforms()`` and a reference to the label set.

Outputs (under ``--out``, default the ``zoo/`` folder beside this script's folder)::

    manifests/torchvision.json   # a JSON list, one manifest per line, sorted by name
    manifests/builtin.json       # digits-cnn, from builtin/digits_cnn.json
    labels.json                  # {label set id: [names]}; every label set once

Names: the DEFAULT weights of builder ``B`` are ``B``; any other weights ``W`` are ``B.w`` (the
member name in lower case), e.g. ``resnet50`` (IMAGENET1K_V2) and ``resnet50.imagenet1k_v1``. The
DEFAULT entry lists ``B.w`` of its own weights as an alias.

Detection models resize and normalise inside themselves; the script builds each once with random
parameters (no download) to read that from ``model.transform``.

Usage::

    .venv/bin/python tools/make_zoo_manifests.py [--out zoo] [--check]

``--check`` writes nothing and exits 1 when the files on disk differ from what would be written.
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
    lines = [f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}" for k, v in label_sets.items()]
    label_text = "{\n" + ",\n".join(lines) + "\n}\n"
    return {"manifests/torchvision.json": dump_list(tv), "manifests/builtin.json": dump_list([digits]), "labels.json": label_text}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the zoo folder (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when the files differ")
    args = ap.parse_args(argv)
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
    for rel in ("manifests/torchvision.json", "manifests/builtin.json"):
        for m in json.loads(files[rel]):
            counts[m["task"]] = counts.get(m["task"], 0) + 1
    print(f"wrote {sum(counts.values())} manifests to {args.out / 'manifests'}: "
          + ", ".join(f"{t} {n}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
