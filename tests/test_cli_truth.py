"""What ``run``, ``profile`` and ``diverge`` say is what a careful reader would say: no figure where
nothing was measured, the tolerance of the precision the model computes in, the iterations the
harness really ran, the settings a result was made with, and one plain line for a flag out of its
range (each found by an audit driving the commands with odd but legal models)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlms_ir.cli import main
from mlms_ir.comparator import compare_outputs, model_precision, tensor_diff
from mlms_ir.divergence import diverge
from mlms_ir.inputs import random_feeds
from mlms_ir.ir import load
from mlms_ir.runner import run_backends
from mlms_ir.store import Store, records_from_divergence, records_from_runs

RNG = np.random.default_rng(0)


def _save(tmp_path, name: str, nodes, inputs, outputs, inits=(), opset: int = 17) -> str:
    m = helper.make_model(helper.make_graph(nodes, name, inputs, outputs, list(inits)), opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, str(path))
    return str(path)


def mlp(tmp_path, dtype=TensorProto.FLOAT, np_dtype=np.float32) -> str:
    """x[N,16] -> MatMul -> Relu -> MatMul -> Tanh, in ``dtype``."""
    w1 = numpy_helper.from_array((RNG.standard_normal((16, 16)) * 0.3).astype(np_dtype), "w1")
    w2 = numpy_helper.from_array((RNG.standard_normal((16, 8)) * 0.3).astype(np_dtype), "w2")
    return _save(tmp_path, "mlp16" if dtype == TensorProto.FLOAT16 else "mlp",
                 [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
                  helper.make_node("MatMul", ["r", "w2"], ["m"], name="mm2"), helper.make_node("Tanh", ["m"], ["y"], name="tanh")],
                 [helper.make_tensor_value_info("x", dtype, ["batch", 16])], [helper.make_tensor_value_info("y", dtype, ["batch", 8])],
                 [w1, w2])


def zero_size(tmp_path) -> str:
    """Relu of x[0,3]: a model whose one tensor has no element (its leading dim is fixed at 0)."""
    return _save(tmp_path, "zero", [helper.make_node("Relu", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 3])])


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- flags out of range
@pytest.mark.parametrize("args,said", [
    (["run", "--seed", "-1"], "--seed must be an integer >= 0, got '-1'"),
    (["run", "--min-time", "-1"], "--min-time must be a finite number >= 0, got '-1'"),
    (["profile", "--seed", "-3"], "--seed must be an integer >= 0, got '-3'"),
    (["profile", "--top", "-1"], "--top must be an integer >= 1, got '-1'"),
    (["profile", "--top", "0"], "--top must be an integer >= 1, got '0'"),
    (["diverge", "--atol", "-1"], "--atol must be a finite number >= 0, got '-1'"),
    (["diverge", "--rtol", "nan"], "--rtol must be a finite number >= 0, got 'nan'"),
    (["diverge", "--seed", "-1"], "--seed must be an integer >= 0, got '-1'"),
    (["backends", "--device", "bogus"], "no backend runs on device 'bogus'; the devices are: cpu, cuda, tensorrt"),
])
def test_a_flag_out_of_range_is_one_line(tmp_path, capsys, args, said):
    code, _, err = _run(capsys, *args, "--store", "none") if args[0] != "backends" else _run(capsys, *args)
    assert code == 2 and err.strip() == f"mlms_ir: error: {said}", err
    assert "Traceback" not in err


def test_the_api_refuses_a_negative_seed_too(tmp_path):
    from mlms_ir.errors import MlmsIrError

    with pytest.raises(MlmsIrError, match="seed of the random inputs must be an integer >= 0"):
        random_feeds(load(mlp(tmp_path), batch=2), seed=-1)


# ----------------------------------------------------------------------------- nothing to measure
def test_outputs_with_no_element_have_no_error_figure():
    """numpy's own answer for the max of nothing is an error, not 0: an empty output agrees (no
    element is beyond the tolerance) and has no error figure."""
    empty = np.zeros((0, 3), np.float32)
    res = compare_outputs({"y": empty}, {"y": empty.copy()})
    assert res["agree"] is True and res["max_abs_diff"] is None and res["max_rel_diff"] is None
    assert res["outputs_compared"] == 1 and res["elements_compared"] == 0
    # with a non-empty output beside it, the figures are that output's
    both = compare_outputs({"y": empty, "z": np.ones(2, np.float32)}, {"y": empty, "z": np.array([1, 1.5], np.float32)})
    assert both["max_abs_diff"] == 0.5 and both["agree"] is False
    # a shape that differs is still an infinite error, empty or not
    assert compare_outputs({"y": empty}, {"y": np.zeros((1, 3), np.float32)})["max_abs_diff"] == math.inf
    d = tensor_diff("y", empty, empty)
    assert (d.max_abs, d.max_rel, d.mean_abs, d.rmse, d.cosine, d.exceeds) == (None, None, None, None, None, False)


def test_a_cosine_needs_two_nonzero_vectors():
    zero = np.zeros(4, np.float32)
    assert tensor_diff("t", zero, zero).cosine is None
    assert tensor_diff("t", zero, zero).max_abs == 0.0
    nan_only = np.full(3, np.nan, np.float32)  # no finite element on either side: no angle
    assert tensor_diff("t", nan_only, nan_only).cosine is None
    a = np.array([1.0, 2.0, np.nan], np.float32)
    assert tensor_diff("t", a, a).cosine == pytest.approx(1.0)  # the finite elements' angle


def test_run_of_a_zero_size_model(tmp_path, capsys):
    path = zero_size(tmp_path)
    # a leading dim fixed at 0 is a fixed dim, not a dynamic one: --batch cannot apply
    code, _, err = _run(capsys, "run", path, "--batch", "2", "--store", "none")
    assert code == 2 and "every input has a fixed leading dim ('x' (0)), so --batch 2 cannot apply" in err
    table = tmp_path / "run.txt"  # a file: 160 columns whatever the terminal (or pytest's capture) is
    code, _, err = _run(capsys, "run", path, "--backends", "ort,reference", "--iters", "3", "--warmup", "1", "--store", "none",
                        "--format", "table", "-o", str(table))
    assert code == 0, err
    row = next(line for line in table.read_text().splitlines() if line.strip().startswith("reference"))
    assert "equal (no elements)" in row and "0.00e+00" not in row
    code, out, _ = _run(capsys, "run", path, "--backends", "ort,reference", "--iters", "3", "--warmup", "1", "--store", "none",
                        "--format", "json")
    ref = json.loads(out)["runs"][1]
    assert ref["max_abs_diff"] is None and ref["outputs_agree"] is True


def test_diverge_of_a_model_without_nodes_says_nothing_was_compared(tmp_path, capsys):
    path = _save(tmp_path, "empty", [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])])
    code, out, err = _run(capsys, "diverge", path, "--batch", "2", "--store", "none")
    assert code == 0, err
    assert "none: no node output was compared" in out and "every tensor within tolerance" not in out
    assert "0 tensors" in out and "top 15 nodes" not in out


def test_unbound_dims_are_named(tmp_path, capsys):
    code, _, err = _run(capsys, "run", mlp(tmp_path), "--store", "none")
    assert code == 2 and "input 'x' has unbound dims (batchx16)" in err


# ----------------------------------------------------------------------------- the model's precision
def test_a_half_precision_model_is_judged_in_half_precision(tmp_path):
    """An fp16 export: its backends round differently by units of fp16's last place (about 1e-3
    relative), which fp32's tolerance would call a disagreement."""
    path = mlp(tmp_path, TensorProto.FLOAT16, np.float16)
    g = load(path, batch=4)
    assert model_precision(g) == "fp16" and model_precision(load(mlp(tmp_path), batch=4)) == "fp32"
    rep = run_backends(path, ["ort", "reference"], batches=[4], iterations=2, warmup=0, system=False)
    assert (rep.settings["atol"], rep.settings["rtol"], rep.settings["model_precision"]) == (1e-3, 1e-2, "fp16")
    assert all(r.status == "ok" for r in rep.runs) and rep.runs[1].outputs_agree is True
    assert {r.precision for r in records_from_runs(rep)} == {"fp16"}
    # asked tolerances still win
    assert run_backends(path, ["ort"], batches=[4], iterations=1, warmup=0, system=False, atol=0.5).settings["atol"] == 0.5
    d = diverge(path, "ort", "reference", batch=4)
    assert (d.precision, d.atol, d.rtol) == ("fp16", 1e-3, 1e-2)
    assert d.first_divergent is None, d.first_divergent
    # an fp32 model is unchanged
    d32 = diverge(mlp(tmp_path), "ort", "reference", batch=4)
    assert (d32.precision, d32.atol, d32.rtol) == ("fp32", 1e-4, 1e-3)


