"""mlms_ir's results: one typed dataclass per kind, each with ``kind``, ``schema_version``,
``to_dict`` and ``from_dict`` (see :mod:`mlms_ir.results.base`).

Kinds: ``analysis`` (static passes), ``run`` (latency and outputs per backend), ``profile`` (per-node
times), ``divergence`` (per-node error against a reference backend), ``counters`` (hardware
counters under ncu), ``evaluation`` (accuracy), ``comparison`` (stored runs side by side).
"""
