"""Converters from source frameworks to ONNX (installed as ``mlms_ir.converters``).

Not implemented yet; see the converters issue.
"""
