"""Fuzzing in the suite, bounded (issue #16): hostile single-op models (every ONNX op, extreme
integer attributes) and byte mutations of the embedded model are analysed or refused with an
``MlmsIrError``, never anything else; every finding ``tools/fuzz.py`` kept under
``tests/data/fuzz`` is replayed in a child process. ``tools/fuzz.py`` runs the long version
(10,000 attribute cases, 2,400 mutations)."""

from __future__ import annotations

import sys
from pathlib import Path

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


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_kept_findings_stay_fixed(path):
    for lenient in (False, True):
        outcome, detail, _, _ = fuzz.run_case(path.read_bytes(), lenient)
        assert outcome in ("analysed", "refused"), detail
