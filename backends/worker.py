"""Worker backends: a framework that cannot share the core's environment runs in its own.

MXNet 1.9 needs numpy<1.24 and onnx-tf 1.10 needs TensorFlow 2.15 with numpy<2; neither can live
beside the core (numpy 2, onnx 1.2x). Such a backend runs the standalone agent script
(``backends/agent.py``) as a worker process in another Python interpreter and talks to it through
files: the feeds as an ``.npz``, a request and a result as JSON, the outputs as an ``.npz``. The
protocol (version 2, which adds sequences, maps, optionals and string tensors to version 1's plain
arrays through a JSON ``layout``) is documented in the agent's docstring.

``ort-isolated`` takes and returns every kind of value (:mod:`mlms_ir.values`); ``mxnet`` and
``onnx-tf`` take and return tensors only and refuse, when a session is prepared, a model whose
inputs or outputs are sequences, maps or optionals. ``ort-isolated`` refuses the node
configurations that the ``ort`` backend refuses (those onnxruntime computes differently from ONNX,
:func:`mlms_ir.backends.ort.departures`) and reads ``float8e4m3fn`` outputs as ``ort`` does.

Where the interpreter comes from, first match wins:

1. the session option ``python=PATH`` (``backend.prepare(graph, "cpu", python="/env/bin/python")``;
   pass the same to ``backend.available(device, python=...)``);
2. the variable ``MLMS_IR_MXNET_PYTHON`` / ``MLMS_IR_ONNX_TF_PYTHON``;
3. the environment that ``bash tools/make_agent_envs.sh`` creates:
   ``${MLMS_IR_ENVS:-${MLMS_IR_CACHE:-~/.cache/mlms_ir}/envs}/<mxnet|onnx-tf>/bin/python``.

A backend is available when that interpreter exists and the agent's ``probe`` request (it imports
the framework and reports its version) succeeds; the probe is cached per interpreter.

Every request is a fresh process, so a crash or a hang in the framework never takes the caller
down: a run that exceeds the session option ``timeout`` (seconds, default 300) has its whole process
group killed and raises :class:`BackendError`; a crash raises it with the end of the worker's
stderr. :meth:`Session.run` therefore pays the interpreter's start-up and the model's import on
every call (hundreds of milliseconds to seconds), which would swamp the latency of the model
itself: **time worker backends with** :meth:`WorkerSession.measure_in_worker`, which lets the
agent load the model once and time ``warmup`` + ``iterations`` runs in its own process, then
returns the samples (milliseconds) and the last run's outputs. Per-node tracing is not available.

With ``MLMS_IR_AGENT_REUSE=N`` (:data:`REUSE_VAR`) a calling process instead keeps one agent per
interpreter running (``agent.py --serve``) and sends it N requests before starting a new one: the
framework is imported once (TensorFlow takes seconds), a hang or a crash still costs one request
(the agent is killed or reported as above, and the next request starts a new one), but a request
may see what an earlier one left in the framework's process. ``tools/conformance.py`` runs ONNX's
~1,900 node cases so. Outputs come back in the element types the graph declares
(:func:`as_declared_dtypes`).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir.errors import AgentCrashError, AgentTimeoutError
from mlms_ir._proc import ChildStartError, ChildTimeout, child_env, describe_exit, kill_group, run_child, tail as text_tail
from mlms_ir.backends.agent import pack_values, unpack_values
from mlms_ir.backends.base import (
    Availability,
    Backend,
    BackendError,
    Session,
    TraceResult,
    check_feeds,
    model_source,
)
from mlms_ir.files import cache_root
from mlms_ir.harness import summarise
from mlms_ir.ir import Graph

#: The agent script the worker process runs (shipped beside this module).
AGENT = Path(__file__).resolve().with_name("agent.py")
#: The protocol version spoken with the agent (see its docstring; the agent still serves 1).
PROTOCOL = 2
#: Seconds a run (or a measure_in_worker call) may take by default before the worker is killed.
DEFAULT_TIMEOUT_S = 300.0
#: Seconds the availability probe may take (importing TensorFlow is slow on a cold disk).
PROBE_TIMEOUT_S = 60.0
#: Lines of the worker's stderr quoted when it crashes.
STDERR_TAIL_LINES = 15
#: Session options a worker backend understands.
OPTIONS = ("python", "timeout")

#: (framework, interpreter, its mtime) -> (why the probe failed or "", the probe's result)
_probe_cache: dict[tuple[str, str, float], tuple[str, dict]] = {}
_probe_lock = threading.Lock()


def envs_dir() -> Path:
    """Where ``tools/make_agent_envs.sh`` puts the agent environments: ``$MLMS_IR_ENVS``, else
    ``envs`` in the cache (:func:`mlms_ir.files.cache_root`, which ``$MLMS_IR_CACHE`` moves)."""
    env = os.environ.get("MLMS_IR_ENVS")
    return Path(env).expanduser() if env else cache_root() / "envs"


def call_agent(python: str | os.PathLike, request: Mapping[str, Any], workdir: str | os.PathLike, *,
               timeout: float = DEFAULT_TIMEOUT_S, what: str = "agent") -> dict[str, Any]:
    """Run one agent request in ``python`` and return its result object.

    ``request`` is completed with ``protocol`` and ``result`` (a file in ``workdir``). Raises
    :class:`AgentTimeoutError` after ``timeout`` seconds (the worker's process group is killed),
    :class:`AgentCrashError` when the worker exits non-zero, dies of a signal or writes no
    readable result (the message quotes the end of its stderr). A result with ``status: "error"``
    is returned as is: the caller words that error.
    """
    work = Path(workdir)
    req = dict(request)
    req.setdefault("protocol", PROTOCOL)
    req.setdefault("result", str(work / "result.json"))
    result_path = Path(req["result"])
    result_path.unlink(missing_ok=True)
    req_path = work / "request.json"
    req_path.write_text(json.dumps(req), encoding="utf-8")
    limit = reuse_limit()
    if limit and req.get("framework") != "probe":
        quoted = _call_reused(python, req_path, timeout=timeout, what=what, limit=limit)
    else:
        cmd = [python, AGENT, req_path]
        try:  # stdout.txt and stderr.txt stay in workdir
            done = run_child(cmd, timeout=timeout, env=child_env(foreign=True), cwd=work, output_dir=work)
        except ChildStartError as exc:
            raise AgentCrashError(f"cannot start the {what} with {python}: {exc.__cause__ or exc}") from exc
        except ChildTimeout:
            raise AgentTimeoutError(f"the {what} ({python}) timed out after {timeout:g} s and was killed") from None
        tail = done.tail(STDERR_TAIL_LINES)
        quoted = f":\n{tail}" if tail else " (its stderr is empty)"
        if not done.ok:
            raise AgentCrashError(f"the {what} ({python}) {done.how()}{quoted}")
    try:
        result = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AgentCrashError(f"the {what} ({python}) wrote no readable result ({type(exc).__name__}){quoted}") from None
    if not isinstance(result, dict) or result.get("protocol") not in (req["protocol"], PROTOCOL):
        raise AgentCrashError(f"the {what} ({python}) answered in another protocol than {req['protocol']}: {str(result)[:200]}")
    return result


# ---------------------------------------------------------------------------- reused agents
#: Set to a number N > 0, each calling process keeps one agent process per interpreter running
#: (``agent.py --serve``) and sends it up to N requests before starting a new one; unset or 0,
#: every request is a fresh process. ``tools/conformance.py`` sets it: importing TensorFlow takes
#: seconds, and would be paid for each of ONNX's ~1,900 node cases.
REUSE_VAR = "MLMS_IR_AGENT_REUSE"

_agents: dict[str, "_Agent"] = {}
_agents_lock = threading.Lock()


def reuse_limit() -> int:
    """Requests one reused agent serves (:data:`REUSE_VAR`); 0: a fresh process per request."""
    try:
        return max(0, int(os.environ.get(REUSE_VAR, "") or 0))
    except ValueError:
        return 0


class _Agent:
    """An agent process serving requests one after another (``agent.py --serve``): a request's
    path on a line of its stdin, ``done`` on a line of its stdout when the result is written. It
    leads its own process group (killed whole on a timeout), its stderr goes to a file (quoted when
    it crashes) and it exits when its stdin closes, so one left behind by a killed caller ends
    after its request."""

    def __init__(self, python: str | os.PathLike, what: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mlms_ir_agent_"))
        self.served = 0
        self._stderr = open(self.dir / "stderr.txt", "wb")  # noqa: SIM115 - closed in close()
        try:
            self.proc = subprocess.Popen([os.fspath(python), os.fspath(AGENT), "--serve"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr, env=child_env(foreign=True),
                                         cwd=self.dir, start_new_session=True)
        except OSError as exc:
            self._stderr.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise AgentCrashError(f"cannot start the {what} with {python}: {exc}") from exc

    def request(self, req_path: Path, timeout: float) -> bool:
        """Send one request; True when the agent answered within ``timeout`` seconds, False when
        it did not (it is killed); raises ``EOFError`` when it died."""
        try:
            self.proc.stdin.write(os.fspath(req_path).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise EOFError("the agent's stdin is closed") from exc
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return False
        if self.proc.stdout.readline().strip() != b"done":
            raise EOFError("the agent stopped answering")
        self.served += 1
        return True

    def stderr_tail(self) -> str:
        self._stderr.flush()
        try:
            text = (self.dir / "stderr.txt").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text_tail(text, STDERR_TAIL_LINES)

    def close(self) -> None:
        if self.proc.poll() is None:
            kill_group(self.proc)
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _call_reused(python: str | os.PathLike, req_path: Path, *, timeout: float, what: str, limit: int) -> str:
    """One request on this process's agent for ``python`` (started, or replaced after ``limit``
    requests or a failure); returns the end of its stderr, quoted, for the caller's messages."""
    key = os.fspath(python)
    with _agents_lock:
        agent = _agents.pop(key, None)  # taken: another thread starts its own meanwhile
    if agent is not None and (agent.served >= limit or agent.proc.poll() is not None):
        agent.close()
        agent = None
    if agent is None:
        agent = _Agent(python, what)
    try:
        answered = agent.request(req_path, timeout)
    except EOFError:
        code = agent.proc.wait()
        tail = agent.stderr_tail()
        agent.close()
        raise AgentCrashError(f"the {what} ({python}) {describe_exit(code)}"
                              + (f":\n{tail}" if tail else " (its stderr is empty)")) from None
    if not answered:
        agent.close()
        raise AgentTimeoutError(f"the {what} ({python}) timed out after {timeout:g} s and was killed")
    tail = agent.stderr_tail()
    with _agents_lock:
        spare = _agents.get(key)
        if spare is None:
            _agents[key] = agent
    if spare is not None:
        agent.close()
    return f":\n{tail}" if tail else " (its stderr is empty)"


