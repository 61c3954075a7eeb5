"""ONNX's node conformance cases through every mlms_ir backend: pass, refused, wrong or crash.

The onnx wheel ships the generators of its backend node tests (``onnx/backend/test/case/node``),
not their data: :func:`onnx.backend.test.case.node.collect_testcases` builds the ~1,900 cases in
memory, each one model and one (inputs, expected outputs) pair. Every case runs on every backend
through the public API (``mlms_ir.load``, then ``registry.get(name).prepare(graph, "cpu").run``)
and gets one verdict:

``pass``
    every output agrees with the expected one: the dtype and shape are the same, and floats are
    within ``|got - expected| <= atol + rtol * |expected|`` (:data:`ATOL`, :data:`RTOL`, the rule of
    :func:`mlms_ir.comparator.compare_outputs`); integers, booleans and strings are exact;
``refused``
    mlms_ir raised one of its own errors (an :class:`~mlms_ir.errors.MlmsIrError`) with a message:
    the backend, or mlms_ir before it, declined the model, and said so;
``wrong``
    it returned outputs, and one of them differs: the one thing mlms_ir must never do;
``crash``
    any other exception, a worker that died or hung (past ``--timeout-s``), or an agent crash:
    a bug.

The bare runtimes run the same cases outside mlms_ir (``bare:ort``: an ``onnxruntime``
``InferenceSession`` with its default optimisations; ``bare:reference``: ``onnx.reference``'s
``ReferenceEvaluator``), so the table says where mlms_ir does worse than the runtime it wraps.

Cases run in worker processes (``--jobs`` of them; each case is sent to a worker, which answers
with the verdict), so a case that hangs is killed after ``--timeout-s`` and one that kills its
process takes only itself down. Writes the results as JSON (``--json``, by default
``tests/data/conformance.json``, which ``tests/test_conformance.py`` holds the backends to) and
the page ``docs/conformance.rst`` (``--rst``)::

    python tools/conformance.py [--backends ort reference torch ort-isolated] [--bare ort reference]
                                [--cases REGEX] [--sample N] [--jobs 2] [--timeout-s 60] [--json OUT] [--rst OUT]
    python tools/conformance.py --render tests/data/conformance.json   # the page alone

The worker backends ``mxnet`` and ``onnx-tf`` run in their own environments (``bash
tools/make_agent_envs.sh``); they are not in the default set. Each worker keeps one agent process
serving ``--agent-reuse`` cases (``MLMS_IR_AGENT_REUSE``: TensorFlow's import, seconds, once
instead of per case); ``--merge`` puts them into the existing table without running the others::

    python tools/conformance.py --backends mxnet onnx-tf --bare --merge       # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import platform
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1
#: The tolerance of float outputs (the issue's: onnx's own runner uses atol 1e-7).
ATOL, RTOL = 1e-5, 1e-3
#: The backends run by default: those of the core and the torch extra, and ORT in a worker.
DEFAULT_BACKENDS = ("ort", "reference", "torch", "ort-isolated")
#: The bare runtimes: ``bare:<name>`` runs the case outside mlms_ir.
BARE = ("ort", "reference")
#: The mlms_ir backend each bare runtime is the baseline of.
BASELINE_OF = {"ort": "bare:ort", "ort-isolated": "bare:ort", "reference": "bare:reference"}
VERDICTS = ("pass", "refused", "wrong", "crash")
#: (atol, rtol) of float16 and bfloat16 outputs: the comparator's rows for those precisions
#: (:data:`mlms_ir.comparator.TOLERANCES`), as a float32 tolerance is below their resolution.
LOW_PRECISION = {"float16": "fp16", "bfloat16": "bf16"}
#: Ops whose outputs are sums of many terms, some exactly 0 (the imaginary part of a real
#: signal's bins): float32 rounding of the large terms leaves ~1e-7 of the output's magnitude
#: there, so their atol is scaled by the largest expected magnitude.
SUMS = ("DFT", "STFT")
#: Cases whose outputs are random draws (regular expression on the name): only their dtypes and
#: shapes are compared.
RANDOM = re.compile(r"^test_bernoulli|^test_training_dropout(?!_zero_ratio)|^test_random")
#: Characters of a message kept in the results.
MESSAGE_CHARS = 240
#: Cases a worker runs before it is replaced (bounds what leaks from one case to the next).
CASES_PER_WORKER = 400
#: Requests one agent process of a worker backend (mxnet, onnx-tf) serves before it is replaced
#: (``MLMS_IR_AGENT_REUSE``; 0: a fresh agent per case, seconds each for TensorFlow's import).
AGENT_REUSE = 100
#: case -> why an mlms_ir backend refuses it although the bare runtime passes it (the page says so).
WORSE_WHY = {
    "test_mvn": "ONNX's own checker rejects this case's model (``onnx.checker.check_model(model, full_check=True)`` "
                "and strict shape inference, onnx 1.23: the body of MeanVarianceNormalization-13's function, "
                "expanded at the default ``axes``, holds a Constant with no value). mlms_ir refuses a model ONNX's "
                "strict inference rejects, with that message; ``--lenient`` (``lenient=True``) analyses and runs it.",
}


# ---------------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One ONNX node test case."""

    name: str
    #: The op the case tests (``domain:Op`` outside the default domain).
    op: str
    #: The opset of that op's domain in the model.
    opset: int
    #: The serialized model.
    model: bytes
    #: Graph input name -> value (an array; a list for a sequence, a dict for a map, None for an
    #: empty optional).
    inputs: dict[str, Any]
    #: Graph output name -> the expected value.
    expected: dict[str, Any]
    #: Whether an input or output is a sequence, map or optional rather than a tensor.
    non_tensor: bool


