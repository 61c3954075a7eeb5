"""What keeps the analysis fast on LLM-sized graphs (issue #19), checked by what it does, not by
timings: one realpath per external data file, the collector paused and restored, the JSON
streamed and compact with the same content, the store's fast encoding equal to the safe one,
``--format json`` without rich."""

from __future__ import annotations

import gc
import importlib
import json
import math
import os
import subprocess
import sys

import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper

import mlms_ir
from mlms_ir.ir.gc_pause import paused_gc

ir_load = importlib.import_module("mlms_ir.ir.load")  # the module (mlms_ir.ir.load is also the function's name)


def _external_chain(folder, n: int = 40) -> str:
    """A chain of n MatMuls, each weight [4, 4] float32 (64 bytes) at its own offset of one data file."""
    inits, nodes = [], []
    x = "x"
    for i in range(n):
        t = TensorProto()
        t.name, t.data_type = f"w{i}", TensorProto.FLOAT
        t.dims.extend([4, 4])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "w.bin"), ("offset", str(64 * i)), ("length", "64")):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"y{i}"]))
        x = f"y{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, 4])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    (folder / "w.bin").write_bytes(b"\0" * 64 * n)
    path = folder / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path)


def test_one_realpath_per_external_file_and_no_weight_read(tmp_path, monkeypatch):
    path = _external_chain(tmp_path)
    calls: list[str] = []
    real = os.path.realpath
    monkeypatch.setattr(ir_load.os.path, "realpath", lambda p, *a, **k: (calls.append(str(p)), real(p, *a, **k))[1])
    opened: list[str] = []
    import builtins

    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    loaded = ir_load.read_model(path)
    # the folder once, the data file once (not once for each of the 40 tensors)
    assert len(calls) == 2, calls
    assert loaded.external_data_bytes == 40 * 64
    assert not [f for f in opened if f.endswith("w.bin")]


def test_a_short_file_is_still_refused_for_a_later_tensor(tmp_path):
    path = _external_chain(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"\0" * 64 * 39)  # the 40th tensor's bytes are missing
    with pytest.raises(mlms_ir.errors.ExternalDataError, match="too short for tensor 'w39'"):
        ir_load.read_model(path)


def test_paused_gc_restores_the_collector():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block leaves it to the outer one
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # off by the caller: stays off
    finally:
        gc.enable()


def test_analysis_json_streamed_and_compact_with_the_same_content(tmp_path, cnn_path):
    import io

    a = mlms_ir.analyze(mlms_ir.load(cnn_path, batch=2))
    text = a.to_json()
    assert json.loads(text) == json.loads(json.dumps(a.to_dict()))
    buf = io.StringIO()
    a.write_json(buf)
    assert buf.getvalue() == text + "\n"
    lines = text.splitlines()
    start = lines.index('  "nodes": [')
    node_lines = lines[start + 1:-2]
    assert len(node_lines) == len(a.nodes)  # one node a line, no spaces after separators
    assert all(json.loads(line.rstrip(","))["id"] == n.id for line, n in zip(node_lines, a.nodes))
    assert '", "' not in node_lines[0] and '": ' not in node_lines[0]
    head = a.head_dict()
    assert head == {k: v for k, v in a.to_dict().items() if k != "nodes"}
    before = json.dumps(head)
    again = io.StringIO()
    a.write_json(again, head=head)
    assert again.getvalue() == text + "\n" and json.dumps(head) == before  # the caller's object is not changed


def test_store_fast_encoding_equals_the_safe_one():
    from mlms_ir.results.base import json_safe
    from mlms_ir.store import _dumps

    def safe(obj):
        return json.dumps(json_safe(obj), separators=(",", ":"), default=str)

    for obj in ({"a": [1, 2.5, None, (3, 4)], "b": {"c": "x"}}, {"a": math.nan, "b": [math.inf]},
                {1: "int key", "s": 1}, {True: 1, None: 2}, [{"n": -math.inf}]):
        assert _dumps(obj) == safe(obj), obj
        assert json.loads(_dumps(obj, str_keys=False)) == json.loads(safe(obj))


