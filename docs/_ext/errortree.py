"""``.. mlms-error-tree::``: the exception hierarchy of :mod:`mlms_ir.errors`, drawn from the classes."""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def tree_lines(cls: type, prefix: str = "") -> list[str]:
    subs = [c for c in cls.__subclasses__() if c.__module__ == cls.__module__]
    lines: list[str] = []
    for i, sub in enumerate(subs):
        last = i == len(subs) - 1
        lines.append(f"{prefix}{'└── ' if last else '├── '}{sub.__name__}")
        lines += tree_lines(sub, prefix + ("    " if last else "│   "))
    return lines


class ErrorTreeDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from mlms_ir.errors import MlmsIrError

        text = "\n".join([MlmsIrError.__name__, *tree_lines(MlmsIrError)])
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict:
    app.add_directive("mlms-error-tree", ErrorTreeDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
