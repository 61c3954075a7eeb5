"""Accuracy replication: the embedded digits model for real on two backends, an MNIST-format set end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlms_ir.datasets import open_dataset
from mlms_ir.datasets.preprocess import DIGITS, Preprocess
from mlms_ir.evaluate import evaluate, tolerance_for, verdict
from mlms_ir.store import Store
from mlms_ir.zoo import builtin_manifest, builtin_path

from test_datasets import write_idx


def test_digits_model_replicates_its_recorded_accuracy_on_two_backends():
    man = builtin_manifest()
    rep = evaluate(str(builtin_path()), open_dataset("digits"), ["ort", "reference", "nosuch"], preprocess=DIGITS, batch_size=64,
                   reference={"top1": man["accuracy"]["top1"], "top5": man["accuracy"]["top5"]})
    ort, ref, bad = rep.results
    for r in (ort, ref):
        assert r.status == "ok" and r.samples == 450
        assert r.top1 == pytest.approx(man["accuracy"]["top1"], abs=1e-12) and r.correct_top1 == 444
        assert r.top5 == 1.0 and r.verdict.startswith("replicated") and r.images_per_s > 0
    assert bad.status == "failed" and "unknown backend 'nosuch'" in bad.error
    assert rep.dataset == {"name": "digits", "source": "sklearn.datasets.load_digits (test split)", "samples": 450, "classes": 10}


def test_tolerance_is_the_99_percent_interval():
    assert tolerance_for(0.75, 50_000) == pytest.approx(2.5758 * (0.75 * 0.25 / 50_000) ** 0.5)
    assert tolerance_for(0.999, 10**7) == 0.002  # never below 0.2 pp
    assert verdict(0.80, 0.76, 0.01).startswith("not replicated: +4.00 pp")


def _template_model(templates: np.ndarray) -> onnx.ModelProto:
    """Scores = Flatten(x) @ templates^T - |templates|^2/2: the nearest template wins (a linear classifier)."""
    t = templates.reshape(len(templates), -1).astype(np.float32)
    w = numpy_helper.from_array(t.T.copy(), "w")
    b = numpy_helper.from_array((-0.5 * (t * t).sum(1)).astype(np.float32), "b")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["logits"])]
    g = helper.make_graph(nodes, "templates", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_an_mnist_format_set_end_to_end(tmp_path):
    rng = np.random.default_rng(1)
    templates = rng.integers(0, 256, (10, 28, 28)).astype(np.float32)
    labels = np.arange(100, dtype=np.uint8) % 10
    images = np.clip(templates[labels] + rng.normal(0, 20, (100, 28, 28)), 0, 255).astype(np.uint8)
    images[:7] = templates[(labels[:7] + 1) % 10].astype(np.uint8)  # seven drawn from the wrong class
    root = tmp_path / "mnist"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", images, gz=True)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels, gz=True)
    model = tmp_path / "m.onnx"
    onnx.save(_template_model(templates / 255.0), model)
    rep = evaluate(str(model), open_dataset("mnist", root), ["ort", "reference"], preprocess=Preprocess(), batch_size=16,
                   reference={"top1": 0.93})
    # top-5 worked out independently: the same scores in numpy, on the same /255 pixels
    t = (templates / 255.0).reshape(10, -1)
    scores = (images.reshape(100, -1) / np.float32(255)) @ t.T - 0.5 * (t * t).sum(1)
    top5 = int((np.argsort(-scores, axis=1)[:, :5] == labels[:, None]).any(1).sum())
    assert 93 <= top5 < 100
    for r in rep.results:
        assert (r.samples, r.correct_top1, r.top1) == (100, 93, 0.93) and r.correct_top5 == top5
        assert r.verdict == "replicated (+0.00 pp, within ±6.57)"
    assert rep.batch_size == 16  # 100 = 6 x 16 + 4: the last batch padded, its padding not scored


@pytest.mark.slow
def test_cli_evaluate_json_and_the_store(tmp_path):
    db = tmp_path / "s.sqlite"
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "evaluate", "--backends", "ort,reference", "--limit", "100",
                        "--format", "json", "--store", str(db)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["dataset"]["samples"] == 100 and [x["backend"] for x in d["results"]] == ["ort", "reference"]
    assert all(0.9 < x["top1"] <= 1.0 and x["verdict"].startswith("replicated") for x in d["results"])
    with Store(db) as st:
        runs = st.list(kind="evaluate")
        assert len(runs) == 2 and runs[0].summary["dataset"] == "digits" and runs[0].summary["top1"] == d["results"][1]["top1"]
    bad = subprocess.run([sys.executable, "-m", "mlms_ir", "evaluate", "--dataset", "mnist", "--root", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("mlms_ir: error: no folder") and "Traceback" not in bad.stderr
