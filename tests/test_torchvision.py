"""Static counts against torchvision's published figures, on models exported for real.

torchvision's weights carry ``num_params`` and ``_ops`` ("GFLOPS", counting one multiply-add as one
op, so they compare with our MACs). Each model is built with ``weights=None`` (nothing is
downloaded), exported with ``torch.onnx.export`` at the resolution of its published weights, and
analysed. Exports are cached per session. ``tools/check_torchvision.py`` runs the same check over
every classification model.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tv_models = pytest.importorskip("torchvision.models")

import mlms_ir  # noqa: E402

pytestmark = pytest.mark.slow

#: A representative set: residual CNNs, depthwise/SE nets, dense and inception branches,
#: ViT/Swin/MaxViT attention, ConvNeXt LayerNorms.
MODELS = [
    "resnet50", "mobilenet_v3_small", "efficientnet_b0", "densenet121", "squeezenet1_1",
    "shufflenet_v2_x1_0", "regnet_y_400mf", "convnext_tiny", "vit_b_16", "swin_t", "maxvit_t",
    "inception_v3",
]
#: Parameters of training-only branches, absent from the inference graph but in num_params.
TRAINING_ONLY = {"inception_v3": "AuxLogits"}


def _resolution(weights) -> int:
    return int(weights.transforms().crop_size[0])


def export(name: str, out_dir, *, dynamo: bool = False, dynamic_batch: bool = False):
    """Export torchvision model ``name`` (random weights) and return (path, weights meta, module)."""
    weights = tv_models.get_model_weights(name).DEFAULT
    torch.manual_seed(0)
    model = tv_models.get_model(name, weights=None).eval()
    r = _resolution(weights)
    x = torch.randn(1, 3, r, r)
    path = out_dir / f"{name}{'_dynamo' if dynamo else ''}{'_dyn' if dynamic_batch else ''}.onnx"
    torch.backends.mha.set_fastpath_enabled(False)
    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=18 if dynamo else 17)
    if dynamic_batch and not dynamo:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, **kwargs)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, do_constant_folding=True, **kwargs)
    return path, weights.meta, model


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    cache: dict = {}
    root = tmp_path_factory.mktemp("torchvision")

    def get(name: str, **kw):
        key = (name, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = export(name, root, **kw)
        return cache[key]

    return get


@pytest.mark.parametrize("name", MODELS)
def test_params_and_macs_match_published(exported, name):
    path, meta, model = exported(name)
    a = mlms_ir.analyze(path)
    assert a.totals.complete, (a.unknown_ops, a.unresolved_dims)
    published = meta["num_params"]
    skip = TRAINING_ONLY.get(name)
    if skip:  # the published count includes a training-only branch the export drops
        published -= sum(p.numel() for n, p in model.named_parameters() if n.startswith(skip))
    assert a.totals.params == pytest.approx(published, rel=0.015)
    assert a.totals.macs / 1e9 == pytest.approx(meta["_ops"], rel=0.02)


def test_dynamic_batch_scales_exactly(exported):
    path, _, _ = exported("resnet50", dynamic_batch=True)
    one = mlms_ir.analyze(path, batch=1)
    eight = mlms_ir.analyze(path, batch=8)
    assert eight.totals.macs == 8 * one.totals.macs
    assert eight.totals.flops == 8 * one.totals.flops
    assert eight.totals.activation_bytes == 8 * one.totals.activation_bytes
    assert eight.totals.params == one.totals.params
    unbound = mlms_ir.analyze(path)  # every figure a formula of batch, never 0
    assert unbound.unresolved_dims == [] and [d.name for d in unbound.dims] == ["batch"]
    assert unbound.totals.symbolic["macs"] == f"{one.totals.macs}*batch"
    assert unbound.totals.symbolic["activation_bytes"] == f"{one.totals.activation_bytes}*batch"


def test_resnet50_blocks_from_name_scopes(exported):
    path, _, _ = exported("resnet50")
    blocks = mlms_ir.analyze(path).blocks
    # 16 bottlenecks: 12 plain and 4 with a downsample branch (different structure)
    counts = sorted(b.count for b in blocks if b.name.startswith("layer"))
    assert counts == [4, 12], [(b.name, b.count) for b in blocks]


def test_vit_encoder_layers_found(exported):
    path, _, _ = exported("vit_b_16")
    blocks = mlms_ir.analyze(path).blocks
    assert blocks[0].count == 12 and blocks[0].name.startswith("encoder_layer_"), [(b.name, b.count) for b in blocks]


@pytest.mark.parametrize("name", ["resnet50", "vit_b_16"])
def test_dynamo_exporter_counts_the_same(exported, name):
    pytest.importorskip("onnxscript")
    legacy = mlms_ir.analyze(exported(name)[0])
    path, meta, _ = exported(name, dynamo=True)
    a = mlms_ir.analyze(path)
    assert a.totals.complete, (a.unknown_ops, a.unresolved_dims)
    assert a.totals.macs == legacy.totals.macs
    # the dynamo exporter keeps BatchNormalization (running stats are initializers: + 2 per channel)
    assert a.totals.params == pytest.approx(meta["num_params"], rel=0.015)
