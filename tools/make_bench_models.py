#!/usr/bin/env python3
"""Build the large ONNX benchmark models used to time mlms_ir against peers.

Two models are written under ``--out`` (default ``/tmp/mlms_bench``):

``gpt_1p3b/model.onnx`` (+ ``model.onnx.data``)
    A GPT-3-1.3B-shaped decoder (hidden 2048, 24 layers, 16 heads, vocab
    50257, 2048 positions, fixed input ``input_ids: int64[1, 128]``), opset
    17, written the way a torch export of GPT-2 looks: Gather token/position
    embeddings, LayerNormalization, MatMul+Add projections, Split of the fused
    QKV, Reshape/Transpose into heads, MatMul for QK^T and AV, Div by
    sqrt(head_dim), Add of a causal mask, Softmax, the exact-erf GELU
    decomposition (Div, Erf, Add, Mul, Mul), residual Adds, final LayerNorm
    and the LM-head MatMul.

    Every weight >= ``EXTERNAL_MIN_BYTES`` is a float32 initializer stored as
    EXTERNAL data in the single file ``model.onnx.data`` (relative
    ``location``, 64 KiB-aligned ``offset``, exact ``length``).  The data file
    is created *sparse* (``truncate`` to its full size), so it occupies
    (almost) no disk blocks and reads back as zeros, while every declared
    byte range exists.  The TensorProtos are built directly (dims, data_type,
    data_location=EXTERNAL, external_data) -- no 5 GB numpy arrays.

    By default the LM head is tied to the token embedding (GPT-2 / GPT-3
    style): ``MatMul(h, Transpose(wte))`` so the weight is stored once and the
    model has ~1.316e9 parameters.  ``--lm-head untied`` instead adds a
    separate ``[2048, 50257]`` initializer (what torch's constant folding of
    the tied weight produces; ~1.419e9 parameters).

``graph_6k/model.onnx``
    ~6,000 nodes with small embedded weights: a ResNet-like stack of
    Conv/BatchNormalization/Relu/Add residual blocks over three stages,
    flattened (Reshape/Transpose) into tokens and followed by a deep stack of
    small pre-LN transformer blocks (LayerNormalization, MatMul/Add, Split,
    Reshape/Transpose, Softmax, erf-GELU) and a pooled classifier head.  All
    shapes are static.

Both models are checked with ``onnx.checker.check_model(path)`` and strict
shape inference (``--no-check`` skips that); the script then prints the
parameter / node counts and file sizes.

Usage::

    .venv/bin/python tools/make_bench_models.py [--out /tmp/mlms_bench]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what torch.onnx emits for opset 17
ALIGN = 65536  # offset alignment in the external data file (mmap granularity)
EXTERNAL_MIN_BYTES = 1024  # float tensors smaller than this stay embedded
FLOAT_BYTES = 4


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


# --------------------------------------------------------------------------
# shared graph-building helper
# --------------------------------------------------------------------------


class GraphBuilder:
    """Small helper that collects nodes/initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[TensorProto] = []
        self._counter: Dict[str, int] = {}
        self._consts: Dict[Tuple, str] = {}
        self.n_params = 0

    def uniq(self, base: str) -> str:
        i = self._counter.get(base, 0)
        self._counter[base] = i + 1
        return f"{base}_{i}" if i else base

    def node(self, op: str, inputs: Sequence[str], n_out: int = 1,
             name: Optional[str] = None, **attrs) -> List[str]:
        name = self.uniq(name or op)
        outs = [f"{name}_out{k}" if n_out > 1 else f"{name}_out"
                for k in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs

    def op(self, op: str, inputs: Sequence[str], name: Optional[str] = None,
           **attrs) -> str:
        return self.node(op, inputs, 1, name, **attrs)[0]

    def add_init(self, t: TensorProto, count_params: bool = True) -> str:
        self.initializers.append(t)
        if count_params:
            self.n_params += int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
        return t.name

    def const(self, value, dtype=np.float32) -> str:
        """Shared small constant initializer (not counted as a parameter)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.uniq("const")
            self.add_init(numpy_helper.from_array(arr, name), count_params=False)
            self._consts[key] = name
        return self._consts[key]


# --------------------------------------------------------------------------
# (a) GPT 1.3B with sparse external data
# --------------------------------------------------------------------------


class ExternalWeights:
    """Lays float32 tensors out in one external data file without data."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.offset = 0
        self.embedded_rng = np.random.default_rng(0)

    def tensor(self, name: str, dims: Sequence[int], fill: Optional[float] = None) -> TensorProto:
        n = int(np.prod(dims, dtype=np.int64))
        nbytes = n * FLOAT_BYTES
        if nbytes < EXTERNAL_MIN_BYTES:
            if fill is None:
                arr = (self.embedded_rng.standard_normal(dims) * 0.02).astype(np.float32)
            else:
                arr = np.full(dims, fill, dtype=np.float32)
            return numpy_helper.from_array(arr, name)
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(int(d) for d in dims)
        t.data_location = TensorProto.EXTERNAL
        self.offset = _align(self.offset)
        for k, v in (("location", self.location), ("offset", str(self.offset)),
                     ("length", str(nbytes))):
            e = t.external_data.add()
            e.key = k
            e.value = v
        self.offset += nbytes
        return t

    @property
    def total_bytes(self) -> int:
        return self.offset


def build_gpt(out_dir: str, hidden: int = 2048, layers: int = 24, heads: int = 16,
              vocab: int = 50257, n_positions: int = 2048, seq: int = 128,
              batch: int = 1, lm_head: str = "tied", graph_name: str = "gpt_1p3b") -> Dict[str, object]:
    assert hidden % heads == 0
    head_dim = hidden // heads
    ffn = 4 * hidden
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.onnx")
    data_name = "model.onnx.data"
    data_path = os.path.join(out_dir, data_name)

    g = GraphBuilder()
    w = ExternalWeights(data_name)

    def weight(name: str, dims: Sequence[int], fill: Optional[float] = None) -> str:
        return g.add_init(w.tensor(name, dims, fill))

    # ---- inputs / embeddings
    input_ids = "input_ids"
    wte = weight("transformer.wte.weight", [vocab, hidden])
    wpe = weight("transformer.wpe.weight", [n_positions, hidden])
    pos_ids = g.const(np.arange(seq, dtype=np.int64).reshape(1, seq), np.int64)
    tok = g.op("Gather", [wte, input_ids], name="wte_gather", axis=0)
    pos = g.op("Gather", [wpe, pos_ids], name="wpe_gather", axis=0)
    x = g.op("Add", [tok, pos], name="embed_add")

    # causal mask [1, 1, seq, seq]: 0 on/below diagonal, float32-min above
    mask = np.triu(np.full((seq, seq), np.finfo(np.float32).min, dtype=np.float32), k=1)
    mask_name = g.add_init(numpy_helper.from_array(mask.reshape(1, 1, seq, seq), "causal_mask"),
                           count_params=False)

    split_sizes = g.const([hidden, hidden, hidden], np.int64)
    heads_shape = g.const([batch, seq, heads, head_dim], np.int64)
    merged_shape = g.const([batch, seq, hidden], np.int64)
    scale = g.const(math.sqrt(head_dim))
    sqrt2 = g.const(math.sqrt(2.0))
    one = g.const(1.0)
    half = g.const(0.5)

    for i in range(layers):
        p = f"transformer.h.{i}"
        # -- attention
        ln1 = g.op("LayerNormalization",
                   [x, weight(f"{p}.ln_1.weight", [hidden], 1.0),
                    weight(f"{p}.ln_1.bias", [hidden], 0.0)],
                   name=f"{p}.ln_1", axis=-1, epsilon=1e-5)
        qkv = g.op("MatMul", [ln1, weight(f"{p}.attn.c_attn.weight", [hidden, 3 * hidden])],
                   name=f"{p}.attn.c_attn.matmul")
        qkv = g.op("Add", [qkv, weight(f"{p}.attn.c_attn.bias", [3 * hidden])],
                   name=f"{p}.attn.c_attn.add")
        q, k, v = g.node("Split", [qkv, split_sizes], 3, name=f"{p}.attn.split", axis=2)
        q = g.op("Transpose", [g.op("Reshape", [q, heads_shape], name=f"{p}.attn.q_reshape")],
                 name=f"{p}.attn.q_transpose", perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, heads_shape], name=f"{p}.attn.k_reshape")],
                 name=f"{p}.attn.k_transpose", perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, heads_shape], name=f"{p}.attn.v_reshape")],
                 name=f"{p}.attn.v_transpose", perm=[0, 2, 1, 3])
        s = g.op("MatMul", [q, k], name=f"{p}.attn.qk_matmul")
        s = g.op("Div", [s, scale], name=f"{p}.attn.scale_div")
        s = g.op("Add", [s, mask_name], name=f"{p}.attn.mask_add")
        s = g.op("Softmax", [s], name=f"{p}.attn.softmax", axis=-1)
        a = g.op("MatMul", [s, v], name=f"{p}.attn.av_matmul")
        a = g.op("Transpose", [a], name=f"{p}.attn.merge_transpose", perm=[0, 2, 1, 3])
        a = g.op("Reshape", [a, merged_shape], name=f"{p}.attn.merge_reshape")
        a = g.op("MatMul", [a, weight(f"{p}.attn.c_proj.weight", [hidden, hidden])],
                 name=f"{p}.attn.c_proj.matmul")
        a = g.op("Add", [a, weight(f"{p}.attn.c_proj.bias", [hidden])],
                 name=f"{p}.attn.c_proj.add")
        x = g.op("Add", [x, a], name=f"{p}.attn_residual")
        # -- MLP
        ln2 = g.op("LayerNormalization",
                   [x, weight(f"{p}.ln_2.weight", [hidden], 1.0),
                    weight(f"{p}.ln_2.bias", [hidden], 0.0)],
                   name=f"{p}.ln_2", axis=-1, epsilon=1e-5)
        h = g.op("MatMul", [ln2, weight(f"{p}.mlp.c_fc.weight", [hidden, ffn])],
                 name=f"{p}.mlp.c_fc.matmul")
        h = g.op("Add", [h, weight(f"{p}.mlp.c_fc.bias", [ffn])], name=f"{p}.mlp.c_fc.add")
        # exact GELU: 0.5 * x * (1 + erf(x / sqrt(2)))
        e = g.op("Div", [h, sqrt2], name=f"{p}.mlp.gelu.div")
        e = g.op("Erf", [e], name=f"{p}.mlp.gelu.erf")
        e = g.op("Add", [e, one], name=f"{p}.mlp.gelu.add")
        e = g.op("Mul", [h, e], name=f"{p}.mlp.gelu.mul")
        h = g.op("Mul", [e, half], name=f"{p}.mlp.gelu.mul_half")
        h = g.op("MatMul", [h, weight(f"{p}.mlp.c_proj.weight", [ffn, hidden])],
                 name=f"{p}.mlp.c_proj.matmul")
        h = g.op("Add", [h, weight(f"{p}.mlp.c_proj.bias", [hidden])], name=f"{p}.mlp.c_proj.add")
        x = g.op("Add", [x, h], name=f"{p}.mlp_residual")

    x = g.op("LayerNormalization",
             [x, weight("transformer.ln_f.weight", [hidden], 1.0),
              weight("transformer.ln_f.bias", [hidden], 0.0)],
             name="transformer.ln_f", axis=-1, epsilon=1e-5)
    if lm_head == "tied":
        head_w = g.op("Transpose", [wte], name="lm_head.tied_transpose", perm=[1, 0])
    elif lm_head == "untied":
        head_w = weight("lm_head.weight", [hidden, vocab])
    else:
        raise ValueError(f"lm_head must be 'tied' or 'untied', not {lm_head!r}")
    g.nodes.append(helper.make_node("MatMul", [x, head_w], ["logits"], name="lm_head.matmul"))

    graph = helper.make_graph(
        g.nodes, graph_name,
        [helper.make_tensor_value_info(input_ids, TensorProto.INT64, [batch, seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, seq, vocab])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mlms_ir.tools.make_bench_models",
                              ir_version=IR_VERSION)

    # Sparse data file: every declared range exists, no blocks are written.
    total = _align(w.total_bytes)
    with open(data_path, "wb") as f:
        f.truncate(total)
    # save the proto as-is (tensors already reference the external file)
    with open(model_path, "wb") as f:
        f.write(model.SerializeToString())
    return {"path": model_path, "data_path": data_path, "params": g.n_params,
            "nodes": len(g.nodes), "initializers": len(g.initializers),
            "data_bytes": total}


# --------------------------------------------------------------------------
# (b) ~6k-node model with small embedded weights
# --------------------------------------------------------------------------


def build_graph6k(out_dir: str, blocks_per_stage: int = 150, tf_blocks: int = 95,
                  widths: Tuple[int, int, int] = (8, 16, 32), image: int = 32,
                  heads: int = 4, classes: int = 100) -> Dict[str, object]:
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.onnx")
    rng = np.random.default_rng(1234)
    g = GraphBuilder()

    def param(name: str, arr: np.ndarray) -> str:
        return g.add_init(numpy_helper.from_array(arr.astype(np.float32), g.uniq(name)))

    def rand(name: str, *shape: int, std: float = 0.05) -> str:
        return param(name, rng.standard_normal(shape) * std)

    def conv_bn(x: str, cin: int, cout: int, p: str, stride: int = 1, relu: bool = True) -> str:
        y = g.op("Conv", [x, rand(f"{p}.conv.weight", cout, cin, 3, 3)], name=f"{p}.conv",
                 kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])
        y = g.op("BatchNormalization",
                 [y, param(f"{p}.bn.weight", np.ones(cout)),
                  param(f"{p}.bn.bias", np.zeros(cout)),
                  param(f"{p}.bn.running_mean", rng.standard_normal(cout) * 0.1),
                  param(f"{p}.bn.running_var", 1.0 + rng.random(cout))],
                 name=f"{p}.bn", epsilon=1e-5)
        return g.op("Relu", [y], name=f"{p}.relu") if relu else y

    x = conv_bn("pixel_values", 3, widths[0], "stem")
    cin = widths[0]
    hw = image
    for s, c in enumerate(widths):
        if c != cin or s > 0:
            x = conv_bn(x, cin, c, f"stage{s}.down", stride=2)
            hw //= 2
            cin = c
        for b in range(blocks_per_stage):
            p = f"stage{s}.block{b}"
            y = conv_bn(x, c, c, f"{p}.a")
            y = conv_bn(y, c, c, f"{p}.b", relu=False)
            x = g.op("Relu", [g.op("Add", [x, y], name=f"{p}.residual")], name=f"{p}.out_relu")

    # to tokens: [1, C, H, W] -> [1, C, H*W] -> [1, H*W, C]
    d = cin
    tokens = hw * hw
    x = g.op("Reshape", [x, g.const([1, d, tokens], np.int64)], name="to_tokens.reshape")
    x = g.op("Transpose", [x], name="to_tokens.transpose", perm=[0, 2, 1])

    hd = d // heads
    split_sizes = g.const([d, d, d], np.int64)
    heads_shape = g.const([1, tokens, heads, hd], np.int64)
    merged_shape = g.const([1, tokens, d], np.int64)
    scale = g.const(1.0 / math.sqrt(hd))
    sqrt2, one, half = g.const(math.sqrt(2.0)), g.const(1.0), g.const(0.5)
    for b in range(tf_blocks):
        p = f"tf{b}"
        h = g.op("LayerNormalization", [x, param(f"{p}.ln1.weight", np.ones(d)),
                                        param(f"{p}.ln1.bias", np.zeros(d))],
                 name=f"{p}.ln1", axis=-1, epsilon=1e-5)
        h = g.op("MatMul", [h, rand(f"{p}.qkv.weight", d, 3 * d)], name=f"{p}.qkv.matmul")
        h = g.op("Add", [h, rand(f"{p}.qkv.bias", 3 * d)], name=f"{p}.qkv.add")
        q, k, v = g.node("Split", [h, split_sizes], 3, name=f"{p}.split", axis=2)
        q = g.op("Transpose", [g.op("Reshape", [q, heads_shape], name=f"{p}.q_reshape")],
                 name=f"{p}.q_transpose", perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, heads_shape], name=f"{p}.k_reshape")],
                 name=f"{p}.k_transpose", perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, heads_shape], name=f"{p}.v_reshape")],
                 name=f"{p}.v_transpose", perm=[0, 2, 1, 3])
        s = g.op("Mul", [g.op("MatMul", [q, k], name=f"{p}.qk_matmul"), scale],
                 name=f"{p}.scale_mul")
        s = g.op("Softmax", [s], name=f"{p}.softmax", axis=-1)
        a = g.op("MatMul", [s, v], name=f"{p}.av_matmul")
        a = g.op("Transpose", [a], name=f"{p}.merge_transpose", perm=[0, 2, 1, 3])
        a = g.op("Reshape", [a, merged_shape], name=f"{p}.merge_reshape")
        a = g.op("MatMul", [a, rand(f"{p}.proj.weight", d, d)], name=f"{p}.proj.matmul")
        a = g.op("Add", [a, rand(f"{p}.proj.bias", d)], name=f"{p}.proj.add")
        x = g.op("Add", [x, a], name=f"{p}.attn_residual")
        h = g.op("LayerNormalization", [x, param(f"{p}.ln2.weight", np.ones(d)),
                                        param(f"{p}.ln2.bias", np.zeros(d))],
                 name=f"{p}.ln2", axis=-1, epsilon=1e-5)
        h = g.op("MatMul", [h, rand(f"{p}.fc1.weight", d, 4 * d)], name=f"{p}.fc1.matmul")
        h = g.op("Add", [h, rand(f"{p}.fc1.bias", 4 * d)], name=f"{p}.fc1.add")
        e = g.op("Erf", [g.op("Div", [h, sqrt2], name=f"{p}.gelu.div")], name=f"{p}.gelu.erf")
        e = g.op("Mul", [h, g.op("Add", [e, one], name=f"{p}.gelu.add")], name=f"{p}.gelu.mul")
        h = g.op("Mul", [e, half], name=f"{p}.gelu.mul_half")
        h = g.op("MatMul", [h, rand(f"{p}.fc2.weight", 4 * d, d)], name=f"{p}.fc2.matmul")
        h = g.op("Add", [h, rand(f"{p}.fc2.bias", d)], name=f"{p}.fc2.add")
        x = g.op("Add", [x, h], name=f"{p}.mlp_residual")

    x = g.op("LayerNormalization", [x, param("head.ln.weight", np.ones(d)),
                                    param("head.ln.bias", np.zeros(d))],
             name="head.ln", axis=-1, epsilon=1e-5)
    x = g.op("ReduceMean", [x], name="head.pool", axes=[1], keepdims=0)
    x = g.op("MatMul", [x, rand("head.fc.weight", d, classes)], name="head.fc.matmul")
    g.nodes.append(helper.make_node("Add", [x, rand("head.fc.bias", classes)], ["logits"],
                                    name="head.fc.add"))

    graph = helper.make_graph(
        g.nodes, "graph_6k",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mlms_ir.tools.make_bench_models",
                              ir_version=IR_VERSION)
    onnx.save(model, model_path)
    return {"path": model_path, "params": g.n_params, "nodes": len(g.nodes),
            "initializers": len(g.initializers)}


