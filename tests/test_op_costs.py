"""Per-op cost tests: one tiny model per case, exact MACs/FLOPs/params/bytes worked out by hand.

In the style of fvcore's and onnx-tool's per-op tests. Every expected figure is written as the
arithmetic that gives it, following the formula that :mod:`mlms_ir.passes.ops` documents for the op
(the first line of each formula's docstring). Bytes are float32 = 4 bytes unless said otherwise.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
from mlms_ir.passes import registry
from mlms_ir.passes.ops import elementwise
from mlms_ir.results.analysis import Analysis, NodeCost

# --------------------------------------------------------------------------- helpers


def _model(text: str, inits: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """Parse ONNX text and append ``inits`` (name -> numpy array) as initializers."""
    m = onnx.parser.parse_model(text)
    for name, arr in (inits or {}).items():
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
    return m


def _graph(body: str, opset: int = 17, ir: int = 8, extra: str = "") -> str:
    """ONNX text of a model with ``body`` as its graph and the default domain at ``opset``."""
    return f'<ir_version: {ir}, opset_import: ["" : {opset}{extra}]>\n{body}'


def run(body: str, inits: dict[str, np.ndarray] | None = None, *, opset: int = 17, ir: int = 8,
        extra: str = "", **kw) -> Analysis:
    return mlms_ir.analyze(_model(_graph(body, opset, ir, extra), inits), **kw)


def one(a: Analysis, op_type: str) -> NodeCost:
    """The single main-graph node of ``op_type``."""
    found = [n for n in a.nodes if n.op_type == op_type and n.parent is None]
    assert len(found) == 1, f"expected one {op_type} node, found {[n.id for n in found]}"
    return found[0]


def check(n: NodeCost, macs: int, flops: int, *, params: int | None = None, read: int | None = None,
          written: int | None = None, int_macs: bool = False, status: str = "counted") -> None:
    assert n.status == status, n.note
    assert n.macs == macs
    assert n.flops == flops
    assert n.int_macs is int_macs
    if params is not None:
        assert n.params == params
    if read is not None:
        assert n.bytes_read == read
    if written is not None:
        assert n.bytes_written == written


def f32(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)


def u8(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=np.uint8)


def scalar(v, dtype) -> np.ndarray:
    return np.array(v, dtype=dtype)


def ms_model(nodes: list[onnx.NodeProto], inputs, outputs, inits: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A model with com.microsoft ops, built with onnx.helper."""
    g = helper.make_graph(nodes, "ms", inputs, outputs,
                          [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


# --------------------------------------------------------------------------- Conv


def test_conv_without_bias():
    a = run("""g (float[1,3,16,16] x) => (float[1,8,16,16] y) {
        y = Conv <pads=[1,1,1,1], kernel_shape=[3,3]> (x, w)
    }""", {"w": f32(8, 3, 3, 3)})
    # 1*8*16*16 out * 3*3*3 kernel = 2048 * 27 = 55296 MACs; FLOPs = 2*55296 = 110592
    # params 8*3*3*3 = 216; read x 3*16*16*4 = 3072 + w 216*4 = 864 -> 3936; written 2048*4 = 8192
    check(one(a, "Conv"), 55296, 110592, params=216, read=3936, written=8192)


def test_conv_with_bias():
    a = run("""g (float[1,3,16,16] x) => (float[1,8,16,16] y) {
        y = Conv <pads=[1,1,1,1]> (x, w, b)
    }""", {"w": f32(8, 3, 3, 3), "b": f32(8)})
    # 55296 MACs; FLOPs = 2*55296 + 2048 bias adds (one per output element) = 112640
    # params 216 + 8 = 224; read 3936 + 8*4 = 3968
    check(one(a, "Conv"), 55296, 112640, params=224, read=3968, written=8192)


def test_conv_groups():
    a = run("""g (float[1,8,10,10] x) => (float[1,16,8,8] y) {
        y = Conv <group=2> (x, w)
    }""", {"w": f32(16, 4, 3, 3)})
    # out 1*16*8*8 = 1024; each sums Cin/group = 4 channels * 3*3 -> 1024*36 = 36864
    check(one(a, "Conv"), 36864, 73728, params=16 * 4 * 9)


def test_conv_depthwise_strided_padded_with_bias():
    a = run("""g (float[1,8,10,10] x) => (float[1,8,5,5] y) {
        y = Conv <group=8, strides=[2,2], pads=[1,1,1,1]> (x, w, b)
    }""", {"w": f32(8, 1, 3, 3), "b": f32(8)})
    # out spatial (10+2-3)//2+1 = 5 -> 1*8*5*5 = 200 elements, 1 channel * 3*3 each -> 1800 MACs
    # FLOPs = 2*1800 + 200 (bias) = 3800
    check(one(a, "Conv"), 1800, 3800, params=72 + 8)


def test_conv_asymmetric_pads_and_stride():
    a = run("""g (float[1,3,8,8] x) => (float[1,4,4,4] y) {
        y = Conv <strides=[2,2], pads=[0,0,1,1]> (x, w)
    }""", {"w": f32(4, 3, 3, 3)})
    # out spatial (8+0+1-3)//2+1 = 4 -> 1*4*4*4 = 64 elements * 3*3*3 = 1728
    check(one(a, "Conv"), 1728, 3456)


def test_conv_dilation():
    a = run("""g (float[1,2,12,12] x) => (float[1,4,8,8] y) {
        y = Conv <dilations=[2,2]> (x, w)
    }""", {"w": f32(4, 2, 3, 3)})
    # effective kernel (3-1)*2+1 = 5 -> out 12-5+1 = 8; 1*4*8*8 = 256 * 2*3*3 = 4608 (dilation adds no MACs)
    check(one(a, "Conv"), 4608, 9216)


def test_conv_1d():
    a = run("""g (float[2,4,20] x) => (float[2,6,16] y) {
        y = Conv (x, w)
    }""", {"w": f32(6, 4, 5)})
    # out 2*6*16 = 192 elements * 4*5 = 3840
    check(one(a, "Conv"), 3840, 7680, params=120)


def test_conv_3d_with_bias():
    a = run("""g (float[1,2,6,6,6] x) => (float[1,4,6,6,6] y) {
        y = Conv <pads=[1,1,1,1,1,1]> (x, w, b)
    }""", {"w": f32(4, 2, 3, 3, 3), "b": f32(4)})
    # out 1*4*6*6*6 = 864 elements * 2*3*3*3 = 54 -> 46656 MACs; FLOPs 2*46656 + 864 = 94176
    check(one(a, "Conv"), 46656, 94176, params=216 + 4)


def test_conv_transpose_with_bias():
    a = run("""g (float[1,4,5,5] x) => (float[1,3,11,11] y) {
        y = ConvTranspose <strides=[2,2]> (x, w, b)
    }""", {"w": f32(4, 3, 3, 3), "b": f32(3)})
    # every input element scatters into Cout/group * kernel outputs:
    # 1*4*5*5 = 100 inputs * 3 * 3*3 = 2700 MACs; out (5-1)*2+3 = 11 -> 3*11*11 = 363 bias adds
    # FLOPs = 2*2700 + 363 = 5763
    check(one(a, "ConvTranspose"), 2700, 5763, params=108 + 3)


def test_conv_transpose_groups():
    a = run("""g (float[1,4,5,5] x) => (float[1,4,7,7] y) {
        y = ConvTranspose <group=2> (x, w)
    }""", {"w": f32(4, 2, 3, 3)})
    # W is [Cin, Cout/group, k, k] = [4, 2, 3, 3]: 100 inputs * 2 * 9 = 1800
    check(one(a, "ConvTranspose"), 1800, 3600)


def test_conv_transpose_1d_output_padding():
    a = run("""g (float[1,4,5] x) => (float[1,3,12] y) {
        y = ConvTranspose <strides=[2], output_padding=[1]> (x, w)
    }""", {"w": f32(4, 3, 3)})
    # out (5-1)*2 + 3 + 1 = 12; MACs from the input side: 1*4*5 = 20 inputs * 3 * 3 = 180
    check(one(a, "ConvTranspose"), 180, 360, params=36)


# --------------------------------------------------------------------------- Gemm / MatMul / Einsum


def test_gemm_plain():
    a = run("""g (float[4,8] x) => (float[4,16] y) {
        y = Gemm (x, w)
    }""", {"w": f32(8, 16)})
    # M*N*K = 4*16*8 = 512; read x 128 + w 512 = 640; written 4*16*4 = 256
    check(one(a, "Gemm"), 512, 1024, params=128, read=640, written=256)


def test_gemm_trans_a_trans_b_with_c():
    a = run("""g (float[8,4] x) => (float[4,16] y) {
        y = Gemm <transA=1, transB=1, alpha=0.5, beta=2.0> (x, w, c)
    }""", {"w": f32(16, 8), "c": f32(16)})
    # A' is [4,8], B' is [8,16]: M=4, N=16, K=8 -> 512; + M*N = 64 for C; alpha/beta not counted
    # read x 128 + w 512 + c 64 = 704
    check(one(a, "Gemm"), 512, 2 * 512 + 64, params=128 + 16, read=704, written=256)


def test_matmul_2d():
    a = run("""g (float[3,5] a, float[5,7] b) => (float[3,7] y) {
        y = MatMul (a, b)
    }""")
    # 3*7 out * K=5 = 105; both operands are inputs, so no params
    check(one(a, "MatMul"), 105, 210, params=0, read=(15 + 35) * 4, written=21 * 4)


def test_matmul_batched_broadcast():
    a = run("""g (float[2,1,3,5] a, float[4,5,7] b) => (float[2,4,3,7] y) {
        y = MatMul (a, b)
    }""")
    # batch dims broadcast [2,1] x [4] -> [2,4]; out 2*4*3*7 = 168 * K=5 = 840
    check(one(a, "MatMul"), 840, 1680)


def test_matmul_1d_operands():
    a = run("""g (float[5] v, float[5,7] b, float[3,5] m, float[2,5,7] bb) => (float[7] y1, float[3] y2, float[2,7] y3) {
        y1 = MatMul (v, b)
        y2 = MatMul (m, v)
        y3 = MatMul (v, bb)
    }""")
    y1, y2, y3 = [n for n in a.nodes if n.op_type == "MatMul"]
    check(y1, 7 * 5, 70)  # [5] x [5,7] -> [7]: 7 out * K=5 = 35
    check(y2, 3 * 5, 30)  # [3,5] x [5] -> [3]: 3 out * K=5 = 15
    check(y3, 2 * 7 * 5, 140)  # [5] x [2,5,7] -> [2,7]: 14 out * K=5 = 70


def test_matmul_weight_is_a_param():
    a = run("""g (float[2,3,5] x) => (float[2,3,7] y) {
        y = MatMul (x, w)
    }""", {"w": f32(5, 7)})
    # 2*3*7 = 42 out * 5 = 210; params 35
    check(one(a, "MatMul"), 210, 420, params=35)
    assert a.totals.params == 35


def test_einsum_matmul_like():
    a = run("""g (float[3,5] a, float[5,7] b) => (float[3,7] y) {
        y = Einsum <equation="ij,jk->ik"> (a, b)
    }""")
    # (2-1) operands * i*j*k = 3*5*7 = 105
    check(one(a, "Einsum"), 105, 210)


def test_einsum_batched():
    a = run("""g (float[2,3,5] a, float[2,5,7] b) => (float[2,3,7] y) {
        y = Einsum <equation="bij,bjk->bik"> (a, b)
    }""")
    # b*i*j*k = 2*3*5*7 = 210
    check(one(a, "Einsum"), 210, 420)


def test_einsum_ellipsis_same_rank_broadcast():
    a = run("""g (float[2,1,4,5] a, float[1,3,5,6] b) => (float[2,3,4,6] y) {
        y = Einsum <equation="...ij,...jk->...ik"> (a, b)
    }""")
    # broadcast batch [2,3], i=4, j=5, k=6 -> 2*3*4*5*6 = 720
    check(one(a, "Einsum"), 720, 1440)


def test_einsum_ellipsis_unequal_rank_broadcast():
    a = run("""g (float[2,3,4,5] a, float[3,5,6] b) => (float[2,3,4,6] y) {
        y = Einsum <equation="...ij,...jk->...ik"> (a, b)
    }""", lenient=True)
    # batch dims [2,3] and [3] broadcast (right-aligned) to [2,3]: 2*3*4*5*6 = 720
    check(one(a, "Einsum"), 720, 1440)


def test_einsum_one_operand():
    a = run("""g (float[3,5] a) => (float[5,3] t, float[3] s) {
        t = Einsum <equation="ij->ji"> (a)
        s = Einsum <equation="ij->i"> (a)
    }""")
    # one operand: 0 MACs, FLOPs = input elements = 15
    for n in [n for n in a.nodes if n.op_type == "Einsum"]:
        check(n, 0, 15)


# --------------------------------------------------------------------------- normalisation, softmax


def test_batch_normalization():
    a = run("""g (float[2,3,4,4] x) => (float[2,3,4,4] y) {
        y = BatchNormalization (x, s, b, m, v)
    }""", {"s": f32(3), "b": f32(3), "m": f32(3), "v": f32(3)})
    # folded y = x*a + b: 2 * 2*3*4*4 = 2 * 96 = 192; params 4*3 = 12 (scale, bias, mean, var)
    # read 96*4 + 12*4 = 432
    check(one(a, "BatchNormalization"), 0, 192, params=12, read=432, written=384)


def test_layer_normalization():
    a = run("""g (float[2,5,8] x) => (float[2,5,8] y) {
        y = LayerNormalization <axis=-1> (x, s, b)
    }""", {"s": f32(8), "b": f32(8)})
    # 5 * 2*5*8 = 5 * 80 = 400
    check(one(a, "LayerNormalization"), 0, 400, params=16)


def test_instance_normalization():
    a = run("""g (float[2,3,4,4] x) => (float[2,3,4,4] y) {
        y = InstanceNormalization (x, s, b)
    }""", {"s": f32(3), "b": f32(3)})
    # 5 * 96 = 480
    check(one(a, "InstanceNormalization"), 0, 480, params=6)


def test_group_normalization():
    a = run("""g (float[2,4,3,3] x) => (float[2,4,3,3] y) {
        y = GroupNormalization <num_groups=2> (x, s, b)
    }""", {"s": f32(4), "b": f32(4)}, opset=21)
    # 5 * 2*4*3*3 = 5 * 72 = 360
    check(one(a, "GroupNormalization"), 0, 360, params=8)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax(op):
    a = run(f"""g (float[2,10] x) => (float[2,10] y) {{
        y = {op} <axis=-1> (x)
    }}""")
    # 4 * 20 = 80
    check(one(a, op), 0, 80, read=80, written=80)


# --------------------------------------------------------------------------- activations, elementwise


@pytest.mark.parametrize("op", sorted(set(elementwise.ACTIVATIONS) | {"Erf"}))
def test_activation_is_one_flop_per_element(op):
    a = run(f"""g (float[2,3,4] x) => (float[2,3,4] y) {{
        y = {op} (x)
    }}""", opset=24, ir=10)
    # 2*3*4 = 24 elements, 1 FLOP each; read 96, written 96
    check(one(a, op), 0, 24, params=0, read=96, written=96)


def test_clip_min_max_are_not_params():
    a = run("""g (float[2,3,4] x) => (float[2,3,4] y) {
        y = Clip (x, lo, hi)
    }""", {"lo": scalar(0, np.float32), "hi": scalar(6, np.float32)})
    # 24 FLOPs; min/max are not weights (params 0) but are read: 96 + 4 + 4 = 104
    check(one(a, "Clip"), 0, 24, params=0, read=104, written=96)


def test_binary_broadcast():
    a = run("""g (float[2,3,4] x, float[4] b) => (float[2,3,4] y) {
        y = Add (x, b)
    }""")
    # 1 FLOP per output element (broadcast included): 2*3*4 = 24; read 96 + 16 = 112
    check(one(a, "Add"), 0, 24, read=112, written=96)


def test_binary_broadcast_both_sides():
    a = run("""g (float[2,1,4] x, float[3,1] b) => (float[2,3,4] y) {
        y = Mul (x, b)
    }""")
    # out [2,3,4] = 24 (more than either input); read 8*4 + 3*4 = 44
    check(one(a, "Mul"), 0, 24, read=44, written=96)


def test_binary_same_input_read_once():
    a = run("""g (float[2,3,4] x) => (float[2,3,4] y) {
        y = Mul (x, x)
    }""")
    # x squared: 24 FLOPs; x is read once: 96 bytes
    check(one(a, "Mul"), 0, 24, read=96, written=96)


def test_prelu_slope_is_a_param():
    a = run("""g (float[2,3,4] x) => (float[2,3,4] y) {
        y = PRelu (x, s)
    }""", {"s": f32(4)})
    check(one(a, "PRelu"), 0, 24, params=4)


def test_variadic_sum_and_mean():
    a = run("""g (float[2,3] a, float[2,3] b, float[2,3] c, float[3] d) => (float[2,3] s, float[2,3] m, float[2,3] s2, float[2,3] x) {
        s = Sum (a, b, c)
        m = Mean (a, b, c)
        s2 = Sum (a, d)
        x = Max (a)
    }""")
    s, s2 = [n for n in a.nodes if n.op_type == "Sum"]
    check(s, 0, 6 * 2)  # (3-1) adds * 6 elements = 12
    check(one(a, "Mean"), 0, 6 * 3)  # (3-1) adds + 1 divide, * 6 = 18
    check(s2, 0, 6 * 1)  # broadcast [2,3] + [3]: 1 add * 6 = 6
    check(one(a, "Max"), 0, 0)  # one input: nothing to combine


# --------------------------------------------------------------------------- pooling, reductions, resize


def test_max_pool():
    a = run("""g (float[1,2,8,8] x) => (float[1,2,4,4] y) {
        y = MaxPool <kernel_shape=[2,2], strides=[2,2]> (x)
    }""")
    # out 1*2*4*4 = 32 * kernel 2*2 = 128
    check(one(a, "MaxPool"), 0, 128, read=512, written=128)


def test_average_pool_padded():
    a = run("""g (float[1,2,8,8] x) => (float[1,2,8,8] y) {
        y = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1]> (x)
    }""")
    # out 1*2*8*8 = 128 * 3*3 = 1152
    check(one(a, "AveragePool"), 0, 1152)


def test_global_average_pool():
    a = run("""g (float[2,3,5,5] x) => (float[2,3,1,1] y) {
        y = GlobalAveragePool (x)
    }""")
    # 1 FLOP per input element: 2*3*5*5 = 150
    check(one(a, "GlobalAveragePool"), 0, 150, read=600, written=24)


def test_reduce_mean():
    a = run("""g (float[2,3,4] x) => (float[2,3,1] y) {
        y = ReduceMean <axes=[2]> (x)
    }""")
    # 24 input adds + 6 output divides = 30
    check(one(a, "ReduceMean"), 0, 30)


def test_reduce_sum_axes_input():
    a = run("""g (float[2,3,4] x) => (float[2,4] y) {
        y = ReduceSum <keepdims=0> (x, ax)
    }""", {"ax": np.array([1], np.int64)})
    # 1 per input element = 24; the axes tensor is no param but is read: 96 + 8 = 104
    check(one(a, "ReduceSum"), 0, 24, params=0, read=104, written=32)


def test_reduce_l2():
    a = run("""g (float[2,3,4] x) => (float[2,1,1] y) {
        y = ReduceL2 <axes=[1,2]> (x)
    }""")
    # 2 per input element (square, add) + 1 per output (sqrt): 2*24 + 2 = 50
    check(one(a, "ReduceL2"), 0, 50)


@pytest.mark.parametrize("mode,scales,out,flops", [
    ("nearest", [1, 1, 2, 2], [1, 2, 8, 8], 0),  # data movement
    ("linear", [1, 1, 2, 2], [1, 2, 8, 8], 128 * 7),  # 2 axes: 2^2 = 4 taps -> 2*4-1 = 7 per out element
    ("linear", [1, 1, 1, 2], [1, 2, 4, 8], 64 * 3),  # 1 axis: 2 taps -> 3 per out element
    ("cubic", [1, 1, 2, 2], [1, 2, 8, 8], 128 * 31),  # 4^2 = 16 taps -> 2*16-1 = 31 per out element
])
def test_resize(mode, scales, out, flops):
    dims = ",".join(map(str, out))
    a = run(f"""g (float[1,2,4,4] x) => (float[{dims}] y) {{
        y = Resize <mode="{mode}"> (x, , s)
    }}""", {"s": np.array(scales, np.float32)})
    n = one(a, "Resize")
    # read x 128 + scales 16; written out elements * 4; scales are no param
    check(n, 0, flops, params=0, read=128 + 16, written=int(np.prod(out)) * 4)


def test_resize_with_sizes_input():
    a = run("""g (float[1,2,4,4] x) => (float[1,2,8,8] y) {
        y = Resize <mode="linear"> (x, , , sz)
    }""", {"sz": np.array([1, 2, 8, 8], np.int64)})
    # 128 out * 7 = 896; read x 128 + sizes 4*8 = 32 -> 160
    check(one(a, "Resize"), 0, 896, params=0, read=160, written=512)


def test_upsample_linear():
    a = run("""g (float[1,2,4,4] x) => (float[1,2,8,8] y) {
        y = Upsample <mode="linear"> (x, s)
    }""", {"s": np.array([1, 1, 2, 2], np.float32)}, opset=9)
    # as Resize linear over 2 axes: 128 * 7 = 896
    check(one(a, "Upsample"), 0, 896, params=0)


# --------------------------------------------------------------------------- recurrent

# seq 5, batch 2, input 3, hidden 4 throughout.
_X = "float[5,2,3] x"


def test_rnn_without_bias():
    a = run(f"""g ({_X}) => (float[5,1,2,4] y) {{
        y = RNN <hidden_size=4> (x, w, r)
    }}""", {"w": f32(1, 4, 3), "r": f32(1, 4, 4)})
    # steps*batch*dirs*gates*H*(I+H) = 5*2*1*1*4*(3+4) = 280; FLOPs 560 + 5*2*1*4*(1 gate act) = 600
    check(one(a, "RNN"), 280, 600, params=12 + 16)


def test_rnn_with_bias():
    a = run(f"""g ({_X}) => (float[5,1,2,4] y) {{
        y = RNN <hidden_size=4> (x, w, r, b)
    }}""", {"w": f32(1, 4, 3), "r": f32(1, 4, 4), "b": f32(1, 8)})
    # per unit per step: 1 (activation) + 2*1 bias adds = 3 -> 560 + 40*3 = 680
    check(one(a, "RNN"), 280, 680, params=12 + 16 + 8)


def test_rnn_layout_1():
    a = run("""g (float[2,5,3] x) => (float[2,5,1,4] y) {
        y = RNN <hidden_size=4, layout=1> (x, w, r)
    }""", {"w": f32(1, 4, 3), "r": f32(1, 4, 4)})
    # batch-first: same 280 MACs / 600 FLOPs as layout 0
    check(one(a, "RNN"), 280, 600)


def test_gru_bidirectional_without_bias():
    a = run(f"""g ({_X}) => (float[5,2,2,4] y) {{
        y = GRU <hidden_size=4, direction="bidirectional"> (x, w, r)
    }}""", {"w": f32(2, 12, 3), "r": f32(2, 12, 4)})
    # 5*2*2 dirs*3 gates*4*(3+4) = 1680; FLOPs 3360 + 5*2*2*4*(3 + 4) = 3360 + 560 = 3920
    check(one(a, "GRU"), 1680, 3920, params=72 + 96)


def test_gru_hidden_size_from_weights():
    a = run(f"""g ({_X}) => (float[5,1,2,4] y) {{
        y = GRU (x, w, r)
    }}""", {"w": f32(1, 12, 3), "r": f32(1, 12, 4)})
    # no hidden_size attribute: H = 12 / 3 gates = 4; 5*2*1*3*4*7 = 840; 1680 + 40*(3+4) = 1960
    check(one(a, "GRU"), 840, 1960)


def test_gru_bidirectional_with_bias():
    a = run(f"""g ({_X}) => (float[5,2,2,4] y) {{
        y = GRU <hidden_size=4, direction="bidirectional"> (x, w, r, b)
    }}""", {"w": f32(2, 12, 3), "r": f32(2, 12, 4), "b": f32(2, 24)})
    # per unit: 3 + 4 + 2*3 = 13 -> 3360 + 80*13 = 4400
    check(one(a, "GRU"), 1680, 4400, params=72 + 96 + 48)


def test_lstm_with_bias():
    a = run(f"""g ({_X}) => (float[5,1,2,4] y) {{
        y = LSTM <hidden_size=4> (x, w, r, b)
    }}""", {"w": f32(1, 16, 3), "r": f32(1, 16, 4), "b": f32(1, 32)})
    # 5*2*1*4 gates*4*(3+4) = 1120; per unit 4 + 5 + 2*4 = 17 -> 2240 + 40*17 = 2920
    check(one(a, "LSTM"), 1120, 2920, params=48 + 64 + 32)


def test_lstm_bidirectional_without_bias():
    a = run(f"""g ({_X}) => (float[5,2,2,4] y) {{
        y = LSTM <hidden_size=4, direction="bidirectional"> (x, w, r)
    }}""", {"w": f32(2, 16, 3), "r": f32(2, 16, 4)})
    # 2 dirs: 2240 MACs; per unit 4 + 5 = 9 -> 4480 + 80*9 = 5200
    check(one(a, "LSTM"), 2240, 5200)


def test_lstm_peepholes():
    a = run(f"""g ({_X}) => (float[5,1,2,4] y) {{
        y = LSTM <hidden_size=4> (x, w, r, b, , , , p)
    }}""", {"w": f32(1, 16, 3), "r": f32(1, 16, 4), "b": f32(1, 32), "p": f32(1, 12)})
    # per unit 4 + 5 + 8 (bias) + 3 (peepholes) = 20 -> 2240 + 40*20 = 3040
    check(one(a, "LSTM"), 1120, 3040, params=48 + 64 + 32 + 12)


# --------------------------------------------------------------------------- attention


def test_onnx_attention_4d():
    a = run("""g (float[2,4,5,8] q, float[2,4,7,8] k, float[2,4,7,6] v) => (float[2,4,5,6] y) {
        y = Attention (q, k, v)
    }""", opset=23, ir=10)
    # B*Nq*S*L*(H+Hv) = 2*4*5*7*(8+6) = 280*14 = 3920; 280 scores * 5 -> FLOPs 7840 + 1400 = 9240
    check(one(a, "Attention"), 3920, 9240)


def test_onnx_attention_4d_masked():
    a = run("""g (float[2,4,5,8] q, float[2,4,7,8] k, float[2,4,7,6] v, float[5,7] m) => (float[2,4,5,6] y) {
        y = Attention (q, k, v, m)
    }""", opset=23, ir=10)
    # as above + 1 mask add per score: 7840 + 280*6 = 9520
    check(one(a, "Attention"), 3920, 9520)


def test_onnx_attention_3d_grouped_heads():
    a = run("""g (float[2,5,16] q, float[2,7,8] k, float[2,7,6] v) => (float[2,5,12] y) {
        y = Attention <q_num_heads=2, kv_num_heads=1> (q, k, v)
    }""", opset=23, ir=10)
    # Nq=2, H=16/2=8, Hv=6/1=6, L=7: 2*2*5*7*(8+6) = 140*14 = 1960; FLOPs 3920 + 140*5 = 4620
    check(one(a, "Attention"), 1960, 4620)


def test_onnx_attention_with_past():
    a = run("""g (float[1,2,3,4] q, float[1,2,3,4] k, float[1,2,3,4] v, float[1,2,6,4] pk, float[1,2,6,4] pv)
            => (float[1,2,3,4] y, float[1,2,9,4] prk, float[1,2,9,4] prv) {
        y, prk, prv = Attention (q, k, v, , pk, pv)
    }""", opset=23, ir=10)
    # L = 3 new + 6 past = 9: 1*2*3*9*(4+4) = 432; 54 scores * 5 = 270 -> 864 + 270 = 1134
    check(one(a, "Attention"), 432, 1134)


def test_onnx_attention_3d_with_past():
    a = run("""g (float[1,3,16] q, float[1,3,8] k, float[1,3,8] v, float[1,2,5,4] pk, float[1,2,5,4] pv)
            => (float[1,3,16] y, float[1,2,8,4] prk, float[1,2,8,4] prv) {
        y, prk, prv = Attention <q_num_heads=4, kv_num_heads=2> (q, k, v, , pk, pv)
    }""", opset=23, ir=10)
    # Nq=4, H=16/4=4, Hv=8/2=4, L=3+5=8: 1*4*3*8*(4+4) = 768; 96 scores * 5 = 480 -> 1536 + 480 = 2016
    check(one(a, "Attention"), 768, 2016)


def _ms_attention(mask: bool) -> onnx.ModelProto:
    inputs = ["x", "w", "b"] + (["mask"] if mask else [])
    node = helper.make_node("Attention", inputs, ["y"], domain="com.microsoft", num_heads=2)
    ins = [vi("x", TensorProto.FLOAT, [2, 4, 8])] + ([vi("mask", TensorProto.INT32, [2])] if mask else [])
    return ms_model([node], ins, [vi("y", TensorProto.FLOAT, None)], {"w": f32(8, 24), "b": f32(24)})


@pytest.mark.parametrize("mask", [False, True])
def test_ms_attention(mask):
    a = mlms_ir.analyze(_ms_attention(mask))
    n = one(a, "Attention")
    assert n.domain == "com.microsoft"
    # B=2, S=L=4, Din=8, Dq=Dk=Dv=24/3=8, 2 heads
    # projection 2*4*8*24 = 1536; attention 2*4*4*(8+8) = 512 -> 2048 MACs
    # FLOPs 2*2048 + bias adds 2*4*24 = 192 + scores 2*2*4*4 = 64 * (5, +1 masked)
    scores = 64 * (6 if mask else 5)
    check(n, 2048, 4096 + 192 + scores, params=8 * 24 + 24)
    assert n.output_shapes == [[2, 4, 8]]


def _ms_attention_past() -> onnx.ModelProto:
    node = helper.make_node("Attention", ["x", "w", "b", "", "past"], ["y", "present"], domain="com.microsoft",
                            num_heads=2, qkv_hidden_sizes=[8, 8, 4])
    return ms_model([node], [vi("x", TensorProto.FLOAT, [2, 4, 6]), vi("past", TensorProto.FLOAT, [2, 2, 2, 3, 4])],
                    [vi("y", TensorProto.FLOAT, None), vi("present", TensorProto.FLOAT, None)],
                    {"w": f32(6, 20), "b": f32(20)})


def test_ms_attention_past_and_qkv_hidden_sizes():
    n = one(mlms_ir.analyze(_ms_attention_past()), "Attention")
    # B=2, S=4, Din=6, Dq=Dk=8, Dv=4, past P=3 (past is [2,B,N,P,H]) -> L = 7
    # projection 2*4*6*(8+8+4) = 960; attention 2*4*7*(8+4) = 672 -> 1632 MACs
    # FLOPs 3264 + bias adds 2*4*20 = 160 + scores 2*2*4*7 = 112 * 5 = 560 -> 3984
    assert (n.macs, n.flops) == (1632, 3984)
    assert n.params == 6 * 20 + 20


def test_ms_attention_with_past_is_fully_counted():
    n = one(mlms_ir.analyze(_ms_attention_past()), "Attention")
    assert n.status == "counted"
    assert n.output_shapes == [[2, 4, 4], [2, 2, 2, 7, 4]]


def test_ms_multi_head_attention():
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft", num_heads=2)
    m = ms_model([node], [vi("q", TensorProto.FLOAT, [2, 4, 8]), vi("k", TensorProto.FLOAT, [2, 6, 8]),
                          vi("v", TensorProto.FLOAT, [2, 6, 8])], [vi("y", TensorProto.FLOAT, None)])
    a = mlms_ir.analyze(m)
    # B*S*L*(D+Dv) = 2*4*6*(8+8) = 768 (no projections); scores B*heads*S*L = 2*2*4*6 = 96 * 5 = 480
    check(one(a, "MultiHeadAttention"), 768, 1536 + 480)


def test_ms_multi_head_attention_packed_qkv():
    node = helper.make_node("MultiHeadAttention", ["qkv"], ["y"], domain="com.microsoft", num_heads=2)
    m = ms_model([node], [vi("qkv", TensorProto.FLOAT, [2, 4, 2, 3, 5])], [vi("y", TensorProto.FLOAT, None)])
    a = mlms_ir.analyze(m)
    n = one(a, "MultiHeadAttention")
    # packed [B=2, S=4, N=2, 3, H=5]: D = Dv = 2*5 = 10, L = S = 4 -> 2*4*4*(10+10) = 640
    # scores 2*2*4*4 = 64 * 5 = 320 -> 1280 + 320 = 1600
    check(n, 640, 1600)
    assert n.output_shapes == [[2, 4, 10]]


def test_ms_multi_head_attention_4d_kv_with_padding_mask():
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "kpm"], ["y"], domain="com.microsoft", num_heads=2)
    m = ms_model([node], [vi("q", TensorProto.FLOAT, [2, 4, 8]), vi("k", TensorProto.FLOAT, [2, 2, 6, 4]),
                          vi("v", TensorProto.FLOAT, [2, 2, 6, 3]), vi("kpm", TensorProto.INT32, [2, 6])],
                 [vi("y", TensorProto.FLOAT, None)])
    a = mlms_ir.analyze(m)
    n = one(a, "MultiHeadAttention")
    # K [B, N, L, H] = [2,2,6,4] -> L = 6; V [2,2,6,3] -> Dv = 2*3 = 6; D = 8
    # 2*4*6*(8+6) = 672; scores 2*2*4*6 = 96 * (5 + 1 mask) = 576 -> 1344 + 576 = 1920
    check(n, 672, 1920)
    assert n.output_shapes == [[2, 4, 6]]


