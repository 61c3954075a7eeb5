"""The wheel a regular ``pip install .`` builds holds every module and data file of the source tree.

The rest of the suite runs on an editable install and would not notice a package left out of the
wheel (as ``mlms_ir.datasets`` once was); ``tools/check_wheel.sh`` (run by CI) goes further and
installs the wheel in a fresh venv and runs every verb.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"mlms_ir": "mlms_ir", "backends": "mlms_ir/backends", "converters": "mlms_ir/converters", "zoo": "mlms_ir/zoo"}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy: a stale build/ folder in the checkout would fill the gaps of a bad package list
    src = tmp_path_factory.mktemp("src") / "mlms_ir"
    skip = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".venv", ".pytest_cache")
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for folder in ROOTS:
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, cwd=src,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("mlms_ir-*.whl")
    with zipfile.ZipFile(whl) as z:
        return set(z.namelist())


def _source_files(suffixes: tuple[str, ...]) -> dict[str, str]:
    """Installed path -> source path of every tracked-looking file under the mapped roots."""
    found = {}
    for folder, installed in ROOTS.items():
        for p in (REPO / folder).rglob("*"):
            if "__pycache__" in p.parts or not p.is_file() or p.suffix not in suffixes:
                continue
            rel = p.relative_to(REPO / folder).as_posix()
            if folder == "mlms_ir" and rel.split("/")[0] in ("backends", "converters", "zoo"):
                continue
            found[f"{installed}/{rel}"] = str(p.relative_to(REPO))
    return found


def test_wheel_holds_every_module(wheel_files):
    modules = _source_files((".py",))
    missing = sorted(src for inst, src in modules.items() if inst not in wheel_files)
    assert not missing, f"the wheel leaves out: {missing}"
    assert "mlms_ir/datasets/readers.py" in wheel_files


def test_wheel_holds_the_data_files(wheel_files):
    for path in ("mlms_ir/zoo/builtin/digits_cnn.onnx", "mlms_ir/data/devices.json",
                 "mlms_ir/report/vendor/chart.umd.min.js", "mlms_ir/report/templates/report.html.j2"):
        assert path in wheel_files
    manifests = _source_files((".json",))
    assert not sorted(s for i, s in manifests.items() if i.startswith("mlms_ir/zoo/manifests/") and i not in wheel_files)


def test_wheel_installs_no_generic_top_level_names(wheel_files):
    tops = {f.split("/")[0] for f in wheel_files if not f.split("/")[0].endswith(".dist-info")}
    assert tops == {"mlms_ir"}
