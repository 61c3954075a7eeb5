"""MXNet to ONNX through mx.onnx.export_model in the MXNet agent environment, checked against MXNet."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import onnx
import pytest

import mlms_ir
from mlms_ir.converters import ConversionError
from mlms_ir.converters.mxnet import from_mxnet, mxnet_python

MAKE = textwrap.dedent("""
    import sys, mxnet as mx
    from mxnet import gluon, nd
    mx.random.seed(0)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3, activation="relu"), gluon.nn.Flatten(), gluon.nn.Dense(10))
    net.initialize(mx.init.Normal(0.1))
    net.hybridize()
    net(nd.zeros((1, 1, 8, 8)))
    net.export(sys.argv[1], epoch=0)
""")


@pytest.fixture(scope="module")
def mx_model(tmp_path_factory):
    try:
        py = mxnet_python()
    except ConversionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}: CI creates the agent environments first")
        pytest.skip(str(exc))
    d = tmp_path_factory.mktemp("mx")
    r = subprocess.run([str(py), "-c", MAKE, str(d / "net")], capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert r.returncode == 0, r.stderr[-2000:]
    return d / "net-symbol.json", d / "net-0000.params"


def test_mxnet_model_to_onnx(mx_model, tmp_path):
    sym, params = mx_model
    res = from_mxnet(sym, params, tmp_path / "net.onnx", input_shapes=[[1, 1, 8, 8]])
    assert res.max_abs_error < 1e-4 and res.checked_batches == [2, 3]
    m = onnx.load(res.path)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["mlms_ir.source_framework"] == "mxnet" and meta["mlms_ir.framework_version"].startswith("1.9")
    assert [i.name for i in m.graph.input] == ["data"]  # the weights are initializers only
    a = mlms_ir.analyze(str(res.path), batch=1)
    assert a.totals.params == 4 * 9 + 4 + 144 * 10 + 10 and a.totals.macs == 6 * 6 * 4 * 9 + 144 * 10


def test_mxnet_errors_and_cli(mx_model, tmp_path):
    sym, params = mx_model
    with pytest.raises(ConversionError, match="no MXNet file"):
        from_mxnet(tmp_path / "none-symbol.json", params, tmp_path / "x.onnx", input_shapes=[[1, 1, 8, 8]])
    with pytest.raises(ConversionError, match="MXNet could not export the model"):
        from_mxnet(sym, params, tmp_path / "x.onnx", input_shapes=[[1, 3, 8, 8]])  # 3 channels into a 1-channel conv
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "convert", str(sym), "--framework", "mxnet", "--weights", str(params),
                        "--input-shape", "1x1x8x8", "--output", str(tmp_path / "cli.onnx")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"{tmp_path / 'cli.onnx'}: exporter mxnet.onnx.export_model")
