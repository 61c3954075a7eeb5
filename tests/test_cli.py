"""The command line, run as a user runs it."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import onnx

from mlms_ir.cli import _join_repeated, main


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_default_model_table():
    r = _cli("analyze", "--batch", "1")
    assert r.returncode == 0, r.stderr
    assert "digits_cnn.onnx" in r.stdout and "MACs" in r.stdout and "665 K" in r.stdout


def test_default_model_json_matches_the_manifest(tmp_path):
    out = tmp_path / "a.json"
    r = _cli("analyze", "--batch", "1", "--output", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    from mlms_ir.zoo import builtin_manifest

    assert d["model"]["name"] == "digits_cnn.onnx"
    # conv1 1*16*8*8*9 + conv2 32*64*16*9 + conv3 64*16*32*9 + fc1 1024*64 + fc2 64*10
    assert d["totals"]["macs"] == 9216 + 294912 + 294912 + 65536 + 640
    assert builtin_manifest()["name"] == "digits-cnn"


def test_formats(cnn_path, tmp_path):
    r = _cli("analyze", str(cnn_path), "--batch", "2", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["op_type"] for row in rows] == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]
    assert rows[0]["macs"] == str(2 * 8 * 16 * 16 * 27)
    r = _cli("analyze", str(cnn_path), "--batch", "2", "--format", "md", "--top", "2")
    assert r.stdout.startswith("# mlms_ir analysis: cnn.onnx") and "| n0 |" in r.stdout
    r = _cli("analyze", str(cnn_path), "--dims", "N=4", "--format", "json")
    assert json.loads(r.stdout)["bindings"]["dims"] == {"N": 4}


def test_repeated_input_shape_flags():
    assert _join_repeated(["analyze", "m", "--input-shape", "a:1", "--input-shape=b:2", "--top", "3"]) == [
        "analyze", "m", "--top", "3", "--input-shape=a:1;b:2",
    ]


def test_input_shape_and_device(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[A,4] a, float[B,4] b) => (c) { c = Concat <axis=0> (a, b) }""")
    p = tmp_path / "two.onnx"
    onnx.save(m, p)
    r = _cli("analyze", str(p), "--input-shape", "a:2x4", "--input-shape", "b:3x4", "--device", "t4", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["nodes"][0]["output_shapes"] == [[5, 4]]
    assert d["roofline"]["device"] == "t4"


def test_user_errors_exit_2(cnn_path):
    for args in (["--format", "xml"], ["--sort", "nope"], ["--device", "tpu9"], ["--batch", "1,8"]):
        r = _cli("analyze", str(cnn_path), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("mlms_ir: error: ") and "Traceback" not in r.stderr


def test_other_verbs(capsys):
    assert main(["version"]) == 0
    assert "mlms_ir " in capsys.readouterr().out
    assert main(["devices"]) == 0
    assert "h200" in capsys.readouterr().out
    assert main(["ops", "--domain", "com.microsoft"]) == 0
    assert "MultiHeadAttention" in capsys.readouterr().out


def test_help_for_every_verb():
    for verb in ("analyze", "devices", "ops", "version"):
        r = _cli(verb, "--help")
        assert r.returncode == 0, (verb, r.stderr)
        assert verb in r.stdout + r.stderr  # Fire prints help on stderr when not on a terminal
