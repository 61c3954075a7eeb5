"""tools/gpu_check.py, the script for the rare GPU machine, driven here without a GPU: its torch
backend swapped for the replay of the recorded CUDA trace (tests/cuda_replay.py), its model export
for the small Conv -> Relu -> Gemm model, NVML's telemetry and facts faked, and ncu for the fake
of tests/test_ncu.py. Every field its printing reads is read here, so a slip in one shows up now
rather than on the GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from cuda_replay import ReplayBackend, conv_relu_gemm, recorded_traces
from mlms_ir.backends import registry
from test_ncu import DATA, FAKE_NCU, make_executable

from mlms_ir.gpu import ncu_run
from mlms_ir.gpu.ncu_command import NCU_ENV

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _figs(v: float) -> dict:
    return {"min": v, "mean": v, "max": v}


def _telemetry(index: int, sm: float) -> dict:
    return {"index": index, "samples": 4, "sm_clock_mhz": _figs(sm), "mem_clock_mhz": _figs(3201), "power_w": _figs(650),
            "temperature_c": _figs(40), "gpu_utilization_pct": _figs(90), "memory_used_bytes": _figs(2**30),
            "memory_utilization_pct": None}


NO_NVML = {"available": False, "reason": "NVML is unavailable: no driver"}


def _fake_sampler(summary: dict):
    class FakeSampler:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def summary(self):
            return summary

    return FakeSampler


@pytest.fixture
def replay(gc, monkeypatch, tmp_path):
    """The script's backend replays the recorded CUDA trace; NVML is faked (no GPU by default)."""
    from mlms_ir import system

    monkeypatch.setitem(registry._cache, "replay", ReplayBackend(recorded_traces()))
    monkeypatch.setattr(gc, "BACKEND", "replay")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(system, "gpu_facts", lambda: {"available": False, "reason": "no NVML", "gpus": []})
    monkeypatch.setattr(system, "GpuSampler", _fake_sampler(NO_NVML))
    path = tmp_path / "crg.onnx"
    onnx.save(conv_relu_gemm(), path)
    return path


@pytest.fixture
def fake_ncu(monkeypatch, tmp_path):
    exe = make_executable(tmp_path / "ncu", FAKE_NCU.format(python=sys.executable, data=str(DATA)))
    monkeypatch.setenv("FAKE_NCU_ARGV", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("FAKE_NCU_MODE", "ok")
    monkeypatch.setenv(NCU_ENV, str(exe))
    monkeypatch.setattr(ncu_run, "check_cuda", lambda: None)  # no GPU here; the fake runs no child
    return exe


def _args(**kw) -> SimpleNamespace:
    return SimpleNamespace(**{"iters": 3, "runs": 2, "metric_set": "roofline", "ncu_timeout": 60.0, "top_counters": 5,
                              "json": None, **kw})


def _line(out: str, pattern: str) -> str:
    found = [ln for ln in out.splitlines() if re.search(pattern, ln)]
    assert len(found) == 1, (pattern, out)
    return found[0]


def _empty() -> dict:
    return {"system": {}, "models": {}, "counters": {}}


# ---------------------------------------------------------------------------------------------- profile
def test_profile_one_prints_the_cuda_execution_profile(gc, replay, tmp_path, capsys):
    results = _empty()
    gc.profile_one(replay, "crg", 1, _args(), tmp_path, results)
    out = capsys.readouterr().out
    assert "FAILED" not in out and "Traceback" not in out
    assert re.search(r"batch 1: mean \d+\.\d{3} ms, p50 \d+\.\d{3}, p99 \d+\.\d{3}; [\d,]+ images/s", out)
    assert re.search(r"batch 1: profiled in \d+\.\d s; roofline device None", out)
    assert "kernel attribution coverage 78.50% (goal >= 98%); 7 kernels/run on 1 stream(s)" in out
    assert re.search(r"traced run median 0\.400 ms vs untraced p50 \d+\.\d{3} ms \(profiling overhead [+-]\d", out)
    # 20 us of work in 232.4 us to the last kernel's end, 400 us of wall; launch->start: mean of 7 launches
    assert ("GPU busy 20.0 µs, idle 212.4 µs, utilisation 5.0% of the traced run, memcpy/memset 3.0 µs, "
            "launch->start 8.2 µs") in out
    assert "NVML: NVML is unavailable: no driver" in out
    conv = _line(out, r"^\s+n0 Conv ")
    assert "10.7 µs GPU" in conv and "  2 kernels" in conv and "host 60.0 µs" in conv
    assert "launch overhead 49.3 µs" in conv and "idle before 41.2 µs" in conv and "TFLOP/s  /conv/Conv" in conv
    assert "  1 kernels" in _line(out, r"^\s+n2 Flatten ")  # the trace's n2 (here the Flatten) got the gemm kernel
    kernels = [ln for ln in out.splitlines() if " grid " in ln]
    assert len(kernels) == 4  # n0's two, n1's and n2's
    assert re.search(r"^\s+8\.5 µs grid \[4, 1, 1\] block \[384, 1, 1\] regs 168 smem 196608 occ 1%  sm90_xmma_fprop", kernels[0])
    assert "unattributed: " in out
    # the trace, written and named after the graph
    trace = tmp_path / "crg_b1_trace.json"
    assert re.search(r"wrote crg_b1_trace\.json \(\d+\.\d MiB\)", out)
    evs = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("cat") == "kernel" and e["name"] == "/conv/Conv" for e in evs)
    entry = results["models"]["crg"]["1"]
    assert entry["run"]["status"] == "ok" and entry["run"]["backend"] == "replay"
    assert entry["profile"]["gpu"]["kernels"] == 7 and entry["profile"]["coverage"] == pytest.approx(0.785)
    json.dumps(results, default=str)


