"""Reading ONNX models safely: from a path, bytes or a ModelProto.

Static analysis never reads external weight data: only the declared location and size of each
external tensor are checked (the file exists, lies inside the model's folder, and is long
enough). The one exception is :func:`read_small_external_ints`: integer scalars and 1-D tensors
of a few KiB (shapes, axes), whose values shape inference needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern

import onnx
from google.protobuf.message import DecodeError

from mlms_ir.errors import ExternalDataError, InvalidModelError, ModelLoadError, UnsupportedOpsetError
from mlms_ir.ir.dtypes import dtype_bits, nbytes

ModelSource = str | os.PathLike | bytes | onnx.ModelProto


@dataclass
class LoadedModel:
    """A parsed model and where it came from."""

    model: onnx.ModelProto
    path: Path | None
    name: str
    file_bytes: int | None
    external_data_bytes: int
    #: What the model was loaded from (the caller's path, bytes or ModelProto, never modified):
    #: backends execute this, since analysis drops embedded weight data from ``model``.
    source: ModelSource | None = None
    #: The main graph's nodes whose attributes hold a tensor or a subgraph (:class:`Holders`): what
    #: the checks before shape inference look into. The nodes' names are read later
    #: (:func:`checked_rows`), while inference runs.
    holders: Holders | None = field(default=None, repr=False)
    #: How messages name the model: ``'path'``, "the given bytes" or "the given ModelProto".
    where: str = "the model"
    #: False when the file holds no ``pkg.torch.onnx.name_scopes`` metadata (the dynamo exporter's
    #: module path of a node): the structure pass then reads each node's scope from its name
    #: alone, without reading its metadata. True when it may (or for a ModelProto, not searched).
    scope_metadata: bool = True


#: A node as read once from its proto: op type, domain (``""`` for ``ai.onnx``), name, input and
#: output names (interned: one string per tensor however many nodes name it), whether an
#: attribute holds a subgraph, and whether one holds a tensor.
NodeRow = tuple[str, str, str, tuple[str, ...], tuple[str, ...], bool, bool]


class Holders:
    """The nodes of a graph with a tensor or a subgraph among their attributes, found from the
    attributes' types alone: what the loader's checks before shape inference look into (external
    data, Constants to strip). No name is read, so it costs a third of :func:`node_rows` (0.6 s
    against 2.1 s on a 200,000-node decoder), which the loader then runs while inference does."""

    __slots__ = ("nodes", "nested")

    def __init__(self, g: onnx.GraphProto) -> None:
        kinds = (_GRAPH, _GRAPHS, *_TENSOR_TYPES)
        #: The nodes that hold a tensor or a subgraph, in the graph's order.
        self.nodes: list[onnx.NodeProto] = [n for n in g.node if any(a.type in kinds for a in n.attribute)]
        #: Whether one of them holds a subgraph.
        self.nested = any(a.type in (_GRAPH, _GRAPHS) for n in self.nodes for a in n.attribute)


def read_model(source: ModelSource) -> LoadedModel:
    """Parse ``source`` into a ModelProto (a private copy when given a ModelProto) and validate it.

    Raises :class:`ModelLoadError`, :class:`ExternalDataError`, :class:`InvalidModelError` or
    :class:`UnsupportedOpsetError` with a one-sentence reason.
    """
    path: Path | None = None
    data: bytes | None = None
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        name = model.graph.name or "model"
        size = None
        where = "the given ModelProto"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = "the given bytes"
        model = _parse(data, where)
        name = model.graph.name or "model"
        size = len(data)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data = _read_file(path)
        where = f"'{path}'"
        model = _parse(data, where)
        name = path.name
        size = len(data)
    else:
        raise ModelLoadError(
            f"cannot load a model from a {type(source).__name__}; give a path, bytes or an onnx.ModelProto"
        )
    if not _names_are_text(model.graph) or not all(isinstance(o.domain, str) for o in model.opset_import):
        raise ModelLoadError(_not_text(where))
    _check_header(model, name)
    holders = Holders(model.graph)
    try:
        if data is None or spells_ai_onnx(data):
            normalize_default_domain(model, holders)
        ext = check_external_data(model, path.parent if path is not None else None, holders)
    except TypeError:  # a name in a node that is not text (bytes): said as such
        checked_rows(model.graph, where)
        raise
    return LoadedModel(model=model, path=path, name=name, file_bytes=size, external_data_bytes=ext, source=source,
                       holders=holders, where=where, scope_metadata=data is None or b"pkg.torch.onnx.name_scopes" in data)


def _not_text(where: str) -> str:
    return f"{where} holds names that are not valid UTF-8 text; the file is corrupt"


def checked_rows(g: onnx.GraphProto, where: str) -> list[NodeRow]:
    """:func:`node_rows` of ``g`` (a model's main graph, ``where`` as :class:`LoadedModel` says),
    or :class:`ModelLoadError` when a name in it is not text."""
    rows = node_rows(g, names_checked=True)  # read_model checked them
    if rows is None:
        raise ModelLoadError(_not_text(where))
    return rows


def spells_ai_onnx(data: bytes) -> bool:
    """Whether serialized ``data`` may spell a domain ``"ai.onnx"``: the length 7 and those bytes
    after the tag of NodeProto.domain (field 7, ``:``) or OperatorSetIdProto.domain (field 1,
    ``\\n``). A name that holds these bytes costs one walk of the nodes, nothing more. (bytes.find,
    not a regular expression: 0.03 s against 0.46 s over a 49 MB model.)"""
    i = data.find(b"\x07ai.onnx")
    while i >= 0:
        if i and data[i - 1] in b":\n":
            return True
        i = data.find(b"\x07ai.onnx", i + 1)
    return False


def normalize_default_domain(model: onnx.ModelProto, holders: Holders | None = None) -> bool:
    """Spell ONNX's default domain ``""`` wherever ``model`` spells it ``"ai.onnx"`` (its opset
    imports, nodes, subgraphs' nodes and local functions); True when something changed.
    ``holders``: the main graph's :class:`Holders`, the only nodes looked into for subgraphs.

    The two names are one domain (onnxruntime runs either), but ONNX's checker and shape inference
    look ``"ai.onnx"`` up as a domain of its own and refuse the model ("No opset import for
    domain 'ai.onnx'"). ``model`` is the caller's own copy."""
    changed = False

    def fix(imports, nodes, holding=None) -> None:
        nonlocal changed
        for op in imports:
            if op.domain == "ai.onnx":
                op.domain = ""
                changed = True
        for n in nodes:
            if n.domain == "ai.onnx":
                n.domain = ""
                changed = True
        for n in nodes if holding is None else holding:
            for a in n.attribute:
                if a.type == _GRAPH:
                    fix((), a.g.node)
                elif a.type == _GRAPHS:
                    for sg in a.graphs:
                        fix((), sg.node)

    fix(model.opset_import, model.graph.node, holders.nodes if holders is not None else None)
    for f in model.functions:
        fix(f.opset_import, f.node)
    return changed


#: The largest file protobuf can parse: a message is at most 2 GiB (a larger model keeps its
#: weights in external data files).
MAX_MODEL_FILE_BYTES = (1 << 31) - 1


def _read_file(path: Path) -> bytes:
    """The bytes of the model file at ``path``: a regular file (symlinks resolved) of at most
    :data:`MAX_MODEL_FILE_BYTES`, checked before anything is read (a FIFO would block forever,
    ``/dev/zero`` or a sparse file of terabytes would fill the memory)."""
    import stat

    if not path.exists():
        raise ModelLoadError(f"model file '{path}' does not exist")
    if path.is_dir():
        raise ModelLoadError(f"'{path}' is a directory; give the path of an .onnx file inside it")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ModelLoadError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    with open(fd, "rb", closefd=True) as fh:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                what = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a character device" if stat.S_ISCHR(st.st_mode)
                        else "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                        else "not a file")
                raise ModelLoadError(f"'{path}' is {what}, not a regular file; give the path of an .onnx file")
            if st.st_size > MAX_MODEL_FILE_BYTES:
                raise ModelLoadError(
                    f"model file '{path}' is {st.st_size:,} bytes, more than the 2 GiB protobuf can read; "
                    "a model this large must keep its weights in external data files"
                )
            # what fstat says, then what a file that grew since (or one that tells no size, in /proc)
            # holds beyond it, never more than the limit
            chunks = [fh.read(st.st_size)] if st.st_size else []
            total = len(chunks[0]) if chunks else 0
            while more := fh.read(min(1 << 24, MAX_MODEL_FILE_BYTES + 1 - total)):
                chunks.append(more)
                total += len(more)
                if total > MAX_MODEL_FILE_BYTES:
                    raise ModelLoadError(f"model file '{path}' is more than the 2 GiB protobuf can read; "
                                         "a model this large must keep its weights in external data files")
        except OSError as exc:
            raise ModelLoadError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not data:
        raise ModelLoadError(f"model file '{path}' is empty")
    return data


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError, TypeError) as exc:
        if "MaxDepth" in str(exc) or "recursion" in str(exc).lower():  # upb: "Exceeded upb_DecodeOptions_MaxDepth"
            raise ModelLoadError(
                f"{where} cannot be read: it nests messages deeper than protobuf's decoding limit allows "
                "(about 32 levels of subgraphs: an If, Loop or Scan inside another, over and over)"
            ) from exc
        raise ModelLoadError(
            f"{where} is not a valid ONNX model: the protobuf data cannot be decoded "
            f"({type(exc).__name__}); the file may be truncated or corrupt"
        ) from exc
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelLoadError(f"{where} is not an ONNX model (no IR version or no graph in it)")
    return model


#: The typed fields of a TensorProto: one value per element, but two for complex numbers and one
#: packed byte per value for the sub-byte types in ``int32_data`` (see :func:`check_tensor_data`).
_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")
_COMPLEX = (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)


def check_tensor_data(t: onnx.TensorProto) -> None:
    """An embedded tensor (not external, not strings) must hold as many values as its dims say: a
    short ``raw_data``, or none at all, would be counted as full weights here while every runtime
    refuses it ("data field count (0) does not match expected count from shape")."""
    numel = 1
    for d in t.dims:
        if d < 0:
            raise InvalidModelError(f"tensor '{t.name}' has a negative dim ({d})")
        numel *= d
    if t.HasField("raw_data"):
        want = nbytes(t.data_type, numel)
        if want is not None and len(t.raw_data) != want:
            raise InvalidModelError(f"tensor '{t.name}' of shape {list(t.dims)} needs {want:,} bytes of data but holds "
                                    f"{len(t.raw_data):,}: the file is truncated or corrupt")
        return
    held = False
    for f in _TYPED_FIELDS:
        n = len(getattr(t, f))
        if not n:
            continue
        held = True
        want = numel
        if t.data_type in _COMPLEX:
            want = 2 * numel  # real and imaginary parts
        elif f == "int32_data":
            bits = dtype_bits(t.data_type)
            if bits is not None and bits < 8:
                want = (numel * bits + 7) // 8  # sub-byte types: one packed byte per int32
        if n != want:
            raise InvalidModelError(f"tensor '{t.name}' of shape {list(t.dims)} needs {want:,} values but holds {n:,}: "
                                    "the file is truncated or corrupt")
    if not held and numel:
        raise InvalidModelError(f"tensor '{t.name}' of shape {list(t.dims)} holds no data (it needs {numel:,} "
                                "values): the file is truncated or corrupt")


_GRAPH = onnx.AttributeProto.GRAPH
_GRAPHS = onnx.AttributeProto.GRAPHS
_TENSOR_TYPES = (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS)


def node_rows(g: onnx.GraphProto, names_checked: bool = False) -> list[NodeRow] | None:
    """``g``'s nodes as :data:`NodeRow` s, or None when some name in ``g`` or its subgraphs is not
    text: protobuf hands back bytes, not str, for string fields that are not valid UTF-8.
    ``names_checked``: the names of ``g``'s own values are known to be text already."""
    if not names_checked and not _names_are_text(g):
        return None
    rows: list[NodeRow] = []
    add = rows.append
    for n in g.node:
        try:
            facts = read_node(n)
        except TypeError:
            return None
        if type(facts[2]) is not str:  # the name, which read_node does not intern
            return None
        nested = tensors = False
        for a in n.attribute:
            if type(a.name) is not str:
                return None
            t = a.type
            if t == _GRAPH:
                nested = True
                if node_rows(a.g) is None:
                    return None
            elif t == _GRAPHS:
                nested = True
                if not all(node_rows(sg) is not None for sg in a.graphs):
                    return None
            elif t in _TENSOR_TYPES:
                tensors = True
                if not all(type(x.name) is str for x in ((a.t,) if t == _TENSOR_TYPES[0] else a.tensors)):
                    return None  # a tensor's own name (a Constant's value): refused as every other
        add((*facts, nested, tensors))
    return rows


def read_node(n: onnx.NodeProto) -> tuple[str, str, str, tuple[str, ...], tuple[str, ...]]:
    """``n``'s op type, domain (``""`` for ``ai.onnx``), name, input and output names, as a
    :class:`~mlms_ir.ir.graph.Node` holds them (the names interned: one string per tensor however
    many nodes name it). Raises TypeError for an op type, domain or tensor name that is not text
    (protobuf hands back bytes for a string field that is not valid UTF-8; intern refuses them)."""
    domain = n.domain
    return (intern(n.op_type), "" if domain == "ai.onnx" else intern(domain), n.name,
            tuple(map(intern, n.input)), tuple(map(intern, n.output)))


def nodes_holding(g: onnx.GraphProto, rows: list[NodeRow] | Holders | None) -> list[onnx.NodeProto]:
    """The nodes of ``g`` with a tensor or a subgraph among their attributes, as ``rows`` (``g``'s
    :func:`node_rows` or :class:`Holders`) tell; every node of ``g`` without them."""
    if rows is None:
        return list(g.node)
    if isinstance(rows, Holders):
        return rows.nodes
    return [n for n, r in zip(g.node, rows) if r[5] or r[6]]


def _names_are_text(g: onnx.GraphProto) -> bool:
    """The names of ``g`` itself, its values and initializers are str (its nodes: :func:`node_rows`)."""
    if not isinstance(g.name, str):
        return False
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if not isinstance(vi.name, str):
            return False
        if vi.type.HasField("tensor_type") and not all(isinstance(d.dim_param, str) for d in vi.type.tensor_type.shape.dim):
            return False
    for t in g.initializer:
        if not isinstance(t.name, str):
            return False
    return True


_MAX_OPSET = (1 << 31) - 1


def _check_header(model: onnx.ModelProto, name: str) -> None:
    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedOpsetError(
            f"'{name}' has IR version {model.ir_version}, newer than this onnx package supports "
            f"({onnx.IR_VERSION}); upgrade onnx (pip install -U onnx)"
        )
    if model.ir_version >= 3 and not model.opset_import:
        raise InvalidModelError(f"'{name}' imports no opset; every ONNX model since IR version 3 must")
    max_default = onnx.defs.onnx_opset_version()
    seen: set[str] = set()
    for op in model.opset_import:
        domain = "" if op.domain == "ai.onnx" else op.domain
        if domain in seen:
            raise InvalidModelError(f"'{name}' imports the opset of domain '{domain or 'ai.onnx'}' twice")
        seen.add(domain)
        if domain and not 0 <= op.version <= _MAX_OPSET:  # the checker and the runtimes hold a version in an int32
            raise InvalidModelError(
                f"'{name}' imports opset {op.version} of domain '{domain or 'ai.onnx'}', which is not a valid "
                f"opset version (0 to {_MAX_OPSET:,})"
            )
        if domain == "" and not 1 <= op.version <= max_default:
            raise UnsupportedOpsetError(
                f"'{name}' uses ai.onnx opset {op.version}; this onnx package supports opsets 1 to {max_default}"
                + ("; upgrade onnx (pip install -U onnx)" if op.version > max_default else "")
            )
        if domain == "ai.onnx.ml" and op.version < 1:
            raise InvalidModelError(f"'{name}' imports ai.onnx.ml opset {op.version}, which does not exist")


def _external_tensors(model: onnx.ModelProto, rows: list[NodeRow] | Holders | None = None):
    """Every TensorProto with external data, in the main graph, subgraphs and attributes.
    ``rows``: the main graph's :func:`node_rows` or :class:`Holders` (then only the nodes they say
    hold a tensor or a subgraph are looked into)."""

    def from_graph(g: onnx.GraphProto, rows: list[NodeRow] | Holders | None = None):
        for t in g.initializer:
            yield t
        for s in g.sparse_initializer:
            yield s.values
            yield s.indices
        for n in nodes_holding(g, rows):
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    yield a.t
                elif a.type == onnx.AttributeProto.TENSORS:
                    yield from a.tensors
                elif a.type == onnx.AttributeProto.GRAPH:
                    yield from from_graph(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        yield from from_graph(sg)

    for t in from_graph(model.graph, rows):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t


def read_small_external_ints(model: onnx.ModelProto, base_dir: Path | None, limit: int,
                             rows: list[NodeRow] | Holders | None = None) -> int:
    """Read, into the model, the data of every external integer scalar or 1-D tensor of at most
    ``limit`` bytes (shapes, axes, small index tables: ONNX's data propagation needs their values,
    and fails on external ones). Locations must have passed :func:`check_external_data`; nothing
    else is read. ``rows``: the main graph's :func:`node_rows` or :class:`Holders`, when the caller
    has them. Returns how many tensors were read."""
    if base_dir is None:
        return 0
    base_real = Path(os.path.realpath(base_dir))
    count = 0
    for t in list(_external_tensors(model, rows)):
        if len(t.dims) > 1 or t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            continue
        info = {e.key: e.value for e in t.external_data}
        if any(d < 0 for d in t.dims):
            continue  # check_external_data refused it already
        numel = 1
        for d in t.dims:
            numel *= int(d)
        want = nbytes(t.data_type, numel)
        if want is None or want <= 0 or want > limit:
            continue
        full = Path(os.path.realpath(base_real / info["location"]))
        if base_real != full and base_real not in full.parents:
            continue  # check_external_data refused it already; never read outside the folder
        offset = int(info.get("offset", 0) or 0)
        try:
            with open(full, "rb") as fh:
                fh.seek(offset)
                data = fh.read(want)
        except OSError as exc:
            raise ExternalDataError(f"cannot read the external data of tensor '{t.name}' ({exc.strerror or exc})") from exc
        if len(data) != want:
            raise ExternalDataError(f"external data file '{info['location']}' is too short for tensor '{t.name}'")
        t.raw_data = data
        del t.external_data[:]
        t.data_location = onnx.TensorProto.DEFAULT
        count += 1
    return count


def check_external_data(model: onnx.ModelProto, base_dir: Path | None, rows: list[NodeRow] | Holders | None = None) -> int:
    """Check every external tensor's declared location and size without reading it (``rows``:
    the main graph's :func:`node_rows` or :class:`Holders`, when the caller has them).

    Returns the total bytes of external data. A location that is absolute or leaves the model's
    folder is rejected, as is a missing or too-short file.
    """
    total = 0
    sizes: dict[Path, int] = {}
    #: location -> the file's resolved path, for locations already checked: a 50,000-node export
    #: names one data file from every tensor (a realpath each cost 133k lstat calls).
    places: dict[str, Path | None] = {}
    base_real = Path(os.path.realpath(base_dir)) if base_dir is not None else None
    for t in _external_tensors(model, rows):
        info = {e.key: e.value for e in t.external_data}
        if not all(type(k) is str and type(v) is str for k, v in info.items()):  # protobuf's bytes for non-UTF-8
            label = f"tensor '{t.name}'" if type(t.name) is str else "a tensor"
            raise ExternalDataError(f"{label} has external-data fields that are not valid UTF-8 text; the file is corrupt")
        loc = info.get("location", "")
        if not loc:
            raise ExternalDataError(f"tensor '{t.name}' is stored externally but names no location")
        known = loc in places
        p = None if known else Path(loc)
        if p is not None and (p.is_absolute() or loc.startswith(("/", "\\")) or ".." in p.parts or ":" in loc):
            raise ExternalDataError(
                f"tensor '{t.name}' points to external data at '{loc}', outside the model's folder; "
                "external data must be a relative path inside that folder"
            )
        if any(d < 0 for d in t.dims):
            raise ExternalDataError(f"tensor '{t.name}' has a negative dim {list(t.dims)}")
        try:
            offset = int(info.get("offset", 0))
            numel = 1
            for d in t.dims:
                numel *= int(d)
            want = nbytes(t.data_type, numel)
            length = int(info["length"]) if "length" in info else want
        except ValueError as exc:
            raise ExternalDataError(f"tensor '{t.name}' has malformed external-data fields ({exc})") from exc
        if offset < 0 or (length is not None and length < 0):
            raise ExternalDataError(f"tensor '{t.name}' has a negative external-data offset or length")
        if want is not None and length is not None and length < want:
            raise ExternalDataError(
                f"tensor '{t.name}' declares {length} bytes of external data but its shape needs {want}"
            )
        if length is not None:
            total += length
        if base_real is None:
            places[loc] = None
            continue  # loaded from bytes or a proto: nothing on disk to check against
        if known:
            full = places[loc]
        else:
            try:
                full = Path(os.path.realpath(base_real / p))
                if base_real != full and base_real not in full.parents:
                    raise ExternalDataError(
                        f"tensor '{t.name}' points to external data '{loc}', which resolves outside the model's folder"
                    )
                if full not in sizes:
                    if not full.is_file():
                        raise ExternalDataError(
                            f"external data file '{loc}' for tensor '{t.name}' is missing; it must lie beside the model in '{base_dir}'"
                        )
                    sizes[full] = full.stat().st_size
            except (OSError, ValueError) as exc:
                raise ExternalDataError(f"tensor '{t.name}' names an unusable external-data location ({exc})") from exc
            places[loc] = full
        if length is not None and offset + length > sizes[full]:
            raise ExternalDataError(
                f"external data file '{loc}' is too short for tensor '{t.name}' "
                f"(needs bytes {offset}..{offset + length}, file has {sizes[full]}); it may be truncated"
            )
    return total