@atexit.register
def close_agents() -> None:
    """Stop the agents this process keeps (:data:`REUSE_VAR`)."""
    with _agents_lock:
        agents = list(_agents.values())
        _agents.clear()
    for agent in agents:
        agent.close()


def probe(python: str | os.PathLike, target: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
    """Ask the agent in ``python`` for its versions (importing ``target``, a framework name);
    ``timeout`` defaults to :data:`PROBE_TIMEOUT_S`."""
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="mlms_ir_probe_") as tmp:
        req: dict[str, Any] = {"framework": "probe"}
        if target:
            req["target"] = target
        return call_agent(python, req, tmp, timeout=timeout, what=f"{target or 'agent'} probe")


def clear_probe_cache() -> None:
    with _probe_lock:
        _probe_cache.clear()


# ---------------------------------------------------------------------------- backends
class WorkerBackend(Backend):
    """A backend whose framework runs in a worker process of another interpreter (see the module)."""

    devices: tuple[str, ...] = ("cpu",)
    #: The framework name in the agent protocol.
    framework: str = ""
    #: The variable naming the interpreter, and the env's name under :func:`envs_dir`.
    env_var: str = ""
    env_name: str = ""
    #: The session class (a :class:`WorkerSession`; set after that class is defined).
    session_class: type = None  # type: ignore[assignment]

    # -------------------------------------------------------------- interpreter
    def python(self, python: str | os.PathLike | None = None) -> tuple[Path, str]:
        """The interpreter to use and where that choice came from."""
        if python:
            return Path(python).expanduser(), "the python option"
        var = os.environ.get(self.env_var)
        if var:
            return Path(var).expanduser(), f"${self.env_var}"
        return envs_dir() / self.env_name / "bin" / "python", "the default agent env"

    def _how_to(self) -> str:
        return (f"create it with `bash tools/make_agent_envs.sh {self.env_name}` (MLMS_IR_ENVS or MLMS_IR_CACHE moves it), "
                f"or point ${self.env_var} or the session option python=PATH at an interpreter that has {self.framework}")

    # -------------------------------------------------------------- availability
    def _available_impl(self, device: str, **options: Any) -> Availability:
        """With the interpreter chosen as the module says (the ``python`` session option first)."""
        return self._check(device, options.get("python"))[0]

    def _check(self, device: str, python: str | os.PathLike | None) -> tuple[Availability, dict]:
        path, source = self.python(python)
        if not path.exists():
            return Availability(False, f"no {self.name} agent interpreter at {path} ({source}); {self._how_to()}"), {}
        if not os.access(path, os.X_OK) or path.is_dir():
            return Availability(False, f"{path} ({source}) is not an executable interpreter; {self._how_to()}"), {}
        try:
            mtime = path.lstat().st_mtime  # a venv's python is a link: recreating the env changes it
        except OSError:
            mtime = 0.0
        key = (self.framework, str(path), mtime)
        with _probe_lock:
            cached = _probe_cache.get(key)
        if cached is None:
            try:
                cached = ("", probe(path, self.framework))
            except BackendError as exc:
                cached = (f"the {self.name} agent probe failed: {exc}", {})
            with _probe_lock:
                _probe_cache[key] = cached
        failure, res = cached
        if failure:
            return Availability(False, failure), res
        if res.get("status") != "ok":
            return Availability(False, f"{self.framework} does not import in {path} ({source}): {res.get('error')}; {self._how_to()}"), res
        if device == "cuda" and not res.get("gpus"):
            return Availability(False, f"{self.framework} {res.get('framework_version')} in {path} sees no GPU (a CPU build, or no GPU here)"), res
        return Availability(True), res

    # -------------------------------------------------------------- sessions
    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session:
        unknown = [k for k in options if k not in OPTIONS]
        if unknown:
            raise BackendError(f"the {self.name} backend has no option {', '.join(repr(k) for k in unknown)}; it knows: {', '.join(OPTIONS)}")
        path, _ = self.python(options.get("python"))
        info = self._check(device, options.get("python"))[1]
        timeout = float(options.get("timeout") or DEFAULT_TIMEOUT_S)
        if timeout <= 0:
            raise BackendError(f"the {self.name} backend's timeout must be positive, got {timeout:g}")
        return self.session_class(self.name, self.framework, graph, device, python=path, timeout=timeout, info=info)


