"""TensorRT through its native Python API: an engine built from the ONNX file (fp32/fp16/int8
flags, workspace, timing cache), per-layer times from an ``IProfiler``, and the engine
inspector's layer information mapping TensorRT layers back to ONNX nodes.

TensorRT cannot be installed on the machines this project is built on (its libraries come from
a host they cannot reach), so this module is written against the documented API (TensorRT 10:
``execute_async_v3``, named I/O tensors) and its mapping logic is tested on recorded engine
information. Device buffers come from PyTorch's CUDA allocator (the ``torch`` extra).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir.backends.base import Availability, Backend, BackendError, NodeTrace, Session, TraceResult, model_source
from mlms_ir.ir import Graph

log = logging.getLogger(__name__)

_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
_REFORMAT = re.compile(r"^(Reformatting CopyNode|reformatted|Reformat)", re.IGNORECASE)


def map_layers(layers: list[dict[str, Any]], graph: Graph) -> dict[str, list[str]]:
    """TensorRT layer name -> the graph node ids it covers, from the engine inspector's JSON
    layer information (``Metadata`` holds ``[ONNX Layer: name]`` entries, one per fused ONNX
    node; older engines only join the fused node names with ``' + '`` in the layer name).
    Reformatting layers and layers TensorRT adds map to ``[]``."""
    by_name: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.name:
            by_name.setdefault(node.name, []).append(node.id)
    mapping: dict[str, list[str]] = {}
    for layer in layers:
        name = str(layer.get("Name", ""))
        names = _ONNX_LAYER.findall(str(layer.get("Metadata", "")))
        if not names and not _REFORMAT.match(name):
            names = [part.strip() for part in re.split(r"\s\+\s", name)]
        covers: list[str] = []
        for n in names:
            for nid in by_name.get(n, []):
                if nid not in covers:
                    covers.append(nid)
        mapping[name] = covers
    return mapping


def layer_information(inspector_json: str | dict) -> list[dict[str, Any]]:
    """The layer list of ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``
    (with ProfilingVerbosity.DETAILED a list of dicts; with less, a list of names)."""
    data = json.loads(inspector_json) if isinstance(inspector_json, str) else inspector_json
    layers = data.get("Layers", []) if isinstance(data, dict) else data
    return [layer if isinstance(layer, dict) else {"Name": str(layer)} for layer in layers]


class TensorRTBackend(Backend):
    name = "tensorrt"
    devices = ("cuda",)
    extra = "tensorrt"
    description = "NVIDIA TensorRT (native API; engines built from the ONNX file)"

    def _available_impl(self, device: str, **options: Any) -> Availability:
        try:
            import tensorrt  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - the bindings fail with OSError when libs are missing
            return Availability(False, f"tensorrt is not installed or its libraries are missing ({exc}); "
                                       "install it with: pip install 'mlms_ir[tensorrt]' on a machine with CUDA")
        try:
            import torch
        except ImportError:
            return Availability(False, "the TensorRT backend allocates device buffers with PyTorch: pip install 'mlms_ir[torch]'")
        if not torch.cuda.is_available():
            return Availability(False, "no CUDA device is available to PyTorch")
        return Availability(True)

    def _prepare_impl(self, graph: Graph, device: str, **options: Any) -> Session:
        return TensorRTSession(graph, device, **options)


class TensorRTSession(Session):
    """An engine, an execution context and device buffers for one input shape."""

    def __init__(self, graph: Graph, device: str, precision: str = "fp32", workspace_mb: int = 4096,
                 timing_cache: str | None = None) -> None:
        super().__init__("tensorrt", device, graph, {"precision": precision, "workspace_mb": workspace_mb, "timing_cache": timing_cache})
        import tensorrt as trt
        import torch

        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        src = model_source(graph)
        ok = parser.parse_from_file(src) if isinstance(src, str) else parser.parse(src)
        if not ok:
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse the model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        elif precision != "fp32":
            raise BackendError(f"unknown TensorRT precision '{precision}'; choose fp32, fp16 or int8")
        cache_bytes = Path(timing_cache).read_bytes() if timing_cache and Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for name in graph.input_names:
            shape = graph.tensors[name].shape
            if shape is None or not all(isinstance(d, int) for d in shape):
                raise BackendError(f"TensorRT needs a static shape for input '{name}'; bind it with --batch, --dims or --input-shape")
            profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError("TensorRT failed to build an engine (see its log above)")
        if timing_cache:
            Path(timing_cache).write_bytes(bytes(cache.serialize()))
        self._engine = trt.Runtime(self._logger).deserialize_cuda_engine(serialized)
        self._context = self._engine.create_execution_context()
        inspector = self._engine.create_engine_inspector()
        self._mapping = map_layers(layer_information(inspector.get_engine_information(trt.LayerInformationFormat.JSON)), graph)
        self._stream = torch.cuda.Stream()
        self._buffers: dict[str, Any] = {}
        self._outputs: list[str] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = trt.nptype(self._engine.get_tensor_dtype(name))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._context.set_input_shape(name, graph.tensors[name].shape)
            else:
                self._outputs.append(name)
            shape = tuple(self._context.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype=dtype)).dtype, device="cuda")
            self._buffers[name] = buf
            self._context.set_tensor_address(name, buf.data_ptr())

    @property
    def node_mapping(self) -> dict[str, list[str]]:
        return dict(self._mapping)

    def _execute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            for name, arr in feeds.items():
                self._buffers[name].copy_(torch.from_numpy(np.ascontiguousarray(arr)), non_blocking=False)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("TensorRT failed to execute the engine")
        self._stream.synchronize()
        return {name: self._buffers[name].cpu().numpy() for name in self._outputs}

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._execute(feeds)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def _trace_impl(self, feeds: dict[str, np.ndarray], runs: int) -> list[TraceResult]:
        trt = self._trt
        records: list[tuple[str, float]] = []

        class _Profiler(trt.IProfiler):
            def report_layer_time(self, layer_name: str, ms: float) -> None:  # noqa: N802 - TensorRT's name
                records.append((layer_name, ms))

        self._context.profiler = _Profiler()
        results = []
        try:
            for _ in range(runs):
                records.clear()
                outputs = self._execute(feeds)
                start = 0.0
                events = []
                for layer, ms in records:
                    events.append(NodeTrace(name=layer, op_type="", start_us=start, time_us=ms * 1000.0,
                                            covers=list(self._mapping.get(layer, [])), track="stream"))
                    start += ms * 1000.0
                results.append(TraceResult(outputs, events, start))
        finally:
            self._context.profiler = None
        return results