# --------------------------------------------------------------------------
# checks / reporting
# --------------------------------------------------------------------------


def check(path: str) -> int:
    """check_model(path) + strict shape inference; every value fully static.

    Returns the number of value_info entries inferred.
    """
    onnx.checker.check_model(path)
    m = onnx.load(path, load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True,
                                                 data_prop=True)
    g = inferred.graph
    produced = {o for n in g.node for o in n.output if o}
    infos = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
    missing = sorted(produced - set(infos))
    unresolved = []
    for name, vi in infos.items():
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or any(not d.HasField("dim_value") for d in tt.shape.dim):
            unresolved.append(name)
    if missing or unresolved:
        raise RuntimeError(f"{path}: shapes not fully resolved: missing={missing[:5]} "
                           f"(+{max(0, len(missing) - 5)}), unresolved={unresolved[:5]}")
    return len(infos)


#: Nodes per decoder layer of build_gpt (the rest: 2 Gathers, an Add, ln_f, the head's Transpose and MatMul).
LLM_NODES_PER_LAYER = 31


def llm_dir(nodes: int) -> str:
    """Sub-directory of the ~``nodes``-node scaling model (``llm_50k``, ``llm_200k``, ``llm_1500``)."""
    return f"llm_{nodes // 1000}k" if nodes % 1000 == 0 else f"llm_{nodes}"


