"""The IR: loading from every source, the networkx view, bindings and shape inference."""

from __future__ import annotations

import networkx as nx
import onnx
import onnx.parser
import pytest

import mlms_ir
from mlms_ir.errors import InvalidModelError, ShapeBindingError
from mlms_ir.ir import Graph


def test_load_from_path_bytes_and_proto(cnn, cnn_path):
    for src in (cnn_path, str(cnn_path), cnn_path.read_bytes(), cnn):
        g = mlms_ir.load(src, batch=2)
        assert isinstance(g, Graph)
        assert [n.op_type for n in g.nodes] == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
        assert g.tensor("c1").shape == (2, 8, 16, 16)
        assert g.tensor("y").shape == (2, 10)


def test_load_does_not_mutate_the_given_proto(cnn):
    before = cnn.SerializeToString()
    mlms_ir.load(cnn, batch=4)
    assert cnn.SerializeToString() == before


def test_networkx_view(cnn):
    g = mlms_ir.load(cnn, batch=1)
    G = g.nx
    assert isinstance(G, nx.MultiDiGraph)
    ops = [n for n, d in G.nodes(data=True) if d["kind"] == "op"]
    assert len(ops) == 5
    assert G.nodes["input:x"]["kind"] == "input"
    assert G.nodes["initializer:w1"]["kind"] == "initializer"
    assert G.nodes["output:y"]["kind"] == "output"
    # one edge per (producer, consumer, tensor)
    assert G.has_edge("input:x", "n0", key="x")
    assert G.has_edge("initializer:w1", "n0", key="w1")
    assert G.has_edge("n0", "n1", key="c1")
    assert G.has_edge("n4", "output:y", key="y")
    assert nx.is_directed_acyclic_graph(G)
    assert g.producer("c1").id == "n0"
    assert [c.id for c in g.consumers("c1")] == ["n1"]


def test_ids_are_unique_when_names_repeat_or_are_empty():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] z) {
      y = Relu (x)
      z = Relu (y)
    }""")
    m.graph.node[0].name = "same"
    m.graph.node[1].name = "same"
    g = mlms_ir.load(m)
    assert [n.id for n in g.nodes] == ["n0", "n1"]
    assert [n.name for n in g.nodes] == ["same", "same"]


def test_unsorted_nodes_are_put_in_execution_order():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] z) {
      y = Relu (x)
      z = Neg (y)
    }""")
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    g = mlms_ir.load(m)
    assert [n.op_type for n in g.nodes] == ["Relu", "Neg"]
    assert g.tensor("z").shape == (2,)
    _facts_match_protos(g)


def test_inference_starts_before_the_nodes_are_read_and_again_when_they_were_out_of_order(monkeypatch):
    """A graph without subgraphs goes to shape inference before its nodes' names are read (they are
    read while inference runs); nodes found out of order are sent again, sorted. A graph with a
    subgraph is read and ordered first."""
    import mlms_ir.ir as ir

    events: list[str] = []
    start, rows = ir.start_infer_shapes, ir.checked_rows
    monkeypatch.setattr(ir, "start_infer_shapes", lambda *a, **k: events.append("infer") or start(*a, **k))
    monkeypatch.setattr(ir, "checked_rows", lambda *a, **k: events.append("rows") or rows(*a, **k))
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] z) {
      y = Relu (x)
      z = Neg (y)
    }"""
    assert mlms_ir.load(onnx.parser.parse_model(text)).tensor("z").shape == (2,)
    assert events == ["infer", "rows"]
    events.clear()
    m = onnx.parser.parse_model(text)
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    g = mlms_ir.load(m)
    assert events == ["infer", "rows", "infer"] and g.tensor("y").shape == (2,) and g.tensor("z").shape == (2,)
    events.clear()
    nested = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2] x) => (float[2] z) {
      z = If (c) <then_branch = t () => (float[2] a) { a = Relu (x) }, else_branch = e () => (float[2] b) { b = Neg (x) }>
    }""")
    assert mlms_ir.load(nested).tensor("z").shape == (2,) and events == ["rows", "infer"]


