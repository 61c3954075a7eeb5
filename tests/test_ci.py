"""CI runs what the README tells a developer to run: ``.ci/run`` holds the README's second
quick-start command verbatim (the whole suite, slow tests included, on pytest-xdist workers)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^## Quick start\n+```sh\n(.*?)```", text, re.S | re.M)
    assert block, "README.md has no '## Quick start' sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command_verbatim():
    commands = _quick_start()
    assert len(commands) == 2, commands  # set-up and analysis, set-up and the whole suite
    test = commands[1]
    assert ".[test]" in test and "-m pytest" in test
    args = test.split("-m pytest", 1)[1].split()
    assert "-m" not in args and "-k" not in args  # every test, the slow ones too
    assert args[args.index("-n") + 1] == "auto" and "--dist" in args  # in parallel, one worker per CPU
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci.splitlines(), f".ci/run does not run the README's command {test!r}"


def test_the_slow_marker_is_registered_and_xdist_is_in_the_test_extra():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert any(line.startswith("slow:") for line in cfg["tool:pytest"]["markers"].splitlines())
    extra = cfg["options.extras_require"]["test"].split()
    assert any(r.startswith("pytest-xdist") for r in extra) and any(r.startswith("filelock") for r in extra)