def test_profile_one_shows_the_telemetry_of_the_gpu_that_ran(gc, replay, monkeypatch, capsys):
    """NVML lists GPU 1 first; the run was on GPU 0 (the only one with its name): its figures are shown."""
    from mlms_ir import system

    monkeypatch.setattr(system, "gpu_facts", lambda: {"available": True, "gpus": [{"index": 0, "name": "NVIDIA H200"},
                                                                                  {"index": 1, "name": "NVIDIA A100-SXM4-80GB"}]})
    tele = {"available": True, "reason": "", "gpus": [_telemetry(1, 1410), _telemetry(0, 1980)]}
    monkeypatch.setattr(system, "GpuSampler", _fake_sampler(tele))
    gc.profile_one(replay, "crg", 1, _args(), None, _empty())
    out = capsys.readouterr().out
    assert "roofline device h200" in out
    nvml = _line(out, "NVML")
    assert nvml.strip().startswith("NVML GPU 0 over the timed runs (mean): ")
    figs = json.loads(nvml.split("(mean): ", 1)[1])
    assert figs == {"sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "power_w": 650, "temperature_c": 40,
                    "gpu_utilization_pct": 90, "memory_used_bytes": 2**30}
    assert "wrote" not in out  # no --out, no trace


def test_profile_one_with_no_way_to_tell_the_gpu(gc, replay, monkeypatch, capsys):
    from mlms_ir import system

    monkeypatch.setattr(system, "gpu_facts", lambda: {"available": True, "gpus": [{"index": 0, "name": "NVIDIA H200"},
                                                                                  {"index": 1, "name": "NVIDIA H200"}]})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(system, "GpuSampler", _fake_sampler({"available": True, "reason": "", "gpus": [_telemetry(0, 1), _telemetry(1, 2)]}))
    gc.profile_one(replay, "crg", 1, _args(), None, _empty())
    assert "NVML: 2 GPUs sampled; which one ran this is unknown" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- counters
def test_counters_one_prints_totals_and_nodes(gc, replay, fake_ncu, tmp_path, capsys):
    results = _empty()
    gc.counters_one(replay, "crg", 1, _args(top_counters=2), tmp_path, results)
    out = capsys.readouterr().out
    assert re.search(r"counters batch 1 \(\d+ s under ncu on NVIDIA H200, roofline h200\): 5 kernels, coverage 90\.02%; "
                     r"missing metrics none", out)
    totals = _line(out, "totals: ")
    assert "SIMT FLOPs 5642 vs static " in totals and "tensor-core inst 432;" in totals
    assert "DRAM 1.91e+04 B vs static " in totals and "(ratio " in totals and "SM " in totals and "memory " in totals
    assert "None" not in totals
    conv, gemm = _line(out, r"^\s+n0 Conv "), _line(out, r"^\s+n3 Gemm ")
    assert "10.7 µs" in conv and "TC True" in conv and "FLOPs " in conv and "of attainable " in conv
    assert "4.1 µs" in gemm and "TC False" in gemm
    assert not re.search(r"^\s+n1 Relu ", out, re.MULTILINE)  # --top-counters 2
    assert "note: " in out
    assert (tmp_path / "crg_b1_ncu" / "ncu.csv").is_file()
    rep = results["counters"]["crg"]["1"]
    assert rep["totals"]["kernels"] == 5 and rep["gpu"] == "NVIDIA H200" and [n["id"] for n in rep["nodes"]] == ["n0", "n3", "n1"]


