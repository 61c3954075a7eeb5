"""Hostile models (issue #16): ONNX's C++ code runs guarded, declared counts are checked before
anything is sized from them, and data shorter than its dims is refused. Each case is one small
model built here; the CLI answers with one line and exit 2, never a traceback or a dead process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.errors import InvalidModelError
from mlms_ir.ir.guard import GuardedCrash, GuardedError, parse_bytes, run_guarded


def _gathernd_segfault() -> onnx.ModelProto:
    """onnx 1.23's shape inference segfaults on this 150-byte model (found by fuzzing attributes)."""
    n = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=-2**31)
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5]),
                                     helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3, 4, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlms_ir", *args, "--store", "none"], capture_output=True, text=True, timeout=300)


def _one_line(r: subprocess.CompletedProcess, text: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("mlms_ir: error:") and text in lines[0], r.stderr


@pytest.mark.parametrize("lenient", [False, True])
def test_a_crash_in_onnx_shape_inference_is_one_line(tmp_path, lenient):
    path = tmp_path / "gathernd.onnx"
    onnx.save(_gathernd_segfault(), path)
    _one_line(_cli("analyze", str(path), *(["--lenient"] if lenient else [])), "ONNX's shape inference failed on this model: it crashed (SIGSEGV)")
    with pytest.raises(InvalidModelError, match="crashed"):
        mlms_ir.load(path, lenient=lenient)


def test_a_scan_count_beyond_its_inputs_is_refused_before_anything_is_sized():
    body = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "body",
                             [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    n = helper.make_node("Scan", ["x"], ["y"], body=body, num_scan_inputs=2**31)
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    t0 = time.monotonic()
    for lenient in (False, True):
        with pytest.raises(InvalidModelError, match="declares 2147483648 scan inputs but has 1 inputs"):
            mlms_ir.load(m, lenient=lenient)
    assert time.monotonic() - t0 < 60


def test_data_shorter_than_its_dims_is_refused():
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    w.raw_data = w.raw_data[:100]
    n = helper.make_node("MatMul", ["x", "w"], ["y"])
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InvalidModelError, match=r"tensor 'w' of shape \[64, 64\] needs 16,384 bytes of data but holds 100"):
        mlms_ir.load(m)
    w2 = helper.make_tensor("w", TensorProto.FLOAT, [64, 64], [1.0] * 4096)
    del w2.float_data[10:]  # float_data: 10 of 4,096 values
    g2 = helper.make_graph([n], "g", list(g.input), list(g.output), [w2])
    with pytest.raises(InvalidModelError, match="needs 4,096 values but holds 10"):
        mlms_ir.load(helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17)]))


# --------------------------------------------------------------------------- the guard itself
def test_guard_returns_bytes_and_words_what_went_wrong():
    assert run_guarded(lambda: b"ok") == b"ok"

    def fails() -> bytes:
        raise IndexError("vector::_M_range_check")

    with pytest.raises(GuardedError, match="IndexError: vector::_M_range_check") as info:
        run_guarded(fails)
    assert info.value.type_name == "IndexError"
    with pytest.raises(GuardedCrash, match="SIGSEGV"):
        run_guarded(lambda: os.kill(os.getpid(), signal.SIGSEGV) or b"")
    t0 = time.monotonic()
    with pytest.raises(GuardedCrash, match="ran past 1 s"):
        run_guarded(lambda: time.sleep(30) or b"", timeout_s=1)
    assert time.monotonic() - t0 < 20


def test_a_started_guarded_call_runs_beside_its_caller_and_can_be_stopped():
    """start_guarded: the child works while this process goes on (mlms_ir.load checks the nodes
    and builds the graph meanwhile); cancel kills a child whose answer is no longer wanted."""
    from mlms_ir.ir.guard import start_guarded

    t0 = time.monotonic()
    call = start_guarded(lambda: time.sleep(1.0) or b"slept")
    assert time.monotonic() - t0 < 0.5  # returned at once: the child sleeps on its own
    assert call.result() == b"slept"
    assert time.monotonic() - t0 >= 1.0
    call = start_guarded(lambda: time.sleep(60) or b"")
    pid = call._pid
    t0 = time.monotonic()
    call.cancel()
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped: no zombie left
    call.cancel()  # twice is harmless
    failing = start_guarded(lambda: (_ for _ in ()).throw(IndexError("late")))
    with pytest.raises(GuardedError, match="IndexError: late"):
        failing.result()


