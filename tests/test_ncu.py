"""Hardware counters through Nsight Compute (mlms_ir.gpu.ncu_*), without a GPU.

The fixtures tests/data/ncu_raw.csv and tests/data/ncu_details.csv are hand-built in the layouts
ncu writes with ``--csv --page raw`` and ``--csv --page details`` (the ``==PROF==`` lines before the
table, the NVTX push/pop column ``thread Domain:Push/Pop_Range:...`` with one quoted
``"<default domain>:<range>:none:..."`` entry per level, outermost first, thousands separators,
``n/a``, a units row on the raw page, scaled units on the details page); no GPU recorded them.
They hold one counted run of the Conv -> Relu -> Flatten -> Gemm model built below on an H200:
a fill kernel outside every node, cuDNN's TF32 implicit-GEMM convolution and its bias add (n0),
the Relu's clamp kernel (n1), nothing for the Flatten view (n2), and an FFMA cuBLAS GEMM (n3).
``run_counters`` is driven through a fake ``ncu`` (a small script that writes a fixture to
``--log-file``), so the subprocess, permission, missing-metric and timeout paths run here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from decimal import Decimal
from io import StringIO
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mlms_ir
import mlms_ir.gpu.ncu_command as ncu_cmd
from mlms_ir.errors import CountersUnavailableError, MlmsIrError, ShapeBindingError
from mlms_ir.gpu import ncu as child_entry
from mlms_ir.gpu import ncu_run
from mlms_ir.gpu.counters_attribution import attribute_counters, kernel_flops
from mlms_ir.gpu.ncu_command import NCU_ENV, check_cuda, find_ncu, ncu_command
from mlms_ir.gpu.ncu_metrics import (
    COUNTERS_RANGE,
    DRAM_READ,
    DRAM_WRITE,
    FLOP_METRICS,
    METRIC_SETS,
    OCCUPANCY,
    SM_PCT,
    TENSOR_CYCLES,
    TENSOR_INST,
    TIME,
    resolve_metrics,
)
from mlms_ir.gpu.ncu_parse import parse_ncu_csv, scale_value, unit_scale
from mlms_ir.gpu.ncu_run import run_counters
from mlms_ir.passes.roofline import resolve_device
from mlms_ir.report.counters_text import render_counters
from mlms_ir.results.counters import CountersModel, CountersReport, KernelCounters

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).resolve().parents[1] / "docs"
FFMA = FLOP_METRICS["fp32"][2]
FADD = FLOP_METRICS["fp32"][0]
FMUL = FLOP_METRICS["fp32"][1]


def counters_model() -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv(4 filters 3x3, pad 1, bias) -> Relu -> Flatten -> Gemm(256 -> 10): n0..n3."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((10, 256)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.zeros(10, np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="/flatten/Flatten"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="/fc/Gemm", transB=1)]
    g = helper.make_graph(nodes, "counters", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def static():
    return mlms_ir.analyze(counters_model()).nodes


@pytest.fixture(scope="module")
def kernels() -> list[KernelCounters]:
    return parse_ncu_csv((DATA / "ncu_raw.csv").read_text())


# ---------------------------------------------------------------------------------------------- parsing
def test_both_layouts_parse_to_the_same_kernels(kernels):
    details = parse_ncu_csv((DATA / "ncu_details.csv").read_text())
    assert details == kernels  # the details page writes some figures in usecond/msecond/Kbyte/Mbyte
    assert [k.id for k in kernels] == [0, 1, 2, 3, 4]
    assert [k.node for k in kernels] == [None, "n0", "n0", "n1", "n3"]
    assert kernels[1].name.startswith("sm90_xmma_fprop_implicit_gemm_f32f32_tf32f32")
    assert kernels[3].name.startswith("void at::native::vectorized_elementwise_kernel<4, at::native::(anonymous namespace)::launch_clamp")
    assert all(k.process_id == 3112944 and k.cc == "9.0" and k.stream == "7" and k.device == "0" for k in kernels)
    # every metric of the roofline set, once per kernel (the fixtures predate sm__pipe_tensor_cycles_active)
    assert all(set(k.metrics) == set(METRIC_SETS["roofline"]) - {TENSOR_CYCLES} for k in kernels)


def test_values_are_scaled_to_si_units(kernels):
    gemm = kernels[4]
    assert gemm.time_s == 4.096e-6 and gemm.units[TIME] == "second"
    assert gemm.metrics[DRAM_READ] == 11328.0 and gemm.metrics[DRAM_WRITE] == 64.0 and gemm.units[DRAM_READ] == "byte"
    assert gemm.metrics[FFMA] == 2560.0  # "2,560"
    assert gemm.metrics[SM_PCT] == 3.05 and gemm.units[SM_PCT] == "%"
    assert gemm.grid == (1, 1, 1) and gemm.block == (64, 1, 1) and gemm.registers == 90
    assert gemm.units["launch__registers_per_thread"] == "register/thread"
    conv = kernels[1]
    assert conv.time_s == 8.512e-6 and conv.metrics[TENSOR_INST] == 432.0
    assert conv.grid == (4, 1, 1) and conv.block == (384, 1, 1) and conv.registers == 168
    assert conv.metrics["launch__grid_size"] == 4.0 and conv.metrics["launch__block_size"] == 384.0
    assert kernels[3].metrics[OCCUPANCY] is None  # "n/a"


def test_unit_scale_and_numbers():
    assert unit_scale("nsecond") == ("second", Decimal("1e-9"))
    assert unit_scale("usecond") == ("second", Decimal("1e-6"))
    assert unit_scale("msecond") == ("second", Decimal("1e-3"))
    assert unit_scale("second") == ("second", Decimal(1))
    assert unit_scale("us") == ("second", Decimal("1e-6"))
    assert unit_scale("Kbyte") == ("byte", Decimal(1000))
    assert unit_scale("Mbyte") == ("byte", Decimal(10) ** 6)
    assert unit_scale("Gbyte") == ("byte", Decimal(10) ** 9)
    assert unit_scale("KiB".replace("B", "byte")) == ("byte", Decimal(1024))
    assert unit_scale("Gbyte/second") == ("byte/second", Decimal(10) ** 9)
    assert unit_scale("cycle/nsecond") == ("cycle/second", Decimal(10) ** 9)
    assert unit_scale("Ghz") == ("hz", Decimal(10) ** 9)
    assert unit_scale("%") == ("%", Decimal(1))
    assert unit_scale("") == ("", Decimal(1))
    assert unit_scale("register/thread") == ("register/thread", Decimal(1))
    assert unit_scale("furlong") == ("furlong", Decimal(1))  # unknown: kept, unscaled
    assert scale_value("1,234,567", "byte") == (1234567.0, "byte")
    assert scale_value("1.5", "Kbyte") == (1500.0, "byte")
    assert scale_value("n/a", "byte") == (None, "byte")
    assert scale_value("", "%") == (None, "%")
    assert scale_value("GH100", "") == (None, "")
    # the same quantity in different units gives the same float (exact decimal scaling)
    assert scale_value("8.512", "usecond")[0] == scale_value("8,512", "nsecond")[0] == 8.512e-6
    assert scale_value("0.004096", "msecond")[0] == scale_value("4,096", "nsecond")[0]


RAW_HEAD = ('"ID","Process ID","Process Name","Host Name",'
            '"thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg",'
            '"Id:Domain:Start/Stop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg",'
            '"Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","gpu__time_duration.sum"\n'
            '"","","","","","","","","","","","","","nsecond"\n')


def _entry(name: str, domain: str = "<default domain>") -> str:
    return f'""{domain}:{name}:none:none:none:none:none:none""'


def test_innermost_node_range_wins():
    stack = "  ".join([_entry(COUNTERS_RANGE), _entry("mlms_ir::n4"), _entry("mlms_ir::n4/body/n0"),
                       _entry("cub::DeviceReduce::Reduce", domain="CCCL")])
    text = ("==PROF== Connected to process 7 (/usr/bin/python3)\n" + RAW_HEAD
            + f'"0","7","python3","h","7  {stack} ","","reduce_kernel","1","7","(256, 1, 1)","(8, 1, 1)","0","9.0","1,000"\n'
            + f'"1","7","python3","h","7  {_entry(COUNTERS_RANGE)}","","copy_kernel","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","500"\n'
            # no push/pop range, but a start/end range names a node: used when push/pop names none
            + '"2","7","python3","h","","1:<default domain>:mlms_ir::n7:none:none:none:none:none:none","k","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0","n/a"\n')
    ks = parse_ncu_csv(text)
    assert [k.node for k in ks] == ["n4/body/n0", None, "n7"]
    assert ks[0].ranges == ["n4", "n4/body/n0"] and ks[1].ranges == []
    assert ks[0].time_s == 1e-6 and ks[2].time_s is None
    assert ks[0].grid == (8, 1, 1) and ks[0].block == (256, 1, 1) and ks[0].registers is None


def test_details_rule_rows_and_garbage():
    head = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC",'
            '"Section Name","Metric Name","Metric Unit","Metric Value","Rule Name","Rule Type","Rule Description"\n')
    rows = ('"0","1","p","h","k","1","7","(1, 1, 1)","(1, 1, 1)","0","8.0","Command line profiler metrics","gpu__time_duration.sum","usecond","1.50","","",""\n'
            '"0","1","p","h","k","1","7","(1, 1, 1)","(1, 1, 1)","0","8.0","SOL","","","","SOLBottleneck","OPT","Memory is more heavily utilized"\n')
    ks = parse_ncu_csv("some program output\n" + head + rows)
    assert len(ks) == 1 and ks[0].node is None and ks[0].metrics == {TIME: 1.5e-6}
    assert parse_ncu_csv("") == [] and parse_ncu_csv("==PROF== nothing\n==WARNING== No kernels were profiled.\n") == []


# ---------------------------------------------------------------------------------------------- attribution
def test_flops_are_add_plus_mul_plus_twice_fma(kernels):
    assert kernel_flops(kernels[4]) == {"fp32": 10 + 0 + 2 * 2560, "fp16": 0.0, "fp64": 0.0}
    assert kernel_flops(kernels[1])["fp32"] == 256  # the convolution's SIMT epilogue; its MMA work is on tensor cores
    bare = KernelCounters(id=0, name="k", node=None, metrics={TIME: 1e-6, FFMA: 3.0})
    assert kernel_flops(bare) == {"fp32": 6.0, "fp16": None, "fp64": None}


def test_attribution_per_node_with_ratios_and_the_h200_roofline(kernels, static):
    rep = attribute_counters(kernels, static, "h200")
    assert [n.id for n in rep.nodes] == ["n0", "n3", "n1"]  # longest GPU time first
    assert rep.nodes_without_kernels == ["n2"]  # Flatten is a view
    assert [k.id for k in rep.unattributed] == [0]
    peak, bw = 6.7e13, 4.8e12  # devices.json: h200 fp32 (CUDA cores), HBM3e
    assert rep.device == "h200" and rep.peak_kind == "fp32" and rep.peak_flops_per_s == peak
    assert rep.ridge_intensity == pytest.approx(peak / bw)

    conv = rep.nodes[0]
    assert (conv.name, conv.op_type, conv.kernels) == ("/conv/Conv", "Conv", 2)
    assert conv.gpu_time_us == pytest.approx(8.512 + 2.208)
    assert conv.flops == 256 + 256 and conv.static_flops == 2 * 6912 + 256  # MACs 4*8*8*3*3*3, plus the bias
    assert conv.flops_ratio == pytest.approx(512 / 14080)
    assert conv.tensor_inst == 432 and conv.tensor_core
    assert conv.dram_read_bytes == 1536 + 1056 and conv.dram_write_bytes == 2048 and conv.dram_bytes == 4640
    assert conv.static_bytes == 1216 + 1024 and conv.bytes_ratio == pytest.approx(4640 / 2240)
    assert conv.sm_pct == pytest.approx((2.11 * 8.512 + 0.42 * 2.208) / 10.72)
    assert conv.memory_pct == pytest.approx((1.35 * 8.512 + 0.97 * 2.208) / 10.72)
    assert conv.achieved_flops_per_s == pytest.approx(512 / 10.72e-6)
    assert conv.intensity == pytest.approx(512 / 4640)
    assert conv.kernel_names[0].startswith("sm90_xmma_fprop")

    gemm = rep.nodes[1]
    assert gemm.flops == 5130 and gemm.static_flops == 5130 and gemm.flops_ratio == 1.0
    assert gemm.dram_bytes == 11328 + 64 and gemm.bytes_ratio == pytest.approx(11392 / (11304 + 40))
    intensity = 5130 / 11392  # FLOP/B, far below the ridge (~14): memory-bound
    assert gemm.intensity == pytest.approx(intensity)
    assert gemm.attainable_flops_per_s == pytest.approx(intensity * bw)  # 2.16e12 FLOP/s
    assert gemm.achieved_flops_per_s == pytest.approx(5130 / 4.096e-6)  # 1.25e9 FLOP/s
    assert gemm.roofline_share == pytest.approx((5130 / 4.096e-6) / (intensity * bw))
    assert gemm.bound == "memory" and not gemm.tensor_core
    assert gemm.share == pytest.approx(4.096 / 18.592)

    relu = rep.nodes[2]
    assert relu.flops == 0 and relu.flops_ratio == 0.0  # max(x, 0) is no add/mul/fma: static counts 1 FLOP/element
    assert relu.occupancy_pct is None and relu.sm_pct == 0.21  # its occupancy was n/a

    t = rep.totals
    assert t.kernels == 5 and t.gpu_time_us == pytest.approx(18.592)
    assert rep.coverage == pytest.approx((18.592 - 1.856) / 18.592)
    assert t.flops == 512 + 5130 and t.static_flops == 14080 + 256 + 0 + 5130
    assert t.dram_bytes == 1024 + 4640 + 2048 + 11392
    assert t.tensor_inst == 432 and t.tensor_core
    assert any("TF32" in note and "tensor-core" in note for note in rep.notes)
    assert any("outside every node" in note for note in rep.notes)
    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d and d["version"] == 1
    assert d["kernels"][1]["grid"] == [4, 1, 1] and d["nodes"][0]["id"] == "n0"


def test_counters_json_reads_back_equal(kernels, static):
    """``CountersReport.from_dict(to_dict())`` gives back an equal report: grid and block, which
    JSON writes as lists, come back as tuples; ``kind`` and ``schema_version`` lead the JSON."""
    rep = attribute_counters(kernels, static, "h200")
    rep.gpu, rep.model, rep.metric_set, rep.metrics = "NVIDIA H200", CountersModel("counters", None), "roofline", list(METRIC_SETS["roofline"])
    d = rep.to_dict()
    assert list(d)[:3] == ["kind", "schema_version", "nodes"]
    assert d["kind"] == "counters" and d["schema_version"] == "1.1" and d["version"] == 1
    assert d["kernels"][1]["grid"] == [4, 1, 1] and d["kernels"][1]["block"] == [384, 1, 1]
    back = CountersReport.from_dict(json.loads(json.dumps(d)))
    assert back == rep
    assert back.kernels[1].grid == (4, 1, 1) and back.kernels[1].block == (384, 1, 1)
    assert back.kernels[1].dram_bytes == 1536 + 1024  # read + written, as in the fixture
    with pytest.raises(ValueError, match="not 'counters'"):
        CountersReport.from_dict({**d, "kind": "run"})


def test_roofline_by_hand_on_a_custom_device():
    dev = resolve_device("fp32=1e13,fp64=5e12,bw=1e12")  # ridge: 10 FLOP/B

    def k(i, node, ffma=0.0, dfma=0.0, dram=1e6, t=1e-3):
        return KernelCounters(id=i, name="k", node=node,
                              metrics={TIME: t, FFMA: ffma, FLOP_METRICS["fp64"][2]: dfma, DRAM_READ: dram, DRAM_WRITE: 0.0})

    # 1e9 FLOP over 1e6 B: intensity 1000 (compute-bound, roof 1e13); 1e12 FLOP/s achieved: 10 %
    # 1e6 FLOP over 1e6 B: intensity 1 (memory-bound, roof 1e12); 1e9 FLOP/s achieved: 0.1 %
    # fp64: 1e9 FLOP at intensity 1000 under the fp64 peak 5e12: 20 %
    rep = attribute_counters([k(0, "a", ffma=5e8), k(1, "b", ffma=5e5), k(2, "c", dfma=5e8)], [], dev)
    a, b, c = sorted(rep.nodes, key=lambda n: n.id)
    assert (a.intensity, a.attainable_flops_per_s, a.bound) == (1000.0, 1e13, "compute")
    assert a.roofline_share == pytest.approx(0.1)
    assert (b.intensity, b.attainable_flops_per_s, b.bound) == (1.0, 1e12, "memory")
    assert b.roofline_share == pytest.approx(1e-3)
    assert c.attainable_flops_per_s == 5e12 and c.roofline_share == pytest.approx(0.2)
    assert a.static_flops is None and a.flops_ratio is None  # no static node of that id
    # without a device, no roofline
    plain = attribute_counters([k(0, "a", ffma=5e8)], [], None)
    assert plain.device is None and plain.nodes[0].attainable_flops_per_s is None and plain.nodes[0].roofline_share is None
    assert attribute_counters([], [], None).coverage == 0.0


def test_render_counters(kernels, static):
    from rich.console import Console

    rep = attribute_counters(kernels, static, "h200")
    rep.gpu, rep.model, rep.metric_set, rep.metrics = "NVIDIA H200", CountersModel("counters", None), "roofline", list(METRIC_SETS["roofline"])
    buf = StringIO()
    render_counters(rep, Console(file=buf, width=250, color_system=None), top=5)
    out = buf.getvalue()
    for s in ("mlms_ir counters: counters on NVIDIA H200", "/conv/Conv", "/fc/Gemm", "kernels outside every node's range",
              "tensor-core", "% of roof", "90.0% attributed"):
        assert s in out, s


# ---------------------------------------------------------------------------------------------- metrics, ncu, the command
def test_metric_sets_and_resolution():
    roofline = METRIC_SETS["roofline"]
    assert roofline[0] == TIME and len(set(roofline)) == len(roofline)
    for m in (*(x for v in FLOP_METRICS.values() for x in v), TENSOR_INST, DRAM_READ, DRAM_WRITE, SM_PCT,
              "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed", "launch__grid_size", "launch__block_size",
              "launch__registers_per_thread", OCCUPANCY):
        assert m in roofline
    assert set(METRIC_SETS["throughput"]) < set(roofline)
    assert resolve_metrics() == list(roofline)
    assert resolve_metrics("throughput", "lts__t_bytes.sum,dram__bytes_read.sum") == [*METRIC_SETS["throughput"], "lts__t_bytes.sum"]
    assert resolve_metrics(None, ["l1tex__t_bytes.sum"]) == [TIME, "l1tex__t_bytes.sum"]
    assert resolve_metrics("none", "regex:sm__ops_path_tensor_.*") == [TIME, "regex:sm__ops_path_tensor_.*"]
    with pytest.raises(MlmsIrError, match="unknown metric set 'speed'; known sets: roofline, throughput, occupancy"):
        resolve_metrics("speed")
    with pytest.raises(MlmsIrError, match="not an Nsight Compute metric name"):
        resolve_metrics(None, "flops; rm -rf /")


def make_executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_find_ncu(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(NCU_ENV, raising=False)
    monkeypatch.setattr(ncu_cmd, "NCU_PATHS", (str(tmp_path / "cuda" / "bin" / "ncu"),))
    with pytest.raises(CountersUnavailableError, match=r"Nsight Compute's ncu was not found .*install Nsight Compute.*MLMS_IR_NCU"):
        find_ncu()
    mine = make_executable(tmp_path / "my-ncu")
    assert find_ncu(mine) == str(mine)
    with pytest.raises(CountersUnavailableError, match="does not exist or is not executable"):
        find_ncu(tmp_path / "nope")
    monkeypatch.setenv(NCU_ENV, str(tmp_path / "nope"))
    with pytest.raises(CountersUnavailableError, match=r"\$MLMS_IR_NCU names"):
        find_ncu()
    monkeypatch.setenv(NCU_ENV, str(mine))
    assert find_ncu() == str(mine)
    monkeypatch.delenv(NCU_ENV)
    on_path = make_executable(empty / "ncu")
    assert find_ncu() == str(on_path)
    on_path.unlink()
    fixed = make_executable(tmp_path / "ncu-fixed")
    monkeypatch.setattr(ncu_cmd, "NCU_PATHS", (str(fixed),))
    assert find_ncu() == str(fixed)


def test_ncu_command():
    child = [sys.executable, "-m", "mlms_ir.gpu.ncu", "child", "/tmp/spec.json"]
    cmd = ncu_command("/usr/local/cuda/bin/ncu", child, [TIME, DRAM_READ], "/tmp/ncu.csv")
    assert cmd == ["/usr/local/cuda/bin/ncu", "--target-processes", "all", "--nvtx", "--nvtx-include", "mlms_ir.counters/",
                   "--metrics", f"{TIME},{DRAM_READ}", "--replay-mode", "kernel", "--cache-control", "all",
                   "--clock-control", "base", "--csv", "--page", "raw", "--print-units", "base", "--log-file", "/tmp/ncu.csv",
                   *child]
    limited = ncu_command("ncu", child, [TIME], "log.csv", page="details", cache_control="none", clock_control="none",
                          launch_count=50, launch_skip=10, kernel_name="regex:gemm", kernel_id="::regex:conv:2")
    assert limited[limited.index("--page") + 1] == "details"
    assert limited[limited.index("--cache-control") + 1] == "none" and limited[limited.index("--clock-control") + 1] == "none"
    assert limited[limited.index("--launch-count") + 1] == "50" and limited[limited.index("--launch-skip") + 1] == "10"
    assert limited[limited.index("--kernel-name") + 1] == "regex:gemm" and limited[limited.index("--kernel-id") + 1] == "::regex:conv:2"
    assert limited[-len(child):] == child
    assert "--nvtx" not in ncu_command("ncu", child, [TIME], "l.csv", nvtx_range=None)
    for bad in ({"page": "summary"}, {"replay_mode": "magic"}, {"launch_count": 0}):
        with pytest.raises(MlmsIrError):
            ncu_command("ncu", child, [TIME], "l.csv", **bad)


# ---------------------------------------------------------------------------------------------- run_counters on a fake ncu
FAKE_NCU = r'''#!{python}
"""A stand-in for Nsight Compute: records its argv, writes a fixture CSV to --log-file and the
child's result file, or fails the way ncu does ($FAKE_NCU_MODE)."""
import json, os, shutil, sys, time
argv = sys.argv[1:]
mode = os.environ.get("FAKE_NCU_MODE", "ok")
with open(os.environ["FAKE_NCU_ARGV"], "a") as fh:
    fh.write(json.dumps(argv) + "\n")
