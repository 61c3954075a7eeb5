"""Hardware counters per graph node: one run of the model under Nsight Compute (:func:`run_counters`).

The model runs in a child process under ``ncu`` (``python -m mlms_ir.gpu.ncu child SPEC.json``,
:mod:`mlms_ir.gpu.ncu`). The child loads the model, prepares the torch backend on CUDA, runs
warm-up iterations outside any counted range, then pushes the NVTX range ``mlms_ir.counters`` and
runs once more under :meth:`~mlms_ir.backends.torch_backend.TorchSession.nvtx_ranges`, which wraps
every graph node's call in a push/pop range named ``mlms_ir::<node id>`` (the default NVTX
domain). ``ncu`` profiles only the kernels launched inside ``mlms_ir.counters`` (``--nvtx
--nvtx-include mlms_ir.counters/``; the trailing slash selects push/pop ranges), collects a chosen
metric set per kernel and writes one CSV table to a log file (``--csv --log-file``), so nothing
the child prints can break parsing. :func:`~mlms_ir.gpu.ncu_parse.parse_ncu_csv` reads that table
and :func:`~mlms_ir.gpu.counters_attribution.attribute_counters` sums the kernels per node.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlms_ir._proc import ChildStartError, ChildTimeout, Finished, child_env, run_child
from mlms_ir.errors import CountersUnavailableError, MlmsIrError
from mlms_ir.gpu.counters_attribution import attribute_counters
from mlms_ir.gpu.ncu_command import CACHE_CONTROL, CLOCK_CONTROL, REPLAY_MODE, check_cuda, find_ncu, ncu_command
from mlms_ir.gpu.ncu_metrics import COUNTERS_RANGE, DEFAULT_METRIC_SET, TIME, resolve_metrics
from mlms_ir.gpu.ncu_parse import parse_ncu_csv
from mlms_ir.results.base import model_ref
from mlms_ir.results.counters import CountersModel, CountersReport, KernelCounters

log = logging.getLogger(__name__)

#: The module the profiled child runs (``python -m mlms_ir.gpu.ncu child SPEC.json``).
CHILD_MODULE = "mlms_ir.gpu.ncu"
#: On a timeout, seconds between ``SIGTERM`` and ``SIGKILL``: ncu then restores the GPU clocks it
#: locked (``--clock-control base``).
NCU_GRACE_S = 10.0
#: Runs repeated without the metrics ncu did not know. ncu stops at an unknown metric ("==ERROR==
#: Failed to find metric regex:^name..."); it is not known to name every unknown one at once.
METRIC_RERUNS = 3

_PERM_FIX = ("Nsight Compute may not read this GPU's performance counters (ERR_NVGPUCTRPERM): run as root (sudo -E), or "
             "let every user read them with 'options nvidia NVreg_RestrictProfilingToAdminUsers=0' in a file under "
             "/etc/modprobe.d and a driver reload or reboot; in a container add --cap-add=SYS_ADMIN "
             "(https://developer.nvidia.com/ERR_NVGPUCTRPERM)")
_MISSING_METRIC = re.compile(r"Failed to find metric\s+(?:regex:)?\^?([A-Za-z0-9_]+)")


def run_ncu(cmd: Sequence[str], timeout: float) -> Finished:
    """Run the ``ncu`` command line ``cmd`` to its end in its own process group (through
    :func:`mlms_ir._proc.run_child`); past ``timeout`` seconds the group (ncu and the child) gets
    ``SIGTERM``, so ncu restores the GPU clocks, then ``SIGKILL`` after :data:`NCU_GRACE_S`.

    ncu formats numbers by the locale: real ``--csv`` output from a Spanish locale groups digits
    with dots ("2.508.800" bytes), which :func:`~mlms_ir.gpu.ncu_parse.scale_value` would read as
    2.5. ``LC_ALL=C`` makes it print plain (or comma-grouped) numbers; the child Python is
    unaffected (PEP 538 coerces the C locale to UTF-8).

    Raises:
        mlms_ir.errors.CountersUnavailableError: ncu cannot be started, or ran past ``timeout``.
    """
    try:
        return run_child(cmd, timeout=timeout, env=child_env(extra={"LC_ALL": "C"}), grace_s=NCU_GRACE_S)
    except ChildTimeout:
        raise CountersUnavailableError(
            f"ncu did not finish within {timeout:g} s (it replays every kernel once per pass of the metric set); "
            "raise the timeout, profile fewer kernels (launch_count, --launch-count) or use a smaller metric set "
            "(--metric-set throughput)") from None
    except ChildStartError as exc:
        raise CountersUnavailableError(f"cannot start ncu ({cmd[0]}): {exc.__cause__ or exc}") from exc


@dataclass
class _Profiled:
    """What the last ncu run left: its exit status and output, the CSV it wrote, the metrics it
    collected and those dropped before it because ncu did not know them."""

    returncode: int
    stdout: str
    stderr: str
    csv_text: str
    metrics: list[str]
    dropped: list[str]

    @property
    def everything(self) -> str:
        return f"{self.csv_text}\n{self.stdout}\n{self.stderr}"


def _profile(command: Callable[[list[str]], list[str]], metrics: list[str], log_file: Path, result_path: Path,
             timeout: float) -> _Profiled:
    """Run ncu (``command(metrics)`` is its command line); while it stops at metrics it does not
    know, drop them and run again, at most :data:`METRIC_RERUNS` times."""
    dropped: list[str] = []
    reruns = 0
    while True:
        for p in (log_file, result_path):
            p.unlink(missing_ok=True)
        cmd = command(metrics)
        log.info("running: %s", " ".join(cmd))
        done = run_ncu(cmd, timeout)
        text = log_file.read_text(errors="replace") if log_file.is_file() else ""
        run = _Profiled(done.returncode, done.stdout, done.stderr, text, metrics, dropped)
        missing = {m.group(1) for m in _MISSING_METRIC.finditer(run.everything)}
        if not missing:
            return run
        gone = [m for m in metrics if m.removeprefix("regex:").split(".")[0].lstrip("^") in missing]
        keep = [m for m in metrics if m not in gone]
        if reruns >= METRIC_RERUNS or not gone or TIME not in keep:
            raise CountersUnavailableError(f"ncu does not know the metric(s) {', '.join(sorted(missing))} on this GPU; "
                                           "choose others (ncu --query-metrics lists them)")
        log.warning("ncu does not know %s on this GPU; running again without", ", ".join(gone))
        dropped = dropped + gone
        metrics = keep
        reruns += 1


def _read_outcome(run: _Profiled, result_path: Path) -> tuple[dict[str, Any], list[KernelCounters]]:
    """The child's result (GPU name, versions) and the profiled kernels; or the error that says why
    there are none: no permission, the child's own error, ncu's, a failed run, no kernel."""
    result: dict[str, Any] = {}
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text())
        except json.JSONDecodeError:
            result = {}
    everything = run.everything
    if "ERR_NVGPUCTRPERM" in everything:
        raise CountersUnavailableError(_PERM_FIX)
    if result.get("error"):
        cls = _known_errors().get(str(result.get("type")), CountersUnavailableError)
        if not (isinstance(cls, type) and issubclass(cls, MlmsIrError)):
            cls = CountersUnavailableError
        raise cls(str(result["error"]))
    rc, out, err, text = run.returncode, run.stdout, run.stderr, run.csv_text
    errors = [ln.strip() for ln in everything.splitlines() if ln.strip().startswith("==ERROR==")]
    kernels = parse_ncu_csv(text, metrics=run.metrics)
    if errors and not kernels:
        raise CountersUnavailableError(f"ncu failed: {errors[0].removeprefix('==ERROR==').strip()[:400]}")
    if not (result.get("ok") or (not result and rc == 0)):
        raise CountersUnavailableError(f"the profiled run failed (ncu exit status {rc}): {_tail(err or out or text) or '(no output)'}")
    if not kernels:
        raise CountersUnavailableError(
            f"ncu profiled no kernel inside the NVTX range '{COUNTERS_RANGE}' (exit status {rc}; did the model run on "
            f"the GPU?); its last words: {_tail(text or err or out) or '(none)'}")
    for e in errors:
        log.warning("ncu: %s", e)
    return result, kernels


def _write_spec(tmp: Path, model: Any, *, inputs: str | Mapping[str, Any] | None, input_shapes: Any, batch: int | None,
                dims: Any, seed: int, warmup: int, precision: str, cuda_device: str) -> tuple[Path, Path]:
    """Write the child's spec to ``tmp`` (with the model and the feeds where they are not files):
    the paths of the spec and of the result file the child will write."""
    feeds_path = None
    if isinstance(inputs, Mapping):
        import numpy as np

        feeds_path = str(tmp / "inputs.npz")
        np.savez(feeds_path, **{k: np.asarray(v) for k, v in inputs.items()})
    elif inputs is not None:
        feeds_path = os.path.abspath(os.fspath(inputs))
    result_path = tmp / "result.json"
    spec = {
        "model": _model_file(model, tmp),
        "input_shapes": input_shapes if not isinstance(input_shapes, tuple) else list(input_shapes),
        "batch": batch,
        "dims": dims,
        "inputs": feeds_path,
        "seed": seed,
        "warmup": int(warmup),
        "precision": precision,
        "cuda_device": cuda_device,
        "range": COUNTERS_RANGE,
        "result": str(result_path),
    }
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    return spec_path, result_path


def _model_file(model: Any, tmp: Path) -> str:
    from mlms_ir.ir import Graph

    if isinstance(model, Graph):
        loaded = model.loaded
        model = (loaded.path or loaded.source) if loaded is not None else model.model
    if isinstance(model, (str, os.PathLike)):
        return os.path.abspath(os.fspath(model))
    path = tmp / "model.onnx"
    if isinstance(model, (bytes, bytearray, memoryview)):
        path.write_bytes(bytes(model))
    else:
        path.write_bytes(model.SerializeToString())
    return str(path)


def _model_header(graph: Any, batch: int | None, dims: Any, input_shapes: Any) -> CountersModel:
    """The shared model header (:func:`~mlms_ir.results.base.model_ref`) and the bindings the
    counters were taken at."""
    ref = model_ref(graph)
    return CountersModel(name=ref.name, path=ref.path, batch=batch,
                         dims=dims if isinstance(dims, (str, dict)) or dims is None else str(dims),
                         input_shapes=input_shapes if isinstance(input_shapes, (str, dict, list)) or input_shapes is None
                         else str(input_shapes))


def _known_errors() -> dict[str, type]:
    importlib.import_module("mlms_ir.backends.base")  # registers the backend errors as subclasses

    out: dict[str, type] = {}
    stack: list[type] = [MlmsIrError]
    while stack:
        c = stack.pop()
        out[c.__name__] = c
        stack += c.__subclasses__()
    return out


def _tail(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:]


def run_counters(
    model: Any,
    *,
    batch: int | None = None,
    dims: Any = None,
    input_shapes: Any = None,
    inputs: str | Mapping[str, Any] | None = None,
    seed: int = 0,
    metric_set: str | None = DEFAULT_METRIC_SET,
    metrics: str | Iterable[str] | None = None,
    ncu: str | None = None,
    device: Any = None,
    precision: str = "fp32",
    cuda_device: str = "cuda",
    warmup: int = 2,
    timeout: float = 1800.0,
    page: str = "raw",
    replay_mode: str = REPLAY_MODE,
    cache_control: str = CACHE_CONTROL,
    clock_control: str = CLOCK_CONTROL,
    launch_count: int | None = None,
    launch_skip: int | None = None,
    kernel_name: str | None = None,
    kernel_id: str | None = None,
    workdir: str | os.PathLike | None = None,
) -> CountersReport:
    """Run ``model`` once on the torch backend on CUDA under Nsight Compute and attribute the
    per-kernel counters to its graph nodes.

    ``batch``/``dims``/``input_shapes`` bind the model's dims as for :func:`mlms_ir.load`;
    ``inputs`` is an ``.npz`` file or a dict of arrays (default: seeded random feeds). The metrics
    are the named ``metric_set`` (see :data:`~mlms_ir.gpu.ncu_metrics.METRIC_SETS`; ``None`` for
    none) plus ``metrics``. ``device`` is the roofline device (a table name, a spec or a
    :class:`~mlms_ir.passes.roofline.Device`); by default the table's entry for the GPU the model
    ran on. ``precision`` is the torch backend's (``fp32``, ``fp16``, ``bf16``), ``cuda_device``
    the GPU (``cuda`` or ``cuda:N``). ``warmup`` runs precede the counted one, outside the counted
    range. The ``ncu`` settings and limits are those of
    :func:`~mlms_ir.gpu.ncu_command.ncu_command`. ``workdir`` keeps the spec, ncu's log (the CSV)
    and the child's result there instead of in a temporary folder. A metric the GPU or ncu does
    not know is dropped and the run repeated once (listed in ``missing_metrics``).

    Raises:
        mlms_ir.errors.CountersUnavailableError: no ncu, no CUDA GPU for torch, no permission to
            read the counters, ncu failed or ran past ``timeout`` seconds, or no kernel was profiled.
        mlms_ir.errors.MlmsIrError: the model or a binding is bad (the usual load errors), or the
            torch backend failed on it.
    """
    from mlms_ir.ir import load
    from mlms_ir.passes.analyze import analyze

    check_cuda()
    exe = find_ncu(ncu)
    wanted = resolve_metrics(metric_set, metrics)
    if device is not None:  # a bad roofline device fails now, not after the ncu run
        from mlms_ir.passes.roofline import resolve_device

        device = resolve_device(device)
    if not (cuda_device == "cuda" or (cuda_device.startswith("cuda:") and cuda_device[5:].isdigit())):
        raise MlmsIrError(f"cuda_device must be 'cuda' or 'cuda:N', not '{cuda_device}'")
    graph = load(model, input_shapes=input_shapes, batch=batch, dims=dims)
    analysis = analyze(graph)
    options = {"page": page, "replay_mode": replay_mode, "cache_control": cache_control, "clock_control": clock_control,
               "launch_count": launch_count, "launch_skip": launch_skip, "kernel_name": kernel_name, "kernel_id": kernel_id}
    with tempfile.TemporaryDirectory(prefix="mlms_ir_ncu_") as scratch:
        tmp = Path(workdir) if workdir is not None else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        spec_path, result_path = _write_spec(tmp, model, inputs=inputs, input_shapes=input_shapes, batch=batch, dims=dims,
                                             seed=seed, warmup=warmup, precision=precision, cuda_device=cuda_device)
        child = [sys.executable, "-m", CHILD_MODULE, "child", str(spec_path)]
        log_file = tmp / "ncu.csv"
        run = _profile(lambda metric_list: ncu_command(exe, child, metric_list, log_file, **options),
                       list(wanted), log_file, result_path, timeout)
        result, kernels = _read_outcome(run, result_path)
    dev = device
    if dev is None and result.get("gpu"):
        from mlms_ir.passes.roofline import match_gpu

        dev = match_gpu(result["gpu"])
    report = attribute_counters(kernels, analysis.nodes, dev)
    report.model = _model_header(graph, batch, dims, input_shapes)
    report.gpu = result.get("gpu")
    report.metric_set = metric_set
    report.metrics = run.metrics
    report.missing_metrics = run.dropped
    report.settings = {
        "ncu": exe, **options, "precision": precision, "warmup": int(warmup),
        **{k: result[k] for k in ("torch", "cuda", "cudnn_allow_tf32", "matmul_allow_tf32", "capability") if k in result},
    }
    if workdir is not None:
        report.settings["log_file"] = str(Path(workdir) / "ncu.csv")
    if run.dropped:
        report.notes.append(f"this GPU or ncu does not know {', '.join(run.dropped)}: left out")
    if clock_control == "base":
        report.notes.append("ncu locked the GPU clocks to base (--clock-control base): kernel times are longer than at "
                            "boost clocks; quote latency from 'mlms_ir run', not from here")
    if cache_control == "all":
        report.notes.append("caches were flushed before every kernel (--cache-control all): DRAM bytes are cold-cache traffic")
    if dev is None:
        report.notes.append(f"no roofline: GPU '{result.get('gpu') or '?'}' has no entry in the device table "
                            "(give one with --roofline NAME, or fp32=FLOPS,bw=BYTES_PER_S; device= in Python)")
    return report