def test_guard_holds_the_child_to_its_memory_budget():
    def hog() -> bytes:
        return bytes(np.ones(1 << 28, np.uint8))  # 256 MiB, over a 64 MiB budget

    with pytest.raises((GuardedCrash, GuardedError), match="MemoryError|out of memory|crashed"):
        run_guarded(hog, memory_bytes=64 << 20)
    assert parse_bytes("8G") == 8 << 30 and parse_bytes("512MiB") == 512 << 20 and parse_bytes("1000") == 1000


def test_the_guarded_child_never_collects_what_it_inherited():
    """An onnxruntime session left in a reference cycle in this process, its threads parked on a
    condition variable: collected in the forked child (which has none of those threads), its
    destructor waited for them for good. It hung pytest-xdist workers, whose earlier tests leave
    such garbage behind."""
    import gc

    import onnxruntime as ort

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 256])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    class Cycle:
        pass

    def collect() -> bytes:
        gc.collect()
        return b"collected"

    was = gc.isenabled()
    gc.disable()
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        c = Cycle()
        c.me, c.session = c, ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        c.session.run(None, {"x": np.ones((256, 256), np.float32)})
        del c
        time.sleep(0.2)  # the session's threads park
        assert run_guarded(collect, timeout_s=30) == b"collected"  # was: "it ran past 30 s and was stopped"
    finally:
        if was:
            gc.enable()
        gc.collect()


def test_a_large_process_hands_inference_to_its_guard_server(monkeypatch):
    """From a process that has loaded large frameworks, forking costs 40-50 ms (page tables): after a
    few calls it hands ONNX's inference to a small server of its own, which forks the guarded child
    instead. The answers are the fork path's, a crash is the same one line, and the server lives on."""
    from mlms_ir.ir import guard
    from mlms_ir.zoo import builtin_path

    forked = mlms_ir.analyze(mlms_ir.load(builtin_path(), batch=3)).to_dict()
    monkeypatch.setattr(guard, "SERVER_MIN_RSS_BYTES", 0)
    monkeypatch.setattr(guard, "SERVER_AFTER_CALLS", 0)
    monkeypatch.setattr(guard, "_server", None)
    monkeypatch.setattr(guard, "_server_failed", False)
    try:
        served = mlms_ir.analyze(mlms_ir.load(builtin_path(), batch=3)).to_dict()
        server = guard._server
        assert server is not None and server.proc.poll() is None
        assert served["totals"] == forked["totals"] and served["nodes"] == forked["nodes"]
        for lenient in (False, True):
            with pytest.raises(InvalidModelError, match=r"ONNX's shape inference failed on this model: it crashed \(SIGSEGV\)"):
                mlms_ir.load(_gathernd_segfault(), lenient=lenient)
        assert mlms_ir.analyze(mlms_ir.load(builtin_path(), batch=3)).to_dict()["totals"] == forked["totals"]
        assert guard._server is server and server.proc.poll() is None and not guard._server_failed
        # a forked child of this process never talks to its parent's server
        assert run_guarded(lambda: b"forked" if mlms_ir.load(builtin_path()) and guard._server is not server else b"shared") == b"forked"
    finally:
        if guard._server is not None:
            guard._server.close()


# --------------------------------------------------------------------------- damaged stores
def _store_with_one_run(tmp_path):
    from mlms_ir.store import Store, records_from_analysis
    from mlms_ir.zoo import builtin_path

    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.add_all(records_from_analysis(mlms_ir.analyze(mlms_ir.load(builtin_path(), batch=1))))
    return path


