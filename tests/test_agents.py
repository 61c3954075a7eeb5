"""Worker backends (mxnet, onnx-tf) and the agent protocol.

The protocol, timeouts, crashes and unavailability are tested with the core's own interpreter and
with fake interpreters (shell scripts), so they always run. The framework tests need the agent
environments (``bash tools/make_agent_envs.sh``) and skip, saying so, when those are absent.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir.backends.worker as worker
from mlms_ir.backends import agent
from mlms_ir.backends.base import BackendError, BackendUnavailableError
from mlms_ir.backends.worker import (
    AgentCrashError,
    AgentTimeoutError,
    MXNetBackend,
    OnnxTfBackend,
    WorkerSession,
    call_agent,
    probe,
    save_npz,
)
from mlms_ir.ir import load

from conftest import agent_backend

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------- models
def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    # opset 13 and IR 7: what onnx 1.18, mxnet's importer and onnx-tf 1.10 all accept
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def cnn_model() -> onnx.ModelProto:
    """Conv(3->8, 3x3, pad 1) + Relu + GlobalAveragePool + Flatten + Gemm(8->10), batch 2."""
    return _model(
        [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("GlobalAveragePool", ["r1"], ["p1"]),
            helper.make_node("Flatten", ["p1"], ["f1"]),
            helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], transB=1),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 10])],
        [_w("w1", 8, 3, 3, 3), _w("b1", 8), _w("w2", 10, 8), _w("b2", 10)],
    )


def mlp_model() -> onnx.ModelProto:
    """MatMul + Add + Relu + MatMul + Add + Softmax, two outputs (the logits and the softmax)."""
    return _model(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
            helper.make_node("Add", ["h3", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4, 10]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [4, 10])],
        [_w("w1", 16, 32), _w("b1", 32), _w("w2", 32, 10), _w("b2", 10)],
    )


MODELS = {"cnn": (cnn_model, (2, 3, 16, 16)), "mlp": (mlp_model, (4, 16))}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """name -> (path, feeds, onnxruntime's outputs)."""
    import onnxruntime as ort

    d = tmp_path_factory.mktemp("agent_models")
    out = {}
    for name, (make, shape) in MODELS.items():
        p = d / f"{name}.onnx"
        onnx.save(make(), p)
        feeds = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        expected = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        out[name] = (p, feeds, expected)
    return out


def fake_python(tmp_path: Path, body: str, name: str = "python") -> Path:
    """An executable shell script standing in for an interpreter."""
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return p


# ---------------------------------------------------------------------------- protocol (always)
def test_npz_files_take_any_name_and_no_objects(tmp_path):
    arrays = {"file": np.arange(6, dtype=np.int64).reshape(2, 3), "input:0": np.ones((2, 2), np.float32),
              "mask": np.array([True, False]), "scalar": np.float64(2.5)}
    save_npz(tmp_path / "a.npz", arrays)
    back = agent.load_npz(str(tmp_path / "a.npz"))
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == np.asarray(v).dtype and np.array_equal(back[k], v)
    agent.save_npz(str(tmp_path / "b.npz"), arrays)  # the agent's writer reads back the same way
    with np.load(tmp_path / "b.npz", allow_pickle=False) as z:
        assert np.array_equal(z["file"], arrays["file"])
    with pytest.raises(BackendError, match="Python objects"):
        save_npz(tmp_path / "c.npz", {"x": np.array([object()])})


def test_agent_probe_speaks_protocol_2_and_still_1(tmp_path):
    # the core interpreter is an interpreter like any other: a probe without a target needs only numpy
    res = call_agent(sys.executable, {"framework": "probe"}, tmp_path, timeout=60)
    assert res["protocol"] == worker.PROTOCOL == agent.PROTOCOL == 2
    assert res["status"] == "ok" and res["error"] == ""
    assert res["numpy_version"] == np.__version__
    assert res["python"] == ".".join(map(str, sys.version_info[:3]))
    assert json.loads((tmp_path / "request.json").read_text())["protocol"] == 2
    # a version 1 request is answered in version 1
    res = call_agent(sys.executable, {"framework": "probe", "protocol": 1}, tmp_path, timeout=60)
    assert res["protocol"] == 1 and res["status"] == "ok"


def test_agent_reports_bad_requests_as_error_results(tmp_path):
    res = call_agent(sys.executable, {"framework": "caffe"}, tmp_path, timeout=60)
    assert res["status"] == "error" and "unknown framework 'caffe'" in res["error"]
    res = call_agent(sys.executable, {"framework": "probe", "protocol": 99}, tmp_path, timeout=60)
    assert res["status"] == "error" and "protocol 1 or 2" in res["error"]
    assert "\n" not in res["error"]


def test_agent_script_imports_nothing_of_mlms_ir():
    src = worker.AGENT.read_text()
    assert worker.AGENT.name == "agent.py" and worker.AGENT.is_file()
    assert "import mlms_ir" not in src and "from mlms_ir" not in src


def test_framework_error_in_the_worker_is_a_backend_error(tmp_path, models):
    # the core has no mxnet: the agent reports the import error, the session words it
    if __import__("importlib").util.find_spec("mxnet") is not None:
        pytest.skip("mxnet imports in the core interpreter")
    path, feeds, _ = models["cnn"]
    with WorkerSession("mxnet", "mxnet", load(path), "cpu", python=Path(sys.executable), timeout=60) as s:
        with pytest.raises(BackendError, match=r"mxnet .*failed on the model: ModuleNotFoundError"):
            s.run(feeds)
        assert s.last_result["status"] == "error"


def test_outputs_come_back_in_the_declared_types():
    """MXNet's importer computes integer and boolean ops in float32, and has no 0-d arrays: the
    worker gives the declared types and shapes back, refusing values the declared type cannot
    hold rather than rounding them."""
    from mlms_ir.backends.worker import as_declared_dtypes

    vi = helper.make_tensor_value_info
    outs = [vi("i", TensorProto.INT64, [3]), vi("b", TensorProto.BOOL, [2]), vi("h", TensorProto.FLOAT16, [2]),
            vi("s", TensorProto.INT32, []), vi("u", TensorProto.UINT8, [2])]
    ins = [vi(f"x_{o.name}", TensorProto.FLOAT, [d.dim_value for d in o.type.tensor_type.shape.dim]) for o in outs]
    nodes = [helper.make_node("Cast", [x.name], [o.name], to=o.type.tensor_type.elem_type) for x, o in zip(ins, outs)]
    g = load(helper.make_model(helper.make_graph(nodes, "g", ins, outs),
                               opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    got = as_declared_dtypes(g, {"i": np.array([1.0, -2.0, 3e9], np.float32), "b": np.array([1.0, 0.0], np.float32),
                                 "h": np.array([0.5, 1.5], np.float32), "s": np.array([7.0], np.float32),
                                 "u": np.array([1, 255], np.int64)}, "mxnet")
    assert got["i"].dtype == np.int64 and got["i"].tolist() == [1, -2, 3000000000]
    assert got["b"].dtype == np.bool_ and got["b"].tolist() == [True, False]
    assert got["h"].dtype == np.float16 and got["s"].shape == () and got["s"].dtype == np.int32
    assert got["u"].dtype == np.uint8 and got["u"].tolist() == [1, 255]
    for name, bad in (("i", [0.5, 1.0, 2.0]), ("b", [2.0, 0.0]), ("u", [1, 256]), ("i", [np.nan, 1, 2])):
        with pytest.raises(BackendError, match=rf"mxnet returned output '{name}' as .* that are not .*refused"):
            as_declared_dtypes(g, {name: np.array(bad, np.float32 if name != "u" else np.int64)}, "mxnet")


def test_onnx_tf_refuses_a_resize_to_a_length_that_is_not_whole():
    """onnx-tf resizes to input length x scale rounded down and maps coordinates with that length,
    ONNX with the scale: refused when the model says so (at prepare), when the fed scales do
    (before the run, no agent started), when the model computes them (at prepare); whole lengths
    and sizes run."""
    vi = helper.make_tensor_value_info

    def model(scales=None, fed=False, computed=False, sizes=False, mode="half_pixel"):
        nodes, inits, ins = [], [], [vi("x", TensorProto.FLOAT, [1, 1, 3, 4])]
        if sizes:
            inits.append(numpy_helper.from_array(np.array([1, 1, 5, 6], np.int64), "sizes"))
            names = ["x", "", "", "sizes"]
        else:
            names = ["x", "", "scales"]
            if fed:
                ins.append(vi("scales", TensorProto.FLOAT, [4]))
            elif computed:
                inits.append(numpy_helper.from_array(np.array(scales, np.float32), "half"))
                nodes.append(helper.make_node("Add", ["half", "half"], ["scales"]))
            else:
                inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        nodes.append(helper.make_node("Resize", names, ["y"], mode="linear", coordinate_transformation_mode=mode, name="rs"))
        m = helper.make_model(helper.make_graph(nodes, "g", ins, [vi("y", TensorProto.FLOAT, None)], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
        return load(m.SerializeToString())

    def session(graph):
        return WorkerSession("onnx-tf", "onnx-tf", graph, "cpu", python=Path("/nonexistent/python"), timeout=5)

    with pytest.raises(BackendError, match=r"node 'rs' \(Resize\): onnx-tf resizes axis 2 to the rounded length 5 and maps "
                                           r"coordinates with it, where ONNX uses the scale 1.7 \(input length x scale = 5.1\): refused"):
        session(model([1, 1, 1.7, 2]))
    with pytest.raises(BackendError, match=r"axis 3 to the rounded length 2 .* scale 0.6 \(input length x scale = 2.4\)"):
        session(model([1, 1, 2, 0.6], mode="align_corners"))
    with pytest.raises(BackendError, match=r"'scales' is computed inside the model, so mlms_ir cannot tell"):
        session(model([0.5, 0.5, 0.85, 1], computed=True))
    x = np.ones((1, 1, 3, 4), np.float32)
    with session(model(fed=True)) as s:
        with pytest.raises(BackendError, match="rounded length 5"):
            s.run({"x": x, "scales": np.array([1, 1, 1.7, 1], np.float32)})
        assert s.last_result == {}  # refused before any agent was started
    for fine in (model([1, 1, 2, 0.5]), model(sizes=True), model([1, 1, 1.7, 1.7], mode="tf_crop_and_resize")):
        session(fine).close()


# ---------------------------------------------------------------------------- isolation (always)
def test_a_hung_worker_is_killed_after_its_timeout(tmp_path, models):
    pidfile = tmp_path / "child.pid"
    fake = fake_python(tmp_path, f"sleep 60 &\necho $! > {pidfile}\nwait")
    t = time.monotonic()
    with pytest.raises(AgentTimeoutError, match=r"timed out after 0\.5 s"):
        probe(fake, "mxnet", timeout=0.5)
    assert time.monotonic() - t < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2], \
        "the worker's child survived: the process group was not killed"

    path, feeds, _ = models["mlp"]
    with WorkerSession("onnx-tf", "onnx-tf", load(path), "cpu", python=fake, timeout=0.3) as s:
        with pytest.raises(BackendError, match=r"onnx-tf worker .*timed out after 0\.3 s"):
            s.run(feeds)
        with pytest.raises(BackendError, match=r"timed out after 0\.2 s"):
            s.measure_in_worker(feeds, warmup=1, iterations=3, timeout=0.2)


def test_a_crashed_worker_reports_its_stderr(tmp_path, models):
    fake = fake_python(tmp_path, "echo 'loading the model' >&2\necho 'Segfault in the framework: boom' >&2\nexit 3")
    with pytest.raises(AgentCrashError, match=r"(?s)exited with status 3.*Segfault in the framework: boom"):
        probe(fake, "mxnet", timeout=30)
    path, feeds, _ = models["cnn"]
    with WorkerSession("mxnet", "mxnet", load(path), "cpu", python=fake, timeout=30) as s:
        with pytest.raises(BackendError, match="boom"):
            s.run(feeds)
        with pytest.raises(BackendError, match="cannot trace per node"):
            s.trace(feeds)

    killed = fake_python(tmp_path, "echo dying >&2\nkill -SEGV $$", name="python_segv")
    with pytest.raises(AgentCrashError, match=r"(?s)killed by SIGSEGV.*dying"):
        probe(killed, timeout=30)
    silent = fake_python(tmp_path, "exit 0", name="python_silent")
    with pytest.raises(AgentCrashError, match="wrote no readable result"):
        probe(silent, timeout=30)


def test_a_reused_agent_serves_several_requests_and_fails_alone(tmp_path, models, monkeypatch):
    """With MLMS_IR_AGENT_REUSE=N (tools/conformance.py's setting) one agent process serves N
    requests, then a new one starts; a hang is killed after its timeout and a crash reports its
    stderr, as with a process per request, and the next request starts a new agent."""
    monkeypatch.setenv(worker.REUSE_VAR, "3")
    worker.close_agents()
    path, feeds, expected = models["mlp"]
    pids, served = [], []
    with WorkerSession("ort-isolated", "onnxruntime", load(path), "cpu", python=Path(sys.executable), timeout=120) as s:
        for _ in range(4):
            _check_outputs(s.run(feeds), expected)
            agent = worker._agents[sys.executable]
            pids.append(agent.proc.pid)
            served.append(agent.served)
    assert served == [1, 2, 3, 1] and pids[0] == pids[1] == pids[2] != pids[3]
    first = pids[0]
    time.sleep(0.2)
    assert not Path(f"/proc/{first}").exists() or "Z" in Path(f"/proc/{first}/stat").read_text().split()[2]
    worker.close_agents()
    assert not worker._agents

    hung = fake_python(tmp_path, "read line\necho 'loading' >&2\nsleep 60", name="python_hung")
    with WorkerSession("mxnet", "mxnet", load(path), "cpu", python=hung, timeout=0.5) as s:
        t = time.monotonic()
        with pytest.raises(AgentTimeoutError, match=r"timed out after 0\.5 s and was killed"):
            s.run(feeds)
        assert time.monotonic() - t < 10
    assert not worker._agents
    crashed = fake_python(tmp_path, "read line\necho 'Segfault in the framework: boom' >&2\nexit 3", name="python_crash")
    with WorkerSession("mxnet", "mxnet", load(path), "cpu", python=crashed, timeout=30) as s:
        for _ in range(2):  # the second request starts a new agent, which crashes the same way
            with pytest.raises(AgentCrashError, match=r"(?s)exited with status 3.*Segfault in the framework: boom"):
                s.run(feeds)
    assert not worker._agents
    silent = fake_python(tmp_path, "read line\necho done", name="python_silent")
    with WorkerSession("mxnet", "mxnet", load(path), "cpu", python=silent, timeout=30) as s:
        with pytest.raises(AgentCrashError, match="wrote no readable result"):
            s.run(feeds)
    worker.close_agents()


def test_unavailable_says_how_to_get_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.delenv("MLMS_IR_MXNET_PYTHON", raising=False)
    monkeypatch.delenv("MLMS_IR_ONNX_TF_PYTHON", raising=False)
    monkeypatch.setenv("MLMS_IR_ENVS", str(tmp_path / "envs"))
    for be, var in ((MXNetBackend(), "MLMS_IR_MXNET_PYTHON"), (OnnxTfBackend(), "MLMS_IR_ONNX_TF_PYTHON")):
        a = be.available("cpu")
        assert not a and str(tmp_path / "envs" / be.name / "bin" / "python") in a.reason
        assert "bash tools/make_agent_envs.sh" in a.reason and var in a.reason and "python=PATH" in a.reason
        missing = tmp_path / "nowhere" / "python"
        a = be.available("cpu", python=missing)
        assert not a and str(missing) in a.reason and "python option" in a.reason
        monkeypatch.setenv(var, str(missing))
        a = be.available("cpu")
        assert not a and f"${var}" in a.reason
        with pytest.raises(BackendUnavailableError, match="make_agent_envs"):
            be.prepare(None, "cpu", python=missing)  # type: ignore[arg-type]
    assert "cuda" not in OnnxTfBackend().devices and not OnnxTfBackend().available("cuda")


def test_a_failing_probe_is_unavailability_and_cached(tmp_path):
    count = tmp_path / "count"
    fake = fake_python(tmp_path, f"echo x >> {count}\necho 'ImportError: libmxnet.so' >&2\nexit 1")
    be = MXNetBackend()
    a = be.available("cpu", python=fake)
    assert not a and "probe failed" in a.reason and "libmxnet.so" in a.reason
    assert not be.available("cuda", python=fake)
    assert len(count.read_text().split()) == 1  # one probe per interpreter, whatever the device


# ---------------------------------------------------------------------------- the frameworks (need the envs)
@pytest.fixture(scope="module")
def mxnet_backend():
    return agent_backend(MXNetBackend)


@pytest.fixture(scope="module")
def onnx_tf_backend():
    return agent_backend(OnnxTfBackend)


def _check_outputs(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert got[k].shape == v.shape and got[k].dtype == v.dtype
        np.testing.assert_allclose(got[k], v, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["mxnet_backend", "onnx_tf_backend"])
@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_measure_in_worker_matches_onnxruntime(backend, model, models, request):
    be = request.getfixturevalue(backend)
    path, feeds, expected = models[model]
    with be.prepare(load(path), "cpu") as s:
        samples, outputs = s.measure_in_worker(feeds, warmup=2, iterations=7)
        assert len(samples) == 7 and all(x > 0 for x in samples)
        _check_outputs(outputs, expected)
        res = s.last_result
        assert res["status"] == "ok" and res["load_ms"] > 0 and res["outputs"] == list(expected)
        assert s.options["framework_version"] == res["framework_version"] != ""
        assert s.options["python"] == str(be.python()[0])


def test_mxnet_run_and_raw_protocol(mxnet_backend, models, tmp_path):
    path, feeds, expected = models["cnn"]
    with mxnet_backend.prepare(load(path), "cpu", timeout=120) as s:
        _check_outputs(s.run(feeds), expected)
        samples, _ = s.measure_in_worker(feeds, warmup=0, iterations=1, min_time_s=0.05)
        assert len(samples) > 1 and sum(samples) >= 50.0
    with pytest.raises(BackendError, match="no option 'opt'"):
        mxnet_backend.prepare(load(path), "cpu", opt="all")
    # the protocol by hand: a request file, the agent, the result JSON and the outputs .npz
    save_npz(tmp_path / "in.npz", feeds)
    py = mxnet_backend.python()[0]
    req = {"framework": "mxnet", "model": str(path), "inputs": str(tmp_path / "in.npz"),
           "outputs": str(tmp_path / "out.npz"), "warmup": 1, "iterations": 3, "device": "cpu"}
    res = call_agent(py, req, tmp_path, timeout=120)
    assert res["status"] == "ok" and len(res["latency_ms"]) == 3 and res["numpy_version"].startswith("1.23")
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["logits"], expected["logits"], atol=1e-4)
    bad = dict(req, model=str(tmp_path / "missing.onnx"))
    res = call_agent(py, bad, tmp_path, timeout=120)
    assert res["status"] == "error" and "missing.onnx" in res["error"]


def test_runner_sees_worker_backends_through_the_registry(mxnet_backend):
    from mlms_ir.backends import registry

    be = registry.get("mxnet")
    assert isinstance(be, MXNetBackend) and be.available("cpu")
    assert os.fspath(be.python()[0]).endswith(os.path.join("bin", "python"))


def test_isolated_ort_runs_in_a_worker_of_this_interpreter():
    from mlms_ir.runner import run_backends
    from mlms_ir.zoo import builtin_path

    r = run_backends(builtin_path(), ["ort", "ort-isolated"], batches=[2], iterations=3, warmup=1, system=False)
    ort, iso = r.runs
    assert iso.status == "ok", iso.error
    assert iso.max_abs_diff == 0.0 and iso.latency_ms["iterations"] == 3
    assert iso.options["python"] == sys.executable or "python" in str(iso.options)
