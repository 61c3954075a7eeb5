"""Shared fixtures (tiny models written as ONNX text, real exports made once per run) and the
set-up that lets the suite run on several pytest-xdist workers."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx.parser
import pytest

# Every command the tests run records into a throw-away results store, never the user's
# (subprocesses inherit it); a test that checks the store sets its own. Each process that loads
# this file (under pytest-xdist, each worker) has its own store, removed when it exits.
_STORE_DIR = tempfile.mkdtemp(prefix="mlms_ir_test_store_")
atexit.register(shutil.rmtree, _STORE_DIR, ignore_errors=True)
os.environ["MLMS_IR_STORE"] = os.path.join(_STORE_DIR, "results.sqlite")
# One OpenMP thread per test process (set before anything imports torch; subprocesses inherit it):
# the pytest-xdist workers already use every CPU, and a process whose torch has run a parallel
# region hangs in a forked child that runs torch again (libgomp's team is not fork-safe), as the
# runner's isolated backends do when a test calls ``run`` in-process after other torch tests.
os.environ["OMP_NUM_THREADS"] = "1"

# ------------------------------------------------------------------------------------------------
# running in parallel (pytest-xdist: the README runs ``pytest -n auto --dist loadfile``)
# ------------------------------------------------------------------------------------------------
#: The test files that take longest (measured on the 2-core CI machine), longest first. Under
#: ``--dist loadfile`` each worker takes whole files (their module and session fixtures made
#: once), in collection order: these start first, and the short files fill in behind them, so no
#: worker is left with a long file at the end. A test of minutes is split into shards
#: (parametrized with ids ``shard0``, ``shard1``, ...), and each shard is a unit of its own.
LONG_FIRST = (
    "test_conformance.py",  # ONNX's node cases on every backend: one session fixture of minutes
    "test_symbolic.py",  # ONNX's node cases with a symbolic dim: four shards of a minute or more
    "test_onnx_tf_compat.py",
    "test_converters.py",
    "test_fuzz.py",
    "test_converters_tf.py",
    "test_zoo.py",
    "test_console_examples.py",
    "test_report_html.py",
    "test_sweep.py",
    "test_store.py",
    "test_hostile.py",
    "test_runs.py",
    "test_symbolic_exports.py",
    "test_converters_onnx_tf.py",
    "test_agents.py",
    "test_values.py",
    "test_torchvision.py",
    "test_mxnet_compat.py",
)
_SHARD = re.compile(r"\[shard\d+(\]|-)")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per CPU this process may run on (xdist would count physical cores
    when psutil is installed: one, on a 2-vCPU machine whose vCPUs share a core)."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env and env.isdigit():
        return int(env)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        # xdist would otherwise hand out the files with the most tests first, not LONG_FIRST's order
        config.option.loadscopereorder = False


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that each shard of a sharded test is a unit of its own (xdist's
    ``loadgroup`` would do it with markers, but cannot rename pytest 9's node ids)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndShards(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid if _SHARD.search(nodeid) else super()._split_scope(nodeid)

    return FilesAndShards(config, log)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a serial run keeps pytest's order
        rank = {name: i for i, name in enumerate(LONG_FIRST)}
        # a file's shards before the rest of it; stable: a file's tests keep their order
        items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), not _SHARD.search(item.nodeid)))


def shared_build(tmp_path_factory, key: str, build: Callable[[Path], Path]) -> Path:
    """What ``build(folder)`` makes in an empty folder (it returns the path of the result), made
    once per run: under pytest-xdist, the first worker to ask builds it under a file lock in a
    folder all the workers of the run share (``key`` names it: the inputs), the others wait for it
    and reuse it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own (popen-gw0, ...)
    folder = root / "shared" / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    done = folder.with_name(key + ".done")  # holds the result's path, relative to the folder
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed part-way
            folder.mkdir()
            done.write_text(Path(build(folder)).relative_to(folder).as_posix())
    return folder / done.read_text()


