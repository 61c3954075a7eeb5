"""One progress bar for mlms_ir's long loops (an evaluation, a sweep, a download), built on rich.

The bar goes to stderr, so it never mixes with a report printed on stdout, and it is silent when
it is not wanted: ``enabled=False``, stderr not a terminal (a pipe, a log file, a test), or nothing
to do (``total == 0``). It shows the description, the bar, the count (``M/N``, or bytes and speed
with ``unit="bytes"``), the elapsed and the remaining time, and an optional note that follows the
last thing done (a sweep's last job)::

    with progress_bar(len(jobs), "sweep nightly", enabled=show) as bar:
        for job in jobs:
            ...
            bar.advance(note=f"{job}: done")

It is also an object with :meth:`ProgressBar.close`, for a loop that already has its own
``try``/``finally``.
"""

from __future__ import annotations

import sys
from typing import Literal

#: Set by the command line's ``-q``/``--quiet``: no bar anywhere in this process.
quiet = False

#: What a bar counts: items (``M/N``) or bytes (sizes and transfer speed).
Unit = Literal["items", "bytes"]


class ProgressBar:
    """A running bar (or a silent one: every method then does nothing). Made by :func:`progress_bar`."""

    def __init__(self, total: int | None, description: str, *, enabled: bool = True, unit: Unit = "items",
                 completed: int = 0, keep: bool = False) -> None:
        if unit not in ("items", "bytes"):
            raise ValueError(f"unit is 'items' or 'bytes', not {unit!r}")
        self._rich = None
        self._task = None
        if not enabled or quiet or total == 0 or not _stderr_is_terminal():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        if total is None and unit == "items":  # one long step of unknown length: a spinner and the time so far
            columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
        else:
            count = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
            columns = (TextColumn("{task.description}"), BarColumn(), *count, TimeElapsedColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[note]}"))
        # stdout is left alone: a report printed meanwhile goes where it was sent, not above the bar on stderr
        self._rich = Progress(*columns, console=Console(file=sys.stderr), transient=not keep, redirect_stdout=False,
                              redirect_stderr=False)
        self._rich.start()
        self._task = self._rich.add_task(description, total=total, completed=completed, note="")

    @property
    def shown(self) -> bool:
        """Whether a bar is on the screen (False for a silent one)."""
        return self._rich is not None

    def advance(self, n: int = 1, *, note: str | None = None) -> None:
        """Count ``n`` more done; ``note`` replaces the text after the bar."""
        if self._rich is not None:
            self._rich.update(self._task, advance=n, **({} if note is None else {"note": note}))

    def update(self, completed: int) -> None:
        """Set how much is done (a download's bytes received so far)."""
        if self._rich is not None:
            self._rich.update(self._task, completed=completed)

    def close(self) -> None:
        """Stop the bar (it disappears unless made with ``keep=True``); closing twice is harmless."""
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int | None, description: str, *, enabled: bool = True, unit: Unit = "items", completed: int = 0,
                 keep: bool = False) -> ProgressBar:
    """Start a progress bar on stderr; use it as a context manager (or call ``close()``).

    Args:
        total: how much there is to do (None: unknown, as for a download without a length; with
            ``unit="items"`` a spinner, the elapsed time and the note: one long step such as an export).
        description: the text before the bar.
        enabled: False gives a silent bar (as does stderr not being a terminal, or ``total == 0``).
        unit: ``"items"`` shows ``M/N``; ``"bytes"`` shows sizes and the transfer speed.
        completed: how much is already done (a resumed download's bytes).
        keep: leave the finished bar on the screen (a sweep's summary line); by default it goes.
    """
    return ProgressBar(total, description, enabled=enabled, unit=unit, completed=completed, keep=keep)


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


__all__ = ["ProgressBar", "Unit", "progress_bar"]
