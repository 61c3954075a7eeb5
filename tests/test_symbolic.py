"""Symbolic analysis: with dims unbound every figure is an exact formula of them.

Each model here is built by hand as ONNX text, with the shape arithmetic exporters write
(Shape/Gather/Concat/Reshape(-1), Slice to a constant, Concat of an extra token, strided
convolutions over a dynamic size), data-dependent ops (NonZero) and control flow (If, Loop).
Two kinds of checks:

* formulas written out by hand from the ops' definitions;
* the property that matters to a user: a formula evaluated at some dims equals the analysis
  with those dims bound, node by node and in total (``assert_formulas_match``), where the bound
  analysis goes through ONNX's own shape inference with concrete numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import numpy_helper

import mlms_ir
from mlms_ir.errors import FormulaError, ShapeBindingError
from mlms_ir.passes import formulas
import symbolic_helpers as H
from symbolic_helpers import assert_formulas_match, value

sympy = pytest.importorskip("sympy")

def model(text: str, inits: dict[str, np.ndarray] | None = None, opset: int = 18) -> onnx.ModelProto:
    m = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n{text}')
    for name, arr in (inits or {}).items():
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
    return m


# --------------------------------------------------------------------------- shape arithmetic
# x[batch, seq, 16] -> flatten tokens with Reshape(Concat(batch*seq, 16)) -> MatMul -> back to
# [batch, seq, 32]; a learned token appended on the seq axis (seq + 1); a Slice to 512 tokens.
TOKENS = """
tokens (float[batch, seq, 16] x) => (float[batch, q, 32] y) {
    shp = Shape(x)
    i0 = Constant<value = int64[1] {0}>()
    i1 = Constant<value = int64[1] {1}>()
    b = Gather<axis = 0>(shp, i0)
    s = Gather<axis = 0>(shp, i1)
    bs = Mul(b, s)
    d = Constant<value = int64[1] {16}>()
    flat_shape = Concat<axis = 0>(bs, d)
    flat = Reshape(x, flat_shape)
    h = MatMul(flat, w)
    o = Constant<value = int64[1] {32}>()
    back_shape = Concat<axis = 0>(b, s, o)
    h3 = Reshape(h, back_shape)
    cls_shape = Concat<axis = 0>(b, i1, o)
    cls_b = Expand(cls, cls_shape)
    z = Concat<axis = 1>(cls_b, h3)
    st = Constant<value = int64[1] {0}>()
    en = Constant<value = int64[1] {512}>()
    ax = Constant<value = int64[1] {1}>()
    y = Slice(z, st, en, ax)
}
"""
TOKENS_INITS = {"w": np.ones((16, 32), np.float32), "cls": np.ones((1, 1, 32), np.float32)}


def test_shape_arithmetic_gives_exact_dims():
    a = mlms_ir.analyze(model(TOKENS, TOKENS_INITS))
    shapes = {n.op_type + str(i): n.output_shapes[0] for i, n in enumerate(a.nodes)}
    by_op = {n.op_type: n for n in a.nodes}
    assert by_op["MatMul"].output_shapes == [["batch*seq", 32]]  # Reshape(-1-free) of Concat(batch*seq, 16)
    assert by_op["Concat"].output_shapes  # several Concats; the one on activations:
    z = [n for n in a.nodes if n.op_type == "Concat" and n.output_shapes[0] and len(n.output_shapes[0]) == 3][0]
    assert z.output_shapes == [["batch", "seq + 1", 32]]
    assert by_op["Slice"].output_shapes == [["batch", "Min(512, seq + 1)", 32]]
    assert by_op["MatMul"].symbolic["macs"] == "512*batch*seq"  # 16 * 32 per token
    assert not a.warnings and a.totals.complete and shapes
    assert [d.name for d in a.dims] == ["batch", "seq"]


def test_shape_arithmetic_formulas_match_bound_analyses():
    assert_formulas_match(model(TOKENS, TOKENS_INITS), [{"batch": 1, "seq": 7}, {"batch": 3, "seq": 511},
                                                         {"batch": 2, "seq": 600}], device="a100")


# --------------------------------------------------------------------------- convolutions over a dynamic size
CONVS = """
convs (float[N, 3, H, W] x) => (float[N, 8] y) {
    c1 = Conv<kernel_shape = [3, 3], pads = [1, 1, 1, 1], strides = [2, 2]>(x, w1, b1)
    r1 = Relu(c1)
    p1 = MaxPool<kernel_shape = [3, 3], strides = [2, 2], ceil_mode = 1>(r1)
    c2 = Conv<kernel_shape = [1, 1]>(p1, w2)
    g = GlobalAveragePool(c2)
    y = Flatten(g)
}
"""
CONVS_INITS = {"w1": np.ones((4, 3, 3, 3), np.float32), "b1": np.ones(4, np.float32), "w2": np.ones((8, 4, 1, 1), np.float32)}


def test_strided_conv_and_ceil_pool_formulas():
    a = mlms_ir.analyze(model(CONVS, CONVS_INITS))
    conv = next(n for n in a.nodes if n.op_type == "Conv")
    # out = floor((H + 2 - 2 - 1)/2) + 1 per spatial dim; 'N' reads back as a symbol: written N_
    n_, h, w = sympy.symbols("N_ H W")
    oh, ow = sympy.floor((h - 1) / 2) + 1, sympy.floor((w - 1) / 2) + 1
    assert sympy.simplify(sympy.sympify(conv.symbolic["macs"]) - 4 * 27 * n_ * oh * ow) == 0
    assert [(d.name, d.origin) for d in a.dims] == [("N_", "N"), ("H", "H"), ("W", "W")]


@pytest.mark.parametrize("points", [[{"N": 1, "H": 32, "W": 32}, {"N": 2, "H": 33, "W": 17}, {"N": 3, "H": 5, "W": 6}]])
def test_conv_formulas_match_bound_analyses(points):
    # bound by the model's own names (N), which the formulas write N_: value() maps neither,
    # so bind with the formula's names and check the figures agree
    sym = mlms_ir.analyze(model(CONVS, CONVS_INITS), device="a100")
    for at in points:
        bound = mlms_ir.analyze(model(CONVS, CONVS_INITS), dims=at, device="a100")
        names = {"N_": at["N"], "H": at["H"], "W": at["W"]}
        for key in H.TOTAL_KEYS:
            assert value(sym.totals, key, names) == getattr(bound.totals, key), (key, at)
        for n, b in zip(sym.nodes, bound.nodes):
            for key in H.NODE_KEYS:
                assert value(n, key, names) == getattr(b, key), (n.id, key, at)


# --------------------------------------------------------------------------- anonymous dims
def test_anonymous_dims_get_names_and_bind_independently():
    m = model(CONVS.replace("float[N, 3, H, W] x", "float[?, 3, ?, ?] x"), CONVS_INITS)
    a = mlms_ir.analyze(m)
    assert [d.name for d in a.dims] == ["x_d0", "x_d2", "x_d3"]
    assert a.model.inputs[0]["shape"] == ["x_d0", 3, "x_d2", "x_d3"]
    # each binds on its own: 48 and 192 used to collide as one name '?'
    b = mlms_ir.analyze(m, input_shapes=["x:1x3x48x192"])
    assert b.totals.symbolic is None
    conv = next(n for n in b.nodes if n.op_type == "Conv")
    assert conv.output_shapes == [[1, 4, 24, 96]]
    c = mlms_ir.analyze(m, dims={"x_d0": 1, "x_d2": 48, "x_d3": 192})
    assert c.totals.macs == b.totals.macs


def test_question_mark_dims_are_anonymous():
    text = CONVS.replace("float[N, 3, H, W] x", "float[N, 3, H, W] x")
    m = model(text, CONVS_INITS)
    for d in m.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "?"  # two dims written '?': two different dims
    a = mlms_ir.analyze(m, input_shapes=["x:1x3x48x192"])
    assert a.totals.complete and a.totals.symbolic is None


# --------------------------------------------------------------------------- data-dependent dims
NONZERO = """
nz (float[n] x) => (float[k, 8] y) {
    idx = NonZero(x)
    t = Transpose(idx)
    f = Cast<to = 1>(t)
    y = MatMul(f, w)
}
"""


def test_data_dependent_dim_is_a_named_bindable_symbol():
    m = model(NONZERO, {"w": np.ones((1, 8), np.float32)})
    a = mlms_ir.analyze(m)
    d = {x.name: x for x in a.dims}
    assert d["nonzero_n0"].kind == "data" and "NonZero" in d["nonzero_n0"].meaning
    mm = next(n for n in a.nodes if n.op_type == "MatMul")
    assert mm.symbolic["macs"] == "8*nonzero_n0"  # [k, 1] @ [1, 8]
    b = mlms_ir.analyze(m, dims={"n": 100, "nonzero_n0": 5})
    assert b.totals.macs == 40 and b.totals.symbolic is None
    with pytest.raises(ShapeBindingError, match="nonzero_n0"):
        mlms_ir.load(m, dims={"nonzer": 5})  # a typo names the dims there are


# --------------------------------------------------------------------------- control flow
BRANCHES = """
branches (float[s, 4] x, bool c) => (float[s, r] y) {
    y = If(c) <then_branch = then_g () => (float[s, 1000] yt) {
            yt = MatMul(x, w1)
        }, else_branch = else_g () => (float[s, s] ye) {
            xt = Transpose(x)
            ye = MatMul(x, xt)
        }>
}
"""


def test_if_whose_costlier_branch_depends_on_the_dims_counts_the_max():
    m = model(BRANCHES, {"w1": np.ones((4, 1000), np.float32)})
    a = mlms_ir.analyze(m)
    node = next(n for n in a.nodes if n.op_type == "If")
    s = sympy.Symbol("s", positive=True, integer=True)
    # then: s*4*1000 MACs; else: s*4*s: the else branch costs more once s > 1000
    assert sympy.sympify(node.symbolic["macs"], locals={"s": s}) == sympy.Max(4000 * s, 4 * s**2)
    assert "then_branch and else_branch" in node.note
    assert {x.attribute: x.multiplier for x in a.structure.subgraphs} == {"then_branch": 1, "else_branch": 1}
    small = mlms_ir.analyze(m, dims={"s": 10})
    assert small.totals.macs == 40_000  # the then branch
    big = mlms_ir.analyze(m, dims={"s": 2000})
    assert big.totals.macs == 4 * 2000 * 2000


def test_if_with_a_constant_condition_counts_its_branch_alone():
    text = BRANCHES.replace("float[s, 4] x, bool c", "float[s, 4] x").replace(
        "    y = If(c)", "    c = Constant<value = bool {0}>()\n    y = If(c)")
    a = mlms_ir.analyze(model(text, {"w1": np.ones((4, 1000), np.float32)}))
    node = next(n for n in a.nodes if n.op_type == "If")
    assert node.symbolic["macs"] == "4*s**2" and "else_branch taken" in node.note


NESTED = """
nested (float[s, 4] x, bool c, bool d) => (float[s, 8] y) {
    y = If(c) <then_branch = outer_then () => (float[s, 8] yo) {
            yo = If(d) <then_branch = inner_then () => (float[s, 8] yi) {
                    yi = MatMul(x, w8)
                }, else_branch = inner_else () => (float[s, 8] ye) {
                    h = MatMul(x, w16)
                    ye = MatMul(h, w168)
                }>
        }, else_branch = outer_else () => (float[s, 8] yz) {
            yz = MatMul(x, w8)
        }>
}
"""


def test_nested_if_gives_a_cost_per_branch():
    inits = {"w8": np.ones((4, 8), np.float32), "w16": np.ones((4, 16), np.float32), "w168": np.ones((16, 8), np.float32)}
    a = mlms_ir.analyze(model(NESTED, inits))
    ifs = [n for n in a.nodes if n.op_type == "If"]
    outer = next(n for n in ifs if n.parent is None)
    inner = next(n for n in ifs if n.parent is not None)
    assert inner.symbolic["macs"] == "192*s"  # inner else: 4*16 + 16*8 per row, dearer than 32
    assert outer.symbolic["macs"] == "192*s"
    assert_formulas_match(model(NESTED, inits), [{"s": 1}, {"s": 9}, {"s": 300}])


LOOP = """
loop (float[s, 4] x) => (float[4, 4] y) {
    shp = Shape(x)
    i0 = Constant<value = int64[1] {0}>()
    m1 = Gather<axis = 0>(shp, i0)
    m = Squeeze(m1, i0)
    cond = Constant<value = bool {1}>()
    y = Loop(m, cond, acc0) <body = body (int64 i, bool c_in, float[4, 4] acc) => (bool c_out, float[4, 4] acc_out) {
            c_out = Identity(c_in)
            acc_out = MatMul(acc, w)
        }>
}
"""


def test_loop_cost_is_the_body_times_a_trip_count_formula():
    inits = {"w": np.ones((4, 4), np.float32), "acc0": np.ones((4, 4), np.float32)}
    a = mlms_ir.analyze(model(LOOP, inits))
    loop = next(n for n in a.nodes if n.op_type == "Loop")
    assert loop.symbolic["macs"] == "64*s"  # trips = s (dim 0 of x), 4*4*4 MACs per iteration
    info = next(x for x in a.structure.subgraphs if x.owner == loop.id)
    assert info.multiplier is None and info.symbolic_multiplier == "s"
    assert mlms_ir.analyze(model(LOOP, inits), dims={"s": 7}).totals.macs == 7 * 64


# --------------------------------------------------------------------------- the JSON and the questions
def test_json_formulas_parse_and_every_symbol_is_listed():
    a = mlms_ir.analyze(model(TOKENS, TOKENS_INITS), device="h100-sxm")
    d = json.loads(a.to_json())
    assert d["schema_version"] == "1.2" and d["kind"] == "analysis"
    listed = {x["name"] for x in d["dims"]}
    strings = list(d["totals"]["symbolic"].values()) + [v for n in d["nodes"] if n["symbolic"] for v in n["symbolic"].values()]
    assert "roofline_s" in d["totals"]["symbolic"]
    for s in strings:
        e = sympy.sympify(s)  # sympy syntax, read back with no help
        assert {x.name for x in e.free_symbols} <= listed, s
    assert d["totals"]["macs"] is None and d["totals"]["params"] == 16 * 32 + 32  # never 0 for unknown


def test_solve_gives_the_largest_dim_that_fits():
    a = mlms_ir.analyze(model(TOKENS, TOKENS_INITS), dims={"batch": 8})
    sol = formulas.solve(a, "activation_bytes<=1MiB")
    assert sol.dim == "seq" and sol.value is not None and not sol.unbounded
    at = formulas.figures_at(a, {"seq": sol.value})["activation_bytes"]
    beyond = formulas.figures_at(a, {"seq": sol.value + 1})["activation_bytes"]
    assert at <= 2**20 < beyond
    assert sol.at_value == at and sol.beyond == beyond and sol.fixed == {"batch": 8}
    smallest = formulas.solve(a, "macs>=1G")
    assert formulas.figures_at(a, {"seq": smallest.value})["macs"] >= 1e9 > formulas.figures_at(a, {"seq": smallest.value - 1})["macs"]


def test_solve_and_sweep_refuse_what_they_cannot_answer():
    a = mlms_ir.analyze(model(TOKENS, TOKENS_INITS))
    with pytest.raises(FormulaError, match="batch, seq"):
        formulas.solve(a, "macs<=1G")  # two dims free
    with pytest.raises(FormulaError, match="unknown metric"):
        formulas.solve(a, "mac<=1G")
    with pytest.raises(FormulaError, match="unknown unit"):
        formulas.solve(a, "macs<=1 parsecs")
    with pytest.raises(FormulaError, match="no free dim 'len'"):
        formulas.sweep(a, "len", [1, 2], {"batch": 1})
    with pytest.raises(FormulaError, match="START:STOP"):
        formulas.parse_sweep("seq=64:8")


def test_sweep_tabulates_the_totals_along_a_dim():
    assert formulas.parse_sweep("seq=128:1000")[1] == [128, 256, 512, 1000]
    assert formulas.parse_sweep("seq=1:9:4")[1] == [1, 5, 9]
    a = mlms_ir.analyze(model(TOKENS, TOKENS_INITS), dims={"batch": 2})
    rows = formulas.sweep(a, "seq", [1, 600])
    for row in rows:
        bound = mlms_ir.analyze(model(TOKENS, TOKENS_INITS), dims={"batch": 2, "seq": row["seq"]})
        assert row["macs"] == bound.totals.macs and row["peak_activation_bytes"] == bound.totals.peak_activation_bytes


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args], capture_output=True, text=True, timeout=120)


def test_cli_prints_formulas_and_answers(tmp_path):
    p = tmp_path / "tokens.onnx"
    onnx.save(model(TOKENS, TOKENS_INITS), p)
    r = _cli("analyze", str(p), "--store", "none")
    assert r.returncode == 0, r.stderr
    assert "512·batch·seq" in r.stdout and "batch: dim 0 of input 'x'" in r.stdout
    r = _cli("analyze", str(p), "--store", "none", "--dims", "batch=8", "--solve", "activation_bytes<=1MiB")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("largest seq with activation_bytes <= 1.00 MiB") and "at batch=8" in r.stdout
    r = _cli("analyze", str(p), "--store", "none", "--dims", "batch=8", "--sweep-dim", "seq=1,64", "--format", "json")
    rows = json.loads(r.stdout)["sweep"]["rows"]
    assert [x["seq"] for x in rows] == [1, 64] and rows[1]["macs"] == 512 * 8 * 64
    r = _cli("analyze", str(p), "--store", "none", "--solve", "macs<=1G")
    assert r.returncode == 2 and r.stderr.startswith("mlms_ir: error: macs depends on batch, seq")


def test_bound_loop_trip_count_computed_from_shapes_is_a_number():
    inits = {"w": np.ones((4, 4), np.float32), "acc0": np.ones((4, 4), np.float32)}
    a = mlms_ir.analyze(model(LOOP, inits), dims={"s": 7})
    info = next(x for x in a.structure.subgraphs if x.owner_op == "Loop")
    assert info.multiplier == 7 and info.symbolic_multiplier is None and a.totals.complete


def test_html_report_carries_the_formulas_and_a_sweep():
    from mlms_ir.report.html import build_report_data

    g = mlms_ir.load(model(TOKENS, TOKENS_INITS), dims={"batch": 2})
    a = mlms_ir.analyze(g)
    data = build_report_data(a, g)
    assert data["formulas"]["macs"] == "1.02 K·seq" and [d["name"] for d in data["dims"]] == ["seq"]
    rows = data["sweep"]["rows"]
    assert data["sweep"]["dim"] == "seq" and [r["seq"] for r in rows][:3] == [1, 2, 4]
    assert rows[2]["macs"] == mlms_ir.analyze(model(TOKENS, TOKENS_INITS), dims={"batch": 2, "seq": 4}).totals.macs
    mm = next(n for n in data["nodes"] if n.get("op") == "MatMul")
    assert mm["macs"] is None and mm["formulas"]["macs"] == "1.02 K·seq"
    # two free dims: no default sweep; the one asked for is plotted
    both = mlms_ir.analyze(model(TOKENS, TOKENS_INITS))
    assert build_report_data(both, mlms_ir.load(model(TOKENS, TOKENS_INITS)))["sweep"] is None
    asked = formulas.sweep(both, "seq", [1, 8], {"batch": 1})
    assert build_report_data(both, g, sweep=("seq", asked))["sweep"]["rows"] == asked


def test_input_value_picks_the_branch_an_if_takes():
    text = BRANCHES.replace("float[s, 4] x, bool c", "float[s, 4] x, int64 sr").replace(
        "    y = If(c)", "    k = Constant<value = int64 {16000}>()\n    c = Equal(sr, k)\n    y = If(c)")
    m = model(text, {"w1": np.ones((4, 1000), np.float32)})
    s = sympy.Symbol("s", positive=True, integer=True)
    taken = mlms_ir.analyze(m, input_values={"sr": 16000})
    node = next(n for n in taken.nodes if n.op_type == "If")
    assert node.symbolic["macs"] == "4000*s" and "then_branch taken" in node.note
    other = mlms_ir.analyze(m, input_values="sr=8000", dims={"s": 3})
    assert other.totals.macs == 4 * 3 * 3 and other.bindings["input_values"] == {"sr": 8000}
    either = mlms_ir.analyze(m)
    assert sympy.sympify(next(n for n in either.nodes if n.op_type == "If").symbolic["macs"], locals={"s": s}) == sympy.Max(4000 * s, 4 * s**2)
    with pytest.raises(ShapeBindingError, match="no input 'rate'"):
        mlms_ir.load(m, input_values={"rate": 1})
    with pytest.raises(ShapeBindingError, match="not a scalar"):
        mlms_ir.load(m, input_values={"x": 1})
    with pytest.raises(ShapeBindingError, match="number or true/false"):
        mlms_ir.load(m, input_values="sr=fast")


def test_questions_take_the_models_own_dim_names():
    a = mlms_ir.analyze(model(CONVS, CONVS_INITS))  # 'N' is written N_ in the formulas
    rows = formulas.sweep(a, "N", [1, 3], {"H": 8, "W": 8})
    bound = mlms_ir.analyze(model(CONVS, CONVS_INITS), dims={"N": 3, "H": 8, "W": 8})
    assert rows[1]["N_"] == 3 and rows[1]["macs"] == bound.totals.macs
    assert formulas.solve(a, "macs<=1M", {"H": 8, "W": 8}).dim == "N_"


def test_html_graph_can_be_coloured_by_formulas_at_the_sweeps_end():
    from mlms_ir.report.html import build_report_data

    g = mlms_ir.load(model(TOKENS, TOKENS_INITS), dims={"batch": 2})
    data = build_report_data(mlms_ir.analyze(g), g)
    assert data["metrics"][0] == ["macs_at", "MACs at seq=4,096"]
    mm = next(n for n in data["nodes"] if n.get("op") == "MatMul")
    assert mm["macs_at"] == 1024 * 4096  # 512·batch·seq at batch 2, seq 4096
    shape = next(n for n in data["nodes"] if n.get("op") == "Shape")
    assert shape["macs_at"] == 0  # a number stays the number


DATA_OPS = """
data_ops (float[n] x, int64[1] k, int64 lim) => (float[t] top, float[u] uniq, float[r] rng) {
    top, idx = TopK<axis = 0>(x, k)
    uniq = Unique(x)
    z = Constant<value = int64 {0}>()
    one = Constant<value = int64 {1}>()
    ri = Range(z, lim, one)
    rng = Cast<to = 1>(ri)
}
"""


@pytest.mark.parametrize("op, prefix, meaning", [("TopK", "topk_", "k of TopK"), ("Unique", "unique_", "distinct values"),
                                                 ("Range", "range_", "elements Range makes")])
def test_dims_set_by_data_are_named_for_what_they_are(op, prefix, meaning):
    a = mlms_ir.analyze(model(DATA_OPS))
    node = next(n for n in a.nodes if n.op_type == op)
    (dim,) = [d for d in a.dims if d.origin == node.id]
    assert dim.name == prefix + node.id and dim.kind == "data" and meaning in dim.meaning
    shape = node.output_shapes[0]
    assert dim.name in shape


SCAN = """
scan (float[s, 4] x) => (float[4] y) {
    y = Scan<num_scan_inputs = 1, body = step (float[4] h, float[4] xt) => (float[4] h2) {
            p = MatMul(xt, w)
            h2 = Add(h, p)
        }>(h0, x)
}
"""


def test_scan_cost_is_the_body_times_the_scanned_length():
    a = mlms_ir.analyze(model(SCAN, {"w": np.ones((4, 4), np.float32), "h0": np.zeros(4, np.float32)}))
    scan = next(n for n in a.nodes if n.op_type == "Scan")
    assert scan.symbolic["macs"] == "16*s"  # 4x4 per step, s steps
    assert next(x for x in a.structure.subgraphs if x.owner == scan.id).symbolic_multiplier == "s"


LOGIC = """
logic (float[s, 4] x) => (float[s, h] y) {
    shp = Shape(x)
    i1 = Constant<value = int64[1] {1}>()
    four = Gather<axis = 0>(shp, i1)
    f = Constant<value = int64[1] {4}>()
    eq = Equal(four, f)
    ne = Not(eq)
    both = And(eq, ne)
    either = Or(eq, ne)
    c1 = Constant<value = int64[1] {1}>()
    c2 = Constant<value = int64[1] {2}>()
    pick = Where(both, c1, c2)
    sel = Where(either, pick, c1)
    cols = Concat<axis = 0>(c1, sel)
    ws = Reshape(w, cols)
    xt = Slice(x, i1, c2, i1)
    y = MatMul(xt, ws)
}
"""


def test_and_or_of_shape_conditions_are_values():
    # ONNX's function expansions (Attention) pick dims with Where(And(...)): the value is known
    a = mlms_ir.analyze(model(LOGIC, {"w": np.ones(2, np.float32)}))
    mm = next(n for n in a.nodes if n.op_type == "MatMul")
    assert mm.output_shapes == [["s", 2]] and not [d for d in a.dims if d.kind == "unknown"]


#: ONNX's node cases are checked in this many shards (ids ``shardN``: each a unit of its own for
#: pytest-xdist's workers, see conftest.py).
SHARDS = 4


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SHARDS), ids=[f"shard{i}" for i in range(SHARDS)])
def test_onnx_backend_cases_with_a_symbolic_dim_equal_their_concrete_analysis(shard):
    """ONNX's own node test cases (not written here): with each input's leading dim made a symbol,
    the formulas evaluated at the case's sizes equal the analysis of the case as it is."""
    from onnx.backend.test.case.node import collect_testcases

    from mlms_ir.errors import MlmsIrError
    from mlms_ir.ir.expr import value_at
    from mlms_ir.report.formula import parse

    checked, wrong = 0, []
    for case in collect_testcases()[shard::SHARDS]:
        m = case.model
        try:
            concrete = mlms_ir.analyze(m)
        except MlmsIrError:
            continue
        if concrete.totals.symbolic or not concrete.totals.complete:
            continue
        sym = onnx.ModelProto()
        sym.CopyFrom(m)
        at = {}
        for vi in sym.graph.input:
            dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
            if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 1:
                at[f"s_{len(at)}"] = dims[0].dim_value
                dims[0].Clear()
                dims[0].dim_param = f"s_{len(at) - 1}"
        if not at:
            continue
        try:
            a = mlms_ir.analyze(sym)
        except MlmsIrError:
            continue  # a case that a free leading dim makes invalid (fixed-size attributes)
        checked += 1
        for key in H.TOTAL_KEYS:
            v = getattr(a.totals, key)
            if v is None and a.totals.symbolic and key in a.totals.symbolic:
                f = parse(a.totals.symbolic[key])
                free = {s.name for s in f.free_symbols} - set(at)
                v = f"free dims {sorted(free)}" if free else value_at(f, at)
            if v != getattr(concrete.totals, key):
                wrong.append((case.name, key, v, getattr(concrete.totals, key)))
                break
    assert checked > 1300 // SHARDS and wrong == [], (checked, wrong[:5])


