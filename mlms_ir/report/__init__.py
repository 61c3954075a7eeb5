"""Renderers: pure functions from a result (:mod:`mlms_ir.results`) to text, JSON, CSV, Markdown,
HTML or a Chrome trace. None computes a figure."""
