"""The memory pass: parameters and weights, activations, and peak activation memory by liveness."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mlms_ir.ir.dtypes import dtype_bits, dtype_name
from mlms_ir.ir.expr import add, from_terms, is_int, maximum_terms, sympy, terms
from mlms_ir.ir.graph import Graph, free_names
from mlms_ir.passes.cost import CostResult

#: Tensor kinds known before any input arrives (:attr:`~mlms_ir.ir.graph.TensorInfo.is_static`).
_STATIC_KINDS = frozenset({"initializer", "constant", "derived"})


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
    by_elem: Counter[int] = Counter()  # by element type: its name once per type, not per weight
    params = param_bytes = 0
    for name, t in costs.param_tensors.items():
        count = costs.param_elements.get(name, t.numel or 0)
        params += count
        param_bytes += t.sym_nbytes or 0
        by_elem[t.elem_type] += count
    by_dtype: Counter[str] = Counter()
    for elem, count in by_elem.items():  # in the order the types were first met, as before
        by_dtype[dtype_name(elem)] += count
    weight_bytes = 0
    for g in [graph] + [sub for _, _, sub in graph.all_subgraphs()]:
        for name in g.initializer_names:
            weight_bytes += g.tensors[name].nbytes or 0
        for node in g.nodes:
            if node.op_type == "Constant" and node.domain == "":
                for out in node.outputs:
                    t = g.tensors.get(out)
                    weight_bytes += (t.nbytes or 0) if t is not None else 0

    unknown: list[str] = []
    outputs = set(graph.output_names)
    n = len(graph.nodes)
    # the loops below run once per node or tensor of a 200,000-node graph: locals, no properties
    tensors = graph.tensors
    get_tensor = tensors.get
    start: dict[str, int] = {name: 0 for name in graph.input_names}
    last: dict[str, int] = {}  # tensor -> the last step of this graph that reads it
    for i, node in enumerate(graph.nodes):
        for x in node.inputs:
            last[x] = i
        for out in node.outputs:
            t = get_tensor(out) if out else None
            if t is not None and t.kind not in _STATIC_KINDS:
                start.setdefault(out, i)
    # a tensor an If/Loop/Scan body reads from the outer scope lives until that node runs
    outer_reads: dict[str, int] = {}
    step = {node.id: i for i, node in enumerate(graph.nodes)} if graph.subgraphs else {}
    for node_id, subs in graph.subgraphs.items():
        i = step[node_id]
        for sub in subs.values():
            for name in free_names(sub.proto):
                outer_reads[name] = max(outer_reads.get(name, i), i)
    activations: list = []
    diff: list[int] = [0] * (n + 2)
    sym_diff: dict[int, dict] = {}  # step -> {term: coefficient} of the symbolic sizes starting/ending there

    def change(step: int, size, sign: int) -> None:
        if is_int(size):
            diff[step] += sign * size
            return
        d = sym_diff.setdefault(step, {})
        for t, c in terms(size):
            d[t] = d.get(t, 0) + sign * c

    for name, s in start.items():
        t = get_tensor(name)
        size = t.sym_nbytes if t is not None else None
        if size is None:
            if t is not None and t.sym_known and dtype_bits(t.elem_type) is None:
                continue  # strings and other variable-size elements: no byte size to give
            unknown.append(name)
            continue
        if name in outputs:
            end = n - 1
        else:
            end = last.get(name, -1)  # the last step that reads it (steps are >= 0)
            j = outer_reads.get(name)
            if j is not None and j > end:
                end = j
            if end < 0:
                end = s
            if t is not None and t.kind == "activation":
                activations.append(size)
        if type(size) is int:  # a plain size (the common case): as change() adds it
            diff[s] += size
            diff[max(end, s) + 1] -= size
        else:
            change(s, size, 1)
            change(max(end, s) + 1, size, -1)
    activation_bytes = add(activations)
    candidates: list[int] = []
    peak_step = None
    if not sym_diff:
        peak = live = 0
        for i in range(n):
            live += diff[i]
            if live > peak:
                peak, peak_step = live, i
    else:
        # the live total at each step as {term: coefficient}; the peak is the Max of the totals
        # no other one dominates
        one = sympy().Integer(1)
        live_int = 0
        live_sym: dict = {}
        lives: list[dict] = []
        for i in range(n):
            live_int += diff[i]
            for t, c in sym_diff.get(i, {}).items():
                live_sym[t] = live_sym.get(t, 0) + c
            snapshot = {t: c for t, c in live_sym.items() if c != 0}
            if live_int:
                snapshot[one] = snapshot.get(one, 0) + live_int
            lives.append(snapshot)
        kept = maximum_terms(lives)
        values = [from_terms(lives[i]) for i in kept]
        if len(kept) == 1:
            peak, peak_step = values[0], kept[0]
        else:
            peak, candidates = sympy().Max(*values, evaluate=False), kept
    input_bytes = add(graph.tensors[x].sym_nbytes or 0 for x in graph.input_names)
    output_bytes = add((graph.tensor(x).sym_nbytes or 0) if graph.tensor(x) else 0 for x in graph.output_names)
    return MemoryResult(
        params=params,
        param_bytes=param_bytes,
        params_by_dtype=dict(by_dtype),
        weight_bytes=weight_bytes,
        constant_bytes=max(weight_bytes - param_bytes, 0),
        activation_bytes=activation_bytes,
        peak_activation_bytes=peak,
        peak_at_node=graph.nodes[peak_step].id if peak_step is not None else None,
        peak_candidates=[graph.nodes[i].id for i in candidates],
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        unknown_size_tensors=unknown,
    )
