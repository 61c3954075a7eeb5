"""The one progress bar (:mod:`mlms_ir.progress`): on stderr, silent unless wanted and seen."""

from __future__ import annotations

import io
import re
import sys

import pytest

from mlms_ir.progress import progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _terminal(monkeypatch) -> FakeTerminal:
    # patched in the test itself: pytest puts its own stderr back between a fixture and the test
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setenv("COLUMNS", "120")
    return term


def test_counts_times_and_the_note_on_stderr(monkeypatch, capsys):
    terminal = _terminal(monkeypatch)
    with progress_bar(3, "sweep demo", keep=True) as bar:
        assert bar.shown
        for i in range(3):
            bar.advance(note=f"job {i}: done")
    last = _plain(terminal.getvalue()).strip().split("\r")[-1]
    assert "sweep demo" in last and "3/3" in last and "job 2: done" in last
    assert re.search(r"\d:\d\d:\d\d .*\d:\d\d:\d\d", last)  # elapsed and remaining
    assert capsys.readouterr().out == ""  # nothing on stdout


def test_bytes_show_sizes(monkeypatch):
    terminal = _terminal(monkeypatch)
    with progress_bar(2048, "w.pth", unit="bytes", completed=1024, keep=True) as bar:
        bar.update(2048)
    assert "2.0/2.0 kB" in _plain(terminal.getvalue())


def test_close_without_with_and_twice(monkeypatch):
    _terminal(monkeypatch)
    bar = progress_bar(None, "unknown size")  # a download without a length
    assert bar.shown
    bar.advance(10)
    bar.close()
    bar.close()
    assert not bar.shown


@pytest.mark.parametrize("kwargs", [{"enabled": False}, {"total": 0}])
def test_silent_when_disabled_or_nothing_to_do(monkeypatch, kwargs):
    terminal = _terminal(monkeypatch)
    args = {"total": 5, "description": "x", **kwargs}
    with progress_bar(args.pop("total"), args.pop("description"), **args) as bar:
        assert not bar.shown
        bar.advance(note="ignored")
        bar.update(3)
    assert terminal.getvalue() == ""


def test_silent_when_stderr_is_not_a_terminal(monkeypatch):
    out = io.StringIO()  # a pipe or a log file
    monkeypatch.setattr(sys, "stderr", out)
    with progress_bar(5, "x") as bar:
        assert not bar.shown
        bar.advance()
    assert out.getvalue() == ""


def test_unknown_unit():
    with pytest.raises(ValueError, match="unit"):
        progress_bar(1, "x", unit="files")  # type: ignore[arg-type]