def _facts_match_protos(g) -> None:
    """Each Node's op type, domain, name and tensor names are its own proto's (the loader reads
    them once, before sorting or inlining, and hands them on)."""
    for n in g.nodes:
        p = n.proto
        assert (n.op_type, n.domain, n.name, n.inputs, n.outputs) == (
            p.op_type, "" if p.domain == "ai.onnx" else p.domain, p.name, tuple(p.input), tuple(p.output))


def test_sorted_nodes_keep_their_own_facts():
    """A shuffled graph of named nodes: after sorting, every Node's facts are its proto's."""
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] z, float[2] w) {
      a = Relu (x)
      b = Neg (a)
      c = Add (a, b)
      z = Sigmoid (c)
      w = Abs (b)
    }""")
    nodes = list(m.graph.node)
    for i, n in enumerate(nodes):
        n.name = f"node{i}"
    del m.graph.node[:]
    m.graph.node.extend([nodes[i] for i in (4, 2, 0, 3, 1)])
    g = mlms_ir.load(m)
    _facts_match_protos(g)
    assert [n.name for n in g.nodes].index("node0") == 0 and g.tensor("z").shape == (2,)


def test_bindings_input_shape_dims_and_batch(cnn):
    assert mlms_ir.load(cnn, input_shapes=["x:4x3x16x16"]).tensor("y").shape == (4, 10)
    assert mlms_ir.load(cnn, input_shapes={"x": [5, 3, 16, 16]}).tensor("y").shape == (5, 10)
    assert mlms_ir.load(cnn, dims="N=6").tensor("y").shape == (6, 10)
    assert mlms_ir.load(cnn, dims={"N": 7}).tensor("y").shape == (7, 10)
    assert mlms_ir.load(cnn, batch=3).tensor("y").shape == (3, 10)
    # unbound: the symbolic dim stays symbolic, never guessed
    assert mlms_ir.load(cnn).tensor("y").shape == ("N", 10)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"input_shapes": ["nope:1x3x16x16"]}, "no input 'nope'"),
        ({"input_shapes": ["x:1x3x16"]}, "rank 4"),
        ({"input_shapes": ["x:1x4x16x16"]}, "fixed at 3"),
        ({"input_shapes": ["x:1xAx16x16"]}, "positive integer"),
        ({"input_shapes": ["x"]}, "must be dims separated by 'x'"),  # a bare spec is the one input's DIMS
        ({"dims": "M=3"}, "no dim named 'M'"),
        ({"dims": "N=0"}, "positive integer"),
        ({"dims": "N"}, "NAME=VALUE"),
        ({"batch": -1}, "positive integer"),
        ({"dims": "N=2", "batch": 3}, "bound to both"),
    ],
)
def test_bad_bindings(cnn, kwargs, fragment):
    with pytest.raises(ShapeBindingError, match=fragment):
        mlms_ir.load(cnn, **kwargs)


def test_batch_on_fixed_leading_dim_is_refused():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,4] x) => (float[1,4] y) { y = Relu (x) }""")
    assert mlms_ir.load(m, batch=1).tensor("y").shape == (1, 4)
    with pytest.raises(ShapeBindingError, match="fixed leading dim"):
        mlms_ir.load(m, batch=8)


def test_data_propagation_resolves_computed_reshape():
    # Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as torch exports with a dynamic batch
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[B,4,5] x) => (y) {
      s = Shape (x)
      zero = Constant <value = int64[1] {0}> ()
      b = Gather <axis=0> (s, zero)
      m1 = Constant <value = int64[1] {-1}> ()
      shp = Concat <axis=0> (b, m1)
      y = Reshape (x, shp)
    }""")
    g = mlms_ir.load(m, batch=3)
    assert g.tensor("y").shape == (3, 20)


def test_subgraphs_are_graphs_with_outer_scope():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool c, float[2,3] x) => (float[2,3] y) {
      y = If (c) <
        then_branch = t () => (float[2,3] a) { a = Relu (x) },
        else_branch = e () => (float[2,3] b) { b = Neg (x) }
      >
    }""")
    g = mlms_ir.load(m)
    subs = g.nodes[0].subgraphs
    assert set(subs) == {"then_branch", "else_branch"}
    then = subs["then_branch"]
    assert then.parent is g
    assert then.nodes[0].id == "n0/then_branch/n0"
    assert then.tensor("x").shape == (2, 3)  # found through the outer scope
    assert [n.id for n in g.walk()] == ["n0", "n0/then_branch/n0", "n0/else_branch/n0"]


