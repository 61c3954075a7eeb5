"""Directives that tie ``docs/schema.rst`` to the JSON the code writes.

``.. mlms-fields:: PATH``
    A table of the keys of one object of the analysis JSON, with a description per key written
    in the directive's content as ``key: description`` lines (indented lines continue the
    description). ``PATH`` locates the object in the JSON of an example analysis made at build
    time (the embedded digits-cnn model, batch 1, device a100): ``.`` is the top level, ``totals``
    an object, ``nodes[]`` the items of a list, ``model.inputs[]`` a nested list. With
    ``:dataclass: mlms_ir.results.analysis.Totals`` the type column shows the field annotations and,
    where the example's list is empty, the keys come from the dataclass (``dataclasses.asdict``
    writes exactly its fields). The build warns (an error under ``-W``) when the documented keys
    and the keys the code writes differ, so the page cannot drift from the code.

``.. mlms-example-json::``
    The example analysis as JSON, with long lists cut to ``:items:`` entries (default 2) and the
    machine-specific model path replaced.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import json
import re
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from opcosts import build_table

logger = logging.getLogger(__name__)

EXAMPLE_DEVICE = "a100"


@functools.lru_cache(maxsize=1)
def example_analysis() -> dict[str, Any]:
    """``Analysis.to_dict()`` of the embedded model at batch 1 on the example device."""
    import mlms_ir

    try:
        from mlms_ir.zoo import builtin_path

        path = str(builtin_path())
    except ImportError:  # a plain checkout: the zoo folder sits next to docs/
        from pathlib import Path

        path = str(Path(__file__).resolve().parents[2] / "zoo" / "builtin" / "digits_cnn.onnx")
    return mlms_ir.analyze(path, batch=1, device=EXAMPLE_DEVICE).to_dict()


def _lookup(data: Any, path: str) -> tuple[Any, bool]:
    """Follow ``a.b[]`` into ``data``; returns (value, found). ``[]`` takes a list's first item."""
    if path in (".", ""):
        return data, True
    cur = data
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)(\[\])?", part)
        if m is None:
            raise ValueError(f"bad path part {part!r}")
        if not isinstance(cur, dict) or m.group(1) not in cur:
            raise KeyError(m.group(1))
        cur = cur[m.group(1)]
        if m.group(2):
            if not isinstance(cur, list):
                raise KeyError(f"{m.group(1)} is not a list")
            if not cur:
                return None, False
            cur = cur[0]
    return cur, True


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _parse_content(lines: list[str]) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip():
            continue
        m = re.match(r"^(\w+):\s*(.*)$", line)
        if m and not line[:1].isspace():
            fields.append((m.group(1), m.group(2)))
        elif fields:
            fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line.strip()}")
        else:
            raise ValueError(f"expected 'key: description', got {line!r}")
    return fields


class FieldsDirective(SphinxDirective):
    required_arguments = 1
    has_content = True
    option_spec = {"dataclass": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        where = self.get_location()
        try:
            documented = _parse_content(list(self.content))
        except ValueError as exc:
            logger.warning("mlms-fields %s: %s", path, exc, location=where)
            return []
        try:
            value, found = _lookup(example_analysis(), path)
        except (KeyError, ValueError) as exc:
            logger.warning("mlms-fields: the analysis JSON has no %r (%s)", path, exc, location=where)
            return []
        types: dict[str, str] = {}
        keys: list[str] | None = list(value) if found and isinstance(value, dict) else None
        if found and not isinstance(value, dict):
            logger.warning("mlms-fields: %r is a %s, not an object", path, _json_type(value), location=where)
            return []
        if keys is not None:
            types = {k: _json_type(v) for k, v in value.items()}
        cls_name = self.options.get("dataclass")
        if cls_name:
            cls = _import(cls_name)
            if not dataclasses.is_dataclass(cls):
                logger.warning("mlms-fields: %s is not a dataclass", cls_name, location=where)
                return []
            # fields marked metadata={"json": False} are kept in memory only, never written
            fields = {f.name: str(f.type) for f in dataclasses.fields(cls) if f.metadata.get("json", True)}
            if keys is None:
                keys = list(fields)
            elif set(fields) != set(keys):
                logger.warning(
                    "mlms-fields %s: the JSON keys %s differ from %s's fields %s",
                    path, sorted(set(keys) ^ set(fields)), cls_name, sorted(fields), location=where,
                )
            types = {k: fields.get(k, types.get(k, "")) for k in keys}
        if keys is None:
            logger.warning("mlms-fields: %r is empty in the example and no :dataclass: is given", path, location=where)
            return []
        names = [k for k, _ in documented]
        missing = [k for k in keys if k not in names]
        extra = [k for k in names if k not in keys]
        dupes = sorted({k for k in names if names.count(k) > 1})
        problems = [
            f"{what}: {', '.join(keys_)}"
            for what, keys_ in (
                ("keys the code writes but the page does not describe", missing),
                ("keys described but not written by the code", extra),
                ("keys described twice", dupes),
            )
            if keys_
        ]
        if problems:
            logger.warning("mlms-fields %s: %s", path, "; ".join(problems), location=where)
        desc = dict(documented)
        rows: list[list[nodes.Node | str]] = []
        for k in keys:
            para_nodes, messages = self.state.inline_text(desc.get(k, ""), self.lineno)
            cell = nodes.inline()
            cell += para_nodes
            cell += messages
            ref_id = nodes.make_id(f"json-{path.strip('.').replace('[]', '')}-{k}" if path != "." else f"json-{k}")
            key_node = nodes.inline(ids=[ref_id])
            key_node += nodes.literal(text=k)
            rows.append([key_node, nodes.literal(text=types.get(k, "")), cell])
        return [build_table(["key", "type", "meaning"], rows, [18, 16, 66], ["mlms-fields"])]


class ExampleJsonDirective(SphinxDirective):
    has_content = False
    option_spec = {"items": directives.nonnegative_int}

    def run(self) -> list[nodes.Node]:
        n = self.options.get("items", 2)
        data = copy.deepcopy(example_analysis())
        data["model"]["path"] = "/path/to/digits_cnn.onnx"
        for key in ("nodes", "op_types"):
            data[key] = data[key][:n]
        text = json.dumps(data, indent=2)
        block = nodes.literal_block(text, text)
        block["language"] = "json"
        return [block]


def setup(app: Sphinx) -> dict:
    app.add_directive("mlms-fields", FieldsDirective)
    app.add_directive("mlms-example-json", ExampleJsonDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
