"""The framework agent: runs one ONNX model in a framework that lives in another Python environment.

This file is a standalone script. It imports only the standard library and numpy at top level
(and the framework, plus ``onnx``, inside the request it serves); it never imports ``mlms_ir``,
because the environments it runs in (MXNet's, onnx-tf's) do not have it. The worker backends in
``mlms_ir.backends.worker`` start it as::

    PYTHON path/to/agent.py REQUEST.json

Protocol (version 2; version 1 is still served)
-----------------------------------------------
The request is a JSON object:

``protocol``
    ``2`` (or ``1``: the same request without ``layout``, whose inputs and outputs are tensors only;
    the agent answers in the request's version).
``framework``
    ``"mxnet"``, ``"onnx-tf"`` or ``"probe"``.
``target``
    Only for ``"probe"``: the framework to import (``"mxnet"``, ``"onnx-tf"``, or absent for none).
``model``
    Path of the ``.onnx`` file (external data resolves beside it).
``inputs``
    Path of an ``.npz`` file with one array per graph input, keyed by input name (read with
    ``allow_pickle=False``; object arrays are refused).
``layout``
    Version 2, optional: the inputs that are not plain arrays (sequences, maps, optionals, string
    tensors), as :func:`pack_values` describes them; their arrays are in the ``.npz`` under the
    keys the layout names.
``outputs``
    Path where the agent writes the outputs ``.npz``: the LAST run's outputs, keyed by the ONNX
    graph's output names (version 2: outputs that are not plain arrays are in the result's
    ``layout``, their arrays in the ``.npz`` under the keys it names).
``result``
    Path where the agent writes the result JSON (below).
``warmup``, ``iterations``
    Untimed runs, then timed runs (``time.perf_counter_ns`` around each run, including the copy
    of the outputs to numpy, which also waits for asynchronous frameworks). Defaults 0 and 1.
``min_time_s``
    Optional: keep on timing runs (past ``iterations``, up to 100000) until this many seconds
    of timed runs have passed. Default 0.
``device``
    ``"cpu"`` (default) or ``"cuda"``.

The result is a JSON object:

``protocol`` (the request's), ``status`` (``"ok"`` or ``"error"``), ``error`` (one line, ``""``
when ok), ``framework``, ``framework_version``, ``python`` (its version), ``numpy_version``,
``onnx_version``, ``load_ms`` (importing the model into the framework, once), ``latency_ms``
(one sample per timed run), ``outputs`` (the output names in graph order), ``layout`` (version 2:
the outputs that are not plain arrays, ``{}`` when none); a probe adds ``gpus`` (the GPUs the
framework sees, when it can tell).

Values that are not plain arrays (version 2) follow onnxruntime's Python convention: a sequence
is a list, a map a dict, an empty optional None, a string tensor an array of ``str`` objects.
A layout maps a name to a JSON tree: ``{"tensor": KEY}`` (an array), ``{"strings": KEY}`` (a
string tensor, stored as a unicode or bytes array, read back as ``object``), ``{"scalar": KEY}``
(a Python number, stored as a 0-d array), ``{"sequence": [TREE, ...]}``, ``{"map": [[KEY, TREE],
...]}`` (keys as JSON ints or strings) and ``{"none": true}`` (an empty optional); every KEY is
an array of the ``.npz``.

``PYTHON path/to/agent.py --serve`` serves requests one after another in one process (the
framework imported once): each line of stdin is a request's path, and the agent writes ``done``
on a line of stdout once its result is written; it ends with its stdin. The worker backends use
it when ``MLMS_IR_AGENT_REUSE`` is set (:data:`mlms_ir.backends.worker.REUSE_VAR`).

The model is loaded into the framework once per request. The agent exits 0 whenever it could write
a result, including an error result; a non-zero exit, a signal or a missing result file means it
crashed (the parent then reports the end of its stderr). A probe request needs only ``framework``,
``target`` and ``result``: it reports the versions, or the import error as ``status: "error"``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
import zipfile

import numpy as np

PROTOCOL = 2
#: The protocol versions this agent serves (it answers in the request's).
PROTOCOLS = (1, 2)
FRAMEWORKS = ("mxnet", "onnx-tf", "onnxruntime", "probe")
MAX_ITERATIONS = 100_000


# ---------------------------------------------------------------------------- npz files
def save_npz(path: str, arrays: dict) -> None:
    """Write arrays to ``path`` as an uncompressed .npz keyed by name (any name: ``np.savez``
    cannot take a key called ``file``)."""
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(str(name) + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    os.replace(tmp, path)


def load_npz(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _leaf_prefix(names) -> str:
    prefix = "~v"
    while any(str(n).startswith(prefix) for n in names):
        prefix = "~" + prefix
    return prefix


def _strings(a: np.ndarray) -> np.ndarray:
    """A string tensor (an object array of ``str`` or of ``bytes``) as a unicode or bytes array."""
    kinds = {type(x) for x in a.flat}
    if kinds <= {str}:
        return a.astype(np.str_)
    if kinds <= {bytes}:
        return a.astype(np.bytes_)
    raise ValueError(f"an array of Python objects ({', '.join(sorted(k.__name__ for k in kinds))}) is no ONNX tensor")


def pack_values(values: dict) -> tuple:
    """Named values as (arrays for an ``.npz``, a JSON layout): plain arrays stay under their
    names and are not in the layout; sequences (lists), maps (dicts), empty optionals (None),
    Python scalars and string tensors of ``str`` objects are described by the layout (see the
    module), their arrays stored under generated keys. Raises ValueError for what is none of these."""
    arrays: dict = {}
    layout: dict = {}
    prefix = _leaf_prefix(values)

    def leaf(kind: str, a: np.ndarray) -> dict:
        key = f"{prefix}{len(arrays)}"
        arrays[key] = a
        return {kind: key}

    def tree(v):
        if v is None:
            return {"none": True}
        if isinstance(v, (list, tuple)):
            return {"sequence": [tree(x) for x in v]}
        if isinstance(v, dict):
            items = []
            for k, x in v.items():
                if isinstance(k, np.integer):
                    k = int(k)
                elif isinstance(k, bytes):
                    k = k.decode("utf-8")
                if not isinstance(k, (int, str)) or isinstance(k, bool):
                    raise ValueError(f"a map key {k!r} is neither an integer nor a string")
                items.append([k, tree(x)])
            return {"map": items}
        if isinstance(v, (bool, int, float, complex, str, bytes)):
            return leaf("scalar", np.asarray(v))
        a = np.asarray(v)
        if a.dtype.hasobject:
            return leaf("strings", _strings(a))
        return leaf("tensor", a)

    for name, v in values.items():
        if isinstance(v, (np.ndarray, np.generic)) and not np.asarray(v).dtype.hasobject:
            arrays[name] = np.asarray(v)
        else:
            layout[name] = tree(v)
    return arrays, layout


def unpack_values(arrays: dict, layout: dict) -> dict:
    """The named values :func:`pack_values` packed (``layout`` from the request or the result)."""
    def value(t):
        if not isinstance(t, dict) or len(t) != 1:
            raise ValueError(f"a layout entry must be an object of one key, got {str(t)[:80]}")
        (kind, v), = t.items()
        if kind == "none":
            return None
        if kind == "sequence":
            return [value(x) for x in v]
        if kind == "map":
            return {k: value(x) for k, x in v}
        if kind not in ("tensor", "strings", "scalar"):
            raise ValueError(f"unknown layout entry {kind!r}")
        if v not in arrays:
            raise ValueError(f"the layout names the array {v!r}, which the .npz lacks")
        a = arrays[v]
        return a.astype(object) if kind == "strings" else a.item() if kind == "scalar" else a

    used = set()

    def keys(t):
        (kind, v), = t.items()
        if kind == "sequence":
            for x in v:
                keys(x)
        elif kind == "map":
            for _, x in v:
                keys(x)
        elif kind != "none":
            used.add(v)

    out = {}
    for name, t in layout.items():
        out[name] = value(t)
        keys(t)
    for name, a in arrays.items():
        if name not in used and name not in out:
            out[name] = a
    return out


def write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- helpers
def _sibling(name: str):
    """A standalone module from this script's folder (``onnx_tf_compat``, ``mxnet_compat``; both
    import ``onnx_versions`` from it too)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import importlib

    return importlib.import_module(name)


