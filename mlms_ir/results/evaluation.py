"""The ``evaluation`` result: a classifier's measured accuracy per backend, beside the published one.

Written by :func:`mlms_ir.evaluate.evaluate` (``mlms_ir evaluate``); JSON with ``kind`` and
``schema_version`` (``docs/accuracy.rst``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import ModelRef, Result

#: Version of the evaluation JSON layout. 1.1: ``kind`` added. 1.2: ``preprocess`` says its
#: ``source`` and the keys ``assumed`` (a guess for a model without a manifest); ``top5`` and
#: ``correct_top5`` are null for a model that outputs labels. 1.3: ``label_offset`` (model class
#: ``label_offset + i`` is the data set's label ``i``; 0 unless ``--label-offset`` says otherwise).
EVAL_SCHEMA_VERSION = "1.3"


@dataclass
class BackendAccuracy:
    """One backend's result. Accuracies are fractions; ``verdict`` compares top-1 with the reference."""

    backend: str
    device: str
    status: str
    samples: int = 0
    top1: float | None = None
    top5: float | None = None
    correct_top1: int = 0
    correct_top5: int | None = 0  # None: the model outputs labels, no top-5
    images_per_s: float | None = None
    inference_s: float = 0.0
    verdict: str | None = None
    delta_top1: float | None = None
    delta_top5: float | None = None
    tolerance: float | None = None
    error: str = ""


@dataclass
class EvaluationReport(Result):
    """Top-1 and top-5 of one model on one data set, per backend, with verdicts. ``label_offset``:
    the model's class ``label_offset + i`` was scored as the data set's label ``i`` (0 in results
    written before schema 1.3)."""

    kind = "evaluation"

    model: ModelRef
    dataset: dict[str, Any]
    preprocess: dict[str, Any]
    reference: dict[str, Any] | None
    batch_size: int
    results: list[BackendAccuracy]
    label_offset: int = 0
    system: dict[str, Any] = field(default_factory=dict)
    schema_version: str = EVAL_SCHEMA_VERSION


def describe_preprocess(spec: Mapping[str, Any]) -> str:
    """A preprocessing ``spec`` in a few words, e.g. ``scale 1/16, layout NCHW`` (a scale of 1/N
    written so): what the evaluation table says was assumed."""
    def number(x: Any) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)

    parts = []
    for k, v in spec.items():
        if k == "scale" and number(v) and v > 0 and abs(1 / v - round(1 / v)) < 1e-9:
            v = f"1/{round(1 / v)}" if round(1 / v) != 1 else "1"
        elif isinstance(v, list):
            v = "[" + ", ".join(f"{x:g}" if number(x) else str(x) for x in v) + "]"
        parts.append(f"{k} {v}")
    return ", ".join(parts)