log = argv[argv.index("--log-file") + 1]
page = argv[argv.index("--page") + 1]
metrics = argv[argv.index("--metrics") + 1].split(",")
spec = json.load(open(argv[-1]))
def result(**kw):
    json.dump({{"gpu": "NVIDIA H200", "torch": "2.11.0", "cuda": "13.0", "cudnn_allow_tf32": True,
                "matmul_allow_tf32": False, "capability": "9.0", **kw}}, open(spec["result"], "w"))
if mode == "hang":
    time.sleep(120)
if mode == "perm":
    open(log, "w").write("==PROF== Connected to process 41 (/usr/bin/python3)\n"
        "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance Counters on "
        "the target device 0. For instructions on enabling permissions and to get more information see "
        "https://developer.nvidia.com/ERR_NVGPUCTRPERM\n==PROF== Disconnected from process 41\n")
    result(ok=True)
    sys.exit(0)
if mode == "missing" and "sm__inst_executed_pipe_tensor.sum" in metrics:
    open(log, "w").write("==PROF== Connected to process 41 (/usr/bin/python3)\n"
        "==ERROR== Failed to find metric regex:^sm__inst_executed_pipe_tensor\\.sum$\n")
    sys.exit(1)
if mode == "child-error":
    result(error="the model's inputs have no dim named 'seq'", type="ShapeBindingError")
    sys.exit(2)