def _is_tensor_type(t) -> bool:
    return t.HasField("tensor_type") or t.HasField("sparse_tensor_type")


def _op_of(model) -> tuple[str, str]:
    """(domain, op) of a one-node model."""
    node = model.graph.node[0]
    return ("" if node.domain == "ai.onnx" else node.domain), node.op_type


def load_cases(pattern: str | None = None) -> list[Case]:
    """ONNX's node test cases (those whose name matches ``pattern``, a regular expression searched
    in the name), in onnx's order. A multi-node case (``*_expanded``: a function's body) is filed
    under the op of the one-node case its name extends."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            from onnx.backend.test.case.node import collect_testcases

            raw = collect_testcases()
    single = {c.name: _op_of(c.model) for c in raw if len(c.model.graph.node) == 1}
    prefixes = sorted(single, key=len, reverse=True)
    out: list[Case] = []
    rx = re.compile(pattern) if pattern else None
    for c in raw:
        if rx is not None and not rx.search(c.name):
            continue
        if c.name in single:
            domain, op = single[c.name]
        else:
            base = re.sub(r"_expanded.*$", "", c.name)
            hit = next((p for p in prefixes if base == p or base.startswith(p + "_")), None)
            domain, op = single[hit] if hit else ("" if c.model.graph.node[-1].domain == "ai.onnx" else c.model.graph.node[-1].domain,
                                                   c.model.graph.node[-1].op_type)
        opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in c.model.opset_import}
        g = c.model.graph
        inits = {t.name for t in g.initializer}
        in_names = [i.name for i in g.input if i.name not in inits]
        inputs, outputs = (_values(v) for v in c.data_sets[0])
        non_tensor = any(not _is_tensor_type(v.type) for v in [*g.input, *g.output])
        out.append(Case(c.name, f"{domain}:{op}" if domain else op, opsets.get(domain, 0), c.model.SerializeToString(),
                        dict(zip(in_names, inputs)), {o.name: v for o, v in zip(g.output, outputs)}, non_tensor))
    return out


def _values(values: Sequence[Any]) -> list[Any]:
    """A data set's values as arrays (a few generators store a TensorProto: int16 QuantizeLinear)."""
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v for v in values]


# ---------------------------------------------------------------------------------------------- verdicts
def _exact(dtype: np.dtype) -> bool:
    """Whether values of ``dtype`` must match exactly (integers, booleans, strings; ml_dtypes'
    int4/uint4/int2 too)."""
    if dtype.kind in "iubUSO":
        return True
    return dtype.kind == "V" and "int" in dtype.name


def _as_numeric(a: np.ndarray) -> np.ndarray:
    """ml_dtypes' floats (bfloat16, float8, float4) as float32, to compare as numbers."""
    if a.dtype.kind == "V":
        try:
            return a.astype(np.float32)
        except (TypeError, ValueError):
            return a
    return a


