"""The ``divergence`` result: how each node's values on a backend differ from a reference backend's.

Written by :func:`mlms_ir.divergence.diverge` (``mlms_ir diverge``); JSON with ``kind`` and
``schema_version`` (``docs/divergence.rst``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import ModelRef, Result

#: Version of the divergence JSON layout. 1.1: ``kind`` added.
DIVERGENCE_SCHEMA_VERSION = "1.1"


@dataclass
class TensorDiff:
    """How one tensor of the backend under test differs from the reference's."""

    tensor: str
    elements: int
    max_abs: float | None
    max_rel: float | None
    mean_abs: float | None
    rmse: float | None
    cosine: float | None
    snr_db: float | None
    outside_share: float
    nan_ref: int
    nan_test: int
    inf_ref: int
    inf_test: int
    exceeds: bool
    note: str = ""


@dataclass
class Oracle:
    """The arbiter's verdict on a node whose introduced error exceeds the tolerance: the node
    re-run alone in float64 on the inputs both backends saw (``method`` says how), each backend's
    largest error against that exact result, the one closer to it (None on a tie or without an
    exact result), and the backends beyond the tolerance of it: the ones wrong here."""

    closer: str | None
    errors: dict[str, float | None]
    wrong: list[str]
    method: str
    note: str = ""


@dataclass
class NodeDivergence:
    """The worst of a node's output tensors, accumulated and (where computed) introduced."""

    id: str
    name: str
    op_type: str
    max_abs: float | None
    max_rel: float | None
    cosine: float | None
    snr_db: float | None
    outside_share: float
    nan: int
    exceeds: bool
    introduced_max_abs: float | None = None
    introduced_max_rel: float | None = None
    introduced_exceeds: bool | None = None
    introduced_note: str = ""
    tensors: list[TensorDiff] = field(default_factory=list)
    #: Where the introduced error exceeds: who is wrong, by the float64 re-run (:class:`Oracle`).
    oracle: Oracle | None = None


@dataclass
class DivergenceReport(Result):
    """Where one backend's values part from a reference backend's, node by node."""

    kind = "divergence"

    model: ModelRef
    backend: str
    reference: str
    device: str
    precision: str
    atol: float
    rtol: float
    first_divergent: dict[str, str] | None
    first_nan: dict[str, str] | None
    top_introduced: list[dict[str, Any]]
    outputs: list[TensorDiff]
    nodes: list[NodeDivergence]
    compared_tensors: int
    missing_tensors: list[str]
    #: How many consecutive parts the model was run in to keep within the memory budget (1: whole).
    segments: int = 1
    #: The inputs compared on: their batch (leading dim), where they came from (``random``, an
    #: ``.npz`` path, or ``given`` through the API), the seed of random ones, and each input's shape.
    batch: int | None = None
    inputs: str = "random"
    seed: int | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    schema_version: str = DIVERGENCE_SCHEMA_VERSION


@dataclass
class FailedBackend:
    """A backend that could not be compared, and why (the others went on)."""

    backend: str
    error: str
    status: str = "failed"


@dataclass
class DivergenceRun(Result):
    """One ``diverge`` over several backends against one reference: a report per backend that
    could be compared, and the backends that failed."""

    kind = "diverge"
    key_order = ("schema_version", "reports", "failed")

    reports: list[DivergenceReport]
    failed: list[FailedBackend] = field(default_factory=list)
    schema_version: str = DIVERGENCE_SCHEMA_VERSION