class MXNetBackend(WorkerBackend):
    name = "mxnet"
    framework = "mxnet"
    devices = ("cpu", "cuda")
    env_var = "MLMS_IR_MXNET_PYTHON"
    env_name = "mxnet"
    description = "Apache MXNet 1.9 (its ONNX importer), in a worker process of its own environment"


class OnnxTfBackend(WorkerBackend):
    name = "onnx-tf"
    framework = "onnx-tf"
    devices = ("cpu",)
    env_var = "MLMS_IR_ONNX_TF_PYTHON"
    env_name = "onnx-tf"
    description = "TensorFlow 2.15 through onnx-tf 1.10, in a worker process of its own environment"


class IsolatedOrtBackend(WorkerBackend):
    """ONNX Runtime in a worker process of this same interpreter: a crash or a hang (bounded by
    the ``timeout`` option) fails one request and the rest of a sweep goes on."""

    name = "ort-isolated"
    framework = "onnxruntime"
    takes_non_tensors = True
    devices = ("cpu", "cuda")
    env_var = "MLMS_IR_ORT_PYTHON"
    env_name = ""
    description = "ONNX Runtime in an isolated worker process (crash and hang isolation)"

    def python(self, python=None):
        """This interpreter unless told otherwise (the python option or $MLMS_IR_ORT_PYTHON)."""
        if python or os.environ.get(self.env_var):
            return super().python(python)
        return Path(sys.executable), "this interpreter"



