"""What the analysis prints must be true: names from a model are inert in every format, huge or
many dims neither crash nor hang, attributes out of an op's domain never give negative figures,
unknown totals never read as 0, constant trip counts are used as ONNX defines them, and huge
figures stay readable."""

from __future__ import annotations

import csv
import io
import itertools
import json
import time

import onnx
import pytest
from onnx import TensorProto, helper

import mlms_ir
from mlms_ir.errors import InvalidModelError, MlmsIrError
from mlms_ir.ir.graph import Graph
from mlms_ir.passes.registry import OpContext, entries
from mlms_ir.report.formats import to_csv, to_json, to_markdown
from mlms_ir.report.text import human_bytes, human_count, render_text, sig

HOSTILE = "=cmd|' /C calc'!A0 ![t](http://evil.example/p.png) [click](javascript:alert(1)) \u202egnp.exe"


def _model(nodes, inputs, outputs, inits=(), domains=()) -> onnx.ModelProto:
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains])
    m.ir_version = 8
    return m


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _relu(name="", shape=(2,)):
    return _model([helper.make_node("Relu", ["x"], ["y"], name=name)], [_vi("x", shape)], [_vi("y", shape)])


def _table(a) -> str:
    from rich.console import Console

    console = Console(width=400, file=io.StringIO(), color_system=None)
    render_text(a, console=console)
    return console.file.getvalue()


# ---------------------------------------------------------------------------------------- 1: md and csv


def test_markdown_shows_model_names_as_inert_text():
    md = to_markdown(mlms_ir.analyze(_relu(HOSTILE)))
    row = next(line for line in md.splitlines() if line.startswith("| n0 |"))
    assert "\u202e" not in md and "\\\\u202egnp.exe" in row  # the override shown as \u202e (its backslash escaped)
    assert "![" not in row and "](" not in row.replace("\\](", "")  # no image, no link: the brackets are escaped
    assert "!\\[t\\](http://evil.example/p.png)" in row and "\\[click\\](javascript:alert(1))" in row
    assert "=cmd\\|" in row and row.count(" | ") == 7  # the pipe in the name does not split the cell


def test_markdown_escapes_html_emphasis_and_code():
    md = to_markdown(mlms_ir.analyze(_relu("<script>x</script> *a* _b_ `c` ~~d~~ &#8238; line\nbreak")))
    row = next(line for line in md.splitlines() if line.startswith("| n0 |"))
    assert "<script>" not in row and "&lt;script&gt;" in row and "&amp;#8238;" in row
    assert "\\*a\\*" in row and "\\_b\\_" in row and "\\`c\\`" in row and "\\~\\~d\\~\\~" in row
    assert "\n" not in row and "line\\\\u000abreak" in row


def test_csv_text_cells_from_the_model_are_no_formulas():
    m = _model([helper.make_node("Relu", ["x"], ["y"], name=HOSTILE),
                helper.make_node("@SUM(A1)", ["y"], ["z"], name="+1", domain="-acme")],
               [_vi("x", [2])], [_vi("z", [2])], domains=["-acme"])
    rows = list(csv.DictReader(io.StringIO(to_csv(mlms_ir.analyze(m, lenient=True)))))
    assert rows[0]["name"] == "'" + HOSTILE.replace("\u202e", "\\u202e")  # OWASP: a leading ' makes the cell text
    assert rows[1]["name"] == "'+1" and rows[1]["op_type"] == "'@SUM(A1)" and rows[1]["domain"] == "'-acme"
    assert rows[0]["flops"] == "2" and rows[0]["op_type"] == "Relu"  # numbers and our own words unchanged
    for name in ("-x", "@x", "+x"):
        rows = list(csv.DictReader(io.StringIO(to_csv(mlms_ir.analyze(_relu(name))), newline="")))
        assert rows[0]["name"] == "'" + name
    for name, cell in (("\tx", "\\u0009x"), ("\rx", "\\u000dx"), ("a\nb", "a\\u000ab"), ("\u202egnp.exe", "\\u202egnp.exe")):
        out = to_csv(mlms_ir.analyze(_relu(name)))
        assert out.count("\n") == 2 and "\r" not in out  # one header, one row: no control ends a row early
        assert list(csv.DictReader(io.StringIO(out, newline="")))[0]["name"] == cell


