#!/usr/bin/env python3
"""Fuzz ``mlms_ir.load`` + ``mlms_ir.analyze`` with hostile models: every ONNX op with extreme
integer attributes (with fixed input shapes, and with a symbolic leading dim and small constant
integer inputs, which drive the symbolic pass), and random byte and field mutations of small models.

The rule it checks: each model is analysed or refused with an :class:`mlms_ir.errors.MlmsIrError`;
anything else (another exception, a crash of this process, a run over the time or memory budget)
is a finding. Each case runs in a child process (forked from this one, ``run_case_forked``, or a
new interpreter with ``--subprocess``, ``run_case``), so a crash the guard misses is caught here
too; findings are written to ``--out`` (default ``tests/data/fuzz``) as regression models that
``tests/test_fuzz.py`` replays on every run. The symbolic cases (:func:`symbolic_cases`,
:func:`symbolic_data_cases`) aim at the symbolic pass' in-process per-node fallback to ONNX's C++
inference; ``--fallback-sweep`` calls that inference directly (:func:`fallback_sweep`).

    .venv/bin/python tools/fuzz.py --attributes 10000 --mutations 2400 --symbolic 10000 --fallback-sweep [--seconds 3600]
    .venv/bin/python tools/fuzz.py --wide --attributes 10000 --mutations 0 --symbolic 0 --seconds 3600

(``--wide``: every version of every op, more values, list attributes in three forms: 24,820
models, of which ``--attributes`` takes a seeded sample.)

Prints the environment, the counts (analysed, refused, findings), the slowest case, the peak
RSS of the children and how many cases reached the symbolic per-node fallback.
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
#: A forked case whose child peaks above this is a finding (a single-op model needs ~100 MB).
CASE_MEMORY_BYTES = 2 << 30


#: More integer values for a wide run (``--wide``): 16- and 32-bit edges, small odd values (a
#: stride or an axis that almost fits), a large prime.
WIDE = (2**15, -2**15 - 1, 2**32, -2**32 - 1, 2**62, -2**62, 3, -3, 5, 1_000_003)
#: How a list attribute (``INTS``) holds a value in a wide run: alone, twice, and beside 1s
#: (a 4-D ``pads`` or ``kernel_shape`` with one hostile entry).
LIST_FORMS = ((lambda v: [v, v]), (lambda v: [v]), (lambda v: [1, v, 1, v, 1, v, 1, v]))


def attribute_cases(values=EXTREMES, history: bool = False, list_forms=LIST_FORMS[:1]) -> Iterator[tuple[str, onnx.ModelProto]]:
    """One single-node model per (op, integer attribute, value) of every ONNX op (inputs
    float[2, 3, 4, 5], at the op's own opset); with ``history``, of every version of every op
    (ONNX's C++ inference differs from version to version), and a list attribute in each of
    ``list_forms``."""
    schemas = onnx.defs.get_all_schemas_with_history() if history else onnx.defs.get_all_schemas()
    for s in sorted(schemas, key=lambda s: (s.name, s.since_version)):
        if s.domain not in ("", "ai.onnx") or s.deprecated:
            continue
        ints = [a for a, v in s.attributes.items() if v.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        nin, nout = max(1, s.min_input), max(1, s.min_output)
        ins = [f"x{i}" for i in range(nin)]
        op = f"{s.name}-{s.since_version}" if history else s.name
        for a in ints:
            is_list = s.attributes[a].type == onnx.AttributeProto.INTS
            for v in values:
                for k, form in enumerate(list_forms if is_list else (None,)):
                    attr = {a: form(v) if is_list else v}
                    node = helper.make_node(s.name, ins, [f"y{i}" for i in range(nout)], **attr)
                    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, 3, 4, 5]) for x in ins],
                                          [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(nout)])
                    name = f"{op}.{a}={v}" + (f".list{k}" if k else "")
                    yield name, helper.make_model(g, opset_imports=[helper.make_opsetid("", s.since_version)])


#: Small constant values for the integer inputs that ops read as shapes, axes or counts (inputs
#: ``float[n, 3, 4, 5]``); an integer input not named here gets ``[1]`` when it is required and is
#: left out when it is optional.
INT_INPUTS: dict[tuple[str, str], list] = {
    ("Reshape", "shape"): [0, -1], ("Expand", "shape"): [1, 1, 1, 1], ("Tile", "repeats"): [1, 2, 1, 1],
    ("Slice", "starts"): [0], ("Slice", "ends"): [1], ("Slice", "axes"): [1], ("Slice", "steps"): [1],
    ("Pad", "pads"): [0, 0, 1, 1, 0, 0, 1, 1], ("Resize", "sizes"): [1, 3, 8, 10], ("TopK", "K"): [2],
    ("Unsqueeze", "axes"): [0], ("Squeeze", "axes"): [0], ("Split", "split"): [1, 2],
    ("GatherND", "indices"): [[0]], ("Gather", "indices"): [0], ("GatherElements", "indices"): [[[[0]]]],
    ("ConstantOfShape", "input"): [2, 3], ("ReduceSum", "axes"): [1], ("ReduceMean", "axes"): [1],
    ("ReduceMax", "axes"): [1], ("ReduceProd", "axes"): [1], ("CenterCropPad", "shape"): [2, 2],
    ("Col2Im", "image_shape"): [4, 5], ("Col2Im", "block_shape"): [1, 1], ("OneHot", "depth"): [3],
}
_INT_TYPES = {"tensor(int32)", "tensor(int64)"}


def _int_like(s, formal) -> bool:
    """Whether an op's input takes integers only (a shape, axes, a count)."""
    if formal.type_str in _INT_TYPES:
        return True
    allowed = {t.type_param_str: set(t.allowed_type_strs) for t in s.type_constraints}.get(formal.type_str)
    return bool(allowed) and allowed <= _INT_TYPES


def _symbolic_inputs(s) -> tuple[list[str], list[str], dict[str, list]]:
    """An op's inputs for the symbolic cases: names (``""`` for a left-out optional one), the float
    ones (``[n, 3, 4, 5]``) and the integer constants with their values."""
    ins: list[str] = []
    floats: list[str] = []
    consts: dict[str, list] = {}
    for i, f in enumerate(s.inputs):
        required = i < max(1, s.min_input)
        value = INT_INPUTS.get((s.name, f.name))
        if _int_like(s, f) and (required or value is not None):
            consts[f"k{i}"] = [1] if value is None else value
            ins.append(f"k{i}")
        elif required and not _int_like(s, f):
            floats.append(f"x{i}")
            ins.append(f"x{i}")
        else:
            ins.append("")
    if not s.inputs:  # no inputs listed
        ins, floats = ["x0"], ["x0"]
    while ins and not ins[-1]:
        ins.pop()
    return ins, floats, consts


def _symbolic_model(s, attr: dict, ins: list[str], floats: list[str], consts: dict[str, list], hidden: bool,
                    tile: int | None = None) -> onnx.ModelProto:  # noqa: PLR0913
    """One model for :func:`symbolic_cases` / :func:`symbolic_data_cases` (see there); ``tile`` tiles
    each float input's dim 1 by that factor first (hidden from ONNX's inference like the rest)."""
    import numpy as np

    nodes = []
    inits = [onnx.numpy_helper.from_array(np.array(c, dtype=np.int64), n) for n, c in consts.items()]
    feed = {n: n for n in ins if n}
    graph_inputs = list(floats)
    if hidden:  # z1 = [n - n], z0 = n - n: 0 to the symbolic pass, unknown to ONNX's guarded inference
        graph_inputs.append("hide")
        inits += [helper.make_tensor("hide_i1", TensorProto.INT64, [1], [0]), helper.make_tensor("hide_i0", TensorProto.INT64, [], [0])]
        nodes += [helper.make_node("Shape", ["hide"], ["hide_s"]),
                  helper.make_node("Gather", ["hide_s", "hide_i1"], ["hide_n1"]), helper.make_node("Sub", ["hide_n1", "hide_n1"], ["z1"]),
                  helper.make_node("Gather", ["hide_s", "hide_i0"], ["hide_n0"]), helper.make_node("Sub", ["hide_n0", "hide_n0"], ["z0"])]
        if tile is not None:
            inits.append(helper.make_tensor("hide_t0", TensorProto.INT64, [4], [1, tile, 1, 1]))
            nodes.append(helper.make_node("Add", ["hide_t0", "z0"], ["hide_t"]))
        for n in floats:
            src = n
            if tile is not None:
                nodes.append(helper.make_node("Tile", [n, "hide_t"], [f"{n}_t"]))
                src = f"{n}_t"
            nodes += [helper.make_node("Unsqueeze", [src, "z1"], [f"{n}_u"]),
                      helper.make_node("Squeeze", [f"{n}_u", "z1"], [f"{n}_h"])]
            feed[n] = f"{n}_h"
        for n in consts:
            nodes.append(helper.make_node("Add", [n, "z0"], [f"{n}_h"]))
            feed[n] = f"{n}_h"
    nout = max(1, s.min_output)
    nodes.append(helper.make_node(s.name, [feed.get(n, "") for n in ins], [f"y{i}" for i in range(nout)], **attr))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", 3, 4, 5] if x != "hide" else ["n"])
                                       for x in graph_inputs],
                          [helper.make_empty_tensor_value_info(f"y{i}") for i in range(nout)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", max(s.since_version, 13))])


def _symbolic_schemas():
    return [s for s in sorted(onnx.defs.get_all_schemas(), key=lambda s: s.name) if s.domain in ("", "ai.onnx") and not s.deprecated]


def symbolic_cases(values=EXTREMES, hidden: bool = True) -> Iterator[tuple[str, onnx.ModelProto]]:
    """:func:`attribute_cases` with a symbolic leading dim (float inputs ``[n, 3, 4, 5]``) and small
    constant int64 inputs where the op takes integers (:data:`INT_INPUTS`), so ``analyze`` runs the
    symbolic pass and its per-node fallback to ONNX's C++ inference (``symbolic_rules._onnx_fallback``).

    With ``hidden``, a second model per case (``.sym.hidden``) hides from ONNX's guarded inference
    (and mlms_ir's completion in the same child) what the symbolic pass still finds: with
    ``z = n - n`` from a ``hide[n]`` input's Shape (0 to the symbolic pass, unknown to ONNX), each
    float input passes through ``Squeeze(Unsqueeze(x, [z]), [z])`` (ONNX loses its rank, the symbolic
    pass keeps ``[n, 3, 4, 5]``) and each constant through ``Add(c, z)`` (ONNX loses its values),
    so the op's C++ inference first sees those shapes and values in the in-process per-node fallback.
    Opset: the op's newest version, at least 13 (Unsqueeze's axes as an input)."""
    for s in _symbolic_schemas():
        ints = [a for a, v in s.attributes.items() if v.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        ins, floats, consts = _symbolic_inputs(s)
        for variant in ("sym", "sym.hidden") if hidden else ("sym",):
            for a in ints:
                for v in values:
                    attr = {a: v if s.attributes[a].type == onnx.AttributeProto.INT else [v, v]}
                    yield f"{s.name}.{a}={v}.{variant}", _symbolic_model(s, attr, ins, floats, consts, variant == "sym.hidden")


#: Factors for dim 1 (3) in :func:`symbolic_data_cases`: dims near int32's and int64's ends.
TILES = (2**31, 2**61)


def symbolic_data_cases(values=EXTREMES, tiles=TILES) -> Iterator[tuple[str, onnx.ModelProto]]:
    """Hostile *values* and *dims* that only the symbolic pass sees (the ``.sym.hidden`` models of
    :func:`symbolic_cases`, default attributes): every element of one integer input set to an
    extreme value (``Reshape.shape=-2**63``...), and, per op, the float inputs' dim 1 tiled to
    ``3 * 2**31`` and ``3 * 2**61``. Covers ops with no integer attribute too (Slice, Pad, Tile,
    Expand)."""
    import numpy as np

    for s in _symbolic_schemas():
        ins, floats, consts = _symbolic_inputs(s)
        for k, base in consts.items():
            for v in values:
                hostile = consts | {k: np.full(np.shape(base), v, dtype=object).tolist()}
                yield f"{s.name}.{k}={v}.data", _symbolic_model(s, {}, ins, floats, hostile, True)
        if floats:
            for t in tiles:
                yield f"{s.name}.dim1=3x{t}.data", _symbolic_model(s, {}, ins, floats, consts, True, tile=t)


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


def run_case_forked(data: bytes, lenient: bool = False, timeout_s: float = CASE_TIMEOUT_S) -> tuple[str, str, float, int]:
    """:func:`run_case` in a child forked from this process, which has imported ``mlms_ir`` once
    (about 0.2 s a case instead of 1 s): the same outcomes, from ``fork`` instead of a new
    interpreter, plus a finding when the child peaks above :data:`CASE_MEMORY_BYTES` (its own RSS)."""
    import signal

    import mlms_ir
    from mlms_ir.errors import MlmsIrError

    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: one analysis, its outcome down the pipe, no atexit handlers of the parent
        os.close(r)
        from mlms_ir.ir import symbolic_rules

        fallback, calls = symbolic_rules._onnx_fallback, []
        symbolic_rules._onnx_fallback = lambda c: (calls.append(1), fallback(c))[1]  # counted, for the summary
        try:
            try:
                mlms_ir.analyze(mlms_ir.load(data, lenient=lenient))
                msg = "analysed"
            except MlmsIrError:
                msg = "refused"
            os.write(w, f"{len(calls)} ".encode())
        except BaseException as exc:  # noqa: BLE001 - a traceback is a finding
            msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000]
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    deadline = t0 + timeout_s
    status = None
    while status is None:
        done, st, usage = os.wait4(pid, os.WNOHANG)
        if done:
            status = st
        elif time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return "finding", f"ran past {timeout_s:g} s", time.perf_counter() - t0, 0
        else:
            time.sleep(0.005)
    dt = time.perf_counter() - t0
    with os.fdopen(r, "rb") as fh:
        out = fh.read().decode(errors="replace")
    rss = usage.ru_maxrss * 1024  # this case's child alone
    if os.WIFSIGNALED(status):
        return "finding", f"killed by signal {os.WTERMSIG(status)}", dt, rss
    if rss > CASE_MEMORY_BYTES:
        return "finding", f"peak RSS {rss / 2**30:.1f} GiB, above {CASE_MEMORY_BYTES / 2**30:g} GiB", dt, rss
    calls, _, outcome = out.partition(" ")
    if os.waitstatus_to_exitcode(status) == 0 and calls.isdigit() and outcome in ("analysed", "refused"):
        return outcome, f"{calls} fallback calls", dt, rss
    return "finding", f"exit {os.waitstatus_to_exitcode(status)}: {out or 'no message'}", dt, rss


def fallback_sweep(values=EXTREMES + (-5, 5), tiles=(None, 2**61)) -> tuple[int, list[str]]:
    """ONNX's per-node C++ inference called as ``symbolic_rules._onnx_fallback`` calls it (inputs of
    known rank with a symbolic leading dim, integer constants as data), each call in a fork: every
    op with every extreme integer attribute, and with every extreme value in each integer input.
    Returns the number of calls and the crashes ``_onnx_fallback`` would not screen out (it skips
    axis attributes out of range): those would kill the process. About 30 s for ~4,400 calls."""
    import signal
    from types import SimpleNamespace

    import numpy as np

    from mlms_ir.ir.symbolic_rules import _axes_in_range

    def type_of(dims, elem) -> bytes:
        tp = onnx.TypeProto()
        tp.tensor_type.elem_type = elem
        tp.tensor_type.shape.SetInParent()
        for d in dims:
            dim = tp.tensor_type.shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d
        return tp.SerializeToString()

    calls, unscreened = 0, []
    for s in _symbolic_schemas():
        ins, floats, consts = _symbolic_inputs(s)
        ints = [a for a, v in s.attributes.items() if v.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        variants = [({a: v if s.attributes[a].type == onnx.AttributeProto.INT else [v, v]}, consts, None) for a in ints for v in values]
        variants += [({}, consts | {k: np.full(np.shape(c), v, dtype=object).tolist()}, None) for k, c in consts.items() for v in values]
        variants += [({}, consts, t) for t in tiles if t and floats]
        for attrs, cs, tile in variants:
            dims = ["__mlms_s0", 3 * (tile or 1), 4, 5]
            types, data, shapes = {}, {}, []
            for n in ins:
                if n in cs:
                    arr = np.array(cs[n], dtype=np.int64)
                    types[n] = type_of(arr.shape, TensorProto.INT64)
                    data[n] = onnx.numpy_helper.from_array(arr, n).SerializeToString()
                    shapes.append(arr.shape)
                elif n:
                    types[n] = type_of(dims, TensorProto.FLOAT)
                    shapes.append(("n", *dims[1:]))
            node = helper.make_node(s.name, ins, [f"y{i}" for i in range(max(1, s.min_output))], **attrs)
            calls += 1
            pid = os.fork()
            if pid == 0:
                signal.alarm(int(CASE_TIMEOUT_S))
                try:
                    s._infer_node_outputs(node.SerializeToString(), types, data, {}, {"": max(s.since_version, 13)}, 10)
                except Exception:  # noqa: BLE001, S110 - ONNX refusing is fine; only a crash counts
                    pass
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status) and _axes_in_range(SimpleNamespace(ins=shapes, attrs=attrs)):
                unscreened.append(f"{s.name} {attrs or cs} dim1={dims[1]}: signal {os.WTERMSIG(status)}")
    return calls, unscreened


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attributes", type=int, default=10_000, help="attribute-fuzzed single-op models (at most)")
    ap.add_argument("--mutations", type=int, default=2_400, help="byte mutations of the embedded model")
    ap.add_argument("--symbolic", type=int, default=10_000,
                    help="models with a symbolic dim: hostile constant inputs and dims, then attribute-fuzzed (at most; analysed leniently)")
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    ap.add_argument("--fallback-sweep", action="store_true",
                    help="first call ONNX's per-node inference as the symbolic fallback does, for every op and extreme (fallback_sweep)")
    ap.add_argument("--wide", action="store_true",
                    help="attribute cases of every version of every op, with WIDE values too and list attributes in "
                         "LIST_FORMS (about 24,000 models, strict mode only)")
    ap.add_argument("--skip", type=int, default=0, help="skip the first N cases (after the seeded shuffle): resume a bounded run")
    ap.add_argument("--subprocess", action="store_true",
                    help="a new interpreter per case (run_case) instead of a fork of this one (run_case_forked)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "fuzz", help="where findings are kept")
    args = ap.parse_args(argv)
    from mlms_ir import __version__
    from mlms_ir.zoo import builtin_path

    print(f"mlms_ir {__version__}, onnx {onnx.__version__}, Python {platform.python_version()}, {platform.platform()}, "
          f"{os.cpu_count()} CPUs")
    if args.fallback_sweep:
        t0 = time.perf_counter()
        calls, unscreened = fallback_sweep()
        print(f"fallback sweep: {calls} per-node calls in {time.perf_counter() - t0:.0f} s, {len(unscreened)} crashes not screened out")
        for line in unscreened:
            print(f"FINDING fallback sweep: {line}", flush=True)
    cases: list[tuple[str, bytes, bool]] = []
    if args.wide:
        attribute = attribute_cases(EXTREMES + WIDE, history=True, list_forms=LIST_FORMS)
    else:
        attribute = attribute_cases()
    attribute = list(attribute)
    if args.wide:  # a bounded run samples every op, not the first ones in alphabetical order
        random.Random(1).shuffle(attribute)
    for name, m in attribute[: args.attributes]:
        data = m.SerializeToString()
        cases += [(name, data, False)] if args.wide else [(name, data, False), (name + ".lenient", data, True)]
    symbolic = list(symbolic_data_cases()) + list(symbolic_cases())
    cases += [(name, m.SerializeToString(), True) for name, m in symbolic[: args.symbolic]]
    base = Path(builtin_path()).read_bytes()
    cases += [(name, data, False) for name, data in mutations(base, args.mutations)]
    random.Random(0).shuffle(cases)  # a time-bounded run samples every op and both kinds, not the first few
    cases = cases[args.skip:]
    runner = run_case if args.subprocess or not hasattr(os, "fork") else run_case_forked
    deadline = time.monotonic() + args.seconds
    counts = {"analysed": 0, "refused": 0, "finding": 0}
    slowest, peak = ("", 0.0), 0
    fallback_cases = 0  # cases that reached the symbolic pass' per-node fallback (forked runs count them)
    for name, data, lenient in cases:
        if time.monotonic() > deadline:
            print(f"stopped after {args.seconds:g} s")
            break
        outcome, detail, dt, rss = runner(data, lenient)
        counts[outcome] += 1
        if detail.endswith(" fallback calls") and detail != "0 fallback calls":
            fallback_cases += 1
        peak = max(peak, rss)
        if dt > slowest[1]:
            slowest = (name, dt)
        done = sum(counts.values())
        if done % 500 == 0:
            print(f"{done} cases: {counts}, {fallback_cases} reached the fallback", flush=True)
        if outcome == "finding":
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{hashlib.sha256(data).hexdigest()[:16]}.onnx"
            path.write_bytes(data)
            print(f"FINDING {name}: {detail} -> {path}", flush=True)
    print(f"{sum(counts.values())} cases: {counts['analysed']} analysed, {counts['refused']} refused, {counts['finding']} findings; "
          f"slowest {slowest[0]} ({slowest[1]:.2f} s); peak child RSS {peak / 2**20:.0f} MiB; "
          f"{fallback_cases} reached the symbolic per-node fallback")
    return 1 if counts["finding"] or (args.fallback_sweep and unscreened) else 0


if __name__ == "__main__":
    sys.exit(main())