if mode == "crash":
    result()
    print("Traceback (most recent call last):\nRuntimeError: CUDA error: an illegal memory access", file=sys.stderr)
    sys.exit(1)
if mode == "nokernels":
    open(log, "w").write("==PROF== Connected to process 41 (/usr/bin/python3)\n==PROF== Disconnected from process 41\n"
                         "==WARNING== No kernels were profiled.\n")
    result(ok=True)
    sys.exit(0)
if mode == "error":
    open(log, "w").write("==ERROR== Failed to prepare kernel for profiling\n")
    sys.exit(1)
shutil.copy(os.path.join({data!r}, "ncu_details.csv" if page == "details" else "ncu_raw.csv"), log)
print("the child's own output on stdout does not matter")
result(ok=True)
'''


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):
    exe = make_executable(tmp_path / "ncu", FAKE_NCU.format(python=sys.executable, data=str(DATA)))
    argv_log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_NCU_ARGV", str(argv_log))
    monkeypatch.setattr(ncu_run, "check_cuda", lambda: None)  # no GPU here; the fake runs no child
    model = tmp_path / "counters.onnx"
    onnx.save(counters_model(), model)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in argv_log.read_text().splitlines()] if argv_log.exists() else []

    return exe, model, calls


@pytest.mark.parametrize("page", ["raw", "details"])
def test_run_counters_through_a_fake_ncu(fake_ncu, monkeypatch, tmp_path, page):
    exe, model, calls = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "ok")
    work = tmp_path / "work"
    rep = run_counters(model, ncu=str(exe), page=page, workdir=work, launch_count=100, kernel_name="regex:.")
    (argv,) = calls()
    assert argv[argv.index("--launch-count") + 1] == "100" and argv[argv.index("--kernel-name") + 1] == "regex:."
    assert argv[argv.index("--page") + 1] == page
    assert argv[argv.index("--nvtx-include") + 1] == "mlms_ir.counters/" and "--nvtx" in argv
    assert argv[argv.index("--metrics") + 1] == ",".join(METRIC_SETS["roofline"])
    assert argv[-5:-1] == [sys.executable, "-m", "mlms_ir.gpu.ncu", "child"]
    spec = json.loads(Path(argv[-1]).read_text())
    assert spec["model"] == str(model) and spec["range"] == COUNTERS_RANGE and spec["warmup"] == 2
    assert (work / "ncu.csv").is_file() and rep.settings["log_file"] == str(work / "ncu.csv")
    assert rep.gpu == "NVIDIA H200" and rep.device == "h200"  # the device table's entry for the GPU it ran on
    assert [n.id for n in rep.nodes] == ["n0", "n3", "n1"] and rep.nodes[1].flops_ratio == 1.0
    assert rep.coverage == pytest.approx((18.592 - 1.856) / 18.592)
    assert rep.model.name == "counters.onnx" and rep.metric_set == "roofline" and rep.missing_metrics == []
    assert rep.settings["clock_control"] == "base" and rep.settings["cudnn_allow_tf32"] is True
    assert any("--clock-control base" in note for note in rep.notes)
    assert json.loads(rep.to_json())["totals"]["kernels"] == 5


def test_run_counters_drops_a_metric_the_gpu_lacks(fake_ncu, monkeypatch):
    exe, model, calls = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "missing")
    rep = run_counters(model, ncu=str(exe), device="fp32=1e13,bw=1e12")
    assert len(calls()) == 2 and TENSOR_INST not in calls()[1][calls()[1].index("--metrics") + 1].split(",")
    assert rep.missing_metrics == [TENSOR_INST] and TENSOR_INST not in rep.metrics
    assert rep.device == "custom"  # an explicit device wins over the GPU's entry
    assert any(TENSOR_INST in note for note in rep.notes)


@pytest.mark.parametrize("mode, error, match", [
    ("perm", CountersUnavailableError, r"ERR_NVGPUCTRPERM.*NVreg_RestrictProfilingToAdminUsers=0"),
    ("child-error", ShapeBindingError, "no dim named 'seq'"),
    ("crash", CountersUnavailableError, r"the profiled run failed \(ncu exit status 1\).*illegal memory access"),
    ("nokernels", CountersUnavailableError, "ncu profiled no kernel inside the NVTX range 'mlms_ir.counters'"),
    ("error", CountersUnavailableError, "ncu failed: Failed to prepare kernel for profiling"),
])
def test_run_counters_failures_are_one_line_errors(fake_ncu, monkeypatch, mode, error, match):
    exe, model, _ = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", mode)
    with pytest.raises(error, match=match) as info:
        run_counters(model, ncu=str(exe))
    assert "\n" not in str(info.value)


def test_run_counters_times_out_and_kills_ncu(fake_ncu, monkeypatch):
    exe, model, _ = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "hang")
    t0 = time.monotonic()
    with pytest.raises(CountersUnavailableError, match=r"ncu did not finish within 1 s.*launch_count"):
        run_counters(model, ncu=str(exe), timeout=1)
    assert time.monotonic() - t0 < 30


def test_run_counters_without_ncu_or_gpu(fake_ncu, tmp_path, monkeypatch):
    _, model, _ = fake_ncu
    with pytest.raises(CountersUnavailableError, match="does not exist"):
        run_counters(model, ncu=str(tmp_path / "no-ncu"))
    monkeypatch.undo()  # the real check_cuda
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(CountersUnavailableError, match="torch backend on a CUDA GPU"):
        check_cuda()


@pytest.mark.slow
def test_the_child_prints_nothing_on_stdout_and_reports_errors(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: the child would run")
    model = tmp_path / "m.onnx"
    onnx.save(counters_model(), model)
    result = tmp_path / "result.json"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": str(model), "result": str(result), "warmup": 1}))
    proc = subprocess.run([sys.executable, "-m", "mlms_ir.gpu.ncu", "child", str(spec)], capture_output=True, text=True,
                          check=False, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and proc.stdout == ""
    got = json.loads(result.read_text())
    assert got["type"] == "CountersUnavailableError" and "CUDA" in got["error"]
    assert child_entry.main([]) == 2


# ---------------------------------------------------------------------------------------------- docs
def test_docs_describe_every_metric_and_the_error():
    page = (DOCS / "counters.rst").read_text()
    for name, metrics in METRIC_SETS.items():
        assert f"``{name}``" in page, name
        for m in metrics:
            assert m in page, m
    assert "counters" in (DOCS / "index.rst").read_text()
    assert "CountersUnavailableError" in (DOCS / "errors.rst").read_text()


# ---------------------------------------------------------------------------------------------- the CLI
def test_profile_counters_cli(fake_ncu, monkeypatch, tmp_path, capsys):
    """``profile --counters`` runs through ncu ($MLMS_IR_NCU), prints the counters table or JSON,
    and refuses what it cannot do in one plain line."""
    from mlms_ir.cli import main

    exe, model, calls = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "ok")
    monkeypatch.setenv("MLMS_IR_NCU", str(exe))
    work = tmp_path / "keep"
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda", "--counters", "--metric-set", "throughput",
                 "--metrics", "dram__bytes_read.sum", "--roofline", "a100", "--counters-dir", str(work)]) == 0
    out = capsys.readouterr().out
    assert "/conv/C" in out and "roofline       a100" in out and "5 profiled" in out
    (argv,) = calls()
    metrics = argv[argv.index("--metrics") + 1].split(",")
    assert metrics[0] == "gpu__time_duration.sum" and "dram__bytes_read.sum" in metrics
    assert set(METRIC_SETS["throughput"]) <= set(metrics) and (work / "ncu.csv").is_file()
    out_json = tmp_path / "c.json"
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda", "--counters", "--output", str(out_json)]) == 0
    d = json.loads(out_json.read_text())
    assert d["device"] == "h200" and d["totals"]["kernels"] == 5 and {n["id"] for n in d["nodes"]} == {"n0", "n1", "n3"}
    # recorded in the results store (conftest points MLMS_IR_STORE at a temporary file)
    from mlms_ir.store import Store

    with Store(os.environ["MLMS_IR_STORE"]) as st:
        rec = [r for r in st.list(kind="counters")][0]
        assert rec.backend == "torch" and rec.device == "cuda" and rec.summary["kernels"] == 5
        assert rec.summary["gpu"] == "NVIDIA H200" and {n["node_id"] for n in st.nodes(rec.id)} == {"n0", "n1", "n3"}
    capsys.readouterr()
    assert main(["profile", str(model), "--counters"]) == 2
    assert "give --backend torch --device cuda" in capsys.readouterr().err
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda", "--counters", "--trace", "x.json"]) == 2
    assert "cannot be combined with --trace" in capsys.readouterr().err
    monkeypatch.setenv("FAKE_NCU_MODE", "perm")
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda", "--counters"]) == 2
    err = capsys.readouterr().err
    assert "ERR_NVGPUCTRPERM" in err and len(err.strip().splitlines()) == 1


def test_bad_roofline_device_fails_before_ncu_runs(fake_ncu, monkeypatch):
    from mlms_ir.errors import UnknownDeviceError

    exe, model, calls = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "ok")
    with pytest.raises(UnknownDeviceError, match="unknown device 'no-such-gpu'"):
        run_counters(model, ncu=str(exe), device="no-such-gpu")
    with pytest.raises(MlmsIrError, match="cuda_device must be"):
        run_counters(model, ncu=str(exe), cuda_device="gpu1")
    assert calls() == []


def test_counters_cli_passes_the_gpu_and_warmup(fake_ncu, monkeypatch, tmp_path, capsys):
    from mlms_ir.cli import main

    exe, model, calls = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "ok")
    monkeypatch.setenv("MLMS_IR_NCU", str(exe))
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda:1", "--counters", "--warmup", "7",
                 "--format", "json", "--counters-dir", str(tmp_path / "keep")]) == 0
    (argv,) = calls()
    spec = json.loads((tmp_path / "keep" / "spec.json").read_text())
    assert spec["cuda_device"] == "cuda:1" and spec["warmup"] == 7
    capsys.readouterr()
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda", "--counters", "--runs", "3"]) == 2
    assert "cannot be combined with --runs" in capsys.readouterr().err


def test_tensor_pipe_cycles_alone_flag_tensor_core_work(kernels, static):
    """On a GPU that lacks sm__inst_executed_pipe_tensor.sum (Hopper splits the pipe), active
    tensor-pipe cycles still mark the node."""
    import dataclasses

    conv = kernels[1]
    metrics = {k: v for k, v in conv.metrics.items() if k != TENSOR_INST}
    metrics[TENSOR_CYCLES] = 1234.0
    only_cycles = [dataclasses.replace(k, metrics=metrics) if k is conv else k for k in kernels]
    rep = attribute_counters(only_cycles, static, "h200")
    by_id = {n.id: n for n in rep.nodes}
    assert by_id["n0"].tensor_core and not by_id["n0"].tensor_inst and by_id["n0"].tensor_cycles == 1234.0
    assert not by_id["n3"].tensor_core


def test_counters_in_the_html_report(fake_ncu, monkeypatch, tmp_path, capsys):
    """``profile --counters --html`` and ``report --counters``: each node carries its counters,
    the graph can be coloured by the measured/static ratios, the facts name the GPU."""
    from mlms_ir.cli import main
    from mlms_ir.errors import ReportInputError
    from mlms_ir.report.html import build_report_data

    exe, model, calls = fake_ncu
    monkeypatch.setenv("FAKE_NCU_MODE", "ok")
    monkeypatch.setenv("MLMS_IR_NCU", str(exe))
    html = tmp_path / "c.html"
    out_json = tmp_path / "c.json"
    assert main(["profile", str(model), "--backend", "torch", "--device", "cuda", "--counters", "--html", str(html),
                 "--format", "json", "--output", str(out_json)]) == 0
    page = html.read_text()
    assert "measured / static FLOPs (ncu)" in page and "NVIDIA H200" in page
    assert main(["report", str(model), "--counters", str(out_json), "--output", str(tmp_path / "r.html")]) == 0
    assert "measured / static DRAM bytes (ncu)" in (tmp_path / "r.html").read_text()
    rep = json.loads(out_json.read_text())
    graph = mlms_ir.load(str(model))
    data = build_report_data(mlms_ir.analyze(graph), graph, counters=rep)
    conv = next(n for n in data["nodes"] if n["id"] == "n0")
    assert conv["hw"]["kernels"] == 2 and conv["hw"]["tensor_core"] is True and conv["hw_flops_ratio"] == pytest.approx(512 / 14080)
    assert data["counters"]["gpu"] == "NVIDIA H200" and data["measured"] is True
    other = mlms_ir.load(counters_model_other())
    with pytest.raises(ReportInputError, match="counters results are of another model"):
        build_report_data(mlms_ir.analyze(other), other, counters=rep)
    with pytest.raises(ReportInputError, match="not what 'profile --counters --format json' writes"):
        build_report_data(mlms_ir.analyze(graph), graph, counters={"nodes": []})


def counters_model_other() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "other", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
