"""Accuracy replication: top-1 and top-5 of a classifier on a data set, on several backends, with
a verdict against the model's published accuracy.

Each batch is read and preprocessed once and then run on every backend, so the backends see the
same input and are timed on inference alone (``images_per_s``). The verdict: a measured top-1 within
the tolerance of the reference is *replicated*; the default tolerance is the half-width of the 99%
binomial interval for that many images (never below 0.2 percentage points), so a ``--limit``
subset is judged fairly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from onnx import TensorProto

from mlms_ir.datasets import Dataset
from mlms_ir.datasets.preprocess import FLOAT_DTYPES, Preprocess
from mlms_ir.errors import MlmsIrError
from mlms_ir.ir.load import ModelSource
from mlms_ir.progress import progress_bar
from mlms_ir.results.base import model_ref
from mlms_ir.results.evaluation import BackendAccuracy, EvaluationReport

Z99 = 2.5758  # two-sided 99% normal quantile
MIN_TOLERANCE = 0.002


def tolerance_for(reference: float, n: int) -> float:
    """Half-width of the 99% binomial interval of an accuracy ``reference`` measured on ``n`` images."""
    if n <= 0:
        return 1.0
    return max(MIN_TOLERANCE, Z99 * math.sqrt(max(reference * (1 - reference), 1e-12) / n))


def verdict(measured: float, reference: float, tol: float) -> str:
    delta = measured - reference
    if abs(delta) <= tol:
        return f"replicated ({100 * delta:+.2f} pp, within ±{100 * tol:.2f})"
    return f"not replicated: {100 * delta:+.2f} pp (beyond ±{100 * tol:.2f})"


def check_fraction(what: str, value: Any, unit: str = "%") -> float:
    """``value`` as a fraction in [0, 1] (an accuracy; a tolerance with ``unit`` " pp"), or an
    :class:`MlmsIrError` naming ``what``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(value) or not 0 <= value <= 1:
        example = f" (e.g. {value / 100:g} for {value:g}{unit})" if ok and math.isfinite(value) and 1 < value <= 100 else ""
        raise MlmsIrError(f"{what} must be a fraction between 0 and 1{example}, got '{value}'")
    return float(value)


#: ONNX element types evaluate can feed, as numpy dtypes.
_FEEDABLE = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
             TensorProto.UINT8: "uint8", TensorProto.INT8: "int8", TensorProto.UINT16: "uint16", TensorProto.INT16: "int16",
             TensorProto.INT32: "int32", TensorProto.INT64: "int64"}


def _fit_dtype(prep: Preprocess, graph: Any, inp: str) -> Preprocess:
    """The preprocessing that feeds ``inp`` its own dtype: a float input gets its float type; an
    integer input only the integer type the preprocessing asks for."""
    info = graph.tensors[inp]
    want = _FEEDABLE.get(info.elem_type) if info.value_kind == "tensor" else None
    if want is None:
        raise MlmsIrError(f"input '{inp}' takes {info.dtype or 'a ' + info.value_kind}: evaluate feeds images as float16, "
                          "float32, float64 or an integer type")
    if want in FLOAT_DTYPES:
        return replace(prep, dtype=want) if prep.dtype != want else prep
    if prep.dtype != want:
        raise MlmsIrError(f"input '{inp}' takes {want}, but the preprocessing gives {prep.dtype}: if the model takes raw "
                          f"pixels, say so with --preprocess '{{\"dtype\": \"{want}\", \"scale\": 1}}'")
    return prep


def check_label_offset(value: Any) -> int | None:
    """``value`` (``--label-offset``) as a whole number >= 0, None kept, or an :class:`MlmsIrError`."""
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 0:
        raise MlmsIrError(f"--label-offset must be an integer >= 0, got '{value}'")
    return int(value)


