"""Host and GPU facts recorded with every benchmark result (MLModelScope style).

A benchmark number means little without the machine that produced it. This module gathers:

* :func:`cpu_facts`: CPU model, normalised architecture, logical and usable cores, physical memory;
* :func:`software_facts`: OS, Python, and the versions of the ML packages that are installed
  (read from package metadata, never by importing them);
* :func:`gpu_facts` / :func:`gpu_count`: GPUs seen through NVML (``pynvml``, from the
  ``nvidia-ml-py`` package), imported lazily; without it, a driver or a GPU they report
  ``available: False`` with the reason and never raise;
* :func:`system_facts`: all of the above, plus the host name and an ISO 8601 UTC timestamp;
* :class:`GpuSampler`: a context manager sampling GPU memory, utilisation, power, SM clock and
  temperature in a daemon thread while a benchmark runs.

Importing this module loads nothing beyond the standard library and :mod:`mlms_ir` itself.

Example::

    from mlms_ir.system import GpuSampler, system_facts

    facts = system_facts()
    with GpuSampler(interval_s=0.05) as sampler:
        run_benchmark()
    print(sampler.summary())

NVML counts every GPU of the host: it ignores ``CUDA_VISIBLE_DEVICES`` (recorded in
:func:`gpu_facts` for that reason).
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata as _metadata
import os
import platform
import re
import subprocess
import threading
import time
from types import ModuleType
from typing import Any, Callable, Sequence

from mlms_ir._lazy import lazy_import
from mlms_ir.errors import MissingExtraError

__all__ = [
    "SAMPLE_METRICS",
    "GpuSampler",
    "cpu_facts",
    "gpu_count",
    "gpu_facts",
    "normalize_arch",
    "software_facts",
    "system_facts",
]

# --------------------------------------------------------------------------------------------- CPU

_ARCH_ALIASES: dict[str, str] = {
    "x86_64": "x86-64",
    "x86-64": "x86-64",
    "amd64": "x86-64",
    "x64": "x86-64",
    "em64t": "x86-64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "aarch64_be": "aarch64",
    "ppc64le": "ppc64le",
    "powerpc64le": "ppc64le",
}


def normalize_arch(machine: str | None = None) -> str:
    """Normalise a machine name to ``x86-64``, ``aarch64`` or ``ppc64le``.

    ``machine`` defaults to :func:`platform.machine`. ``AMD64``/``x86_64`` give ``x86-64``,
    ``arm64``/``aarch64`` give ``aarch64``, ``ppc64le`` stays; any other name is returned as is.
    """
    if machine is None:
        machine = platform.machine()
    return _ARCH_ALIASES.get(machine.strip().lower(), machine)


def _run(cmd: Sequence[str]) -> str:
    """Run a short command and return its stripped stdout, or ``""`` on any failure."""
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _cpu_model_from_cpuinfo(text: str) -> str:
    """The CPU model in a /proc/cpuinfo text: ``model name`` (x86, some Arm), ``cpu`` (POWER), ...."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "cpu model", "cpu", "hardware", "processor"):
        value = fields.get(key, "")
        # "processor" is the CPU's index on x86 ("0"), a name on old Arm kernels
        if value and not value.isdigit():
            return value
    return ""


def _cpu_model() -> str:
    """The CPU model name, from /proc/cpuinfo, sysctl, lscpu or :func:`platform.processor`."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = _cpu_model_from_cpuinfo(f.read())
    except OSError:
        pass
    system = platform.system()
    if not model and system == "Darwin":
        model = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
    if not model and system == "Linux":
        for line in _run(["lscpu"]).splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name" and value.strip() not in ("", "-"):
                model = value.strip()
                break
    if not model:
        try:
            model = platform.processor()
        except Exception:  # noqa: BLE001 - a fact we cannot read is not an error
            model = ""
    return model or platform.machine() or "unknown"


def _usable_cores() -> int | None:
    """The cores this process may run on (its affinity mask), or the logical count."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return len(getaffinity(0))
        except OSError:
            pass
    process_cpu_count = getattr(os, "process_cpu_count", None)  # Python >= 3.13
    if process_cpu_count is not None:
        return process_cpu_count()
    return os.cpu_count()