def _sizes(path: str) -> str:
    st = os.stat(path)
    return (f"{os.path.basename(path)}: apparent {st.st_size:,} B "
            f"({st.st_size / 2**20:.1f} MiB), on disk {st.st_blocks * 512 / 2**20:.1f} MiB")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/mlms_bench", help="output directory")
    ap.add_argument("--only", choices=["gpt", "graph6k", "llm"], help="build only one model "
                    "(llm: only with --llm-nodes)")
    ap.add_argument("--llm-nodes", type=int, action="append", default=[],
                    help="also build llm_<N>: a small-hidden GPT decoder with ~N nodes (31 a layer) "
                         "and sparse external weights, for scaling runs (repeatable, e.g. 50000)")
    ap.add_argument("--lm-head", choices=["tied", "untied"], default="tied",
                    help="GPT LM head: Transpose of the token embedding (default) "
                         "or a separate [hidden, vocab] initializer")
    ap.add_argument("--seq", type=int, default=128, help="GPT sequence length")
    ap.add_argument("--no-check", action="store_true",
                    help="skip check_model / strict shape inference")
    args = ap.parse_args(argv)

    if args.only == "llm" and not args.llm_nodes:
        ap.error("--only llm needs --llm-nodes N")
    if args.only in (None, "gpt"):
        t0 = time.perf_counter()
        info = build_gpt(os.path.join(args.out, "gpt_1p3b"), seq=args.seq, lm_head=args.lm_head)
        print(f"gpt_1p3b: {info['path']}")
        print(f"  params: {info['params']:,} ({info['params'] / 1e9:.3f} B), "
              f"nodes: {info['nodes']}, initializers: {info['initializers']}, "
              f"lm_head: {args.lm_head}, built in {time.perf_counter() - t0:.1f}s")
        print(f"  {_sizes(info['path'])}")
        print(f"  {_sizes(info['data_path'])} (sparse)")
        if not args.no_check:
            t0 = time.perf_counter()
            n = check(info["path"])
            print(f"  check_model + strict infer_shapes OK ({n} typed values) "
                  f"in {time.perf_counter() - t0:.1f}s")
        sys.stdout.flush()

    for n in args.llm_nodes:
        t0 = time.perf_counter()
        layers = max(1, round((n - 5) / LLM_NODES_PER_LAYER))
        info = build_gpt(os.path.join(args.out, llm_dir(n)), hidden=64, layers=layers, heads=4,
                         vocab=1000, n_positions=args.seq, seq=args.seq, graph_name=llm_dir(n))
        print(f"{llm_dir(n)}: {info['path']}")
        print(f"  nodes: {info['nodes']:,}, layers: {layers}, params: {info['params']:,}, "
              f"initializers: {info['initializers']}, built in {time.perf_counter() - t0:.1f}s")
        print(f"  {_sizes(info['path'])}")
        print(f"  {_sizes(info['data_path'])} (sparse)")
        sys.stdout.flush()

    if args.only in (None, "graph6k"):
        t0 = time.perf_counter()
        info = build_graph6k(os.path.join(args.out, "graph_6k"))
        print(f"graph_6k: {info['path']}")
        print(f"  nodes: {info['nodes']:,}, params: {info['params']:,}, "
              f"initializers: {info['initializers']}, built in {time.perf_counter() - t0:.1f}s")
        print(f"  {_sizes(info['path'])}")
        if not args.no_check:
            t0 = time.perf_counter()
            n = check(info["path"])
            print(f"  check_model + strict infer_shapes OK ({n} typed values) "
                  f"in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
