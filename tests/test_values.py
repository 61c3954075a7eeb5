"""Sequences, maps, optionals and string tensors (issue #15): one convention (a list, a dict, the
value or None, object arrays of str; :mod:`mlms_ir.values`) for feeds, outputs and intermediates
on every backend that runs them, the comparator, random feeds and the agent protocol's version 2.

The models are tiny ONNX texts; the ground truths are bare onnxruntime and bare
``onnx.reference`` on the same feeds, and ONNX's own node test cases whose inputs or outputs are
sequences, optionals or maps (their expected outputs).
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import onnx
import onnx.parser
import pytest

import mlms_ir
from mlms_ir.backends import agent, registry
from mlms_ir.backends.base import Availability, Backend, BackendError, FeedError, check_feeds
from mlms_ir.backends.worker import MXNetBackend, OnnxTfBackend, call_agent, save_npz
from mlms_ir.comparator import compare_outputs, compare_values, value_diffs
from mlms_ir.errors import ShapeBindingError
from mlms_ir.inputs import batch_of, feeds_for, random_feeds
from mlms_ir.runner import profile_backend, run_backends
from mlms_ir.values import check_value, type_text

from conftest import agent_backend

#: Backends that take and return every kind of value.
VALUE_BACKENDS = ["ort", "reference", "ort-isolated"]


def parse(text: str) -> onnx.ModelProto:
    """An ONNX text model whose nodes are named ``node0``, ``node1``... (ORT's profiler maps named nodes)."""
    m = onnx.parser.parse_model(text)
    for i, n in enumerate(m.graph.node):
        n.name = f"node{i}"
    onnx.checker.check_model(m)
    return m


# A ragged sequence (lengths 2 and 3), an equal-length one (never stacked), what the sequence ops
# compute from them: a = [1, 2], b = [3, 4, 5].
SEQ_OPS = parse("""
<ir_version: 8, opset_import: ["": 18]>
seq_ops (float[2] a, float[3] b, float[2,3] m) => (seq(float[?]) s, float[5] cat, float[3] at1, int64 n,
                                                    seq(float[3]) rows, float[7] cat2, float[2,3] back)
{
  s = SequenceConstruct(a, b)
  cat = ConcatFromSequence<axis=0>(s)
  one = Constant<value_int=1>()
  at1 = SequenceAt(s, one)
  s2 = SequenceInsert(s, a)
  n = SequenceLength(s2)
  cat2 = ConcatFromSequence<axis=0>(s2)
  rows = SplitToSequence<axis=0, keepdims=0>(m)
  back = ConcatFromSequence<axis=0, new_axis=1>(rows)
}
""")

# Optionals made inside: one with a value, one empty; what OptionalHasElement and
# OptionalGetElement say of them.
OPT_OPS = parse("""
<ir_version: 8, opset_import: ["": 18]>
opt_ops (float[2] a) => (optional(float[2]) full, optional(float[?]) none, bool has_full, bool has_none, float[2] got,
                         optional(seq(float[2])) oseq)
{
  full = Optional(a)
  none = Optional<type=float[?]>()
  has_full = OptionalHasElement(full)
  has_none = OptionalHasElement(none)
  got = OptionalGetElement(full)
  s = SequenceConstruct(a, a)
  oseq = Optional(s)
}
""")

# A sequence input: q + [a], and all of it concatenated.
SEQ_INPUT = parse("""
<ir_version: 8, opset_import: ["": 18]>
seq_input (seq(float[2]) q, float[2] a) => (seq(float[2]) q2, float[6] cat)
{
  q2 = SequenceInsert(q, a)
  cat = ConcatFromSequence<axis=0>(q2)
}
""")

# An optional input: passed through, and whether it holds a value.
OPT_INPUT = parse("""
<ir_version: 8, opset_import: ["": 18]>
opt_input (optional(float[2]) x) => (optional(float[2]) same, bool has)
{
  same = Identity(x)
  has = OptionalHasElement(x)
}
""")

# String tensors in and out, and a sequence of them.
STRINGS = parse("""
<ir_version: 8, opset_import: ["": 20]>
strings (string[2] a, string[2] b) => (string[2] ab, seq(string[2]) both, bool[2] same)
{
  ab = StringConcat(a, b)
  both = SequenceConstruct(a, ab)
  same = Equal(a, b)
}
""")

# Maps: a map input (DictVectorizer) and a sequence of maps out (ZipMap); onnx.reference has no
# ZipMap, so this one runs on onnxruntime and ort-isolated.
MAPS = parse("""
<ir_version: 8, opset_import: ["": 18, "ai.onnx.ml": 3]>
maps (float[2,3] x, map(int64, float) d) => (seq(map(int64, float)) z, float[1,4] v)
{
  z = ai.onnx.ml.ZipMap<classlabels_int64s=[10, 20, 30]>(x)
  v = ai.onnx.ml.DictVectorizer<int64_vocabulary=[1, 2, 3, 4]>(d)
}
""")

F32 = np.float32
FEEDS = {
    "seq_ops": {"a": np.array([1, 2], F32), "b": np.array([3, 4, 5], F32), "m": np.arange(6, dtype=F32).reshape(2, 3)},
    "opt_ops": {"a": np.array([1, 2], F32)},
    "seq_input": {"q": [np.array([1, 2], F32), np.array([3, 4], F32)], "a": np.array([5, 6], F32)},
    "opt_input": {"x": np.array([1, 2], F32)},
    "opt_input_empty": {"x": None},
    "strings": {"a": np.array(["ab", "c"]), "b": np.array(["ab", "d"], dtype=object)},
    "maps": {"x": np.arange(6, dtype=F32).reshape(2, 3), "d": {1: 0.5, 3: 2.0}},
}
MODELS = {"seq_ops": SEQ_OPS, "opt_ops": OPT_OPS, "seq_input": SEQ_INPUT, "opt_input": OPT_INPUT,
          "opt_input_empty": OPT_INPUT, "strings": STRINGS, "maps": MAPS}


def bare_ort(model: onnx.ModelProto, feeds: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def bare_reference(model: onnx.ModelProto, feeds: dict) -> dict:
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(model)
    return dict(zip(ev.output_names, ev.run(None, feeds)))


def same(a: object, b: object) -> bool:
    """Exactly the same value, kind for kind: a list is never equal to an array."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.all(a == b))


def run_on(backend: str, model: onnx.ModelProto, feeds: dict) -> dict:
    with registry.get(backend).prepare(mlms_ir.load(model), "cpu") as s:
        return s.run(feeds)


# ---------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("backend", VALUE_BACKENDS)
@pytest.mark.parametrize("name", ["seq_ops", "opt_ops", "seq_input", "opt_input", "opt_input_empty", "strings", "maps"])
def test_outputs_equal_bare_onnxruntime(backend, name):
    model, feeds = MODELS[name], FEEDS[name]
    if backend == "reference" and name == "maps":
        pytest.skip("onnx.reference has no ZipMap (its refusal is tested below)")
    got = run_on(backend, model, feeds)
    want = bare_ort(model, {k: v.astype(object) if isinstance(v, np.ndarray) and v.dtype.kind == "U" else v
                            for k, v in feeds.items()})
    assert list(got) == list(want)
    for k in want:
        assert same(got[k], want[k]), (k, got[k], want[k])


def test_values_keep_their_kinds():
    for backend in VALUE_BACKENDS:
        out = run_on(backend, SEQ_OPS, FEEDS["seq_ops"])
        # [1, 2] and [3, 4, 5]: a list of 2, never one array; rows of an equal-length split too
        assert isinstance(out["s"], list) and [x.tolist() for x in out["s"]] == [[1, 2], [3, 4, 5]]
        assert isinstance(out["rows"], list) and len(out["rows"]) == 2 and out["rows"][1].tolist() == [3, 4, 5]
        assert out["cat2"].tolist() == [1, 2, 3, 4, 5, 1, 2] and int(out["n"]) == 3
        opt = run_on(backend, OPT_OPS, FEEDS["opt_ops"])
        assert opt["none"] is None and not opt["has_none"] and opt["has_full"]
        assert opt["got"].tolist() == [1, 2] and isinstance(opt["oseq"], list) and len(opt["oseq"]) == 2
        assert run_on(backend, OPT_INPUT, {"x": None}) == {"same": None, "has": np.array(False)}
        strings = run_on(backend, STRINGS, FEEDS["strings"])
        assert strings["ab"].dtype == object and strings["ab"].tolist() == ["abab", "cd"]
        assert strings["same"].tolist() == [True, False]


def test_reference_backend_fixes_the_evaluators_optionals():
    # onnx 1.23's Optional wraps its value in a list: OptionalGetElement(Optional(a)) is [a] and an
    # empty optional "has an element"; the backend's own three ops keep the value itself
    bare = bare_reference(OPT_OPS, FEEDS["opt_ops"])
    assert isinstance(bare["got"], list) and bool(bare["has_none"]) is True
    ours = run_on("reference", OPT_OPS, FEEDS["opt_ops"])
    assert ours["got"].tolist() == [1, 2] and bool(ours["has_none"]) is False and ours["none"] is None
    # on sequences the evaluator was right already: the backend gives what it gives
    for name in ("seq_ops", "seq_input"):
        want = bare_reference(MODELS[name], FEEDS[name])
        got = run_on("reference", MODELS[name], FEEDS[name])
        assert all(same(got[k], np.asarray(v) if not isinstance(v, list) else v) for k, v in want.items())


def test_maps_in_and_out():
    for backend in ("ort", "ort-isolated"):
        out = run_on(backend, MAPS, FEEDS["maps"])
        # ZipMap: row r of x = [[0, 1, 2], [3, 4, 5]] labelled 10, 20, 30
        assert out["z"] == [{10: 0.0, 20: 1.0, 30: 2.0}, {10: 3.0, 20: 4.0, 30: 5.0}]
        assert out["v"].tolist() == [[0.5, 0.0, 2.0, 0.0]]  # {1: 0.5, 3: 2.0} over vocabulary 1..4
    with pytest.raises(BackendError, match="ZipMap"):
        registry.get("reference").prepare(mlms_ir.load(MAPS), "cpu")


@pytest.mark.parametrize("backend", ["ort", "reference"])
def test_intermediates_are_values_too(backend):
    g = mlms_ir.load(SEQ_OPS)
    with registry.get(backend).prepare(g, "cpu") as s:
        vals = s.intermediates(FEEDS["seq_ops"], ["s", "s2", "rows", "cat"])
    assert isinstance(vals["s2"], list) and [x.tolist() for x in vals["s2"]] == [[1, 2], [3, 4, 5], [1, 2]]
    assert isinstance(vals["rows"], list) and vals["cat"].tolist() == [1, 2, 3, 4, 5]
    with registry.get(backend).prepare(mlms_ir.load(OPT_OPS), "cpu") as s:
        vals = s.intermediates(FEEDS["opt_ops"], ["full", "none", "s"])
    assert vals["none"] is None and vals["full"].tolist() == [1, 2] and isinstance(vals["s"], list)


# ---------------------------------------------------------------------------- feeds
def test_check_feeds_takes_values_and_says_what_does_not_fit():
    g = mlms_ir.load(SEQ_INPUT)
    ok = check_feeds(g, FEEDS["seq_input"])
    assert isinstance(ok["q"], list) and len(ok["q"]) == 2
    a = FEEDS["seq_input"]["a"]
    cases = [
        ({"q": np.zeros((2, 2), F32), "a": a}, r"input 'q' is a sequence \(seq\(tensor\(float\)\)\): give a list .*Python API"),
        ({"q": [np.zeros(2, F32), np.zeros(2)], "a": a}, "input 'q' element 1 expects float, got float64"),
        ({"q": [np.zeros(3, F32)], "a": a}, r"input 'q' element 0 needs dim 0 = 2, got an array of shape \(3,\)"),
        ({"q": None, "a": a}, "input 'q' is a sequence .* got None"),
        ({"q": [], "a": [np.zeros(2, F32), np.zeros(3, F32)]}, r"input 'a' is a tensor \(tensor\(float\)\), got a list of 2"),
        ({"q": [], "a": None}, r"input 'a' is a tensor \(tensor\(float\)\), got None"),
    ]
    for feeds, message in cases:
        with pytest.raises(FeedError, match=message):
            check_feeds(g, feeds)
    assert check_feeds(g, {"q": [], "a": a})["q"] == []  # an empty sequence is a sequence
    go = mlms_ir.load(OPT_INPUT)
    assert check_feeds(go, {"x": None})["x"] is None
    with pytest.raises(FeedError, match="input 'x' expects float, got int64"):
        check_feeds(go, {"x": np.array([1, 2])})
    gm = mlms_ir.load(MAPS)
    with pytest.raises(FeedError, match=r"input 'd' is a map with int64 keys .* got the key 'a'"):
        check_feeds(gm, {"x": FEEDS["maps"]["x"], "d": {"a": 1.0}})
    with pytest.raises(FeedError, match="input 'd' at key 1 expects float, got 'x'"):
        check_feeds(gm, {"x": FEEDS["maps"]["x"], "d": {1: "x"}})
    gs = mlms_ir.load(STRINGS)
    checked = check_feeds(gs, FEEDS["strings"])
    assert checked["a"].dtype == object and checked["a"].tolist() == ["ab", "c"]  # one form for strings
    with pytest.raises(FeedError, match="input 'a' expects string, got float32"):
        check_feeds(gs, {"a": np.zeros(2, F32), "b": FEEDS["strings"]["b"]})


def test_graph_records_what_kind_of_value_each_name_holds():
    g = mlms_ir.load(OPT_OPS)
    kinds = {n: g.tensors[n].value_kind for n in ("a", "full", "none", "has_full", "s", "oseq")}
    assert kinds == {"a": "tensor", "full": "optional", "none": "optional", "has_full": "tensor", "s": "sequence",
                     "oseq": "optional"}
    assert type_text(g.value_type("oseq")) == "optional(seq(tensor(float)))"
    assert type_text(mlms_ir.load(MAPS).value_type("z")) == "seq(map(int64,tensor(float)))"
    assert g.value_type("nothing") is None
    oseq = g.value_type("oseq")
    assert check_value("v", None, oseq) is None
    assert isinstance(check_value("v", (np.zeros(2, F32),), oseq), list)  # a tuple is taken as a sequence
    with pytest.raises(FeedError, match=r"v element 0 expects float, got int64"):
        check_value("v", [np.zeros(2, np.int64)], oseq)
    with pytest.raises(FeedError, match=r"v element 0 has rank 1, got an array of shape \(\)"):
        check_value("v", [np.zeros((), F32)], oseq)


def test_random_feeds_for_values():
    feeds = random_feeds(mlms_ir.load(SEQ_INPUT), seed=0)
    # a sequence of 2 tensors of its element type float[2]
    assert isinstance(feeds["q"], list) and [(x.dtype, x.shape) for x in feeds["q"]] == [(np.float32, (2,))] * 2
    assert random_feeds(mlms_ir.load(OPT_INPUT))["x"].shape == (2,)  # an optional with a value
    d = random_feeds(mlms_ir.load(MAPS))["d"]
    assert list(d) == [0, 1] and all(isinstance(v, float) for v in d.values())  # Python scalars, as ORT takes them
    s = random_feeds(mlms_ir.load(STRINGS))
    assert s["a"].dtype == object and s["a"].shape == (2,) and all(isinstance(x, str) for x in s["a"])
    unbound = parse("""
<ir_version: 8, opset_import: ["": 18]>
g (seq(float[N]) q) => (float[M] c) { c = ConcatFromSequence<axis=0>(q) }
""")
    with pytest.raises(ShapeBindingError, match=r"input 'q' element 0 has unbound dims \(\?\).*Python API"):
        random_feeds(mlms_ir.load(unbound))
    # given feeds: lists stay lists for sequence inputs, array-likes become arrays for tensors
    g = mlms_ir.load(SEQ_INPUT)
    given = feeds_for(g, {"q": [np.zeros(2, F32)], "a": [1.0, 2.0]}, 0)
    assert isinstance(given["q"], list) and isinstance(given["a"], np.ndarray)
    assert batch_of(given) == 2 and batch_of({"q": [np.zeros(2)], "o": None}) == 1


# ---------------------------------------------------------------------------- run and profile
def test_run_compares_values_across_backends(tmp_path):
    path = tmp_path / "seq_ops.onnx"
    onnx.save(SEQ_OPS, path)
    r = run_backends(str(path), VALUE_BACKENDS, iterations=2, warmup=1, system=False)  # random feeds
    first, *others = r.runs
    assert first.status == "ok", first.error
    for rec in others:
        assert rec.status == "ok" and rec.outputs_agree and rec.max_abs_diff == 0.0, (rec.backend, rec.error)
    path = tmp_path / "opt_input.onnx"
    onnx.save(OPT_INPUT, path)
    r = run_backends(str(path), VALUE_BACKENDS, iterations=2, warmup=1, system=False, inputs={"x": None})
    assert [rec.status for rec in r.runs] == ["ok"] * 3 and all(rec.outputs_agree for rec in r.runs[1:])


def test_run_catches_a_deliberate_difference(tmp_path, monkeypatch):
    from mlms_ir.backends.reference import ReferenceSession

    path = tmp_path / "seq_ops.onnx"
    onnx.save(SEQ_OPS, path)
    real = ReferenceSession._run_impl

    def stacked(self, feeds):  # the bug the issue found: an equal-length sequence stacked into a tensor
        out = real(self, feeds)
        out["rows"] = np.stack(out["rows"])
        return out

    monkeypatch.setattr(ReferenceSession, "_run_impl", stacked)
    r = run_backends(str(path), ["ort", "reference"], iterations=1, warmup=0, system=False, inputs=FEEDS["seq_ops"])
    ref = r.runs[1]
    # the 6 elements of rows count as beyond the tolerance, with an infinite error
    assert ref.status == "ok" and ref.outputs_agree is False and ref.beyond_tolerance == 6 and math.isinf(ref.max_abs_diff)

    def emptied(self, feeds):
        out = real(self, feeds)
        out["s"] = out["s"][:1]  # a sequence one element short
        return out

    monkeypatch.setattr(ReferenceSession, "_run_impl", emptied)
    r = run_backends(str(path), ["ort", "reference"], iterations=1, warmup=0, system=False, inputs=FEEDS["seq_ops"])
    assert r.runs[1].outputs_agree is False and r.runs[1].beyond_tolerance == 5  # 2 + 3 elements of s


@pytest.mark.parametrize("backend", ["ort", "reference"])
def test_profile_runs_value_models(backend, tmp_path):
    path = tmp_path / "seq_ops.onnx"
    onnx.save(SEQ_OPS, path)
    report, traces = profile_backend(str(path), backend, runs=2, warmup=1, iterations=2, system=False)
    assert len(traces) == 2 and report.batch == 2  # a is float[2]
    assert {n.op_type for n in report.nodes} >= {"SequenceConstruct", "ConcatFromSequence", "SplitToSequence"}


def test_npz_inputs_cannot_hold_sequences(tmp_path):
    path = tmp_path / "seq_input.onnx"
    onnx.save(SEQ_INPUT, path)
    npz = tmp_path / "in.npz"
    np.savez(npz, q=np.zeros((2, 2), F32), a=np.zeros(2, F32))
    r = run_backends(str(path), ["ort"], iterations=1, warmup=0, system=False, inputs=str(npz))
    assert r.runs[0].status == "failed" and "Python API" in r.runs[0].error


# ---------------------------------------------------------------------------- tensor-only backends
class TensorsOnly(Backend):
    name = "tensors-only"

    def _available_impl(self, device, **options):
        return Availability(True)

    def _prepare_impl(self, graph, device, **options):  # pragma: no cover - refused before
        raise AssertionError("prepare should have refused")


def test_tensor_only_backends_refuse_values_in_one_line():
    with pytest.raises(BackendError, match=r"^the tensors-only backend takes and returns tensors only; the model's input "
                                           r"'q' is seq\(tensor\(float\)\), not a tensor: run it on ort, ort-isolated or reference$"):
        TensorsOnly().prepare(mlms_ir.load(SEQ_INPUT))
    with pytest.raises(BackendError, match=r"output 'full' is optional\(tensor\(float\)\)"):
        TensorsOnly().prepare(mlms_ir.load(OPT_OPS))
    assert {n: registry.get(n).takes_non_tensors for n in ("ort", "reference", "ort-isolated", "mxnet", "onnx-tf")} == {
        "ort": True, "reference": True, "ort-isolated": True, "mxnet": False, "onnx-tf": False}


def test_torch_refuses_values(tmp_path):
    if not registry.get("torch").available("cpu"):
        pytest.skip("torch is not available here")
    path = tmp_path / "opt_input.onnx"
    onnx.save(OPT_INPUT, path)
    r = run_backends(str(path), ["ort", "torch"], iterations=1, warmup=0, system=False, inputs={"x": None})
    assert r.runs[1].status == "failed" and "takes and returns tensors only" in r.runs[1].error
    path = tmp_path / "seq_ops.onnx"
    onnx.save(SEQ_OPS, path)  # sequences inside: onnx2torch has no converter, and says which
    r = run_backends(str(path), ["torch"], iterations=1, warmup=0, system=False)
    assert r.runs[0].status == "failed" and "tensors only" in r.runs[0].error


@pytest.mark.parametrize("cls", [MXNetBackend, OnnxTfBackend])
def test_agent_frameworks_refuse_values(cls):
    be = agent_backend(cls)
    with pytest.raises(BackendError, match=f"the {be.name} backend takes and returns tensors only"):
        be.prepare(mlms_ir.load(SEQ_INPUT), "cpu")


# ---------------------------------------------------------------------------- comparator
def test_compare_values():
    a, b = np.array([1.0, 2.0], F32), np.array([3.0], F32)
    assert compare_values([a, b], [a, b]) == {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "outputs_compared": 2,
                                              "beyond_tolerance": 0, "elements_compared": 3, "agree": True}
    r = compare_values([a, b], [a, b + 1])  # |4 - 3| = 1, relative 1/3
    assert (r["max_abs_diff"], r["beyond_tolerance"], r["elements_compared"]) == (1.0, 1, 3)
    assert math.isclose(r["max_rel_diff"], 1 / 3)
    short = compare_values([a, b], [a])  # lengths differ: all 3 elements of the longer one
    assert short["beyond_tolerance"] == 3 and math.isinf(short["max_abs_diff"]) and not short["agree"]
    stacked = compare_values([a, a], np.stack([a, a]))  # a stacked sequence is not the sequence
    assert stacked["beyond_tolerance"] == 4 and not stacked["agree"]
    assert compare_values(None, None)["agree"] and compare_values(None, None)["elements_compared"] == 0
    assert compare_values(None, a)["beyond_tolerance"] == 2 and compare_values(a, None)["beyond_tolerance"] == 2
    assert compare_values([], None)["beyond_tolerance"] == 1  # an empty sequence is not an empty optional
    assert compare_values({1: 0.5, 2: 0.25}, {1: 0.5, 2: 0.25})["agree"]
    keys = compare_values({1: 0.5, 2: 0.25}, {1: 0.5, 3: 0.25})  # key 2 missing, key 3 extra: 1 + 1
    assert keys["beyond_tolerance"] == 2 and keys["elements_compared"] == 3
    # through compare_outputs: arrays as before, values beside them
    out = compare_outputs({"y": np.array([1.0, 2.0]), "s": [a, b], "o": None}, {"y": np.array([1.0, 2.0]), "s": [a, b], "o": None})
    assert out == {"max_abs_diff": 0.0, "max_rel_diff": 0.0, "outputs_compared": 3, "beyond_tolerance": 0,
                   "elements_compared": 5, "agree": True}
    missing = compare_outputs({"s": [a, b]}, {})
    assert missing["outputs_compared"] == 0 and missing["beyond_tolerance"] == 3


def test_value_diffs_name_the_part_that_differs():
    a = np.array([1.0, 2.0], F32)
    ds = value_diffs("s", [a, a], [a, a + 1])
    assert [(d.tensor, d.exceeds) for d in ds] == [("s[0]", False), ("s[1]", True)] and ds[1].max_abs == 1.0
    (d,) = value_diffs("s", [a, a], np.stack([a, a]))
    assert d.tensor == "s" and d.exceeds and math.isinf(d.max_abs) and d.elements == 4
    assert d.note == "float32[2x2] where the reference has seq[2: float32[2], float32[2]]"
    assert value_diffs("o", None, None) == []
    (d,) = value_diffs("m", {1: a}, {2: a})[1:]
    assert d.tensor == "m[2]" and d.note == "float32[2] where the reference has nothing"
    assert [d.tensor for d in value_diffs("y", a, a)] == ["y"]


# ---------------------------------------------------------------------------- agent protocol 2
def test_pack_values_round_trip():
    values = {
        "t": np.arange(6, dtype=np.int64).reshape(2, 3),
        "seq": [np.zeros(2, F32), np.ones(3, F32)],
        "empty_seq": [],
        "none": None,
        "map": {1: 0.5, 2: 1.5},
        "smap": {"a": np.ones(2, F32)},
        "seq_of_maps": [{10: 0.0}, {10: 1.0}],
        "strings": np.array(["x", "yz"], dtype=object),
        "bytes": np.array([b"x"], dtype=object),
        "~v0": np.ones(1, F32),  # a name like the generated keys: they move out of its way
    }
    arrays, layout = agent.pack_values(values)
    assert set(layout) == set(values) - {"t", "~v0"}  # plain arrays stay plain (as in protocol 1)
    assert all(not a.dtype.hasobject for a in arrays.values())
    back = agent.unpack_values(arrays, layout)
    assert set(back) == set(values)
    for k, v in values.items():
        assert same(back[k], v), k
    assert isinstance(back["map"][1], float)
    with pytest.raises(ValueError, match="Python objects"):
        agent.pack_values({"x": np.array([object()])})


def test_protocol_1_requests_carry_tensors_only(tmp_path):
    path = tmp_path / "seq_ops.onnx"
    onnx.save(SEQ_OPS, path)
    save_npz(tmp_path / "in.npz", FEEDS["seq_ops"])
    req = {"framework": "onnxruntime", "model": str(path), "inputs": str(tmp_path / "in.npz"),
           "outputs": str(tmp_path / "out.npz"), "protocol": 1}
    res = call_agent(sys.executable, req, tmp_path, timeout=120)
    assert res["protocol"] == 1 and res["status"] == "error" and "protocol 1 cannot carry" in res["error"]
    res = call_agent(sys.executable, dict(req, protocol=2), tmp_path, timeout=120)
    assert res["protocol"] == 2 and res["status"] == "ok" and set(res["layout"]) == {"s", "rows"}
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        out = agent.unpack_values({k: z[k] for k in z.files}, res["layout"])
    assert [x.tolist() for x in out["s"]] == [[1, 2], [3, 4, 5]]
    res = call_agent(sys.executable, dict(req, layout={"a": {"none": True}}), tmp_path, timeout=120)
    assert res["status"] == "error" and "protocol 1 request has no layout" in res["error"]


def test_ort_isolated_measures_values():
    g = mlms_ir.load(STRINGS)
    with registry.get("ort-isolated").prepare(g, "cpu") as s:
        samples, outputs = s.measure_in_worker(FEEDS["strings"], warmup=1, iterations=3)
    assert len(samples) == 3 and outputs["ab"].tolist() == ["abab", "cd"] and outputs["both"][0].dtype == object


# ---------------------------------------------------------------------------- ONNX's node test cases
def _nested_kinds(vi: onnx.ValueInfoProto) -> tuple[str, int]:
    """(the outer kind, the element type inside) of a graph input or output."""
    t = vi.type
    outer = t.WhichOneof("value")
    while t.WhichOneof("value") in ("sequence_type", "optional_type"):
        t = getattr(t, t.WhichOneof("value")).elem_type
    if t.WhichOneof("value") == "map_type":
        return outer, -1
    return outer, t.tensor_type.elem_type if t.WhichOneof("value") == "tensor_type" else 0


@pytest.fixture(scope="module")
def node_cases():
    """ONNX's node test cases whose inputs or outputs are sequences, optionals or maps, and those
    of six ops on string tensors (what ort-isolated refused)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators cast out of range on purpose
        cases = collect_testcases()
    values, strings = [], {}
    for c in cases:
        kinds = [_nested_kinds(v) for v in list(c.model.graph.input) + list(c.model.graph.output)]
        if any(outer != "tensor_type" for outer, _ in kinds):
            values.append(c)
        elif any(elem == onnx.TensorProto.STRING for _, elem in kinds):
            op = c.model.graph.node[0].op_type
            strings.setdefault(op, c)
    return values, list(strings.values())


def _outcome(backend: str, case) -> str:
    ins, outs = case.data_sets[0]
    g = mlms_ir.load(case.model)
    try:
        got = run_on(backend, case.model, dict(zip(g.input_names, ins)))
    except BackendError as exc:
        return f"refused: {exc}"
    r = compare_outputs(dict(zip(g.output_names, outs)), got, atol=1e-5, rtol=1e-3)
    return "ok" if r["agree"] else f"wrong: {r}"


def _bare_ok(case) -> bool:
    ins, outs = case.data_sets[0]
    try:
        got = bare_ort(case.model, dict(zip([i.name for i in case.model.graph.input], ins)))
    except Exception:  # noqa: BLE001 - onnxruntime has no kernel for it, or no locale
        return False
    return compare_outputs(dict(zip([o.name for o in case.model.graph.output], outs)), got, atol=1e-5, rtol=1e-3)["agree"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", VALUE_BACKENDS)
def test_onnx_node_cases_with_values(backend, node_cases):
    values, strings = node_cases
    # 29 in onnx 1.23: identity, if, loop, optional*, sequence_insert, sequence_map, split_to_sequence
    assert len(values) >= 25 and len(strings) >= 5
    outcomes = {c.name: _outcome(backend, c) for c in values + strings}
    wrong = {k: v for k, v in outcomes.items() if v.startswith("wrong")}
    assert not wrong, wrong
    if backend == "reference":  # onnx.reference runs them all (with its Optional ops fixed: test_if_opt)
        assert all(v == "ok" for v in outcomes.values()), outcomes
    else:  # onnxruntime refuses only what bare onnxruntime cannot run (OptionalGetElement-18, locales)
        refused = {c.name for c in values + strings if outcomes[c.name] != "ok"}
        assert refused == {c.name for c in values + strings if not _bare_ok(c)}, outcomes


# ---------------------------------------------------------------------------- diverge
def test_diverge_compares_sequence_intermediates():
    """Each tensor of a sequence intermediate is compared on its own (named ``s[0]``...), in both
    directions, and nothing diverges between two backends that agree."""
    from mlms_ir.divergence import diverge

    for backend, reference in (("ort", "reference"), ("reference", "ort")):
        r = diverge(SEQ_OPS, backend, reference, inputs=FEEDS["seq_ops"])
        assert r.first_divergent is None and any(t.tensor.startswith("s[") for n in r.nodes for t in n.tensors)
