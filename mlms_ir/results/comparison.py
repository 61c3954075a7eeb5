"""The ``comparison`` result: stored runs side by side (``mlms_ir runs compare``), the first the baseline.

Written by :func:`mlms_ir.compare.compare_runs`; JSON with ``kind`` and ``schema_version``
(``docs/store.rst``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlms_ir.results.base import Result

#: Version of the comparison JSON layout. 1.1: ``kind`` added. 1.2: ``differing_settings`` added, first.
COMPARE_SCHEMA_VERSION = "1.2"


@dataclass
class DescribeRow:
    """What each run is, for one attribute (model, backend, device, CPU, a package version...)."""

    field: str
    values: list[Any]


@dataclass
class FigureRow:
    """What each run measured, for one figure; ``better`` says which way is better ("lower",
    "higher" or None) and ``ratio_to_first`` each value over the baseline's (None where either is
    not a number)."""

    field: str
    values: list[Any]
    ratio_to_first: list[float | None] | None
    better: str | None


@dataclass
class NodeRow:
    """One node's figure in every run, its change from the baseline and its ratio to it."""

    node_id: str
    name: str | None
    op_type: str | None
    values: list[float | None]
    delta: list[float | None]
    ratio: list[float | None]


@dataclass
class PerNode:
    """Per-node figures joined on node id: ``metric`` is ``time_us`` (profiles, counters),
    ``max_abs`` (divergence runs) or None; ``nodes`` the largest changes first."""

    metric: str | None
    nodes: list[NodeRow] = field(default_factory=list)
    compared_nodes: int = 0


@dataclass
class Comparison(Result):
    """Runs side by side: ``differing_settings`` (the recorded settings whose values differ
    between the runs, such as ``opt``: ``all`` against ``none``; first, since they often explain
    the rest), ``runs`` (each run's stored record, less its system and settings), ``describe``
    (what each is), ``figures`` (what each measured) and ``per_node``."""

    kind = "comparison"
    key_order = ("schema_version", "store", "differing_settings", "runs", "describe", "figures", "per_node")

    store: str
    runs: list[dict[str, Any]]
    describe: list[DescribeRow]
    figures: list[FigureRow]
    per_node: PerNode
    differing_settings: list[DescribeRow] = field(default_factory=list)
    schema_version: str = COMPARE_SCHEMA_VERSION
