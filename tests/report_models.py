"""Small models for the HTML report's tests: repeated named blocks, and a hostile one."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT_CLOSE = "</script><script>alert(2)</script>"


def blocks_model(n_blocks: int = 4) -> onnx.ModelProto:
    """x -> n_blocks x (MatMul, Relu, Add residual) -> Softmax, with torch-style scope names."""
    nodes, inits = [], []
    prev = "x"
    rng = np.random.default_rng(0)
    for i in range(n_blocks):
        scope = f"/layers/layers.{i}"
        inits.append(numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32) * 0.3, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"{scope}/fc/MatMul"),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"{scope}/act/Relu"),
            helper.make_node("Add", [f"r{i}", prev], [f"o{i}"], name=f"{scope}/Add"),
        ]
        prev = f"o{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["y"], name="/head/Softmax"))
    g = helper.make_graph(nodes, "blocks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def hostile_model() -> onnx.ModelProto:
    """A model whose names, doc string and metadata try to inject markup and script."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", [HOSTILE, "w"], ["h"], name=HOSTILE, doc_string=SCRIPT_CLOSE),
             helper.make_node("Relu", ["h"], [SCRIPT_CLOSE], name="relu & <b>bold</b>")]
    g = helper.make_graph(nodes, "g<svg onload=alert(3)>", [helper.make_tensor_value_info(HOSTILE, TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info(SCRIPT_CLOSE, TensorProto.FLOAT, [1, 4])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="<script>alert(4)</script>",
                          doc_string=SCRIPT_CLOSE + " & " + HOSTILE)
    helper.set_model_props(m, {"author": HOSTILE, "<k>": "\u2028" + SCRIPT_CLOSE})
    return m
