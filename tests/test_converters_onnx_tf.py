"""ONNX to a TensorFlow SavedModel through onnx-tf in its agent environment, checked against onnxruntime.

The conversions need the onnx-tf environment (``bash tools/make_agent_envs.sh onnx-tf``) and skip,
saying so, when it is absent; the argument checks and the failures of the environment (missing,
broken, crashing, hanging: fake interpreters) always run. Importing TensorFlow in that environment
takes seconds, so each model is converted once per module and the tests share the results.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import mlms_ir.converters.onnx_tf as otf
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mlms_ir.converters import ConversionError
from mlms_ir.converters.onnx_tf import (
    PROVENANCE_FILE,
    SavedModelResult,
    onnx_tf_python,
    read_provenance,
    to_saved_model,
)
from mlms_ir.zoo import builtin_path
from onnx import TensorProto, helper, numpy_helper

from mlms_ir.cli import main as cli_main


# ---------------------------------------------------------------------------- models
def dyn_model() -> onnx.ModelProto:
    """MatMul + Add + Relu and a Softmax, two outputs; input ``input.1`` is [N, seq, 8] (N the batch,
    seq bound by dims), ``mask`` [N, seq, 1]; the name ``input.1`` is one TensorFlow cannot take as an argument."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array((rng.standard_normal((8, 4)) * 0.5).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["input.1", "w"], ["h"]),
            helper.make_node("Add", ["h", "b"], ["h2"]),
            helper.make_node("Relu", ["h2"], ["hidden:0"]),
            helper.make_node("Mul", ["hidden:0", "mask"], ["masked"]),
            helper.make_node("Softmax", ["masked"], ["probs"], axis=-1),
        ],
        "dyn",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", "seq", 8]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", "seq", 1])],
        [helper.make_tensor_value_info("hidden:0", TensorProto.FLOAT, ["N", "seq", 4]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "seq", 4])],
        [w, b],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7  # what onnx 1.18 in the agent env reads
    onnx.checker.check_model(m)
    return m