def difference(expected: Any, got: Any, atol: float = ATOL, rtol: float = RTOL, *, values: bool = True,
               scaled: bool = False) -> str | None:
    """Why ``got`` differs from ``expected`` (None when it does not): a value, a sequence (list)
    of values, a map (dict) or an empty optional (None), compared as the module says. With
    ``values`` False only dtypes and shapes are compared (random draws); with ``scaled`` the atol
    is multiplied by the largest expected magnitude (:data:`SUMS`)."""
    from mlms_ir.comparator import TOLERANCES, compare_outputs

    def again(e: Any, g: Any) -> str | None:
        return difference(e, g, atol, rtol, values=values, scaled=scaled)

    if expected is None:
        return None if got is None else f"expected an empty optional, got {type(got).__name__}"
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"expected a map with keys {sorted(expected)[:5]}, got {type(got).__name__}"
        for k in expected:
            d = again(expected[k], got[k])
            if d:
                return f"key {k!r}: {d}"
        return None
    if isinstance(expected, list):
        if not isinstance(got, (list, tuple)):
            return f"expected a sequence of {len(expected)}, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"expected a sequence of {len(expected)}, got one of {len(got)}"
        for k, (e, g) in enumerate(zip(expected, got)):
            d = again(e, g)
            if d:
                return f"element {k}: {d}"
        return None
    if got is None or isinstance(got, (list, dict)):
        return f"expected a tensor, got {'an empty optional' if got is None else type(got).__name__}"
    e, g = np.asarray(expected), np.asarray(got)
    strings = e.dtype.kind in "USO" and g.dtype.kind in "USO"  # numpy holds strings either way
    if e.dtype != g.dtype and not strings:
        return f"dtype {g.dtype}, expected {e.dtype}"
    if e.shape != g.shape:
        return f"shape {g.shape}, expected {e.shape}"
    if not values:
        return None
    if strings:
        differ = int(np.count_nonzero(e.astype(object) != g.astype(object)))
        return f"{differ} of {e.size} strings differ" if differ else None
    exact = _exact(e.dtype)
    if exact:
        atol = rtol = 0.0
    elif e.dtype.name in LOW_PRECISION:
        atol, rtol = (max(a, b) for a, b in zip((atol, rtol), TOLERANCES[LOW_PRECISION[e.dtype.name]]))
    if scaled and not exact and e.size:
        with np.errstate(all="ignore"):
            big = float(np.nanmax(np.where(np.isfinite(_as_numeric(e)), np.abs(_as_numeric(e)), 0)))
        atol *= max(1.0, big)
    verdict = compare_outputs({"y": _as_numeric(e)}, {"y": _as_numeric(g)}, atol=atol, rtol=rtol)
    if verdict["agree"]:
        return None
    return (f"{verdict['beyond_tolerance']} of {verdict['elements_compared']} elements differ "
            f"(max abs {verdict['max_abs_diff']:.3g}, max rel {verdict['max_rel_diff']:.3g})")


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:MESSAGE_CHARS]


def _bare_outputs(runtime: str, case: Case) -> dict[str, Any]:
    import onnx

    model = onnx.ModelProto.FromString(case.model)
    names = [o.name for o in model.graph.output]
    # a few cases give a numpy scalar (CumSum's axis): ORT takes arrays only
    feeds = {k: np.asarray(v) if isinstance(v, np.generic) else v for k, v in case.inputs.items()}
    if runtime == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3  # quiet: no optimisation setting changed
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(case.model, so, providers=["CPUExecutionProvider"])
        return dict(zip(names, sess.run(None, feeds)))
    if runtime == "reference":
        from onnx.reference import ReferenceEvaluator

        return dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))
    raise ValueError(f"no bare runtime '{runtime}'; known: {', '.join(BARE)}")


