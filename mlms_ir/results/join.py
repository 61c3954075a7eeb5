"""The per-node join: a node's static cost, measured time and kernels, hardware counters and
error against each reference, side by side, keyed by node id.

Node ids (``n12``, ``n12/then_branch/n3``) are positions in one graph, so figures of another
model would fit any graph's ids: :func:`join` refuses results whose nodes are not the
analysis' (another op type, or another name where both have one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mlms_ir.errors import ReportInputError
from mlms_ir.results.analysis import Analysis, NodeCost
from mlms_ir.results.counters import CountersReport, NodeCounters
from mlms_ir.results.divergence import DivergenceReport, NodeDivergence
from mlms_ir.results.profile import NodeTime, ProfileReport


@dataclass
class JoinedNode:
    """Everything known of one graph node. ``divergence`` has one entry per divergence report
    given to :func:`join` (None where that report has no figure for the node)."""

    id: str
    cost: NodeCost | None = None
    time: NodeTime | None = None
    counters: NodeCounters | None = None
    divergence: list[NodeDivergence | None] = field(default_factory=list)


def _id_order(node_id: str) -> tuple[int, ...]:
    """``n12/then_branch/n3`` -> (12, 3): node ids in execution order."""
    return tuple(int(x) for x in re.findall(r"(?:^|/)n(\d+)", node_id))


def check_same_model(analysis: Analysis, nodes: Iterable[NodeTime | NodeCounters | NodeDivergence], kind: str) -> None:
    """Raise :class:`~mlms_ir.errors.ReportInputError` unless every node of a ``kind`` result
    ("profile", "counters", "divergence") is the analysis' node of that id."""
    by_id = {n.id: n for n in analysis.nodes}
    nodes = sorted(nodes, key=lambda n: _id_order(n.id))  # the first in graph order is the one named
    wrong: list[tuple[str, str | None, str | None]] = []
    for n in nodes:
        mine = by_id.get(n.id)
        if mine is None:
            wrong.append((n.id, n.op_type, None))
            continue
        if (n.op_type and n.op_type != mine.op_type) or (n.name and mine.name and n.name != mine.name):
            wrong.append((n.id, n.op_type, mine.op_type))
    if wrong:
        nid, there, here = wrong[0]
        raise ReportInputError(f"the {kind} results are of another model: node {nid} is {there or '?'} there but "
                               f"{here or 'absent'} here ({len(wrong)} of {len(nodes)} nodes differ); give the model they were made with")


def join(analysis: Analysis, *, profile: ProfileReport | None = None, counters: CountersReport | None = None,
         divergences: Sequence[DivergenceReport] = ()) -> dict[str, JoinedNode]:
    """Every node of ``analysis`` (subgraph nodes included, in the analysis' order) with what the
    measured results say of it; a node only a result knows is refused (another model)."""
    if profile is not None:
        check_same_model(analysis, profile.nodes, "profile")
    if counters is not None:
        check_same_model(analysis, counters.nodes, "counters")
    for r in divergences:
        check_same_model(analysis, r.nodes, "divergence")
    out = {n.id: JoinedNode(n.id, cost=n, divergence=[None] * len(divergences)) for n in analysis.nodes}
    for t in profile.nodes if profile is not None else ():
        out[t.id].time = t
    for c in counters.nodes if counters is not None else ():
        out[c.id].counters = c
    for k, r in enumerate(divergences):
        for d in r.nodes:
            out[d.id].divergence[k] = d
    return out
