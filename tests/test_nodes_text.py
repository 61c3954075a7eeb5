"""A large analysis' node lines encoded ahead by a forked worker (mlms_ir.passes.nodes_text) are the
very text the analysis encodes itself: checked byte for byte, with a worker that fails, an indent
it was not made for, a second write, compressed for the store (zlib decompresses the joined
payload to the same text), and through the command line and its store."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlms_ir.passes import nodes_text
from mlms_ir.passes.analyze import analyze


def _model(layers: int = 40):
    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(np.full((8, 8), i, np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"mm/{i}\u00e9\"q"),  # escapes in names
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        x = f"r{i}"
    nodes.append(helper.make_node("Mystery", [x], ["y"], domain="example.custom"))
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], inits)  # the op's output declared
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)])


@pytest.fixture
def small_ahead(monkeypatch, lone_thread):
    monkeypatch.setattr(nodes_text, "MIN_NODES", 1)
    monkeypatch.setattr(nodes_text, "MIN_PACKED_NODES", 1)
    used = []
    real = nodes_text.NodesText.copy_to
    monkeypatch.setattr(nodes_text.NodesText, "copy_to", lambda self, fh: used.append(real(self, fh)) or used[-1])
    return used


def test_the_text_encoded_ahead_is_the_text_encoded_here(small_ahead):
    m = _model()
    plain = analyze(m).to_json()
    ahead = analyze(m, json_ahead=True)
    assert ahead._nodes_text is not None
    assert ahead.to_json() == plain and small_ahead == [True]
    assert ahead.to_json() == plain and small_ahead == [True]  # a second write encodes here: the same text
    assert json.loads(plain)["nodes"][0]["name"] == "mm/0\u00e9\"q"


def test_a_failing_worker_leaves_the_text_to_this_process(small_ahead, monkeypatch):
    def broken(nodes, indent=2):
        raise OSError("no space left on device")
        yield ""

    monkeypatch.setattr(nodes_text, "nodes_json_chunks", broken)  # in the worker only: write_json has its own
    m = _model()
    assert analyze(m, json_ahead=True).to_json() == analyze(m).to_json() and small_ahead == [False]


def test_no_process_to_be_had_leaves_the_text_to_this_process(small_ahead, monkeypatch):
    def no_fork(*a, **k):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(nodes_text, "start_guarded", no_fork)
    m = _model()
    result = analyze(m, json_ahead=True)
    assert result._nodes_text is None and result.to_json() == analyze(m).to_json()


def test_another_indent_is_encoded_here(small_ahead):
    m = _model()
    buf = io.StringIO()
    analyze(m, json_ahead=True).write_json(buf, indent=4)
    want = io.StringIO()
    analyze(m).write_json(want, indent=4)
    assert buf.getvalue() == want.getvalue() and small_ahead == []


def test_no_worker_where_a_later_pass_changes_the_nodes_or_the_graph_is_small(monkeypatch):
    m = _model()
    assert analyze(m, json_ahead=True)._nodes_text is None  # below MIN_NODES
    monkeypatch.setattr(nodes_text, "MIN_NODES", 1)
    assert analyze(m, json_ahead=True, device="a100")._nodes_text is None  # the roofline sets each node's bound
    dynamic = _model()
    dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    assert analyze(dynamic, json_ahead=True)._nodes_text is None  # the symbolic pass writes each node's formulas


def test_a_dropped_result_leaves_no_worker(small_ahead):
    result = analyze(_model(), json_ahead=True)
    text = result._nodes_text
    text.close()
    assert text._call is None and text._file.closed
    assert result.to_json() == analyze(_model()).to_json()  # a closed one encodes here


def test_the_command_line_writes_and_stores_the_same_text(small_ahead, tmp_path, capsys):
    from mlms_ir.cli import main
    from mlms_ir.store import Store

    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    store = tmp_path / "runs.db"
    assert main(["analyze", str(path), "--format", "json", "--output", str(tmp_path / "a.json"), "--store", str(store)]) == 0
    capsys.readouterr()
    want = analyze(str(path)).to_json() + "\n"
    assert (tmp_path / "a.json").read_text() == want and small_ahead == [True]
    with Store(store) as s:
        assert s.count() == 1 and s.payload(s.last_id()) == json.loads(want)


def _unpacked(result, **kw) -> str:
    import zlib

    from mlms_ir.store import JsonPacker

    packer = JsonPacker(**kw)
    result.write_json(packer)
    return zlib.decompress(packer.finish()).decode()


@pytest.mark.parametrize("size", [100, 50 << 20])  # zlib level 6 and level 3
def test_text_compressed_ahead_for_the_store_joins_into_one_zlib_stream_of_the_same_text(small_ahead, size):
    m = _model()
    want = analyze(m).to_json() + "\n"
    packed_only = analyze(m, json_ahead=nodes_text.JsonAhead(text=False, deflate_level=3))
    assert packed_only._nodes_text._file is None  # no text file: only the store wants the JSON
    assert _unpacked(packed_only, size=size) == want and small_ahead == [True]


def test_a_tee_takes_the_text_and_the_compressed_text_and_a_plain_sink_the_text_alone(small_ahead):
    import zlib

    from mlms_ir.store import JsonPacker

    m = _model()
    want = analyze(m).to_json() + "\n"

    class Tee:  # as the command line's: its output gets the text, the store the compressed text
        def __init__(self, fh, packer):
            self.fh, self.packer, self.text_sink = fh, packer, fh
            self.write_deflated = packer.write_deflated

        def write(self, text):
            self.fh.write(text)
            self.packer.write(text)

    both = analyze(m, json_ahead=nodes_text.JsonAhead(text=True, deflate_level=6))
    out, packer = io.StringIO(), JsonPacker(100)
    both.write_json(Tee(out, packer))
    assert out.getvalue() == want == zlib.decompress(packer.finish()).decode() and small_ahead == [True]
    # a worker asked for compressed text only cannot serve a sink that wants the text: encoded here
    packed_only = analyze(m, json_ahead=nodes_text.JsonAhead(text=False, deflate_level=6))
    plain = io.StringIO()
    packed_only.write_json(plain)
    assert plain.getvalue() == want and small_ahead == [True, False]
    # a worker asked for the text alone serves a packer with it
    assert _unpacked(analyze(m, json_ahead=True), size=100) == want and small_ahead == [True, False, True]


def test_the_default_table_stores_the_text_the_worker_compressed(small_ahead, tmp_path, capsys):
    from mlms_ir.cli import main
    from mlms_ir.store import Store

    path = tmp_path / "m.onnx"
    path.write_bytes(_model().SerializeToString())
    store = tmp_path / "runs.db"
    assert main(["analyze", str(path), "--store", str(store)]) == 0
    assert "MACs" in capsys.readouterr().out
    assert small_ahead == [True]
    with Store(store) as s:
        assert s.payload(s.last_id()) == json.loads(analyze(str(path)).to_json())


def test_a_graph_too_small_for_a_worker_that_would_write_text_gets_one_for_the_store_alone(lone_thread):
    m = _model(layers=1200)  # 2,401 nodes: above MIN_PACKED_NODES, below MIN_NODES
    assert nodes_text.MIN_PACKED_NODES <= len(m.graph.node) < nodes_text.MIN_NODES
    assert analyze(m, json_ahead=True)._nodes_text is None
    packed = analyze(m, json_ahead=nodes_text.JsonAhead(text=False, deflate_level=3))
    assert packed._nodes_text is not None
    assert _unpacked(packed, size=100) == analyze(m).to_json() + "\n"