def _one_line(exc: BaseException) -> str:
    return _sibling("onnx_tf_compat").one_line(exc)


def _version(module: str) -> str:
    try:
        from importlib import metadata

        return metadata.version(module)
    except Exception:  # noqa: BLE001
        return ""


def _graph_io(model_path: str):
    """(input names that are not initializers, output names) of the ONNX model, in graph order."""
    import onnx

    m = onnx.load(model_path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    inputs = [i.name for i in m.graph.input if i.name not in inits]
    return inputs, [o.name for o in m.graph.output]


def _load_default_domain(model: str):
    """``onnx.load(model)``, ONNX's default domain spelt ``""`` where the file spells it
    ``"ai.onnx"`` (one domain; the frameworks' importers know only ``""``). As
    :func:`mlms_ir.ir.load.normalize_default_domain` does, which this environment cannot import.

    Its IR version is lowered to this environment's onnx's newest where the file's is newer
    (today's onnx writes IR 13 and up, the frameworks' pinned onnx checks at most IR 11 and refuses
    the model for it alone): the IR version says which file features may occur, not what an op
    computes, and a feature the older onnx lacks still fails where it is used, naming it."""
    import onnx

    proto = onnx.load(model)
    if proto.ir_version > onnx.IR_VERSION:
        proto.ir_version = onnx.IR_VERSION

    def fix(nodes) -> None:
        for n in nodes:
            if n.domain == "ai.onnx":
                n.domain = ""
            for a in n.attribute:
                for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    fix(g.node)

    for op in proto.opset_import:
        if op.domain == "ai.onnx":
            op.domain = ""
    fix(proto.graph.node)
    return proto


# ---------------------------------------------------------------------------- frameworks
class MXNetRunner:
    """MXNet 1.9: its ONNX importer (``mxnet.contrib.onnx``) gives (symbol, arg_params,
    aux_params); a Module bound for inference with the feeds' shapes runs it."""

    def __init__(self, model: str, feeds: dict, device: str) -> None:
        import mxnet as mx
        import onnx
        from mxnet.contrib.onnx.onnx2mx.import_onnx import GraphProto

        # mxnet.contrib.onnx.import_model(path) does the same, but its importer predates IR 4:
        # it finds weights only among the graph's inputs, so list every initializer there too
        compat = _sibling("mxnet_compat")  # what today's exporters write and the importer lacks
        compat.patch()
        proto = _load_default_domain(model)
        compat.prepare(proto, {k: v.shape for k, v in feeds.items()})
        listed = {i.name for i in proto.graph.input}
        for t in proto.graph.initializer:
            if t.name not in listed:
                proto.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1)
        sym, arg_params, aux_params = GraphProto().from_onnx(proto.graph, opset_version=opset)
        self.ctx = mx.gpu(0) if device == "cuda" else mx.cpu()
        inputs, self.output_names = _graph_io(model)
        # an input the symbol does not read (CastLike's "like", read for its type only) is no data
        # for the Module; a layout without N: the inputs need no common batch size (Add's
        # broadcasting feeds x[3, 4, 5] and y[5])
        used = set(sym.list_arguments())
        self.input_names = [n for n in inputs if n in feeds and n in used]
        # a fed BatchNormalization mean or variance is an auxiliary state in MXNet, not an argument
        aux = set(sym.list_auxiliary_states())
        aux_params = dict(aux_params)
        aux_params.update({n: mx.nd.array(feeds[n], dtype=feeds[n].dtype) for n in inputs if n in feeds and n in aux})
        # set_params(allow_missing=True) would initialise anything else at random: say so instead
        missing = sorted((used - set(self.input_names) - set(arg_params)) | (aux - set(aux_params)))
        if missing:
            raise ValueError(f"MXNet's symbol reads {', '.join(missing)}, which is neither a graph input fed nor a weight")
        self.mod = mx.mod.Module(symbol=sym, data_names=self.input_names, label_names=None, context=self.ctx)
        self.mod.bind(for_training=False, data_shapes=[mx.io.DataDesc(n, feeds[n].shape, layout="")
                                                       for n in self.input_names])
        self.mod.set_params(arg_params, aux_params, allow_missing=True, allow_extra=True)
        self.batch = mx.io.DataBatch([mx.nd.array(feeds[n], ctx=self.ctx, dtype=feeds[n].dtype) for n in self.input_names])

    def run(self) -> list:
        self.mod.forward(self.batch, is_train=False)
        return [o.asnumpy() for o in self.mod.get_outputs()]


