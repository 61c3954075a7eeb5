"""The Sphinx documentation builds with warnings as errors.

The build also checks the docs against the code: the counting-conventions table and the device
table are generated from the registry and ``devices.json``, and ``docs/schema.rst`` fails the
build when the JSON keys it describes differ from those ``Analysis.to_dict`` writes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("sphinx") is None, reason="sphinx is not installed (pip install '.[docs]')")
def test_docs_build_without_warnings(tmp_path):
    # -E: read every source afresh; -W --keep-going: every warning fails the build, all reported.
    cmd = [sys.executable, "-m", "sphinx", "-E", "-q", "-W", "--keep-going", "-b", "html", str(DOCS), str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"sphinx-build failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}"
    for page in ("index", "quickstart", "cli", "api", "conventions", "schema", "roofline", "errors"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    # The generated tables are there: every registered op and every known device.
    from mlms_ir.passes.registry import entries
    from mlms_ir.passes.roofline import known_devices

    conventions = (tmp_path / "html" / "conventions.html").read_text()
    assert conventions.count("<tr") >= len(entries()) + 1
    roofline = (tmp_path / "html" / "roofline.html").read_text()
    assert all(f">{name}<" in roofline for name in known_devices())
