"""PyTorch eager mode, on CPU or CUDA: the ONNX model converted by onnx2torch.

The session converts a private copy of the model whose nodes are renamed to their graph ids, so
submodule ``n7`` *is* graph node ``n7`` (:mod:`mlms_ir.backends.torch_convert`, which also says
how onnx2torch's gaps are worked around; the session's ``rewrites`` says what it did).

Intermediate tensors (:meth:`TorchSession.intermediates`, for divergence analysis) are captured by
forward hooks on the submodules of the nodes that produce them, registered for that one run; a
multi-output node's k-th output is the k-th element of its module's tuple (what the fx graph's
``getitem`` calls pick). Nodes without a submodule (folded Identity nodes) expose nothing.

Per-node tracing wraps each node's submodule in ``torch.profiler.record_function("mlms_ir::<id>")``
for the traced runs only (plain runs pay nothing), runs under ``torch.profiler.profile`` and reads
the exported Chrome trace: one ``node`` event per range (host time), and on CUDA one ``kernel``
event per kernel, memcpy and memset, attributed to the node whose range enclosed its launch
(:mod:`mlms_ir.backends.torch_trace`, pure functions over the trace, tested without a GPU on a
trace in torch.profiler's CUDA layout).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mlms_ir.backends.base import Availability, Backend, BackendError, BackendUnavailableError, Session, TraceResult, model_source
from mlms_ir.backends.torch_convert import adapt_for_onnx2torch, convert_model, load_model, load_onnx2torch, load_torch, rename_to_ids
from mlms_ir.backends.torch_trace import NODE_PREFIX, RUN_PREFIX, split_trace
from mlms_ir.errors import MissingExtraError
from mlms_ir.ir import Graph
from mlms_ir.ir.dtypes import np_dtype

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- backend
#: fp16/bf16 run under torch.autocast (matmuls and convolutions in the reduced type).
PRECISIONS = ("fp32", "fp16", "bf16")


class TorchBackend(Backend):
    name = "torch"
    thread_pool_module = "torch"
    devices = ("cpu", "cuda")
    extra = "torch"
    description = "PyTorch eager mode (CPU, CUDA): the ONNX model converted with onnx2torch"

    def _available_impl(self, device: str, **options: Any) -> Availability:
        try:
            torch = load_torch()
            load_onnx2torch()
        except (MissingExtraError, BackendUnavailableError) as exc:
            return Availability(False, str(exc))
        if device == "cuda" and not torch.cuda.is_available():
            if torch.version.cuda is None:
                return Availability(False, f"this torch ({torch.__version__}) is a CPU-only build")
            return Availability(False, f"torch.cuda.is_available() is False: no CUDA device is visible to torch {torch.__version__} (built for CUDA {torch.version.cuda})")
        return Availability(True)

    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session:
        return TorchSession(graph, device, **options)

# ---------------------------------------------------------------------------------------------- session
def _range_module():
    """The wrapper that puts a profiler range around a submodule (built on first use: torch is lazy)."""
    global _Ranged
    if _Ranged is None:
        torch = load_torch()

        class Ranged(torch.nn.Module):
            def __init__(self, inner, label: str, profiler: bool = True, nvtx: bool = False) -> None:
                super().__init__()
                self.inner = inner
                self.label = label
                self.profiler = profiler
                self.nvtx = nvtx

            def forward(self, *args, **kwargs):
                if self.nvtx:
                    torch.cuda.nvtx.range_push(self.label)
                try:
                    if self.profiler:
                        with torch.profiler.record_function(self.label):
                            return self.inner(*args, **kwargs)
                    return self.inner(*args, **kwargs)
                finally:
                    if self.nvtx:
                        torch.cuda.nvtx.range_pop()

        _Ranged = Ranged
    return _Ranged


_Ranged = None
_NVTX: bool | None = None


def _nvtx_works(torch) -> bool:
    """Whether this torch build can push NVTX ranges (builds without NVTX raise on the first push)."""
    global _NVTX
    if _NVTX is None:
        try:
            torch.cuda.nvtx.range_push("mlms_ir.nvtx-check")
            torch.cuda.nvtx.range_pop()
            _NVTX = True
        except Exception as exc:  # noqa: BLE001 - RuntimeError("NVTX functions not installed") and the like
            log.info("torch backend: no NVTX ranges in traced runs (%s)", exc)
            _NVTX = False
    return _NVTX


class TorchSession(Session):
    def __init__(self, graph: Graph, device: str, precision: str = "fp32", **options: Any) -> None:
        if options:
            raise BackendError(f"the torch backend takes only the option precision (got {', '.join(sorted(options))})")
        if precision not in PRECISIONS:
            raise BackendError(f"the torch backend runs precision {', '.join(PRECISIONS)}, not '{precision}'")
        super().__init__("torch", device, graph, {"precision": precision})
        torch = load_torch()
        self._torch = torch
        self._precision = precision
        self._device = torch.device(device)
        model = load_model(model_source(graph))
        rename_to_ids(model, graph)
        #: What was rewritten in the model before onnx2torch converted it (one line each).
        self.rewrites = adapt_for_onnx2torch(model, graph)
        for note in self.rewrites:
            log.info("torch backend: %s", note)
        conv = convert_model(model, graph)
        # tensor -> (node id, output index, output count), over the nodes onnx2torch converted
        self._producers: dict[str, tuple[str, int, int]] = {}
        for n in model.graph.node:
            outs = list(n.output)
            for k, o in enumerate(outs):
                if o:
                    self._producers[o] = (n.name, k, len(outs))
        try:
            self._gm = conv.module.eval().to(self._device)
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory
            raise BackendError(f"cannot move the converted model to {device}: {' '.join(str(exc).split())[:300]}") from exc
        self._targets = conv.targets
        self._fx_nodes = conv.fx_nodes
        self.unmapped = conv.unmapped
        self._op_types = {n.id: n.op_type for n in graph.nodes}
        self._names = {n.id: (n.name or n.id) for n in graph.nodes}
        self._module_ids = {id(self._gm.get_submodule(t)): nid for t, nid in self._targets.items()}
        self._weight_storages = {t.untyped_storage().data_ptr() for t in (*self._gm.parameters(), *self._gm.buffers())}
        self._out_dtypes: list[np.dtype | None] = []
        for name in graph.output_names:
            t = graph.tensors.get(name)
            self._out_dtypes.append(np_dtype(t.elem_type) if t is not None else None)

    # ------------------------------------------------------------------ facts
    @property
    def module(self):
        """The converted ``torch.fx.GraphModule`` (submodules named after graph node ids)."""
        return self._gm

    @property
    def node_mapping(self) -> dict[str, list[str]]:
        """Submodule name -> the graph node ids it covers (one each)."""
        return {t: [nid] for t, nid in self._targets.items()}

    @property
    def fx_node_mapping(self) -> dict[str, str]:
        """fx node name -> graph node id, for call_module nodes and the getitem calls on them."""
        return dict(self._fx_nodes)

    # ------------------------------------------------------------------ running
    def _tensors(self, feeds: Mapping[str, np.ndarray]) -> list:
        torch = self._torch
        out = []
        for name in self.graph.input_names:
            a = feeds[name]
            if not (a.flags.c_contiguous and a.flags.writeable):
                a = np.array(a, order="C", copy=True)
            try:
                t = torch.from_numpy(a)
            except TypeError as exc:
                raise BackendError(f"torch cannot take input '{name}' of dtype {a.dtype}: {exc}") from exc
            out.append(t.to(self._device) if self._device.type != "cpu" else t)
        return out

    def _numpy(self, result, args: Sequence[Any] = ()) -> dict[str, np.ndarray]:
        """Outputs as numpy arrays of the graph's dtypes. On the CPU, an output that shares memory
        with a feed, a weight or another output (a passed-through input, an initializer output, a
        view) is copied, so no returned array aliases the caller's feeds or the model."""
        torch = self._torch
        outs = {}
        guard = set(self._weight_storages) if self._device.type == "cpu" else set()
        if guard:
            guard.update(a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor))
        for name, value, want in zip(self.graph.output_names, result, self._out_dtypes):
            if isinstance(value, torch.Tensor):
                v = value.detach()
                if v.dtype == torch.bfloat16:
                    v = v.float()
                arr = v.cpu().numpy()
                if guard:
                    ptr = v.untyped_storage().data_ptr()
                    if ptr in guard:
                        arr = arr.copy()
                    guard.add(ptr)
            else:
                arr = np.asarray(value)
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
            outs[name] = arr
        return outs

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """Inference mode, under autocast to float16/bfloat16 when the session's precision says."""
        torch = self._torch
        with torch.inference_mode():
            if self._precision == "fp32":
                yield
            else:
                dtype = torch.float16 if self._precision == "fp16" else torch.bfloat16
                with torch.autocast(device_type=self._device.type, dtype=dtype):
                    yield

    def _call(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = self._tensors(feeds)
        try:
            with self._context():
                result = self._gm(*args)
            return self._numpy(result, args)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - a converted op failing at run time
            raise BackendError(self._failure(exc)) from exc

    def _failure(self, exc: BaseException) -> str:
        """Name the graph node whose submodule raised, from the traceback."""
        where = None
        tb = exc.__traceback__
        while tb is not None:
            obj = tb.tb_frame.f_locals.get("self")
            if obj is not None and id(obj) in self._module_ids:
                where = self._module_ids[id(obj)]
            tb = tb.tb_next
        msg = " ".join(str(exc).split())[:400]
        if where is not None:
            return f"torch failed at node {self.graph.node(where).label}: {type(exc).__name__}: {msg}"
        return f"torch failed to run the model: {type(exc).__name__}: {msg}"

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._call(feeds)

    def synchronize(self) -> None:
        if self._device.type == "cuda":
            self._torch.cuda.synchronize(self._device)

    def _close_impl(self) -> None:
        self._gm = None
        self._module_ids = {}
        if self._device.type == "cuda":
            with contextlib.suppress(Exception):
                self._torch.cuda.empty_cache()

    # ------------------------------------------------------------------ intermediates
    def _intermediates_impl(self, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """The named tensors, captured in one run by forward hooks on the submodules of the nodes
        that produce them (registered for this call only). A module's output is its node's value
        when the node has one output; a tuple or list holds the node's outputs in ONNX order (the
        index the ``getitem`` calls of the fx graph pick), so output k is its k-th element. Graph
        inputs come from the feeds and graph outputs without a submodule (initializers, passed-through
        inputs) from the run's results. Missing: unknown names, and the outputs of nodes with no
        submodule (``unmapped``: Identity nodes folded into initializers) or whose module's output
        has no tensor in that place. Values are copied when captured, to the CPU, as the ONNX
        tensor's dtype, so later in-place ops cannot change them."""
        torch = self._torch
        module_of = {nid: t for t, nid in self._targets.items()}
        inputs = set(self.graph.input_names)
        outputs = set(self.graph.output_names)
        wanted = list(dict.fromkeys(names))
        # node id -> [(output index, output count, tensor name)]
        hooked: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        from_results: list[str] = []
        for name in wanted:
            if name in inputs:
                continue
            prod = self._producers.get(name)
            if prod is not None and prod[0] in module_of:
                hooked[prod[0]].append((prod[1], prod[2], name))
            elif name in outputs:
                from_results.append(name)
        values: dict[str, np.ndarray] = {}
        if hooked or from_results:
            captured: dict[str, Any] = {}

            def hook_for(picks: list[tuple[int, int, str]]):
                def hook(module, args, output) -> None:
                    for k, count, name in picks:
                        if isinstance(output, (tuple, list)):
                            value = output[k] if k < len(output) else None
                        else:
                            value = output if k == 0 else None
                        if isinstance(value, torch.Tensor):
                            # a copy on the CPU (.cpu() alone returns the same tensor there)
                            captured[name] = value.detach().to("cpu", copy=True)

                return hook

            handles = []
            args = self._tensors(feeds)
            try:
                for nid, picks in hooked.items():
                    handles.append(self._gm.get_submodule(module_of[nid]).register_forward_hook(hook_for(picks)))
                with self._context():
                    result = self._gm(*args)
                    results = self._numpy(result, args) if from_results else {}
            except BackendError:
                raise
            except Exception as exc:  # noqa: BLE001 - a converted op failing at run time
                raise BackendError(self._failure(exc)) from exc
            finally:
                for h in handles:
                    h.remove()
            for name, t in captured.items():
                arr = self._as_numpy(name, t)
                if arr is not None:
                    values[name] = arr
            for name in from_results:
                if name in results:
                    values[name] = results[name]
        out: dict[str, np.ndarray] = {}
        for name in wanted:  # in the order asked
            if name in inputs:
                out[name] = np.array(feeds[name], copy=True)
            elif name in values:
                out[name] = values[name]
        return out

    def _as_numpy(self, name: str, t) -> np.ndarray | None:
        """A captured CPU tensor as numpy, in the dtype of ONNX tensor ``name`` where the graph
        knows it (None when numpy cannot hold the value)."""
        try:
            if t.dtype == self._torch.bfloat16:
                t = t.float()
            arr = t.numpy()
            info = self.graph.tensor(name)
            want = np_dtype(info.elem_type) if info is not None and info.elem_type else None
            if want is not None and arr.dtype != want:
                arr = arr.astype(want)
        except Exception:  # noqa: BLE001 - dtypes numpy lacks
            return None
        return arr

    # ------------------------------------------------------------------ tracing
    @contextlib.contextmanager
    def _ranges(self, profiler: bool = True, nvtx: bool = False) -> Iterator[None]:
        """Wrap each mapped submodule in a ``record_function`` range (``profiler``) and/or an
        NVTX push/pop range (``nvtx``), both named ``mlms_ir::<node id>``, for the duration."""
        ranged = _range_module()
        swapped: list[tuple[Any, str, Any]] = []
        try:
            for target, nid in self._targets.items():
                parent_name, _, leaf = target.rpartition(".")
                parent = self._gm.get_submodule(parent_name) if parent_name else self._gm
                inner = getattr(parent, leaf)
                setattr(parent, leaf, ranged(inner, NODE_PREFIX + nid, profiler=profiler, nvtx=nvtx))
                swapped.append((parent, leaf, inner))
            yield
        finally:
            for parent, leaf, inner in reversed(swapped):
                setattr(parent, leaf, inner)

    @contextlib.contextmanager
    def nvtx_ranges(self) -> Iterator[None]:
        """While open, every graph node's call is wrapped in an NVTX push/pop range named
        ``mlms_ir::<node id>`` (default domain), for external tools: Nsight Systems shows the
        graph's nodes on its timeline, and Nsight Compute filters and attributes kernels by them
        (:mod:`mlms_ir.gpu.ncu`). A CUDA session's traced runs carry these ranges too. Cheap, but
        not free: plain runs go without them."""
        if self._device.type != "cuda":
            raise BackendError("NVTX ranges need the torch backend on a CUDA device")
        if not _nvtx_works(self._torch):
            raise BackendError(f"this torch build ({self._torch.__version__}) cannot push NVTX ranges")
        with self._ranges(profiler=False, nvtx=True):
            yield

    def _trace_impl(self, feeds: dict[str, np.ndarray], runs: int) -> list[TraceResult]:
        from torch.profiler import ProfilerActivity, profile, record_function

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self._device.type == "cuda" else [])
        outputs: list[dict[str, np.ndarray]] = []
        walls: list[float] = []
        nvtx = self._device.type == "cuda" and _nvtx_works(self._torch)
        with tempfile.TemporaryDirectory(prefix="mlms_ir_torch_") as tmp, self._ranges(nvtx=nvtx):
            path = os.path.join(tmp, "trace.json")
            with profile(activities=activities) as prof:
                for k in range(runs):
                    t0 = time.perf_counter()
                    with record_function(f"{RUN_PREFIX}{k}"):
                        outputs.append(self._call(feeds))  # the outputs' copy to numpy waits for the device
                    walls.append((time.perf_counter() - t0) * 1e6)
            prof.export_chrome_trace(path)
            with open(path, encoding="utf-8") as fh:
                trace = json.load(fh)
        per_run = split_trace(trace, self._op_types, self._names)
        if len(per_run) != runs:
            log.warning("the torch profile holds %d run ranges for %d runs", len(per_run), runs)
        results = []
        for k in range(runs):
            events, wall = per_run[k] if k < len(per_run) else ([], walls[k])
            results.append(TraceResult(outputs=outputs[k], events=events, wall_us=wall))
        return results