#: ONNX element types TensorFlow has no type for (the float8, float4, int4 and int2 families),
#: by ONNX's number: what a model using them is refused for on onnx-tf.
_NO_TF_TYPE = {17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
               23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2"}


def _types_lacking(proto, names: dict) -> set:
    """The names (from ``names``, ONNX element type -> name) of the element types ``proto`` uses
    in its values, weights, Cast targets and attribute tensors, subgraphs included."""
    import onnx

    found = set()

    def walk(g) -> None:
        for vi in (*g.input, *g.output, *g.value_info):
            t = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            found.add(t)
        found.update(t.data_type for t in g.initializer)
        for n in g.node:
            for a in n.attribute:
                if a.name == "to" and a.type == onnx.AttributeProto.INT:
                    found.add(a.i)
                elif a.type == onnx.AttributeProto.TENSOR:
                    found.add(a.t.data_type)
                elif a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        walk(sg)

    walk(proto.graph)
    return {names[t] for t in found if t in names}


class OnnxTfRunner:
    """onnx-tf 1.10: ``prepare`` converts the model to a TensorFlow graph once; ``rep.run`` takes
    the non-initializer inputs in order."""

    def __init__(self, model: str, feeds: dict, device: str) -> None:
        from onnx_tf.backend import prepare

        _sibling("onnx_tf_compat").patch()  # the op versions onnx-tf 1.10 lacks
        proto = _load_default_domain(model)
        lacking = _types_lacking(proto, _NO_TF_TYPE)
        if lacking:  # onnx-tf maps them to float32 and answers in it: a wrong value, unmarked
            raise ValueError(f"onnx-tf has no {', '.join(sorted(lacking))} type (TensorFlow lacks it): the model uses it")
        self.rep = prepare(proto, device="CUDA" if device == "cuda" else "CPU")
        inputs, self.output_names = _graph_io(model)
        order = list(getattr(self.rep, "inputs", None) or inputs)
        self.args = [feeds[n] for n in order]

    def run(self) -> list:
        outs = self.rep.run(self.args)
        return [np.asarray(o) for o in outs]


class OnnxRuntimeRunner:
    """ONNX Runtime in a worker process: the same runtime as the in-process ``ort`` backend,
    isolated so that a crash or a hang costs one request, not the caller."""

    def __init__(self, model: str, feeds: dict, device: str) -> None:
        import onnxruntime as ort

        providers = (["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"]
        self.sess = ort.InferenceSession(model, providers=providers)
        self.output_names = [o.name for o in self.sess.get_outputs()]
        self.feeds = {i.name: feeds[i.name] for i in self.sess.get_inputs()}

    def run(self) -> list:
        return self.sess.run(None, self.feeds)


RUNNERS = {"mxnet": MXNetRunner, "onnx-tf": OnnxTfRunner, "onnxruntime": OnnxRuntimeRunner}
IMPORTS = {"mxnet": ("mxnet", "mxnet"), "onnx-tf": ("onnx_tf", "onnx-tf"), "onnxruntime": ("onnxruntime", "onnxruntime")}


def _framework_version(framework: str | None) -> str:
    """Import the framework (raises its import error) and return its version."""
    if not framework:
        return ""
    if framework not in IMPORTS:
        raise ValueError(f"unknown framework '{framework}' (known: {', '.join(IMPORTS)})")
    module, dist = IMPORTS[framework]
    if framework == "onnx-tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    mod = __import__(module)
    return str(getattr(mod, "__version__", "") or _version(dist))


def _gpus(framework: str | None) -> int:
    """GPUs the (already imported) framework sees; 0 when it cannot tell."""
    try:
        if framework == "mxnet":
            import mxnet as mx

            return int(mx.context.num_gpus())
        if framework == "onnx-tf":
            import tensorflow as tf

            return len(tf.config.list_physical_devices("GPU"))
        if framework == "onnxruntime":
            import onnxruntime as ort

            return int("CUDAExecutionProvider" in ort.get_available_providers())
    except Exception:  # noqa: BLE001 - a CPU build may raise instead of answering 0
        return 0
    return 0


# ---------------------------------------------------------------------------- serving a request
def serve(req: dict) -> dict:
    """Serve one request; returns the result object (never raises)."""
    framework = req.get("framework")
    res: dict = {
        "protocol": PROTOCOL,
        "status": "ok",
        "error": "",
        "framework": framework,
        "framework_version": "",
        "python": platform.python_version(),
        "executable": sys.executable,
        "numpy_version": np.__version__,
        "onnx_version": "",
        "load_ms": None,
        "latency_ms": [],
        "outputs": [],
    }
    if req.get("protocol") in PROTOCOLS:
        res["protocol"] = req["protocol"]
    try:
        if req.get("protocol") not in PROTOCOLS:
            raise ValueError(f"this agent speaks protocol {' or '.join(map(str, PROTOCOLS))}, the request says {req.get('protocol')!r}")
        if framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {framework!r} (known: {', '.join(FRAMEWORKS)})")
        if framework == "probe":
            res["framework_version"] = _framework_version(req.get("target"))
            res["onnx_version"] = _version("onnx")
            res["gpus"] = _gpus(req.get("target"))
            return res
        res["framework_version"] = _framework_version(framework)
        res["onnx_version"] = _version("onnx")
        device = req.get("device", "cpu")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {device!r} (known: cpu, cuda)")
        version = req["protocol"]
        if version < 2 and req.get("layout"):
            raise ValueError("a protocol 1 request has no layout (sequences, maps, optionals and strings need protocol 2)")
        feeds = unpack_values(load_npz(req["inputs"]), req.get("layout") or {})
        t0 = time.perf_counter_ns()
        runner = RUNNERS[framework](req["model"], feeds, device)
        res["load_ms"] = (time.perf_counter_ns() - t0) / 1e6
        res["outputs"] = list(runner.output_names)
        for _ in range(max(0, int(req.get("warmup", 0)))):
            runner.run()
        outs = None
        clock = time.perf_counter_ns
        samples = []
        iterations = max(1, int(req.get("iterations", 1)))
        min_ns = max(0.0, float(req.get("min_time_s", 0) or 0)) * 1e9
        spent = 0
        while len(samples) < iterations or (spent < min_ns and len(samples) < MAX_ITERATIONS):
            t = clock()
            outs = runner.run()
            dt = clock() - t
            spent += dt
            samples.append(dt / 1e6)
        res["latency_ms"] = samples
        if len(outs) != len(runner.output_names):
            raise RuntimeError(f"{framework} returned {len(outs)} outputs, the graph has {len(runner.output_names)}")
        arrays, layout = pack_values(dict(zip(runner.output_names, outs)))
        if version < 2 and layout:
            raise ValueError(f"output {', '.join(repr(n) for n in layout)} is not a plain array (a sequence, map, optional "
                             "or string tensor), which protocol 1 cannot carry; send a protocol 2 request")
        save_npz(req["outputs"], arrays)
        if version >= 2:
            res["layout"] = layout
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error result
        res["status"] = "error"
        res["error"] = _one_line(exc)
        traceback.print_exc(file=sys.stderr)
    return res


def serve_requests(stdin=None, stdout=None) -> int:
    """``--serve``: serve requests one after another, the framework imported once. Each line of
    stdin is the path of a request JSON; once its result is written (or could not be: a request
    that cannot be read has no result file, which the caller reports), ``done`` is written on a
    line of stdout. What the frameworks print goes to stderr. Ends at the end of stdin."""
    if stdout is None:  # the protocol keeps the real stdout; print() and the frameworks get stderr
        stdout = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
    stdin = sys.stdin if stdin is None else stdin
    while True:
        line = stdin.readline()
        if not line:
            return 0
        path = line.strip()
        if not path:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                req = json.load(f)
            write_json(req["result"], serve(req))
        except Exception:  # noqa: BLE001 - no result file: the caller says so
            traceback.print_exc(file=sys.stderr)
        stdout.write("done\n")
        stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] == "--serve":
        return serve_requests()
    if len(argv) != 2:
        print(f"usage: {argv[0]} REQUEST.json | --serve", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        req = json.load(f)
    result = serve(req)
    write_json(req["result"], result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
