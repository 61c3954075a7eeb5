"""Fused kernels as a profile's tables show them: one row holds the kernel's time.

A backend that fuses nodes (ORT's Conv+Relu, MatMul+Add; a TensorRT layer) times one kernel for
several graph nodes; the profile splits that time among them in proportion to their FLOPs
(:func:`mlms_ir.runner.aggregate`), which gives a fused ReLU a sliver like 0.003 µs and the
whole kernel's FLOP/s. Shown as measured, the kernel's time sits on the node it was fused into
(the one with the most FLOPs, the first in graph order on a tie), and every other node of the
kernel reads "fused into <that node>" instead of a time and a rate. The JSON keeps the split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mlms_ir.results.profile import NodeTime


@dataclass(frozen=True)
class ShownTime:
    """A node's time as the tables show it: its own, or its kernel's whole time when it hosts a
    fused kernel (``time_us``, ``share``); None for both, and ``fused_into`` set, when another
    node hosts its kernel."""

    time_us: float | None
    share: float | None
    fused_into: str | None = None


def _graph_order(node_id: str) -> int:
    m = re.search(r"(\d+)$", node_id)
    return int(m.group(1)) if m else 0


def fusion_hosts(nodes: Sequence[NodeTime]) -> dict[str, str]:
    """Each node timed as part of another node's fused kernel -> the node that hosts it."""
    by_id = {n.id: n for n in nodes}
    hosts: dict[str, str] = {}
    for n in nodes:
        if not n.fused_with:
            continue
        group = [by_id[k] for k in [n.id, *n.fused_with] if k in by_id]
        host = min(group, key=lambda g: (-(g.flops or 0), -g.time_us, _graph_order(g.id)))
        if host.id != n.id:
            hosts[n.id] = host.id
    return hosts


def shown_times(nodes: Sequence[NodeTime]) -> dict[str, ShownTime]:
    """Every node's :class:`ShownTime`: a kernel's time on its host, none on the nodes fused into it."""
    hosts = fusion_hosts(nodes)
    shown = {n.id: ShownTime(n.time_us, n.share) for n in nodes if n.id not in hosts}
    for n in nodes:
        h = hosts.get(n.id)
        if h is None:
            continue
        kernel = shown.get(h)
        if kernel is not None and kernel.time_us is not None and kernel.share is not None:
            shown[h] = ShownTime(kernel.time_us + n.time_us, kernel.share + n.share)
        shown[n.id] = ShownTime(None, None, h)
    return shown


def by_shown_time(nodes: Sequence[NodeTime], shown: dict[str, ShownTime]) -> list[NodeTime]:
    """The nodes, longest shown time first; those fused into another node last, in their hosts' order."""
    timed = sorted((n for n in nodes if shown[n.id].fused_into is None), key=lambda n: -(shown[n.id].time_us or 0.0))
    rank = {n.id: k for k, n in enumerate(timed)}
    fused = sorted((n for n in nodes if shown[n.id].fused_into is not None),
                   key=lambda n: (rank.get(shown[n.id].fused_into or "", len(rank)), _graph_order(n.id)))
    return timed + fused