def test_contrib_op_shapes_flow_downstream():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("FastGelu", ["x"], ["g"], domain="com.microsoft"),
        helper.make_node("Relu", ["g"], ["y"]),
    ]
    m = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    g = mlms_ir.load(m)
    assert g.tensor("g").shape == (2, 8, 16)
    assert g.tensor("y").shape == (2, 8, 16)


def test_local_functions_are_inlined():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    g (float[2,3] x) => (float[2,3] y) { y = local.twice (x) }
    <domain: "local", opset_import: ["" : 17]>
    twice (a) => (b) { t = Relu (a) b = Relu (t) }
    """)
    g = mlms_ir.load(m)
    assert [n.op_type for n in g.nodes] == ["Relu", "Relu"]
    assert any("inlined" in w for w in g.warnings)
    _facts_match_protos(g)


def test_strict_inference_failure_is_an_error_unless_lenient():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,3,8,8] x) => (y) { y = MaxPool <kernel_shape=[2,2,2]> (x) }""")
    with pytest.raises(InvalidModelError, match="shape inference"):
        mlms_ir.load(m)
    g = mlms_ir.load(m, lenient=True)
    assert any("strict" in w for w in g.warnings)


def test_load_keeps_its_own_nodes_and_takes_onnx_inferred_types():
    """A model without subgraphs gets back from the guarded inference only the types of its main
    graph, merged into the model it read: the value infos must be exactly ONNX's own (checked
    against onnx.shape_inference run here), and every Node must hold the model's own proto."""
    import onnx.shape_inference

    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x) => (float[N, 4] y) <float[8, 4] w = {1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8}> {
            s = Shape(x)
            r = Reshape(x, s)
            m = MatMul(r, w)
            t = Relu(m)
            y = Identity(t)
        }
    """)
    graph = mlms_ir.load(model, batch=3)
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    bound.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3
    theirs = onnx.shape_inference.infer_shapes(bound, strict_mode=True, data_prop=True)
    ours = {vi.name: vi.type for vi in graph.model.graph.value_info}
    assert ours == {vi.name: vi.type for vi in theirs.graph.value_info} and set(ours) == {"s", "r", "m", "t"}
    assert [o.type for o in graph.model.graph.output] == [o.type for o in theirs.graph.output]
    assert [n.proto for n in graph.nodes] == list(graph.model.graph.node)
    assert graph.tensors["m"].shape == (3, 4) and graph.tensors["y"].shape == (3, 4) and graph.tensors["w"].kind == "initializer"
    assert graph.model is graph.loaded.model


def test_an_invalid_node_stops_the_inference_started_beside_it(monkeypatch):
    """The attribute checks run while inference works in its child: a node they reject ends
    the load with their error, and the child is stopped and reaped (not left running)."""
    import os

    from mlms_ir.ir import guard

    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 8] x) => (float[1, 8] y) {
            y = Softmax <axis = "oops"> (x)
        }
    """)
    stopped = []
    cancel = guard.GuardedCall.cancel

    def spy(call):
        if call._pid is not None:
            stopped.append(call._pid)
        cancel(call)

    monkeypatch.setattr(guard.GuardedCall, "cancel", spy)
    # a forked child of this process (not one of a guard server, which a large test process uses)
    monkeypatch.setattr(guard, "_server", None)
    monkeypatch.setattr(guard, "SERVER_MIN_RSS_BYTES", 1 << 60)
    with pytest.raises(InvalidModelError, match=r"node #0 \(Softmax\) is invalid"):
        mlms_ir.load(model)
    assert len(stopped) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(stopped[0], os.WNOHANG)


def test_all_resolved_tells_every_output_typed_with_known_dims():
    """fold._all_resolved, which lets shape completion stop early, looks at each distinct type
    once: equal types under other names share the verdict, another dim or a missing type does not."""
    from onnx import TensorProto, helper

    from mlms_ir.ir.fold import _all_resolved

    def graph(value_infos):
        nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                 helper.make_node("Relu", ["b"], ["y"])]
        return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], value_info=value_infos)

    typed = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", 4]) for name in ("a", "b")]
    assert _all_resolved(graph(typed), frozenset({"n"}))
    assert not _all_resolved(graph(typed), frozenset())  # 'n' is no input's dim name: unresolved
    assert not _all_resolved(graph(typed[:1]), frozenset({"n"}))  # 'b' has no type at all
    other = [typed[0], helper.make_tensor_value_info("b", TensorProto.FLOAT, ["m", 4])]
    assert not _all_resolved(graph(other), frozenset({"n"}))
    seq = [typed[0], helper.make_value_info("b", helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [4])))]
    assert not _all_resolved(graph(seq), frozenset({"n"}))
    unknown_dim = [typed[0], helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 4])]
    assert not _all_resolved(graph(unknown_dim), frozenset({"n"}))