SMALL_CNN = """
<ir_version: 8, opset_import: ["" : 17]>
small_cnn (float[N,3,16,16] x) => (float[N,10] y) {
  c1 = Conv <pads=[1,1,1,1], kernel_shape=[3,3]> (x, w1, b1)
  r1 = Relu (c1)
  p1 = GlobalAveragePool (r1)
  f1 = Flatten (p1)
  y = Gemm <transB=1> (f1, w2, b2)
}
"""


def small_cnn() -> onnx.ModelProto:
    """Conv(3->8, 3x3, pad 1) + Relu + GlobalAveragePool + Flatten + Gemm(8->10), symbolic batch N."""
    m = onnx.parser.parse_model(SMALL_CNN)
    rng = __import__("numpy").random.default_rng(0)
    from onnx import numpy_helper

    for name, shape in (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (10, 8)), ("b2", (10,))):
        m.graph.initializer.append(numpy_helper.from_array(rng.standard_normal(shape).astype("float32"), name))
    return m


@pytest.fixture
def onnx_reference(monkeypatch):
    """Registers ``onnx-reference``: onnx's reference evaluator without mlms_ir's corrections of the
    ops it computes wrongly (``test_divergence.UnpatchedReference``), a backend with a real bug for
    the divergence arbiter to name."""
    from mlms_ir.backends import registry
    from test_divergence import UnpatchedReference

    monkeypatch.setitem(registry._cache, "onnx-reference", UnpatchedReference())
    monkeypatch.setitem(registry.BUILTIN, "onnx-reference", "tests:unused")
    return "onnx-reference"


@pytest.fixture
def cnn() -> onnx.ModelProto:
    return small_cnn()


@pytest.fixture
def cnn_path(tmp_path):
    p = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), p)
    return p


@pytest.fixture(scope="session")
def dynamo_encoder(tmp_path_factory):
    """A real exporter's output, made once: a Transformer encoder layer (GELU, batch 2, 5 tokens of
    16) through torch's dynamo exporter (opset 18+: LayerNormalization, Reduce*-18,
    Squeeze/Unsqueeze-13, shape arithmetic). Returns (path, feeds, onnxruntime's outputs by name)."""
    torch = pytest.importorskip("torch")
    import numpy as np
    import onnxruntime as ort

    from mlms_ir.converters.torch import from_torch

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, activation="gelu",
                                             batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    # exported once per run (three test files, possibly on different workers, use it)
    path = shared_build(tmp_path_factory, f"encoder-d16-h2-ff32-gelu-b2-t5-torch{torch.__version__}",
                        lambda folder: from_torch(layer, (x,), folder / "enc.onnx", input_names=["x"],
                                                  dynamic_batch=False, exporter="dynamo").path)
    assert onnx.load(path).opset_import[0].version >= 18
    feeds = {"x": x.numpy().astype(np.float32)}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return path, feeds, dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def agent_backend(cls):
    """A worker backend (``MXNetBackend``, ``OnnxTfBackend``) whose agent environment is here; the
    test is skipped without it, except under CI, which creates the environments first
    (``tools/make_agent_envs.sh``), so there a missing one fails."""
    be = cls()
    a = be.available("cpu")
    if not a:
        if os.environ.get("CI"):
            pytest.fail(f"{be.name} agent env absent under CI: {a.reason}")
        pytest.skip(f"{be.name} agent env absent: {a.reason}")
    return be


@pytest.fixture
def lone_thread(monkeypatch):
    """This process running no thread but its own, as the forked workers of a large analysis
    require (mlms_ir.ir.guard.can_fork_worker): tqdm's monitor thread, which an earlier test that
    showed a tqdm bar leaves behind, is stopped and kept from restarting. Skips where fork is
    missing, fewer than two CPUs are free or another thread still runs."""
    import sys
    import threading

    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)
        monitor = getattr(tqdm.tqdm, "monitor", None)
        if monitor is not None:
            monitor.exit()
            tqdm.tqdm.monitor = None
    from mlms_ir.ir.guard import can_fork_worker

    if not can_fork_worker():
        pytest.skip("a worker is forked only where fork exists, two CPUs are free and no other thread runs: "
                    + ", ".join(t.name for t in threading.enumerate()))
