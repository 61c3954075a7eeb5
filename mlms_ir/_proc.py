"""The one way mlms_ir starts a child process: its own session, a deadline, nothing left behind.

Every child (a framework agent in a foreign Python, a converter script, a sweep worker, ncu) goes
through :func:`run_child`, so they share one set of rules:

* the child leads its own session (process group): a timeout or an interrupt of ours kills the
  whole group, the child's own children too, never just the first process;
* on timeout the group gets ``SIGTERM`` first when ``grace_s`` is set (ncu restores the GPU
  clocks it locked), then ``SIGKILL``; :class:`ChildTimeout` is raised;
* a child that cannot start raises :class:`ChildStartError` (the OS error in words);
* stdout and stderr go to files, never pipes, so a chatty child can never block on a full pipe;
  the result holds their text (decoded with replacement) and the paths;
* a foreign interpreter (``foreign=True``: an agent environment's Python) gets an environment
  without what would make it import our packages or user site.

Callers word the failures in their own error types; this module raises only the two above.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Lines of a child's stderr quoted in an error message.
TAIL_LINES = 20

#: Variables removed from a foreign interpreter's environment (they would point it at our packages).
_FOREIGN_DROP = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


class ChildStartError(Exception):
    """The child process could not be started (missing interpreter, no permission)."""


class ChildTimeout(TimeoutError):
    """The child ran past its deadline; its process group was killed."""

    def __init__(self, seconds: float, cmd: Sequence[str]) -> None:
        super().__init__(f"{os.path.basename(str(cmd[0])) if cmd else 'child'} ran past {seconds:g} s and was killed")
        self.seconds = seconds
        self.cmd = list(cmd)


@dataclass
class Finished:
    """A child that ran to its end (whatever its exit status)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def how(self) -> str:
        """How it ended, in words: "exited with status 3", "was killed by SIGSEGV"."""
        return describe_exit(self.returncode)

    def tail(self, lines: int = TAIL_LINES, *, stdout_too: bool = True) -> str:
        """The last non-blank lines of its stderr (of its stdout when stderr is empty)."""
        return tail(self.stderr, lines) or (tail(self.stdout, lines) if stdout_too else "")


def describe_exit(returncode: int) -> str:
    """A return code in words: a negative one is the signal that killed the process."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of ``text``, each stripped of trailing space."""
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def child_env(*, foreign: bool = False, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment for a child; with ``foreign``, without what would make another Python
    import our packages (PYTHONPATH, a virtualenv's markers, the user site) and with quieter
    TensorFlow logs."""
    env = dict(os.environ)
    if foreign:
        env = {k: v for k, v in env.items() if k not in _FOREIGN_DROP}
        env["PYTHONNOUSERSITE"] = "1"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra or {})
    return env


def kill_group(proc: subprocess.Popen, *, grace_s: float = 0.0) -> None:
    """Kill the process group ``proc`` leads (``SIGTERM`` and ``grace_s`` seconds first when
    ``grace_s`` > 0), then reap it."""
    steps = ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)) if grace_s > 0 else ((signal.SIGKILL, 10.0),)
    for sig, wait in steps:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except (ProcessLookupError, OSError):
                pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(cmd: Sequence[str | os.PathLike[str]], *, timeout: float | None, stdin: str | None = None,
              env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              grace_s: float = 0.0, output_dir: str | os.PathLike[str] | None = None) -> Finished:
    """Run ``cmd`` to its end or its deadline and return what it printed.

    Args:
        cmd: the program and its arguments.
        timeout: seconds before the child's process group is killed (None: no deadline).
        stdin: text written to its standard input (None: no input, ``/dev/null``).
        env: its environment (default: ours; see :func:`child_env`).
        cwd: its working folder.
        grace_s: on timeout, seconds between ``SIGTERM`` and ``SIGKILL`` (0: ``SIGKILL`` at once).
        output_dir: where ``stdout.txt`` and ``stderr.txt`` are kept (they stay for the caller to
            read); by default a temporary folder removed on return.

    Raises:
        ChildStartError: the program could not be started.
        ChildTimeout: it ran past ``timeout`` (the group was killed).
    """
    argv = [os.fspath(c) for c in cmd]
    if output_dir is None:
        with tempfile.TemporaryDirectory(prefix="mlms_ir_child_") as tmp:
            return _run(argv, Path(tmp), timeout, stdin, env, cwd, grace_s)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _run(argv, out, timeout, stdin, env, cwd, grace_s)


def _run(argv: list[str], folder: Path, timeout: float | None, stdin: str | None, env: Mapping[str, str] | None,
         cwd: str | os.PathLike[str] | None, grace_s: float) -> Finished:
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        stdin_file = None
        try:
            if stdin is not None:
                stdin_file = tempfile.TemporaryFile()
                stdin_file.write(stdin.encode("utf-8"))
                stdin_file.seek(0)
            try:
                proc = subprocess.Popen(argv, stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
                                        stdout=out, stderr=err, env=dict(env) if env is not None else None, cwd=cwd,
                                        start_new_session=True)
            except OSError as exc:
                raise ChildStartError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc, grace_s=grace_s)
                raise ChildTimeout(float(timeout or 0.0), argv) from None
            except BaseException:  # KeyboardInterrupt: never leave the child behind
                kill_group(proc, grace_s=grace_s)
                raise
        finally:
            if stdin_file is not None:
                stdin_file.close()
    read = lambda p: p.read_text(encoding="utf-8", errors="replace")  # noqa: E731
    return Finished(rc, read(out_path), read(err_path))
