"""Divergence analysis: a backend that is wrong at one node is blamed at exactly that node."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.backends.base import model_source
from mlms_ir.backends.ort import OrtBackend, OrtSession
from mlms_ir.backends.reference import ReferenceBackend, ReferenceSession
from mlms_ir.comparator import tensor_diff
from mlms_ir.divergence import diverge
from mlms_ir.zoo import builtin_path

from test_backends import conv_net


class PerturbedOrt(OrtBackend):
    """ORT, except that the node named ``target`` adds ``delta`` to its output (wherever it runs:
    in the whole model or alone), or turns it into NaN."""

    name = "perturbed"

    def __init__(self, target: str, delta: float = 0.5, nan: bool = False) -> None:
        self.target, self.delta, self.nan = target, delta, nan

    def _prepare_impl(self, graph, device, **options):
        src = model_source(graph)
        m = onnx.load(src) if isinstance(src, str) else onnx.load_model_from_string(src)
        for i, n in enumerate(list(m.graph.node)):
            if n.name == self.target:
                out = n.output[0]
                n.output[0] = out + "__raw"
                c = helper.make_tensor("delta__c", TensorProto.FLOAT, [], [float("nan") if self.nan else self.delta])
                m.graph.node.insert(i + 1, helper.make_node("Constant", [], ["delta__v"], value=c))
                m.graph.node.insert(i + 2, helper.make_node("Add", [out + "__raw", "delta__v"], [out]))
                break
        return OrtSession(mlms_ir.load(m, input_shapes={k: list(graph.tensors[k].shape) for k in graph.input_names}), device, **options)


@pytest.fixture
def perturbed(monkeypatch):
    def install(target: str, **kw):
        monkeypatch.setitem(registry._cache, "perturbed", PerturbedOrt(target, **kw))
        monkeypatch.setitem(registry.BUILTIN, "perturbed", "tests:unused")

    return install


def test_tensor_metrics():
    ref = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    d = tensor_diff("t", ref, ref + np.array([0, 0, 0, 0.5], np.float32), atol=1e-5, rtol=1e-3)
    assert d.max_abs == pytest.approx(0.5) and d.max_rel == pytest.approx(0.125)
    assert d.mean_abs == pytest.approx(0.125) and d.rmse == pytest.approx(0.25)
    assert d.outside_share == 0.25 and d.exceeds
    assert d.snr_db == pytest.approx(10 * np.log10(30 / 0.25))
    assert 0.99 < d.cosine < 1.0
    same = tensor_diff("t", ref, ref.copy())
    assert not same.exceeds and same.snr_db is None and same.cosine == pytest.approx(1.0)
    nan = tensor_diff("t", ref, np.array([1, np.nan, 3, 4], np.float32))
    assert nan.nan_test == 1 and nan.exceeds
    assert tensor_diff("t", ref, ref[:2]).exceeds


def test_healthy_backend_shows_nothing():
    r = diverge(builtin_path(), "ort", "reference", batch=2)
    assert r.first_divergent is None and r.first_nan is None
    assert r.compared_tensors == 11 and not r.missing_tensors
    assert all(not n.exceeds for n in r.nodes)
    assert r.outputs[0].max_abs < 1e-4


def test_the_wrong_node_is_blamed_not_its_descendants(perturbed):
    perturbed("/features/conv2/Conv")
    r = diverge(builtin_path(), "perturbed", "reference", batch=2)
    assert r.first_divergent["name"] == "/features/conv2/Conv"
    exceeding = [n.name for n in r.nodes if n.exceeds]
    assert exceeding[0] == "/features/conv2/Conv" and len(exceeding) > 3  # the error propagates...
    top = r.top_introduced[0]
    assert top["name"] == "/features/conv2/Conv" and top["introduced_max_abs"] == pytest.approx(0.5, rel=1e-3)
    others = [n for n in r.nodes if n.introduced_max_abs is not None and n.name != "/features/conv2/Conv"]
    assert others and all(n.introduced_max_abs < 1e-3 for n in others)  # ...but is introduced at one node


def test_nan_mid_graph_is_located(perturbed):
    perturbed("/features/relu2/Relu", nan=True)
    r = diverge(builtin_path(), "perturbed", "reference", batch=1)
    assert r.first_nan["name"] == "/features/relu2/Relu"
    assert r.first_divergent["name"] == "/features/relu2/Relu"


def test_streaming_in_segments_gives_the_same_result(perturbed):
    perturbed("/conv1/Conv", delta=0.25)
    kw = dict(batch=1, introduced="all", options={"opt": "none"})
    full = diverge(conv_net(), "perturbed", "reference", **kw)
    small = diverge(conv_net(), "perturbed", "reference", memory_budget_bytes=20_000, **kw)
    assert full.segments == 1 and small.segments > 3
    assert [n.name for n in full.nodes] == [n.name for n in small.nodes]
    np.testing.assert_allclose([n.max_abs for n in full.nodes], [n.max_abs for n in small.nodes], rtol=1e-5, atol=1e-7)
    # nodes re-run alone as each segment is compared: the same introduced errors
    np.testing.assert_allclose([n.introduced_max_abs for n in full.nodes], [n.introduced_max_abs for n in small.nodes],
                               rtol=1e-5, atol=1e-7)
    assert full.top_introduced[0]["name"] == small.top_introduced[0]["name"] == "/conv1/Conv"
    assert full.first_divergent["name"] == small.first_divergent["name"] == "/conv1/Conv"
    assert [o.max_abs for o in full.outputs] == pytest.approx([o.max_abs for o in small.outputs], rel=1e-5)
    assert not small.missing_tensors and small.compared_tensors == full.compared_tensors


def test_segments_fit_the_budget_and_cut_only_where_tensors_can_cross():
    from mlms_ir.divergence import _reads, plan_segments

    g = mlms_ir.load(conv_net(), batch=1)
    assert plan_segments(g, 1 << 30) == [[n.id for n in g.nodes]]
    segs = plan_segments(g, 10_000)
    assert [i for s in segs for i in s] == [n.id for n in g.nodes] and len(segs) > 3
    for s in segs:  # activations + weights of each segment fit, unless it is one node too large alone
        reads = dict.fromkeys(x for i in s for x in _reads(g.node(i).proto))
        cost = sum(g.tensors[o].nbytes for i in s for o in g.node(i).proto.output)
        cost += sum(g.tensors[x].nbytes for x in reads if g.tensors[x].kind == "initializer")
        assert cost <= 10_000 or len(s) == 1
    # the pool reads the 64 KiB ReLU output carried across the cut before it: alone; then
    # flatten and fc (168 B of activations, 680 B of weights) fit together
    assert segs[-2:] == [["n6"], ["n7", "n8"]]


def test_streaming_through_an_if_that_reads_outer_tensors(perturbed):
    """A branch reading a tensor from an earlier segment gets it as an input of its segment."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    branch = lambda name, op: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["a", "b"], [f"{name}_out"], name=f"{name}_op")], name, [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 64])])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu_a"), helper.make_node("Sigmoid", ["a"], ["b"], name="sig_b"),
             helper.make_node("Tanh", ["b"], ["c"], name="tanh_c"),
             helper.make_node("ReduceSum", ["c"], ["s"], name="sum", keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"], name="cond"),
             helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch("then", "Add"), else_branch=branch("else", "Mul"))]
    g = helper.make_graph(nodes, "g", [x], [y], [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    perturbed("sig_b", delta=0.5)
    full = diverge(m, "perturbed", "reference", options={"opt": "none"})
    small = diverge(m, "perturbed", "reference", options={"opt": "none"}, memory_budget_bytes=600)
    assert small.segments > 2
    assert full.first_divergent["name"] == small.first_divergent["name"] == "sig_b"
    assert full.top_introduced[0]["name"] == small.top_introduced[0]["name"] == "sig_b"
    by_name = {n.name: n for n in small.nodes}  # the If, re-run alone with its outer reads as inputs
    assert by_name["if"].exceeds and by_name["if"].introduced_max_abs is not None and by_name["if"].introduced_max_abs < 1e-5
    assert [n.max_abs for n in full.nodes] == pytest.approx([n.max_abs for n in small.nodes], rel=1e-5)


def test_cli_diverge_json(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "diverge", "--backends", "ort", "--batch", "1", "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    (rep,) = d["reports"]
    assert rep["first_divergent"] is None and rep["backend"] == "ort" and rep["reference"] == "reference"
    assert {"id", "name", "op_type", "max_abs", "max_rel", "cosine", "introduced_max_abs"} <= set(rep["nodes"][0])


@pytest.mark.slow
def test_cli_memory_budget_streams_and_rejects_nonsense():
    base = [sys.executable, "-m", "mlms_ir", "diverge", "--backends", "ort", "--batch", "2"]
    r = subprocess.run(base + ["--budget-mib", "0.005", "--format", "json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (rep,) = json.loads(r.stdout)["reports"]
    assert rep["segments"] == 11 and rep["compared_tensors"] == 11 and rep["first_divergent"] is None
    for value in ("-3", "inf"):
        bad = subprocess.run(base + ["--budget-mib", value], capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
        assert bad.stderr.strip() == f"mlms_ir: error: --budget-mib must be a positive number of MiB, not '{value}'"
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "diverge", "-m", str(builtin_path()), "--batch", "1", "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr  # -m stays short for --model


def test_reduced_precision_is_never_streamed():
    """fp16 converts the whole model: cutting it first would add casts at every cut."""
    whole = diverge(builtin_path(), "ort", "reference", batch=2, precision="fp16", introduced="none")
    small = diverge(builtin_path(), "ort", "reference", batch=2, precision="fp16", introduced="none", memory_budget_bytes=2_000)
    assert small.segments == whole.segments == 1
    assert [n.max_abs for n in small.nodes] == [n.max_abs for n in whole.nodes]


def test_streaming_keeps_outputs_computed_from_weights_alone(perturbed):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Sigmoid", ["a"], ["b"], name="sig"),
             helper.make_node("Neg", ["w"], ["wd"], name="neg_w"), helper.make_node("Tanh", ["b"], ["y"], name="tanh")]
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64]),
                                            helper.make_tensor_value_info("wd", TensorProto.FLOAT, [4])],
                          [helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    perturbed("sig", delta=0.5)
    whole = diverge(m, "perturbed", "reference", introduced="none", options={"opt": "none"})
    small = diverge(m, "perturbed", "reference", introduced="none", options={"opt": "none"}, memory_budget_bytes=64)
    assert small.segments > 1
    assert [o.tensor for o in small.outputs] == [o.tensor for o in whole.outputs] == ["y", "wd"]


def test_fp16_precision_blames_arithmetic_not_rounding_or_data_movement():
    r = diverge(builtin_path(), "ort", "reference", batch=2, precision="fp16", introduced="all")
    assert (r.precision, r.atol, r.rtol) == ("fp16", 1e-3, 1e-2)
    by_op = {}
    for n in r.nodes:
        by_op.setdefault(n.op_type, []).append(n)
    # data movement and Relu/MaxPool are exact on rounded inputs: they introduce nothing
    for op in ("Relu", "MaxPool", "Flatten"):
        assert all(n.introduced_max_abs == 0 for n in by_op[op]), op
    # accumulating ops lose precision in float16
    assert any((n.introduced_max_abs or 0) > 0 for n in by_op["Conv"] + by_op["Gemm"])
    assert r.outputs[0].max_abs < 0.1


def test_unknown_precision_is_an_error():
    with pytest.raises(mlms_ir.MlmsIrError, match="precision"):
        diverge(builtin_path(), "ort", batch=1, precision="fp8")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_autocast_precisions(precision):
    pytest.importorskip("onnx2torch")
    r = diverge(builtin_path(), "torch", "reference", batch=2, precision=precision, introduced="all")
    assert r.precision == precision and not r.missing_tensors
    convs = [n for n in r.nodes if n.op_type == "Conv"]
    assert all((n.introduced_max_abs or 0) > 0 for n in convs)  # autocast runs convolutions in the reduced type
    assert all(n.introduced_max_abs == 0 for n in r.nodes if n.op_type in ("Relu", "Flatten"))


def test_int8_dynamic_quantization_on_ort():
    r = diverge(builtin_path(), "ort", "reference", batch=2, precision="int8")
    assert (r.atol, r.rtol) == (5e-2, 1e-1) and not r.missing_tensors
    assert r.first_divergent is None or r.first_divergent["op_type"] in ("Conv", "Gemm")
    assert all(t["op_type"] in ("Conv", "Gemm") for t in r.top_introduced if t["exceeds"])


def test_ort_with_optimisations_compares_the_tensors_that_survive():
    r = diverge(conv_net(), "ort", "reference", batch=1, options={"opt": "all"}, introduced="none")
    # Conv+Relu fusions and the NCHWc layout hide some tensors; those are reported as missing
    assert r.missing_tensors and r.compared_tensors > 0
    assert "y" not in r.missing_tensors and r.first_divergent is None


def test_a_model_with_external_data_whole_and_streamed(tmp_path, perturbed):
    """ORT exposes intermediates of an external-data model from memory, the data read beside the file."""
    rng = np.random.default_rng(0)
    w = [onnx.numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), f"w{i}") for i in range(3)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"], name="mm0"), helper.make_node("Relu", ["h0"], ["a0"], name="r0"),
             helper.make_node("MatMul", ["a0", "w1"], ["h1"], name="mm1"), helper.make_node("Relu", ["h1"], ["a1"], name="r1"),
             helper.make_node("MatMul", ["a1", "w2"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], w)
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    whole = diverge(str(path), "ort", "reference")
    assert whole.first_divergent is None and whole.compared_tensors == 5 and not whole.missing_tensors
    perturbed("mm1", delta=0.5)
    small = diverge(str(path), "perturbed", "reference", options={"opt": "none"}, memory_budget_bytes=40_000)
    assert small.segments > 1 and small.first_divergent["name"] == "mm1" and small.top_introduced[0]["name"] == "mm1"


# --------------------------------------------------------------------------- non-finite errors, the arbiter
def _fp16_overflow_model():
    """Relu -> MatMul -> Add on 100s: the MatMul's 16 * 100 * 100 = 160,000 exceeds float16's 65,504."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    w = onnx.numpy_helper.from_array(np.full((16, 16), 100.0, np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("MatMul", ["r", "w"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "x"], ["y"], name="add")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])


def test_an_fp16_overflow_is_an_infinite_error_introduced_by_the_overflowing_node(recwarn):
    r = diverge(_fp16_overflow_model(), "ort", "reference", inputs={"x": np.full((1, 16), 100.0, np.float32)}, precision="fp16")
    by_op = {n.op_type: n for n in r.nodes}
    mm = by_op["MatMul"]
    assert mm.max_abs == float("inf") and mm.exceeds and mm.cosine is None and mm.snr_db == float("-inf")
    assert mm.introduced_max_abs == float("inf") and mm.introduced_exceeds
    relu = by_op["Relu"]  # before it: nothing
    assert relu.max_abs == 0.0 and not relu.exceeds and not relu.introduced_exceeds
    assert r.first_divergent["id"] == mm.id and next(n for n in r.nodes if n.exceeds) is mm
    assert r.top_introduced[0]["id"] == mm.id and r.top_introduced[0]["introduced_max_abs"] == float("inf")
    d = json.loads(r.to_json())  # JSON has no infinity: written as "inf", read back as one
    node = next(n for n in d["nodes"] if n["id"] == mm.id)
    assert node["max_abs"] == "inf" and node["introduced_max_abs"] == "inf"
    assert type(r).from_dict(d).nodes[1].max_abs == float("inf")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_tensor_diff_infinite_and_zero_reference_cases(recwarn):
    ref = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    d = tensor_diff("t", ref, np.array([1e-3, 1.0, np.inf, 3.0], np.float32))
    assert d.max_abs == float("inf") and d.max_rel == float("inf") and d.exceeds and d.outside_share == 0.5
    z = tensor_diff("t", ref, np.array([1e-3, 1.0, 2.0, 3.0], np.float32))  # finite, but 1e-3 where the reference is 0
    assert z.max_abs == pytest.approx(1e-3) and z.max_rel == float("inf")
    both = tensor_diff("t", np.array([np.nan, np.inf]), np.array([np.nan, np.inf]))
    assert both.max_abs == 0.0 and not both.exceeds
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


class UnpatchedReference(ReferenceBackend):
    """onnx's reference evaluator without mlms_ir's replacements for the ops it computes wrongly
    (mlms_ir.backends.reference_ops): a backend with a real bug, BatchNormalization below 14."""

    name = "onnx-reference"

    def _prepare_impl(self, graph, device, **options):
        return UnpatchedReferenceSession(graph, device)


class UnpatchedReferenceSession(ReferenceSession):
    backend_name = "onnx-reference"
    fix_onnx_ops = False


# the fixture onnx_reference (conftest.py) registers UnpatchedReference as "onnx-reference"


def _batchnorm9_model():
    rng = np.random.default_rng(0)
    s, b, m = (rng.standard_normal(3).astype(np.float32) for _ in range(3))
    v = (rng.random(3) + 0.5).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], epsilon=1e-5, name="bn")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 4])],
                          [onnx.numpy_helper.from_array(a, k) for a, k in ((s, "s"), (b, "b"), (m, "m"), (v, "v"))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)]), (s, b, m, v)


def test_the_arbiter_blames_the_reference_evaluator_for_batchnorm_below_opset_14(onnx_reference):
    """onnx's reference evaluator (1.23, without mlms_ir's replacement) computes
    BatchNormalization-9 off the formula; onnxruntime is right. The exact result, computed here by
    hand from the formula, agrees with the arbiter."""
    model, (s, b, m, v) = _batchnorm9_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    r = diverge(model, "ort", onnx_reference, inputs={"x": x})
    bn = next(n for n in r.nodes if n.op_type == "BatchNormalization")
    if not bn.introduced_exceeds:
        pytest.skip(f"onnx {onnx.__version__}'s reference evaluator computes BatchNormalization-9 right now")
    assert bn.oracle is not None
    assert bn.oracle.wrong == [onnx_reference] and bn.oracle.closer == "ort"
    relu = np.maximum(x, 0).astype(np.float64)
    c = (slice(None), None, None)
    exact = (relu - m[c]) / np.sqrt(v[c].astype(np.float64) + 1e-5) * s[c] + b[c]  # the formula, by hand
    with registry.get("ort").prepare(mlms_ir.load(model), "cpu") as sess:
        ort_err = float(np.abs(sess.run({"x": x})["y"] - exact).max())
    assert bn.oracle.errors["ort"] == pytest.approx(ort_err, rel=1e-3, abs=1e-9) and ort_err < 1e-5
    assert bn.oracle.errors[onnx_reference] > 1e-2
    from mlms_ir.report.run_text import oracle_verdict

    assert oracle_verdict(bn.oracle) == "onnx-reference is wrong here"


def test_the_reference_backend_gives_the_formula_for_batchnorm_below_opset_14():
    """mlms_ir's reference backend replaces onnx's BatchNormalization-9 (mlms_ir.backends.reference_ops):
    it agrees with the formula and with onnxruntime, and the arbiter has nothing to judge."""
    model, (s, b, m, v) = _batchnorm9_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    relu = np.maximum(x, 0).astype(np.float64)
    c = (slice(None), None, None)
    exact = (relu - m[c]) / np.sqrt(v[c].astype(np.float64) + 1e-5) * s[c] + b[c]
    with registry.get("reference").prepare(mlms_ir.load(model), "cpu") as sess:
        y = sess.run({"x": x})["y"]
    assert y.dtype == np.float32 and float(np.abs(y - exact).max()) < 1e-5
    r = diverge(model, "ort", "reference", inputs={"x": x})
    bn = next(n for n in r.nodes if n.op_type == "BatchNormalization")
    assert not bn.introduced_exceeds


def test_the_arbiter_names_the_backend_in_the_table_and_the_page(tmp_path, onnx_reference):
    from rich.console import Console

    from mlms_ir.report.html import build_report_data
    from mlms_ir.report.run_text import render_divergence

    model, _ = _batchnorm9_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    r = diverge(model, "ort", onnx_reference, inputs={"x": x})
    if not next(n for n in r.nodes if n.op_type == "BatchNormalization").introduced_exceeds:
        pytest.skip(f"onnx {onnx.__version__}'s reference evaluator computes BatchNormalization-9 right now")
    console = Console(record=True, width=240)
    render_divergence(r, console=console)
    assert "onnx-reference is wrong here" in console.export_text()
    g = mlms_ir.load(model)
    d = build_report_data(mlms_ir.analyze(g), g, divergence=r)
    bn = next(n for n in d["nodes"] if n.get("op") == "BatchNormalization")
    assert bn["div"]["div0"]["oracle"]["verdict"] == "onnx-reference is wrong here"


def test_an_ort_reference_runs_unoptimised_so_every_tensor_is_compared():
    r = diverge(builtin_path(), "reference", "ort", batch=1)
    assert r.compared_tensors == 11 and not r.missing_tensors
