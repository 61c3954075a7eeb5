"""Finding Nsight Compute's ``ncu`` (:func:`find_ncu`), checking that the counted run can use
CUDA here (:func:`check_cuda`), and the ``ncu`` command line that profiles it (:func:`ncu_command`)."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from mlms_ir.errors import CountersUnavailableError, MlmsIrError
from mlms_ir.gpu.ncu_metrics import COUNTERS_RANGE

#: Environment variable naming the ``ncu`` executable to use.
NCU_ENV = "MLMS_IR_NCU"
#: Where ``ncu`` is looked for after ``$MLMS_IR_NCU`` and ``PATH`` (then ``/opt/nvidia/nsight-compute/*/ncu``).
NCU_PATHS: tuple[str, ...] = ("/usr/local/cuda/bin/ncu",)


def _executable(path: str | os.PathLike) -> str | None:
    p = Path(path).expanduser()
    if p.is_file() and os.access(p, os.X_OK):
        return str(p)
    return shutil.which(str(path)) if os.sep not in str(path) else None


_GET_NCU = ("install Nsight Compute (it ships with the CUDA toolkit, or from https://developer.nvidia.com/nsight-compute) "
            f"and put ncu on PATH, or set ${NCU_ENV} to its path")


def find_ncu(ncu: str | os.PathLike | None = None) -> str:
    """The ``ncu`` executable: ``ncu`` if given (a path or a command name), else ``$MLMS_IR_NCU``,
    else ``ncu`` on ``PATH``, else :data:`NCU_PATHS` and ``/opt/nvidia/nsight-compute/*/ncu``.

    Raises:
        mlms_ir.errors.CountersUnavailableError: none of these is an executable file.
    """
    if ncu:
        found = _executable(ncu)
        if found is None:
            raise CountersUnavailableError(f"the Nsight Compute executable '{ncu}' does not exist or is not executable; {_GET_NCU}")
        return found
    env = os.environ.get(NCU_ENV)
    if env:
        found = _executable(env)
        if found is None:
            raise CountersUnavailableError(f"${NCU_ENV} names '{env}', which does not exist or is not executable; "
                                           f"point it at Nsight Compute's ncu or unset it")
        return found
    found = shutil.which("ncu")
    if found:
        return found
    candidates = list(NCU_PATHS) + sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu"), reverse=True)
    for c in candidates:
        found = _executable(c)
        if found:
            return found
    raise CountersUnavailableError(f"Nsight Compute's ncu was not found (not on PATH, ${NCU_ENV} unset, not in "
                                   f"{', '.join(NCU_PATHS)}); {_GET_NCU}")


def check_cuda() -> None:
    """Raise :class:`~mlms_ir.errors.CountersUnavailableError` unless the torch backend can run on
    CUDA here (torch with CUDA, a visible GPU, onnx2torch): the counted run needs it."""
    from mlms_ir.backends import registry

    avail = registry.get("torch").available("cuda")
    if not avail:
        raise CountersUnavailableError(f"hardware counters run the model with the torch backend on a CUDA GPU, which cannot run "
                                       f"here: {avail.reason}")


#: ``--replay-mode``: ``kernel`` (ncu's default) replays each kernel once per pass of the metric set,
#: saving and restoring the memory it writes; the whole model runs once.
REPLAY_MODE = "kernel"
#: ``--cache-control``: ``all`` (ncu's default) flushes the caches before every pass, so each
#: kernel's DRAM bytes are its cold-cache traffic and do not depend on the kernel before it.
CACHE_CONTROL = "all"
#: ``--clock-control``: ``base`` locks the GPU clocks to base, so figures repeat from run to run;
#: times are then longer than at boost clocks. (``base`` was ncu's default; the Nsight Compute
#: 2026.1 CLI manual lists ``boost`` as the default and adds ``boost``/``force-boost``, so it is
#: always passed explicitly.)
CLOCK_CONTROL = "base"
#: Values ``--clock-control`` takes (Nsight Compute CLI manual, "Profile" options, v2026.1).
CLOCK_CONTROLS = ("base", "boost", "force-boost", "none", "reset")


def ncu_command(
    ncu: str,
    child_argv: Sequence[str],
    metrics: Sequence[str],
    log_file: str | os.PathLike,
    *,
    page: str = "raw",
    nvtx_range: str | None = COUNTERS_RANGE,
    replay_mode: str = REPLAY_MODE,
    cache_control: str = CACHE_CONTROL,
    clock_control: str = CLOCK_CONTROL,
    launch_count: int | None = None,
    launch_skip: int | None = None,
    kernel_name: str | None = None,
    kernel_id: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``ncu`` command line that profiles ``child_argv``.

    ``ncu --target-processes all --nvtx --nvtx-include "mlms_ir.counters/" --metrics ...
    --replay-mode kernel --cache-control all --clock-control base --csv --page raw
    --print-units base --log-file LOG [limits] CHILD...``: only kernels inside the push/pop range
    ``nvtx_range`` (default domain; the trailing ``/`` selects push/pop rather than start/end
    ranges) are profiled, the CSV goes to ``log_file``. ``launch_count`` (``--launch-count``) stops
    after that many profiled kernels, ``launch_skip`` (``--launch-skip``) skips the first ones,
    ``kernel_name`` (``--kernel-name``, ``regex:`` allowed) and ``kernel_id`` (``--kernel-id``,
    ``context:stream:name:invocation``) filter kernels further. ``--print-units base`` keeps
    values unscaled (nanoseconds, bytes); :func:`~mlms_ir.gpu.ncu_parse.parse_ncu_csv` scales
    other units anyway.
    """
    if page not in ("raw", "details"):
        raise MlmsIrError(f"the ncu CSV page must be 'raw' or 'details', not '{page}'")
    for name, value, allowed in (("replay mode", replay_mode, ("kernel", "application", "range", "app-range")),
                                 ("cache control", cache_control, ("all", "none")),
                                 ("clock control", clock_control, CLOCK_CONTROLS)):
        if value not in allowed:
            raise MlmsIrError(f"ncu {name} must be one of {', '.join(allowed)}, not '{value}'")
    if not metrics:
        raise MlmsIrError("no metrics to collect")
    cmd = [str(ncu), "--target-processes", "all"]
    if nvtx_range:
        cmd += ["--nvtx", "--nvtx-include", f"{nvtx_range}/"]
    cmd += ["--metrics", ",".join(metrics),
            "--replay-mode", replay_mode, "--cache-control", cache_control, "--clock-control", clock_control,
            "--csv", "--page", page, "--print-units", "base", "--log-file", os.fspath(log_file)]
    for flag, value in (("--launch-count", launch_count), ("--launch-skip", launch_skip)):
        if value is not None:
            if int(value) < 0 or (flag == "--launch-count" and int(value) == 0):
                raise MlmsIrError(f"{flag} must be a positive integer, not {value}")
            cmd += [flag, str(int(value))]
    if kernel_name:
        cmd += ["--kernel-name", kernel_name]
    if kernel_id:
        cmd += ["--kernel-id", kernel_id]
    cmd += list(extra_args)
    cmd += list(child_argv)
    return cmd
