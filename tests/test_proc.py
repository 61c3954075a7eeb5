"""The one child-process helper (:mod:`mlms_ir._proc`): deadlines kill the whole group, output is
kept, failures are worded, a foreign interpreter's environment is clean."""

from __future__ import annotations

import os
import sys
import time

import pytest

from mlms_ir._proc import ChildStartError, ChildTimeout, child_env, describe_exit, run_child, tail


def test_output_exit_status_and_stdin():
    code = "import sys; data = sys.stdin.read(); print(data.upper()); print('warn', file=sys.stderr); sys.exit(3)"
    done = run_child([sys.executable, "-c", code], timeout=30, stdin="hello")
    assert done.returncode == 3 and not done.ok
    assert done.stdout.strip() == "HELLO"
    assert done.tail() == "warn"
    assert done.how() == "exited with status 3"


def test_no_stdin_reads_eof():
    done = run_child([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"], timeout=30)
    assert done.ok and done.stdout.strip() == "''"


def test_timeout_kills_the_whole_group(tmp_path):
    # the child starts a grandchild that would write a file after 3 s; killing the group stops both
    marker = tmp_path / "late"
    grand = f"import time; time.sleep(3); open({str(marker)!r}, 'w').write('x')"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grand!r}]); time.sleep(60)"
    t0 = time.monotonic()
    with pytest.raises(ChildTimeout) as info:
        run_child([sys.executable, "-c", code], timeout=1.0)
    assert time.monotonic() - t0 < 20
    assert info.value.seconds == 1.0
    time.sleep(3.5)
    assert not marker.exists()


def test_terminate_grace_lets_the_child_clean_up(tmp_path):
    marker = tmp_path / "cleaned"
    code = ("import signal, sys, time\n"
            f"def bye(*a):\n    open({str(marker)!r}, 'w').write('x'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    with pytest.raises(ChildTimeout):
        run_child([sys.executable, "-c", code], timeout=1.5, grace_s=5.0)
    assert marker.exists()


def test_missing_program_is_a_start_error(tmp_path):
    with pytest.raises(ChildStartError, match="cannot start"):
        run_child([str(tmp_path / "no-such-python")], timeout=5)


def test_killed_by_a_signal_is_named():
    done = run_child([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], timeout=30)
    assert done.returncode < 0 and done.how() == "was killed by SIGKILL"
    assert describe_exit(-999) == "was killed by signal 999"


def test_output_dir_keeps_the_files(tmp_path):
    run_child([sys.executable, "-c", "print('kept')"], timeout=30, output_dir=tmp_path / "out")
    assert (tmp_path / "out" / "stdout.txt").read_text().strip() == "kept"


def test_foreign_environment(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/venv")
    env = child_env(foreign=True, extra={"LC_ALL": "C"})
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    assert env["PYTHONNOUSERSITE"] == "1" and env["LC_ALL"] == "C"
    assert child_env()["PYTHONPATH"] == "/somewhere"
    assert os.environ["PYTHONPATH"] == "/somewhere"  # ours untouched


def test_tail_keeps_the_last_non_blank_lines():
    assert tail("a\n\nb  \n c\n\n", 2) == "b\n c"
