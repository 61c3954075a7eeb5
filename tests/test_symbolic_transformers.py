"""GPT-2, BERT and LLaMA built from ``transformers`` configs, exported by torch's dynamo exporter
with dynamic batch and sequence: their MACs formulas, evaluated at (batch 1, seq 128) and
(4, 512), equal torch's flop counter / 2 on the same torch module (eager attention, whose
matmuls the counter counts; it counts no FLOPs for CPU's fused SDPA kernel), and the seq²
attention term has the coefficient the architecture implies. Small configs (2 layers, hidden 64)
keep the exports to seconds; no weights are downloaded."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sympy = pytest.importorskip("sympy")
pytest.importorskip("onnxscript")

import mlms_ir  # noqa: E402

pytestmark = pytest.mark.slow

LAYERS, HIDDEN, HEADS, VOCAB = 2, 64, 4, 101


def _model(kind: str):
    common = dict(vocab_size=VOCAB)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=LAYERS, n_embd=HIDDEN, n_head=HEADS, n_positions=512, **common)
        cls = transformers.GPT2LMHeadModel
    elif kind == "bert":
        cfg = transformers.BertConfig(num_hidden_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=HEADS,
                                      intermediate_size=2 * HIDDEN, max_position_embeddings=512, **common)
        cls = transformers.BertModel
    else:
        cfg = transformers.LlamaConfig(num_hidden_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=2,
                                       intermediate_size=2 * HIDDEN, max_position_embeddings=512, **common)
        cls = transformers.LlamaForCausalLM
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    m = cls(cfg, add_pooling_layer=False) if kind == "bert" else cls(cfg)
    with torch.no_grad():  # fresh norms are all ones: the exporter would store equal tensors once
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return m.eval()


class _Logits(torch.nn.Module):
    def __init__(self, m) -> None:
        super().__init__()
        self.m = m

    def forward(self, ids):
        out = self.m(input_ids=ids, use_cache=False) if hasattr(self.m, "lm_head") else self.m(input_ids=ids)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.fixture(scope="module", params=["gpt2", "bert", "llama"])
def exported(request, tmp_path_factory):
    module = _Logits(_model(request.param)).eval()
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.onnx"
    batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=512)
    with torch.no_grad():
        torch.onnx.export(module, (torch.randint(0, VOCAB, (2, 16)),), str(path), dynamo=True, input_names=["ids"],
                          dynamic_shapes=({0: batch, 1: seq},))
    return request.param, module, path


@pytest.mark.parametrize("b, s", [(1, 128), (4, 512)])
def test_macs_formula_equals_torch_flop_counter(exported, b, s):
    from torch.utils.flop_counter import FlopCounterMode

    _, module, path = exported
    a = mlms_ir.analyze(path)
    assert a.totals.complete and [d.name for d in a.dims] == ["batch", "seq"], (a.dims, a.warnings)
    f = sympy.sympify(a.totals.symbolic["macs"])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(torch.zeros(b, s, dtype=torch.long))
    assert int(f.subs({x: {"batch": b, "seq": s}[x.name] for x in f.free_symbols})) * 2 == counter.get_total_flops()


def test_attention_term_and_bound_analyses(exported):
    _, _, path = exported
    a = mlms_ir.analyze(path)
    batch, seq = sympy.symbols("batch seq")
    poly = sympy.Poly(sympy.sympify(a.totals.symbolic["macs"]), batch, seq)
    # QK^T and AV: 2 * hidden MACs per (query, key) pair per layer
    assert poly.coeff_monomial(batch * seq**2) == LAYERS * 2 * HIDDEN
    bound = mlms_ir.analyze(path, dims={"batch": 3, "seq": 77})
    assert poly.eval({batch: 3, seq: 77}) == bound.totals.macs
    f = sympy.sympify(a.totals.symbolic["peak_activation_bytes"])
    assert f.subs({x: {"batch": 3, "seq": 77}[x.name] for x in f.free_symbols}) == bound.totals.peak_activation_bytes
