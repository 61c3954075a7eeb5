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
from typing import Any

import numpy as np

from mlms_ir.datasets import Dataset
from mlms_ir.datasets.preprocess import Preprocess
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


def evaluate(model: ModelSource, dataset: Dataset, backends: tuple[str, ...] | list[str] = ("ort",), *, device: str = "cpu",
             batch_size: int = 64, preprocess: Preprocess, reference: dict[str, float] | None = None, tolerance: float | None = None,
             options: dict[str, dict[str, Any]] | None = None, progress: bool = False, system: bool = True) -> EvaluationReport:
    """Top-1/top-5 of ``model`` on ``dataset`` with each backend (a backend that fails is
    recorded as failed, the others go on). ``reference`` is ``{"top1": f, "top5": f}``."""
    from mlms_ir.backends import registry
    from mlms_ir.ir import load
    from mlms_ir.system import system_facts

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MlmsIrError(f"--batch-size must be a positive integer, got '{batch_size}'")
    probe = load(model)
    if len(probe.input_names) != 1:
        raise MlmsIrError(f"evaluate takes a model with one image input; this one has {len(probe.input_names)}: "
                          f"{', '.join(probe.input_names)}")
    inp = probe.input_names[0]
    shape = probe.tensors[inp].shape or []
    fixed = shape[0] if shape and isinstance(shape[0], int) else None
    bs = fixed or batch_size
    graph = probe if fixed else load(model, batch=bs)
    out_name = graph.output_names[0]
    out_shape = graph.tensors[out_name].shape
    if out_shape is not None and len(out_shape) == 2 and isinstance(out_shape[1], int) and out_shape[1] < len(dataset.labels):
        raise MlmsIrError(f"the model scores {out_shape[1]} classes, but {dataset.name} has {len(dataset.labels)}")
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
                    logits = sess.run({inp: x})[out_name]
                    acc.inference_s += time.perf_counter() - t0
                except MlmsIrError as exc:
                    acc.status, acc.error = "failed", str(exc)
                    continue
                scores = np.asarray(logits).reshape(bs, -1)[:n]
                k = min(5, scores.shape[1])
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                best = scores.argmax(axis=1)
                acc.correct_top1 += int((best == labels).sum())
                acc.correct_top5 += int((top == labels[:, None]).any(axis=1).sum())
                acc.samples += n
            bar.advance(n)
    finally:
        bar.close()
        for sess, _ in sessions:
            sess.close()
    for _, acc in sessions:
        if acc.samples:
            acc.top1, acc.top5 = acc.correct_top1 / acc.samples, acc.correct_top5 / acc.samples
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
                                           "classes": len(dataset.labels)},
        preprocess=preprocess.to_dict(), reference=dict(reference) if reference else None, batch_size=bs, results=results,
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
        out.append(StoreRecord(kind="evaluate", status="ok" if r["status"] == "ok" else "failed", backend=r["backend"],
                               device=r["device"], batch=d["batch_size"], precision="fp32", summary=summary, system=d["system"],
                               settings={"dataset": d["dataset"], "preprocess": d["preprocess"], "reference": d["reference"]},
                               payload={**d, "results": [r]}, error=r.get("error") or "", **model_fields(d["model"])))
    return out
