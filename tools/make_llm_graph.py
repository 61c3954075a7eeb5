"""Write a synthetic LLM-sized ONNX graph: a decoder of ``--layers`` repeated blocks, built with onnx.helper.

Each block is a LLaMA-style decoder layer as exporters write it: RMSNorm decomposed into
Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul, q/k/v projections with reshapes whose target shapes are
computed from ``Shape`` (Shape, Gather, Unsqueeze, Concat), rotary embedding
(Mul, Slice, Neg, Concat, Add) on q and k, scaled dot-product attention with an additive mask
that every layer reads from the graph's start (long edges), a SwiGLU MLP and two residual adds.
``--nodes`` pads every block with more shape arithmetic on its residual stream (each unit:
Shape, Gather, Unsqueeze, Concat, Reshape) until the graph has about that many nodes, which is
what 20k-100k-node exports of today's LLMs are mostly made of. Node names carry the module
scope (``/model/layers.7/self_attn/q_proj/MatMul``), so the structure pass finds the blocks.
Weights are small (hidden 64), so the file stays a few MB.

    python tools/make_llm_graph.py [--layers 48] [--nodes 50000] [--out /tmp/mlms_bench/decoder48_50k.onnx]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 64
HEADS = 4
HEAD_DIM = HIDDEN // HEADS
FFN = 128
SEQ = 16
VOCAB = 256


class _Builder:
    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.k = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def weight(self, name: str, *shape: int) -> str:
        return self.const(name, (self.rng.standard_normal(shape) * 0.05).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], scope: str, n_out: int = 1, **attrs) -> str | list[str]:
        self.k += 1
        outs = [f"t{self.k}_{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"{scope}/{op_type}_{self.k}", **attrs))
        return outs[0] if n_out == 1 else outs


def _rms_norm(b: _Builder, x: str, scope: str, c: dict[str, str]) -> str:
    p = b.op("Pow", [x, c["two"]], scope)
    m = b.op("ReduceMean", [p, c["axis_last"]], scope, keepdims=1)
    a = b.op("Add", [m, c["eps"]], scope)
    s = b.op("Sqrt", [a], scope)
    r = b.op("Reciprocal", [s], scope)
    y = b.op("Mul", [x, r], scope)
    return b.op("Mul", [y, b.weight(f"{scope}.weight", HIDDEN)], scope)


def _dyn_reshape(b: _Builder, x: str, like: str, tail: str, scope: str, c: dict[str, str]) -> str:
    """Reshape x to [dim0(like), dim1(like), *tail] with the shape computed as exporters do."""
    sh = b.op("Shape", [like], scope)
    d0 = b.op("Unsqueeze", [b.op("Gather", [sh, c["i0"]], scope, axis=0), c["axes0"]], scope)
    d1 = b.op("Unsqueeze", [b.op("Gather", [sh, c["i1"]], scope, axis=0), c["axes0"]], scope)
    shape = b.op("Concat", [d0, d1, tail], scope, axis=0)
    return b.op("Reshape", [x, shape], scope)


def _rotary(b: _Builder, x: str, scope: str, cos: str, sin: str, c: dict[str, str]) -> str:
    x1 = b.op("Slice", [x, c["zero"], c["half"], c["axis_last"]], scope)
    x2 = b.op("Slice", [x, c["half"], c["hd"], c["axis_last"]], scope)
    rot = b.op("Concat", [b.op("Neg", [x2], scope), x1], scope, axis=-1)
    return b.op("Add", [b.op("Mul", [x, cos], scope), b.op("Mul", [rot, sin], scope)], scope)


def _layer(b: _Builder, x: str, i: int, pad_units: int, mask: str, cos: str, sin: str, c: dict[str, str]) -> str:
    L = f"/model/layers.{i}"
    h = _rms_norm(b, x, f"{L}/input_layernorm", c)
    heads = []
    for name in ("q", "k", "v"):
        s = f"{L}/self_attn/{name}_proj"
        y = b.op("MatMul", [h, b.weight(f"{s}.weight", HIDDEN, HIDDEN)], s)
        y = _dyn_reshape(b, y, h, c["heads_tail"], f"{L}/self_attn", c)
        y = b.op("Transpose", [y], f"{L}/self_attn", perm=[0, 2, 1, 3])
        if name != "v":
            y = _rotary(b, y, f"{L}/self_attn/rotary_{name}", cos, sin, c)
        heads.append(y)
    q, k, v = heads
    s = f"{L}/self_attn"
    kt = b.op("Transpose", [k], s, perm=[0, 1, 3, 2])
    att = b.op("Div", [b.op("MatMul", [q, kt], s), c["scale"]], s)
    att = b.op("Softmax", [b.op("Add", [att, mask], s)], s, axis=-1)
    o = b.op("Transpose", [b.op("MatMul", [att, v], s)], s, perm=[0, 2, 1, 3])
    o = _dyn_reshape(b, o, h, c["hidden_tail"], s, c)
    o = b.op("MatMul", [o, b.weight(f"{s}/o_proj.weight", HIDDEN, HIDDEN)], f"{s}/o_proj")
    x = b.op("Add", [x, o], L)
    h = _rms_norm(b, x, f"{L}/post_attention_layernorm", c)
    m = f"{L}/mlp"
    gate = b.op("MatMul", [h, b.weight(f"{m}/gate_proj.weight", HIDDEN, FFN)], f"{m}/gate_proj")
    up = b.op("MatMul", [h, b.weight(f"{m}/up_proj.weight", HIDDEN, FFN)], f"{m}/up_proj")
    act = b.op("Mul", [gate, b.op("Sigmoid", [gate], f"{m}/act_fn")], f"{m}/act_fn")
    down = b.op("MatMul", [b.op("Mul", [act, up], m), b.weight(f"{m}/down_proj.weight", FFN, HIDDEN)], f"{m}/down_proj")
    x = b.op("Add", [x, down], L)
    for u in range(pad_units):  # shape arithmetic on the residual stream (5 nodes a unit)
        sh = b.op("Shape", [x], f"{L}/view_{u}")
        d0 = b.op("Unsqueeze", [b.op("Gather", [sh, c["i0"]], f"{L}/view_{u}", axis=0), c["axes0"]], f"{L}/view_{u}")
        x = b.op("Reshape", [x, b.op("Concat", [d0, c["seq_hidden_tail"]], f"{L}/view_{u}", axis=0)], f"{L}/view_{u}")
    return x


def build(layers: int = 48, nodes: int = 50_000) -> onnx.ModelProto:
    """The decoder as a ModelProto (about ``nodes`` nodes, at least one block's worth per layer)."""
    b = _Builder()
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    f32 = lambda v: np.array(v, dtype=np.float32)  # noqa: E731
    c = {"two": b.const("c.two", f32(2.0)), "eps": b.const("c.eps", f32(1e-6)), "axis_last": b.const("c.axis_last", i64(-1)),
         "zero": b.const("c.zero", i64(0)), "i0": b.const("c.i0", np.array(0, dtype=np.int64)), "i1": b.const("c.i1", np.array(1, dtype=np.int64)), "axes0": b.const("c.axes0", i64(0)),
         "half": b.const("c.half", i64(HEAD_DIM // 2)), "hd": b.const("c.hd", i64(HEAD_DIM)),
         "heads_tail": b.const("c.heads_tail", i64(HEADS, HEAD_DIM)), "hidden_tail": b.const("c.hidden_tail", i64(HIDDEN)),
         "seq_hidden_tail": b.const("c.seq_hidden_tail", i64(SEQ, HIDDEN)),
         "scale": b.const("c.scale", f32(np.sqrt(HEAD_DIM)))}
    emb = b.op("Gather", [b.weight("model.embed_tokens.weight", VOCAB, HIDDEN), "input_ids"], "/model/embed_tokens", axis=0)
    # the causal mask and rotary tables, computed once at the start and read by every layer
    causal = b.const("c.causal", np.triu(np.full((SEQ, SEQ), -1e4, dtype=np.float32), 1))
    mask = b.op("Add", [causal, b.op("Cast", ["attention_mask"], "/model/mask", to=TensorProto.FLOAT)], "/model/mask")
    pos = b.const("c.inv_freq_pos", (np.arange(SEQ, dtype=np.float32)[:, None] * np.ones(HEAD_DIM, np.float32)) / 100)
    cos = b.op("Cos", [pos], "/model/rotary_emb")
    sin = b.op("Sin", [pos], "/model/rotary_emb")
    probe = _Builder()
    _layer(probe, "x", 0, 0, "m", "c", "s", c)
    per_block = len(probe.nodes)
    pad = max(0, (nodes - 6 - layers * per_block) // (5 * layers)) if layers else 0
    x = emb
    for i in range(layers):
        x = _layer(b, x, i, pad, mask, cos, sin, c)
    x = _rms_norm(b, x, "/model/norm", c)
    logits = b.op("MatMul", [x, b.weight("lm_head.weight", HIDDEN, VOCAB)], "/lm_head")
    b.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="/lm_head/Identity"))
    graph = helper.make_graph(
        b.nodes, f"decoder_{layers}x",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, SEQ]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, 1, 1, SEQ])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, SEQ, VOCAB])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="tools/make_llm_graph.py")
    model.ir_version = 8
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--nodes", type=int, default=50_000, help="about this many nodes in all (padding shape arithmetic)")
    ap.add_argument("--out", default="/tmp/mlms_bench/decoder48_50k.onnx")
    ap.add_argument("--check", action="store_true", help="run onnx.checker and strict shape inference")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = build(args.layers, args.nodes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    print(f"{out}: {len(model.graph.node):,} nodes, {args.layers} layers, {out.stat().st_size / 2**20:.1f} MiB, "
          f"built in {time.perf_counter() - t0:.1f} s")
    if args.check:
        onnx.checker.check_model(str(out))
        onnx.shape_inference.infer_shapes_path(str(out), str(out) + ".inferred", strict_mode=True)
        Path(str(out) + ".inferred").unlink()
        print("   check_model and strict shape inference: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
