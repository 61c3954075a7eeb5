"""Execution backends (installed as ``mlms_ir.backends``): one module per backend behind one
protocol (:mod:`~mlms_ir.backends.base`).

:mod:`~mlms_ir.backends.registry` lists the built-in ones (onnxruntime, the ONNX reference
evaluator, torch, TensorRT, and onnx-tf and MXNet run by a worker in their own environments)
and adds any a third party registers under the ``mlms_ir.backends`` entry-point group.
"""
