"""Execution backends (installed as ``mlms_ir.backends``): one module per backend behind one protocol.

Not implemented yet; see the backends issue. Backends will register through the
``mlms_ir.backends`` entry-point group.
"""
