"""mlms_ir: dissect ML models on one ONNX graph IR.

Every model is normalised to ONNX and wrapped as a :class:`~mlms_ir.ir.Graph` (a networkx
multigraph over the ONNX nodes). Passes over it compute theoretical MACs/FLOPs, parameters,
memory (weights, activations, peak by liveness), structure and a roofline bound.

The two entry points of the library API::

    import mlms_ir
    graph = mlms_ir.load("model.onnx", dims={"batch": 8})
    analysis = mlms_ir.analyze(graph)
    print(analysis.totals.macs)

Importing :mod:`mlms_ir` loads no deep-learning framework; heavy extras are imported lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# In a source checkout, backends/, converters/ and zoo/ stand beside this folder and are installed
# as mlms_ir.backends, mlms_ir.converters and mlms_ir.zoo (setup.cfg's package_dir). When this
# folder itself is imported (python -m mlms_ir from the checkout's root shadows an installed copy),
# let those subpackages resolve to the folders beside it.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "setup.cfg")) and _os.path.isfile(_os.path.join(_root, "zoo", "__init__.py")):
    __path__.append(_root)  # type: ignore[name-defined]  # noqa: F821

from mlms_ir.errors import MlmsIrError  # noqa: E402
from mlms_ir.ir import Graph, load  # noqa: E402
from mlms_ir.passes.analyze import analyze  # noqa: E402

__all__ = ["__version__", "Graph", "MlmsIrError", "analyze", "load"]