def test_depth_is_networkx_longest_path(cnn):
    """structure.depth walks Graph.preds (the producers' positions, made with the nodes): the
    number of nodes on networkx's longest path through the op nodes, on the CNN and on a branchy
    graph whose file order is not an execution order."""
    from mlms_ir.passes.structure import depth

    branchy = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 4] x) => (float[2, 4] y) {
            y = Add(d, e)
            e = Relu(c)
            d = Sigmoid(a)
            c = Tanh(b)
            b = Neg(a)
            a = Abs(x)
        }
    """)
    for model in (cnn, branchy):
        graph = Graph(model)
        ops = graph.nx.subgraph([n.id for n in graph.nodes])
        assert depth(graph) == len(nx.dag_longest_path(ops))
        assert len(graph.preds) == len(graph.nodes)
    graph = Graph(branchy)
    assert depth(graph) == 5  # Abs, Neg, Tanh, Relu, Add
    assert [graph.nodes[j].op_type for j in graph.preds[-1]] == ["Sigmoid", "Relu"]


def _default_domain_spelt_out(opset_domain: str) -> onnx.ModelProto:
    """A MatMul, an If whose branches hold a Relu and a Neg, all with domain "ai.onnx" (the
    default domain's other spelling, which onnxruntime runs), importing ``opset_domain``."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    w = onnx.numpy_helper.from_array(__import__("numpy").ones((3, 4), "float32"), "w")

    def branch(op: str, out: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["m"], [out], domain="ai.onnx")], op.lower(), [],
                                 [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 4])])

    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], domain="ai.onnx"),
             helper.make_node("If", ["c"], ["y"], then_branch=branch("Relu", "a"), else_branch=branch("Neg", "b"))]
    m = helper.make_model(helper.make_graph(nodes, "g", [x, c], [y], [w]),
                          opset_imports=[helper.make_opsetid(opset_domain, 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("opset_domain", ["", "ai.onnx"])
def test_the_default_domain_spelt_ai_onnx_is_the_default_domain(tmp_path, opset_domain):
    from mlms_ir.ir.load import normalize_default_domain

    from mlms_ir.ir.load import spells_ai_onnx

    m = _default_domain_spelt_out(opset_domain)
    spelt = m.SerializeToString()
    assert spells_ai_onnx(spelt)
    plain = onnx.ModelProto.FromString(spelt)
    assert normalize_default_domain(plain) and not normalize_default_domain(plain)
    assert "ai.onnx" not in str(plain)  # every node, the branches' too, and the import
    path = tmp_path / "m.onnx"
    path.write_bytes(spelt)
    want = mlms_ir.analyze(plain)
    assert want.totals.macs == 24 and want.totals.params == 12
    for source in (m, spelt, path):
        a = mlms_ir.analyze(source)
        assert (a.totals.macs, a.totals.flops, a.totals.params) == (want.totals.macs, want.totals.flops, want.totals.params)
        assert [(n.op_type, n.domain) for n in a.nodes] == [(n.op_type, n.domain) for n in want.nodes]
    assert m.SerializeToString() == spelt  # the caller's proto keeps its spelling


def test_a_name_holding_the_spelling_changes_nothing():
    from mlms_ir.ir.load import spells_ai_onnx

    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "ai.onnx.ml" : 3]>
    g (float[2] x) => (float[2] y) { y = Relu (x) }""")
    m.graph.node[0].name = ":\x07ai.onnx"  # the tag of NodeProto.domain and the length, as a domain has
    data = m.SerializeToString()
    assert spells_ai_onnx(data)  # looks like the spelling: one walk, nothing to change
    assert not spells_ai_onnx(onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "ai.onnx.ml" : 3]>
    g (float[2] x) => (float[2] y) { y = Relu (x) }""").SerializeToString())  # ai.onnx.ml is not it
    g = mlms_ir.load(data)
    assert g.nodes[0].name == ":\x07ai.onnx" and g.nodes[0].domain == ""


