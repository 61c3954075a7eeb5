"""TEMPORARY while the refactor of issue #18 is in flight: removed before it lands."""

from mlms_ir.results.base import json_safe  # noqa: F401
