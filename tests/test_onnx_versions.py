"""The ONNX op-version facts the three compat modules share (``backends/onnx_versions.py``): one
copy, importable standalone beside the modules that run in the onnx-tf and MXNet environments."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from mlms_ir.backends import mxnet_compat, onnx2torch_compat, onnx_tf_compat, onnx_versions
from mlms_ir.backends.onnx_versions import ONES, keeps_old_behaviour, new_value


def test_the_module_imports_nothing():
    tree = ast.parse(Path(onnx_versions.__file__).read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["__future__"]


def test_the_compat_modules_share_one_copy_of_the_facts():
    assert onnx_tf_compat.SAME_AS is onnx_versions.SAME_AS is onnx2torch_compat.SAME_AS
    assert onnx_tf_compat.SAME_WHEN_DEFAULT is onnx_versions.SAME_WHEN_DEFAULT is onnx2torch_compat.SAME_WHEN_DEFAULT
    assert mxnet_compat.AXES_INPUT is onnx_versions.AXES_INPUT is onnx_tf_compat.AXES_INPUT is onnx2torch_compat.AXES_INPUT
    for module in (mxnet_compat, onnx2torch_compat, onnx_tf_compat):  # none keeps a table of its own
        src = Path(module.__file__).read_text()
        assert not any(f"\n{name} = " in src for name in ("SAME_AS", "SAME_WHEN_DEFAULT", "AXES_INPUT", "REDUCE_18", "REFUSED"))


def test_the_facts_agree_with_onnx():
    """Every version named is a version ONNX has, and the older one is the op's version just before
    the new one (or earlier: only types changed in between)."""
    for op, (versions, old) in onnx_versions.SAME_AS.items():
        for v in versions:
            assert onnx.defs.get_schema(op, v).since_version == v
            assert onnx.defs.get_schema(op, v - 1).since_version >= old
    for op, (versions, old, _, inputs) in onnx_versions.SAME_WHEN_DEFAULT.items():
        assert onnx.defs.get_schema(op, old).since_version == old
        assert onnx.defs.get_schema(op, old).max_input == inputs
        assert all(onnx.defs.get_schema(op, v).since_version == v for v in versions)
    for op, version in onnx_versions.AXES_INPUT.items():
        schema = onnx.defs.get_schema(op, version)
        assert schema.since_version == version and "axes" in [i.name for i in schema.inputs]
        assert "axes" in onnx.defs.get_schema(op, version - 1).attributes
    assert onnx_versions.REDUCE_18[0] == "ReduceMean" and "ReduceSum" not in onnx_versions.REDUCE_18


@pytest.mark.parametrize("value, ok, keeps", [
    ("none", {"none"}, True), (b"none", {"none"}, True), ("add", {"none"}, False),
    ([1, 1], {ONES}, True), ((1, 2), {ONES}, False), (0, {0}, True), (1, {0}, False),
    ([0], set(), False),  # Resize's axes: none may be given
])
def test_keeps_old_behaviour(value, ok, keeps):
    assert keeps_old_behaviour(value, ok) is keeps


def test_new_value():
    assert new_value("Resize", {"coordinate_transformation_mode": b"half_pixel_symmetric"}) == \
        ("coordinate_transformation_mode", "half_pixel_symmetric")
    assert new_value("Pad", {"mode": "wrap"}) == ("mode", "wrap")
    assert new_value("Pad", {"mode": "reflect"}) is None
    assert new_value("Pad", {"mode": [1]}) is None  # not a string: not one of them
    assert new_value("Relu", {}) is None


def test_the_standalone_modules_import_beside_their_facts(tmp_path):
    """As the agent imports them (from backends/) and as onnx_tf_export imports its copy, with no
    mlms_ir to be found."""
    backends = Path(onnx_versions.__file__).parent
    code = ("import sys; sys.modules['mlms_ir'] = None; sys.path.insert(0, sys.argv[1]);"
            "import onnx_tf_compat, mxnet_compat, onnx_versions;"
            "assert onnx_tf_compat.SAME_AS is onnx_versions.SAME_AS is not None;"
            "assert mxnet_compat.AXES_INPUT is onnx_versions.AXES_INPUT; print('ok')")
    for name in ("onnx_tf_compat.py", "onnx_versions.py"):  # what converters/onnx_tf.py copies
        (tmp_path / name).write_text((backends / name).read_text())
    (tmp_path / "mxnet_compat.py").write_text((backends / "mxnet_compat.py").read_text())
    for folder in (backends, tmp_path):
        done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=tmp_path)
        assert done.stdout.strip() == "ok", done.stderr