def _memory_total_bytes() -> int | None:
    """Physical memory in bytes: /proc/meminfo, sysconf, or ``sysctl hw.memsize``."""
    try:
        with open("/proc/meminfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    parts = line.split()
                    scale = 1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1
                    return int(parts[1]) * scale
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            return int(pages) * int(page_size)
    except (AttributeError, OSError, ValueError):
        pass
    if platform.system() == "Darwin":
        out = _run(["sysctl", "-n", "hw.memsize"])
        if out.isdigit():
            return int(out)
    return None


def cpu_facts() -> dict[str, Any]:
    """The host CPU and memory.

    Returns ``{"model": str, "architecture": str, "machine": str, "logical_cores": int | None,
    "usable_cores": int | None, "memory_total_bytes": int | None}``; ``architecture`` is
    :func:`normalize_arch` of ``machine`` (the raw :func:`platform.machine`).
    """
    machine = platform.machine()
    return {
        "model": _cpu_model(),
        "architecture": normalize_arch(machine),
        "machine": machine,
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory_total_bytes": _memory_total_bytes(),
    }


# ---------------------------------------------------------------------------------------- software

#: Distributions whose version is recorded when installed (normalised names, PEP 503).
_PACKAGES: tuple[str, ...] = (
    "mlms-ir",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "torch",
    "torchvision",
    "onnx2torch",
    "tensorrt",
    "tensorflow",
    "mxnet",
    "cupy",
    "nvidia-ml-py",
    "pynvml",
)

#: Families published under several distribution names (cupy-cuda12x, tensorflow-cpu, mxnet-cu112...).
_PACKAGE_FAMILIES = re.compile(r"^(cupy|tensorflow|tensorrt|mxnet)-[a-z0-9-]+$")


#: An installed wheel's metadata directory: ``numpy-2.4.6.dist-info`` (the name with "_" for "-").
_DIST_INFO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.]*)-([^-/\\]+)\.dist-info$")


