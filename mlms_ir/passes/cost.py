"""The cost pass: MACs, FLOPs, bytes and parameters of every node (subgraphs included)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from operator import attrgetter

from mlms_ir.errors import InvalidModelError, MlmsIrError
from mlms_ir.ir.dtypes import FLOAT_TYPES, INT_TYPES
from mlms_ir.ir.expr import add, is_int, is_symbolic, normalize
from mlms_ir.ir.graph import Graph, Node, TensorInfo, shape_json
from mlms_ir.ir.graph import constant_value
from mlms_ir.passes.registry import Cost, OpContext, Unresolved, load_ops, lookup
from mlms_ir.results.analysis import NodeCost, SubgraphInfo

#: A symbolic-pass trip count at or above this is taken as unknown (the shape rules' bound).
MAX_TRIP_COUNT = 2**31
#: A constant Loop trip count of INT64_MAX is the exporters' "no limit" (torch exports while-loops
#: with it): counted per iteration. Any other constant is used as it is, however large; a
#: negative one means no iteration (ONNX's ``for (i = 0; i < M; ++i)``).
NO_LIMIT_TRIP_COUNT = 2**63 - 1

#: Input slots that carry shapes, indices, axes or quantization scales rather than weights.
NON_WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    k: frozenset(v)
    for k, v in {
        "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3},
        "Resize": {1, 2, 3}, "Upsample": {1}, "Clip": {1, 2}, "Squeeze": {1}, "Unsqueeze": {1},
        "Split": {1}, "TopK": {1}, "ConstantOfShape": {0}, "Range": {0, 1, 2}, "OneHot": {1, 2},
        "Gather": {1}, "GatherElements": {1}, "GatherND": {1}, "ScatterND": {1}, "ScatterElements": {1},
        "CumSum": {1}, "Trilu": {1}, "Loop": {0, 1}, "Where": {0}, "ReduceSum": {1}, "ReduceMean": {1},
        "ReduceMax": {1}, "ReduceMin": {1}, "ReduceProd": {1}, "ReduceL1": {1}, "ReduceL2": {1},
        "ReduceSumSquare": {1}, "ReduceLogSum": {1}, "ReduceLogSumExp": {1},
        "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}, "QLinearConv": {1, 2, 4, 5, 6, 7},
        "QLinearMatMul": {1, 2, 4, 5, 6, 7}, "MatMulInteger": {2, 3}, "ConvInteger": {2, 3},
        "MatMulNBits": {2, 3, 4}, "DynamicQuantizeLinear": set(), "CenterCropPad": {1}, "Col2Im": {1, 2},
    }.items()
}
#: Integer inputs that are weights (quantized ops).
INT_WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "QLinearConv": frozenset({3, 8}), "QLinearMatMul": frozenset({3}), "MatMulInteger": frozenset({1}),
    "ConvInteger": frozenset({1}), "DequantizeLinear": frozenset({0}), "MatMulNBits": frozenset({1}),
    "DynamicQuantizeMatMul": frozenset({1}), "MatMulIntegerToFloat": frozenset({1}), "Gather": frozenset({0}),
}


#: Tensor kinds a parameter can come from (directly, or through a weight-only computation).
_STATIC_KINDS = frozenset({"initializer", "constant", "derived"})


def is_param_use(node: Node, slot: int, t: TensorInfo) -> bool:
    """Whether weight tensor ``t`` read at input ``slot`` of ``node`` is a parameter there."""
    if slot in NON_WEIGHT_SLOTS.get(node.op_type, ()):
        return False
    if t.kind == "derived":
        return True  # decided at its sources
    if t.elem_type in FLOAT_TYPES:
        return True
    return t.elem_type in INT_TYPES and slot in INT_WEIGHT_SLOTS.get(node.op_type, ())


@dataclass
class CostResult:
    nodes: list[NodeCost]  # every node, subgraph nodes after their owner
    top: list[NodeCost]  # main-graph nodes only (totals are sums over these)
    subgraphs: list[SubgraphInfo]
    param_owner: dict[str, str]  # param tensor -> id of the node it is attributed to
    param_tensors: dict[str, TensorInfo]  # param tensor -> its facts (subgraph weights included)
    param_elements: dict[str, int]  # param tensor -> weights it holds (packed 4-bit weights count each)


class CostPass:
    """Counts every node of a Graph; one instance per analysis."""

    def __init__(self, graph: Graph) -> None:
        load_ops()
        self.root = graph
        self.param_owner: dict[str, str] = {}
        self.param_tensors: dict[str, TensorInfo] = {}
        self.param_elements: dict[str, int] = {}
        self.subgraphs: list[SubgraphInfo] = []
        self.all_nodes: list[NodeCost] = []
        self._shapes: dict[tuple, list | None] = {}

    def _shape_json(self, shape) -> list | None:
        """:func:`shape_json` of ``shape``, one list per distinct shape of the graph (an LLM's
        200,000 nodes read a few dozen shapes): the NodeCosts share it, and never change it."""
        try:
            return self._shapes[shape]
        except KeyError:
            out = self._shapes[shape] = shape_json(shape)
            return out
        except TypeError:  # an unhashable dim: not kept
            return shape_json(shape)

    def run(self) -> CostResult:
        top = self._graph(self.root, parent=None)
        return CostResult(self.all_nodes, top, self.subgraphs, self.param_owner, self.param_tensors, self.param_elements)

    def _graph(self, g: Graph, parent: str | None) -> list[NodeCost]:
        results = []
        for node in g.nodes:
            nc = self._node(g, node, parent)
            results.append(nc)
        return results

    def _params(self, g: Graph, node: Node, ins: list[TensorInfo | None],
                outs: list[TensorInfo | None]) -> tuple[int, int]:
        """Parameters this node is the first to read, directly or through derived tensors
        (an Identity, Cast or DequantizeLinear of a weight belongs to the node that uses it).
        ``ins`` and ``outs``: the node's tensors (None for an omitted one), as looked up."""
        for t in ins:
            if t is not None and t.kind in _STATIC_KINDS:
                break
        else:
            return 0, 0  # reads no weight, directly or derived (most nodes): nothing to follow
        if len(outs) == 1:  # most nodes: no list to build (an omitted output is None, never derived)
            t = outs[0]
            if t is not None and t.kind == "derived":
                return 0, 0  # a weight-only computation: its weights go to whoever reads its output
        else:
            outs = [t for t, o in zip(outs, node.outputs) if o]
            if outs and all(t is not None and t.kind == "derived" for t in outs):
                return 0, 0
        n = b = 0
        for w in self._sources(g, node, set(), ins):
            if w.name in self.param_owner:
                continue
            self.param_owner[w.name] = node.id
            self.param_tensors[w.name] = w
            n += self.param_elements.setdefault(w.name, _packed_elements(node, w))
            b += w.nbytes or 0
        return n, b

    def _sources(self, g: Graph, node: Node, seen: set[str], ins: list[TensorInfo | None] | None = None):
        """The weights ``node`` reads as parameters, directly or through derived tensors (names in
        ``seen`` skipped, and added). ``ins``: its input tensors, when the caller has looked them up."""
        for slot, name in enumerate(node.inputs):
            if not name or name in seen:
                continue
            seen.add(name)
            t = g.tensor(name) if ins is None else ins[slot]
            if t is None or t.kind not in _STATIC_KINDS or not is_param_use(node, slot, t):
                continue  # an activation or a graph input holds no weight
            if t.kind != "derived":
                yield t
                continue
            prod = _producer(g, name)
            if prod is not None and prod.op_type == "Identity" and t.elem_type in FLOAT_TYPES:
                # the torch exporter stores equal-valued parameters once, with an Identity per
                # further parameter: each is a parameter of the model in its own right
                yield t
            elif prod is not None:
                yield from self._sources(prod.graph, prod, seen)

    def _node(self, g: Graph, node: Node, parent: str | None) -> NodeCost:
        tensor = g.tensors.get if g.parent is None else g.tensor  # the main graph has no outer scope
        ins = [tensor(x) if x else None for x in node.inputs]
        outs = [tensor(x) if x else None for x in node.outputs]
        params, param_bytes = self._params(g, node, ins, outs)
        op_type, domain = node.op_type, node.domain
        shape = self._shape_json
        # positional (a call with 17 keywords costs twice as much, once per node): the fields'
        # order is NodeCost's
        nc = NodeCost(
            node.id, node.name, op_type, domain, "counted",
            None, None, False, None, None,  # macs, flops, int_macs, bytes_read, bytes_written
            params, param_bytes,
            [None if t is None else shape(t.shape) for t in ins],
            [None if t is None else shape(t.shape) for t in outs],
            _sum_bytes(outs), None, parent,  # output_bytes, intensity, parent
        )
        self.all_nodes.append(nc)
        entry = lookup(op_type, domain)
        if entry is None:
            nc.status = "unknown_op"
            nc.note = f"no cost formula for {domain or 'ai.onnx'}::{op_type}"
            return nc
        if entry.category == "free":
            nc.status = "free"
            nc.macs = nc.flops = 0
            nc.bytes_read = nc.bytes_written = 0
            nc.intensity = None
            return nc
        if entry.category == "control-flow":
            self._control_flow(g, node, nc)
            return nc
        ctx = OpContext(node, g)
        try:
            c: Cost = entry.fn(ctx)  # type: ignore[misc]
        except Unresolved as u:
            nc.status = "unresolved"
            nc.note = f"shape of '{u.tensor}' is unknown"
            return nc
        except MlmsIrError:
            raise
        except (ArithmeticError, IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidModelError(
                f"cannot count node {node.label}: its attributes or shapes are inconsistent ({type(exc).__name__}: {exc})"
            ) from exc
        nc.macs, nc.flops, nc.int_macs, nc.note = _number(c.macs), _number(c.flops), c.int_macs, c.note
        nc.bytes_read = _number(c.bytes_read) if c.bytes_read is not None else _sum_bytes(ins, unique=True)
        nc.bytes_written = _number(c.bytes_written) if c.bytes_written is not None else nc.output_bytes
        if nc.bytes_read is None or nc.bytes_written is None:
            nc.status = "unresolved"
            nc.note = "the size of an input or output is unknown"
            nc.macs = nc.flops = None
        _set_intensity(nc)
        return nc

    def _control_flow(self, g: Graph, node: Node, nc: NodeCost) -> None:
        subs = node.subgraphs
        branch_costs: dict[str, list[NodeCost]] = {}
        for attr, sub in subs.items():
            branch_costs[attr] = self._graph(sub, parent=node.id)
        mult = 1
        note = ""
        sym = getattr(self.root, "symbolic", None)
        fields = ("macs", "flops", "bytes_read", "bytes_written")
        sums: dict[str, object] = {}
        if node.op_type == "If":
            chosen = _if_choice(g, node, sym)
            per_branch = {a: {f: sum_field(cs, f) for f in fields} for a, cs in branch_costs.items()}
            if chosen is not None and chosen in branch_costs:
                note = f"branch {chosen} taken (its condition is known)"
                counted = {chosen}
                sums = per_branch[chosen]
            elif per_branch:
                from mlms_ir.ir.expr import maximum

                names = list(per_branch)
                _, kept = maximum([per_branch[a]["flops"] for a in names])
                if len(kept) == 1:
                    chosen = names[kept[0]]
                    note = f"costlier branch ({chosen}) counted"
                    counted = {chosen}
                    sums = per_branch[chosen]
                else:  # which branch costs more depends on the dims: each figure is the larger of the two
                    counted = {names[k] for k in kept}
                    note = "the larger of the branches " + " and ".join(a for a in names if a in counted) + " (which one depends on the dims)"
                    sums = {f: maximum([per_branch[names[k]][f] for k in kept])[0] for f in fields}
            else:
                note, counted = "no branches", set()
                sums = {f: 0 for f in fields}
            picked = [c for a in counted for c in branch_costs[a]]
            for attr, sub in subs.items():
                self.subgraphs.append(SubgraphInfo(node.id, node.op_type, attr, len(sub.nodes), 1 if attr in counted else 0, note))
        else:
            picked = [c for cs in branch_costs.values() for c in cs]
            sym_mult = None
            if node.op_type == "Loop":
                m = constant_value(g, node.inputs[0]) if node.inputs and node.inputs[0] else None
                trips = _constant_trips(m)
                if trips is not None and trips < 0:  # ONNX: for (i = 0; i < M; ++i), so no iteration
                    mult = 0
                    note = f"body x 0 iterations (the trip count M is {trips}: the loop never runs)"
                elif trips is not None and trips != NO_LIMIT_TRIP_COUNT:
                    mult = trips
                    note = f"body x {mult} iterations (constant trip count; an early exit can make it fewer)"
                elif sym is not None and is_int(sym.trips.get(node.id)) and 0 <= sym.trips[node.id] < MAX_TRIP_COUNT:
                    mult = sym.trips[node.id]
                    note = f"body x {mult} iterations (trip count computed from the shapes; an early exit can make it fewer)"
                elif sym is not None and is_symbolic(sym.trips.get(node.id)):
                    sym_mult = sym.trips[node.id]
                    note = f"body x {sym_mult} iterations (an early exit can make it fewer)"
                else:
                    mult = None
                    note = ("per iteration: the trip count is the exporters' 'no limit' (INT64_MAX)" if trips is not None
                            else "per iteration: the trip count is not a constant")
            else:  # Scan
                n_scan = int(node.attrs.get("num_scan_inputs", 0) or 0)
                n_state = len(node.inputs) - n_scan
                axes = node.attrs.get("scan_input_axes") or [0] * n_scan
                t = g.tensor(node.inputs[n_state]) if n_scan and n_state < len(node.inputs) else None
                axis = int(axes[0]) if axes else 0
                if t is not None and t.shape is not None and -len(t.shape) <= axis < len(t.shape) and isinstance(t.shape[axis], int):
                    mult = int(t.shape[axis])
                    note = f"body x {mult} iterations"
                elif t is not None and t.sym_known and -len(t.shape) <= axis < len(t.shape):
                    sym_mult = t.shape[axis]
                    note = f"body x {sym_mult} iterations"
                else:
                    mult = None
                    note = "per iteration: the scan length is unknown"
            if sym_mult is not None:
                mult = sym_mult
            for attr, sub in subs.items():
                info = SubgraphInfo(node.id, node.op_type, attr, len(sub.nodes), None if sym_mult is not None else mult, note)
                if sym_mult is not None:
                    info.symbolic_multiplier = str(sym_mult)
                self.subgraphs.append(info)
            factor = mult if mult is not None else 1
            sums = {f: normalize(factor * sum_field(picked, f)) for f in fields}
        nc.note = note
        if any(c.status == "unresolved" for c in picked):
            nc.status = "unresolved"
        nc.macs, nc.flops, nc.bytes_read, nc.bytes_written = (sums[f] for f in fields)
        nc.int_macs = any(c.int_macs for c in picked)
        every = [c for cs in branch_costs.values() for c in cs]  # weights of every branch are stored
        nc.params += sum(c.params for c in every)
        nc.param_bytes += sum(c.param_bytes for c in every)
        _set_intensity(nc)


def _constant_trips(m) -> int | None:
    """A Loop's constant trip count M as an int (None when M is absent, not constant or not one integer)."""
    if m is None or m.size != 1 or m.dtype.kind not in "iub":
        return None
    return int(m.reshape(-1)[0])


def _if_choice(g: Graph, node: Node, sym) -> str | None:
    """The branch an If takes when its condition is known (a constant, or computed from bound dims)."""
    name = node.inputs[0] if node.inputs else ""
    if not name:
        return None
    v = constant_value(g, name)
    if v is None and sym is not None:
        v = sym.values.get(name)
    if v is None or v.size != 1:
        return None
    try:
        cond = bool(v.reshape(-1)[0])
    except TypeError:  # an expression of the dims: not known
        return None
    return "then_branch" if cond else "else_branch"


def _packed_elements(node: Node, t: TensorInfo) -> int:
    """Weights in a tensor: its elements, except MatMulNBits' packed B (K*N weights of `bits` each)."""
    if node.op_type == "MatMulNBits" and node.domain == "com.microsoft" and node.inputs[1] == t.name:
        k, n = node.attrs.get("K"), node.attrs.get("N")
        if isinstance(k, int) and isinstance(n, int) and k > 0 and n > 0:
            return k * n
    return t.numel or 0


def _producer(g: Graph, name: str) -> Node | None:
    while g is not None:
        p = g.producer(name)
        if p is not None:
            return p
        g = g.parent  # type: ignore[assignment]
    return None


def sum_field(costs: list[NodeCost], name: str) -> int:
    """The total of field ``name`` over ``costs``: an int, or an expression of the dims (Nones skipped)."""
    return add(list(map(attrgetter(name), costs)))


def _sum_bytes(tensors: list[TensorInfo | None], unique: bool = False) -> int | None:
    """The total size of ``tensors`` (each name once with ``unique``): None when one is unknown,
    an expression when one is symbolic."""
    ts = _distinct(tensors) if unique and len(tensors) > 1 else tensors
    total = 0
    for t in ts:  # plain sizes, the common case: summed as they come
        if t is None:
            continue
        size = t._size  # what sym_nbytes reads first, without its property call (twice per node)
        b = size[1] if size is not None else t.sym_nbytes
        if type(b) is not int:  # unknown or symbolic
            sizes = [t.sym_nbytes for t in ts if t is not None]
            return None if any(x is None for x in sizes) else add(sizes)
        total += b
    return total


def _distinct(tensors: list[TensorInfo | None]) -> list[TensorInfo]:
    """``tensors`` less the Nones, each name once (a node may read one tensor twice)."""
    seen: set[str] = set()
    out = []
    for t in tensors:
        if t is not None and t.name not in seen:
            seen.add(t.name)
            out.append(t)
    return out


def _number(x):
    """An int, or an expression of the model's dims (the symbolic analysis); floats that formulas
    made from ints are ints."""
    if type(x) is int:
        return x
    if is_symbolic(x):
        return normalize(x)
    return int(x)


def _set_intensity(nc: NodeCost) -> None:
    read, written, flops = nc.bytes_read, nc.bytes_written, nc.flops
    if type(read or 0) is int and type(written or 0) is int and (flops is None or type(flops) is int):
        moved = (read or 0) + (written or 0)  # plain numbers (the common case): no sympy look
        nc.intensity = (flops / moved) if moved and flops is not None else None
        return
    moved = normalize((nc.bytes_read or 0) + (nc.bytes_written or 0))
    if not is_int(moved) or (nc.flops is not None and not is_int(nc.flops)):
        nc.intensity = None  # depends on the dims: not one number
        return
    nc.intensity = (nc.flops / moved) if moved and nc.flops is not None else None


def count_costs(graph: Graph) -> CostResult:
    """Run the cost pass over ``graph`` and its subgraphs (a large graph's second part in a forked
    worker: :func:`_split_ok`)."""
    p = CostPass(graph)
    return _run_split(p) if _split_ok(graph) else p.run()


#: A main graph of at least this many nodes is counted in two processes (:func:`_split_ok`):
#: below it, the fork and the merge cost more than half the pass saves.
SPLIT_MIN_NODES = 20_000
#: The share of the nodes this process counts; the worker counts the rest. The worker is the
#: slower per node (each object it touches costs it a copy-on-write page fault) and this process
#: merges its answer: 0.58 let both finish together on a 50,000- and a 200,000-node decoder (the
#: pass in 0.81 s instead of 1.10 s, and 3.3 s instead of 4.3 s, on the 2-core machine).
SPLIT_SHARE = 0.58


def _split_ok(graph: Graph) -> bool:
    """Whether ``graph`` is counted in two processes: a main graph of :data:`SPLIT_MIN_NODES` or
    more nodes, none holding a subgraph, every dim a plain number (the worker's figures go back
    as plain numbers), where ``fork`` exists, this process runs no other thread (a lock another
    thread holds would stay held in the worker for good) and may use two CPUs. The counts are the
    one-process pass's, in every field (a test holds them so)."""
    from mlms_ir.ir.guard import can_fork_worker

    return (len(graph.nodes) >= SPLIT_MIN_NODES and not graph._owners and graph.symbolic is None
            and can_fork_worker())


def _run_split(p: CostPass) -> CostResult:
    """:meth:`CostPass.run` of a graph without subgraphs, its last nodes counted by a forked worker
    (:func:`_count_part`) while this process counts the first :data:`SPLIT_SHARE`, then merged
    in order. A weight both parts read is the first reader's, as in one pass: the worker's claim
    on it is taken back from its node. A worker that fails (a formula raised, a figure that is not
    a plain number, the worker died) leaves its part to this process, which then meets the same
    error where there is one; a worker that cannot be started leaves it all."""
    import marshal

    from mlms_ir.ir.guard import GuardedCrash, GuardedError, start_guarded

    g = p.root
    nodes = g.nodes
    mid = int(len(nodes) * SPLIT_SHARE)
    rest = nodes[mid:]
    try:
        call = start_guarded(lambda: marshal.dumps(_count_part(p, rest)))
    except OSError:  # no process to be had (fork's EAGAIN, ENOMEM): one process counts them all
        return p.run()
    try:
        top = [p._node(g, node, None) for node in nodes[:mid]]
        try:
            table, rows, elements = marshal.loads(call.result())
        except (GuardedCrash, GuardedError, ValueError, EOFError, TypeError):
            top.extend(p._node(g, node, None) for node in rest)
            return CostResult(p.all_nodes, top, p.subgraphs, p.param_owner, p.param_tensors, p.param_elements)
    finally:
        call.cancel()
    _merge_part(p, rest, table, rows, elements, top)
    return CostResult(p.all_nodes, top, p.subgraphs, p.param_owner, p.param_tensors, p.param_elements)


#: The NodeCost fields a worker's row holds, in order (after them: the input and output shapes as
#: indices into its table of shape lists, -1 for none, and the weights the node claimed).
_PART_FIELDS = ("status", "macs", "flops", "int_macs", "bytes_read", "bytes_written", "params", "param_bytes",
                "output_bytes", "intensity", "note")
#: The types a worker's figures may have: what marshal carries exactly (no expression of the dims,
#: no numpy number).
_PLAIN_TYPES = frozenset({int, float, str, bool, type(None)})


def _count_part(p: CostPass, nodes: list[Node]) -> tuple[list, list, dict[str, int]]:
    """The worker's side of :func:`_run_split`: ``nodes`` counted by ``p`` (the worker's copy, which
    has counted nothing yet), as plain values: a table of the distinct shape lists, one row per
    node (:data:`_PART_FIELDS`, shape indices, claimed weights) and each claimed weight's elements.
    A figure that is not a plain number raises ValueError (the caller counts these nodes itself)."""
    g = p.root
    get = attrgetter(*_PART_FIELDS)
    table: list[list] = []
    index: dict[int, int] = {}
    rows = []
    owner = p.param_owner
    plain = _PLAIN_TYPES
    for node in nodes:
        before = len(owner)
        nc = p._node(g, node, None)
        values = get(nc)
        for name, v in zip(_PART_FIELDS, values):
            if type(v) not in plain:
                raise ValueError(f"node {node.id}: {name} is a {type(v).__name__}")
        shapes = []
        for group in (nc.input_shapes, nc.output_shapes):
            ids = []
            for sh in group:
                if sh is None:
                    ids.append(-1)
                    continue
                k = index.get(id(sh))
                if k is None:
                    k = index[id(sh)] = len(table)
                    table.append(sh)
                ids.append(k)
            shapes.append(tuple(ids))
        claimed = ()
        if len(owner) > before:  # the names it claimed: the owner table's last ones, in their order
            claimed = tuple(islice(reversed(owner), len(owner) - before))[::-1]
        rows.append((*values, *shapes, claimed))
    elements = {name: p.param_elements[name] for name in owner}
    return table, rows, elements


def _merge_part(p: CostPass, nodes: list[Node], table: list[list], rows: list[tuple], elements: dict[str, int],
                top: list[NodeCost]) -> None:
    """Append the worker's counts of ``nodes`` (:func:`_count_part`) to ``p`` and ``top``, as one
    pass would have made them: shape lists shared with this process' equal ones, and each weight
    the first reader's."""
    canon = {tuple(v): v for v in p._shapes.values() if v is not None}
    shared = []
    for sh in table:
        key = tuple(sh)
        shared.append(canon.setdefault(key, sh))
    owner, tensors, counted = p.param_owner, p.param_tensors, p.param_elements
    lookup_tensor = p.root.tensors.get
    add = p.all_nodes.append
    keep = top.append
    for node, row in zip(nodes, rows):
        (status, macs, flops, int_macs, bytes_read, bytes_written, params, param_bytes, output_bytes, intensity, note,
         ins, outs, claimed) = row
        for name in claimed:
            w = lookup_tensor(name)
            if name in owner:  # read first by a node this process counted: it is that node's
                params -= elements[name]
                param_bytes -= (w.nbytes or 0) if w is not None else 0
                continue
            owner[name] = node.id
            tensors[name] = w
            counted[name] = elements[name]
        nc = NodeCost(node.id, node.name, node.op_type, node.domain, status, macs, flops, int_macs, bytes_read, bytes_written,
                      params, param_bytes, [None if i < 0 else shared[i] for i in ins],
                      [None if i < 0 else shared[i] for i in outs], output_bytes, intensity, None, note)
        add(nc)
        keep(nc)
