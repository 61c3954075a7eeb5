"""The memory pass: parameters and weights, activations, and peak activation memory by liveness."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mlms_ir.ir.dtypes import dtype_bits
from mlms_ir.ir.expr import is_int, maximum, normalize
from mlms_ir.ir.graph import Graph, free_names
from mlms_ir.passes.cost import CostResult


@dataclass
class MemoryResult:
    params: int
    param_bytes: int
    params_by_dtype: dict[str, int]
    weight_bytes: int
    constant_bytes: int
    activation_bytes: int
    peak_activation_bytes: int
    peak_at_node: str | None
    #: Where the peak depends on the dims: every node whose live total may be the largest.
    peak_candidates: list[str]
    input_bytes: int
    output_bytes: int
    unknown_size_tensors: list[str]


def memory(graph: Graph, costs: CostResult) -> MemoryResult:
    """Parameters (tensors the cost pass attributed to a node as weights), weights and activations.

    *Activations* are the outputs of main-graph nodes that are neither graph outputs nor static
    (constants, or tensors computed from weights only such as an Identity of a weight).
    The *peak* is the largest total of live non-weight tensors (graph inputs, activations, graph
    outputs) over the execution order: a tensor lives from its producer (graph inputs: from the
    start) to its last consumer (graph outputs: to the end). Aliasing (Reshape views, in-place ops)
    is not modelled, so this is the footprint of a runtime that allocates every tensor.

    With symbolic dims every size is an expression; the peak is then the Max() of the live
    totals that no other one dominates for every value of the dims (often just one).
    """
    by_dtype: Counter[str] = Counter()
    params = param_bytes = 0
    for name, t in costs.param_tensors.items():
        count = costs.param_elements.get(name, t.numel or 0)
        params += count
        param_bytes += t.sym_nbytes or 0
        by_dtype[t.dtype] += count
    weight_bytes = 0
    for g in [graph] + [sub for _, _, sub in graph.all_subgraphs()]:
        for name in g.initializer_names:
            weight_bytes += g.tensors[name].nbytes or 0
        for node in g.nodes:
            if node.op_type == "Constant" and node.domain == "":
                for out in node.proto.output:
                    t = g.tensors.get(out)
                    weight_bytes += (t.nbytes or 0) if t is not None else 0

    unknown: list[str] = []
    outputs = set(graph.output_names)
    n = len(graph.nodes)
    step = {node.id: i for i, node in enumerate(graph.nodes)}
    start: dict[str, int] = {name: 0 for name in graph.input_names}
    for i, node in enumerate(graph.nodes):
        for out in node.proto.output:
            t = graph.tensors.get(out) if out else None
            if t is not None and not t.is_static:
                start.setdefault(out, i)
    # a tensor an If/Loop/Scan body reads from the outer scope lives until that node runs
    outer_reads: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for sub in node.subgraphs.values():
            for name in free_names(sub.proto):
                outer_reads[name] = max(outer_reads.get(name, i), i)
    activation_bytes = 0
    diff = [0] * (n + 2)
    for name, s in start.items():
        t = graph.tensors.get(name)
        size = t.sym_nbytes if t is not None else None
        if size is None:
            if t is not None and t.sym_known and dtype_bits(t.elem_type) is None:
                continue  # strings and other variable-size elements: no byte size to give
            unknown.append(name)
            continue
        if name in outputs:
            end = n - 1
        else:
            users = [step[c.id] for c in graph.consumers(name) if c.id in step]
            if name in outer_reads:
                users.append(outer_reads[name])
            end = max(users) if users else s
            if t is not None and t.kind == "activation":
                activation_bytes += size
        diff[s] += size
        diff[max(end, s) + 1] -= size
    lives = []
    live = 0
    for i in range(n):
        live = normalize(live + diff[i])
        lives.append(live)
    candidates: list[int] = []
    if all(is_int(v) for v in lives):
        peak = live = 0
        peak_step = None
        for i, v in enumerate(lives):
            if v > peak:
                peak, peak_step = v, i
    else:
        peak, candidates = maximum(lives)
        peak_step = candidates[0] if len(candidates) == 1 else None
        if len(candidates) == 1:
            candidates = []
    input_bytes = normalize(sum(graph.tensors[x].sym_nbytes or 0 for x in graph.input_names))
    output_bytes = normalize(sum((graph.tensor(x).sym_nbytes or 0) if graph.tensor(x) else 0 for x in graph.output_names))
    return MemoryResult(
        params=params,
        param_bytes=param_bytes,
        params_by_dtype=dict(by_dtype),
        weight_bytes=weight_bytes,
        constant_bytes=max(weight_bytes - param_bytes, 0),
        activation_bytes=normalize(activation_bytes),
        peak_activation_bytes=peak,
        peak_at_node=graph.nodes[peak_step].id if peak_step is not None else None,
        peak_candidates=[graph.nodes[i].id for i in candidates],
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        unknown_size_tensors=unknown,
    )