# ---------------------------------------------------------------------------- departures from ONNX
def _onnx_tf_resize_scales(node, facts) -> str | None:
    """onnx-tf 1.10's Resize rounds input length x scale down to the output length and has
    TensorFlow resize to it, which maps output coordinates to input ones with the ratio of the two
    lengths; ONNX maps them with the scale itself (``half_pixel``, ``asymmetric``, ...) or the
    unrounded length (``align_corners``). Where input length x scale is a whole number the two agree
    (every upsampling by 2); ``tf_crop_and_resize`` maps with the lengths in both; ``sizes`` give
    whole lengths."""
    from mlms_ir.backends.ort import is_whole

    ins = [*node.inputs, "", "", ""]
    if node.opset >= 11:
        mode = node.attrs.get("coordinate_transformation_mode", "half_pixel")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode == "tf_crop_and_resize" or ins[3]:
            return None
        scales_in = ins[2]
    else:
        scales_in = ins[1]
    if not scales_in:
        return None
    scales = [float(v) for v in facts.value(node, scales_in).reshape(-1)]
    if not scales or all(is_whole(v) for v in scales):
        return None  # whole scales give whole lengths, whatever the input's
    shape = facts.shape(node, ins[0])
    axes = node.attrs.get("axes")
    dims = [int(a) % len(shape) for a in axes] if axes else list(range(len(shape)))
    if len(dims) != len(scales):
        return None  # malformed: onnx-tf's own error says so
    for d, scale in zip(dims, scales):
        exact = shape[d] * scale
        if not is_whole(exact):
            return (f"onnx-tf resizes axis {d} to the rounded length {int(exact)} and maps coordinates with it, where "
                    f"ONNX uses the scale {scale:g} (input length x scale = {exact:.6g})")
    return None


