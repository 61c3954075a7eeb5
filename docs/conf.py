"""Sphinx configuration of the mlms_ir documentation.

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``. The local
extensions in ``docs/_ext`` generate from the code at build time: the counting-conventions table
(``opcosts``, from the op-cost registry), the device table (``devicetable``, from devices.json),
the error hierarchy (``errortree``) and the example JSON, and they check that ``schema.rst``
describes exactly the keys the code writes (``schemafields``); so the pages cannot drift from
what the package does.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

try:
    import mlms_ir
except ImportError:  # a plain checkout, not installed: use the sources next to docs/
    sys.path.insert(0, str(HERE.parent))
    import mlms_ir

from mlms_ir.passes.registry import CONVENTION_VERSION  # noqa: E402
from mlms_ir.results.analysis import SCHEMA_VERSION  # noqa: E402

project = "mlms_ir"
author = "the mlms_ir authors"
copyright = "the mlms_ir authors"  # noqa: A001 - Sphinx's name
version = mlms_ir.__version__
release = mlms_ir.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "opcosts",
    "devicetable",
    "schemafields",
    "errortree",
]

root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
nitpicky = False
default_role = "literal"

# Versions and figures the pages quote, taken from the code (the digits-cnn figures from an
# analysis of the embedded model at batch 1, the same one schema.rst shows as its example).
from schemafields import example_analysis  # noqa: E402

_digits = example_analysis()["totals"]
from mlms_ir.report.html import REPORT_DATA_VERSION  # noqa: E402

rst_epilog = f"""
.. |report_data_version| replace:: {REPORT_DATA_VERSION}
.. |convention_version| replace:: {CONVENTION_VERSION}
.. |schema_version| replace:: {SCHEMA_VERSION}
.. |mlms_version| replace:: {mlms_ir.__version__}
.. |digits_params| replace:: {_digits["params"]:,}
.. |digits_macs| replace:: {_digits["macs"]:,}
.. |digits_flops| replace:: {_digits["flops"]:,}
"""

# autodoc: members in source order. The type aliases (ModelSource, InputShapes, Dims) are shown
# expanded: Sphinx 9 renders an aliased name inside a union as ``TypeAliasForwardRef('...')``.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = f"mlms_ir {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Static analysis of ONNX models",
    "page_width": "1100px",
    "sidebar_width": "230px",
}