def test_csv_keeps_negative_numbers_as_numbers():
    from mlms_ir.report.formats import csv_cell

    assert csv_cell("abc") == "abc" and csv_cell("=1+1") == "'=1+1"
    a = mlms_ir.analyze(_relu())
    a.nodes[0].intensity = -0.5  # a number column is never prefixed
    assert list(csv.DictReader(io.StringIO(to_csv(a))))[0]["intensity"] == "-0.5"


# ---------------------------------------------------------------------------------------- 2: many and huge dims


@pytest.mark.parametrize("shape", [[f"d{i}" for i in range(103)], [2**62] * 17], ids=["103-symbolic-dims", "17-dims-of-2**62"])
def test_many_or_huge_dims_analyse_and_render(shape):
    a = mlms_ir.analyze(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", shape)], [_vi("y", None)]))
    text = _table(a) + to_markdown(a) + to_csv(a)
    json.loads(to_json(a))
    if isinstance(shape[0], int):
        assert a.totals.flops == 2**1054
        assert "FLOPs              1.93e317" in text and "1.93e317" in to_markdown(a)


def test_many_symbolic_dims_stay_fast():
    """A product of 400 dims built one factor at a time (as a tensor's size is): sympy's
    assumptions took ~1 s to prove it non-negative (7 s of a 1,000-dim Relu's 10 s came from here and
    from building the product); proved factor by factor now."""
    import math

    from mlms_ir.ir.expr import dominates, sympy

    sp = sympy()
    prod = math.prod(sp.Symbol(f"q{i}", integer=True, positive=True) for i in range(400))
    t = time.perf_counter()
    assert dominates(2 * prod + 1, prod)
    assert time.perf_counter() - t < 0.3


def test_order_value_never_overflows():
    from mlms_ir.ir.expr import order_value, sympy

    big = 2**1054
    assert order_value(big) == big and -order_value(big) < -1e308  # sorts exactly, no float
    x = sympy().Symbol("x", integer=True, positive=True)
    assert order_value(x**200) > order_value(x**199) > 1e300


# ---------------------------------------------------------------------------------------- 3: attributes out of domain


def _ms(op, attrs, shapes, out_shape):
    ins = [f"i{k}" for k in range(len(shapes))]
    node = helper.make_node(op, ins, ["y"], domain="com.microsoft", **attrs)
    return _model([node], [_vi(n, s) for n, s in zip(ins, shapes)], [_vi("y", out_shape)], domains=["com.microsoft"])


@pytest.mark.parametrize("model", [
    _ms("Attention", {"num_heads": 2, "qkv_hidden_sizes": [-1, -1, -1]}, [[1, 2, 4], [4, 12]], [1, 2, 4]),
    _ms("Attention", {"num_heads": -2**63}, [[1, 2, 4], [4, 12]], [1, 2, 4]),
    _ms("MultiHeadAttention", {"num_heads": -2**63}, [[1, 2, 4], [1, 2, 4], [1, 2, 4]], [1, 2, 4]),
    _ms("MatMulNBits", {"K": -2**63, "N": 4, "bits": 4, "block_size": 16}, [[1, 4], [4, 1, 8]], [1, 4]),
    _model([helper.make_node("LRN", ["x"], ["y"], size=-2**31)], [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 3, 4, 4])]),
    _model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=-1)],
           [_vi("x", [2, 1, 3]), _vi("w", [1, 16, 3]), _vi("r", [1, 16, 4])], [_vi("y", [2, 1, 1, 4])]),
], ids=["ms-attention-qkv-negative", "ms-attention-heads-min", "mha-heads-min", "matmulnbits-k-min", "lrn-size-negative",
        "lstm-hidden-negative"])
def test_attributes_out_of_domain_are_refused(model):
    with pytest.raises(InvalidModelError, match=r"cannot count node .*: its attributes or shapes are inconsistent .*must"):
        mlms_ir.analyze(model, lenient=True)


#: What the cost pass turns into "cannot count node X: its attributes ... are inconsistent".
_REFUSED = (ArithmeticError, IndexError, KeyError, TypeError, ValueError, AttributeError, MlmsIrError)
_BAD_INTS = (0, -1, -2**31, -2**63, 2**62)


