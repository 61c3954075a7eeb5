#!/usr/bin/env python3
"""Fuzz ``mlms_ir.load`` + ``mlms_ir.analyze`` with hostile models: every ONNX op with extreme
integer attributes, and random byte and field mutations of small models.

The rule it checks: each model is analysed or refused with an :class:`mlms_ir.errors.MlmsIrError`;
anything else (another exception, a crash of this process, a run over the time or memory budget)
is a finding. Each case runs in a child process (``run_case``), so a crash the guard misses is
caught here too; findings are written to ``--out`` (default ``tests/data/fuzz``) as regression
models that ``tests/test_fuzz.py`` replays on every run.

    .venv/bin/python tools/fuzz.py --attributes 10000 --mutations 2400 [--seconds 3600]

Prints the environment, the counts (analysed, refused, findings), the slowest case and the peak
RSS of the children.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
#: Integer attribute values that break code which trusts them.
EXTREMES = (2**31, -2**31, 2**31 - 1, 2**63 - 1, -2**63, 2**40, -2**40, 0, -1, 1)
#: Budgets per case: the rule is "refused or analysed", fast and small.
CASE_TIMEOUT_S = 120.0


def attribute_cases(values=EXTREMES) -> Iterator[tuple[str, onnx.ModelProto]]:
    """One single-node model per (op, integer attribute, value) of every ONNX op (inputs
    float[2, 3, 4, 5], at the op's own opset)."""
    for s in sorted(onnx.defs.get_all_schemas(), key=lambda s: s.name):
        if s.domain not in ("", "ai.onnx") or s.deprecated:
            continue
        ints = [a for a, v in s.attributes.items() if v.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        nin, nout = max(1, s.min_input), max(1, s.min_output)
        ins = [f"x{i}" for i in range(nin)]
        for a in ints:
            for v in values:
                attr = {a: v if s.attributes[a].type == onnx.AttributeProto.INT else [v, v]}
                node = helper.make_node(s.name, ins, [f"y{i}" for i in range(nout)], **attr)
                g = helper.make_graph([node], "g", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, 3, 4, 5]) for x in ins],
                                      [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(nout)])
                yield f"{s.name}.{a}={v}", helper.make_model(g, opset_imports=[helper.make_opsetid("", s.since_version)])


def mutations(data: bytes, count: int, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """``count`` byte-level mutations of a serialized model: flipped bytes, truncations,
    duplicated and deleted runs."""
    rng = random.Random(seed)
    for k in range(count):
        b = bytearray(data)
        kind = k % 4
        if kind == 0:
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 1:
            del b[rng.randrange(1, len(b)):]
        elif kind == 2:
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 64)]
        else:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 64)]
        yield f"mutation{k}.{kind}", bytes(b)


CHILD = r"""
import sys
import mlms_ir
from mlms_ir.errors import MlmsIrError
data = sys.stdin.buffer.read()
try:
    mlms_ir.analyze(mlms_ir.load(data, lenient=sys.argv[1] == "1"))
    print("analysed")
except MlmsIrError:
    print("refused")
"""


def run_case(data: bytes, lenient: bool = False, timeout_s: float = CASE_TIMEOUT_S) -> tuple[str, str, float, int]:
    """Analyse one serialized model in a child: (outcome, detail, seconds, peak RSS bytes).
    Outcomes: ``analysed``, ``refused`` (the rule holds), ``finding`` (a traceback, a crash, a timeout)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-c", CHILD, "1" if lenient else "0"], input=data, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "finding", f"ran past {timeout_s:g} s", time.perf_counter() - t0, 0
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode == 0 and out in ("analysed", "refused"):
        return out, "", dt, rss
    tail = p.stderr.decode(errors="replace").strip().splitlines()
    return "finding", f"exit {p.returncode}: {tail[-1] if tail else 'no message'}", dt, rss


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attributes", type=int, default=10_000, help="attribute-fuzzed single-op models (at most)")
    ap.add_argument("--mutations", type=int, default=2_400, help="byte mutations of the embedded model")
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "fuzz", help="where findings are kept")
    args = ap.parse_args(argv)
    from mlms_ir import __version__
    from mlms_ir.zoo import builtin_path

    print(f"mlms_ir {__version__}, onnx {onnx.__version__}, Python {platform.python_version()}, {platform.platform()}, "
          f"{os.cpu_count()} CPUs")
    cases: list[tuple[str, bytes, bool]] = []
    for name, m in list(attribute_cases())[: args.attributes]:
        data = m.SerializeToString()
        cases += [(name, data, False), (name + ".lenient", data, True)]
    base = Path(builtin_path()).read_bytes()
    cases += [(name, data, False) for name, data in mutations(base, args.mutations)]
    random.Random(0).shuffle(cases)  # a time-bounded run samples every op and both kinds, not the first few
    deadline = time.monotonic() + args.seconds
    counts = {"analysed": 0, "refused": 0, "finding": 0}
    slowest, peak = ("", 0.0), 0
    for name, data, lenient in cases:
        if time.monotonic() > deadline:
            print(f"stopped after {args.seconds:g} s")
            break
        outcome, detail, dt, rss = run_case(data, lenient)
        counts[outcome] += 1
        peak = max(peak, rss)
        if dt > slowest[1]:
            slowest = (name, dt)
        if outcome == "finding":
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{hashlib.sha256(data).hexdigest()[:16]}.onnx"
            path.write_bytes(data)
            print(f"FINDING {name}: {detail} -> {path}")
    print(f"{sum(counts.values())} cases: {counts['analysed']} analysed, {counts['refused']} refused, {counts['finding']} findings; "
          f"slowest {slowest[0]} ({slowest[1]:.2f} s); peak child RSS {peak / 2**20:.0f} MiB")
    return 1 if counts["finding"] else 0


if __name__ == "__main__":
    sys.exit(main())
