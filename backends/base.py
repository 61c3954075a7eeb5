"""The backend protocol: what every execution backend provides.

A :class:`Backend` says whether it can run here (:meth:`Backend.available`) and prepares a
:class:`Session` for a :class:`~mlms_ir.ir.Graph` on a device. A session runs feeds
(:meth:`Session.run`), runs with per-node tracing (:meth:`Session.trace`), and is a context
manager. Backends override only the ``_*_impl`` hooks; the public methods check state.

Per-node records (:class:`NodeTrace`) carry the ids of the graph nodes they cover, so every
backend maps its own names (ORT's node names, TensorRT layers, torch modules) onto the graph
where it knows how; work it cannot attribute keeps ``covers == []``.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlms_ir.errors import BackendError, BackendUnavailableError, FeedError
from mlms_ir.harness import LatencyStats, measure
from mlms_ir.ir import Graph
from mlms_ir.values import Value, check_tensor, check_value

DEVICES = ("cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run on a device here, and if not, why."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class NodeTrace:
    """One measured piece of work of a traced run.

    ``covers`` lists the graph node ids the work belongs to (several for a fused kernel, none when
    it cannot be attributed); ``start_us`` is relative to the start of the run.
    """

    name: str
    op_type: str
    start_us: float
    time_us: float
    covers: list[str] = field(default_factory=list)
    track: str = "main"
    kind: str = "node"  # "node" (a backend op), "kernel" (device work), "other"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class TraceResult:
    """The outputs and per-node records of one traced run."""

    outputs: dict[str, Value]
    events: list[NodeTrace]
    wall_us: float


class Session(abc.ABC):
    """A model prepared on one backend and device."""

    def __init__(self, backend: str, device: str, graph: Graph, options: Mapping[str, Any] | None = None) -> None:
        self.backend = backend
        self.device = device
        self.graph = graph
        self.options: dict[str, Any] = dict(options or {})
        #: Graph nodes this backend runs without any node of its own (folded into constants
        #: while preparing): they can have no time or kernels of their own.
        self.unmapped: list[str] = []
        self._closed = False

    # ------------------------------------------------------------------ public API
    def run(self, feeds: Mapping[str, Value]) -> dict[str, Value]:
        """Run once; returns every graph output by name (sequences as lists, maps as dicts, optionals
        as their value or None: :mod:`mlms_ir.values`)."""
        self._check_open()
        return self._run_impl(check_feeds(self.graph, feeds))

    def trace(self, feeds: Mapping[str, Value], runs: int = 1) -> list[TraceResult]:
        """Run ``runs`` times with per-node tracing; one result per run."""
        self._check_open()
        return self._trace_impl(check_feeds(self.graph, feeds), max(1, int(runs)))

    def intermediates(self, feeds: Mapping[str, Value], names: Sequence[str]) -> dict[str, Value]:
        """The values of the named tensors (node outputs of the graph) for ``feeds``.

        Backends that rewrite the graph expose only tensors that survive their rewriting; a name
        they cannot expose is missing from the result."""
        self._check_open()
        return self._intermediates_impl(check_feeds(self.graph, feeds), list(names))

    def runner(self, feeds: Mapping[str, Value]) -> Callable[[], dict[str, Value]]:
        """A zero-argument callable that runs ``feeds`` (validated once, here): for timing loops."""
        self._check_open()
        checked = check_feeds(self.graph, feeds)
        impl = self._run_impl
        return lambda: impl(checked)

    def measure(self, feeds: Mapping[str, Value], *, warmup: int = 10, iterations: int = 100,
                min_time_s: float = 0.0) -> tuple[LatencyStats, dict[str, Value]]:
        """Latency of ``feeds`` with the harness (:func:`mlms_ir.harness.measure`), and the outputs
        of one run. Backends that cannot be timed from this process (workers) override it."""
        run = self.runner(feeds)
        outputs = run()
        stats = measure(run, synchronize=self.synchronize, warmup=warmup, iterations=iterations, min_time_s=min_time_s)
        return stats, outputs

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    @property
    def node_mapping(self) -> dict[str, list[str]]:
        """Where this backend's own nodes differ from the graph's: backend node -> the graph node
        ids it computes (a fused kernel, a renamed module). Empty: one backend node per graph node."""
        return {}

    @contextlib.contextmanager
    def nvtx_ranges(self) -> Iterator[None]:
        """Within this context, every run marks each graph node's work with an NVTX range named
        after the node id (what ncu and Nsight Systems attribute kernels by). Backends that cannot
        mark nodes raise :class:`BackendError`."""
        raise BackendError(f"the {self.backend} backend cannot mark graph nodes with NVTX ranges")
        yield  # pragma: no cover - a generator, for contextmanager

    def close(self) -> None:
        if not self._closed:
            self._close_impl()
            self._closed = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _run_impl(self, feeds: dict[str, Value]) -> dict[str, Value]: ...

    def _trace_impl(self, feeds: dict[str, Value], runs: int) -> list[TraceResult]:
        raise BackendError(f"the {self.backend} backend cannot trace per node")

    def _intermediates_impl(self, feeds: dict[str, Value], names: list[str]) -> dict[str, Value]:
        raise BackendError(f"the {self.backend} backend cannot expose intermediate tensors")

    def _close_impl(self) -> None:
        pass

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"this {self.backend} session is closed")


class Backend(abc.ABC):
    """An execution backend: a name, the devices it knows, availability, and sessions."""

    name: str = ""
    devices: tuple[str, ...] = ("cpu",)
    #: The pip extra that installs what it needs ('' when the core suffices).
    extra: str = ""
    description: str = ""
    #: Whether it takes and returns sequences, maps and optionals (:mod:`mlms_ir.values`); one
    #: that does not refuses, in :meth:`prepare`, a model with such inputs or outputs.
    takes_non_tensors: bool = False
    #: The module whose process-wide thread pool it computes with, where a forked child cannot use
    #: that pool once this process has (PyTorch's OpenMP pool: the child's first parallel op waits
    #: for threads that were not forked, for good). Callers that fork per backend run it in-process
    #: when that module was already loaded (:func:`mlms_ir.runner.run_backends`).
    thread_pool_module: str | None = None

    def available(self, device: str = "cpu", **options: Any) -> Availability:
        """Whether this backend can run on ``device`` here (never raises). ``options`` are the
        session options a caller would pass to :meth:`prepare` (an agent's ``python``, say)."""
        if device not in self.devices:
            return Availability(False, f"{self.name} does not run on '{device}' (it knows: {', '.join(self.devices)})")
        try:
            return self._available_impl(device, **options)
        except Exception as exc:  # noqa: BLE001 - availability must never raise
            return Availability(False, f"{type(exc).__name__}: {exc}")

    def prepare(self, graph: Graph, device: str = "cpu", **options: Any) -> Session:
        """A session for ``graph`` on ``device``; raises :class:`BackendUnavailableError` if it cannot run."""
        avail = self.available(device, **options)
        if not avail:
            raise BackendUnavailableError(f"backend '{self.name}' cannot run on {device} here: {avail.reason}")
        if not self.takes_non_tensors:
            refuse_non_tensors(graph, self.name)
        return self._prepare_impl(graph, device, **options)

    @abc.abstractmethod
    def _available_impl(self, device: str, **options: Any) -> Availability:
        """Whether it can run on ``device`` (a device it knows) with the session ``options``."""

    @abc.abstractmethod
    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session: ...


def model_source(graph: Graph) -> str | bytes:
    """What a backend should load to execute ``graph``: the model file's path (external data
    resolves beside it) or the serialized model (analysis drops embedded weights from
    ``graph.model``, so that copy cannot run)."""
    loaded = graph.loaded
    if loaded is None:
        raise BackendError("this graph was not built by mlms_ir.load, so its weights are unknown")
    if loaded.path is not None:
        return os.fspath(loaded.path)
    src = loaded.source
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    return src.SerializeToString()  # type: ignore[union-attr]


def check_feeds(graph: Graph, feeds: Mapping[str, Value]) -> dict[str, Value]:
    """Validate feeds against the graph's inputs (names, dtypes, ranks and fixed dims; sequences,
    maps and optionals against their declared types, in the convention of :mod:`mlms_ir.values`)."""
    expected = graph.input_names
    unknown = [k for k in feeds if k not in expected]
    if unknown:
        raise FeedError(f"the model has no input {', '.join(repr(k) for k in unknown)}; its inputs are: {', '.join(expected)}")
    missing = [k for k in expected if k not in feeds]
    if missing:
        raise FeedError(f"no value given for input {', '.join(repr(k) for k in missing)}")
    out: dict[str, Value] = {}
    for name in expected:
        t = graph.tensors[name]
        if t.value_kind == "tensor":
            out[name] = check_tensor(f"input '{name}'", feeds[name], t.elem_type, t.shape)
        else:
            out[name] = check_value(f"input '{name}'", feeds[name], graph.value_type(name))
    return out


def refuse_non_tensors(graph: Graph, backend: str) -> None:
    """Raise :class:`BackendError` when ``graph`` has an input or output that is not a tensor (a
    sequence, map or optional), for a backend that takes and returns tensors only."""
    from mlms_ir.values import type_text

    for where, names in (("input", graph.input_names), ("output", graph.output_names)):
        for name in names:
            t = graph.tensors.get(name)
            if t is not None and t.value_kind != "tensor":
                raise BackendError(f"the {backend} backend takes and returns tensors only; the model's {where} '{name}' is "
                                   f"{type_text(graph.value_type(name))}, not a tensor: run it on ort, ort-isolated or reference")