#: backend -> op (default domain) -> the configurations it computes differently from ONNX's node
#: cases (onnx 1.23; tools/conformance.py), refused as the ``ort`` backend refuses its own
#: (:data:`mlms_ir.backends.ort.DEPARTURES`): at prepare when the model decides, before the run
#: when fed values do. A wrong result the compat modules can fix is fixed there instead.
DEPARTURES: dict[str, dict[str, Any]] = {}


def _departure_table() -> dict[str, dict[str, Any]]:
    if not DEPARTURES:
        from mlms_ir.backends.ort import Departure

        DEPARTURES["onnx-tf"] = {"Resize": Departure("Resize", _onnx_tf_resize_scales,
                                                     "Resize where input length x scale is not a whole number")}
    return DEPARTURES


class AgentGuard:
    """The nodes of one model in a configuration ``backend`` computes differently from ONNX
    (:data:`DEPARTURES`): those the model decides are refused when made, the others by
    :meth:`check` before each run, with the feeds."""

    def __init__(self, backend: str, graph: Graph) -> None:
        from mlms_ir.backends.ort import NodeFacts, DecidedLater

        self.backend = backend
        self.graph = graph
        self.table = _departure_table().get(backend, {})
        self.pending: list = []
        if not self.table:
            return
        facts = NodeFacts(graph)
        for node in graph.walk():
            dep = self.table.get(node.op_type) if node.domain == "" else None
            if dep is None:
                continue
            try:
                self._refuse(node, dep, facts)
            except DecidedLater:
                self.pending.append((node, dep))

    def _refuse(self, node, dep, facts) -> None:
        from mlms_ir.backends.ort import ComputedValue

        try:
            why = dep.rule(node, facts)
        except ComputedValue as exc:
            raise BackendError(
                f"node {node.label}: {self.backend} computes {dep.what} differently from ONNX, and this node's "
                f"'{exc.name}' is computed inside the model, so mlms_ir cannot tell before running it: refused") from None
        if why:
            raise BackendError(f"node {node.label}: {why}: refused (a wrong number is worse than none)")

    def check(self, feeds: Mapping[str, Any]) -> None:
        if not self.pending:
            return
        from mlms_ir.backends.ort import NodeFacts

        facts = NodeFacts(self.graph, feeds)
        for node, dep in self.pending:
            self._refuse(node, dep, facts)