def unique_model() -> onnx.ModelProto:
    """Unique (opset 11): onnxruntime runs it, onnx-tf 1.10 has no handler for it (nor does
    mlms_ir.backends.onnx_tf_compat add one)."""
    g = helper.make_graph([helper.make_node("Unique", ["x"], ["y"], sorted=1)], "uniq",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def fake_python(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "fakepython"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


# ---------------------------------------------------------------------------- shared conversions
@pytest.fixture(scope="module")
def env_python():
    try:
        return onnx_tf_python()
    except ConversionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI creates the agent environments first")
        pytest.skip(f"onnx-tf agent env absent: {exc}")


@pytest.fixture(scope="module")
def converted(env_python, tmp_path_factory):
    """The embedded digits model (a path) and the dynamic model (a ModelProto, seq bound to 5), converted once."""
    d = tmp_path_factory.mktemp("onnx_tf")
    digits = to_saved_model(builtin_path(), d / "digits")
    dyn = to_saved_model(dyn_model(), d / "dyn", dims={"seq": 5})
    return {"digits": digits, "dyn": dyn, "dir": d}


# ---------------------------------------------------------------------------- conversions
@pytest.mark.slow
def test_digits_model_to_saved_model(converted):
    r = converted["digits"]
    assert isinstance(r, SavedModelResult) and r.exporter == "onnx-tf"
    assert r.max_abs_error is not None and r.max_abs_error < 1e-4, r.max_abs_error
    assert r.checked_batches == [2, 3]  # the digits model's batch is dynamic
    files = r.to_dict()["files"]
    assert {"saved_model.pb", PROVENANCE_FILE, "variables/variables.index"} <= set(files)
    assert r.summary().startswith(f"{r.path}: exporter onnx-tf, max abs error ") and "(batch 2, 3)" in r.summary()
    assert not r.warnings


def test_provenance_file(converted):
    r = converted["digits"]
    p = json.loads((r.path / PROVENANCE_FILE).read_text())
    assert p == read_provenance(r.path) == r.provenance
    assert (p["source_framework"], p["target_framework"], p["format"], p["converter"]) == ("onnx", "tensorflow", "saved_model", "onnx-tf")
    assert p["onnx_tf_version"].startswith("1.10") and p["tensorflow_version"].startswith("2.15") and p["onnx_version"].startswith("1.1")
    assert p["numpy_version"].startswith("1.")  # the env's, not ours
    assert p["source_path"] == str(builtin_path().resolve())
    assert p["source_sha256"] == hashlib.sha256(builtin_path().read_bytes()).hexdigest()
    assert p["max_abs_error"] == r.max_abs_error and p["checked_batches"] == [2, 3] and p["checked"] is True
    assert (p["atol"], p["rtol"]) == (1e-4, 1e-3) and p["reference"].startswith("onnxruntime ")
    assert p["signature"] == "serving_default"
    assert p["signature_inputs"] == {"image": {"dtype": "float32", "shape": [None, 1, 8, 8]}}
    assert p["signature_outputs"] == {"logits": {"dtype": "float32", "shape": [None, 10]}}
    assert dt.datetime.fromisoformat(p["converted_at"]).tzinfo is not None


def test_dynamic_model_with_renamed_input(converted):
    r = converted["dyn"]
    assert r.max_abs_error < 1e-5 and r.checked_batches == [2, 3]
    p = r.provenance
    assert p["source"] == "<onnx.ModelProto>" and p["source_path"] is None
    assert p["source_sha256"] == hashlib.sha256(dyn_model().SerializeToString()).hexdigest()
    assert p["dims"] == {"seq": 5} and p["source_opset"] == 13
    assert p["renamed_inputs"] == {"input.1": "input_1"} and "input.1 -> input_1" in r.warnings[0]
    assert p["signature_inputs"]["input_1"]["shape"] == [None, None, 8]  # batch and seq stay dynamic in the SavedModel
    assert set(p["signature_outputs"]) == {"hidden:0", "probs"}


RUN_SAVED_MODELS = textwrap.dedent("""
    import json, sys, numpy as np, tensorflow as tf
    jobs = json.loads(sys.argv[1])
    for job in jobs:
        fn = tf.saved_model.load(job["dir"]).signatures["serving_default"]
        with np.load(job["inputs"]) as d:
            out = fn(**{k: tf.constant(d[k]) for k in d.files})
        np.savez(job["outputs"], **{k.replace(":", "__").replace("/", "__"): v.numpy() for k, v in out.items()})
""")


def test_saved_models_match_onnxruntime_at_other_sizes(converted, env_python, tmp_path):
    """Independently of the converter's own check: the SavedModels, loaded in the env, against onnxruntime
    at a batch and a sequence length the check did not use."""
    rng = np.random.default_rng(7)
    feeds = {
        "digits": ({"image": rng.standard_normal((5, 1, 8, 8)).astype(np.float32)}, builtin_path().read_bytes(), {}),
        "dyn": ({"input.1": rng.standard_normal((4, 7, 8)).astype(np.float32), "mask": rng.random((4, 7, 1)).astype(np.float32)},
                dyn_model().SerializeToString(), {"input.1": "input_1"}),
    }
    jobs = []
    for name, (f, _, renamed) in feeds.items():
        np.savez(tmp_path / f"{name}_in.npz", **{renamed.get(k, k): v for k, v in f.items()})
        jobs.append({"dir": str(converted[name].path), "inputs": str(tmp_path / f"{name}_in.npz"), "outputs": str(tmp_path / f"{name}_out.npz")})
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    r = subprocess.run([str(env_python), "-c", RUN_SAVED_MODELS, json.dumps(jobs)], check=False, capture_output=True, text=True,
                       timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for name, (f, model, _) in feeds.items():
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, f)))
        with np.load(tmp_path / f"{name}_out.npz") as got:
            for k, w in want.items():
                g = got[k.replace(":", "__")]
                assert g.shape == w.shape
                np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_mismatch_fails_and_keeps_the_old_output(converted, tmp_path, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(converted["dyn"].path, old)
    before = (old / PROVENANCE_FILE).read_text()
    real = otf._reference

    def off_by_a_bit(*a, **k):
        return {key: v + np.float32(0.01) for key, v in real(*a, **k).items()}

    monkeypatch.setattr(otf, "_reference", off_by_a_bit)
    with pytest.raises(ConversionError, match=r"differs from onnxruntime by up to 0\.01 in output 'hidden:0' at batch 2"):
        to_saved_model(dyn_model(), old, dims={"seq": 5}, overwrite=True)
    assert (old / PROVENANCE_FILE).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no staging folder left behind


def test_an_op_onnx_tf_cannot_convert(env_python, tmp_path):
    onnx.save(unique_model(), tmp_path / "u.onnx")
    with pytest.raises(ConversionError, match="onnx-tf could not convert the model: .*Unique is not implemented") as e:
        to_saved_model(tmp_path / "u.onnx", tmp_path / "u")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.onnx"]


@pytest.mark.slow
def test_cli_converts_a_zoo_model(converted, tmp_path, capsys):
    out = tmp_path / "sm"
    shutil.copytree(converted["digits"].path, out)
    # an existing output: one plain line and exit 2, before TensorFlow is started
    assert cli_main(["convert", "zoo:digits-cnn", "--framework", "onnx", "--to", "savedmodel", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists and is not empty" in err and "--overwrite" in err
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "convert", "zoo:digits-cnn", "--to", "savedmodel", "--output", str(out),
                        "--overwrite"], check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"{out}: exporter onnx-tf, max abs error ") and r.stdout.count("\n") == 1
    assert read_provenance(out)["source"] == "zoo:digits-cnn"


@pytest.mark.parametrize("args, message", [
    (["m.onnx", "--framework", "onnx"], "already ONNX: add --to savedmodel"),
    (["m.onnx", "--to", "tflite"], "unknown --to 'tflite'"),
    (["resnet18", "--framework", "torchvision", "--to", "savedmodel"], "takes an ONNX model"),
    (["m.onnx", "--to", "savedmodel", "--batch", "2"], "--batch does not apply to --to savedmodel"),
    (["m.onnx", "--to", "savedmodel", "--dims", "seq"], "NAME=VALUE"),
    (["resnet18", "--dims", "seq=3"], "--dims and --overwrite are for --to savedmodel"),
    (["missing.onnx", "--to", "savedmodel"], "no ONNX file 'missing.onnx'"),
    (["zoo:no-such-model", "--to", "savedmodel"], "no-such-model"),
])
def test_cli_bad_input_is_one_line(args, message, capsys):
    assert cli_main(["convert", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


# ---------------------------------------------------------------------------- errors that need no env
@pytest.fixture
def dyn_path(tmp_path):
    p = tmp_path / "dyn.onnx"
    onnx.save(dyn_model(), p)
    return p


def test_missing_env(dyn_path, tmp_path, monkeypatch):
    with pytest.raises(ConversionError, match=r"no onnx-tf environment at .*nope.*make_agent_envs\.sh onnx-tf"):
        to_saved_model(dyn_path, tmp_path / "out", dims="seq=3", python=tmp_path / "nope" / "python")
    monkeypatch.setenv("MLMS_IR_ONNX_TF_PYTHON", str(tmp_path / "env" / "python"))
    with pytest.raises(ConversionError, match=r"\$MLMS_IR_ONNX_TF_PYTHON"):
        to_saved_model(dyn_path, tmp_path / "out", dims="seq=3")
    assert not (tmp_path / "out").exists()


def test_broken_crashing_and_hanging_envs(dyn_path, tmp_path):
    # an env whose tensorflow does not import: the script reports the import stage
    fake_pkgs = tmp_path / "pkgs" / "tensorflow"
    fake_pkgs.mkdir(parents=True)
    (fake_pkgs / "__init__.py").write_text("raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n")
    (fake_pkgs.parent / "onnx_tf").mkdir()
    (fake_pkgs.parent / "onnx_tf" / "__init__.py").write_text("import tensorflow\n")
    py = fake_python(tmp_path, f'PYTHONPATH={fake_pkgs.parent} exec {sys.executable} "$@"')
    with pytest.raises(ConversionError, match=r"onnx-tf does not import in .*: ImportError: libtensorflow_framework"):
        to_saved_model(dyn_path, tmp_path / "out", dims="seq=3", python=py)
    py = fake_python(tmp_path, "echo 'Illegal instruction' >&2\nexit 132")
    with pytest.raises(ConversionError, match=r"crashed \(status 132\) .*: Illegal instruction"):
        to_saved_model(dyn_path, tmp_path / "out", dims="seq=3", python=py)
    py = fake_python(tmp_path, "sleep 30")
    with pytest.raises(ConversionError, match=r"took longer than 0\.5 s"):
        to_saved_model(dyn_path, tmp_path / "out", dims="seq=3", python=py, timeout=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.onnx", "fakepython", "pkgs"]


def test_bad_models_and_outputs(dyn_path, tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07\x12\xff\xff\xff this is not protobuf")
    with pytest.raises(ConversionError, match="is not a readable ONNX model"):
        to_saved_model(bad, tmp_path / "out")
    bad.write_text("")
    with pytest.raises(ConversionError, match="holds no ONNX graph"):
        to_saved_model(bad, tmp_path / "out")
    with pytest.raises(ConversionError, match="no ONNX file"):
        to_saved_model(tmp_path / "missing.onnx", tmp_path / "out")
    # the check needs every symbolic dim but the batch, and only dims the inputs have
    with pytest.raises(ConversionError, match=r"symbolic dim 'seq' \(dim 1\): bind it .*--dims seq=16"):
        to_saved_model(dyn_path, tmp_path / "out")
    with pytest.raises(ConversionError, match=r"no dim named 'sq'; their symbolic dims are: N, seq"):
        to_saved_model(dyn_path, tmp_path / "out", dims={"sq": 3})
    with pytest.raises(ConversionError, match="NAME=VALUE"):
        to_saved_model(dyn_path, tmp_path / "out", dims="seq")
    # the output folder
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ConversionError, match=r"already exists and is not empty: .*overwrite=True"):
        to_saved_model(dyn_path, tmp_path / "full", dims="seq=3")
    with pytest.raises(ConversionError, match="not replacing .*not a SavedModel folder"):
        to_saved_model(dyn_path, tmp_path / "full", dims="seq=3", overwrite=True)
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    with pytest.raises(ConversionError, match="exists and is not a folder"):
        to_saved_model(dyn_path, tmp_path / "full" / "notes.txt", dims="seq=3")


def test_input_plan_and_compare():
    m = dyn_model()
    plan, batches = otf._input_plan(m, {"seq": 5})
    assert batches == [2, 3] and [(n, s) for n, _, s in plan] == [("input.1", [None, 5, 8]), ("mask", [None, 5, 1])]
    plan, batches = otf._input_plan(m, {"seq": 5, "N": 4})  # binding the batch checks that size only
    assert batches == [4] and plan[0][2] == [4, 5, 8]
    ref = {"b2_0": np.array([1.0, np.nan, -np.inf], np.float32)}
    assert otf._compare(ref, {"b2_0": np.array([1.00001, np.nan, -np.inf], np.float32)}, ["y"], [2], 1e-4, 0) < 2e-5
    for bad in ([1.0, 0.0, -np.inf], [1.0, np.nan, np.inf], [1.0, np.nan, 0.0]):
        with pytest.raises(ConversionError, match="differs from onnxruntime by up to inf in output 'y' at batch 2"):
            otf._compare(ref, {"b2_0": np.array(bad, np.float32)}, ["y"], [2], 1e-4, 1e-3)
    with pytest.raises(ConversionError, match=r"by up to 0\.002 .*tolerance 0\.0001 \+ 0\.001\*\|ref\|"):
        otf._compare({"b2_0": np.ones(2)}, {"b2_0": np.array([1.0, 1.002])}, ["y"], [2], 1e-4, 1e-3)
    with pytest.raises(ConversionError, match=r"output 'y' has shape \(4,\) in the SavedModel but \(3,\) in onnxruntime"):
        otf._compare(ref, {"b2_0": np.zeros(4, np.float32)}, ["y"], [2], 1e-4, 0)


def test_symlinked_or_impossible_outputs_are_refused(tmp_path):
    """Checked before the environment starts: one line, nothing converted."""
    from mlms_ir.converters import ConversionError
    from mlms_ir.converters.onnx_tf import _prepare_out

    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConversionError, match="symbolic link"):
        _prepare_out(link, overwrite=True)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConversionError, match="is not a folder"):
        _prepare_out(afile / "out", overwrite=False)


def test_a_model_without_inputs(env_python, tmp_path):
    """Nothing to feed: the check still runs the SavedModel once (batch 1) and compares."""
    from onnx import TensorProto, helper, numpy_helper

    from mlms_ir.converters.onnx_tf import to_saved_model

    c = numpy_helper.from_array(np.array([-1.0, 0.0, 2.0], np.float32), "c")
    g = helper.make_graph([helper.make_node("Relu", ["c"], ["y"])], "noin", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [c])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path = tmp_path / "noin.onnx"
    onnx.save(m, path)
    r = to_saved_model(path, tmp_path / "sm", python=env_python)
    assert r.max_abs_error == 0.0 and r.checked_batches == [1]
