"""The structure pass: op-type histogram, depth, subgraphs, and repeated blocks.

Repeated blocks are found from name scopes first (the torch exporters' ``/layer1/layer1.0/conv1/Conv``
names or the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata, TensorFlow's
``model/block1/conv/...``): scopes whose op-type contents are identical form a block
("layer#.# x 12"; the same op-type multiset counts as the same structure). A graph with no scopes falls back to tandem repeats of the op-type sequence in
execution order (consecutive identical runs, as a transformer's layers are).
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from itertools import chain
from operator import attrgetter

import numpy as np

from mlms_ir.ir.dtypes import FLOAT_TYPES
from mlms_ir.ir.expr import add, is_int, order_value
from mlms_ir.ir.graph import Graph, Node
from mlms_ir.passes.cost import CostResult
from mlms_ir.results.analysis import Block, NodeCost, OpTypeStat, Structure

MIN_BLOCK_NODES = 3
_ID, _OP = attrgetter("id"), attrgetter("domain", "op_type")
_MACS, _FLOPS, _PARAMS = attrgetter("macs"), attrgetter("flops"), attrgetter("params")
MAX_METADATA_CHARS = 10_000  # longer scope metadata is not a module path: ignored


def structure(graph: Graph, costs: CostResult) -> Structure:
    by_id = {c.id: c for c in costs.nodes}
    scale = _subgraph_scale(costs)
    stats: dict[tuple[str, str], list] = defaultdict(lambda: [0, [], [], 0, False])
    for c in costs.nodes:
        s = stats[(c.domain, c.op_type)]
        s[0] += 1
        if c.op_type in ("If", "Loop", "Scan") and c.domain == "":
            continue  # their subgraphs' nodes are counted themselves
        if c.flops is None:  # not counted (unknown op, unresolved shape): the group's sums are partial
            s[4] = True
        k = scale.get(c.id, 1)
        s[1].append(c.macs if k == 1 or c.macs is None else k * c.macs)
        s[2].append(c.flops if k == 1 or c.flops is None else k * c.flops)
        s[3] += c.params
    for s in stats.values():
        s[1], s[2] = add(s[1]), add(s[2])
        if s[4]:  # a zero that left nodes out is no figure: unknown (None), never 0
            s[1] = None if s[1] == 0 else s[1]
            s[2] = None if s[2] == 0 else s[2]
    total_macs = add(s[1] for s in stats.values())
    total_flops = add(s[2] for s in stats.values())
    op_types = [
        OpTypeStat(op, dom, s[0], s[1], s[2], s[3], _share(s[1], total_macs), _share(s[2], total_flops))
        for (dom, op), s in stats.items()
    ]
    op_types.sort(key=lambda o: (-order_value(o.macs), -order_value(o.flops), -o.count, o.op_type))
    return Structure(
        node_count=len(graph.nodes),
        node_count_with_subgraphs=len(costs.nodes),
        depth=depth(graph),
        op_types=op_types,
        blocks=find_blocks(graph, by_id, costs.top),
        subgraphs=costs.subgraphs,
    )


def _share(part, total) -> float | None:
    """part / total; None when it changes with the dims (a ratio of formulas that is no number)
    or ``part`` is unknown."""
    if part is None:
        return None
    if is_int(part) and part == 0:
        return 0.0
    if not (is_int(part) and is_int(total)):
        ratio = part / total
        if getattr(ratio, "is_Number", False):
            return float(ratio)
        return None
    return part / total if total else 0.0


def _subgraph_scale(costs: CostResult) -> dict[str, int]:
    """How many times each subgraph node counts in the totals: the product of its owners'
    multipliers (a Loop's trip count, 0 for the If branch not counted, 1 when unknown)."""
    mult = {(s.owner, s.attribute): (1 if s.multiplier is None else s.multiplier) for s in costs.subgraphs}
    scale: dict[str, int] = {}
    for c in costs.nodes:
        if c.parent is None:
            continue
        parts = c.id.split("/")
        k = 1
        for level in range(0, len(parts) - 1, 2):
            k *= mult.get(("/".join(parts[: level + 1]), parts[level + 1]), 1)
        scale[c.id] = k
    return scale


def depth(graph: Graph) -> int:
    """Nodes on the longest path through the main graph."""
    level = [0] * len(graph.nodes)  # by position: nodes on the longest path to it (those of this graph)
    best = 0
    for k, reads in enumerate(graph.preds):  # in execution order: a producer comes before its readers
        d = 0
        for j in reads:
            v = level[j]
            if v > d:
                d = v
        d += 1
        level[k] = d
        if d > best:
            best = d
    return best


def node_scope(node: Node, metadata: bool = True) -> tuple[str, ...]:
    """The name-scope path of a node (empty when its name carries none). ``metadata``: False when
    the model holds no ``pkg.torch.onnx.name_scopes`` entry (:attr:`~mlms_ir.ir.load.LoadedModel.scope_metadata`),
    so that the node's own metadata need not be read."""
    if metadata:
        scopes = _metadata_scope(node)
        if scopes is not None:
            return scopes
    name = node.name
    if "/" not in name:
        return ()
    parts = [p for p in name.split("/") if p]
    return tuple(parts[:-1])


def _metadata_scope(node: Node) -> tuple[str, ...] | None:
    """The scope path the dynamo exporter's ``pkg.torch.onnx.name_scopes`` gives ``node``; None
    when it gives none (or an unreadable one)."""
    for p in node.proto.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            if len(p.value) > MAX_METADATA_CHARS:
                break
            try:
                scopes = [str(s) for s in ast.literal_eval(p.value)]
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                break
            # ['', 'layers.0', 'view']: the root module, the module path, then the op itself
            return tuple(s for s in scopes[:-1] if s)
    return None


def _computes(node: Node) -> bool:
    """A node producing floating-point data (not shape arithmetic on int64 or bool)."""
    out = node.outputs[0] if node.outputs else ""
    t = node.graph.tensor(out) if out else None
    return t is not None and t.elem_type in FLOAT_TYPES


def _class_of(node: Node, depth_: int) -> str | None:
    for p in node.proto.metadata_props:
        if p.key == "pkg.torch.onnx.class_hierarchy":
            if len(p.value) > MAX_METADATA_CHARS:
                return None
            try:
                classes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None
            if not isinstance(classes, (list, tuple)):
                return None
            # classes[0] is the root module's class, so a scope path of length d has class d
            if depth_ < len(classes):
                return str(classes[depth_]).rsplit(".", 1)[-1]
    return None


def _pattern(names: list[str]) -> str:
    generic = {re.sub(r"\d+", "#", n) for n in names}
    return generic.pop() if len(generic) == 1 else names[0]


def find_blocks(graph: Graph, costs: dict[str, NodeCost], top: list[NodeCost] | None = None) -> list[Block]:
    """Repeated blocks of the main graph (see the module's doc). ``costs``: NodeCosts by id;
    ``top``: the main graph's NodeCosts in the order of its nodes, when the caller has them."""
    scopes: dict[tuple[str, ...], list[Node]] = defaultdict(list)
    any_scope = False
    loaded = getattr(graph, "loaded", None)
    metadata = getattr(loaded, "scope_metadata", True)
    for node in graph.nodes:
        path = node_scope(node, metadata)
        if path:
            any_scope = True
        for k in range(1, len(path) + 1):
            scopes[path[:k]].append(node)
    blocks = _scope_blocks(scopes, costs) if any_scope else []
    if not any_scope:
        blocks = _tandem_blocks(graph, costs, top_costs=top)
    blocks.sort(key=lambda b: (-order_value(b.macs), -b.count * b.nodes_per_block, b.name))
    return blocks


def _make_block(name: str, instances: list[list[Node]], labels: list[str], costs: dict[str, NodeCost], found_by: str,
                members: list[NodeCost] | None = None) -> Block:
    """A Block of ``instances``; ``members``: their NodeCosts in the same order, when the caller has them."""
    if members is None:
        members = list(map(costs.__getitem__, map(_ID, chain.from_iterable(instances))))  # C loops: 200,000 members
    return Block(
        name=name,
        count=len(instances),
        nodes_per_block=len(instances[0]),
        op_types=dict(Counter(n.op_type for n in instances[0])),
        macs=add(list(map(_MACS, members))),
        flops=add(list(map(_FLOPS, members))),
        params=sum(map(_PARAMS, members)),
        instances=labels,
        found_by=found_by,
        members=[[n.id for n in inst] for inst in instances],
    )


def _scope_blocks(scopes: dict[tuple[str, ...], list[Node]], costs: dict[str, NodeCost]) -> list[Block]:
    groups: dict[tuple, list[tuple[str, ...]]] = defaultdict(list)
    seen_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
    for path, nodes in scopes.items():
        if len(nodes) < MIN_BLOCK_NODES:
            continue
        ids = tuple(n.id for n in nodes)
        outer = seen_sets.get(ids)
        if outer is not None and len(outer) <= len(path):
            continue  # same nodes as an enclosing scope
        seen_sets[ids] = path
        # the op-type multiset of its float computations: the same block exported in another
        # order, or with shape arithmetic shared with a neighbour (exporters dedupe it), still matches
        groups[tuple(sorted(Counter(n.op_type for n in nodes if _computes(n)).items()))].append(path)
    candidates = []
    for sig, paths in groups.items():
        # drop paths whose node set duplicates an outer scope's (kept in seen_sets)
        paths = [p for p in paths if seen_sets.get(tuple(n.id for n in scopes[p])) == p]
        if len(paths) >= 2:
            candidates.append((len(scopes[paths[0]]), paths))
    candidates.sort(key=lambda c: (-c[0] * len(c[1]), -c[0]))
    taken: set[tuple[str, ...]] = set()
    taken_prefixes: set[tuple[str, ...]] = set()  # every prefix of a taken path

    def overlaps(p: tuple[str, ...]) -> bool:
        # nested in a block already reported, or containing one (the finer repeat covers more)
        return p in taken_prefixes or any(p[:k] in taken for k in range(1, len(p)))

    out: list[Block] = []
    names: Counter[str] = Counter()

    for _, paths in candidates:
        paths = [p for p in paths if not overlaps(p)]
        if len(paths) < 2:
            continue
        taken.update(paths)
        for p in paths:
            taken_prefixes.update(p[:k] for k in range(1, len(p) + 1))
        first = scopes[paths[0]][0]
        name = _class_of(first, len(paths[0])) or _pattern([p[-1] for p in paths])
        names[name] += 1
        if names[name] > 1:
            name = f"{name} ({len(scopes[paths[0]])} nodes)"
        out.append(_make_block(name, [scopes[p] for p in paths], ["/".join(p) for p in paths], costs, "name scopes"))
    return out


def _tandem_blocks(graph: Graph, costs: dict[str, NodeCost], max_period: int = 2000, top_costs: list[NodeCost] | None = None) -> list[Block]:
    """Consecutive repeats of the op-type sequence (vectorised over candidate periods)."""
    nodes = graph.nodes
    n = len(nodes)
    if n < 2 * MIN_BLOCK_NODES:
        return []
    op_keys = list(map(_OP, nodes))  # (domain, op type) of each node
    codes = {op: k for k, op in enumerate(dict.fromkeys(op_keys))}
    seq = np.fromiter(map(codes.__getitem__, op_keys), dtype=np.int32, count=n)
    best: tuple[int, int, int] | None = None  # (covered, period, start)
    for p in range(MIN_BLOCK_NODES, min(max_period, n // 2) + 1):
        if best is not None and n // p * p <= best[0]:
            continue  # a period p covers at most n // p whole repeats: it cannot beat the best (no compare made)
        eq = seq[:-p] == seq[p:]
        # the longest run of matches is at most their count: a period whose every match in one
        # run still could not cover more than the best so far is skipped before the run search
        # (at 50,000 nodes most of the 2,000 periods, once the layer's period has been found)
        matches = int(np.count_nonzero(eq))
        if not matches or (best is not None and (matches + p) // p * p <= best[0]):
            continue
        # longest run of True
        padded = np.concatenate(([0], eq.view(np.int8), [0]))
        d = np.diff(padded)
        starts = np.flatnonzero(d == 1)
        ends = np.flatnonzero(d == -1)
        lengths = ends - starts
        k = int(np.argmax(lengths))
        run = int(lengths[k])
        if run < p:
            continue
        reps = (run + p) // p
        covered = reps * p
        if best is None or covered > best[0]:
            best = (covered, p, int(starts[k]))
    if best is None:
        return []
    covered, p, s = best
    reps = covered // p
    instances = [nodes[s + r * p : s + (r + 1) * p] for r in range(reps)]
    ops = Counter(x.op_type for x in instances[0])
    top = ", ".join(f"{op}x{c}" if c > 1 else op for op, c in ops.most_common(4))
    labels = [f"{inst[0].id}..{inst[-1].id}" for inst in instances]
    # the main graph's NodeCosts are in the order of its nodes (the cost pass walks them so)
    aligned = top_costs is not None and len(top_costs) == n and all(
        top_costs[k].id == nodes[k].id for k in (s, s + covered - 1))
    members = top_costs[s:s + covered] if aligned else None  # type: ignore[index]
    return [_make_block(f"repeat[{top}]", instances, labels, costs, "repeated op sequence", members)]
