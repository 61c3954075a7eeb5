"""Op cost formulas, one module per family; importing this package registers them all."""

from mlms_ir.passes.ops import attention, data_movement, elementwise, linear, normalization, pooling, recurrent

__all__ = ["attention", "data_movement", "elementwise", "linear", "normalization", "pooling", "recurrent"]