def test_sizes_shared_by_equal_types_are_what_each_tensor_computes(cnn):
    """The (elements, bytes) pair the loader gives every tensor of one type is the pair
    TensorInfo._size computes from the tensor's own facts; sub-byte, unknown and sequence types too."""
    from mlms_ir.ir.graph import TensorInfo

    m = onnx.parser.parse_model("""
    <ir_version: 10, opset_import: ["" : 21]>
    g (float[2, n] x, int4[3, 5] q, float[4] s) => (float[2, n] y, seq(float[4]) z, float[3, 5] d) {
      y = Relu (x)
      z = SequenceConstruct (s, s)
      d = DequantizeLinear (q, s_one)
      s_one = Constant <value = float {0.5}> ()
    }""")
    for g in (mlms_ir.load(cnn), mlms_ir.load(m)):
        seeded = [t for t in g.tensors.values() if "_size" in t.__dict__]
        assert len(seeded) >= 4
        for t in seeded:
            assert t.__dict__["_size"] == TensorInfo._size.fn(t), t.name
    g = mlms_ir.load(m)
    assert g.tensor("q").nbytes == 8 and g.tensor("d").nbytes == 60 and g.tensor("z").nbytes is None
    assert g.tensor("y").nbytes is None and g.tensor("y").shape == (2, "n")


def test_tensor_kinds_follow_what_each_node_reads():
    """Static tensors: initializers, Constants' outputs, and outputs of nodes that read only static
    tensors (an omitted optional input reads nothing); never a random op's, nor anything that
    reads a graph input; a subgraph sees the outer scope's kinds."""
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x, bool c) => (float[4] y, float[4] r, float[4] o)
      <float[4] w = {1, 2, 3, 4}, float hi = {2}> {
      k = Constant <value = float[4] {1, 2, 3, 4}> ()
      t = Transpose (w)
      cl = Clip (t, , hi)
      mixed = Add (cl, x)
      r = RandomNormalLike (w)
      y = Mul (mixed, k)
      o = If (c) <
        then_branch = a () => (float[4] p) { q = Neg (cl) p = Add (q, x) },
        else_branch = b () => (float[4] s) { s = Identity (k) }
      >
    }""")
    g = mlms_ir.load(m)
    kinds = {name: g.tensors[name].kind for name in ("w", "hi", "k", "t", "cl", "mixed", "r", "y", "x")}
    assert kinds == {"w": "initializer", "hi": "initializer", "k": "constant", "t": "derived", "cl": "derived",
                     "mixed": "activation", "r": "activation", "y": "activation", "x": "input"}
    then = g.nodes[-1].subgraphs["then_branch"]
    assert then.tensor("q").kind == "derived" and then.tensor("p").kind == "activation"
    assert g.nodes[-1].subgraphs["else_branch"].tensor("s").kind == "derived"


def test_consumers_and_nodes_by_id_are_built_when_first_asked():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, bool c) => (float[2] y, float[2] z) {
      s = Mul (x, x)
      t = Relu (s)
      y = Add (s, t)
      z = If (c) < then_branch = a () => (float[2] p) { p = Neg (s) }, else_branch = b () => (float[2] q) { q = Abs (t) } >
    }""")
    g = mlms_ir.load(m)
    assert g._consumers is None and g._by_id is None  # an analysis asks for neither
    assert [n.id for n in g.consumers("x")] == ["n0", "n0"]  # once per input that names it
    assert [n.id for n in g.consumers("s")] == ["n1", "n2"]  # the If's branch reads it, not the If
    assert g.consumers("y") == [] and g.consumers("nothing") == []
    assert g.node("n2").op_type == "Add" and g.node("n3").op_type == "If"
    then = g.node("n3").subgraphs["then_branch"]
    assert [n.id for n in then.consumers("s")] == ["n3/then_branch/n0"]
    with pytest.raises(KeyError):
        g.node("n9")


