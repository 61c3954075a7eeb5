"""The import arrows stay one way (``STYLE.md``; issue #18): no library module imports the CLI,
no private name crosses a module boundary, results import nothing that computes, and renderers
never reach for backends, runners or the store.

Read from the source with ``ast`` (imports inside functions count), over the four folders that
make up the package: ``mlms_ir/``, ``backends/``, ``converters/`` and ``zoo/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> import path.
FOLDERS = {"mlms_ir": "mlms_ir", "backends": "mlms_ir.backends", "converters": "mlms_ir.converters", "zoo": "mlms_ir.zoo"}

#: What each layer may import from mlms_ir (besides itself). ``mlms_ir`` is the package root
#: (``__version__``); ``errors`` the exception hierarchy everything raises.
ALLOWED = {
    "results": {"errors"},
    "ir": {"errors", "_lazy"},
    "passes": {"errors", "ir", "results", "mlms_ir"},
    "report": {"errors", "ir", "passes", "results", "mlms_ir"},
}
#: Layers no module outside them may import.
TOP = {"cli"}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts[1:] if p != "__init__"]
    return ".".join([FOLDERS[rel.parts[0]], *parts])


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mlms_ir"


def _imports() -> list[tuple[str, str, list[str], int]]:
    """(importer, imported module, names, line) for every import of mlms_ir in the package."""
    out = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            me = _module(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mlms_ir") and not node.level:
                    out.append((me, node.module, [a.name for a in node.names], node.lineno))
                elif isinstance(node, ast.Import):
                    out += [(me, a.name, [], node.lineno) for a in node.names if a.name.startswith("mlms_ir")]
    return out


IMPORTS = _imports()


def test_the_scan_sees_the_package():
    importers = {m for m, *_ in IMPORTS}
    assert {"mlms_ir.cli.run", "mlms_ir.backends.worker", "mlms_ir.converters.torch", "mlms_ir.results.analysis"} <= importers


def test_no_library_module_imports_the_cli():
    bad = [f"{m}:{line} imports {t}" for m, t, _, line in IMPORTS
           if _layer(t) in TOP and _layer(m) not in TOP and m != "mlms_ir.__main__"]
    assert not bad, bad


def test_no_private_name_crosses_a_module():
    bad = [f"{m}:{line} imports {n} from {t}" for m, t, names, line in IMPORTS for n in names
           if n.startswith("_") and n != "__version__" and t != m]
    assert not bad, bad


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_is_below_it(layer):
    allowed = ALLOWED[layer] | {layer}
    bad = [f"{m}:{line} imports {t}" for m, t, _, line in IMPORTS if _layer(m) == layer and _layer(t) not in allowed]
    assert not bad, bad


def test_backends_and_converters_sit_below_renderers_and_runners():
    below = {"backends", "converters"}
    bad = [f"{m}:{line} imports {t}" for m, t, _, line in IMPORTS
           if _layer(m) in below and _layer(t) in {"cli", "report", "runner", "store", "sweep", "divergence", "evaluate"}]
    assert not bad, bad