@pytest.mark.parametrize("damage", ["negative version", "payload not zlib", "payload not json", "dropped table", "summary not json"])
def test_a_damaged_store_is_one_line_and_never_costs_analyze_its_result(tmp_path, damage):
    import sqlite3
    import zlib

    from mlms_ir.errors import StoreError
    from mlms_ir.store import Store

    path = _store_with_one_run(tmp_path)
    db = sqlite3.connect(path)
    db.execute({"negative version": "PRAGMA user_version = -5",
                "payload not zlib": "UPDATE payloads SET data = x'00010203'",
                "payload not json": "UPDATE payloads SET data = ?",
                "dropped table": "DROP TABLE nodes",
                "summary not json": "UPDATE runs SET summary = '{not json'"}[damage],
               (zlib.compress(b"{not json"),) if damage == "payload not json" else ())
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="results store|schema version -5"):
        with Store(path) as st:
            st.payload(st.get(1).id)
            st.nodes(1)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "runs", "show", "1", "--payload", "--store", str(path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    a = subprocess.run([sys.executable, "-m", "mlms_ir", "analyze", "--batch", "1", "--store", str(path)], capture_output=True,
                       text=True, timeout=300)
    assert a.returncode == 0 and "mlms_ir analysis" in a.stdout and "Traceback" not in a.stderr, a.stderr
    if damage in ("negative version", "dropped table"):
        assert "not recorded" in a.stderr


def test_model_strings_cannot_spoof_or_break_our_lines(tmp_path):
    """A node named with a right-to-left override, a NUL and a newline: the table and the one
    error line show them as escapes."""
    n = helper.make_node("Relu", ["x"], ["y"], name="evil\u202egnp.exe\x00\nmlms_ir: error: fake")
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "evil.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    r = _cli("analyze", str(path))
    assert r.returncode == 0 and "\u202e" not in r.stdout and "\x00" not in r.stdout
    assert "evil\\u202egnp.exe\\u0000\\u000amlms_ir" in r.stdout
    bad = tmp_path / "bad.onnx"
    n2 = helper.make_node("MatMul", ["x", "x"], ["y"], name="a\u202eb\nc")  # rank-1 MatMul of a wrong type: refused
    g2 = helper.make_graph([n2], "g", [helper.make_tensor_value_info("x", TensorProto.STRING, [2])],
                           [helper.make_tensor_value_info("y", TensorProto.STRING, [2])])
    onnx.save(helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17)]), bad)
    r = _cli("analyze", str(bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "\u202e" not in r.stderr, r.stderr


def test_onnxruntime_failures_are_our_one_line_not_also_its_log(tmp_path):
    """A Reshape that fails at run time: onnxruntime would print its own coloured error line."""
    n = helper.make_node("Reshape", ["x", "s"], ["y"])
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([5], np.int64), "s")])
    path = tmp_path / "reshape.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    r = _cli("run", str(path), "--backends", "ort", "--batch", "2", "--iters", "2", "--warmup", "0")
    _one_line(r, "no backend ran: ort: onnxruntime failed to run the model")
    assert "\x1b[" not in r.stderr


# --------------------------------------------------------------------------- the memory budget, hostile inputs files
def _relu(dim) -> onnx.ModelProto:
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [dim])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dim])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_declared_input_larger_than_the_budget_is_refused_before_allocating(tmp_path):
    path = tmp_path / "big.onnx"
    onnx.save(_relu(2**40), path)
    _one_line(_cli("run", str(path), "--backends", "ort"), "random data for input 'x' (1099511627776) would take 12 TiB")
    onnx.save(_relu(2**24), path)  # 64 MiB of float32: over a 32 MiB budget, under the default
    _one_line(_cli("run", str(path), "--backends", "ort", "--max-memory", "32M", "--iters", "1"), "would take 192 MiB, more than the memory budget of 32 MiB")
    _one_line(_cli("analyze", "--max-memory", "lots"), "--max-memory takes a size such as 8G")


