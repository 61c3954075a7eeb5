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
from mlms_ir.errors import MlmsIrError
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


# ------------------------------------------------------------------ the audit's defects, fixed


def _digits_variant(tmp_path, name: str, edit=None) -> str:
    """The embedded digits model, edited by ``edit(model)`` (None: a byte-identical copy)."""
    path = tmp_path / name
    if edit is None:
        path.write_bytes(builtin_path().read_bytes())
    else:
        m = onnx.load(builtin_path())
        edit(m)
        onnx.save(m, path)
    return str(path)


def _argmax_output(shape: list, keepdims: int):
    def edit(m: onnx.ModelProto) -> None:
        m.graph.node.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=keepdims))
        del m.graph.output[:]
        m.graph.output.append(helper.make_tensor_value_info("label", TensorProto.INT64, shape))
    return edit


def _cli_json(capsys, *args: str) -> tuple[int, dict | None, str]:
    from mlms_ir.cli import main

    rc = main(["evaluate", *args, "--store", "none", "--format", "json", "--noprogress"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else None), out.err


def test_a_model_without_a_manifest_gets_the_data_sets_pixel_range_and_is_told_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
    other = _digits_variant(tmp_path, "other.onnx", lambda m: setattr(m, "doc_string", "not the shipped file"))
    rc, d, err = _cli_json(capsys, other, "--dataset", "digits", "--limit", "100")
    assert rc == 0
    # digits pixels run 0..16: the default is 1/16 (1/255, the old default, scored 13% here)
    assert d["preprocess"]["scale"] == 1 / 16 and d["preprocess"]["layout"] == "NCHW"
    assert d["preprocess"]["source"] == "the digits data set's default" and d["preprocess"]["assumed"] == ["scale", "layout"]
    assert d["results"][0]["correct_top1"] == 97 and d["reference"] is None
    assert err.strip() == ("mlms_ir: warning: other.onnx has no manifest: assumed the preprocessing scale 1/16, layout NCHW "
                           "for digits; pass --preprocess if the model expects otherwise")
    # what the user gives is not assumed
    rc, d, err = _cli_json(capsys, other, "--dataset", "digits", "--limit", "100", "--preprocess", '{"scale": 0.0625}')
    assert d["preprocess"]["assumed"] == ["layout"] and d["preprocess"]["source"].startswith("--preprocess, the rest")
    assert "assumed the preprocessing layout NCHW for digits" in err
    # the API: no preprocessing given is the data set's default, every key of it assumed
    rep = evaluate(other, open_dataset("digits", limit=100))
    assert rep.results[0].correct_top1 == 97 and rep.preprocess["scale"] == 1 / 16
    assert (rep.preprocess["source"], rep.preprocess["assumed"]) == ("the digits data set's default", ["scale", "layout"])


def test_a_byte_identical_copy_of_the_embedded_model_gets_its_manifest(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
    rc, d, err = _cli_json(capsys, _digits_variant(tmp_path, "copy.onnx"), "--limit", "100")
    assert rc == 0 and err == ""
    assert d["dataset"]["name"] == "digits" and d["preprocess"]["scale"] == 1 / 16 and d["preprocess"]["assumed"] == []
    assert d["preprocess"]["source"] == "the manifest of digits-cnn (the file is identical to it)"
    assert d["reference"]["top1"] == builtin_manifest()["accuracy"]["top1"]
    assert d["results"][0]["correct_top1"] == 97 and d["results"][0]["verdict"].startswith("replicated")


def test_a_file_identical_to_a_built_zoo_model_gets_that_models_manifest(tmp_path, monkeypatch, capsys):
    from mlms_ir.cli.evaluate import _same_file_manifest
    from mlms_ir.zoo import manifest as zoo_manifest

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
    built = tmp_path / "cache" / "zoo" / "resnet18"
    built.mkdir(parents=True)
    (built / "model.onnx").write_bytes(b"an onnx file's bytes")
    (built / "build.json").write_text(json.dumps({"weights": "random"}))
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"an onnx file's bytes")
    man = _same_file_manifest(mine)
    assert man["name"] == "resnet18" and man["dataset"] == "imagenet" and man["matched"] == str(built / "model.onnx")
    assert man["accuracy"]["top1"] == zoo_manifest.top1(zoo_manifest.get("resnet18"))
    assert man["preprocessing"]["crop"] == [224, 224] and man["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert "random weights: its accuracy means nothing" in capsys.readouterr().err
    mine.write_bytes(b"an onnx file's bytez")  # same size, other bytes
    assert _same_file_manifest(mine) is None


@pytest.mark.parametrize("shape,keepdims", [(["batch"], 0), (["batch", 1], 1)])
def test_a_model_that_outputs_labels_is_scored_on_top1_only(tmp_path, shape, keepdims):
    labels_model = _digits_variant(tmp_path, "argmax.onnx", _argmax_output(shape, keepdims))
    scores = evaluate(str(builtin_path()), open_dataset("digits", limit=200), preprocess=DIGITS, batch_size=64).results[0]
    rep = evaluate(labels_model, open_dataset("digits", limit=200), ["ort", "reference"], preprocess=DIGITS, batch_size=64,
                   reference={"top1": 0.98, "top5": 1.0})
    for r in rep.results:
        assert r.status == "ok" and r.samples == 200
        assert r.correct_top1 == scores.correct_top1 == 197 and r.top1 == scores.top1  # the argmax of the same scores
        assert r.top5 is None and r.correct_top5 is None and r.delta_top5 is None  # not available, never a number
        assert r.verdict.startswith("replicated")
    d = rep.to_dict()["results"][0]
    assert d["top5"] is None and d["correct_top5"] is None


def test_outputs_that_are_not_scores_or_labels_are_refused(tmp_path):
    def scores_in_a_grid(m: onnx.ModelProto) -> None:
        m.graph.initializer.append(numpy_helper.from_array(np.array([-1, 2, 5], np.int64), "grid"))
        m.graph.node.append(helper.make_node("Reshape", ["logits", "grid"], ["grid_scores"]))
        del m.graph.output[:]
        m.graph.output.append(helper.make_tensor_value_info("grid_scores", TensorProto.FLOAT, ["batch", 2, 5]))

    def float_one_column(m: onnx.ModelProto) -> None:
        m.graph.node.append(helper.make_node("ReduceMax", ["logits"], ["best"], axes=[1], keepdims=1))
        del m.graph.output[:]
        m.graph.output.append(helper.make_tensor_value_info("best", TensorProto.FLOAT, ["batch", 1]))

    def labels_as_float(m: onnx.ModelProto) -> None:
        m.graph.node.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
        m.graph.node.append(helper.make_node("Cast", ["label"], ["labelf"], to=TensorProto.FLOAT))
        del m.graph.output[:]
        m.graph.output.append(helper.make_tensor_value_info("labelf", TensorProto.FLOAT, ["batch"]))

    data = open_dataset("digits", limit=10)
    cases = [(labels_as_float, r"output 'labelf' is float\[10\]: not per-class scores"),
             (float_one_column, "output 'best' scores 1 class, but digits has 10"),
             (scores_in_a_grid, r"output 'grid_scores' is float\[10x2x5\]: not per-class scores")]
    for edit, message in cases:
        with pytest.raises(MlmsIrError, match=message):
            evaluate(_digits_variant(tmp_path, f"{edit.__name__}.onnx", edit), data, preprocess=DIGITS, batch_size=10)


def test_references_and_tolerance_must_be_fractions(capsys):
    from mlms_ir.cli import main

    data = open_dataset("digits", limit=10)
    for ref, message in (({"top1": 98.7}, r"the reference top1 must be a fraction between 0 and 1 \(e.g. 0.987 for 98.7%\)"),
                         ({"top1": 0.9, "top5": -0.1}, "the reference top5 must be a fraction between 0 and 1, got '-0.1'"),
                         ({"top1": float("nan")}, "got 'nan'"), ({"top1": "0.9"}, "got '0.9'"), ({"top1": True}, "got 'True'")):
        with pytest.raises(MlmsIrError, match=message):
            evaluate(str(builtin_path()), data, preprocess=DIGITS, reference=ref)
    for tol in (-1, float("inf"), 2):
        with pytest.raises(MlmsIrError, match="the tolerance must be a fraction between 0 and 1"):
            evaluate(str(builtin_path()), data, preprocess=DIGITS, reference={"top1": 0.9}, tolerance=tol)
    for args, line in ((["--reference-top1", "98.7"], "--reference-top1 must be a fraction between 0 and 1 (e.g. 0.987 for 98.7%), "
                                                       "got '98.7'"),
                       (["--tolerance", "-1"], "--tolerance must be a fraction between 0 and 1, got '-1'"),
                       (["--tolerance", "2"], "--tolerance must be a fraction between 0 and 1 (e.g. 0.02 for 2 pp), got '2'"),
                       (["--reference-top5", "x"], "--reference-top5 must be a fraction between 0 and 1, got 'x'")):
        assert main(["evaluate", "--limit", "10", "--store", "none", *args]) == 2
        out = capsys.readouterr()
        assert out.err == f"mlms_ir: error: {line}\n" and out.out == ""
    rep = evaluate(str(builtin_path()), data, preprocess=DIGITS, reference={"top1": 0.9}, tolerance=0)
    assert rep.results[0].tolerance == 0 and rep.results[0].verdict == "not replicated: +10.00 pp (beyond ±0.00)"


def _fp16(m: onnx.ModelProto) -> None:
    """The digits model in float16 throughout (its input and output too)."""
    for init in m.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for v in (*m.graph.input, *m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    del m.graph.value_info[:]


def _uint8_input(m: onnx.ModelProto) -> None:
    """The digits model taking raw uint8 pixels: Cast, then x/16 inside the model."""
    for n in m.graph.node:
        n.input[:] = ["scaled" if x == "image" else x for x in n.input]
    m.graph.initializer.append(numpy_helper.from_array(np.array(1 / 16, np.float32), "sixteenth"))
    m.graph.node.insert(0, helper.make_node("Mul", ["pixels", "sixteenth"], ["scaled"]))
    m.graph.node.insert(0, helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT))
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.UINT8


def test_the_batch_is_cast_to_the_models_input_type(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
    data = open_dataset("digits")
    fp16 = _digits_variant(tmp_path, "fp16.onnx", _fp16)
    assert [n.op_type for n in onnx.load(fp16).graph.node if n.op_type == "Cast"] == []
    rep = evaluate(fp16, data, ["ort", "reference"], preprocess=DIGITS)
    assert rep.preprocess["dtype"] == "float16"
    for r in rep.results:  # float16 weights: within two images of the float32 model's 444 of 450
        assert r.status == "ok" and r.samples == 450 and abs(r.correct_top1 - 444) <= 2, r
    uint8 = _digits_variant(tmp_path, "uint8.onnx", _uint8_input)
    with pytest.raises(MlmsIrError, match=r"input 'image' takes uint8, but the preprocessing gives float32: .*"
                                          r"'\{\"dtype\": \"uint8\", \"scale\": 1\}'"):
        evaluate(uint8, data, preprocess=DIGITS)
    with pytest.raises(MlmsIrError, match="takes uint8, but the preprocessing gives int8"):
        evaluate(uint8, data, preprocess=Preprocess(scale=1, dtype="int8"))
    rep = evaluate(uint8, data, preprocess=Preprocess(scale=1, dtype="uint8"))
    assert rep.results[0].correct_top1 == 444  # x/16 in the model on the exact pixels: the float32 model's figure
    # with no manifest, an integer dtype means raw pixels: the assumed scale is 1, and said so
    rc, d, err = _cli_json(capsys, uint8, "--dataset", "digits", "--preprocess", '{"dtype": "uint8"}')
    assert rc == 0 and d["results"][0]["correct_top1"] == 444 and d["preprocess"]["scale"] == 1
    assert "assumed the preprocessing scale 1, layout NCHW for digits" in err


def test_help_lists_dtype_and_how_to_turn_the_progress_bar_off():
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "evaluate", "--help"], capture_output=True, text=True, timeout=120)
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0
    assert "(resize, crop, interpolation, scale, mean, std, layout, channels, dtype)" in text
    assert "--noprogress turns it off" in text and "a fraction in [0, 1] (e.g. 0.987)" in text


def test_integer_scores_rank_as_numbers_and_odd_outputs_fail_the_backend():
    from mlms_ir.evaluate import _read_output

    kind, s = _read_output(np.array([[0, 200, 3, 9, 1, 0, 250]], np.uint8), 1, 7, "y")  # e.g. a quantized model's
    assert kind == "scores" and set(np.argpartition(-s, 4, axis=1)[0, :5]) == {6, 1, 3, 2, 4}  # uint8 -s would wrap round
    kind, s = _read_output(np.array([[[[0.1]], [[0.7]], [[0.2]]]], np.float32), 1, 3, "y")  # [batch, classes, 1, 1]
    assert kind == "scores" and s.shape == (1, 3)
    assert _read_output(np.array([[4], [2]], np.int64), 2, 10, "y")[1].tolist() == [4, 2]
    for bad, message in ((np.zeros((3, 10), np.float32), r"came back as float32\[3x10\] for a batch of 2"),
                         (np.zeros(2, np.float32), r"came back as float32\[2\] for a batch of 2: not per-class scores"),
                         (np.zeros((2, 4), np.float32), "output 'y' scores 4 classes, but the data set has 10"),
                         (np.array([["a"], ["b"]]), r"came back as <U1\[2x1\]")):
        with pytest.raises(MlmsIrError, match=message):
            _read_output(bad, 2, 10, "y")


# ------------------------------------------------------------------ more classes than the data set: --label-offset


def _digits_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The 450 digits test images as the model sees them (DIGITS: x/16, NCHW), and their labels."""
    images, labels = zip(*open_dataset("digits").batches(450))
    return DIGITS(np.concatenate(images)), np.concatenate(labels)


def _answer_key_model(tmp_path, name: str, table: np.ndarray) -> str:
    """A model that knows the test split by heart: the nearest of the 450 test images (each one's own
    image, at distance 0; no two are alike) picks row ``table[j]``, e.g. a one-hot row of scores or
    a class label. Its accuracy follows from ``table`` alone."""
    x, _ = _digits_test_split()
    t = x.reshape(len(x), -1)
    w = numpy_helper.from_array(t.T.copy(), "w")
    b = numpy_helper.from_array((-0.5 * (t * t).sum(1)).astype(np.float32), "b")
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["near"]),
             helper.make_node("ArgMax", ["near"], ["j"], axis=1, keepdims=0), helper.make_node("Gather", ["table", "j"], ["logits"])]
    out_type = TensorProto.INT64 if table.dtype == np.int64 else TensorProto.FLOAT
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", out_type, ["N", *table.shape[1:]])],
                          [w, b, numpy_helper.from_array(table, "table")])
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _eleven_classes(tmp_path, extra_first: bool) -> str:
    """11 scores per image: 1 for the image's class, 0 for the others, and 2 (the highest) for the
    extra class: class 0 with the data set's label i at class i+1 (TF-slim's background), or last."""
    _, labels = _digits_test_split()
    table = np.zeros((450, 11), np.float32)
    table[np.arange(450), labels + (1 if extra_first else 0)] = 1
    table[:, 0 if extra_first else 10] = 2
    return _answer_key_model(tmp_path, "bg_first" if extra_first else "bg_last", table)


_ONE_EXTRA = ("output 'logits' scores 11 classes, but digits has 10: pass --label-offset 1 if class 0 is a background class "
              "(TF-slim style), or --label-offset 0 if the extra class comes after the data set's")


@pytest.mark.parametrize("extra_first", [True, False])
def test_more_classes_than_the_data_set_are_scored_over_the_offset_window(tmp_path, extra_first):
    model = _eleven_classes(tmp_path, extra_first)
    data = open_dataset("digits")
    with pytest.raises(MlmsIrError) as exc:  # a guess would be off by one: refused, never a wrong figure
        evaluate(model, data, preprocess=DIGITS)
    assert str(exc.value) == _ONE_EXTRA
    offset = 1 if extra_first else 0
    rep = evaluate(model, data, ["ort", "reference"], preprocess=DIGITS, batch_size=64, label_offset=offset, reference={"top1": 1.0})
    for r in rep.results:
        # the extra class scores 2, above the true class's 1: dropped before ranking, every image is right
        assert (r.status, r.samples, r.correct_top1, r.correct_top5, r.top1, r.top5) == ("ok", 450, 450, 450, 1.0, 1.0)
        assert r.verdict.startswith("replicated")
    assert rep.label_offset == offset and rep.to_dict()["label_offset"] == offset and rep.to_dict()["schema_version"] == "1.3"


def test_the_wrong_offset_gives_the_figure_of_that_mapping(tmp_path):
    """Offset 0 on a background-first model: the background (2) wins the window [0, 10) and reads as
    label 0: right for the 45 images of a 0 only (and, by the one-hot at i+1, never for another)."""
    _, labels = _digits_test_split()
    assert (labels == 0).sum() == 45
    r = evaluate(_eleven_classes(tmp_path, True), open_dataset("digits"), preprocess=DIGITS, label_offset=0).results[0]
    assert (r.samples, r.correct_top1) == (450, 45)


def test_a_label_output_has_the_offset_subtracted_and_labels_outside_the_window_are_wrong(tmp_path):
    _, labels = _digits_test_split()
    table = labels + 1  # class i+1 is label i ...
    table[labels == 0] = 0  # ... but the 45 images of a 0 get the background class
    table[labels == 9] = 11  # ... and the 45 of a 9 a class past the data set's (11 - 1 = 10)
    model = _answer_key_model(tmp_path, "labels_plus_one", table.astype(np.int64))
    rep = evaluate(model, open_dataset("digits"), ["ort", "reference"], preprocess=DIGITS, label_offset=1)
    for r in rep.results:
        assert (r.status, r.samples, r.correct_top1, r.correct_top5, r.top5) == ("ok", 450, 450 - 45 - 45, None, None)
    assert rep.label_offset == 1


def test_an_offset_that_does_not_fit_is_refused(tmp_path):
    data = open_dataset("digits", limit=10)
    cases = [(str(builtin_path()), 1, "--label-offset 1 does not fit output 'logits': it scores 10 classes, as many as digits has, "
                                      "so the offset must be 0"),
             (_eleven_classes(tmp_path, True), 2, "--label-offset 2 does not fit output 'logits': it scores 11 classes and digits "
                                                  "has 10, so the offset must be 0 or 1")]
    for model, offset, message in cases:
        with pytest.raises(MlmsIrError) as exc:
            evaluate(model, data, preprocess=DIGITS, label_offset=offset)
        assert str(exc.value) == message
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(MlmsIrError, match=f"--label-offset must be an integer >= 0, got '{bad}'"):
            evaluate(str(builtin_path()), data, preprocess=DIGITS, label_offset=bad)
    assert evaluate(str(builtin_path()), data, preprocess=DIGITS, label_offset=0).label_offset == 0


def test_read_output_windows_the_scores_a_batch_brings():
    """A class count known only at run time is checked on the first batch (the backend then fails)."""
    from mlms_ir.evaluate import _read_output

    y = np.array([[9.0, 0.1, 0.3, 0.2], [9.0, 0.5, 0.1, 0.2]], np.float32)
    kind, s = _read_output(y, 2, 3, "y", 1)
    assert kind == "scores" and s.tolist() == y[:, 1:].tolist() and s.argmax(1).tolist() == [1, 0]
    assert _read_output(y, 2, 3, "y", 0)[1].argmax(1).tolist() == [0, 0]
    with pytest.raises(MlmsIrError, match="output 'y' scores 4 classes, but the data set has 3: pass --label-offset 1 if class 0"):
        _read_output(y, 2, 3, "y")
    y6 = np.zeros((1, 6), np.float32)
    with pytest.raises(MlmsIrError, match=r"scores 6 classes, but the data set has 3: pass --label-offset K \(0 to 3\)"):
        _read_output(y6, 1, 3, "y")
    with pytest.raises(MlmsIrError, match="so the offset must be between 0 and 3"):
        _read_output(y6, 1, 3, "y", 4)
    kind, lab = _read_output(np.array([0, 1, 5], np.uint8), 3, 10, "y", 1)  # uint8 0 - 1 must not wrap round to 255
    assert kind == "labels" and lab.tolist() == [-1, 0, 4]


def test_cli_label_offset(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
    model = _eleven_classes(tmp_path, True)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "evaluate", model, "--dataset", "digits", "--store", "none", "--noprogress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.endswith(f"mlms_ir: error: {_ONE_EXTRA}\n") and r.stderr.count("mlms_ir: error") == 1
    rc, d, err = _cli_json(capsys, model, "--dataset", "digits", "--label-offset", "1")
    assert rc == 0 and d["schema_version"] == "1.3" and d["label_offset"] == 1
    assert (d["results"][0]["correct_top1"], d["results"][0]["top1"], d["results"][0]["top5"]) == (450, 1.0, 1.0)
    from mlms_ir.cli import main

    rc = main(["evaluate", model, "--dataset", "digits", "--label-offset", "1", "--store", "none", "--noprogress"])
    table = " ".join(capsys.readouterr().out.split())  # the caption under the figures, however the terminal wraps it
    assert rc == 0 and "model classes 1..10 scored as the labels 0..9 (--label-offset 1)" in table
    rc = main(["evaluate", "--limit", "10", "--label-offset", "0", "--store", "none", "--noprogress"])
    table = " ".join(capsys.readouterr().out.split())
    assert rc == 0 and "on digits" in table and "--label-offset" not in table  # the embedded model: 0 is its own mapping
    rc, d, err = _cli_json(capsys, "--limit", "10", "--label-offset", "0")
    assert rc == 0 and d["label_offset"] == 0
    for args, line in ((["--label-offset", "1"], "--label-offset 1 does not fit output 'logits': it scores 10 classes, as many as "
                                                 "digits has, so the offset must be 0"),
                       (["--label-offset", "-1"], "--label-offset must be an integer >= 0, got '-1'"),
                       ([model, "--dataset", "digits", "--label-offset", "3"], "--label-offset 3 does not fit output 'logits': it "
                                                                              "scores 11 classes and digits has 10, so the offset "
                                                                              "must be 0 or 1")):
        rc, _, err = _cli_json(capsys, "--limit", "10", *args)  # after the no-manifest warning, where there is one
        assert rc == 2 and err.endswith(f"mlms_ir: error: {line}\n") and err.count("error") == 1 and "Traceback" not in err


def test_results_without_a_label_offset_read_as_zero():
    from mlms_ir.results.evaluation import EvaluationReport

    rep = evaluate(str(builtin_path()), open_dataset("digits", limit=10), preprocess=DIGITS, system=False)
    d = rep.to_dict()
    assert d["label_offset"] == 0 and d["schema_version"] == "1.3"
    del d["label_offset"]  # as schema 1.2 wrote it
    assert EvaluationReport.from_dict(d).label_offset == 0