def test_analyze_json_imports_no_rich(tmp_path, cnn_path):
    out = tmp_path / "a.json"
    code = ("import sys; from mlms_ir.cli import main; "
            f"rc = main(['analyze', {str(cnn_path)!r}, '--batch', '1', '--format', 'json', '--output', {str(out)!r}, "
            "'--store', 'none', '-q']); print(rc, 'rich' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["0", "False"], done.stderr
    assert json.loads(out.read_text())["kind"] == "analysis"


def test_the_store_gets_the_analysis_the_json_shows(tmp_path, cnn_path):
    from mlms_ir.cli import main
    from mlms_ir.store import Store

    out, db = tmp_path / "a.json", tmp_path / "s.db"
    assert main(["analyze", str(cnn_path), "--batch", "1", "--format", "json", "--output", str(out), "--store", str(db), "-q"]) == 0
    with Store(db) as st:
        (run,) = st.list()
        payload = st.payload(run.id)
        nodes = st.nodes(run.id)
    shown = json.loads(out.read_text())
    assert payload == shown  # the same text, compressed once (StoreRecord.payload_zlib)
    assert [n["node_id"] for n in nodes] == [n["id"] for n in shown["nodes"]]
    assert [n["macs"] for n in nodes] == [n["macs"] for n in shown["nodes"]]


def test_cached_tensor_facts_are_computed_once_and_stay_equal():
    from mlms_ir.ir.graph import TensorInfo

    t = TensorInfo("t", onnx.TensorProto.FLOAT, (2, 3), "activation")
    assert (t.known, t.numel, t.nbytes, t.sym_known, t.sym_numel, t.sym_nbytes) == (True, 6, 24, True, 6, 24)
    assert vars(t)["_size"] == (6, 24)  # kept on the instance as one pair (one entry of its __dict__, not six)
    u = TensorInfo("u", onnx.TensorProto.FLOAT, (2, None), "activation")
    assert (u.known, u.numel, u.nbytes, u.sym_known) == (False, None, None, False)


def test_a_precompressed_payload_reads_back_as_the_dict_would(tmp_path, cnn_path):
    from mlms_ir.store import Store, compress_json, records_from_analysis

    a = mlms_ir.analyze(mlms_ir.load(cnn_path, batch=1))
    pieces: list[str] = []

    class Sink:
        write = pieces.append

    a.write_json(Sink())
    (fast,) = records_from_analysis(a, payload_zlib=compress_json(pieces))
    (plain,) = records_from_analysis(a)
    assert fast.payload is None and fast.payload_zlib and plain.payload_zlib is None
    assert "payload_zlib" not in plain.to_dict()
    with Store(tmp_path / "s.db") as st:
        r1, r2 = st.add(fast), st.add(plain)
        assert st.payload(r1.id) == st.payload(r2.id) == json.loads(json.dumps(a.to_dict()))
        assert st.nodes(r1.id) == st.nodes(r2.id)
        assert r1.summary == r2.summary


def test_node_lines_written_in_place_equal_the_encoders_text():
    """The node lines written straight into their template (:func:`_node_lines`) are the json
    encoder's text of each node's dict, for every value a field can hold: odd names, unknown and
    symbolic figures, shape lists shared or not, floats, and values of other types (encoded
    through the dict)."""
    import random

    import numpy as np

    from mlms_ir.results import analysis as an

    assert an._NODE_LINE.split('"')[1::2] == list(an._NODE_JSON_FIELDS)
    rng = random.Random(7)
    names = ["", "a", 'q"uote', "back\\slash", "tab\t\nline", "\x00\x1f", "é ünï", "日本", "\U0001f600", "/m/0/attn"]
    shared = [[1, 128, 768], [1, "seq", None], None, [], [2**40, 3]]
    ints = [None, 0, 1, 7, 2**53 + 1, 10**30]
    floats = [None, 0.0, 0.1, 1 / 3, 1e-300, 2.5e17, 123456789.123456789]

    def shapes():
        return [rng.choice(shared) if rng.random() < 0.8 else [rng.randint(0, 9), "b"] for _ in range(rng.randint(0, 3))]

    nodes = []
    for i in range(3000):
        nc = an.NodeCost(f"n{i}", rng.choice(names), rng.choice(["MatMul", "Add", "Ünknown"]), rng.choice(["", "com.microsoft"]),
                         rng.choice(["counted", "free", "unresolved"]), rng.choice(ints), rng.choice(ints), rng.random() < 0.5,
                         rng.choice(ints), rng.choice(ints), rng.choice(ints[1:]), rng.choice(ints[1:]), shapes(), shapes(),
                         rng.choice(ints), rng.choice(floats), rng.choice([None, "n3", "n3/then_branch/n1"]),
                         rng.choice(names), rng.choice([None, "memory", "compute"]), rng.choice(floats),
                         rng.choice([None, {"macs": "2*seq**2"}, {"flops": "é", "bytes_read": "n"}]))
        nodes.append(nc)
    # values outside the usual types: the dict route, whose text json gives or whose error it raises
    odd = [("macs", True), ("flops", 2.0), ("intensity", 3), ("intensity", float("nan")), ("intensity", float("inf")),
           ("time_lower_bound_us", float("-inf")), ("params", np.int64(4)), ("int_macs", 1), ("name", np.str_("x"))]
    for k, (field, value) in enumerate(odd):
        setattr(nodes[k * 10], field, value)
    want, cache = [], {}
    for n in nodes:
        try:
            want.append(an._encode_node_line(an._node_dict(n)))
        except TypeError:
            want.append(TypeError)
    for start in range(0, len(nodes), 1000):
        chunk = nodes[start:start + 1000]
        expected = want[start:start + 1000]
        if TypeError in expected:
            with pytest.raises(TypeError):
                an._node_lines(chunk, cache)
            keep = [n for n, w in zip(chunk, expected) if w is not TypeError]
            assert an._node_lines(keep, cache) == [w for w in expected if w is not TypeError]
        else:
            assert an._node_lines(chunk, cache) == expected
    assert want.count(TypeError) == 1  # numpy's int64 is not JSON, in either route


@pytest.mark.parametrize("model", ["cnn", "symbolic", "subgraphs"])
def test_analysis_json_nodes_equal_the_encoders_text(model, cnn_path):
    from mlms_ir.results import analysis as an

    if model == "cnn":
        a = mlms_ir.analyze(cnn_path, batch=2)
    elif model == "symbolic":
        a = mlms_ir.analyze(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float[batch, seq, 16] x, float[16, 16] w) => (float[batch, seq, 16] y) {
          m = MatMul (x, w)
          y = Relu (m)
        }"""))
        assert a.symbolic
    else:
        a = mlms_ir.analyze(onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (bool c, float[2,3] x) => (float[2,3] y) {
          y = If (c) <
            then_branch = t () => (float[2,3] a) { a = Relu (x) },
            else_branch = e () => (float[2,3] b) { b = Neg (x) }
          >
        }"""))
    lines = a.to_json().splitlines()
    start = lines.index('  "nodes": [')
    got = [line.strip().rstrip(",") for line in lines[start + 1:-2]]
    assert got == [an._encode_node_line(an._node_dict(n)) for n in a.nodes]