def test_a_graph_too_large_for_the_budget_is_refused_before_it_is_built(tmp_path, monkeypatch):
    """The node count is a declared size too: a graph whose nodes (ANALYSIS_BYTES_PER_NODE each,
    subgraphs included) exceed the budget is refused before inference and the passes build
    per-node structures (a chain of 1,000,000 nodes peaked at 3.8 GB)."""
    from mlms_ir.errors import MemoryBudgetError
    from mlms_ir.ir import ANALYSIS_BYTES_PER_NODE

    n = 3000
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(n - 1)]
    body = helper.make_graph([helper.make_node("Neg", ["t0"], ["b"])], "body", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])])
    nodes.append(helper.make_node("If", ["c"], ["z"], then_branch=body, else_branch=body))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [4]),
                                       helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info(f"t{n - 1}", TensorProto.FLOAT, [4]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])])
    path = tmp_path / "chain.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    need = (n + 2) * ANALYSIS_BYTES_PER_NODE  # the If's two branches count
    assert 8 << 20 < need < 16 << 20
    _one_line(_cli("analyze", str(path), "--max-memory", "8M"), f"analysing a graph of {n + 2:,} nodes would take")
    monkeypatch.setenv("MLMS_IR_MAX_MEMORY", "8M")
    with pytest.raises(MemoryBudgetError, match="3,002 nodes would take 8.79 MiB, more than the memory budget of 8 MiB"):
        mlms_ir.load(path)
    monkeypatch.setenv("MLMS_IR_MAX_MEMORY", "2G")
    assert len(mlms_ir.load(path).nodes) >= n


def _npz_with_huge_header(path):
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue())


@pytest.mark.parametrize("kind,text", [
    ("bare npy", "a single .npy array, not an .npz"),
    ("empty", "cannot read inputs from"),
    ("huge header", "would take 4 TiB"),
    ("not npy member", "cannot read inputs from"),
])
def test_hostile_inputs_files_are_one_line(tmp_path, kind, text):
    import zipfile

    f = tmp_path / "in.npz"
    if kind == "bare npy":
        np.save(tmp_path / "in.npy", np.ones(3, np.float32))
        (tmp_path / "in.npy").rename(f)
    elif kind == "empty":
        f.write_bytes(b"")
    elif kind == "huge header":
        _npz_with_huge_header(f)
    else:
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("x.npy", b"not an array at all")
    model = tmp_path / "m.onnx"
    onnx.save(_relu(3), model)
    _one_line(_cli("run", str(model), "--backends", "ort", "--inputs", str(f), "--iters", "1"), text)


def test_a_backend_that_crashes_fails_its_row_and_the_others_go_on(monkeypatch):
    """``run`` over several backends measures each in a forked child: a segfault in one costs
    that row, not the command."""
    from mlms_ir.backends import registry
    from mlms_ir.backends.ort import OrtBackend, OrtSession
    from mlms_ir.runner import run_backends
    from mlms_ir.zoo import builtin_path

    class CrashingSession(OrtSession):
        def _run_impl(self, feeds):
            os.kill(os.getpid(), signal.SIGSEGV)

    class CrashingOrt(OrtBackend):
        name = "crashing"

        def _prepare_impl(self, graph, device, **options):
            return CrashingSession(graph, device, **options)

    monkeypatch.setitem(registry._cache, "crashing", CrashingOrt())
    monkeypatch.setitem(registry.BUILTIN, "crashing", "tests:unused")
    r = run_backends(str(builtin_path()), ["ort", "crashing", "reference"], batches=[1], iterations=3, warmup=1, system=False)
    status = {x.backend: (x.status, x.error) for x in r.runs}
    assert status["ort"][0] == "ok" and status["reference"][0] == "ok"
    assert status["crashing"] == ("failed", "the crashing backend crashed (SIGSEGV)")
    ref = next(x for x in r.runs if x.backend == "reference")
    assert ref.compared_with == "ort" and ref.outputs_agree and ref.latency_ms["iterations"] == 3


def test_torch_runs_in_process_once_this_process_has_used_its_threads(monkeypatch):
    """A forked child cannot use PyTorch's OpenMP pool once its parent has started it: the child's
    first parallel op waited for good (run on ort and torch from a notebook that had used torch).
    Such a backend runs in this process instead; the others are still isolated."""
    torch = pytest.importorskip("torch")
    import mlms_ir.runner as runner
    from mlms_ir.zoo import builtin_path

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(256, 256)
        (x @ x).relu_()  # the pool starts
    finally:
        torch.set_num_threads(threads)
    isolated = []
    measure = runner._measure_in_child

    def spy(backend, *args, **kwargs):
        isolated.append(backend.name)
        return measure(backend, *args, **kwargs)

    monkeypatch.setattr(runner, "_measure_in_child", spy)
    monkeypatch.setattr(runner, "ISOLATED_TIMEOUT_S", 120.0)
    r = runner.run_backends(str(builtin_path()), ["ort", "torch"], batches=[16], iterations=3, warmup=1, system=False)
    assert [(x.backend, x.status) for x in r.runs] == [("ort", "ok"), ("torch", "ok")], [x.error for x in r.runs]
    assert isolated == ["ort"] and r.runs[1].outputs_agree


