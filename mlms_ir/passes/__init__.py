"""Static analysis passes over a :class:`~mlms_ir.ir.Graph`: cost, memory, structure, roofline."""