def _ctx(op: str, domain: str, n_in: int, rank: int, attrs: dict) -> OpContext:
    """A node of ``op`` with ``n_in`` float inputs and one output, every tensor [4]*rank."""
    shape = [4] * rank
    node = helper.make_node(op, [f"i{k}" for k in range(n_in)], ["o0"], domain=domain or None, **attrs)
    m = helper.make_model(helper.make_graph([node], "g", [_vi(f"i{k}", shape) for k in range(n_in)], [_vi("o0", shape)]),
                          opset_imports=[helper.make_opsetid("", 21)] + ([helper.make_opsetid(domain, 1)] if domain else []))
    g = Graph(m)
    return OpContext(g.nodes[0], g)


def test_no_formula_gives_negative_figures_for_attributes_out_of_domain(monkeypatch):
    """Every registered formula, on every layout of inputs it can count, with every integer
    attribute it reads (or its schema declares) set to 0, negative and huge values: it refuses
    (an error the cost pass reports) or gives non-negative MACs, FLOPs and bytes."""
    reads: dict[str, object] = {}
    attr, int_attr, ints_attr = OpContext.attr, OpContext.int_attr, OpContext.ints_attr

    def rec_attr(self, name, default=None):
        reads.setdefault(name, default)
        return attr(self, name, default)

    def rec_int(self, name, default, *, least=1):
        reads.setdefault(name, default)
        return int_attr(self, name, default, least=least)

    def rec_ints(self, name, *, least=1):
        reads.setdefault(name, [])
        return ints_attr(self, name, least=least)

    monkeypatch.setattr(OpContext, "attr", rec_attr)
    monkeypatch.setattr(OpContext, "int_attr", rec_int)
    monkeypatch.setattr(OpContext, "ints_attr", rec_ints)
    formulas = [e for e in entries() if e.fn is not None]
    covered, bad = set(), []
    for e in formulas:
        layouts = {}
        for rank, n_in in itertools.product((4, 3, 2, 5, 1), range(1, 10)):
            reads.clear()
            try:
                e.fn(_ctx(e.op_type, e.domain, n_in, rank, {}))
            except Exception:  # noqa: BLE001 - not a layout this op counts
                continue
            layouts.setdefault(rank, (n_in, dict(reads)))
        if not layouts:
            continue
        covered.add((e.domain, e.op_type))
        schema_ints = {}
        try:
            schema = onnx.defs.get_schema(e.op_type, 21, e.domain)
            schema_ints = {n: ([] if a.type == onnx.defs.OpSchema.AttrType.INTS else 0) for n, a in schema.attributes.items()
                           if a.type in (onnx.defs.OpSchema.AttrType.INT, onnx.defs.OpSchema.AttrType.INTS)}
        except onnx.defs.SchemaError:
            pass
        for rank, (n_in, read) in layouts.items():
            for name, default in {**schema_ints, **read}.items():
                if not (default is None or isinstance(default, (int, list))) or isinstance(default, bool):
                    continue  # strings, floats: not integer attributes
                shapes = [False, True] if default is None else [isinstance(default, list)]
                for v, as_list in itertools.product(_BAD_INTS, shapes):
                    try:
                        c = e.fn(_ctx(e.op_type, e.domain, n_in, rank, {name: [v, v] if as_list else v}))
                    except _REFUSED:
                        continue
                    except Exception as exc:  # noqa: BLE001 - anything else escapes the cost pass as a traceback
                        bad.append(f"{e.domain}::{e.op_type} {name}={v}: {exc!r}")
                        continue
                    for f in ("macs", "flops", "bytes_read", "bytes_written"):
                        x = getattr(c, f)
                        if x is not None and x < 0:
                            bad.append(f"{e.domain}::{e.op_type} {name}={v} (rank {rank}): {f} = {x}")
    assert not bad, "\n".join(bad)
    assert len(covered) >= 0.95 * len(formulas)
    for must in [("com.microsoft", "Attention"), ("com.microsoft", "MultiHeadAttention"), ("com.microsoft", "MatMulNBits"),
                 ("", "LRN"), ("", "LSTM"), ("", "MaxPool"), ("com.microsoft", "GroupQueryAttention")]:
        assert must in covered


# ---------------------------------------------------------------------------------------- 4: unknown totals


