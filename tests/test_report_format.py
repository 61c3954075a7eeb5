"""Numbers as a careful engineer writes them (issue #17): three significant digits, SI prefixes up
to E (never ``1.51e+03 TOP/s``), no time finer than 0.01 µs, and a node fused into another's
kernel reads "fused into <node>" instead of a sliver of time and the kernel's FLOP/s. Every
assertion is on the rendered text."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from mlms_ir.report.counters_text import render_counters
from mlms_ir.report.run_text import render_profile, render_runs
from mlms_ir.report.text import clip, human_count, human_time_ms, human_time_us, sig
from mlms_ir.results.base import ModelRef
from mlms_ir.results.profile import NodeTime, ProfileReport
from mlms_ir.results.run import RunRecord, RunReport


def _text(render, *args, **kw) -> str:
    buf = io.StringIO()
    render(*args, console=Console(file=buf, width=200, color_system=None), **kw)
    return buf.getvalue()


@pytest.mark.parametrize(("value", "unit", "text"), [
    (4_089_184_256, "", "4.09 G"),
    (1.51e15, "OP/s", "1.51 POP/s"),  # an int8 peak: was '1.51e+03 TOP/s'
    (1.98e18, "FLOP/s", "1.98 EFLOP/s"),
    (999_600, "", "1 M"),  # rounded before the prefix is chosen: was '1e+03 K'
    (999.6, "", "1 K"),
    (65_536, "", "65.5 K"),
    (640, "", "640"),  # integers below 1000 whole
    (0.5, "", "0.5"),
    (0, "FLOP/s", "0 FLOP/s"),
])
def test_human_count(value, unit, text):
    assert human_count(value, unit) == text


def test_human_count_small_prefixes_none_and_one_helper():
    assert human_count(0.0125, "s", small=True) == "12.5 ms"
    assert human_count(3.4e-7, "s", small=True) == "340 ns"
    assert human_count(None) == "?" and human_count(None, "FLOP/s", none="-") == "-"
    import mlms_ir.report.counters_text as counters_text

    assert not hasattr(counters_text, "_hc")  # counters tables use the one SI helper


@pytest.mark.parametrize(("us", "text"), [
    (0.00341, "< 0.01 µs"),  # noise: a fused ReLU's share of its kernel was '0.00341 µs'
    (0.0241, "0.02 µs"),
    (0.341, "0.34 µs"),
    (6.9758, "6.98 µs"),
    (15.0, "15 µs"),
    (999.6, "1 ms"),  # was '1e+03 µs'
    (1234.5, "1.23 ms"),
    (42_864.2, "42.9 ms"),
    (2.5e6, "2.5 s"),
    (0, "0 µs"),
    (None, "-"),
])
def test_human_time_us(us, text):
    assert human_time_us(us) == text


def test_sig_and_ms():
    assert [sig(v) for v in (0.0123456, 12.5, 204.406, 999.6, 1016.7, 0.9375)] == ["0.0123", "12.5", "204", "1000", "1020", "0.938"]
    assert human_time_ms(0.0163) == "16.3 µs" and human_time_ms(42.864) == "42.9 ms"


def test_clip_cuts_at_a_word_boundary():
    text = "ValueError: the model's input 'image' has unbound dims; bind them with --batch, --dims or --input-shape"
    assert clip(text, 60) == "ValueError: the model's input 'image' has unbound dims…"  # not '...dims; bin'
    assert clip(text, 61) == "ValueError: the model's input 'image' has unbound dims; bind…"
    assert len(clip(text, 60)) <= 60 and clip(text, 200) == text
    assert clip("short  text\non two lines", 60) == "short text on two lines"
    assert clip("x" * 100, 10) == "xxxxxxxxx…"  # one long word: cut inside it, still marked


def _profile() -> ProfileReport:
    # ORT's fused Conv+Relu: one 7 µs kernel split by FLOPs, 592,000 : 2,048 -> 6.976 : 0.024 µs;
    # the Gemm+Relu kernel: 131,072 : 64 FLOPs of 15 µs -> 14.993 : 0.0073 µs
    def node(id_, name, op, t, flops, macs, fused):
        return NodeTime(id=id_, name=name, op_type=op, time_us=t, share=t / 30.0, events=1, macs=macs, flops=flops,
                        achieved_flops_per_s=(flops / (t * 1e-6)) if flops else None, intensity=None, fused_with=fused)
    nodes = [
        node("n8", "/fc1/Gemm", "Gemm", 14.99268, 131_072, 65_536, ["n9"]),
        node("n2", "/conv2/Conv", "Conv", 6.97586, 592_000, 294_912, ["n3"]),
        node("n4", "/pool/MaxPool", "MaxPool", 4.0, 2048, 0, []),
        node("n7", "/flatten/Flatten", "Flatten", 3.0, 0, 0, []),
        node("n3", "/relu2/Relu", "Relu", 0.02414, 2048, 0, ["n2"]),
        node("n9", "/relu/Relu", "Relu", 0.00732, 64, 0, ["n8"]),
    ]
    return ProfileReport(model=ModelRef("digits_cnn.onnx", None), system={}, backend="ort", device="cpu",
                         options={"opt": "all"}, batch=1, runs=5, coverage=0.93, node_time_us=30.0,
                         latency_ms={"mean": 0.018123, "p50": 0.016049, "p99": 0.044, "iterations": 20},
                         traced_wall_ms=0.0562, tracing_overhead=2.509, nodes=nodes, unattributed=[])


def _row(out: str, node_id: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith(node_id + " "))


def test_profile_table_shows_fused_nodes_as_fused_and_three_digit_times():
    out = _text(render_profile, _profile())
    assert "latency (untraced)   mean 18.1 µs, p50 16 µs, p99 44 µs over 20 runs" in out  # was 'mean 0.018 ms'
    assert "median 56.2 µs of 5 runs" in out
    # the kernel's time on the node it was fused into: 14.99268 + 0.00732 = 15 µs, 15/30 = 50%
    assert re.search(r"n8 +/fc1/Gemm +Gemm +15 µs +50\.0% +65\.5 K +131 K +8\.74 G +n9 *$", _row(out, "n8"))
    assert re.search(r"n2 +/conv2/Conv +Conv +7 µs +23\.3% +295 K +592 K +84\.9 G +n3 *$", _row(out, "n2"))
    # the ReLUs: no sliver of time ('0.00732 µs'), no kernel-wide rate ('8.74 G' for a ReLU)
    assert re.search(r"n9 +/relu/Relu +Relu +fused into n8 +- +0 +64 +- *$", _row(out, "n9"))
    assert re.search(r"n3 +/relu2/Relu +Relu +fused into n2 +- +0 +2\.05 K +- *$", _row(out, "n3"))
    assert re.search(r"n7 +/flatten/Flatten +Flatten +3 µs +10\.0% +0 +0 +- *$", _row(out, "n7"))  # no FLOPs: '-', not '?'
    # hosts by their kernel's time, then the fused nodes in their hosts' order
    order = [line.split()[0] for line in out.splitlines() if re.match(r"\s+n\d+ ", line)]
    assert order == ["n8", "n2", "n4", "n7", "n9", "n3"]
    assert "a fused kernel's time and FLOP/s are on the node it was fused into" in out
    assert "e+" not in out and "0.00" not in out


def test_fused_nodes_in_the_html_data():
    from mlms_ir.report.fusion import shown_times

    shown = shown_times(_profile().nodes)
    assert shown["n9"].fused_into == "n8" and shown["n9"].time_us is None and shown["n9"].share is None
    assert shown["n8"].time_us == pytest.approx(15.0) and shown["n8"].share == pytest.approx(0.5)
    assert shown["n4"].time_us == 4.0 and shown["n4"].fused_into is None


def test_a_fused_group_without_flops_is_hosted_by_its_first_node():
    nodes = [NodeTime(id=i, name=i, op_type="Reshape", time_us=2.0, share=0.5, events=1, macs=0, flops=0,
                      achieved_flops_per_s=None, intensity=None, fused_with=[o]) for i, o in (("n12", "n3"), ("n3", "n12"))]
    from mlms_ir.report.fusion import shown_times

    shown = shown_times(nodes)
    assert shown["n12"].fused_into == "n3" and shown["n3"].time_us == 4.0  # n3 before n12 in graph order


def test_run_table_three_significant_digits():
    runs = [RunRecord("ort", "cpu", 1, "ok", latency_ms={"mean": 0.029312, "p50": 0.025, "p90": 0.031, "p99": 0.125, "stdev": 0.028},
                      throughput=33_977.2),
            RunRecord("reference", "cpu", 64, "ok", latency_ms={"mean": 58.0641, "p50": 57.897, "p90": 60.149, "p99": 62.758,
                                                                  "stdev": 1.79}, throughput=1_102.2, max_abs_diff=1.57e-5,
                      compared_with="ort", outputs_agree=True)]
    rep = RunReport(model=ModelRef("m.onnx", None), system={}, settings={"iterations": 100, "warmup": 10, "inputs": "random",
                                                                          "atol": 1e-4, "rtol": 1e-3}, runs=runs)
    out = _text(render_runs, rep)
    assert re.search(r"ort +cpu +1 +0\.0293 +0\.025 +0\.031 +0\.125 +0\.028 +34 K +\(reference\) +ok", out)  # was '33,977.2'
    assert re.search(r"reference +cpu +64 +58\.1 +57\.9 +60\.1 +62\.8 +1\.79 +1\.1 K +1\.57e-05 +ok", out)  # was '58.064'


def test_counters_rates_read_with_prefixes():
    from mlms_ir.results.counters import CounterFigures, CountersModel, CountersReport

    totals = CounterFigures(kernels=3, gpu_time_us=1234.5, flops=2.5e12, static_flops=2_400_000_000_000, flops_ratio=1.0416666,
                            dram_bytes=3e9, static_bytes=2_000_000_000, bytes_ratio=1.5, achieved_flops_per_s=1.51e15,
                            sm_pct=80.0, memory_pct=40.0)
    rep = CountersReport(nodes=[], totals=totals, coverage=1.0, unattributed=[], kernels=[], device="h100", gpu="H100",
                         peak_flops_per_s=1.979e15, peak_kind="fp16 tensor", bandwidth_bytes_per_s=3.35e12, ridge_intensity=590.7,
                         model=CountersModel(name="m", path=None), metric_set="roofline")
    out = _text(render_counters, rep)
    assert "1.51 PFLOP/s; SM 80.0 %" in out and "h100: 1.98 PFLOP/s (fp16 tensor), 3.35 TB/s, ridge 591 FLOP/B" in out
    assert "2.5 T measured, 2.4 T static (ratio 1.04)" in out and "1.23 ms GPU time" in out


def test_piped_tables_keep_their_width():
    """A verb's table written to a pipe is not cut to 80 columns (``default_console``)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["MLMS_IR_STORE"] = "none"
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "analyze", "--batch", "1"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) > 100
    assert re.search(r"n0 +/features/conv1/Conv +Conv +1x16x8x8 ", r.stdout), r.stdout  # names whole, not '/features/c…'


def test_devices_table_reads_peta_ops():
    env = {**os.environ, "MLMS_IR_STORE": "none", "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "devices"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert re.search(r"│ h100-pcie +│ NVIDIA H100 PCIe 80GB +│ 51 TFLOP/s +│ 756 TFLOP/s +│ 1\.51 POP/s +│ 2 TB/s +│", r.stdout), r.stdout
    assert "e+" not in r.stdout


def test_formulas_use_the_same_prefixes():
    from mlms_ir.report.formula import pretty

    # seconds below 1 with m..f (was '1e+03 µs·batch' for 0.0009996), counts rounded before the prefix
    assert pretty("0.0009996*batch + 3.2e-12*batch*seq**2", "seconds") == "3.2 ps·batch·seq² + 1 ms·batch"
    assert pretty("999600*batch", "count") == "1 M·batch"