def label_window(columns: int, classes: int, label_offset: int | None, out: str, dataset: str) -> int:
    """The first of the ``classes`` columns, of an output's ``columns`` scores, that are the data
    set's labels in order: ``label_offset`` when it fits, 0 when it is None and the counts match.

    A model with more classes than the data set (a 1001-class TF-slim ImageNet model, class 0
    background) needs the offset said: guessed, its top-1 is silently off by one. Fewer classes, an
    unsaid or out-of-range offset raise :class:`MlmsIrError`."""
    if columns < classes:
        raise MlmsIrError(f"output '{out}' scores {columns} class{'es' if columns != 1 else ''}, but {dataset} has {classes}")
    extra = columns - classes
    if label_offset is None:
        if extra == 0:
            return 0
        if extra == 1:
            how = ("pass --label-offset 1 if class 0 is a background class (TF-slim style), or --label-offset 0 if the extra "
                   "class comes after the data set's")
        else:
            how = (f"pass --label-offset K (0 to {extra}) so that class K+i is label i, e.g. 1 if class 0 is a background "
                   "class (TF-slim style), or 0 if the extra classes come after the data set's")
        raise MlmsIrError(f"output '{out}' scores {columns} classes, but {dataset} has {classes}: {how}")
    if label_offset > extra:
        fits = "0" if extra == 0 else "0 or 1" if extra == 1 else f"between 0 and {extra}"
        counts = f", as many as {dataset} has" if extra == 0 else f" and {dataset} has {classes}"
        raise MlmsIrError(f"--label-offset {label_offset} does not fit output '{out}': it scores {columns} classes{counts}, "
                          f"so the offset must be {fits}")
    return label_offset


def _output_kind(graph: Any, out: str, classes: int, dataset: str, label_offset: int | None = None) -> str:
    """``scores`` (``[batch, classes]``, trailing 1s allowed) or ``labels`` (an integer ``[batch]``
    or ``[batch, 1]``) from the output's static type, or ``unknown`` when its rank is; anything
    else is an :class:`MlmsIrError`, as are scores whose classes ``label_offset`` does not map onto
    the data set's labels (:func:`label_window`)."""
    info = graph.tensors[out]
    if info.value_kind != "tensor":
        raise MlmsIrError(f"output '{out}' is a {info.value_kind}, not per-class scores [batch, classes] or class labels [batch]")
    shape = info.shape
    if info.elem_type == 0:  # no declared type: the first batch tells
        return "unknown"
    if info.elem_type not in _FEEDABLE:
        raise MlmsIrError(f"output '{out}' is {info.dtype}: evaluate scores numeric per-class scores [batch, classes] or "
                          "integer class labels [batch]")
    if shape is None:
        return "unknown"
    integer = _FEEDABLE[info.elem_type] not in FLOAT_DTYPES
    if integer and (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        return "labels"
    dims = "x".join(str(d) for d in shape)
    if len(shape) < 2 or any(isinstance(d, int) and d != 1 for d in shape[2:]):
        raise MlmsIrError(f"output '{out}' is {info.dtype}[{dims}]: not per-class scores [batch, classes] (nor integer class "
                          "labels [batch])")
    if isinstance(shape[1], int):
        label_window(shape[1], classes, label_offset, out, dataset)
    return "scores"


def _read_output(y: Any, bs: int, classes: int, out: str, label_offset: int | None = None,
                 dataset: str = "the data set") -> tuple[str, np.ndarray]:
    """One batch's output as ``("labels", [bs])`` or ``("scores", [bs, C])``, both in the data set's
    label numbering (``label_offset`` K: model class K+i is label i, so labels are shifted down by
    K and scores cut to the window of columns [K, K+C)); anything else raises
    :class:`MlmsIrError` (the backend is then recorded as failed)."""
    a = np.asarray(y)
    shape = "x".join(map(str, a.shape))
    if a.ndim >= 1 and a.shape[0] == bs and a.dtype.kind in "iu" and (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)):
        labels = a.reshape(bs)
        # int64 first: uint8 0 - 1 must not wrap round to 255; a label below K becomes negative, never right
        return "labels", labels.astype(np.int64) - label_offset if label_offset else labels
    if a.ndim < 2 or a.shape[0] != bs or a.dtype.kind not in "fiu" or any(d != 1 for d in a.shape[2:]):
        raise MlmsIrError(f"output '{out}' came back as {a.dtype}[{shape}] for a batch of {bs}: not per-class scores "
                          "[batch, classes] (nor integer class labels [batch])")
    first = label_window(a.shape[1], classes, label_offset, out, dataset)
    scores = a.reshape(bs, a.shape[1])[:, first:first + classes]  # the extra (background) columns never rank
    return "scores", scores if a.dtype.kind == "f" else scores.astype(np.float64)  # -scores must not wrap round