def _normalize_dist(name: str) -> str:
    """A distribution name normalised as PEP 503 does (``mlms_ir`` -> ``mlms-ir``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _package_versions() -> dict[str, str]:
    """Versions of the installed distributions of interest, keyed by their normalised name."""
    found: dict[str, str] = {}
    try:
        dists = list(_metadata.distributions())
    except Exception:  # noqa: BLE001 - a broken environment must not break a benchmark
        return found
    for dist in dists:
        try:
            # The name as the .dist-info/.egg-info directory spells it (no file read), else from
            # its METADATA: parsing every installed distribution's cost 40 ms a call (134 of them)
            hint = getattr(dist, "_normalized_name", None)
            if isinstance(hint, str) and hint and not _wanted(_normalize_dist(hint)):
                continue
            # a wanted one: its name and version as the ``NAME-VERSION.dist-info`` directory spells
            # them (the installers' convention), else from its METADATA, parsed once (a long
            # one, with the project's whole README, took milliseconds to parse: 45 ms for 16)
            spelt = _DIST_INFO.match(getattr(getattr(dist, "_path", None), "name", "") or "")
            if spelt is not None:
                name, version = _normalize_dist(spelt[1]), spelt[2]
            else:
                meta = dist.metadata
                name, version = _normalize_dist(meta["Name"] or ""), meta["Version"]
        except Exception:  # noqa: BLE001
            continue
        if name and _wanted(name) and name not in found:
            found[name] = version
    return dict(sorted(found.items()))


def _wanted(name: str) -> bool:
    """Whether a distribution (by its normalised name) is one whose version is recorded."""
    return name in _PACKAGES or _PACKAGE_FAMILIES.match(name) is not None


def software_facts() -> dict[str, Any]:
    """The operating system, Python, and versions of the ML packages that are installed.

    Returns ``{"os": platform.platform(), "system", "release", "python_version",
    "python_implementation", "packages": {distribution: version}}``. ``packages`` lists only the
    installed distributions among mlms_ir, onnx, onnxruntime(-gpu), numpy, torch, torchvision,
    onnx2torch, tensorrt, tensorflow, mxnet, cupy, nvidia-ml-py and pynvml (plus variants such as
    ``cupy-cuda12x`` or ``tensorflow-cpu``), keyed by normalised name (``mlms-ir``). The packages
    are never imported.
    """
    return {
        "os": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": _package_versions(),
    }


# --------------------------------------------------------------------------------------------- GPU


class _NoGpu(Exception):
    """Internal: NVML cannot be used; the message is the reason."""


def _load_nvml() -> ModuleType:
    """Import pynvml and initialise NVML, or raise :class:`_NoGpu` with the reason.

    On success the caller owns one NVML reference and must call :func:`_shutdown`.
    """
    try:
        pynvml = lazy_import("pynvml")
    except MissingExtraError as exc:
        raise _NoGpu(f"NVML is unavailable: pynvml is not installed (pip install nvidia-ml-py): {exc.__cause__}") from exc
    except Exception as exc:  # a broken install (OSError, SyntaxError...)
        raise _NoGpu(f"NVML is unavailable: importing pynvml failed ({type(exc).__name__}: {exc})") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # pynvml.NVMLError (LibraryNotFound, DriverNotLoaded, ...) or worse
        raise _NoGpu(f"NVML could not be initialised ({type(exc).__name__}: {exc}); no NVIDIA driver or GPU") from exc
    return pynvml


def _shutdown(pynvml: ModuleType) -> None:
    """Release one NVML reference, ignoring errors."""
    try:
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001
        pass


def _text(value: Any) -> Any:
    """Decode bytes returned by older pynvml versions."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _safe(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or None when it raises (NVML NotSupported, NoPermission, missing function...)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None


def _call(pynvml: ModuleType, name: str, *args: Any) -> Any:
    """Call ``pynvml.<name>(*args)``, or return None when the function is missing or raises."""
    fn = getattr(pynvml, name, None)
    return None if fn is None else _safe(fn, *args)


def _cuda_version(value: Any) -> str | None:
    """NVML's CUDA driver version integer (12040) as ``"12.4"``."""
    if isinstance(value, int) and value > 0:
        return f"{value // 1000}.{(value % 1000) // 10}"
    return None


def _scaled(value: Any, factor: float) -> float | None:
    """``value / factor`` for numbers, None otherwise."""
    return value / factor if isinstance(value, (int, float)) else None