# ----------------------------------------------------------------------------- what a result records
def test_diverge_records_its_inputs(tmp_path):
    """Two diverge runs at different batch sizes are two different results in the store."""
    path = mlp(tmp_path)
    a, b = diverge(path, "ort", batch=1, seed=3), diverge(path, "ort", batch=3)
    assert (a.batch, a.inputs, a.seed, a.input_shapes) == (1, "random", 3, {"x": [1, 16]})
    assert (b.batch, b.input_shapes) == (3, {"x": [3, 16]})
    ra, rb = records_from_divergence([a], system={}) + records_from_divergence([b], system={})
    assert (ra.batch, rb.batch) == (1, 3)
    assert ra.settings["input_shapes"] == {"x": [1, 16]} and ra.settings["seed"] == 3 and ra.settings["inputs"] == "random"
    store = Store(tmp_path / "s.sqlite")
    runs = [store.add(r) for r in (ra, rb)]
    assert [r.batch for r in runs] == [1, 3]
    given = diverge(path, "ort", inputs={"x": np.ones((2, 16), np.float32)})
    assert (given.inputs, given.seed, given.batch) == ("given", None, 2)


def test_the_footer_gives_the_iterations_run(tmp_path, capsys):
    table = tmp_path / "run.txt"  # 160 columns: the footer on one line
    code, _, err = _run(capsys, "run", mlp(tmp_path), "--batch", "2", "--iters", "1", "--warmup", "1", "--min-time", "0.2",
                        "--store", "none", "--format", "table", "-o", str(table))
    assert code == 0, err
    footer = next(line for line in table.read_text().splitlines() if "warm-up runs" in line)
    assert not footer.startswith("1 iterations") and "(at least 1 and 0.2 s)" in footer, footer
    n = int(footer.split(" iterations")[0].replace(",", "").split("-")[0])
    assert n > 1
    code, _, _ = _run(capsys, "run", mlp(tmp_path), "--batch", "2", "--iters", "4", "--warmup", "0", "--store", "none",
                      "--format", "table", "-o", str(table))
    assert "4 iterations after 0 warm-up runs" in table.read_text()


