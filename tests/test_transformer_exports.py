"""A small GPT-style decoder exported by both torch exporters: every op is counted, the MACs
equal the hand formula at any bound batch and sequence length, and the layers are found as
repeated blocks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import mlms_ir  # noqa: E402

pytestmark = pytest.mark.slow

D, HEADS, LAYERS, VOCAB, CTX = 64, 4, 3, 101, 32


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(D)
        self.qkv = torch.nn.Linear(D, 3 * D)
        self.proj = torch.nn.Linear(D, D)
        self.ln2 = torch.nn.LayerNorm(D)
        self.fc = torch.nn.Linear(D, 4 * D)
        self.out = torch.nn.Linear(4 * D, D)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (z.reshape(b, t, HEADS, D // HEADS).transpose(1, 2) for z in (q, k, v))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, D))
        return x + self.out(torch.nn.functional.gelu(self.fc(self.ln2(x))))


class TinyGPT(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = torch.nn.Embedding(VOCAB, D)
        self.pos = torch.nn.Embedding(CTX, D)
        self.layers = torch.nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = torch.nn.LayerNorm(D)
        self.head = torch.nn.Linear(D, VOCAB, bias=False)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln(x))


def expected_macs(b: int, t: int) -> int:
    # per layer: qkv 3d^2, proj d^2, mlp 8d^2 per token; QK^T and AV t*d each per token
    per_layer = b * t * 12 * D * D + 2 * b * t * t * D
    return LAYERS * per_layer + b * t * D * VOCAB


@pytest.fixture(scope="module", params=["legacy", "dynamo"])
def gpt_path(request, tmp_path_factory):
    if request.param == "dynamo":
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = TinyGPT().eval()
    with torch.no_grad():  # fresh LayerNorms are all ones/zeros, which exporters store once: make them differ
        for p in model.parameters():
            p.normal_(0, 0.02)
    ids = torch.randint(0, VOCAB, (2, 8))
    path = tmp_path_factory.mktemp(request.param) / "gpt.onnx"
    with torch.no_grad():
        if request.param == "legacy":
            torch.onnx.export(model, (ids,), str(path), dynamo=False, opset_version=17, input_names=["ids"],
                              output_names=["logits"], dynamic_axes={"ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
        else:
            batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=CTX)
            torch.onnx.export(model, (ids,), str(path), dynamo=True, input_names=["ids"], output_names=["logits"],
                              dynamic_shapes=({0: batch, 1: seq},))
    return path


@pytest.mark.parametrize("b, t", [(1, 8), (4, 16), (2, 32)])
def test_every_op_counted_and_macs_match(gpt_path, b, t):
    g = mlms_ir.load(gpt_path, input_shapes=[f"ids:{b}x{t}"])
    a = mlms_ir.analyze(g)
    assert a.unknown_ops == []
    assert a.totals.complete, a.unresolved_dims
    assert a.totals.macs == expected_macs(b, t)
    # params: embeddings + per layer (2 LN, qkv, proj, fc, out) + final LN + head
    per_layer = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D)
    params = VOCAB * D + CTX * D + LAYERS * per_layer + 2 * D + D * VOCAB
    # exporters may fold constants (the causal mask, arange) into small initializers
    assert params <= a.totals.params <= params * 1.015


def test_unbound_dims_give_the_macs_formula(gpt_path):
    sympy = pytest.importorskip("sympy")
    a = mlms_ir.analyze(gpt_path)
    assert a.totals.complete and a.unresolved_dims == []
    assert [d.name for d in a.dims] == ["batch", "seq"]
    b, t = sympy.symbols("batch seq")
    # the hand formula, as a polynomial: the seq^2 attention term has coefficient 2*D per layer
    assert sympy.expand(sympy.sympify(a.totals.symbolic["macs"]) - expected_macs(b, t)) == 0
    assert sympy.Poly(sympy.sympify(a.totals.symbolic["macs"]), b, t).coeff_monomial(b * t**2) == LAYERS * 2 * D


def test_formulas_equal_the_bound_analyses_node_by_node(gpt_path):
    from symbolic_helpers import assert_formulas_match

    assert_formulas_match(gpt_path, [{"batch": 1, "seq": 1}, {"batch": 3, "seq": 7}, {"batch": 2, "seq": CTX}], device="a100")


def test_layers_found_as_blocks(gpt_path):
    a = mlms_ir.analyze(gpt_path, input_shapes=["ids:1x8"])
    assert any(b.count == LAYERS for b in a.blocks), [(b.name, b.count) for b in a.blocks]