# ---------------------------------------------------------------------------- session
class WorkerSession(Session):
    """A model prepared for a worker backend: each call is one agent request in a new process.
    Outputs come back in the element types the graph declares (:func:`as_declared_dtypes`)."""

    #: Whether outputs are converted to the declared element types (the frameworks' ONNX
    #: importers compute integer and boolean ops in float32 and return them so).
    casts_to_declared = True

    def __init__(self, backend: str, framework: str, graph: Graph, device: str, *, python: Path,
                 timeout: float = DEFAULT_TIMEOUT_S, info: Mapping[str, Any] | None = None) -> None:
        info = dict(info or {})
        super().__init__(backend, device, graph, {
            "python": str(python),
            "timeout": timeout,
            "framework_version": info.get("framework_version", ""),
            "numpy_version": info.get("numpy_version", ""),
            "onnx_version": info.get("onnx_version", ""),
            "python_version": info.get("python", ""),
        })
        self.framework = framework
        self.python = python
        self.timeout = timeout
        #: The result object of the latest agent request (load_ms, latency_ms, versions...).
        self.last_result: dict[str, Any] = {}
        #: what this backend computes differently from ONNX (:class:`AgentGuard`; ``ort-isolated``: ORT's)
        self._guard = self._departures(graph)
        self._dir = Path(tempfile.mkdtemp(prefix=f"mlms_ir_{backend}_"))
        src = model_source(graph)
        if isinstance(src, bytes):
            self._model = self._dir / "model.onnx"
            self._model.write_bytes(src)
        else:
            self._model = Path(src).resolve()

    def _departures(self, graph: Graph):
        """The guard of this backend's departures from ONNX; refuses the static ones."""
        return AgentGuard(self.backend, graph)

    # -------------------------------------------------------------- calls
    def _run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._request(feeds, warmup=0, iterations=1)[1]

    def _trace_impl(self, feeds: dict[str, np.ndarray], runs: int) -> list[TraceResult]:
        raise BackendError(f"the {self.backend} backend runs in a worker process and cannot trace per node")

    def measure(self, feeds: Mapping[str, np.ndarray], *, warmup: int = 10, iterations: int = 100,
                min_time_s: float = 0.0):
        """Timed inside the worker (see :meth:`measure_in_worker`): process start-up and the model
        import stay out of the figures."""
        samples, outputs = self.measure_in_worker(feeds, warmup, iterations, min_time_s=min_time_s)
        return summarise(samples, warmup), outputs

    def measure_in_worker(self, feeds: Mapping[str, np.ndarray], warmup: int = 10, iterations: int = 100, *,
                          min_time_s: float = 0.0, timeout: float | None = None) -> tuple[list[float], dict[str, np.ndarray]]:
        """Load the model once in the worker, run ``warmup`` untimed and at least ``iterations``
        timed runs there (and at least ``min_time_s`` seconds of them), and return the per-run
        latencies in milliseconds, as timed inside the worker, and the last run's outputs.

        The figures exclude the process start and the model import (``last_result["load_ms"]``),
        unlike timing :meth:`run`. ``timeout`` (default: the session's) bounds the whole request."""
        self._check_open()
        checked = check_feeds(self.graph, feeds)
        return self._request(checked, warmup=max(0, int(warmup)), iterations=max(1, int(iterations)),
                             min_time_s=max(0.0, float(min_time_s)), timeout=timeout)

    def _request(self, feeds: dict[str, np.ndarray], *, warmup: int, iterations: int, min_time_s: float = 0.0,
                 timeout: float | None = None) -> tuple[list[float], dict[str, np.ndarray]]:
        self._guard.check(feeds)
        call = Path(tempfile.mkdtemp(prefix="call_", dir=self._dir))
        try:
            inputs, outputs = call / "inputs.npz", call / "outputs.npz"
            try:
                arrays, layout = pack_values(feeds)
            except ValueError as exc:
                raise BackendError(f"the {self.backend} worker cannot take these feeds: {exc}") from None
            save_npz(inputs, arrays)
            request = {
                "framework": self.framework,
                "model": str(self._model),
                "inputs": str(inputs),
                "layout": layout,
                "outputs": str(outputs),
                "result": str(call / "result.json"),
                "warmup": warmup,
                "iterations": iterations,
                "min_time_s": min_time_s,
                "device": self.device,
            }
            t = self.timeout if timeout is None else float(timeout)
            res = call_agent(self.python, request, call, timeout=t, what=f"{self.backend} worker")
            self.last_result = res
            if res.get("status") != "ok":
                raise BackendError(f"{self.backend} ({self.framework} {res.get('framework_version') or ''}) failed on the model: {res.get('error')}")
            try:
                with np.load(outputs, allow_pickle=False) as z:
                    got = unpack_values({k: z[k] for k in z.files}, res.get("layout") or {})
            except (OSError, ValueError) as exc:
                raise AgentCrashError(f"the {self.backend} worker reported success but its outputs cannot be read: {exc}") from exc
            missing = [n for n in self.graph.output_names if n not in got]
            if missing:
                raise BackendError(f"the {self.backend} worker returned no output {', '.join(repr(m) for m in missing)}")
            outputs = {n: got[n] for n in self.graph.output_names}
            if self.casts_to_declared:
                outputs = as_declared_dtypes(self.graph, outputs, self.backend)
            return [float(x) for x in res.get("latency_ms", [])], outputs
        finally:
            shutil.rmtree(call, ignore_errors=True)

    def _close_impl(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class IsolatedOrtSession(WorkerSession):
    """ONNX Runtime in a worker: refuses what the in-process ``ort`` backend refuses (the node
    configurations onnxruntime computes differently from ONNX, :func:`mlms_ir.backends.ort.departures`)
    and reads ``float8e4m3fn`` outputs, which onnxruntime gives as uint8 bits, as the ``ort`` backend does."""

    casts_to_declared = False  # onnxruntime returns the declared types (float8 as bits: as_declared)

    def _departures(self, graph: Graph):
        from mlms_ir.backends.ort import departures

        return departures(graph)

    def _request(self, feeds: dict[str, np.ndarray], **kwargs: Any) -> tuple[list[float], dict[str, np.ndarray]]:
        from mlms_ir.backends.ort import as_declared

        samples, outputs = super()._request(feeds, **kwargs)
        return samples, as_declared(self.graph, outputs)


WorkerBackend.session_class = WorkerSession
IsolatedOrtBackend.session_class = IsolatedOrtSession


def as_declared_dtypes(graph: Graph, outputs: dict[str, Any], backend: str) -> dict[str, Any]:
    """``outputs`` in the element types ``graph`` declares for them. MXNet's importer builds
    float32 symbols for integer and boolean ops (ArgMax, Equal, Shape...) and onnx-tf returns some
    int32 where ONNX says int64: the values are converted when the conversion keeps every one of
    them (integers and booleans exactly: a float that is not a whole number in range, or a
    boolean that is not 0 or 1, raises :class:`BackendError` rather than be rounded); floats of
    another width are converted (computed in another precision, they compare within tolerance).
    Outputs without a declared numeric type (strings, undeclared) are left as they are. A
    declared 0-d output given as one element of shape (1,) (MXNet 1.x has no 0-d arrays) is
    given its declared shape."""
    from mlms_ir.ir.dtypes import np_dtype

    for name, v in outputs.items():
        t = graph.tensor(name)
        if t is None or t.value_kind != "tensor" or not isinstance(v, np.ndarray) or not t.elem_type:
            continue
        if t.shape == () and v.shape == (1,):  # MXNet 1.x has no 0-d arrays
            outputs[name] = v = v.reshape(())
        want = np_dtype(t.elem_type)
        if want is None or v.dtype == want or want.kind not in "biuf" or v.dtype.kind not in "biuf":
            continue
        if want.kind == "f":
            outputs[name] = v.astype(want)
            continue
        with np.errstate(all="ignore"):
            if want.kind == "b":
                ok = bool(np.isin(v, (0, 1)).all())
                conv = v != 0
            else:
                info = np.iinfo(want)
                ok = bool((np.isfinite(v) & (v == np.round(v)) & (v >= info.min) & (v <= info.max)).all()) \
                    if v.dtype.kind == "f" else bool(((v >= info.min) & (v <= info.max)).all()) if v.size else True
                conv = v.astype(want)
        if not ok:
            raise BackendError(f"{backend} returned output '{name}' as {v.dtype} with values that are not {t.dtype} "
                               f"(the graph declares {t.dtype}): refused rather than rounded")
        outputs[name] = conv
    return outputs


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed .npz keyed by name, as the agent reads it (any key,
    even ``file``, which ``np.savez`` cannot take; no pickled objects)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            a = np.asarray(arr)
            if a.dtype.hasobject:
                raise BackendError(f"input '{name}' holds Python objects ({a.dtype}); a worker takes numeric arrays only")
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, a, allow_pickle=False)


__all__ = [
    "AGENT", "PROTOCOL", "DEFAULT_TIMEOUT_S", "DEPARTURES", "AgentCrashError", "AgentGuard", "AgentTimeoutError", "IsolatedOrtSession", "MXNetBackend",
    "OnnxTfBackend", "REUSE_VAR", "WorkerBackend", "WorkerSession", "as_declared_dtypes", "call_agent", "close_agents", "clear_probe_cache", "envs_dir", "probe", "save_npz",
]
