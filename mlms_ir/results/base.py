"""What every result shares: a ``kind``, a ``schema_version``, and one generic ``to_dict`` and
``from_dict`` driven by the dataclass fields and their type hints.

A result is a tree of dataclasses, lists, dicts and scalars. :func:`to_plain` walks it into what
JSON holds (fields marked ``metadata={"json": False}`` stay out); :func:`build` walks a JSON
object back into the typed tree, field by field, from the annotations: nested dataclasses, lists
and dicts of them, ``X | None``, tuples. So ``Kind.from_dict(kind.to_dict())`` gives an equal
object for every kind, with no per-kind reader to keep in step with its writer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar, TypeVar, Union

T = TypeVar("T")
R = TypeVar("R", bound="Result")


#: How :func:`plain_float` writes infinities, read back by :func:`build` where a number is expected.
_INFINITIES = {"inf": math.inf, "-inf": -math.inf}


def plain_float(x: float) -> float | str | None:
    """A float as JSON holds it: itself when finite, an infinity as the string ``"inf"`` or
    ``"-inf"`` (an infinite error must not read as an unknown one; JSON has no infinity), NaN as
    None. The one convention of :func:`json_safe`, :func:`to_plain` and the results store."""
    if math.isfinite(x):
        return x
    return None if math.isnan(x) else ("inf" if x > 0 else "-inf")


def as_number(v: Any) -> Any:
    """``v`` with the strings ``"inf"``/``"-inf"`` that :func:`plain_float` writes read back as
    floats (anything else as it is): for code that compares figures taken from a result's JSON."""
    return _INFINITIES.get(v, v) if isinstance(v, str) else v


