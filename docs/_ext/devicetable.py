"""``.. mlms-devices::``: the roofline device table, generated from ``mlms_ir/data/devices.json``.

Rows come from :func:`mlms_ir.passes.roofline.known_devices` at build time, so the page lists
exactly the names ``--device`` accepts, with their peak rates and bandwidth.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from opcosts import build_table


def si(value: float | None, unit: str) -> str:
    """6.7e13 -> '67 T' + unit, three significant digits."""
    if value is None:
        return "-"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


class DevicesDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from mlms_ir.passes.roofline import known_devices

        rows: list[list[nodes.Node | str]] = []
        for name, d in sorted(known_devices().items()):
            p = d.peak_flops
            rows.append([
                nodes.literal(text=name),
                d.description,
                si(p.get("fp32"), "FLOP/s"),
                si(p.get("tf32"), "FLOP/s"),
                si(p.get("fp16"), "FLOP/s"),
                si(p.get("bf16"), "FLOP/s"),
                si(p.get("int8"), "OP/s"),
                si(d.bandwidth_bytes_per_s, "B/s"),
                f"{d.peak('fp32') / d.bandwidth_bytes_per_s:.3g}",
            ])
        header = ["name", "description", "fp32", "tf32", "fp16", "bf16", "int8", "bandwidth", "ridge (fp32 FLOP/B)"]
        return [build_table(header, rows, [14, 30, 10, 10, 10, 10, 10, 10, 8], ["mlms-devices"])]


def setup(app: Sphinx) -> dict:
    app.add_directive("mlms-devices", DevicesDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
