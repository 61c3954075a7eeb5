"""mlms_ir.gpu.ncu_parse's CSV parser on REAL Nsight Compute output, beside the hand-built fixtures
tests/data/ncu_raw.csv and tests/data/ncu_details.csv that tests/test_ncu.py uses. Every line of
these files is copied verbatim from a CSV committed to a public repository (sources, commits and
what was cut: tests/data/ncu_real_SOURCES.txt); only whole rows were left out:

* ``ncu_real_raw_b200.csv``: ``--csv --page raw`` from a recent ncu on a B200 (CC 10.0): the
  ``==PROF==`` lines, the 475-column header (the requested metrics plus every automatically collected
  ``device__attribute_*``/``launch__*``/``nvlink__*``/``numa__*``/``profiler__*`` column), the units
  row (time in ``ns``, not ``nsecond``), and the first two of its 16 kernel rows; no thousands separators,
  an empty cell, text cells ("NVIDIA B200", "PolicySpread");
* ``ncu_real_details_a100.csv``: ``--csv --print-fp`` (details page, base units) on an A100 (CC 8.0):
  one kernel's rows with the very SIMT FLOP metrics mlms_ir collects, thousands separators
  ("34,359,738,368,000.00");
* ``ncu_real_details_sm120_rules.csv``: details page from ncu 2025.x (CC 12.0) with sections and rules:
  auto-scaled units (``us``, ``Mbyte``), ``n/a`` values, metric rows that end in a trailing comma (16 cells
  under a 20-column header), rule rows with an empty metric name, section labels ("Duration");
* ``ncu_real_details_sm120_stdout.csv``: ``--csv`` to stdout on Windows (CC 12.0): CRLF line ends, the
  program's own output between the ``==PROF==`` lines and the header, ``ns`` with separators ("292,928").

No real CSV with the NVTX columns (``thread Domain:Push/Pop_Range:...``) was found, so attribution to
nodes on real output is not covered here; the hand-built fixtures follow the cell layout that public
parsers of real output quote (``97844  "<default domain>:warmup:none:none:none:none:none:none"``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import pytest

from mlms_ir.gpu import ncu_run
from mlms_ir.gpu.counters_attribution import attribute_counters, kernel_flops
from mlms_ir.gpu.ncu_metrics import (
    BLOCK_SIZE,
    DRAM_READ,
    FLOP_METRICS,
    GRID_SIZE,
    OCCUPANCY,
    REGISTERS,
    SM_PCT,
    THEORETICAL_OCCUPANCY,
    TIME,
    resolve_metrics,
)
from mlms_ir.gpu.ncu_parse import parse_ncu_csv

DATA = Path(__file__).parent / "data"


def _read(name: str) -> str:
    # newline="" keeps the CRLF of the Windows sample, as the log file would have it
    with open(DATA / name, encoding="utf-8", newline="") as fh:
        return fh.read()


# ---------------------------------------------------------------------------------------------- raw page
def test_real_raw_page_b200():
    text = _read("ncu_real_raw_b200.csv")
    ks = parse_ncu_csv(text)
    assert [k.id for k in ks] == [0, 1]
    k = ks[0]
    assert k.process_id == 233787 and k.name.startswith("void flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64")
    assert k.grid == (1, 64, 8) and k.block == (128, 1, 1) and k.cc == "10.0" and k.device == "0" and k.stream == "7"
    # the units row says "ns" (newer ncu), the values have no thousands separators
    assert k.metrics[TIME] == pytest.approx(687488e-9) and k.units[TIME] == "second"
    assert ks[1].metrics[TIME] == pytest.approx(685792e-9)
    assert k.metrics[GRID_SIZE] == 512 and k.metrics[BLOCK_SIZE] == 128 and k.registers == 255
    assert k.units[REGISTERS] == "register/thread"
    assert k.metrics[THEORETICAL_OCCUPANCY] == 12.5 and k.units[THEORETICAL_OCCUPANCY] == "%"
    assert k.metrics["profiler__replayer_bytes_mem_accessible.sum"] == 11928907078 and \
        k.units["profiler__replayer_bytes_mem_accessible.sum"] == "byte"
    # text and empty cells are no numbers
    assert k.metrics["device__attribute_display_name"] is None and k.metrics["launch__func_cache_config"] is None
    assert k.metrics["launch__kernel_name"] is None  # the one empty cell of the row
    assert k.metrics["launch__occupancy_cluster_gpu_pct"] == 0 and k.units["launch__occupancy_cluster_gpu_pct"] == "%"
    # no --nvtx in that run: no NVTX column, no node
    assert k.node is None and k.ranges == []
    # every automatically collected column lands on the kernel unless the metrics are named
    assert len(k.metrics) == 475 - 11
    wanted = [TIME, GRID_SIZE, BLOCK_SIZE, OCCUPANCY, SM_PCT]
    (kept, _) = parse_ncu_csv(text, metrics=wanted)
    assert set(kept.metrics) == {TIME, GRID_SIZE, BLOCK_SIZE, REGISTERS}  # the two % metrics were not collected
    assert kept.registers == 255 and kept.metrics[TIME] == k.metrics[TIME]


def test_real_raw_page_attribution_without_nvtx():
    ks = parse_ncu_csv(_read("ncu_real_raw_b200.csv"), metrics=resolve_metrics())
    rep = attribute_counters(ks, [])
    assert rep.nodes == [] and rep.coverage == 0.0 and len(rep.unattributed) == 2
    assert rep.totals.gpu_time_us == pytest.approx(687.488 + 685.792)
    assert rep.totals.flops is None and rep.totals.dram_bytes is None  # not collected in that run
    json.loads(rep.to_json())


# ---------------------------------------------------------------------------------------------- details page
def test_real_details_page_a100_flops():
    ks = parse_ncu_csv(_read("ncu_real_details_a100.csv"))
    (k,) = ks
    assert k.id == 2 and k.process_id == 1961118 and k.name == "void gemm_v1<float>(float *, float *, float *, int, int, int)"
    assert k.grid == (1280, 1280, 1) and k.block == (32, 32, 1) and k.cc == "8.0"
    ffma = FLOP_METRICS["fp32"][2]
    assert k.metrics[ffma] == 34_359_738_368_000 and k.units[ffma] == "inst"
    assert k.metrics["dram__bytes.sum"] == 807_658_682_624 and k.units["dram__bytes.sum"] == "byte"
    assert k.metrics["smsp__cycles_elapsed.avg.per_second"] == pytest.approx(764_999_999.31)
    assert k.units["smsp__cycles_elapsed.avg.per_second"] == "cycle/second"
    fl = kernel_flops(k)
    assert fl["fp32"] == 2 * 34_359_738_368_000 and fl["fp16"] == 2 * 2_149_161_369_600 and fl["fp64"] == 0
    assert TIME not in k.metrics and k.time_s is None


def test_real_details_page_sections_rules_and_trailing_commas():
    text = _read("ncu_real_details_sm120_rules.csv")
    (k,) = parse_ncu_csv(text)
    assert k.id == 0 and k.process_id == 1740670 and k.cc == "12.0" and k.grid == (224, 1, 1) and k.block == (32, 4, 1)
    assert k.name.startswith("enable_if<!T7, void>::type kernel<int, int, __nv_bfloat16")
    assert k.metrics[TIME] == pytest.approx(6.75e-6) and k.units[TIME] == "second"  # "us"
    assert k.metrics[DRAM_READ] == pytest.approx(2.33e6) and k.units[DRAM_READ] == "byte"  # "Mbyte"
    assert k.metrics["dram__bytes_write.sum"] == 0
    assert k.metrics["flop_count_sp.sum"] is None  # "n/a"
    assert k.metrics[SM_PCT] == 9.15
    # the four rule rows (empty metric name) add nothing; section labels are kept unless filtered
    assert "" not in k.metrics and k.metrics["Duration"] == pytest.approx(6.75e-6)
    (f,) = parse_ncu_csv(text, metrics=[TIME, DRAM_READ, SM_PCT])
    assert set(f.metrics) == {TIME, DRAM_READ, SM_PCT}


def test_real_details_page_program_output_and_crlf():
    text = _read("ncu_real_details_sm120_stdout.csv")
    assert "\r\n" in text and "measuring ceilings" in text
    (k,) = parse_ncu_csv(text)
    assert k.id == 0 and k.process_id == 58960 and k.name == "unnamed>::saxpy_kernel(float, const float *, float *, int)"
    assert k.metrics[TIME] == pytest.approx(292_928e-9) and k.units[TIME] == "second"  # "ns", "292,928"
    assert k.metrics["dram__bytes_op_read.sum"] == 134_221_568 and k.metrics["dram__bytes_op_write.sum"] == 43_631_104
    assert k.metrics[OCCUPANCY] == 83.82 and k.metrics["l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"] == 1_048_576
    assert k.units["l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"] == ""


def test_sources_file_names_every_real_fixture():
    sources = (DATA / "ncu_real_SOURCES.txt").read_text()
    for f in DATA.glob("ncu_real_*.csv"):
        assert f.name in sources


# ---------------------------------------------------------------------------------------------- running ncu
def test_ncu_runs_in_the_c_locale():
    """ncu groups digits by the locale (a Spanish-locale sample printed "2.508.800" bytes)."""
    done = ncu_run.run_ncu([sys.executable, "-c", "import os; print(os.environ['LC_ALL'])"], 30)
    assert done.returncode == 0 and done.stdout.strip() == "C"


FAKE_NCU = r'''#!{python}
"""Stops at the first metric it does not know, one per run, as ncu does."""
import json, os, shutil, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_NCU_ARGV"], "a") as fh:
    fh.write(json.dumps(argv) + "\n")
log = argv[argv.index("--log-file") + 1]
metrics = argv[argv.index("--metrics") + 1].split(",")
spec = json.load(open(argv[-1]))
for bad in ("sm__inst_executed_pipe_tensor.sum", "sm__pipe_tensor_cycles_active.sum"):
    if bad in metrics:
        base = bad.split(".")[0]
        open(log, "w").write("==PROF== Connected to process 41 (/usr/bin/python3)\n"
                             "==ERROR== Failed to find metric regex:^" + base + "\\.sum$\n")
        sys.exit(1)
shutil.copy(os.path.join({data!r}, "ncu_raw.csv"), log)
json.dump({{"gpu": "NVIDIA H200", "ok": True}}, open(spec["result"], "w"))
'''


def test_run_counters_drops_unknown_metrics_one_run_at_a_time(tmp_path, monkeypatch):
    from test_ncu import make_executable, counters_model

    exe = make_executable(tmp_path / "ncu", FAKE_NCU.format(python=sys.executable, data=str(DATA)))
    argv_log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_NCU_ARGV", str(argv_log))
    monkeypatch.setattr(ncu_run, "check_cuda", lambda: None)
    model = tmp_path / "counters.onnx"
    onnx.save(counters_model(), model)
    rep = ncu_run.run_counters(model, ncu=str(exe))
    assert len(argv_log.read_text().splitlines()) == 3
    assert rep.missing_metrics == ["sm__inst_executed_pipe_tensor.sum", "sm__pipe_tensor_cycles_active.sum"]
    assert [n.id for n in rep.nodes] == ["n0", "n3", "n1"]


def test_metric_filter_keeps_expanded_and_regex_metrics():
    text = _read("ncu_real_raw_b200.csv")
    (k, _) = parse_ncu_csv(text, metrics=[TIME, "sm__inst_executed_pipe_tc"])  # a base name ncu expands
    assert {m for m in k.metrics if m.startswith("sm__inst_executed_pipe_tc.")} and TIME in k.metrics
    assert not any(m.startswith("sm__inst_executed_pipe_tma") for m in k.metrics)
    (r, _) = parse_ncu_csv(text, metrics=[TIME, "regex:sm__pipe_.*"])  # a regex: keeps every column
    assert len(r.metrics) == 475 - 11