def evaluate(model: ModelSource, dataset: Dataset, backends: tuple[str, ...] | list[str] = ("ort",), *, device: str = "cpu",
             batch_size: int = 64, preprocess: Preprocess | None = None, reference: dict[str, float] | None = None,
             tolerance: float | None = None, options: dict[str, dict[str, Any]] | None = None, progress: bool = False,
             system: bool = True, preprocess_source: str | None = None, assumed: Sequence[str] = (),
             label_offset: int | None = None) -> EvaluationReport:
    """Top-1/top-5 of ``model`` on ``dataset`` with each backend (a backend that fails is
    recorded as failed, the others go on). ``reference`` is ``{"top1": f, "top5": f}``, fractions
    in [0, 1]; ``tolerance`` a fraction too.

    ``preprocess`` None takes the data set's default (:data:`~mlms_ir.datasets.preprocess.DATASET_DEFAULTS`),
    every key of it reported as assumed; otherwise ``preprocess_source`` says where it came from and
    ``assumed`` which of its keys are a guess. Both go into the report's ``preprocess`` (as
    ``source`` and ``assumed``). The batch is fed in the model input's float type (float16,
    float32 or float64); an integer input only takes the integer ``dtype`` the preprocessing asks for.

    The first output is read as per-class scores ``[batch, classes]`` (trailing dims of 1 allowed;
    the highest score is the prediction), or, when it holds integers of shape ``[batch]`` or
    ``[batch, 1]``, as the predicted class labels: then only top-1 is measured, and top-5 (and
    ``correct_top5``) is None, not a number. Any other output raises :class:`MlmsIrError`, as do a
    reference or tolerance outside [0, 1].

    ``label_offset`` K maps the model's classes onto the data set's labels: class K+i is label i.
    Scores of C' classes for a data set of C are ranked over the columns [K, K+C) only (the
    extra ones, e.g. the background class 0 of a 1001-class TF-slim ImageNet model, dropped first,
    as the published TF-slim figures do); a label output has K subtracted, and a label outside
    [K, K+C) is a wrong prediction. None means 0 where the counts match; where C' > C it must be
    given (0 <= K <= C'-C), else :class:`MlmsIrError`, as for C' == C with a nonzero K, a K out of
    that range or one that is not an integer >= 0: a guessed mapping would give a wrong accuracy.
    The report's ``label_offset`` is the K used."""
    from mlms_ir.backends import registry
    from mlms_ir.datasets.preprocess import dataset_default
    from mlms_ir.ir import load
    from mlms_ir.system import system_facts

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MlmsIrError(f"--batch-size must be a positive integer, got '{batch_size}'")
    reference = {k: check_fraction(f"the reference {k}", reference[k]) for k in ("top1", "top5")
                 if reference and reference.get(k) is not None} or None
    if tolerance is not None:
        tolerance = check_fraction("the tolerance", tolerance, " pp")
    label_offset = check_label_offset(label_offset)
    if preprocess is None:
        spec = dataset_default(dataset.name)
        preprocess, preprocess_source, assumed = Preprocess.from_manifest(spec), f"the {dataset.name} data set's default", list(spec)
    probe = load(model)
    if len(probe.input_names) != 1:
        raise MlmsIrError(f"evaluate takes a model with one image input; this one has {len(probe.input_names)}: "
                          f"{', '.join(probe.input_names)}")
    inp = probe.input_names[0]
    shape = probe.tensors[inp].shape or []
    fixed = shape[0] if shape and isinstance(shape[0], int) else None
    bs = fixed or batch_size
    graph = probe if fixed else load(model, batch=bs)
    preprocess = _fit_dtype(preprocess, graph, inp)
    out_name = graph.output_names[0]
    classes = len(dataset.labels)
    _output_kind(graph, out_name, classes, dataset.name, label_offset)
    results: list[BackendAccuracy] = []
    sessions = []
    for name in backends:
        try:
            be = registry.get(name)
            sessions.append((be.prepare(graph, device, **(options or {}).get(name, {})), BackendAccuracy(name, device, "ok")))
        except MlmsIrError as exc:
            results.append(BackendAccuracy(name, device, "failed", error=str(exc)))
    bar = progress_bar(dataset.size, f"evaluating on {dataset.name}", enabled=progress)
    try:
        for images, labels in dataset.batches(bs):
            x = preprocess(images)
            n = len(labels)
            if n < bs:  # a static or bound batch: pad the last one, score only the real images
                x = np.concatenate([x, np.zeros((bs - n, *x.shape[1:]), x.dtype)])
            for sess, acc in sessions:
                if acc.status != "ok":
                    continue
                try:
                    t0 = time.perf_counter()
                    y = sess.run({inp: x})[out_name]
                    acc.inference_s += time.perf_counter() - t0
                    kind, out = _read_output(y, bs, classes, out_name, label_offset, dataset.name)
                except MlmsIrError as exc:
                    acc.status, acc.error = "failed", str(exc)
                    continue
                out = out[:n]
                if kind == "labels":
                    acc.correct_top1 += int((out == labels).sum())
                    acc.correct_top5 = None  # labels give no top-5
                else:
                    k = min(5, out.shape[1])
                    top = np.argpartition(-out, k - 1, axis=1)[:, :k]
                    acc.correct_top1 += int((out.argmax(axis=1) == labels).sum())
                    if acc.correct_top5 is not None:
                        acc.correct_top5 += int((top == labels[:, None]).any(axis=1).sum())
                acc.samples += n
            bar.advance(n)
    finally:
        bar.close()
        for sess, _ in sessions:
            sess.close()
    for _, acc in sessions:
        if acc.samples:
            acc.top1 = acc.correct_top1 / acc.samples
            acc.top5 = acc.correct_top5 / acc.samples if acc.correct_top5 is not None else None
            acc.images_per_s = acc.samples / acc.inference_s if acc.inference_s > 0 else None
        if acc.status == "ok" and reference and reference.get("top1") is not None and acc.top1 is not None:
            acc.tolerance = tolerance if tolerance is not None else tolerance_for(float(reference["top1"]), acc.samples)
            acc.delta_top1 = acc.top1 - float(reference["top1"])
            acc.verdict = verdict(acc.top1, float(reference["top1"]), acc.tolerance)
            if reference.get("top5") is not None and acc.top5 is not None:
                acc.delta_top5 = acc.top5 - float(reference["top5"])
        results.append(acc)
    order = {b: i for i, b in enumerate(backends)}
    results.sort(key=lambda r: order.get(r.backend, len(order)))
    return EvaluationReport(
        model=model_ref(graph), dataset={"name": dataset.name, "source": dataset.source, "samples": dataset.size,
                                           "classes": classes},
        preprocess={**preprocess.to_dict(), "source": preprocess_source or "given", "assumed": list(assumed)},
        reference=dict(reference) if reference else None, batch_size=bs, results=results, label_offset=label_offset or 0,
        system=system_facts() if system else {},
    )


def records_from_evaluation(report: EvaluationReport) -> list:
    """The results store's records of an evaluation: one per backend."""
    from mlms_ir.store import StoreRecord, model_fields

    d = report.to_dict()
    out = []
    for r in d["results"]:
        summary = {k: r.get(k) for k in ("top1", "top5", "images_per_s", "samples", "verdict", "delta_top1", "tolerance")}
        summary["dataset"] = d["dataset"]["name"]
        offset = {"label_offset": d["label_offset"]} if d.get("label_offset") else {}  # only where it changes the figures
        out.append(StoreRecord(kind="evaluate", status="ok" if r["status"] == "ok" else "failed", backend=r["backend"],
                               device=r["device"], batch=d["batch_size"], precision="fp32", summary=summary, system=d["system"],
                               settings={"dataset": d["dataset"], "preprocess": d["preprocess"], "reference": d["reference"],
                                         **offset},
                               payload={**d, "results": [r]}, error=r.get("error") or "", **model_fields(d["model"])))
    return out