@pytest.mark.parametrize("cls_path", ["mlms_ir.ir.graph:TensorInfo", "mlms_ir.passes.registry:Cost"])
def test_hand_written_initialisers_take_every_field_as_the_dataclass_would(cls_path):
    """TensorInfo and Cost write their instance dict in one store instead of the frozen
    dataclass' per-field __init__: their parameters must stay the fields, in order, with the
    fields' defaults, and an instance must hold exactly them (equal, hashable, frozen, replaceable)."""
    import dataclasses
    import importlib
    import inspect

    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
                                           for f in fields]
    args = [f"v{i}" for i in range(len(fields))]
    obj = cls(*args)
    assert vars(obj) == {f.name: a for f, a in zip(fields, args)}
    assert obj == cls(**{f.name: a for f, a in zip(fields, args)}) and hash(obj) == hash(cls(*args))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, fields[0].name, "other")
    assert dataclasses.replace(obj, **{fields[0].name: "other"}) == cls("other", *args[1:])


def _tensor_facts(graph):
    return {name: (t, t.known and (t.numel, t.nbytes), t.__dict__.get("_size")) for name, t in graph.tensors.items()}


def test_the_tensors_built_from_the_inference_childs_reading_are_those_read_from_the_value_infos(monkeypatch):
    """The inference child reads every value info for its "every output resolved" check and sends
    that reading (a TypeTable) with its answer; the loader builds the tensors from it. They must be
    the tensors the value infos themselves give (a dynamic dim, another element type, an input
    the graph does not read)."""
    from mlms_ir.ir.graph import Graph

    tables = []
    real = Graph._build_tensors
    monkeypatch.setattr(Graph, "_build_tensors", lambda self, table=None: tables.append(table) or real(self, table))
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x, int64[2] shape) => (float[N, 4] y, float16[N, 4] h) <float[8, 4] w = {1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8,1,2,3,4,5,6,7,8}> {
            m = MatMul(x, w)
            h = Cast<to = 10>(m)
            t = Relu(m)
            y = Identity(t)
        }
    """)
    graph = mlms_ir.load(model)
    assert tables and tables[-1] is not None and set(tables[-1].value_info[0]) == {"m", "t"}
    from_table = _tensor_facts(graph)
    real(graph)  # again, from the value infos
    assert _tensor_facts(graph) == from_table
    assert graph.tensors["h"].elem_type == onnx.TensorProto.FLOAT16 and graph.tensors["m"].shape == ("N", 4)
    assert graph.tensors["shape"].kind == "input" and graph.tensors["w"].kind == "initializer"


def test_a_graph_whose_outputs_inference_leaves_unresolved_gets_no_table(monkeypatch):
    """Where some output is not resolved the child completes the shapes node by node, changing
    the value infos after its check: it sends no reading of them, and the loader reads them."""
    from mlms_ir.ir.graph import Graph

    tables = []
    real = Graph._build_tensors
    monkeypatch.setattr(Graph, "_build_tensors", lambda self, table=None: tables.append(table) or real(self, table))
    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17, "example.custom" : 1]>
        g (float[2, 8] x) => (float[2, 8] y) {
            u = example.custom.Mystery(x)
            y = Relu(x)
        }
    """)
    graph = mlms_ir.load(model)
    assert tables == [None] and graph.tensors["y"].shape == (2, 8)


def test_a_type_table_is_read_back_only_when_it_is_one():
    from mlms_ir.ir.graph import TypeTable, read_type_table

    model = onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x) => (float[N, 8] y) {
            t = Relu(x)
            y = Neg(t)
        }
    """)
    g = onnx.shape_inference.infer_shapes(model).graph
    table = read_type_table(g)
    assert TypeTable.from_bytes(table.to_bytes()) == table and len(table.keys) == 1
    assert table.input == (["x"], [0]) and table.value_info == (["t"], [0]) and table.output == (["y"], [0])
    import marshal

    for bad in (b"", b"not marshal", marshal.dumps(([b"k"], ([b"x"], [0]), ([], []), ([], []))),  # a name that is not text
                marshal.dumps(([b"k"], (["x"], [1]), ([], []), ([], []))),  # a type out of range
                marshal.dumps(([b"k"], (["x"], [0, 0]), ([], []), ([], []))),  # lengths that differ
                marshal.dumps(([b"k"], (["x"], [0]), ([], [])))):  # a section missing
        assert TypeTable.from_bytes(bad) is None