def test_reshape_minus_one_that_no_whole_size_fits_is_unknown():
    """Reshape [2,3,4,5] (120 elements) to [7, -1]: no whole -1 exists (ONNX rejects it); the rule
    leaves the output unknown instead of rounding 120 // 7 down to 17."""
    from mlms_ir.ir.symbolic_rules import _reshape

    class Ctx:
        def __init__(self, x, target):
            self.x, self.target = x, target

        def shape(self, i):
            return self.x

        def ints(self, i):
            return self.target

        def attr(self, name, default=None):
            return default

    assert _reshape(Ctx((2, 3, 4, 5), [7, -1])) == [None]
    assert _reshape(Ctx((2, 3, 4, 5), [6, -1])) == [(6, 20)]


def test_maximum_terms_compares_rational_coefficients_exactly(recwarn):
    """The peak's domination test on Python numbers (ids for terms, ints and Fractions for
    sympy's coefficients) keeps what sympy's own arithmetic kept; float shape values dividing
    0 by 0 give NaN without a numpy warning."""
    import numpy as np
    import sympy as sp

    from mlms_ir.ir.expr import maximum_terms
    from mlms_ir.ir.symbolic_rules import _vec

    b, s = sp.symbols("batch seq", positive=True, integer=True)
    one = sp.Integer(1)
    values = [{b: sp.Rational(5, 2), one: sp.Integer(1)},  # dominates the next one
              {b: sp.Integer(2), one: sp.Integer(1)},
              {b: sp.Rational(1, 2)},  # dominated by the first
              {b * s: sp.Integer(1)},  # incomparable with the first
              {b: sp.Integer(1), one: sp.Integer(5)},  # b + 5 against 5/2 b + 1: no
              {b * s: sp.Rational(3, 4), b: sp.Rational(1, 4)}]  # b·s covers b: 3/4 b·s + 1/4 b <= b·s
    assert maximum_terms(values) == [0, 3, 4]
    out = _vec(lambda x, y: x / y, np.array([np.float32(0), np.float32(1)], dtype=object),
               np.array([np.float32(0), np.float32(0)], dtype=object))
    assert np.isnan(out[0]) and np.isinf(out[1])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
