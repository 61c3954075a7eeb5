"""Reports: the data model (:mod:`mlms_ir.report.model`) and its renderers (text, formats)."""

from mlms_ir.report.model import SCHEMA_VERSION, Analysis, NodeCost

__all__ = ["SCHEMA_VERSION", "Analysis", "NodeCost"]