def _device_facts(pynvml: ModuleType, index: int) -> dict[str, Any]:
    """The static facts of GPU ``index``; a field NVML cannot read is None."""
    facts: dict[str, Any] = {
        "index": index,
        "name": None,
        "uuid": None,
        "compute_capability": None,
        "memory_total_bytes": None,
        "sm_clock_max_mhz": None,
        "mem_clock_max_mhz": None,
        "power_limit_w": None,
    }
    handle = _call(pynvml, "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return facts
    facts["name"] = _text(_call(pynvml, "nvmlDeviceGetName", handle))
    facts["uuid"] = _text(_call(pynvml, "nvmlDeviceGetUUID", handle))
    cc = _call(pynvml, "nvmlDeviceGetCudaComputeCapability", handle)
    if isinstance(cc, (tuple, list)) and len(cc) == 2:
        facts["compute_capability"] = f"{cc[0]}.{cc[1]}"
    mem = _call(pynvml, "nvmlDeviceGetMemoryInfo", handle)
    facts["memory_total_bytes"] = getattr(mem, "total", None)
    facts["sm_clock_max_mhz"] = _call(pynvml, "nvmlDeviceGetMaxClockInfo", handle, getattr(pynvml, "NVML_CLOCK_SM", 1))
    facts["mem_clock_max_mhz"] = _call(pynvml, "nvmlDeviceGetMaxClockInfo", handle, getattr(pynvml, "NVML_CLOCK_MEM", 2))
    limit_mw = _call(pynvml, "nvmlDeviceGetEnforcedPowerLimit", handle)
    if limit_mw is None:
        limit_mw = _call(pynvml, "nvmlDeviceGetPowerManagementLimit", handle)
    facts["power_limit_w"] = _scaled(limit_mw, 1000.0)
    return facts


def gpu_facts() -> dict[str, Any]:
    """The NVIDIA GPUs of this host, read through NVML; never raises.

    Returns ``{"available": bool, "reason": str, "driver": str | None,
    "cuda_driver_version": str | None ("12.4"), "nvml_version": str | None,
    "cuda_visible_devices": str | None, "gpus": [...]}`` where each GPU is ``{"index", "name",
    "uuid", "compute_capability" ("9.0"), "memory_total_bytes", "sm_clock_max_mhz",
    "mem_clock_max_mhz", "power_limit_w"}``. Fields NVML cannot read are None. Without pynvml,
    a driver or a GPU, ``available`` is False, ``gpus`` is empty and ``reason`` says why.
    """
    facts: dict[str, Any] = {
        "available": False,
        "reason": "",
        "driver": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": [],
    }
    try:
        pynvml = _load_nvml()
    except _NoGpu as exc:
        facts["reason"] = str(exc)
        return facts
    try:
        facts["driver"] = _text(_call(pynvml, "nvmlSystemGetDriverVersion"))
        facts["nvml_version"] = _text(_call(pynvml, "nvmlSystemGetNVMLVersion"))
        cuda = _call(pynvml, "nvmlSystemGetCudaDriverVersion_v2")
        if cuda is None:
            cuda = _call(pynvml, "nvmlSystemGetCudaDriverVersion")
        facts["cuda_driver_version"] = _cuda_version(cuda)
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001
            facts["reason"] = f"NVML could not count GPUs ({type(exc).__name__}: {exc})"
            return facts
        facts["gpus"] = [_device_facts(pynvml, i) for i in range(count)]
        facts["available"] = count > 0
        if count == 0:
            facts["reason"] = "NVML found no GPU"
        return facts
    finally:
        _shutdown(pynvml)


@functools.lru_cache(maxsize=1)
def gpu_count() -> int:
    """The number of NVIDIA GPUs NVML sees (0 without pynvml, driver or GPU); never raises.

    The result is cached for the life of the process (``gpu_count.cache_clear()`` forgets it).
    NVML ignores ``CUDA_VISIBLE_DEVICES``.
    """
    try:
        pynvml = _load_nvml()
    except _NoGpu:
        return 0
    try:
        return max(0, int(pynvml.nvmlDeviceGetCount()))
    except Exception:  # noqa: BLE001
        return 0
    finally:
        _shutdown(pynvml)


# ---------------------------------------------------------------------------------------- combined


def system_facts() -> dict[str, Any]:
    """Everything recorded with a benchmark result: host, timestamp, CPU, software and GPU facts.

    Returns ``{"host": platform.node(), "timestamp": ISO 8601 UTC, "cpu": cpu_facts(),
    "software": software_facts(), "gpu": gpu_facts()}``; JSON-serialisable.
    """
    return {
        "host": platform.node(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
        "cpu": cpu_facts(),
        "software": software_facts(),
        "gpu": gpu_facts(),
    }


# ----------------------------------------------------------------------------------------- sampler

#: The metrics a :class:`GpuSampler` sample holds, besides ``t_s`` and ``index``.
SAMPLE_METRICS: tuple[str, ...] = (
    "memory_used_bytes",
    "gpu_utilization_pct",
    "memory_utilization_pct",
    "power_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temperature_c",
)


class GpuSampler:
    """Sample every GPU's memory, utilisation, power, SM clock and temperature in the background.

    Use as a context manager around the work to observe::

        with GpuSampler(interval_s=0.05) as sampler:
            run()
        sampler.summary()  # per GPU: min/mean/max of each metric and the sample count

    When NVML and GPUs are present, a daemon thread takes one sample per GPU right away and then
    every ``interval_s`` seconds until the block exits, when it stops at once
    (:meth:`threading.Event.wait`). Each sample is a dict ``{"t_s" (seconds since start),
    "index", "memory_used_bytes", "gpu_utilization_pct", "memory_utilization_pct", "power_w",
    "sm_clock_mhz", "temperature_c"}`` appended to :attr:`samples`; a metric NVML cannot read is
    None, and its first error per GPU is recorded in :attr:`errors`. Without GPUs the sampler does
    nothing. Nothing ever raises into the caller. NVML's utilisation is itself an average over
    its own window (1/6 s to 1 s depending on the GPU).
    """

    def __init__(self, interval_s: float = 0.05, indices: Sequence[int] | None = None) -> None:
        """Prepare a sampler; ``indices`` limits sampling to those NVML GPU indices (default all)."""
        self.interval_s: float = max(0.001, float(interval_s))
        self.indices: list[int] | None = None if indices is None else [int(i) for i in indices]
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.available: bool = False
        self.reason: str = "GpuSampler has not been started"
        self._error_keys: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pynvml: ModuleType | None = None
        self._handles: list[tuple[int, Any]] = []
        self._t0: float = 0.0
        self._t1: float | None = None

    # -- lifecycle

    def __enter__(self) -> GpuSampler:
        """Start sampling (see :meth:`start`) and return the sampler."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop sampling (see :meth:`stop`); exceptions from the block propagate unchanged."""
        self.stop()

    def start(self) -> None:
        """Initialise NVML and start the sampling thread; without GPUs, only record why. Never raises."""
        if self._thread is not None:
            return
        with self._lock:
            self.samples = []
            self.errors = []
            self._error_keys = set()
        self._stop.clear()
        self._t0 = time.perf_counter()
        self._t1 = None
        try:
            pynvml = _load_nvml()
        except _NoGpu as exc:
            self.available, self.reason = False, str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - never raise into the caller
            self.available, self.reason = False, f"NVML failed: {type(exc).__name__}: {exc}"
            return
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            indices = list(range(count)) if self.indices is None else [i for i in self.indices if 0 <= i < count]
            handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in indices]
        except Exception as exc:  # noqa: BLE001
            _shutdown(pynvml)
            self.available, self.reason = False, f"NVML could not open the GPUs ({type(exc).__name__}: {exc})"
            return
        if not handles:
            _shutdown(pynvml)
            self.available = False
            self.reason = "NVML found no GPU" if count == 0 else f"none of GPUs {self.indices} exists ({count} found)"
            return
        self._pynvml, self._handles = pynvml, handles
        self.available, self.reason = True, ""
        self._thread = threading.Thread(target=self._run, name="mlms_ir-gpu-sampler", daemon=True)
        try:
            self._thread.start()
        except Exception as exc:  # noqa: BLE001 - e.g. "can't start new thread"
            self._thread = None
            self._release()
            self.available, self.reason = False, f"could not start the sampling thread ({exc})"

    def stop(self) -> None:
        """Stop the thread (promptly) and release NVML. Never raises; calling it twice is harmless."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=max(2.0, 4 * self.interval_s))
        self._t1 = time.perf_counter()
        if thread.is_alive():
            # an NVML call hangs: leave NVML initialised rather than shut it down under the thread
            self._record_error(-1, "thread", "sampling thread did not stop within the timeout")
        else:
            self._release()
        self._thread = None

    def _release(self) -> None:
        """Shut NVML down once for the reference :meth:`start` took."""
        if self._pynvml is not None:
            _shutdown(self._pynvml)
            self._pynvml = None

    # -- sampling

    def _record_error(self, index: int, what: str, message: str) -> None:
        """Remember the first error per (GPU, metric)."""
        with self._lock:
            if (index, what) not in self._error_keys:
                self._error_keys.add((index, what))
                self.errors.append(f"GPU {index} {what}: {message}" if index >= 0 else f"{what}: {message}")

    def _read(self, index: int, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or None with the error recorded."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            self._record_error(index, what, f"{type(exc).__name__}: {exc}")
            return None

    def _sample(self, pynvml: ModuleType, index: int, handle: Any) -> dict[str, Any]:
        """One sample of GPU ``index``."""
        t = time.perf_counter() - self._t0
        mem = self._read(index, "memory", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
        util = self._read(index, "utilization", lambda: pynvml.nvmlDeviceGetUtilizationRates(handle))
        power_mw = self._read(index, "power", lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
        sm_clock = self._read(
            index, "sm_clock", lambda: pynvml.nvmlDeviceGetClockInfo(handle, getattr(pynvml, "NVML_CLOCK_SM", 1))
        )
        mem_clock = self._read(
            index, "mem_clock", lambda: pynvml.nvmlDeviceGetClockInfo(handle, getattr(pynvml, "NVML_CLOCK_MEM", 2))
        )
        temperature = self._read(
            index,
            "temperature",
            lambda: pynvml.nvmlDeviceGetTemperature(handle, getattr(pynvml, "NVML_TEMPERATURE_GPU", 0)),
        )
        return {
            "t_s": t,
            "index": index,
            "memory_used_bytes": getattr(mem, "used", None),
            "gpu_utilization_pct": getattr(util, "gpu", None),
            "memory_utilization_pct": getattr(util, "memory", None),
            "power_w": _scaled(power_mw, 1000.0),
            "sm_clock_mhz": sm_clock,
            "mem_clock_mhz": mem_clock,
            "temperature_c": temperature,
        }

    def _run(self) -> None:
        """The thread's loop: sample every GPU, then wait ``interval_s`` or until stopped."""
        pynvml = self._pynvml
        next_t = time.perf_counter()
        while True:
            try:
                assert pynvml is not None
                batch = [self._sample(pynvml, i, h) for i, h in self._handles]
                with self._lock:
                    self.samples.extend(batch)
            except Exception as exc:  # noqa: BLE001 - the thread must never die noisily
                self._record_error(-1, "sampler", f"{type(exc).__name__}: {exc}")
            next_t += self.interval_s
            now = time.perf_counter()
            if next_t < now:  # fell behind (slow NVML): do not try to catch up
                next_t = now
            if self._stop.wait(next_t - now):
                return

    # -- results

    def summary(self) -> dict[str, Any]:
        """Min/mean/max of each metric and the sample count, per GPU.

        With GPUs: ``{"available": True, "reason": "", "interval_s", "duration_s", "errors",
        "gpus": [{"index", "samples", "<metric>": {"min", "mean", "max"} | None, ...}]}``; a
        metric without a single value is None. Without GPUs: ``{"available": False,
        "reason": str}``. Safe to call while sampling.
        """
        if not self.available:
            return {"available": False, "reason": self.reason}
        with self._lock:
            samples = list(self.samples)
            errors = list(self.errors)
        end = self._t1 if self._t1 is not None else time.perf_counter()
        gpus = []
        for index, _ in self._handles:
            mine = [s for s in samples if s["index"] == index]
            entry: dict[str, Any] = {"index": index, "samples": len(mine)}
            for metric in SAMPLE_METRICS:
                values = [s[metric] for s in mine if isinstance(s[metric], (int, float))]
                entry[metric] = (
                    {"min": min(values), "mean": sum(values) / len(values), "max": max(values)} if values else None
                )
            gpus.append(entry)
        return {
            "available": True,
            "reason": "",
            "interval_s": self.interval_s,
            "duration_s": end - self._t0,
            "errors": errors,
            "gpus": gpus,
        }