def test_ms_group_query_attention_with_kv_cache():
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "sl", "tl"], ["y", "prk", "prv"],
                            domain="com.microsoft", num_heads=4, kv_num_heads=2)
    f = TensorProto.FLOAT
    m = ms_model([node], [vi("q", f, [1, 3, 16]), vi("k", f, [1, 3, 8]), vi("v", f, [1, 3, 8]),
                          vi("pk", f, [1, 2, 5, 4]), vi("pv", f, [1, 2, 5, 4]),
                          vi("sl", TensorProto.INT32, [1, 1]), vi("tl", TensorProto.INT32, [])],
                 [vi("y", f, None), vi("prk", f, None), vi("prv", f, None)])
    n = one(mlms_ir.analyze(m), "GroupQueryAttention")
    # Nq=4, H=16/4=4, L = past 5 + S 3 = 8: 2*B*Nq*S*L*H = 2*1*4*3*8*4 = 768; 96 scores * 5 = 480
    check(n, 768, 1536 + 480)


# --------------------------------------------------------------------------- quantized


def _qlinear_conv(bias: bool) -> onnx.ModelProto:
    inputs = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"] + (["bq"] if bias else [])
    node = helper.make_node("QLinearConv", inputs, ["y"])
    inits = {"xs": scalar(0.1, np.float32), "xz": scalar(0, np.uint8), "w": u8(4, 3, 3, 3),
             "ws": scalar(0.1, np.float32), "wz": scalar(0, np.uint8), "ys": scalar(0.1, np.float32),
             "yz": scalar(0, np.uint8)}
    if bias:
        inits["bq"] = np.ones(4, np.int32)
    g = helper.make_graph([node], "q", [vi("x", TensorProto.UINT8, [1, 3, 8, 8])], [vi("y", TensorProto.UINT8, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])


def test_qlinear_conv():
    a = mlms_ir.analyze(_qlinear_conv(bias=False))
    # out 1*4*6*6 = 144 * 3*3*3 = 3888 integer MACs; ops 2*3888 + 144 requantise = 7920
    # params: the uint8 weights only (4*3*3*3 = 108), not scales or zero points
    check(one(a, "QLinearConv"), 3888, 7920, params=108, int_macs=True)
    assert a.totals.int_macs == a.totals.macs == 3888
    assert a.totals.params_by_dtype == {"uint8": 108}


def test_qlinear_conv_bias_flops():
    a = mlms_ir.analyze(_qlinear_conv(bias=True))
    # + 144 bias adds: 7920 + 144 = 8064
    check(one(a, "QLinearConv"), 3888, 8064, int_macs=True)


def test_qlinear_conv_int32_bias_is_a_param():
    a = mlms_ir.analyze(_qlinear_conv(bias=True))
    assert one(a, "QLinearConv").params == 108 + 4


def test_qlinear_matmul():
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    inits = {"as": scalar(0.1, np.float32), "az": scalar(0, np.uint8), "b": u8(5, 4), "bs": scalar(0.1, np.float32),
             "bz": scalar(0, np.uint8), "ys": scalar(0.1, np.float32), "yz": scalar(0, np.uint8)}
    g = helper.make_graph([node], "q", [vi("a", TensorProto.UINT8, [2, 3, 5])], [vi("y", TensorProto.UINT8, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    a = mlms_ir.analyze(helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]))
    # out 2*3*4 = 24 * K=5 = 120; ops 240 + 24 requantise = 264; params 5*4 = 20
    check(one(a, "QLinearMatMul"), 120, 264, params=20, int_macs=True)


def test_matmul_integer():
    a = run("""g (uint8[3,5] x) => (int32[3,4] y) {
        y = MatMulInteger (x, w, xz, wz)
    }""", {"w": np.ones((5, 4), np.int8), "xz": scalar(0, np.uint8), "wz": scalar(0, np.int8)})
    # 3*4 = 12 out * 5 = 60 integer MACs; params: the int8 weight only = 20
    # read: x 15 + w 20 + zero points 1 + 1 = 37 bytes; written 12 int32 = 48
    check(one(a, "MatMulInteger"), 60, 120, params=20, read=37, written=48, int_macs=True)
    assert a.totals.int_macs == 60


def test_conv_integer():
    a = run("""g (uint8[1,2,5,5] x) => (int32[1,3,3,3] y) {
        y = ConvInteger (x, w, xz)
    }""", {"w": u8(3, 2, 3, 3), "xz": scalar(0, np.uint8)})
    # out 1*3*3*3 = 27 * 2*3*3 = 486; params 3*2*3*3 = 54
    check(one(a, "ConvInteger"), 486, 972, params=54, int_macs=True)


# --------------------------------------------------------------------------- data movement, free, unknown


def test_reshape():
    a = run("""g (float[2,3,4] x) => (float[4,6] y) {
        y = Reshape (x, s)
    }""", {"s": np.array([4, 6], np.int64)})
    # 0 FLOPs; reads x 96 + shape 2*8 = 16 -> 112; writes 96; the shape is no param
    check(one(a, "Reshape"), 0, 0, params=0, read=112, written=96)


def test_transpose():
    a = run("""g (float[2,3,4] x) => (float[4,2,3] y) {
        y = Transpose <perm=[2,0,1]> (x)
    }""")
    check(one(a, "Transpose"), 0, 0, read=96, written=96)


def test_concat():
    a = run("""g (float[2,3] a, float[2,5] b) => (float[2,8] y) {
        y = Concat <axis=1> (a, b)
    }""")
    # reads 24 + 40 = 64; writes 2*8*4 = 64
    check(one(a, "Concat"), 0, 0, read=64, written=64)


def test_gather_embedding():
    a = run("""g (int64[2,3] idx) => (float[2,3,4] y) {
        y = Gather <axis=0> (table, idx)
    }""", {"table": f32(10, 4)})
    # reads only the selected rows (output 2*3*4*4 = 96 bytes) + the indices 6*8 = 48 -> 144
    # writes 96; the table is a param (10*4 = 40) though only 6 rows are read
    check(one(a, "Gather"), 0, 0, params=40, read=96 + 48, written=96)


def test_gather_from_activation():
    a = run("""g (float[10,4] x, int64[3] idx) => (float[3,4] y) {
        y = Gather (x, idx)
    }""")
    # output 3*4*4 = 48 + indices 24 = 72 read; no params
    check(one(a, "Gather"), 0, 0, params=0, read=72, written=48)


def test_slice_reads_only_the_slice():
    a = run("""g (float[4,6] x) => (float[2,3] y) {
        y = Slice (x, st, en, ax)
    }""", {"st": np.array([1, 0], np.int64), "en": np.array([3, 3], np.int64), "ax": np.array([0, 1], np.int64)})
    # output 2*3*4 = 24 bytes + starts/ends/axes 3 * 2*8 = 48 -> 72
    check(one(a, "Slice"), 0, 0, params=0, read=72, written=24)


def test_free_ops():
    a = run("""g (float[2,3] x) => (int64[2] s, float[2,3] y) {
        s = Shape (x)
        i = Identity (x)
        k = Constant <value = float[3] {1.0, 2.0, 3.0}> ()
        y = Add (i, k)
    }""")
    for op in ("Shape", "Identity", "Constant"):
        check(one(a, op), 0, 0, params=0, read=0, written=0, status="free")
    # the Constant read by Add is a weight of Add: 3 params; Add: 6 FLOPs
    check(one(a, "Add"), 0, 6, params=3)
    assert a.totals.flops == 6
    assert a.totals.complete


def test_unknown_op_is_listed_and_the_rest_counted():
    a = run("""g (float[2,3] x) => (float[2,3] y, float[2,3] z) {
        y = my.domain.Fancy (x)
        y2 = my.domain.Fancy (x)
        z = Relu (x)
    }""", extra=', "my.domain" : 1')
    fancy = [n for n in a.nodes if n.op_type == "Fancy"]
    assert [n.status for n in fancy] == ["unknown_op", "unknown_op"]
    assert all(n.macs is None and n.flops is None for n in fancy)
    assert len(a.unknown_ops) == 1
    u = a.unknown_ops[0]
    assert (u.op_type, u.domain, u.count, u.nodes) == ("Fancy", "my.domain", 2, ["n0", "n1"])
    check(one(a, "Relu"), 0, 6)
    assert a.totals.flops == 6
    assert a.totals.unknown_nodes == 2
    assert not a.totals.complete


def test_shared_weight_is_counted_once():
    a = run("""g (float[2,5] x) => (float[2,5] y) {
        h = MatMul (x, w)
        y = MatMul (h, w)
    }""", {"w": f32(5, 5)})
    first, second = [n for n in a.nodes if n.op_type == "MatMul"]
    # the 25 params go to the first reader; both nodes read w: 2*5*5 = 50 MACs each
    check(first, 50, 100, params=25, read=40 + 100)
    check(second, 50, 100, params=0, read=40 + 100)
    assert a.totals.params == 25 and a.totals.macs == 100


# --------------------------------------------------------------------------- control flow


def test_if_counts_the_costlier_branch():
    a = run("""g (bool c, float[2,3] x) => (float[2,3] y) {
        y = If (c) <
            then_branch = t () => (float[2,3] ty) { ty = Relu (x) },
            else_branch = e () => (float[2,3] ey) { e1 = Sigmoid (x)  ey = Tanh (e1) }
        >
    }""")
    n = one(a, "If")
    # then: 6 FLOPs; else: 6 + 6 = 12 -> else counted
    check(n, 0, 12)
    assert "else_branch" in n.note
    mult = {s.attribute: s.multiplier for s in a.structure.subgraphs}
    assert mult == {"then_branch": 0, "else_branch": 1}
    assert a.totals.flops == 12


def test_if_branch_weights_are_params_of_the_model():
    a = run("""g (bool c, float[2,3] x) => (float[2,3] y) {
        y = If (c) <
            then_branch = t () => (float[2,3] ty) { ty = MatMul (x, w1) },
            else_branch = e () => (float[2,3] ey) { ey = Add (x, w2) }
        >
    }""", {"w1": f32(3, 3), "w2": f32(2, 3)})
    # then: MatMul 2*3*3 = 18 MACs, 36 FLOPs (costlier); else: Add 6 FLOPs
    check(one(a, "If"), 18, 36)
    # the model holds both branches' weights: 9 + 6 = 15
    assert a.totals.params == 15


def test_loop_constant_trip_count_multiplies_the_body():
    a = run("""g (float[2,3] x) => (float[2,3] y) {
        y = Loop (m, c, x) <body = b (int64 i, bool cin, float[2,3] s) => (bool cout, float[2,3] s2) {
            cout = Identity (cin)
            s1 = MatMul (s, w)
            s2 = Relu (s1)
        }>
    }""", {"m": scalar(5, np.int64), "c": scalar(True, np.bool_), "w": f32(3, 3)})
    n = one(a, "Loop")
    # per iteration: MatMul 2*3 out * 3 = 18 MACs (36 FLOPs) + Relu 6 -> 42 FLOPs; x 5 iterations
    check(n, 5 * 18, 5 * 42, params=9)  # the weight counts once, not once per iteration
    assert "5 iterations" in n.note
    body = [c for c in a.nodes if c.parent == n.id]
    assert [c.op_type for c in body] == ["Identity", "MatMul", "Relu"]
    assert a.totals.macs == 90 and a.totals.flops == 210
    assert a.totals.params == 9
    assert a.structure.subgraphs[0].multiplier == 5


def test_loop_dynamic_trip_count_is_per_iteration():
    a = run("""g (int64 m, float[2,3] x) => (float[2,3] y) {
        y = Loop (m, c, x) <body = b (int64 i, bool cin, float[2,3] s) => (bool cout, float[2,3] s2) {
            cout = Identity (cin)
            s1 = MatMul (s, w)
            s2 = Relu (s1)
        }>
    }""", {"c": scalar(True, np.bool_), "w": f32(3, 3)})
    n = one(a, "Loop")
    check(n, 18, 42)
    assert "per iteration" in n.note
    assert a.structure.subgraphs[0].multiplier is None


def test_scan_multiplies_by_the_scan_length():
    a = run("""g (float[3] s0, float[5,3] xs) => (float[3] sf, float[5,3] ys) {
        sf, ys = Scan <num_scan_inputs=1, body = b (float[3] s, float[3] x) => (float[3] s2, float[3] y) {
            s2 = Add (s, x)
            y = Relu (s2)
        }> (s0, xs)
    }""")
    # per step Add 3 + Relu 3 = 6; 5 steps -> 30
    check(one(a, "Scan"), 0, 30)
    assert a.structure.subgraphs[0].multiplier == 5


def test_scan_along_axis_1():
    a = run("""g (float[3] s0, float[3,5] xs) => (float[3] sf, float[5,3] ys) {
        sf, ys = Scan <num_scan_inputs=1, scan_input_axes=[1], body = b (float[3] s, float[3] x) => (float[3] s2, float[3] y) {
            s2 = Add (s, x)
            y = Relu (s2)
        }> (s0, xs)
    }""")
    # scanned along axis 1 of [3,5]: 5 steps * 6 = 30
    check(one(a, "Scan"), 0, 30)


def test_loop_trip_count_from_a_constant_node():
    a = run("""g (float[2,3] x) => (float[2,3] y) {
        m = Constant <value = int64 {4}> ()
        y = Loop (m, c, x) <body = b (int64 i, bool cin, float[2,3] s) => (bool cout, float[2,3] s2) {
            cout = Identity (cin)
            s2 = Relu (s)
        }>
    }""", {"c": scalar(True, np.bool_)})
    # 4 iterations * Relu 6 = 24; reads 4 * 24 bytes, writes 4 * 24 bytes
    check(one(a, "Loop"), 0, 24, read=96, written=96)


# --------------------------------------------------------------------------- registry


def test_registering_a_duplicate_formula_raises(monkeypatch):
    registry.entries()  # make sure every formula is registered before copying
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test

    def fake(ctx):
        """1 FLOP per nothing"""
        return registry.Cost()

    registry.cost("FakeOp", domain="test.fake.domain")(fake)
    assert registry.lookup("FakeOp", "test.fake.domain").formula == "1 FLOP per nothing"
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.cost("FakeOp", domain="test.fake.domain")(fake)
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.cost("Conv")(fake)
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.free("Shape")


def test_duplicate_check_left_the_registry_intact():
    assert registry.lookup("FakeOp", "test.fake.domain") is None
    assert registry.lookup("Conv", "").fn is not None
    assert registry.lookup("Conv", "ai.onnx") is registry.lookup("Conv", "")


def test_every_registry_entry_has_a_formula():
    entries = registry.entries()
    assert len(entries) > 100
    for e in entries:
        assert isinstance(e.formula, str) and e.formula.strip(), f"{e.domain or 'ai.onnx'}::{e.op_type} has no formula"
        assert e.category in ("compute", "elementwise", "data-movement", "free", "control-flow")
        assert (e.fn is None) == (e.category in ("free", "control-flow"))


# --------------------------------------------------------------------------- symbolic batch

_CNN = """g (float[N,3,32,32] x) => (float[N,10] y) {
    c = Conv <pads=[1,1,1,1]> (x, w1, b1)
    r = Relu (c)
    p = GlobalAveragePool (r)
    f = Flatten (p)
    y = Gemm <transB=1> (f, w2, b2)
}"""
_CNN_INITS = {"w1": f32(8, 3, 3, 3), "b1": f32(8), "w2": f32(10, 8), "b2": f32(10)}

# batch 1, by hand:
# Conv: 1*8*32*32 = 8192 out * 27 = 221184 MACs; FLOPs 2*221184 + 8192 bias = 450560
# Relu 8192; GlobalAveragePool 8192 (input elements); Flatten 0; Gemm 1*10*8 = 80 MACs, 160 + 10 = 170 FLOPs
_MACS1 = 221184 + 80
_FLOPS1 = 450560 + 8192 + 8192 + 0 + 170
# activations (not graph outputs): c 8192*4 + r 8192*4 + p 8*4 + f 8*4 = 65600 bytes
_ACT1 = 32768 + 32768 + 32 + 32


@pytest.mark.parametrize("how", ["dims", "batch"])
@pytest.mark.parametrize("b", [1, 2, 8])
def test_symbolic_batch_scales_linearly(b, how):
    kw = {"dims": {"N": b}} if how == "dims" else {"batch": b}
    a = run(_CNN, _CNN_INITS, **kw)
    assert all(n.status == "counted" for n in a.nodes)
    assert a.totals.macs == b * _MACS1
    assert a.totals.flops == b * _FLOPS1
    assert a.totals.activation_bytes == b * _ACT1
    assert a.totals.input_bytes == b * 3 * 32 * 32 * 4
    assert a.totals.output_bytes == b * 10 * 4
    assert a.totals.bytes_written == b * (32768 + 32768 + 32 + 32 + 40)
    assert a.totals.params == 216 + 8 + 80 + 10  # parameters do not scale
    assert one(a, "Conv").macs == b * 221184


def test_symbolic_batch_unbound_gives_formulas():
    sympy = pytest.importorskip("sympy")
    a = run(_CNN, _CNN_INITS)
    assert [n.status for n in a.nodes] == ["counted"] * 5
    # 'N' is a sympy name (numeric evaluation): the symbol is written N_ so that sympify reads it back
    assert [(d.name, d.kind, d.origin) for d in a.dims] == [("N_", "input", "N")]
    n = sympy.Symbol("N_")
    f = {k: sympy.sympify(v) for k, v in a.totals.symbolic.items()}
    assert f["macs"] == _MACS1 * n and f["flops"] == _FLOPS1 * n
    assert f["activation_bytes"] == _ACT1 * n
    assert f["input_bytes"] == 3 * 32 * 32 * 4 * n and f["output_bytes"] == 40 * n
    assert a.totals.macs is None and a.totals.flops is None  # never a number that is not one
    conv = one(a, "Conv")
    assert conv.macs is None and sympy.sympify(conv.symbolic["macs"]) == 221184 * n
    assert conv.output_shapes == [["N_", 8, 32, 32]]
    assert a.unresolved_dims == [] and a.totals.unresolved_nodes == 0
    assert a.totals.complete
    assert a.totals.params == 314  # params are known without the batch