def test_unknown_totals_are_never_zero():
    a = mlms_ir.analyze(_model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", None)], [_vi("y", None)]))
    d = json.loads(to_json(a))["totals"]
    for key in ("macs", "flops", "bytes_read", "bytes_written", "activation_bytes", "peak_activation_bytes",
                "input_bytes", "output_bytes"):
        assert d[key] is None, key
    assert d["complete"] is False and d["unresolved_nodes"] == 1 and d["counted_nodes"] == 0
    assert json.loads(to_json(a))["op_types"][0]["macs"] is None
    text, md = _table(a), to_markdown(a)
    for out in (text, md):
        assert "unknown (1 node not counted)" in out and "unknown (1 size unknown) / unknown (1 size unknown)" in out
        assert " 0 (0)" not in out.replace("params             0 (0)", "").replace("| params | 0 (0) |", "")
        assert "0 B /" not in out


def test_partial_totals_are_marked_lower_bounds():
    """A counted Relu beside a MatMul whose input has no shape: FLOPs are a lower bound (shown
    with ≥), MACs counted nothing and are unknown."""
    m = _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["a", "b"], ["y"])],
               [_vi("x", [4]), _vi("a", None), _vi("b", [4, 5])], [_vi("r", [4]), _vi("y", None)])
    a = mlms_ir.analyze(m)
    assert a.totals.flops == 4 and a.totals.macs is None and a.totals.complete is False
    text = _table(a)
    assert "≥ 4 (4) (1 node not counted)" in text and "unknown (1 node not counted)" in text
    assert "≥ 96 B (1 size unknown) / ≥ 16 B (1 size unknown)" in text


def test_complete_totals_are_unchanged():
    a = mlms_ir.analyze(_relu())
    assert a.totals.macs == 0 and a.totals.flops == 2 and a.totals.complete
    text = _table(a)
    assert "MACs               0 (0)" in text and "≥" not in text and "unknown" not in text


# ---------------------------------------------------------------------------------------- 5: Loop trip counts


def _loop(trips: int) -> onnx.ModelProto:
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["co"]), helper.make_node("Relu", ["v"], ["vo"])], "body",
                             [_vi("i", [], TensorProto.INT64), _vi("c", [], TensorProto.BOOL), _vi("v", [32])],
                             [_vi("co", [], TensorProto.BOOL), _vi("vo", [32])])
    nodes = [helper.make_node("Constant", [], ["m"], value=helper.make_tensor("m", TensorProto.INT64, [], [trips])),
             helper.make_node("Loop", ["m", "", "x"], ["y"], body=body)]
    return _model(nodes, [_vi("x", [32])], [_vi("y", [32])])


@pytest.mark.parametrize("trips, flops", [(2**62, 32 * 2**62), (-5, 0), (0, 0), (3, 96), (2**63 - 1, 32)])
def test_constant_trip_counts(trips, flops):
    a = mlms_ir.analyze(_loop(trips))
    assert a.totals.flops == flops
    sub = a.structure.subgraphs[0]
    if trips == 2**63 - 1:  # the exporters' "no limit": per iteration, and said so
        assert sub.multiplier is None and "no limit" in sub.note and not a.totals.complete
    else:
        assert sub.multiplier == max(trips, 0) and a.totals.complete
        assert not any("trip count unknown" in w for w in a.warnings)
    if trips < 0:
        assert "never runs" in sub.note


# ---------------------------------------------------------------------------------------- 6: huge numbers


@pytest.mark.parametrize("value, text", [
    (85100000000000000000 * 10**18, "8.51e37"), (2**1054, "1.93e317"), (10**21, "1e21"), (999 * 10**18, "999 E"),
    (4_089_184_256, "4.09 G"), (999, "999"), (0, "0"),
])
def test_counts_switch_to_scientific_beyond_the_largest_prefix(value, text):
    assert human_count(value) == text


def test_bytes_and_ratios_switch_to_scientific():
    assert human_bytes(618970019642690137449562112 * 2**40) == "6.81e38 B"
    assert human_bytes(2**55) == "32.00 PiB" and human_bytes(1536) == "1.50 KiB" and human_bytes(512) == "512 B"
    assert sig(-559000000000000000.0) == "-5.59e17" and sig(0.0123456) == "0.0123" and sig(999.6) == "1000"
    assert sig(2**1054) == "1.93e317"
    for s in (human_count(2**1054), human_bytes(2**1054), sig(2**1054), human_count(-(10**40))):
        assert not any(run.isdigit() and len(run) > 9 for run in s.replace(".", " ").replace("e", " ").split())
