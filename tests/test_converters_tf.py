"""TensorFlow/Keras to ONNX through tf2onnx: Keras models, SavedModels, tf.functions, the numeric check.

TensorFlow and torch do not share a process here: importing triton (through torchvision) after
TensorFlow crashes the interpreter. So each test converts in a fresh Python process and reports
back as JSON; the checks on the ONNX files run here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import onnx
import pytest

import mlms_ir

#: Each test converts in a fresh process that imports TensorFlow (seconds each).
pytestmark = pytest.mark.slow

PRELUDE = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
from mlms_ir.converters import ConversionError
from mlms_ir.converters.tensorflow import from_function, from_keras, from_saved_model

def keras_cnn():
    tf.keras.utils.set_random_seed(0)
    bias = tf.keras.initializers.RandomNormal(seed=1)  # non-zero: tf2onnx drops an Add of zeros
    inp = tf.keras.Input((8, 8, 1), name="image")
    x = tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv", bias_initializer=bias)(inp)
    x = tf.keras.layers.Flatten()(x)
    out = tf.keras.layers.Dense(10, name="logits", bias_initializer=bias)(x)
    return tf.keras.Model(inp, out, name="tiny_cnn")

def error_of(f):
    try:
        f()
    except ConversionError as exc:
        return str(exc)
    return None

out = {}
"""


@pytest.fixture(scope="module", autouse=True)
def _tensorflow():
    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
        if os.environ.get("CI"):
            pytest.fail("tensorflow-cpu and tf2onnx are missing: CI must run these tests (pip install -e '.[test]')")
        pytest.skip("tensorflow-cpu and tf2onnx are not installed (pip install 'mlms_ir[tensorflow]')")


def _tf(tmp_path, body: str) -> dict:
    script = PRELUDE + f"tmp = {str(tmp_path)!r}\n" + textwrap.dedent(body) + "\nprint('RESULT ' + json.dumps(out, default=str))\n"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in reversed(r.stdout.splitlines()) if x.startswith("RESULT "))
    return json.loads(line[7:])


def test_keras_model_with_dynamic_batch_and_provenance(tmp_path):
    out = _tf(tmp_path, """
        model = keras_cnn()
        res = from_keras(model, os.path.join(tmp, "k.onnx"))
        out.update(path=str(res.path), err=res.max_abs_error, batches=res.checked_batches, prov=res.provenance,
                   params=model.count_params(), version=tf.__version__)
    """)
    assert out["err"] < 1e-4 and out["batches"] == [2, 3] and out["prov"]["source_framework"] == "tensorflow"
    m = onnx.load(out["path"])
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["mlms_ir.source_framework"] == "tensorflow" and meta["mlms_ir.framework_version"] == out["version"]
    assert meta["mlms_ir.source"] == "keras model 'tiny_cnn'" and "mlms_ir.max_abs_error" in meta
    assert [i.name for i in m.graph.input] == ["image"] and m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    a = mlms_ir.analyze(out["path"], batch=1)
    assert a.totals.params == out["params"] == 4 * 9 + 4 + 144 * 10 + 10
    assert a.totals.macs == 6 * 6 * 4 * 9 + 144 * 10  # conv: 6x6x4 outputs of 3x3x1 each; then the dense layer


def test_saved_model_signature(tmp_path):
    out = _tf(tmp_path, """
        keras_cnn().export(os.path.join(tmp, "sm"))
        res = from_saved_model(os.path.join(tmp, "sm"), os.path.join(tmp, "sm.onnx"))
        out.update(path=str(res.path), err=res.max_abs_error,
                   nosig=error_of(lambda: from_saved_model(os.path.join(tmp, "sm"), os.path.join(tmp, "x.onnx"), signature="nope")),
                   notdir=error_of(lambda: from_saved_model(tmp, os.path.join(tmp, "x.onnx"))))
    """)
    m = onnx.load(out["path"])
    assert [o.name for o in m.graph.output] == ["output_0"] and out["err"] < 1e-4
    assert "no signature 'nope'; it has: serve, serving_default" in out["nosig"]
    assert "is not a SavedModel directory" in out["notdir"]


def test_tf_function_with_two_inputs(tmp_path):
    out = _tf(tmp_path, """
        @tf.function
        def f(a, b):
            return tf.nn.softmax(tf.matmul(a, b) * 0.5, axis=-1), tf.reduce_sum(a, axis=1)

        sig = [tf.TensorSpec([None, 3], tf.float32, name="a"), tf.TensorSpec([3, 5], tf.float32, name="b")]
        res = from_function(f, sig, os.path.join(tmp, "f.onnx"), output_names=["probs", "rowsum"])
        out.update(path=str(res.path), err=res.max_abs_error)
    """)
    m = onnx.load(out["path"])
    assert [o.name for o in m.graph.output] == ["probs", "rowsum"] and [i.name for i in m.graph.input] == ["a", "b"]
    assert mlms_ir.analyze(out["path"], batch=2).totals.macs >= 2 * 3 * 5


def test_a_wrong_conversion_is_caught(tmp_path):
    out = _tf(tmp_path, """
        model = keras_cnn()
        fn = tf.function(lambda x: model(x, training=False))
        sig = [tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")]
        out["error"] = error_of(lambda: from_function(fn, sig, os.path.join(tmp, "bad.onnx"),
                                                      _source_call=lambda x: model(x, training=False) + 0.01))
    """)
    assert "differs from TensorFlow by up to" in out["error"]
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_convert_keras_file(tmp_path):
    _tf(tmp_path, """
        inp = tf.keras.Input((4,), name="x")
        tf.keras.Model(inp, tf.keras.layers.Dense(3, name="y", bias_initializer="ones")(inp)).save(os.path.join(tmp, "m.keras"))
    """)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "convert", str(tmp_path / "m.keras"), "--framework", "keras"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().startswith(f"{tmp_path / 'm.onnx'}: exporter tf2onnx") and "(batch 2, 3)" in r.stdout
    assert mlms_ir.analyze(str(tmp_path / "m.onnx"), batch=1).totals.params == 4 * 3 + 3
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "convert", str(tmp_path / "no.keras"), "--framework", "keras"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().endswith(f"no Keras file '{tmp_path / 'no.keras'}'")