@pytest.mark.skipif(importlib.util.find_spec("mlperf_loadgen") is None, reason="mlcommons-loadgen is not installed")
def test_a_users_query_cap_is_named_as_the_cause(tmp_path):
    from mlms_ir.scenarios import run_scenarios

    rep = run_scenarios(mlp(tmp_path), ["ort"], scenario="singlestream", duration_s=1.0, max_queries=20, max_batch=1, system=False)
    rec = rep.runs[0]
    assert rec.status == "ok" and rec.valid is False
    assert any("the cap --max-queries set" in r for r in rec.invalid_reasons), rec.invalid_reasons
    assert not any("far more than the SUT serves" in r for r in rec.invalid_reasons)
    assert not any(r.startswith("Decrease the expected latency") for r in rec.invalid_reasons)


# ----------------------------------------------------------------------------- conversions and agents
def test_float16_conversion_keeps_what_float16_holds(tmp_path, caplog):
    """onnxconverter-common clamps constants to 1e4 by default: 2e4, which float16 holds exactly,
    became 1e4. Only values beyond float16's range saturate (to 65504), said in one line."""
    from mlms_ir.backends.ort import _with_precision

    c = numpy_helper.from_array(np.array([2e4, 1e5, 3e-6, 1e-9], np.float32), "c")
    path = _save(tmp_path, "consts", [helper.make_node("Mul", ["x", "c"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                 [c])
    with caplog.at_level("WARNING", logger="mlms_ir.backends.ort"):
        m = onnx.load_model_from_string(_with_precision(path, "fp16"))
    got = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "c"))
    assert got.dtype == np.float16 and got[0] == 2e4 and got[1] == 65504 and got[2] == np.float16(3e-6) and got[3] == 2.0 ** -24
    assert [r.getMessage() for r in caplog.records] == [
        "converting to float16 saturated constants beyond float16's range to +-65504, as a float16 model holds them",
        "converting to float16 raised nonzero constants below float16's smallest value (2^-24) to it"]
    # values float16 holds, at its bounds included, convert without a word
    d = numpy_helper.from_array(np.array([65504, -65504, 2.0 ** -24, 0.5], np.float32), "c")
    path = _save(tmp_path, "bounds", [helper.make_node("Mul", ["x", "c"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                 [d])
    caplog.clear()
    with caplog.at_level("WARNING", logger="mlms_ir.backends.ort"):
        _with_precision(path, "fp16")
    assert caplog.records == []


def test_the_reference_backend_prints_no_numpy_warning(tmp_path, recwarn):
    from mlms_ir.backends import registry

    path = _save(tmp_path, "log", [helper.make_node("Log", ["x"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    with registry.get("reference").prepare(load(path), "cpu") as s:
        y = s.run({"x": np.array([-1.0, 0.0, 1.0], np.float32)})["y"]
    assert np.isnan(y[0]) and y[1] == -np.inf and y[2] == 0.0
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_onnx_tf_runs_a_model_of_todays_ir_version(tmp_path):
    """onnx-tf's pinned onnx checks IR 11 at most and refused a model saved by today's onnx for its
    IR version alone; the agent lowers it (the ops are what the framework is asked about)."""
    from conftest import agent_backend

    from mlms_ir.backends.worker import OnnxTfBackend

    be = agent_backend(OnnxTfBackend)
    path = mlp(tmp_path)
    m = onnx.load(path)
    m.ir_version = onnx.IR_VERSION
    onnx.save(m, path)
    assert onnx.IR_VERSION > 11
    g = load(path, batch=2)
    feeds = random_feeds(g, 0)
    with be.prepare(g, "cpu") as s:
        got = s.run(feeds)["y"]
    from mlms_ir.backends import registry

    with registry.get("ort").prepare(g, "cpu") as s:
        want = s.run(feeds)["y"]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_an_opset_the_exporter_did_not_write_is_not_passed_off(tmp_path):
    """torch's dynamo exporter writes its own opset (18) when it cannot convert to the one asked:
    the conversion must not hand that file back as opset 13."""
    torch = pytest.importorskip("torch")
    from mlms_ir.converters.torch import ConversionError, from_torch, opset_of

    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    r = from_torch(m, torch.randn(2, 4), tmp_path / "m13.onnx", opset=13)
    assert opset_of(tmp_path / "m13.onnx") == 13
    if r.exporter == "legacy":  # dynamo could not write 13: said, then the legacy exporter did
        assert "not the opset 13 asked for" in (r.fallback_reason or "")
    with pytest.raises(ConversionError, match="opset must be an integer from 7 to"):
        from_torch(m, torch.randn(2, 4), tmp_path / "m3.onnx", opset=3)


# ----------------------------------------------------------------------------- a runtime that never ends or dies
def endless_loop(tmp_path) -> str:
    """A Loop of 2^40 iterations (cond stays true): y = x + 1 each time. It runs for hours."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [3])],
        [numpy_helper.from_array(np.ones(3, np.float32), "one")])
    consts = [numpy_helper.from_array(np.array(2**40, np.int64), "trips"), numpy_helper.from_array(np.array(True), "cond")]
    return _save(tmp_path, "endless", [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                 consts)


def test_timeout_stops_a_backend_and_the_others_go_on(tmp_path, capsys):
    path = endless_loop(tmp_path)
    code, out, err = _run(capsys, "run", path, "--backends", "ort", "--iters", "1", "--warmup", "0", "--timeout", "1", "--store", "none")
    assert code == 2 and "no backend ran: ort: the ort backend ran past 1 s and was stopped" in err, err
    code, _, err = _run(capsys, "run", path, "--timeout", "0", "--store", "none")
    assert code == 2 and "--timeout must be a positive number of seconds, not '0'" in err


def test_one_backend_that_aborts_fails_its_row_not_the_process(tmp_path, monkeypatch):
    """A runtime's C++ abort (ORT's on a failed allocation) used to end the process when one
    backend ran alone, in-process; it is measured in a child like several are."""
    import os

    from mlms_ir.backends.ort import OrtSession

    monkeypatch.setattr(OrtSession, "measure", lambda self, *a, **k: os.abort())
    rep = run_backends(mlp(tmp_path), ["ort"], batches=[2], iterations=1, warmup=0, system=False)
    assert rep.runs[0].status == "failed" and "crashed (SIGABRT)" in rep.runs[0].error
