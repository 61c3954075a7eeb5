"""Symbolic analysis of real exports, checked against figures no one here computed.

* torch's own flop counter (``torch.utils.flop_counter.FlopCounterMode``) on the same torch
  module: a transformer's MACs formula at (batch 1, seq 128) and (4, 512), and a ResNet's at a
  non-square size, equal its count / 2 (it counts a multiply-add as two FLOPs);
* torchvision's published GFLOPS (multiply-adds), reproduced from *dynamic-size* exports by
  evaluating the formulas: ResNet-18 at 224, LR-ASPP, FCN and DeepLabV3 at 520 (their aux heads run at
  inference, as torchvision measured them), RetinaNet at 800 (its transform's size-dependent
  resize and padding become formulas of h and w; boxes kept by its NonZero/TopK are named
  data dims, here 0: the published figure counts the network, not the post-processing);
* the property that a formula evaluated at some dims equals the analysis with them bound,
  node by node (``assert_formulas_match``).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
sympy = pytest.importorskip("sympy")

import mlms_ir  # noqa: E402
from symbolic_helpers import assert_formulas_match  # noqa: E402

pytestmark = pytest.mark.slow


def at(formula: str, **dims: int):
    """A formula string evaluated at ``dims`` (data dims not given: 0)."""
    f = sympy.sympify(formula)
    subs = {s: dims.get(s.name, 0) for s in f.free_symbols}
    v = f.subs(subs)
    return int(v) if v.is_Integer else float(v)


def flop_counter_macs(module, *args) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    total = counter.get_total_flops()
    assert total % 2 == 0
    return total // 2


# --------------------------------------------------------------------------- a GPT-style decoder
class Block(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.d, self.heads = d, heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc, self.out = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(self.d, dim=-1)
        hd = self.d // self.heads
        q, k, v = (z.reshape(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        # attention written out (torch's flop counter counts no FLOPs for CPU's fused SDPA kernel)
        scores = (q @ k.transpose(-2, -1)) / hd**0.5
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        a = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, self.d))
        return x + self.out(torch.nn.functional.gelu(self.fc(self.ln2(x))))


class Decoder(torch.nn.Module):
    def __init__(self, d: int = 64, heads: int = 4, layers: int = 2, vocab: int = 97, ctx: int = 512) -> None:
        super().__init__()
        self.tok, self.pos = torch.nn.Embedding(vocab, d), torch.nn.Embedding(ctx, d)
        self.layers = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x))


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    torch.manual_seed(0)
    m = Decoder().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("decoder") / "decoder.onnx"
    with torch.no_grad():
        torch.onnx.export(m, (torch.randint(0, 97, (2, 8)),), str(path), dynamo=False, opset_version=17,
                          input_names=["ids"], output_names=["logits"],
                          dynamic_axes={"ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
    return m, path


@pytest.mark.parametrize("batch, seq", [(1, 128), (4, 512)])
def test_transformer_macs_formula_equals_torch_flop_counter(decoder, batch, seq):
    module, path = decoder
    a = mlms_ir.analyze(path)
    assert at(a.totals.symbolic["macs"], batch=batch, seq=seq) == flop_counter_macs(module, torch.zeros(batch, seq, dtype=torch.long))


def test_transformer_attention_term(decoder):
    _, path = decoder
    b, s = sympy.symbols("batch seq")
    poly = sympy.Poly(sympy.sympify(mlms_ir.analyze(path).totals.symbolic["macs"]), b, s)
    # QK^T and AV: 2 * d MACs per (query, key) pair per layer, d = 64, 2 layers
    assert poly.coeff_monomial(b * s**2) == 2 * 64 * 2
    assert_formulas_match(path, [{"batch": 1, "seq": 1}, {"batch": 2, "seq": 100}, {"batch": 3, "seq": 512}])


# --------------------------------------------------------------------------- torchvision, dynamic size
def _export_vision(module, x, path, axes):
    with torch.no_grad():
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": axes})
    return path


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None).eval()
    path = _export_vision(m, torch.randn(1, 3, 224, 224), tmp_path_factory.mktemp("rn18") / "rn18.onnx",
                          {0: "batch", 2: "h", 3: "w"})
    return m, path


def test_resnet18_formula_reproduces_published_and_flop_counter(resnet18):
    module, path = resnet18
    a = mlms_ir.analyze(path)
    assert [d.name for d in a.dims] == ["batch", "h", "w"]
    macs = a.totals.symbolic["macs"]
    published = torchvision.models.ResNet18_Weights.DEFAULT.meta["_ops"]  # 1.814 GFLOPS (multiply-adds)
    assert at(macs, batch=1, h=224, w=224) / 1e9 == pytest.approx(published, rel=0.01)
    # exactly torch's count at a size where every stride rounds: the conv output formulas are right
    assert at(macs, batch=2, h=97, w=130) == flop_counter_macs(module, torch.randn(2, 3, 97, 130))


def test_resnet18_formulas_equal_bound_analyses(resnet18):
    _, path = resnet18
    assert_formulas_match(path, [{"batch": 1, "h": 224, "w": 224}, {"batch": 2, "h": 97, "w": 130}, {"batch": 1, "h": 33, "w": 64}],
                          device="a100")


@pytest.mark.parametrize("name, published", [("lraspp_mobilenet_v3_large", "LRASPP_MobileNet_V3_Large_Weights"),
                                             ("fcn_resnet50", "FCN_ResNet50_Weights"),
                                             ("deeplabv3_resnet50", "DeepLabV3_ResNet50_Weights")])
def test_segmentation_formula_reproduces_published_at_520(tmp_path, name, published):
    torch.manual_seed(0)
    aux = name != "lraspp_mobilenet_v3_large"  # FCN's and DeepLabV3's published figures include the aux head, which runs at inference
    kw = {"aux_loss": True} if aux else {}
    m = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, **kw).eval()
    path = _export_vision(m, torch.randn(1, 3, 520, 520), tmp_path / f"{name}.onnx", {0: "batch", 2: "h", 3: "w"})
    a = mlms_ir.analyze(path)
    assert a.totals.complete and {d.name for d in a.dims} == {"batch", "h", "w"}, a.dims
    ops = getattr(torchvision.models.segmentation, published).DEFAULT.meta["_ops"]
    assert at(a.totals.symbolic["macs"], batch=1, h=520, w=520) / 1e9 == pytest.approx(ops, rel=0.01)
    bound = mlms_ir.analyze(path, dims={"batch": 1, "h": 300, "w": 451})
    assert at(a.totals.symbolic["macs"], batch=1, h=300, w=451) == bound.totals.macs
    assert at(a.totals.symbolic["peak_activation_bytes"], batch=1, h=300, w=451) == bound.totals.peak_activation_bytes


def _export_detection(name: str, tmp_path):
    """A torchvision detector (random weights, resized to 800) exported with a dynamic image size."""
    torch.manual_seed(0)
    m = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, min_size=800, max_size=800).eval()
    path = tmp_path / f"{name}.onnx"
    with torch.no_grad():
        torch.onnx.export(m, ([torch.randn(3, 800, 800)],), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {1: "h", 2: "w"}})
    return path


def test_retinanet_counts_from_a_dynamic_size_export(tmp_path):
    path = _export_detection("retinanet_resnet50_fpn", tmp_path)
    a = mlms_ir.analyze(path)
    kinds = {d.name: d.kind for d in a.dims}
    assert kinds["h"] == kinds["w"] == "input"
    data = [d for d in a.dims if d.kind == "data"]
    assert data and all(d.name.startswith(("nonzero_", "topk_", "nms_", "if_")) for d in data)
    assert not [d for d in a.dims if d.kind == "unknown"]
    published = torchvision.models.detection.RetinaNet_ResNet50_FPN_Weights.DEFAULT.meta["_ops"]  # 151.54
    assert at(a.totals.symbolic["macs"], h=800, w=800) / 1e9 == pytest.approx(published, rel=0.005)
    # the transform's resize is a formula of h and w: a 480x640 image is scaled to 600x800
    resize = next(n for n in a.nodes if n.op_type == "Resize")
    out = [sympy.sympify(d) for d in resize.output_shapes[0][2:]]
    h, w = sympy.symbols("h w")
    assert [int(d.subs({h: 480, w: 640})) for d in out] == [600, 800]
    dims = {"h": 480, "w": 640, **{d.name: 5 for d in data}}
    bound = mlms_ir.analyze(path, dims=dims)
    assert at(a.totals.symbolic["macs"], **dims) == bound.totals.macs
    assert at(a.totals.symbolic["flops"], **dims) == bound.totals.flops


@pytest.mark.parametrize("name, weights", [("fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
                                           ("maskrcnn_resnet50_fpn", "MaskRCNN_ResNet50_FPN_Weights")])
def test_rcnn_heads_are_formulas_of_what_the_data_keeps(tmp_path, name, weights):
    a = mlms_ir.analyze(_export_detection(name, tmp_path))
    assert {u.op_type for u in a.unknown_ops} <= {"NonMaxSuppression"}  # listed, never counted as 0
    macs = sympy.sympify(a.totals.symbolic["macs"])
    at800 = macs.subs({s: 800 for s in macs.free_symbols if s.name in ("h", "w")})
    kept = {s.name: s for s in at800.free_symbols}
    assert all(next(d for d in a.dims if d.name == k).kind == "data" for k in kept)
    # the box head runs once per proposal the RPN keeps (at most 1000), Mask R-CNN's mask head once
    # per detection (at most 100): Min(1000, proposals) and Min(100, detections) terms
    proposals = next(s for s in at800.free_symbols if at800.subs(s, 0) != at800 and sympy.Min(1000, s) in at800.atoms(sympy.Min))
    full = at800.subs(proposals, 1000)
    published = getattr(torchvision.models.detection, weights).DEFAULT.meta["_ops"]  # 134.38 for both
    # torchvision counted its 1000 test-time proposals and, with random weights, no detections
    assert float(full.subs({s: 0 for s in full.free_symbols})) / 1e9 == pytest.approx(published, rel=0.005)
    assert sympy.expand(full - at800.subs(proposals, 0)) > 0  # the box head's 1000 proposals cost something
    if name.startswith("mask"):
        detections = next(iter(full.free_symbols))
        assert full.subs(detections, 100) > full.subs(detections, 0)