def test_counters_one_reports_ncu_refusing(gc, replay, fake_ncu, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NCU_MODE", "perm")
    results = _empty()
    gc.counters_one(replay, "crg", 1, _args(), None, results)
    out = capsys.readouterr().out
    assert "counters batch 1: unavailable: " in out and "ERR_NVGPUCTRPERM" in out
    assert "ERR_NVGPUCTRPERM" in results["counters"]["crg"]["1"]["error"]


# ---------------------------------------------------------------------------------------------- main
def test_main_end_to_end(gc, replay, fake_ncu, monkeypatch, tmp_path, capsys):
    def export(name: str, out: Path) -> Path:
        if name == "broken":
            raise RuntimeError("no such model")
        path = out / f"{name}.onnx"
        onnx.save(conv_relu_gemm(), path)
        return path

    facts = {"host": "h", "gpu": {"available": True, "reason": "", "driver": "580.1",
                                  "gpus": [{"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0",
                                            "memory_total_bytes": 150 * 2**30, "sm_clock_max_mhz": 1980, "power_limit_w": 700.0},
                                           # NVML could not read these
                                           {"index": 1, "name": None, "compute_capability": None, "memory_total_bytes": None,
                                            "sm_clock_max_mhz": None, "power_limit_w": None}]}}
    monkeypatch.setattr(gc, "export", export)
    monkeypatch.setattr(gc, "system_facts", lambda: facts)
    out_dir, js = tmp_path / "out", tmp_path / "r.json"
    assert gc.main(["--models", "crg,broken", "--batches", "1,2", "--iters", "3", "--runs", "2", "--counters-batches", "1",
                    "--top-counters", "3", "--json", str(js), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "GPU: True" in out
    assert "GPU 0: NVIDIA H200, CC 9.0, 150 GiB, SM max 1980 MHz, power limit 700.0 W; driver 580.1" in out
    assert "GPU 1: None, CC None, - GiB" in out
    assert f"ncu: {fake_ncu}" in out
    assert re.search(r"== crg: exported in \d+\.\d s", out)
    assert "kernel attribution coverage 78.50%" in out and "wrote crg_b1_trace.json" in out
    assert "batch 2: FAILED ShapeBindingError: " in out  # the model's batch is fixed: said, and the rest goes on
    assert "counters batch 1 (" in out and _line(out, "totals: ")
    assert "== broken: export FAILED RuntimeError: no such model" in out
    assert (out_dir / "crg_b1_trace.json").is_file() and (out_dir / "crg_b1_ncu" / "ncu.csv").is_file()
    d = json.loads(js.read_text())
    assert set(d) == {"system", "models", "counters"} and d["system"]["host"] == "h"
    assert set(d["models"]) == {"crg", "broken"} and "no such model" in d["models"]["broken"]["error"]
    assert set(d["models"]["crg"]) == {"1", "2"} and "ShapeBindingError" in d["models"]["crg"]["2"]["error"]
    b1 = d["models"]["crg"]["1"]
    assert set(b1) == {"run", "profile"} and b1["run"]["status"] == "ok" and b1["run"]["latency_ms"]["p50"] >= 0
    prof = b1["profile"]
    assert prof["gpu"]["busy_us"] == pytest.approx(20.0) and prof["nodes"][0]["kernel_count"] is not None
    assert {"coverage", "traced_wall_ms", "tracing_overhead", "nodes", "unattributed"} <= set(prof)
    c = d["counters"]["crg"]["1"]
    assert c["totals"]["kernels"] == 5 and c["device"] == "h200" and c["nodes"][0]["id"] == "n0"


def test_main_without_ncu_or_counters(gc, replay, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(NCU_ENV, str(tmp_path / "no-ncu"))
    monkeypatch.setattr(gc, "export", lambda name, out: (onnx.save(conv_relu_gemm(), out / "m.onnx"), out / "m.onnx")[1])
    monkeypatch.setattr(gc, "system_facts", lambda: {"gpu": {"available": False, "reason": "no NVML", "gpus": []}})
    assert gc.main(["--models", "crg", "--batches", "1", "--iters", "2", "--runs", "1", "--counters-batches", ""]) == 0
    out = capsys.readouterr().out
    assert "GPU: False no NVML" in out and "ncu: $MLMS_IR_NCU names" in out
    assert "kernel attribution coverage" in out and "counters batch" not in out


def test_help_runs_as_a_script():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120, check=False,
                          cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "--counters-batches" in proc.stdout and "GPU checks" in proc.stdout
