"""PyTorch -> ONNX conversion: both exporters, dynamic batch, provenance, the numerical check, TorchScript,
torchvision builds from local weights, and the ``convert`` command line. Nothing is downloaded."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import threading

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

import mlms_ir  # noqa: E402
from mlms_ir.converters import ConversionError  # noqa: E402
from mlms_ir.converters import torch as ct  # noqa: E402
from mlms_ir.errors import MissingExtraError, MlmsIrError  # noqa: E402

HAS_ONNXSCRIPT = __import__("importlib.util").util.find_spec("onnxscript") is not None

#: Runs the CLI with the zoo and convert verbs registered (whether or not mlms_ir.cli registers them yet).
CLI = textwrap.dedent("""
    import sys, mlms_ir.cli as c
    from mlms_ir.cli.convert import convert
    from mlms_ir.cli.zoo import Zoo
    base = c.commands
    c.commands = lambda verb=None: {"zoo": Zoo(), "convert": convert, **base(verb)}
    sys.exit(c.main(sys.argv[1:]))
""")


def cli(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


class TinyNet(torch.nn.Module):
    """Conv(3->4, 3x3, pad 1) + ReLU + global mean + Linear(4->5): [B, 3, 8, 8] -> [B, 5]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _x(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _ort(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _meta(path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


EXPORTERS = ["legacy", pytest.param("dynamo", marks=pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="needs onnxscript"))]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_batch_with_each_exporter(tmp_path, exporter):
    net = TinyNet()
    out = tmp_path / "tiny.onnx"
    r = ct.from_torch(net, _x(2), out, exporter=exporter)
    assert r.path == out and out.is_file() and r.files == [out]
    assert r.exporter == exporter and r.fallback_reason is None
    assert r.checked_batches == [2, 4]  # the example batch, and the example batch + 2
    assert r.max_abs_error is not None and r.max_abs_error < 1e-4
    m = onnx.load(str(out))
    assert [d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim][:1] == ["batch"]
    assert m.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    x5 = _x(5)  # a batch size neither exported nor checked
    with torch.no_grad():
        want = net(x5).numpy()
    np.testing.assert_allclose(_ort(out, {"input": x5.numpy()})[0], want, atol=1e-5, rtol=1e-4)
    g = mlms_ir.load(out, dims={"batch": 3})
    assert g is not None


def test_static_batch(tmp_path):
    r = ct.from_torch(TinyNet(), _x(1), tmp_path / "s.onnx", exporter="legacy", dynamic_batch=False)
    assert r.checked_batches == [1]
    dims = onnx.load(str(r.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 8, 8]


def test_provenance_in_metadata(tmp_path):
    r = ct.from_torch(TinyNet(), _x(1), tmp_path / "p.onnx", exporter="legacy", provenance={"weights": "random", "note": "x"})
    meta = _meta(r.path)
    assert meta["mlms_ir.framework"] == "pytorch"
    assert meta["mlms_ir.framework_version"] == torch.__version__
    assert meta["mlms_ir.source"].endswith("TinyNet")
    assert meta["mlms_ir.exporter"] == "legacy" and meta["mlms_ir.opset"] == "17"
    assert meta["mlms_ir.weights"] == "random" and meta["mlms_ir.note"] == "x"
    assert float(meta["mlms_ir.max_abs_error"]) == r.max_abs_error
    assert meta["mlms_ir.checked_batches"] == "1,3"
    assert meta["mlms_ir.converted_at"].endswith("+00:00")
    assert {k.removeprefix("mlms_ir."): v for k, v in meta.items() if k.startswith("mlms_ir.")} == r.provenance
    assert r.to_dict()["files"] == {"p.onnx": r.path.stat().st_size}


def test_auto_falls_back_to_legacy_and_says_why(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("dynamo cannot do this\nsecond line")

    monkeypatch.setattr(ct, "_export_dynamo", broken)
    r = ct.from_torch(TinyNet(), _x(2), tmp_path / "f.onnx")
    assert r.exporter == "legacy"
    assert r.fallback_reason == "dynamo export failed: RuntimeError: dynamo cannot do this"
    assert _meta(r.path)["mlms_ir.fallback_reason"] == r.fallback_reason
    assert "exporter legacy (fallback: dynamo export failed: RuntimeError" in r.summary()


def _corrupting(export):
    """An exporter that writes a model whose first weight is off by 1.0."""

    def run(module, args, path, **kwargs):
        export(module, args, path, **kwargs)
        m = onnx.load(str(path))
        init = m.graph.initializer[0]
        arr = onnx.numpy_helper.to_array(init) + np.float32(1.0)
        init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        for f in path.parent.iterdir():  # drop a previous external data file
            if f != path:
                f.unlink()
        onnx.save(m, str(path))

    return run


def test_check_catches_a_wrong_export(tmp_path, monkeypatch):
    monkeypatch.setattr(ct, "_export_legacy", _corrupting(ct._export_legacy))
    out = tmp_path / "bad.onnx"
    with pytest.raises(ConversionError, match=r"legacy exporter failed: legacy export does not match torch: "
                       r"the ONNX model differs from torch by up to [0-9.]+ in output 'output' at batch 2 \(10 of 10 elements"):
        ct.from_torch(TinyNet(), _x(2), out, exporter="legacy")
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing left behind
    # without the check the wrong model is written, and says it was not checked
    r = ct.from_torch(TinyNet(), _x(2), out, exporter="legacy", check=False)
    assert r.max_abs_error is None and r.checked_batches == [] and _meta(out)["mlms_ir.max_abs_error"] == "not checked"


@pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="needs onnxscript")
def test_auto_reports_both_exporters(tmp_path, monkeypatch):
    monkeypatch.setattr(ct, "_export_legacy", _corrupting(ct._export_legacy))
    monkeypatch.setattr(ct, "_export_dynamo", _corrupting(ct._export_dynamo))
    with pytest.raises(ConversionError) as err:
        ct.from_torch(TinyNet(), _x(2), tmp_path / "bad.onnx")
    msg = str(err.value)
    assert "both exporters failed" in msg
    assert "dynamo export does not match torch" in msg and "legacy export does not match torch" in msg
    assert isinstance(err.value, MlmsIrError)


def test_tolerance_is_applied(tmp_path, monkeypatch):
    monkeypatch.setattr(ct, "_export_legacy", _corrupting(ct._export_legacy))
    # a weight off by 1.0 changes the outputs by far less than 1e6
    r = ct.from_torch(TinyNet(), _x(2), tmp_path / "t.onnx", exporter="legacy", atol=1e6)
    assert 1e-3 < r.max_abs_error < 1e6


def test_user_mistakes_are_conversion_errors(tmp_path):
    net = TinyNet()
    with pytest.raises(ConversionError, match="fails on the example inputs"):
        ct.from_torch(net, torch.randn(2, 5, 8, 8), tmp_path / "x.onnx", exporter="legacy")
    with pytest.raises(ConversionError, match="unknown exporter"):
        ct.from_torch(net, _x(), tmp_path / "x.onnx", exporter="tf2onnx")
    with pytest.raises(ConversionError, match="2 input names for 1"):
        ct.from_torch(net, _x(), tmp_path / "x.onnx", input_names=["a", "b"])
    with pytest.raises(ConversionError, match="tensor or a non-empty tuple"):
        ct.from_torch(net, [1, 2], tmp_path / "x.onnx")


def test_quantized_chunk_symbolic_is_shared_across_threads():
    """Threads exporting at once share one registration of the quantized ConstantChunk symbolic: the
    first one in registers it, one leaving early does not take it from the others, the last one out
    puts torch's own back. A nested use and a symbolic the user registered are respected too."""
    registration = pytest.importorskip("torch.onnx._internal.torchscript_exporter.registration")
    name, opset, n = "prim::ConstantChunk", ct.LEGACY_OPSET, 6
    group = registration.registry.get_function_group(name)
    torch_own = group.get(opset)
    assert torch_own is not None and not group._functions.overridden(opset)
    entered = [threading.Event() for _ in range(n)]
    leave = [threading.Event() for _ in range(n)]
    all_inside = threading.Barrier(n + 1)
    seen: list = [None] * n
    errors: list[BaseException] = []

    def export(i: int) -> None:
        try:
            with ct._quantized_chunk_symbolic(opset):
                entered[i].set()
                seen[i] = group.get(opset)
                all_inside.wait(10)
                leave[i].wait(10)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(i,)) for i in range(n)]
    try:
        threads[0].start()
        assert entered[0].wait(10)  # thread 0 registers; the others join it
        for t in threads[1:]:
            t.start()
        all_inside.wait(10)
        ours = seen[0]
        assert ours is not torch_own and all(s is ours for s in seen)
        for i, t in enumerate(threads):  # the first in leaves first
            leave[i].set()
            t.join(10)
            assert group.get(opset) is (ours if i < n - 1 else torch_own), f"after thread {i} left"
    finally:
        for e in leave:
            e.set()
        for t in threads:
            t.join(10)
    assert not errors and not group._functions.overridden(opset) and ct._CHUNK_REGISTRATIONS == {}
    with ct._quantized_chunk_symbolic(opset):
        outer = group.get(opset)
        with ct._quantized_chunk_symbolic(opset):
            assert group.get(opset) is outer
        assert group.get(opset) is outer is not torch_own  # the inner exit leaves it to the outer
    assert group.get(opset) is torch_own

    def users_own(g, self, chunks, dim):
        return torch_own(g, self, chunks, dim)

    registration.registry.register(name, opset, users_own, custom=True)
    try:
        with ct._quantized_chunk_symbolic(opset):
            assert group.get(opset) is users_own
        assert group.get(opset) is users_own
    finally:
        registration.registry.unregister(name, opset)
    assert group.get(opset) is torch_own


def test_training_mode_is_restored(tmp_path):
    net = TinyNet().train()
    ct.from_torch(net, _x(), tmp_path / "m.onnx", exporter="legacy")
    assert net.training


def test_external_data_beyond_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(ct, "EXTERNAL_DATA_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(ct, "EXTERNAL_TENSOR_MIN_BYTES", 0)
    out = tmp_path / "big.onnx"
    r = ct.from_torch(TinyNet(), _x(), out, exporter="legacy")
    data = tmp_path / "big.onnx.data"
    assert r.files == [out, data] and sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    m = onnx.load(str(out), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer if t.name.endswith("weight"))
    assert _meta(out)["mlms_ir.exporter"] == "legacy"
    with torch.no_grad():
        want = TinyNet()(_x()).numpy()
    np.testing.assert_allclose(_ort(out, {"input": _x().numpy()})[0], want, atol=1e-5, rtol=1e-4)


class TwoIn(torch.nn.Module):
    def forward(self, a, b):
        return a * 2 + b, a.sum(dim=1)


def test_several_inputs_and_outputs(tmp_path):
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    r = ct.from_torch(TwoIn(), (a, b), tmp_path / "two.onnx", exporter="legacy", input_names=["a", "b"], output_names=["y", "s"])
    m = onnx.load(str(r.path))
    assert [i.name for i in m.graph.input] == ["a", "b"] and [o.name for o in m.graph.output] == ["y", "s"]
    assert r.max_abs_error < 1e-5


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_round_trip(tmp_path):
    net = TinyNet().eval()
    ts = tmp_path / "tiny.pt"
    torch.jit.trace(net, _x(2)).save(str(ts))
    out = tmp_path / "tiny.onnx"
    r = ct.from_torchscript(ts, (2, 3, 8, 8), out)  # shapes: seeded random float32 inputs
    assert r.exporter in ("dynamo", "legacy") and r.max_abs_error < 1e-4
    meta = _meta(out)
    assert meta["mlms_ir.source"] == f"torchscript:{ts.resolve()}"
    assert meta["mlms_ir.source_sha256"] == hashlib.sha256(ts.read_bytes()).hexdigest()
    with torch.no_grad():
        want = net(_x(3)).numpy()
    np.testing.assert_allclose(_ort(out, {"input": _x(3).numpy()})[0], want, atol=1e-5, rtol=1e-4)


def test_torchscript_errors(tmp_path):
    with pytest.raises(ConversionError, match="no TorchScript file"):
        ct.from_torchscript(tmp_path / "missing.pt", (1, 3, 8, 8), tmp_path / "x.onnx")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ConversionError, match="cannot load"):
        ct.from_torchscript(junk, (1, 3, 8, 8), tmp_path / "x.onnx")
    with pytest.raises(ConversionError, match="shapes of positive ints"):
        ct.from_torchscript(junk, "1x3", tmp_path / "x.onnx")


def test_missing_torch_names_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # as if torch were not installed
        from mlms_ir.converters.torch import from_torch
        from mlms_ir.errors import MissingExtraError
        try:
            from_torch(object(), None, "x.onnx")
        except MissingExtraError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "pip install 'mlms_ir[torch]'" in out
    assert issubclass(MissingExtraError, MlmsIrError)


# ------------------------------------------------------------------------------------------------
# torchvision (random or local weights; nothing is downloaded)
# ------------------------------------------------------------------------------------------------
tv = pytest.importorskip("torchvision")


def test_torchvision_unknown_name(tmp_path):
    with pytest.raises(ConversionError, match="no model 'resnet5O'; did you mean resnet50"):
        ct.from_torchvision("resnet5O", tmp_path / "x.onnx")


def test_torchvision_never_downloads(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    with pytest.raises(ConversionError, match="not on this machine .* mlms_ir zoo build squeezenet1_1 --weights"):
        ct.from_torchvision("squeezenet1_1", tmp_path / "x.onnx", weights="DEFAULT")
    assert not (tmp_path / "hub").exists()
    with pytest.raises(ConversionError, match="has no weights 'IMAGENET9K'"):
        ct.from_torchvision("squeezenet1_1", tmp_path / "x.onnx", weights="IMAGENET9K")


def _squeezenet_state(tmp_path):
    torch.manual_seed(3)
    model = tv.models.squeezenet1_1(weights=None).eval()
    path = tmp_path / "sq.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_torchvision_from_a_local_pth(tmp_path):
    model, pth = _squeezenet_state(tmp_path)
    r = ct.from_torchvision("squeezenet1_1", tmp_path / "sq.onnx", weights=pth, resolution=64, batch=2)
    assert r.provenance["weights"] == f"file:{pth.resolve()}" and r.checked_batches == [2, 4]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(_ort(r.path, {"input": x.numpy()})[0], want, atol=1e-4, rtol=1e-3)


def test_torchvision_published_weights_from_a_verified_local_file(tmp_path, monkeypatch):
    from mlms_ir.converters import torchvision_spec

    model, pth = _squeezenet_state(tmp_path)
    # the file is not torchvision's: its sha256 prefix does not match the URL's
    with pytest.raises(ConversionError, match="sha256 does not start with"):
        ct.from_torchvision("squeezenet1_1", tmp_path / "sq.onnx", weights="DEFAULT", weights_path=pth)
    prefix = hashlib.sha256(pth.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(torchvision_spec, "sha256_prefix_of", lambda url: prefix)
    r = ct.from_torchvision("squeezenet1_1", tmp_path / "sq.onnx", weights="IMAGENET1K_V1", weights_path=pth, resolution=64)
    assert r.provenance["weights"] == "SqueezeNet1_1_Weights.IMAGENET1K_V1" and "weights_note" not in r.provenance
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(_ort(r.path, {"input": x.numpy()})[0], want, atol=1e-4, rtol=1e-3)


def test_torchvision_random_weights_are_marked(tmp_path):
    r = ct.from_torchvision("squeezenet1_1", tmp_path / "sq.onnx", resolution=64, exporter="legacy")
    meta = _meta(r.path)
    assert meta["mlms_ir.weights"] == "random"
    assert "never for accuracy" in meta["mlms_ir.weights_note"]
    assert meta["mlms_ir.torchvision_version"] == tv.__version__
    assert meta["mlms_ir.source"] == "torchvision:squeezenet1_1" and meta["mlms_ir.task"] == "image-classification"
    assert [o.name for o in onnx.load(str(r.path)).graph.output] == ["logits"]


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_cli_convert_torchscript(tmp_path):
    ts = tmp_path / "tiny.pt"
    torch.jit.trace(TinyNet().eval(), _x(2)).save(str(ts))
    r = cli("convert", str(ts), "--framework", "torchscript", "--input-shape", "x:2x3x8x8", "--exporter", "legacy")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "tiny.onnx"
    assert r.stdout.startswith(f"{out}: exporter legacy, max abs error ") and r.stdout.count("\n") == 1
    assert [i.name for i in onnx.load(str(out)).graph.input] == ["x"]


@pytest.mark.slow
def test_cli_convert_torchvision(tmp_path):
    out = tmp_path / "sq.onnx"
    r = cli("convert", "squeezenet1_1", "--output", str(out), "--input-shape", "1x3x64x64", "--exporter", "legacy")
    assert r.returncode == 0, r.stderr
    assert f"{out}: exporter legacy, max abs error" in r.stdout and "(batch 1, 3)" in r.stdout
    assert [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim][1:] == [3, 64, 64]


@pytest.mark.slow
def test_cli_convert_errors(tmp_path):
    r = cli("convert", "model.json", "--framework", "mxnet")
    assert r.returncode == 2 and "needs its params file" in r.stderr
    r = cli("convert", "resnet5O", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean resnet50" in r.stderr and "Traceback" not in r.stderr
    r = cli("convert", str(tmp_path / "m.pt"), "--framework", "torchscript")
    assert r.returncode == 2 and "--input-shape" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs", "inputs", "outputs"), [
    ("deeplabv3_mobilenet_v3_large", {"resolution": 64}, {"input": [1, 3, 64, 64]}, ["out", "aux"]),
    ("raft_small", {"resolution": 128}, {"image1": [1, 3, 128, 128], "image2": [1, 3, 128, 128]}, ["flow"]),
    ("r3d_18", {"resolution": 32, "frames": 4}, {"input": [1, 3, 4, 32, 32]}, ["logits"]),
    ("ssdlite320_mobilenet_v3_large", {}, {"images": [1, 3, 320, 320]}, ["boxes", "scores", "labels"]),
])
def test_torchvision_tasks(tmp_path, name, kwargs, inputs, outputs):
    r = ct.from_torchvision(name, tmp_path / f"{name}.onnx", exporter="legacy", **kwargs)
    m = onnx.load(str(r.path))
    got = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    detection = name.startswith("ssd")
    want = {k: (v if detection else ["batch", *v[1:]]) for k, v in inputs.items()}  # detection: one image, static
    assert got == want
    assert [o.name for o in m.graph.output] == outputs
    assert r.checked_batches == ([1] if detection else [1, 3])
    if detection:
        assert any("compared by shape only" in w for w in r.warnings)
