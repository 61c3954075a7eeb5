"""``evaluate`` (top-1/top-5 against the published accuracy) and ``datasets list|download``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mlms_ir.cli.common import backend_names, emit, output_format, session_options
from mlms_ir.errors import MlmsIrError
from mlms_ir.files import sha256_of


def _digits_manifest() -> dict[str, Any]:
    from mlms_ir.zoo import builtin_manifest

    m = builtin_manifest()
    return {"preprocessing": {"scale": 1 / 16, "channels": 1, "layout": "NCHW"},
            "accuracy": {"top1": m["accuracy"]["top1"], "top5": m["accuracy"]["top5"]}, "dataset": "digits",
            "name": m["name"]}


def _same_file_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the shipped digits-cnn or of a zoo model built here whose ONNX file is
    byte-identical to ``path`` (same size, then same sha256), or None."""
    from mlms_ir.zoo import builtin_path

    try:
        size = path.stat().st_size
    except OSError:
        return None
    candidates: list[tuple[str | None, Path]] = [(None, builtin_path())]
    try:
        from mlms_ir.zoo.builder import BUILD_FILE, MODEL_FILE, zoo_cache_dir

        built = sorted(zoo_cache_dir().glob(f"*/{MODEL_FILE}"))
        candidates += [(p.parent.name, p) for p in built if (p.parent / BUILD_FILE).is_file()]
    except OSError:
        pass
    digest = None
    for name, cand in candidates:
        try:
            if cand.resolve() != path.resolve():
                if cand.stat().st_size != size:
                    continue
                digest = digest or sha256_of(path)
                if sha256_of(cand) != digest:
                    continue
        except OSError:
            continue
        if name is None:
            return {**_digits_manifest(), "matched": str(cand)}
        from mlms_ir.zoo import manifest as zoo_manifest
        from mlms_ir.zoo.builder import read_build_info

        try:
            man = zoo_manifest.get(name)
        except MlmsIrError:
            continue
        if (read_build_info(name) or {}).get("weights") == "random":
            print(f"mlms_ir: warning: {path.name} is the zoo's {man['name']} built with random weights: its accuracy means nothing",
                  file=sys.stderr)
        return {**_manifest_fields(man), "name": man["name"], "matched": str(cand)}
    return None


def _model_and_manifest(model: str | None) -> tuple[str, dict[str, Any] | None]:
    """The model's path and its manifest (preprocessing, reference accuracy, name), where one is
    known: the zoo's for zoo:NAME and for a file byte-identical to a zoo model here."""
    from mlms_ir.zoo import DEFAULT_MODEL, builtin_path

    if model is None or str(model) in ("", DEFAULT_MODEL, f"zoo:{DEFAULT_MODEL}"):
        return str(builtin_path()), _digits_manifest()
    text = str(model)
    if text.startswith("zoo:"):
        from mlms_ir.zoo import manifest as zoo_manifest

        man = zoo_manifest.get(text[4:])
        path = zoo_manifest.resolve(text)
        info = {**_manifest_fields(man), "name": man["name"]}
        if man.get("source", {}).get("kind") in ("torchvision", "timm"):
            from mlms_ir.zoo.builder import weights_downloaded

            if not weights_downloaded(man["name"]):
                how = (f"build it with 'zoo build {man['name']} --weights'" if man["source"]["kind"] == "torchvision"
                       else "mlms_ir cannot download timm's weights")
                print(f"mlms_ir: warning: {man['name']} has random weights ({how}): its accuracy means nothing", file=sys.stderr)
        return str(path), info
    return text, _same_file_manifest(Path(text))


#: The zoo's reference data sets, as the data set names evaluate reads.
_DATASET_OF = {"imagenet-1k": "imagenet", "imagenet": "imagenet", "cifar-10": "cifar10", "cifar-100": "cifar100", "mnist": "mnist",
               "fashion-mnist": "fashion-mnist", "sklearn-digits": "digits", "digits": "digits"}


def _manifest_fields(man: dict[str, Any]) -> dict[str, Any]:
    """Preprocessing, the published classification accuracy and its data set, from a zoo manifest."""
    refs = [r for r in man.get("reference") or [] if isinstance(r, dict) and r.get("top1") is not None]
    ref = refs[0] if refs else {}
    prep = {k: v for k, v in (man.get("preprocessing") or {}).items() if k not in ("transform", "antialias")}
    return {"preprocessing": prep, "accuracy": {k: ref.get(k) for k in ("top1", "top5") if ref.get(k) is not None},
            "dataset": _DATASET_OF.get(str(ref.get("dataset", "")).lower())}


