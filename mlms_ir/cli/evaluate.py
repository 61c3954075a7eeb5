"""``evaluate`` (top-1/top-5 against the published accuracy) and ``datasets list|download``."""

from __future__ import annotations

import json
import sys
from typing import Any

from mlms_ir.cli.common import backend_names, emit, output_format, session_options
from mlms_ir.errors import MlmsIrError


def _model_and_manifest(model: str | None) -> tuple[str, dict[str, Any] | None]:
    """The model's path and its manifest (preprocessing, reference accuracy), where one is known."""
    from mlms_ir.zoo import DEFAULT_MODEL, builtin_manifest, builtin_path

    if model is None or str(model) in ("", DEFAULT_MODEL, f"zoo:{DEFAULT_MODEL}"):
        m = builtin_manifest()
        return str(builtin_path()), {"preprocessing": {"scale": 1 / 16, "channels": 1, "layout": "NCHW"},
                                     "accuracy": {"top1": m["accuracy"]["top1"], "top5": m["accuracy"]["top5"]},
                                     "dataset": "digits"}
    text = str(model)
    if text.startswith("zoo:"):
        from mlms_ir.zoo import manifest as zoo_manifest

        man = zoo_manifest.get(text[4:])
        path = zoo_manifest.resolve(text)
        info = _manifest_fields(man)
        if man.get("source", {}).get("kind") in ("torchvision", "timm"):
            from mlms_ir.zoo.builder import weights_downloaded

            if not weights_downloaded(man["name"]):
                how = (f"build it with 'zoo build {man['name']} --weights'" if man["source"]["kind"] == "torchvision"
                       else "mlms_ir cannot download timm's weights")
                print(f"mlms_ir: warning: {man['name']} has random weights ({how}): its accuracy means nothing", file=sys.stderr)
        return str(path), info
    return text, None


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
        preprocess: JSON of the preprocessing (resize, crop, scale, mean, std, layout, channels), overriding the manifest's.
        reference_top1: the published top-1 (a fraction) to judge against, overriding the manifest's.
        reference_top5: the published top-5 (a fraction).
        tolerance: how far top-1 may be from the reference (default: the 99% interval for the number of images).
        opt: ORT graph optimisation level.
        progress: show a progress bar.
        format: table (default) or json.
        output: write to this file instead of stdout.
        store: the results store (default: $MLMS_IR_STORE, else the user's data dir); none: do not record.
    """
    from mlms_ir.datasets import open_dataset
    from mlms_ir.datasets.preprocess import Preprocess
    from mlms_ir.evaluate import evaluate as run_evaluate
    from mlms_ir.evaluate import records_from_evaluation

    fmt = output_format(format, output)
    names = backend_names(backends)
    path, man = _model_and_manifest(model)
    ds_name = dataset or (man or {}).get("dataset")
    if not ds_name:
        raise MlmsIrError("give --dataset (digits, mnist, fashion-mnist, cifar10, cifar100, imagenet)")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MlmsIrError(f"--limit must be a positive integer, got '{limit}'")
    spec = dict((man or {}).get("preprocessing") or {})
    if preprocess is not None:
        try:
            extra = preprocess if isinstance(preprocess, dict) else json.loads(str(preprocess))
        except json.JSONDecodeError as exc:
            raise MlmsIrError(f"--preprocess is not JSON: {exc.msg}") from exc
        if not isinstance(extra, dict):
            raise MlmsIrError("--preprocess must be a JSON object, e.g. '{\"resize\": 256, \"crop\": 224}'")
        spec.update(extra)
    prep = Preprocess.from_manifest(spec)
    ref = dict((man or {}).get("accuracy") or {})
    for key, val in (("top1", reference_top1), ("top5", reference_top5)):
        if val is not None:
            ref[key] = float(val)
    if ds_name != (man or {}).get("dataset", ds_name) and reference_top1 is None:
        ref = {}  # the published figure is for another data set
    data = open_dataset(str(ds_name), root, limit=limit, labels_file=labels_file, synsets=synsets)
    report = run_evaluate(path, data, names, device=str(device), batch_size=batch_size, preprocess=prep,
                          reference={k: ref[k] for k in ("top1", "top5") if ref.get(k) is not None} or None,
                          tolerance=tolerance, options=session_options(names, opt, None, None), progress=bool(progress) and sys.stderr.isatty())
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
