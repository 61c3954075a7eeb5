"""Shared fixtures: tiny models written as ONNX text."""

from __future__ import annotations

import os
import tempfile

import onnx
import onnx.parser
import pytest

# Every command the tests run records into a throw-away results store, never the user's
# (subprocesses inherit it); a test that checks the store sets its own.
os.environ["MLMS_IR_STORE"] = os.path.join(tempfile.mkdtemp(prefix="mlms_ir_test_store_"), "results.sqlite")

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
    res = from_torch(layer, (x,), tmp_path_factory.mktemp("encoder") / "enc.onnx", input_names=["x"],
                     dynamic_batch=False, exporter="dynamo")
    assert onnx.load(res.path).opset_import[0].version >= 18
    feeds = {"x": x.numpy().astype(np.float32)}
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    return res.path, feeds, dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


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