def evaluate(
    model: str | None = None,
    dataset: str | None = None,
    root: str | None = None,
    limit: int | None = None,
    backends: str = "ort",
    device: str = "cpu",
    batch_size: int = 64,
    labels_file: str | None = None,
    synsets: str | None = None,
    preprocess: Any = None,
    label_offset: int | None = None,
    reference_top1: float | None = None,
    reference_top5: float | None = None,
    tolerance: float | None = None,
    opt: str | None = None,
    progress: bool = True,
    format: str | None = None,  # noqa: A002
    output: str | None = None,
    store: str | None = None,
) -> None:
    """Top-1 and top-5 accuracy of a classifier on a data set, per backend, against its published figure.

    The model's first output is read as per-class scores [batch, classes]; one giving integer class labels
    ([batch] or [batch, 1]) is scored on top-1 only, its top-5 reported as not available.

    Args:
        model: path of an .onnx classifier, or zoo:NAME (default: the embedded digits-cnn model).
        dataset: digits, mnist, fashion-mnist, cifar10, cifar100 or imagenet (default: the model's, digits for digits-cnn).
        root: the data set's folder (default: where 'datasets download' puts it).
        limit: evaluate only the first N images.
        backends: comma-separated backends, e.g. ort,torch,reference.
        device: cpu, cuda or tensorrt.
        batch_size: images per run (a model with a fixed batch uses its own).
        labels_file: ImageNet as flat files: 'FILE LABEL' per line.
        synsets: ImageNet synset map ('n01440764 tench, ...' per line) giving the class order.
        preprocess: JSON of the preprocessing (resize, crop, interpolation, scale, mean, std, layout, channels, dtype), overriding
            the manifest's. A model with no manifest gets the data set's default, reported as assumed (digits scale 1/16;
            mnist, fashion-mnist, cifar10/100 scale 1/255; imagenet resize 256, crop 224, ImageNet's mean and std). A float
            input is fed its own float type; give an integer dtype (e.g. uint8) for a model that takes integer pixels.
        label_offset: model class N+i is the data set's label i, for a model with more classes than the data set (1 for a
            1001-class TF-slim ImageNet model whose class 0 is background, 0 when the extra classes come last); top-k is then
            ranked over those classes only. Required when the model has more classes, else 0.
        reference_top1: the published top-1 to judge against, a fraction in [0, 1] (e.g. 0.987), overriding the manifest's.
        reference_top5: the published top-5, a fraction in [0, 1].
        tolerance: how far top-1 may be from the reference, a fraction in [0, 1] (default: the 99% interval for the number of
            images).
        opt: ORT graph optimisation level.
        progress: show a progress bar on a terminal (the default; --noprogress turns it off).
        format: table (default) or json.
        output: write to this file instead of stdout.
        store: the results store (default: $MLMS_IR_STORE, else the user's data dir); none: do not record.
    """
    from mlms_ir.datasets import open_dataset
    from mlms_ir.datasets.preprocess import DATASET_DEFAULTS, INT_DTYPES, Preprocess, dataset_default, describe
    from mlms_ir.evaluate import check_fraction, check_label_offset, records_from_evaluation
    from mlms_ir.evaluate import evaluate as run_evaluate

    fmt = output_format(format, output)
    names = backend_names(backends)
    for flag, val, unit in (("--reference-top1", reference_top1, "%"), ("--reference-top5", reference_top5, "%"),
                            ("--tolerance", tolerance, " pp")):
        if val is not None:
            check_fraction(flag, val, unit)
    label_offset = check_label_offset(label_offset)
    path, man = _model_and_manifest(model)
    ds_name = dataset or (man or {}).get("dataset")
    if not ds_name:
        raise MlmsIrError("give --dataset (digits, mnist, fashion-mnist, cifar10, cifar100, imagenet)")
    ds_name = str(ds_name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MlmsIrError(f"--limit must be a positive integer, got '{limit}'")
    extra: dict[str, Any] = {}
    if preprocess is not None:
        try:
            extra = preprocess if isinstance(preprocess, dict) else json.loads(str(preprocess))
        except json.JSONDecodeError as exc:
            raise MlmsIrError(f"--preprocess is not JSON: {exc.msg}") from exc
        if not isinstance(extra, dict):
            raise MlmsIrError("--preprocess must be a JSON object, e.g. '{\"resize\": 256, \"crop\": 224}'")
    if man is not None:
        spec = dict(man.get("preprocessing") or {})
        source = f"the manifest of {man['name']}" + (" (the file is identical to it)" if man.get("matched") else "")
        assumed: list[str] = []
    else:
        if ds_name not in DATASET_DEFAULTS:
            raise MlmsIrError(f"unknown data set '{ds_name}'; known: {', '.join(DATASET_DEFAULTS)}")
        spec = dataset_default(ds_name)
        source = f"the {ds_name} data set's default"
        assumed = [k for k in spec if k not in extra]
    if extra:
        source = "--preprocess" + (f", the rest {source}" if set(spec) - set(extra) else "")
    spec.update(extra)
    if str(spec.get("dtype")).lower() in INT_DTYPES and assumed:  # integer pixels: the defaults' scaling does not apply
        spec.update({"scale": 1} if "scale" in assumed else {})
        for k in ("mean", "std"):
            if k in assumed:
                del spec[k]
        assumed = [k for k in assumed if k in spec]
    prep = Preprocess.from_manifest(spec)
    if assumed:
        guess = describe({k: spec[k] for k in assumed})
        print(f"mlms_ir: warning: {Path(path).name} has no manifest: assumed the preprocessing {guess} for {ds_name}; "
              "pass --preprocess if the model expects otherwise", file=sys.stderr)
    ref = dict((man or {}).get("accuracy") or {})
    for key, val in (("top1", reference_top1), ("top5", reference_top5)):
        if val is not None:
            ref[key] = float(val)
    if ds_name != (man or {}).get("dataset", ds_name) and reference_top1 is None:
        ref = {}  # the published figure is for another data set
    data = open_dataset(ds_name, root, limit=limit, labels_file=labels_file, synsets=synsets)
    report = run_evaluate(path, data, names, device=str(device), batch_size=batch_size, preprocess=prep,
                          reference={k: ref[k] for k in ("top1", "top5") if ref.get(k) is not None} or None,
                          tolerance=tolerance, options=session_options(names, opt, None, None),
                          progress=bool(progress) and sys.stderr.isatty(), preprocess_source=source, assumed=assumed,
                          label_offset=label_offset)
    if any(r.status == "ok" and r.samples and r.top5 is None for r in report.results):
        print(f"mlms_ir: note: {Path(path).name} outputs class labels, not per-class scores: top-1 only, top-5 is not available",
              file=sys.stderr)
    emit(report, fmt, output)
    from mlms_ir.cli.runs import record

    ok = [r for r in report.results if r.status == "ok"]
    record(store, lambda: records_from_evaluation(report), quiet=not ok)
    if not ok:
        raise MlmsIrError("no backend could evaluate: " + "; ".join(f"{r.backend}: {r.error}" for r in report.results))


class Datasets:
    """Evaluation data sets: list them, fetch the public ones."""

    def list(self) -> None:
        """The data sets evaluate reads, and whether each is here."""
        from mlms_ir.report.text import default_console
        from rich.table import Table

        from mlms_ir.datasets import DATASETS
        from mlms_ir.datasets.sources import SOURCES, cache_dir

        t = Table(title="data sets")
        for col in ("name", "what", "download", "here"):
            t.add_column(col, overflow="fold")
        for name, (what, needs_root) in DATASETS.items():
            here = "bundled" if not needs_root else ("yes: " + str(cache_dir(name)) if cache_dir(name).exists() else "no")
            t.add_row(name, what, "yes (sha256 checked)" if name in SOURCES else "-", here)
        default_console().print(t)

    def download(self, name: str, root: str | None = None, progress: bool = True) -> None:
        """Fetch a data set's test split (MNIST, Fashion-MNIST, CIFAR-10/100), verifying sha256.

        Args:
            name: mnist, fashion-mnist, cifar10 or cifar100.
            root: where to put it (default: ~/.cache/mlms_ir/datasets/NAME).
            progress: show a progress bar.
        """
        from mlms_ir.datasets.sources import download_dataset

        dest = download_dataset(str(name), root, progress=bool(progress))
        print(f"{name}: {dest}", file=sys.stderr)
