#!/usr/bin/env python3
"""Benchmark symbolic analysis (dims unbound) against concrete analysis (dims bound).

Goal (issue: symbolic analysis): the symbolic analysis of a ~6,000-node transformer takes at
most 1.5x the concrete analysis' whole-process time, and a ~50,000-node graph stays linear.

Models: GPT-style decoders generated here with ``onnx.helper`` (no torch needed), written the
way torch's legacy exporter writes them: dynamic ``batch`` and ``seq`` on the input, and per
layer the shape arithmetic that leaves ONNX's shape inference with ``unk__N`` dims
(Shape -> Gather -> Unsqueeze -> Concat -> Reshape into heads and back), LayerNormalization,
MatMul/Add projections, Split of the fused QKV, scaled QK^T, Softmax, AV, an MLP and residual
Adds. Small hidden size (weights stay small); the node count is what is measured.

Every measurement is a whole process: ``python -m mlms_ir analyze MODEL --format json --output
/dev/null --store none`` (interpreter start, imports, load, inference, passes, JSON), the median
of ``--repeat`` runs after one warm-up, with the child's peak RSS (``os.wait4``). The concrete
case binds ``--dims batch=1,seq=128``; the symbolic case binds nothing. A check then evaluates
the symbolic totals at batch=1, seq=128 and compares them with the concrete totals.

Usage::

    .venv/bin/python tools/bench_symbolic.py [--layers 170 1420] [--repeat 3] [--out /tmp/mlms_bench_sym]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_decoder(path: str, layers: int, d: int = 16, heads: int = 2, vocab: int = 101) -> int:
    """Write a decoder with ``layers`` layers to ``path``; return its node count."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    counter = [0]

    def name(base: str) -> str:
        counter[0] += 1
        return f"{base}_{counter[0]}"

    def init(arr: np.ndarray, base: str) -> str:
        n = name(base)
        inits.append(numpy_helper.from_array(arr, n))
        return n

    def weight(*shape: int) -> str:
        return init((rng.standard_normal(shape) * 0.02).astype(np.float32), "w")

    def const(values, dtype=np.int64) -> str:
        return init(np.asarray(values, dtype=dtype), "c")

    def op(kind: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [name(kind.lower()) for _ in range(n_out)]
        nodes.append(helper.make_node(kind, inputs, outs, name=name("/" + kind), **attrs))
        return outs

    hd = d // heads
    zero, one = const([0]), const([1])
    x = op("Gather", [weight(vocab, d), "ids"], axis=0)[0]
    for _ in range(layers):
        shape = op("Shape", [x])[0]
        b = op("Gather", [shape, const(0)], axis=0)[0]
        t = op("Gather", [shape, const(1)], axis=0)[0]
        ub = op("Unsqueeze", [b, zero])[0]
        ut = op("Unsqueeze", [t, zero])[0]
        heads_shape = op("Concat", [ub, ut, const([heads]), const([hd])], axis=0)[0]
        merged_shape = op("Concat", [ub, ut, const([d])], axis=0)[0]
        ln1 = op("LayerNormalization", [x, init(np.ones(d, np.float32), "g"), init(np.zeros(d, np.float32), "b")], axis=-1)[0]
        qkv = op("Add", [op("MatMul", [ln1, weight(d, 3 * d)])[0], weight(3 * d)])[0]
        q, k, v = op("Split", [qkv, const([d, d, d])], n_out=3, axis=2)
        q, k, v = (op("Transpose", [op("Reshape", [z, heads_shape])[0]], perm=[0, 2, 1, 3])[0] for z in (q, k, v))
        kt = op("Transpose", [k], perm=[0, 1, 3, 2])[0]
        scores = op("Div", [op("MatMul", [q, kt])[0], const(np.float32(hd**0.5), np.float32)])[0]
        attn = op("MatMul", [op("Softmax", [scores], axis=-1)[0], v])[0]
        merged = op("Reshape", [op("Transpose", [attn], perm=[0, 2, 1, 3])[0], merged_shape])[0]
        x = op("Add", [x, op("Add", [op("MatMul", [merged, weight(d, d)])[0], weight(d)])[0]])[0]
        ln2 = op("LayerNormalization", [x, init(np.ones(d, np.float32), "g"), init(np.zeros(d, np.float32), "b")], axis=-1)[0]
        h = op("Relu", [op("Add", [op("MatMul", [ln2, weight(d, 4 * d)])[0], weight(4 * d)])[0]])[0]
        x = op("Add", [x, op("Add", [op("MatMul", [h, weight(4 * d, d)])[0], weight(d)])[0]])[0]
    logits = op("MatMul", [x, weight(d, vocab)])[0]
    nodes[-1].output[0] = "logits"
    del one
    graph = helper.make_graph(
        nodes, "decoder",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
        inits,
    )
    graph.output[0].name = "logits"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return len(nodes)


def run_once(python: str, args: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "mlms_ir", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mlms_ir {' '.join(args)} failed: {err.strip()[-500:]}")
    return wall, usage.ru_maxrss * 1024


def measure(python: str, args: list[str], repeat: int) -> dict:
    run_once(python, args)  # warm-up (file cache, bytecode)
    runs = [run_once(python, args) for _ in range(repeat)]
    return {"median_s": statistics.median(w for w, _ in runs), "runs_s": [round(w, 3) for w, _ in runs],
            "max_rss_bytes": max(r for _, r in runs)}


def check(path: str) -> dict:
    import sympy

    import mlms_ir

    sym = mlms_ir.analyze(path)
    bound = mlms_ir.analyze(path, dims={"batch": 1, "seq": 128})
    out = {}
    for key in ("macs", "flops", "activation_bytes", "peak_activation_bytes"):
        f = sympy.sympify(sym.totals.symbolic[key])
        v = f.subs({s: {"batch": 1, "seq": 128}[s.name] for s in f.free_symbols})
        out[key] = {"formula": sym.totals.symbolic[key], "at_1_128": int(v), "bound": getattr(bound.totals, key),
                    "equal": int(v) == getattr(bound.totals, key)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[170, 1420], help="decoder depths (about 35 nodes a layer)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "mlms_bench_sym"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {platform.platform()}")
    results = []
    for layers in args.layers:
        path = os.path.join(args.out, f"decoder_{layers}.onnx")
        n = build_decoder(path, layers)
        base = ["analyze", path, "--format", "json", "--output", os.devnull, "--store", "none"]
        concrete = measure(args.python, base + ["--dims", "batch=1,seq=128"], args.repeat)
        symbolic = measure(args.python, base, args.repeat)
        ratio = symbolic["median_s"] / concrete["median_s"]
        row = {"layers": layers, "nodes": n, "concrete": concrete, "symbolic": symbolic, "ratio": ratio,
               "symbolic_us_per_node": symbolic["median_s"] / n * 1e6, "check": check(path)}
        results.append(row)
        print(f"{n:>7,} nodes: concrete {concrete['median_s']:.2f} s ({concrete['max_rss_bytes'] / 2**20:.0f} MiB), "
              f"symbolic {symbolic['median_s']:.2f} s ({symbolic['max_rss_bytes'] / 2**20:.0f} MiB): "
              f"{ratio:.2f}x; {row['symbolic_us_per_node']:.0f} µs/node; "
              f"formulas equal the bound analysis: {all(c['equal'] for c in row['check'].values())}")
        print(f"          MACs = {row['check']['macs']['formula']}")
    first = results[0]
    print(f"goal: symbolic <= 1.5x concrete on ~6,000 nodes: {'PASS' if first['ratio'] <= 1.5 else 'FAIL'} ({first['ratio']:.2f}x)")
    if len(results) > 1:
        last = results[-1]
        growth = last["symbolic"]["median_s"] / first["symbolic"]["median_s"]
        size = last["nodes"] / first["nodes"]
        print(f"linearity: {size:.1f}x the nodes took {growth:.1f}x the time "
              f"({first['symbolic_us_per_node']:.0f} -> {last['symbolic_us_per_node']:.0f} µs/node)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