def json_safe(obj: Any) -> Any:
    """A copy that JSON can write and read back: floats as :func:`plain_float` writes them (NaN
    None, infinities ``"inf"``/``"-inf"``), tuples lists, dict keys strings. Every result's
    ``to_dict`` and the results store go through it."""
    if isinstance(obj, float):
        return plain_float(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_fields(obj: Any) -> list[dataclasses.Field]:
    """The fields of dataclass ``obj`` (instance or class) that its JSON holds."""
    return [f for f in dataclasses.fields(obj) if f.metadata.get("json", True)]


def to_plain(obj: Any) -> Any:
    """``obj`` as JSON-ready data: dataclasses as dicts of their JSON fields (in field order),
    tuples as lists, floats as :func:`plain_float` writes them."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in json_fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, float):
        return plain_float(obj)
    return obj


@cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved type annotations of dataclass ``cls``'s fields (cached)."""
    return typing.get_type_hints(cls)


class ResultFormatError(ValueError):
    """JSON data that is not what a result's ``to_dict`` writes; ``where`` is the path of the
    offending value (``nodes[3].kernels``)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where} {problem}" if where else problem)
        self.where = where
        self.problem = problem


_WORDS = {list: "a list", tuple: "a list", dict: "an object", float: "a number", int: "an integer", str: "a string",
          bool: "true or false"}


def _word(tp: Any) -> str:
    origin = typing.get_origin(tp) or tp
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        return "an object"
    if origin in (Union, types.UnionType):
        return " or ".join(_word(a) for a in typing.get_args(tp) if a is not type(None))
    return _WORDS.get(origin, getattr(origin, "__name__", str(origin)))


def _join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def build(tp: Any, value: Any, where: str = "") -> Any:
    """``value`` (JSON data) as an instance of the annotation ``tp``, checked on the way.

    Dataclasses are built from their JSON fields (absent keys take the field's default; a
    field without one must be there; unknown keys are ignored, so a newer minor version still
    reads); ``list[X]``, ``dict[str, X]``, ``tuple[...]`` and ``X | None`` are followed;
    ``float`` accepts integers; ``null`` is accepted anywhere (the JSON form of a non-finite or
    missing figure). A value of the wrong JSON type raises :class:`ResultFormatError` naming
    where it is.
    """
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for a in (a for a in typing.get_args(tp) if a is not type(None)):  # the first alternative that fits
            if _fits(a, value):
                return build(a, value, where)
        raise ResultFormatError(where, f"is not {_word(tp)}")
    if not _fits(tp, value):
        raise ResultFormatError(where, f"is not {_word(tp)}")
    if origin is list or tp is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [build(item, v, _join(where, i)) for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(build(args[0], v, _join(where, i)) for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ResultFormatError(where, f"has {len(value)} items, not {len(args)}")
        return tuple(build(a, v, _join(where, i)) for i, (a, v) in enumerate(zip(args, value))) if args else tuple(value)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {k: build(item, v, _join(where, k)) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, where)
    if tp is float:
        return _INFINITIES[value] if isinstance(value, str) else float(value)
    return value


def _fits(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    if origin is Any or isinstance(origin, TypeVar):
        return True
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        return isinstance(value, dict)
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, dict)
    if origin is float:
        return (isinstance(value, int | float) and not isinstance(value, bool)) or value in ("inf", "-inf")
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (Union, types.UnionType):
        return any(_fits(a, value) for a in typing.get_args(tp))
    if isinstance(origin, type):
        return isinstance(value, origin)
    return True


def build_dataclass(cls: type[T], data: Any, where: str = "") -> T:
    """An instance of dataclass ``cls`` from a dict of its JSON fields (see :func:`build`)."""
    if not isinstance(data, dict):
        raise ResultFormatError(where, "is not an object")
    hints = field_types(cls)
    fields = [f for f in json_fields(cls) if f.init]
    missing = [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise ResultFormatError(where, f"has no {names}") if where else ResultFormatError("", f"no {names}")
    kwargs = {f.name: build(hints[f.name], data[f.name], _join(where, f.name)) for f in fields if f.name in data}
    return cls(**kwargs)


class Result:
    """A top-level result. Subclasses are dataclasses that set :attr:`kind` and a
    ``schema_version`` field; :meth:`to_dict` gives the documented JSON object, :meth:`from_dict`
    reads it back."""

    #: What the result is: ``analysis``, ``run``, ``profile``, ``divergence``, ``counters``,
    #: ``evaluation`` or ``comparison``.
    kind: ClassVar[str] = ""
    #: Top-level keys in the order the JSON writes them (default: field order).
    key_order: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON object (``docs/schema.rst``), safe for ``json.dumps``: ``kind``
        first, then the fields (in :attr:`key_order` where it is set)."""
        d = to_plain(self)
        if self.key_order:
            d = {k: d[k] for k in self.key_order if k in d} | {k: v for k, v in d.items() if k not in self.key_order}
        return {"kind": self.kind, **d}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """The result a :meth:`to_dict` object describes (unknown keys are ignored; a ``kind``
        other than this class's is an error)."""
        check_kind(cls, data)
        return build_dataclass(cls, data)

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON text of :meth:`to_dict`, ending in a newline."""
        return json.dumps(self.to_dict(), indent=indent) + "\n"


@dataclass
class ModelRef:
    """The model header every measured result carries: the model's name and the file it came from."""

    name: str
    path: str | None


def check_kind(cls: type[Result], data: Any) -> None:
    """Raise :class:`ValueError` unless ``data`` is a JSON object of ``cls``'s kind (objects
    written before results carried a ``kind`` pass)."""
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.kind} result is a JSON object, got {type(data).__name__}")
    kind = data.get("kind", cls.kind)
    if kind != cls.kind:
        raise ValueError(f"this is a '{kind}' result, not '{cls.kind}'")


def model_ref(graph: Any) -> ModelRef:
    """The header of a :class:`~mlms_ir.ir.Graph` built by :func:`mlms_ir.load`: the loaded
    model's name and file (the graph's own name when it was built otherwise)."""
    loaded = graph.loaded
    return ModelRef(name=loaded.name if loaded else (graph.proto.name or "model"),
                    path=str(loaded.path) if loaded and loaded.path else None)