def run_case(backend: str, case: Case) -> dict[str, Any]:
    """One verdict: ``{"status", "stage" (load, prepare, run, compare), "message", "seconds"}``.
    ``backend`` is an mlms_ir backend name or ``bare:<runtime>``."""
    import mlms_ir
    from mlms_ir.backends import registry
    from mlms_ir.errors import AgentCrashError, AgentTimeoutError, MlmsIrError

    t0 = time.perf_counter()
    stage = "load"

    def verdict(status: str, message: str = "") -> dict[str, Any]:
        return {"status": status, "stage": stage, "message": one_line(message), "seconds": round(time.perf_counter() - t0, 4)}

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if backend.startswith("bare:"):
                stage = "run"
                got = _bare_outputs(backend[5:], case)
            else:
                graph = mlms_ir.load(case.model)
                stage = "prepare"
                session = registry.get(backend).prepare(graph, "cpu")
                stage = "run"
                with session:
                    got = session.run(dict(case.inputs))
    except (AgentCrashError, AgentTimeoutError) as exc:
        return verdict("crash", f"{type(exc).__name__}: {exc}")
    except MlmsIrError as exc:  # a refusal says why: one without a message is a bug too
        return verdict("refused" if str(exc).strip() else "crash", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any other exception is the verdict
        # the bare runtimes have no error hierarchy of their own: their failures are refusals
        return verdict("refused" if backend.startswith("bare:") else "crash", f"{type(exc).__name__}: {exc}")
    stage = "compare"
    missing = [k for k in case.expected if k not in got]
    if missing:
        return verdict("wrong", f"output {missing[0]!r} missing")
    for name, expected in case.expected.items():
        why = difference(expected, got[name], values=not RANDOM.search(case.name), scaled=case.op in SUMS)
        if why:
            return verdict("wrong", f"output {name!r}: {why}")
    return verdict("pass")


# ---------------------------------------------------------------------------------------------- workers
def _send(stream, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read_exact(stream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError("the stream ended")
        buf += chunk
    return buf


def _receive(stream) -> Any:
    (n,) = struct.unpack("<Q", _read_exact(stream, 8))
    return pickle.loads(_read_exact(stream, n))


def worker_main() -> int:
    """The worker: reads (backend, case) tasks from stdin, answers each verdict on the stdout it
    was started with (what the libraries print goes to stderr)."""
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    proto_in = sys.stdin.buffer
    torch_threads = False
    while True:
        try:
            backend, fields = _receive(proto_in)
        except EOFError:
            return 0
        if backend == "torch" and not torch_threads:  # imported only here: it makes every fork dearer
            torch_threads = True
            try:
                import torch

                torch.set_num_threads(1)
            except Exception:  # noqa: BLE001 - the case reports a missing torch
                pass
        _send(proto_out, run_case(backend, Case(**fields)))


class Worker:
    """A worker process, restarted when it dies, hangs or has run :data:`CASES_PER_WORKER` cases."""

    def __init__(self, timeout_s: float, agent_reuse: int = AGENT_REUSE) -> None:
        self.timeout_s = timeout_s
        self.agent_reuse = agent_reuse
        self.proc: subprocess.Popen | None = None
        self.done = 0

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore",
                   MLMS_IR_AGENT_REUSE=str(self.agent_reuse))
        return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None

    def run(self, backend: str, case: Case) -> dict[str, Any]:
        if self.proc is None or self.done >= CASES_PER_WORKER:
            self.stop()
            self.proc = self._start()
            self.done = 0
        self.done += 1
        t0 = time.perf_counter()
        try:
            # plain data: the worker runs this file as __main__, the caller may have imported it by another name
            _send(self.proc.stdin, (backend, dict(vars(case))))
            # the first case of a worker also pays its imports
            ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s + (30 if self.done == 1 else 0))
            if not ready:
                self.stop()
                return {"status": "crash", "stage": "run", "message": f"timed out after {self.timeout_s:g} s (worker killed)",
                        "seconds": round(time.perf_counter() - t0, 4)}
            return _receive(self.proc.stdout)
        except (EOFError, BrokenPipeError, OSError) as exc:
            code = self.proc.poll() if self.proc is not None else None
            self.stop()
            how = f"died with signal {-code}" if code is not None and code < 0 else f"exited ({code}) / {type(exc).__name__}"
            return {"status": "crash", "stage": "run", "message": f"the worker process {how}",
                    "seconds": round(time.perf_counter() - t0, 4)}


def run_cases(backends: Sequence[str], cases: Sequence[Case], *, jobs: int = 2, timeout_s: float = 60.0,
              progress: Callable[[int, int], None] | None = None,
              agent_reuse: int = AGENT_REUSE) -> dict[str, dict[str, dict[str, Any]]]:
    """backend -> case name -> verdict, with ``jobs`` worker processes (whose agents, for the
    worker backends, serve ``agent_reuse`` cases each: :data:`AGENT_REUSE`)."""
    tasks = collections.deque((b, c) for b in backends for c in cases)
    total = len(tasks)
    results: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in backends}
    lock = threading.Lock()
    count = [0]

    def drive() -> None:
        worker = Worker(timeout_s, agent_reuse)
        try:
            while True:
                with lock:
                    if not tasks:
                        return
                    backend, case = tasks.popleft()
                v = worker.run(backend, case)
                with lock:
                    results[backend][case.name] = v
                    count[0] += 1
                    if progress is not None:
                        progress(count[0], total)
        finally:
            worker.stop()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ---------------------------------------------------------------------------------------------- results
