"""Host and GPU facts (mlms_ir.system): run without a GPU, NVML faked where needed."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import subprocess
import sys
import threading
import time
import types
from types import SimpleNamespace

import pytest

from mlms_ir import system
from mlms_ir.system import SAMPLE_METRICS, GpuSampler, cpu_facts, gpu_count, gpu_facts, normalize_arch


@pytest.fixture(autouse=True)
def _fresh_gpu_count():
    gpu_count.cache_clear()
    yield
    gpu_count.cache_clear()


# ------------------------------------------------------------------------------------- fake NVML


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's spelling
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    pass


GPUS = [
    dict(name="NVIDIA H200", uuid="GPU-0000", cc=(9, 0), total=150_000_000_000, used=1_000_000, sm_max=1980,
         mem_max=3201, limit_mw=700_000, util=(37, 12), power_mw=123_456, sm=1755, temp=41),
    dict(name=b"NVIDIA A100-SXM4-80GB", uuid=b"GPU-1111", cc=(8, 0), total=85_000_000_000, used=2_000_000,
         sm_max=1410, mem_max=1593, limit_mw=None, util=(0, 0), power_mw=None, sm=210, temp=30),
]


def make_fake_pynvml(gpus=GPUS, init_error: Exception | None = None) -> types.ModuleType:
    """A pynvml stand-in: fixed values per GPU; a None value raises NVMLError_NotSupported."""
    m = types.ModuleType("pynvml")
    m.NVMLError, m.NVMLError_LibraryNotFound, m.NVMLError_NotSupported = NVMLError, NVMLError_LibraryNotFound, NVMLError_NotSupported
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM, m.NVML_TEMPERATURE_GPU = 1, 2, 0
    m.calls = {"init": 0, "shutdown": 0}

    def value(v):
        if v is None:
            raise NVMLError_NotSupported("Not Supported")
        return v

    def nvmlInit():
        if init_error is not None:
            raise init_error
        m.calls["init"] += 1

    def nvmlShutdown():
        m.calls["shutdown"] += 1

    def max_clock(h, kind):
        return gpus[h]["sm_max"] if kind == m.NVML_CLOCK_SM else gpus[h]["mem_max"]

    m.nvmlInit, m.nvmlShutdown = nvmlInit, nvmlShutdown
    m.nvmlSystemGetDriverVersion = lambda: b"560.35.03"
    m.nvmlSystemGetNVMLVersion = lambda: "12.560.35.03"
    m.nvmlSystemGetCudaDriverVersion_v2 = lambda: 12060
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: gpus[h]["name"]
    m.nvmlDeviceGetUUID = lambda h: gpus[h]["uuid"]
    m.nvmlDeviceGetCudaComputeCapability = lambda h: gpus[h]["cc"]
    m.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(total=gpus[h]["total"], used=gpus[h]["used"], free=0)
    m.nvmlDeviceGetMaxClockInfo = max_clock
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: value(gpus[h]["limit_mw"])
    m.nvmlDeviceGetPowerManagementLimit = lambda h: value(gpus[h]["limit_mw"])
    m.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=gpus[h]["util"][0], memory=gpus[h]["util"][1])
    m.nvmlDeviceGetPowerUsage = lambda h: value(gpus[h]["power_mw"])
    m.nvmlDeviceGetClockInfo = lambda h, kind: gpus[h]["sm"] if kind == m.NVML_CLOCK_SM else gpus[h].get("mem", 3201)
    m.nvmlDeviceGetTemperature = lambda h, kind: gpus[h]["temp"]
    return m


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = make_fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


# ------------------------------------------------------------------------------------------ host


def test_cpu_facts_keys_and_types():
    cpu = cpu_facts()
    assert set(cpu) == {"model", "architecture", "machine", "logical_cores", "usable_cores", "memory_total_bytes"}
    assert isinstance(cpu["model"], str) and cpu["model"]
    assert cpu["architecture"] == normalize_arch(platform.machine())
    assert isinstance(cpu["logical_cores"], int) and cpu["logical_cores"] >= 1
    assert isinstance(cpu["usable_cores"], int) and 1 <= cpu["usable_cores"] <= cpu["logical_cores"]
    assert isinstance(cpu["memory_total_bytes"], int) and cpu["memory_total_bytes"] > 2**20


@pytest.mark.parametrize(
    "machine, arch",
    [("AMD64", "x86-64"), ("x86_64", "x86-64"), ("arm64", "aarch64"), ("aarch64", "aarch64"), ("ppc64le", "ppc64le"),
     ("riscv64", "riscv64")],
)
def test_architecture_is_normalised(monkeypatch, machine, arch):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert normalize_arch() == arch
    facts = cpu_facts()
    assert facts["architecture"] == arch and facts["machine"] == machine


@pytest.mark.parametrize(
    "text, model",
    [
        ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\n", "AMD EPYC 9654"),
        ("processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n", "POWER9 (raw), altivec supported"),
        ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n", ""),
    ],
)
def test_cpu_model_from_cpuinfo(text, model):
    assert system._cpu_model_from_cpuinfo(text) == model


def test_software_facts_lists_installed_packages_without_importing_them():
    sw = system.software_facts()
    assert {"os", "system", "release", "python_version", "python_implementation", "packages"} <= set(sw)
    assert sw["python_version"] == platform.python_version()
    assert sw["python_implementation"] == platform.python_implementation()
    for dist in ("numpy", "onnx", "onnxruntime"):
        assert sw["packages"][dist] == importlib.metadata.version(dist)
    assert sw["packages"]["mlms-ir"] == importlib.metadata.version("mlms_ir")
    assert all(isinstance(v, str) for v in sw["packages"].values())
    assert "pytest" not in sw["packages"]  # only the packages of interest


def test_system_facts_is_json_with_a_utc_timestamp(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    facts = system.system_facts()
    assert set(facts) == {"host", "timestamp", "cpu", "software", "gpu"}
    assert facts["host"] == platform.node()
    stamp = dt.datetime.fromisoformat(facts["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 60
    assert json.loads(json.dumps(facts)) == facts


def test_import_loads_no_gpu_or_framework_module():
    code = (
        "import sys, mlms_ir.system as s; heavy = ('pynvml', 'torch', 'cupy', 'tensorflow', 'tensorrt', 'mxnet');"
        "print(sorted(m for m in heavy if m in sys.modules));"
        "s.cpu_facts(); s.software_facts();"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "[]"]


# --------------------------------------------------------------------------------------- no GPU


def _assert_no_gpu(reason_part: str):
    facts = gpu_facts()
    assert facts["available"] is False and facts["gpus"] == []
    assert reason_part in facts["reason"]
    assert gpu_count() == 0
    with GpuSampler(interval_s=0.01) as sampler:
        assert sampler._thread is None
    assert sampler.samples == []
    summary = sampler.summary()
    assert summary["available"] is False and reason_part in summary["reason"]


def test_no_pynvml_means_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    _assert_no_gpu("nvidia-ml-py")


@pytest.mark.parametrize(
    "error", [NVMLError_LibraryNotFound("NVML Shared Library Not Found"), NVMLError("Driver Not Loaded"), RuntimeError("odd")]
)
def test_nvml_init_failure_means_no_gpu(monkeypatch, error):
    fake = make_fake_pynvml(init_error=error)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    _assert_no_gpu(str(error))
    assert fake.calls == {"init": 0, "shutdown": 0}


def test_nvml_without_devices(monkeypatch):
    fake = make_fake_pynvml(gpus=[])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    facts = gpu_facts()
    assert facts["available"] is False and facts["reason"] == "NVML found no GPU"
    assert facts["driver"] == "560.35.03"
    _assert_no_gpu("no GPU")
    assert fake.calls["init"] == fake.calls["shutdown"]


# ------------------------------------------------------------------------------------ fake GPUs


def test_gpu_facts_with_two_fake_gpus(fake_nvml):
    facts = gpu_facts()
    assert facts["available"] is True and facts["reason"] == ""
    assert facts["driver"] == "560.35.03" and facts["cuda_driver_version"] == "12.6"
    assert facts["nvml_version"] == "12.560.35.03"
    assert facts["gpus"] == [
        {"index": 0, "name": "NVIDIA H200", "uuid": "GPU-0000", "compute_capability": "9.0",
         "memory_total_bytes": 150_000_000_000, "sm_clock_max_mhz": 1980, "mem_clock_max_mhz": 3201,
         "power_limit_w": 700.0},
        {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-1111", "compute_capability": "8.0",
         "memory_total_bytes": 85_000_000_000, "sm_clock_max_mhz": 1410, "mem_clock_max_mhz": 1593,
         "power_limit_w": None},  # NotSupported becomes None
    ]
    assert fake_nvml.calls == {"init": 1, "shutdown": 1}
    json.dumps(facts)


def test_missing_nvml_function_becomes_none(fake_nvml, monkeypatch):
    monkeypatch.delattr(fake_nvml, "nvmlSystemGetCudaDriverVersion_v2")
    monkeypatch.delattr(fake_nvml, "nvmlDeviceGetCudaComputeCapability")
    facts = gpu_facts()
    assert facts["cuda_driver_version"] is None
    assert [g["compute_capability"] for g in facts["gpus"]] == [None, None]
    assert facts["gpus"][0]["name"] == "NVIDIA H200"


def test_gpu_count_is_cached(fake_nvml):
    assert gpu_count() == 2
    assert gpu_count() == 2
    assert fake_nvml.calls == {"init": 1, "shutdown": 1}


def test_sampler_collects_and_summarises(fake_nvml):
    with GpuSampler(interval_s=0.01) as sampler:
        assert sampler._thread is not None and sampler._thread.daemon
        time.sleep(0.05)
    assert sampler._thread is None
    assert fake_nvml.calls == {"init": 1, "shutdown": 1}
    assert not any(t.name == "mlms_ir-gpu-sampler" for t in threading.enumerate())
    by_gpu = {i: [s for s in sampler.samples if s["index"] == i] for i in (0, 1)}
    assert all(len(v) >= 1 for v in by_gpu.values())
    assert set(sampler.samples[0]) == {"t_s", "index", *SAMPLE_METRICS}
    summary = sampler.summary()
    assert summary["available"] is True and summary["interval_s"] == 0.01 and summary["duration_s"] >= 0.05
    g0, g1 = summary["gpus"]
    assert (g0["index"], g0["samples"], g1["index"], g1["samples"]) == (0, len(by_gpu[0]), 1, len(by_gpu[1]))

    def const(v):
        return {"min": v, "mean": v, "max": v}

    assert g0["memory_used_bytes"] == const(1_000_000)
    assert g0["gpu_utilization_pct"] == const(37) and g0["memory_utilization_pct"] == const(12)
    assert g0["power_w"] == pytest.approx(const(123.456))
    assert g0["sm_clock_mhz"] == const(1755) and g0["temperature_c"] == const(41)
    assert g0["mem_clock_mhz"] == const(3201)
    assert g1["memory_used_bytes"] == const(2_000_000) and g1["sm_clock_mhz"] == const(210)
    assert g1["power_w"] is None  # NotSupported on every sample
    assert [e for e in summary["errors"] if "power" in e] == ["GPU 1 power: NVMLError_NotSupported: Not Supported"]
    json.dumps(summary)


def test_sampler_min_mean_max_over_varying_values(monkeypatch):
    readings = iter(range(10_000))
    gpus = [dict(GPUS[0])]
    fake = make_fake_pynvml(gpus=gpus)
    fake.nvmlDeviceGetTemperature = lambda h, kind: next(readings)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with GpuSampler(interval_s=0.005) as sampler:
        deadline = time.perf_counter() + 1.0
        while len(sampler.samples) < 3 and time.perf_counter() < deadline:
            time.sleep(0.005)
    temps = [s["temperature_c"] for s in sampler.samples]
    assert temps == list(range(len(temps))) and len(temps) >= 2
    stats = sampler.summary()["gpus"][0]["temperature_c"]
    assert stats == {"min": 0, "mean": pytest.approx(sum(temps) / len(temps)), "max": len(temps) - 1}


def test_sampler_records_errors_and_never_raises(fake_nvml, monkeypatch):
    def broken(h):
        raise RuntimeError("boom")

    monkeypatch.setattr(fake_nvml, "nvmlDeviceGetUtilizationRates", broken)
    with GpuSampler(interval_s=0.005) as sampler:
        time.sleep(0.03)
    summary = sampler.summary()
    assert summary["gpus"][0]["gpu_utilization_pct"] is None
    assert summary["gpus"][0]["temperature_c"] == {"min": 41, "mean": 41, "max": 41}
    assert "GPU 0 utilization: RuntimeError: boom" in summary["errors"]
    assert len([e for e in summary["errors"] if "boom" in e]) == 2  # once per GPU, not per sample


def test_sampler_stops_promptly_and_samples_once(fake_nvml):
    t0 = time.perf_counter()
    with GpuSampler(interval_s=10.0, indices=[1]) as sampler:
        pass
    assert time.perf_counter() - t0 < 0.5
    assert [s["index"] for s in sampler.samples] == [1]
    assert [g["index"] for g in sampler.summary()["gpus"]] == [1]


def test_sampler_does_not_swallow_the_blocks_exception(fake_nvml):
    with pytest.raises(ValueError):
        with GpuSampler(interval_s=0.005) as sampler:
            raise ValueError("from the benchmark")
    assert sampler._thread is None and fake_nvml.calls == {"init": 1, "shutdown": 1}


def test_sampler_summary_before_start():
    assert GpuSampler().summary() == {"available": False, "reason": "GpuSampler has not been started"}
