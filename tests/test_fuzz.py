"""Fuzzing in the suite, bounded (issue #16): hostile single-op models (every ONNX op, extreme
integer attributes) and byte mutations of the embedded model are analysed or refused with an
``MlmsIrError``, never anything else; every finding ``tools/fuzz.py`` kept under
``tests/data/fuzz`` is replayed in a child process. The same with a symbolic leading dim and
constant integer inputs, hidden from ONNX's guarded inference so that the symbolic pass' in-process
per-node fallback to ONNX's C++ inference sees them first (a small fixed sample here).
``tools/fuzz.py`` runs the long version (10,000 attribute cases, 2,400 mutations, the symbolic cases)."""

from __future__ import annotations

import sys
from pathlib import Path

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlms_ir
from mlms_ir.errors import MlmsIrError
from mlms_ir.zoo import builtin_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import fuzz  # noqa: E402  (tools/fuzz.py: the case generators and the child runner)

CASES = list(fuzz.attribute_cases())
BASE = Path(builtin_path()).read_bytes()
SYMBOLIC = [c for c in fuzz.symbolic_cases() if c[0].endswith(".hidden")] + list(fuzz.symbolic_data_cases())
#: A fixed sample of the symbolic cases: a few seconds, every run the same.
SYMBOLIC_SAMPLE = random.Random(16).sample(SYMBOLIC, 24)
REGRESSIONS = sorted((ROOT / "tests" / "data" / "fuzz").glob("*.onnx"))


def _analysed_or_refused(data: bytes, lenient: bool) -> None:
    try:
        mlms_ir.analyze(mlms_ir.load(data, lenient=lenient))
    except MlmsIrError:
        pass


@pytest.mark.slow
@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(CASES), lenient=st.booleans())
def test_hostile_attributes_are_analysed_or_refused(case, lenient):
    _analysed_or_refused(case[1].SerializeToString(), lenient)


@pytest.mark.slow
@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_bytes_are_analysed_or_refused(seed):
    (_, data), = fuzz.mutations(BASE, 1, seed)
    _analysed_or_refused(data, lenient=False)


def test_the_generators_cover_every_op_with_integer_attributes():
    assert len(CASES) > 2000 and len({name.split(".")[0] for name, _ in CASES}) >= 100


@pytest.mark.parametrize("case", SYMBOLIC_SAMPLE, ids=[name for name, _ in SYMBOLIC_SAMPLE])
def test_hostile_symbolic_cases_are_analysed_or_refused(case):
    _analysed_or_refused(case[1].SerializeToString(), lenient=True)


def test_hidden_symbolic_cases_reach_the_per_node_fallback(monkeypatch):
    """The point of the ``.hidden`` cases: ONNX's guarded inference gets no rank for the op's input,
    so the symbolic pass asks ONNX's C++ inference about the node itself, in this process."""
    from mlms_ir.ir import symbolic_rules

    seen = []
    fallback = symbolic_rules._onnx_fallback
    monkeypatch.setattr(symbolic_rules, "_onnx_fallback", lambda c: (seen.append(c.node.op_type), fallback(c))[1])
    model = dict(fuzz.symbolic_cases(values=(0,)))["Col2Im.dilations=0.sym.hidden"]
    _analysed_or_refused(model.SerializeToString(), lenient=True)
    assert seen == ["Col2Im"]


def test_a_dim_beyond_int64_leaves_the_fallback_unasked():
    """x[n, 3, 4, 5] tiled twice by 2**40 (hidden from ONNX's inference) gives dim 1 = 3 * 2**80,
    which no protobuf dim holds: the per-node fallback is skipped (it raised ValueError), and the
    Multinomial's output stays unknown rather than a made-up number."""
    data = (ROOT / "tests" / "data" / "fuzz" / "multinomial_dim_3x2pow80_in_symbolic_fallback.onnx").read_bytes()
    analysis = mlms_ir.analyze(mlms_ir.load(data, lenient=True))
    tile2, multinomial = analysis.nodes[-2:]
    assert tile2.output_shapes[0][1] == 3 * 2**80 and multinomial.output_shapes == [None]


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_kept_findings_stay_fixed(path):
    for lenient in (False, True):
        outcome, detail, _, _ = fuzz.run_case(path.read_bytes(), lenient)
        assert outcome in ("analysed", "refused"), detail


def test_the_fallback_is_not_asked_about_axes_out_of_range():
    """ONNX's C++ GatherND inference segfaults on ``batch_dims`` -5 with inputs of known rank."""
    from types import SimpleNamespace

    from mlms_ir.ir.symbolic_rules import _axes_in_range

    ins = [("n", 3, 4, 5), (1, 1)]
    ok = [{"batch_dims": 0}, {"batch_dims": 2}, {"axes": [0, 5]}, {"axis": -4}, {"perm": [3, 2, 1, 0]}, {"group": 2**40}]
    bad = [{"batch_dims": -5}, {"batch_dims": -2**31}, {"axis": 2**31}, {"axes": [0, -2**63]}, {"perm": [0, 2**40]}]
    assert all(_axes_in_range(SimpleNamespace(ins=ins, attrs=a)) for a in ok)
    assert not any(_axes_in_range(SimpleNamespace(ins=ins, attrs=a)) for a in bad)


def test_a_hostile_axis_reaching_the_fallback_is_analysed(monkeypatch):
    """A GatherND with ``batch_dims=-5`` whose rank only the symbolic pass knows (a ``.sym.hidden``
    model), its symbolic rule made to give up: the fallback would hand it to ONNX's C++ inference,
    which segfaults on it; it is left unknown instead (in a forked child, so a crash is a finding)."""
    import onnx

    from mlms_ir.ir import symbolic_rules

    monkeypatch.setitem(symbolic_rules.SHAPE_RULES, "GatherND", lambda c: [None])
    schema = onnx.defs.get_schema("GatherND")
    model = fuzz._symbolic_model(schema, {"batch_dims": -5}, *fuzz._symbolic_inputs(schema), hidden=True)
    outcome, detail, _, _ = fuzz.run_case_forked(model.SerializeToString(), lenient=True)
    assert outcome in ("analysed", "refused"), detail


def test_an_axis_of_minus_2pow31_builds_no_huge_shape():
    """LayerNormalization with ``axis=-2**31`` on ``[n, 3, 4, 5]``: the symbolic rule built a tuple of
    2**31 ones (62 s, 16 GB on the loaded 2-core machine); the output is now unknown, in ~100 MB."""
    data = (ROOT / "tests" / "data" / "fuzz" / "layernorm_axis_min_int32_symbolic_16gb.onnx").read_bytes()
    outcome, detail, _, rss = fuzz.run_case_forked(data, lenient=True)
    assert outcome in ("analysed", "refused") and rss < 1 << 30, detail