def agent_versions(backend: str) -> dict[str, str]:
    """The versions in a worker backend's own environment (its agent's probe): {} for the others."""
    from mlms_ir.backends import registry
    from mlms_ir.backends.worker import WorkerBackend

    try:
        be = registry.get(backend)
    except Exception:  # noqa: BLE001 - bare runtimes
        return {}
    if not isinstance(be, WorkerBackend) or backend == "ort-isolated":
        return {}
    res = be._check("cpu", None)[1]
    return {k: str(res.get(f)) for k, f in (("framework", "framework_version"), ("python", "python"),
                                           ("numpy", "numpy_version"), ("onnx", "onnx_version")) if res.get(f)}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("mlms_ir", "onnx", "onnxruntime", "numpy", "torch", "onnx2torch"):
        try:
            from importlib import metadata

            out[mod] = metadata.version(mod)
        except Exception:  # noqa: BLE001 - not installed
            continue
    return out


def build_results(cases: Sequence[Case], results: Mapping[str, Mapping[str, dict]], seconds: Mapping[str, float], *,
                  jobs: int, frameworks: Mapping[str, Mapping[str, str]] | None = None,
                  agent_reuse: int = AGENT_REUSE) -> dict[str, Any]:
    """The JSON document: per backend, the names of the passing cases and, for the others, their
    message, with the wall time over ``jobs`` workers (and, for a worker backend, the versions in
    its own environment: ``frameworks``); per case its op, opset and whether it has non-tensor
    values."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "kind": "conformance", "generated_by": "tools/conformance.py",
        "versions": versions(), "jobs": jobs,
        "tolerance": {"atol": ATOL, "rtol": RTOL, "integers": "exact"},
        "cases": {c.name: {"op": c.op, "opset": c.opset, "non_tensor": c.non_tensor} for c in cases},
        "backends": {},
    }
    for backend, per_case in results.items():
        times = sorted((r["seconds"], name) for name, r in per_case.items())
        entry: dict[str, Any] = {"seconds": round(seconds.get(backend, 0.0), 1),
                                 "median_case_ms": round(1000 * times[len(times) // 2][0], 1) if times else 0.0,
                                 "slowest_case": {"name": times[-1][1], "ms": round(1000 * times[-1][0], 1)} if times else None,
                                 "pass": []}
        if frameworks and backend in frameworks:
            entry["framework"] = dict(frameworks[backend])
            entry["framework"]["agent_reuse"] = agent_reuse
        for v in VERDICTS[1:]:
            entry[v] = {}
        for c in cases:
            r = per_case.get(c.name)
            if r is None:
                continue
            if r["status"] == "pass":
                entry["pass"].append(c.name)
            else:
                entry[r["status"]][c.name] = f"[{r['stage']}] {r['message']}"
        doc["backends"][backend] = entry
    return doc


def _verdicts(entry: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """case name -> (verdict, its ``[stage] message``) of one backend's entry."""
    out = {name: ("pass", "") for name in entry["pass"]}
    for v in VERDICTS[1:]:
        out.update({name: (v, text) for name, text in entry[v].items()})
    return out