def _with_bad_text(field: str) -> bytes:
    """A small model whose ``field`` name is not valid UTF-8: the same-length ASCII name in the
    serialised file overwritten with bytes no UTF-8 text holds."""
    inner = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="INNERNODE")], "body", [],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2])])
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="NODENAME1"),
             helper.make_node("If", ["c"], ["z"], then_branch=inner, else_branch=inner, name="IFNODE")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                       helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    marker = {"node": b"NODENAME1", "subgraph node": b"INNERNODE"}[field]
    assert data.count(marker) >= 1
    return data.replace(marker, b"\xff\xfe" + marker[2:])


@pytest.mark.parametrize("marker", [b"FLATNODE1", b"MIDTENSOR"])
def test_names_that_are_not_text_are_refused_in_a_graph_without_subgraphs(tmp_path, marker):
    """Such a graph goes to shape inference before its nodes' names are read: a node's name or a
    tensor's that is not text is still refused with the one sentence (and inference stopped)."""
    from mlms_ir.errors import ModelLoadError

    nodes = [helper.make_node("Relu", ["x"], ["MIDTENSOR"], name="FLATNODE1"), helper.make_node("Neg", ["MIDTENSOR"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    data = data.replace(marker, b"\xff\xfe" + marker[2:])
    with pytest.raises(ModelLoadError, match="not valid UTF-8 text"):
        mlms_ir.load(data)
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    _one_line(_cli("analyze", str(path)), "not valid UTF-8 text")


@pytest.mark.parametrize("marker", [b"BIGTABLE1", b"WEIGHTXX1", b"CONSTOUT1", b"CONSTVAL1", b"CONSTNODE"])
def test_names_that_are_not_text_beside_weights_hidden_from_inference_are_one_line(marker):
    """An integer table too large to keep (hidden from inference as an input) and a Constant
    holding one (rewritten as an Identity of an input): the name of either, of its value tensor,
    of its output or of a weight that is not text is refused with the one sentence (a Constant's
    node name was a UnicodeDecodeError traceback while it was rewritten, its value's name one
    while it was restored)."""
    from mlms_ir.errors import ModelLoadError

    table = np.arange(100_000, dtype=np.int64)
    nodes = [helper.make_node("Constant", [], ["CONSTOUT1"], value=numpy_helper.from_array(table, "CONSTVAL1"),
                              name="CONSTNODE"),
             helper.make_node("Gather", ["BIGTABLE1", "idx"], ["g"]), helper.make_node("Gather", ["CONSTOUT1", "idx"], ["g2"]),
             helper.make_node("MatMul", ["x", "WEIGHTXX1"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64]),
                                       helper.make_tensor_value_info("idx", TensorProto.INT64, [3])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT if o == "y" else TensorProto.INT64, None)
                           for o in ("y", "g", "g2")],
                          [numpy_helper.from_array(table, "BIGTABLE1"), numpy_helper.from_array(np.ones((64, 64), np.float32), "WEIGHTXX1")])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    assert data.count(marker) >= 1  # every use of the name: the file stays consistent
    with pytest.raises(ModelLoadError, match="not valid UTF-8 text"):
        mlms_ir.analyze(data.replace(marker, b"\xff\xfe" + marker[2:]))


@pytest.mark.parametrize("field", ["node", "subgraph node"])
def test_names_that_are_not_text_are_refused_from_every_source(tmp_path, field):
    """Protobuf hands back bytes for a string field that is not UTF-8: the loader refuses the
    model with one sentence, whether it comes from a file, bytes or a ModelProto parsed elsewhere."""
    from mlms_ir.errors import ModelLoadError

    data = _with_bad_text(field)
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    for source in (path, data, proto):
        with pytest.raises(ModelLoadError, match="not valid UTF-8 text"):
            mlms_ir.load(source)
    _one_line(_cli("analyze", str(path)), "not valid UTF-8 text")