def merge_results(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``old`` (a results document) with the backends of ``new`` (one :func:`build_results` made
    from a run of some backends, on all the cases or some): a backend ``new`` ran on every case
    replaces its entry; one it ran on some cases keeps its other verdicts and its timings from
    ``old`` (per-case timings are of a whole run). The backends ``new`` did not run stay as they
    were; a backend ``old`` lacks comes before the bare runtimes."""
    import copy

    doc = copy.deepcopy(dict(old))
    doc["cases"].update(copy.deepcopy(new["cases"]))
    order = list(doc["cases"])
    backends = dict(doc["backends"])
    for name, entry in new["backends"].items():
        prev = backends.get(name)
        if prev is None or set(_verdicts(entry)) >= set(order):
            merged = copy.deepcopy(entry)
        else:
            merged = {k: copy.deepcopy(v) for k, v in prev.items() if k not in VERDICTS}
            for k, v in entry.items():  # versions of the framework it ran with
                if k not in VERDICTS and k not in ("seconds", "median_case_ms", "slowest_case"):
                    merged[k] = copy.deepcopy(v)
            verdicts = {**_verdicts(prev), **_verdicts(entry)}
            merged["pass"] = []
            for v in VERDICTS[1:]:
                merged[v] = {}
            for case in order:
                if case in verdicts:
                    v, text = verdicts[case]
                    if v == "pass":
                        merged["pass"].append(case)
                    else:
                        merged[v][case] = text
        backends[name] = merged
    # the mlms_ir backends first, in the order they came, then the bare runtimes
    doc["backends"] = {k: backends[k] for k in sorted(backends, key=lambda k: k.startswith("bare:"))}
    return doc


def status_of(doc: Mapping[str, Any], backend: str) -> dict[str, str]:
    """case name -> verdict of ``backend`` in a results document."""
    entry = doc["backends"][backend]
    out = {name: "pass" for name in entry["pass"]}
    for v in VERDICTS[1:]:
        out.update({name: v for name in entry[v]})
    return out


def worse_than_bare(doc: Mapping[str, Any], backend: str) -> list[str]:
    """Cases the bare runtime ``backend`` wraps passes and ``backend`` does not."""
    bare = BASELINE_OF.get(backend)
    if bare is None or bare not in doc["backends"] or backend not in doc["backends"]:
        return []
    mine, theirs = status_of(doc, backend), status_of(doc, bare)
    return [c for c, v in theirs.items() if v == "pass" and mine.get(c, "pass") != "pass"]


# ---------------------------------------------------------------------------------------------- the page
def _table(rows: list[list[str]], header: list[str], widths: str | None = None) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return lines


def _literal(name: str) -> str:
    return f"``{name}``"


def render_rst(doc: Mapping[str, Any]) -> str:
    """docs/conformance.rst from a results document."""
    backends = list(doc["backends"])
    mlms = [b for b in backends if not b.startswith("bare:")]
    cases = doc["cases"]
    ver = doc["versions"]
    vtext = ", ".join(f"{k} {v}" for k, v in ver.items())
    out = [
        ".. Generated by tools/conformance.py: do not edit; rerun it.",
        "",
        "ONNX conformance",
        "================",
        "",
        f"ONNX's own node test cases ({len(cases)} of them, built by ``onnx.backend.test.case.node.collect_testcases``),",
        "run through every backend with mlms_ir's public API (``mlms_ir.load``, then",
        "``registry.get(name).prepare(graph, \"cpu\").run(feeds)``), and outside mlms_ir on the bare runtimes",
        "(``bare:ort``: an ``onnxruntime.InferenceSession`` with default optimisations; ``bare:reference``:",
        "``onnx.reference.ReferenceEvaluator``). Generated by ``python tools/conformance.py`` with",
        f"{vtext}; the results are in ``tests/data/conformance.json``, which ``tests/test_conformance.py``",
        "holds the backends to.",
        *_agents_text(doc),
        "",
        "A case **passes** when every output has the expected dtype and shape and its values agree",
        f"(floats within atol {doc['tolerance']['atol']:g} + rtol {doc['tolerance']['rtol']:g} times the expected",
        "magnitude, the rule of ``mlms_ir.comparator.compare_outputs``; integers, booleans and strings",
        "exactly). It is **refused** when mlms_ir raised one of its errors with a message (the backend",
        "declined an op or a setting, and said so), **wrong** when it returned a value that differs, and a",
        "**crash** on any other exception or a worker that died or hung (a bare runtime's exception counts as",
        "refused). Random draws (Bernoulli, training-mode Dropout) are compared by dtype and shape, float16 and",
        "bfloat16 outputs with the comparator's fp16 and bf16 tolerances, and DFT and STFT with the atol scaled by",
        "the largest expected magnitude. mlms_ir's rule is that no backend",
        "returns a wrong value without saying so: a wrong case is a bug, fixed by a correct translation or",
        "a refusal.",
        "",
        "Totals",
        "------",
        "",
    ]
    rows = []
    for b in backends:
        st = collections.Counter(status_of(doc, b).values())
        worse = worse_than_bare(doc, b)
        entry = doc["backends"][b]
        rows.append([_literal(b), *(str(st.get(v, 0)) for v in VERDICTS), str(len(worse)) if BASELINE_OF.get(b) in backends else "",
                     f"{entry['seconds']:g}", f"{entry.get('median_case_ms', 0):g}"])
    out += _table(rows, ["backend", "pass", "refused", "wrong", "crash", "worse than bare", "seconds", "median ms"])
    out += ["", "*worse than bare*: cases the bare runtime the backend wraps passes and the backend does not.",
            f"*seconds*: wall time of the backend's cases over {doc.get('jobs', 2)} worker processes; *median ms*: one case, from",
            "loading the model to comparing the outputs (for ``torch``, converting it with onnx2torch).", ""]
    # non-tensor values
    nt = sorted(name for name, c in cases.items() if c["non_tensor"])
    out += ["Sequences, maps and optionals",
            "-----------------------------",
            "",
            f"{len(nt)} cases feed or return a sequence, a map or an optional instead of a tensor; a backend that",
            "takes tensors only refuses them. Their failures below are marked *(non-tensor)*.",
            ""]
    # per op
    by_op: dict[str, list[str]] = collections.defaultdict(list)
    for name, c in cases.items():
        by_op[c["op"]].append(name)
    status = {b: status_of(doc, b) for b in backends}
    out += ["By op", "-----", "",
            "Per op and backend: pass / refused / wrong / crash.", ""]
    rows = []
    for op in sorted(by_op, key=str.lower):
        names = by_op[op]
        cells = []
        for b in backends:
            st = collections.Counter(status[b].get(n, "") for n in names)
            cells.append(" / ".join(str(st.get(v, 0)) for v in VERDICTS))
        rows.append([_literal(op), str(len(names)), *cells])
    out += _table(rows, ["op", "cases", *backends])
    out += ["", "Wrong and crashing cases", "------------------------", ""]
    bad = False
    for b in backends:
        entry = doc["backends"][b]
        listed = [(v, n, entry[v][n]) for v in ("wrong", "crash") for n in entry[v]]
        if not listed:
            continue
        bad = True
        out += [f"``{b}``", "~" * (len(b) + 4), ""]
        per_op: dict[str, list[str]] = collections.defaultdict(list)
        bare = status.get(BASELINE_OF.get(b, ""), {})
        for v, n, msg in listed:
            tag = " *(non-tensor)*" if cases[n]["non_tensor"] else ""
            if bare.get(n) == v:
                tag += f" (and on ``{BASELINE_OF[b]}``)"
            per_op[cases[n]["op"]].append(f"  - {v}: ``{n}``{tag}: {_escape(msg)}")
        for op in sorted(per_op, key=str.lower):
            out += [f"- ``{op}``", "", *per_op[op], ""]
    if not bad:
        out += ["None.", ""]
    out += ["Worse than the bare runtime", "---------------------------", ""]
    any_worse = False
    why: set[str] = set()
    for b in mlms:
        worse = worse_than_bare(doc, b)
        if worse:
            any_worse = True
            out += [f"- ``{b}`` (against ``{BASELINE_OF[b]}``): {len(worse)} case{'s' * (len(worse) != 1)}: "
                    + ", ".join(f"``{n}``" for n in worse), ""]
            why.update(n for n in worse if n in WORSE_WHY)
    if not any_worse:
        out += ["None.", ""]
    for n in sorted(why):
        out += [f"``{n}``: {WORSE_WHY[n]}", ""]
    return "\n".join(out).rstrip() + "\n"


def _agents_text(doc: Mapping[str, Any]) -> list[str]:
    """The lines of the page's introduction on the worker backends in the document."""
    agents = [(b, e) for b, e in doc["backends"].items() if e.get("framework")]
    if not agents:
        return ["The worker backends ``mxnet`` and ``onnx-tf`` are not in it; ``--backends mxnet onnx-tf --merge`` adds them."]
    names = {"framework": None, "python": "Python", "numpy": "numpy", "onnx": "onnx"}
    own = {"mxnet": "MXNet", "onnx-tf": "onnx-tf"}
    envs = "; ".join(f"``{b}``: " + ", ".join(f"{names.get(k) or own.get(b, b)} {v}" for k, v in e["framework"].items()
                                              if k != "agent_reuse") for b, e in agents)
    reuse = {e["framework"].get("agent_reuse") for _, e in agents}
    lines = [f"The worker backends {' and '.join(f'``{b}``' for b, _ in agents)} ran in their own environments",
             f"(``bash tools/make_agent_envs.sh``; {envs}),"]
    if reuse - {None, "0", 0}:
        lines += [f"each conformance worker's agent process serving up to {max(int(r) for r in reuse if r)} cases",
                  "(``MLMS_IR_AGENT_REUSE``): the framework is imported once per agent, not once per case, and",
                  "the first case of each agent pays for it."]
    else:
        lines += ["a fresh agent process per case, whose start and framework import each case's time includes."]
    return lines


def _escape(text: str) -> str:
    """A message as inline rst text: markup characters escaped."""
    return re.sub(r"([\\`*_|])", r"\\\1", text)


# ---------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="*", default=list(DEFAULT_BACKENDS), help="mlms_ir backends to run")
    parser.add_argument("--bare", nargs="*", default=list(BARE), help="bare runtimes to run (ort, reference)")
    parser.add_argument("--cases", default=None, help="only the cases whose name matches this regular expression")
    parser.add_argument("--sample", type=int, default=1, help="only every N-th case (for the slow worker backends)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="seconds one case may run before its worker is killed")
    parser.add_argument("--json", default=str(ROOT / "tests" / "data" / "conformance.json"), help="results file ('' for none)")
    parser.add_argument("--rst", default=str(ROOT / "docs" / "conformance.rst"), help="page to write ('' for none)")
    parser.add_argument("--render", metavar="JSON", default=None, help="only write the page (--rst) from this results file")
    parser.add_argument("--merge", action="store_true",
                        help="merge into the --json file: the backends run replace their verdicts of the cases run, "
                             "the others stay as they are; the page is rendered from the merged file")
    parser.add_argument("--agent-reuse", type=int, default=AGENT_REUSE,
                        help="cases one agent process of mxnet or onnx-tf serves before it is replaced "
                             "(MLMS_IR_AGENT_REUSE; 0: a fresh process per case, as a plain session run)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main()
    import json

    if args.render:
        Path(args.rst).write_text(render_rst(json.loads(Path(args.render).read_text(encoding="utf-8"))), encoding="utf-8")
        return 0

    from mlms_ir.backends import registry

    t0 = time.perf_counter()
    cases = load_cases(args.cases)[::max(1, args.sample)]
    print(f"{len(cases)} cases built in {time.perf_counter() - t0:.1f} s; {versions()}", file=sys.stderr)
    names = []
    for b in args.backends:
        avail = registry.get(b).available("cpu")
        if not avail:
            print(f"skipping {b}: {avail.reason}", file=sys.stderr)
            continue
        names.append(b)
    names += [f"bare:{r}" for r in args.bare]
    frameworks = {b: agent_versions(b) for b in names if agent_versions(b)}
    results: dict[str, dict[str, dict]] = {}
    seconds: dict[str, float] = {}
    for b in names:
        t = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, b: str = b) -> None:
            if time.perf_counter() - last[0] > 10 or done == total:
                last[0] = time.perf_counter()
                print(f"  {b}: {done}/{total} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)

        results.update(run_cases([b], cases, jobs=args.jobs, timeout_s=args.timeout_s, progress=progress,
                                 agent_reuse=args.agent_reuse))
        seconds[b] = time.perf_counter() - t
        st = collections.Counter(v["status"] for v in results[b].values())
        print(f"{b}: {dict(st)} in {seconds[b]:.0f} s", file=sys.stderr)
    doc = build_results(cases, results, seconds, jobs=args.jobs, frameworks=frameworks, agent_reuse=args.agent_reuse)
    if args.merge:
        if not args.json or not Path(args.json).exists():
            parser.error(f"--merge needs an existing --json file (not {args.json!r})")
        doc = merge_results(json.loads(Path(args.json).read_text(encoding="utf-8")), doc)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    if args.rst:
        Path(args.rst).write_text(render_rst(doc), encoding="utf-8")
    for b in names:
        st = collections.Counter(status_of(doc, b).values())
        print(f"{b:>16}: " + "  ".join(f"{v} {st.get(v, 0)}" for v in VERDICTS), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
