"""The roofline pass: per node, whether it is compute- or memory-bound on a device, and its time bound.

A node's time lower bound is ``max(flops / peak_flops[dtype], bytes / bandwidth)``; the model's
lower bound is the sum over its nodes (nodes run one after another, each at the roofline).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mlms_ir.errors import UnknownDeviceError
from mlms_ir.results.analysis import NodeCost, Roofline


@dataclass(frozen=True)
class Device:
    """Peak throughput per dtype (FLOP/s; int ops/s for int8) and memory bandwidth (bytes/s)."""

    name: str
    peak_flops: dict[str, float]
    bandwidth_bytes_per_s: float
    description: str = ""
    #: A regular expression searched (ignoring case) in a GPU's NVML name to recognise it.
    match: str = ""

    def peak(self, kind: str) -> float:
        return self.peak_flops.get(kind) or self.peak_flops["fp32"]


#: Environment variable naming a JSON file of extra devices (the table's form); its entries add to
#: the built-in table and replace built-in entries of the same name.
DEVICES_ENV = "MLMS_IR_DEVICES"


_USER_DEVICES: set[str] = set()


def known_devices() -> dict[str, Device]:
    """The device table: the built-in one (``mlms_ir/data/devices.json``) plus the entries of the
    JSON file named by ``$MLMS_IR_DEVICES``, if set (same form; same names replace built-ins)."""
    text = resources.files("mlms_ir").joinpath("data/devices.json").read_text()
    table = json.loads(text)
    extra = os.environ.get(DEVICES_ENV)
    _USER_DEVICES.clear()
    if extra:
        try:
            more = json.loads(Path(extra).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UnknownDeviceError(f"cannot read ${DEVICES_ENV} file '{extra}': {exc}") from exc
        if not isinstance(more, dict) or not all(isinstance(v, dict) for k, v in more.items() if not k.startswith("_")):
            raise UnknownDeviceError(f"${DEVICES_ENV} file '{extra}' must hold a JSON object of device objects")
        table.update({str(k).lower(): v for k, v in more.items()})
        _USER_DEVICES.update(str(k).lower() for k in more if not str(k).startswith("_"))
    return {k: _device(k, v) for k, v in table.items() if not k.startswith("_")}


def match_gpu(name: str | None) -> Device | None:
    """The table's entry for a GPU by the name NVML or torch reports (``NVIDIA H200``,
    ``NVIDIA A100-SXM4-80GB``, ``Tesla T4``), or None when no entry's ``match`` pattern is found
    in it. Where several match, an entry of ``$MLMS_IR_DEVICES`` wins over a built-in one, then the
    longest pattern (``Orin Nano`` over ``Orin``)."""
    if not name:
        return None
    table = known_devices()
    hits = [dev for dev in table.values() if dev.match and re.search(dev.match, name, re.IGNORECASE)]
    return max(hits, key=lambda d: (d.name in _USER_DEVICES, len(d.match))) if hits else None


def _device(name: str, spec: dict) -> Device:
    try:
        peaks = {str(k): float(v) for k, v in spec["peak_flops"].items()}
        bw = float(spec["bandwidth_bytes_per_s"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnknownDeviceError(
            f"device '{name}' needs 'peak_flops' (with at least 'fp32') and 'bandwidth_bytes_per_s' ({exc})"
        ) from exc
    if "fp32" not in peaks or bw <= 0 or any(v <= 0 for v in peaks.values()):
        raise UnknownDeviceError(f"device '{name}' needs a positive 'fp32' peak and a positive bandwidth")
    match = str(spec.get("match", "") or "")
    try:
        re.compile(match)
    except re.error as exc:
        raise UnknownDeviceError(f"device '{name}': 'match' is not a regular expression ({exc})") from exc
    return Device(name, peaks, bw, str(spec.get("description", "")), match)


def resolve_device(device: str | Device | None) -> Device | None:
    """A Device from a table name, a JSON file, or a spec ``fp32=19.5e12,bw=2.0e12[,fp16=...]``."""
    if device is None or isinstance(device, Device):
        return device
    text = str(device).strip()
    table = known_devices()
    if text.lower() in table:
        return table[text.lower()]
    if text.endswith(".json") and Path(text).is_file():
        try:
            data = json.loads(Path(text).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UnknownDeviceError(f"cannot read device file '{text}': {exc}") from exc
        if not isinstance(data, dict):
            raise UnknownDeviceError(f"device file '{text}' must hold a JSON object")
        return _device(str(data.get("name", Path(text).stem)), data)
    if "=" in text:
        peaks: dict[str, float] = {}
        bw = None
        for part in text.split(","):
            key, _, val = part.partition("=")
            try:
                v = float(val)
            except ValueError:
                raise UnknownDeviceError(f"device spec '{text}': '{part}' is not KEY=NUMBER") from None
            if key.strip() in ("bw", "bandwidth"):
                bw = v
            else:
                peaks[key.strip()] = v
        if bw is None:
            raise UnknownDeviceError(f"device spec '{text}' needs bw=BYTES_PER_S")
        return _device("custom", {"peak_flops": peaks, "bandwidth_bytes_per_s": bw})
    raise UnknownDeviceError(
        f"unknown device '{text}'; known devices: {', '.join(sorted(table))} "
        "(or give fp32=FLOPS,bw=BYTES_PER_S, or a JSON file)"
    )


_KIND = {"float16": "fp16", "bfloat16": "bf16", "double": "fp64"}


def roofline(nodes: list[NodeCost], top: list[NodeCost], device: Device, dtypes: dict[str, str]) -> Roofline:
    """Set ``bound`` and ``time_lower_bound_us`` on each node; return the model's roofline summary.

    ``dtypes`` maps a node id to the element type of its first input (picks the peak to use).
    With symbolic dims a node's bound is an expression, and so is the model's; a node whose
    compute and memory times cross as the dims grow has no single ``bound`` (None) and its time
    is the Max() of both.
    """
    from mlms_ir.ir.expr import add, is_int, normalize

    symbolic_cache: dict = {}
    for nc in nodes:
        if nc.flops is None or nc.bytes_read is None or nc.bytes_written is None:
            continue
        kind = "int8" if nc.int_macs else _KIND.get(dtypes.get(nc.id, "float"), "fp32")
        moved = normalize(nc.bytes_read + nc.bytes_written)
        if not (is_int(nc.flops) and is_int(moved)):
            key = (nc.flops, moved, kind)
            if key not in symbolic_cache:
                symbolic_cache[key] = _symbolic_bound(nc.flops, moved, device.peak(kind), device.bandwidth_bytes_per_s)
            nc.bound, nc.time_lower_bound_us = symbolic_cache[key]
            continue
        t_compute = nc.flops / device.peak(kind)
        t_memory = moved / device.bandwidth_bytes_per_s
        if nc.flops == 0 and moved == 0:
            continue
        nc.bound = "compute" if t_compute >= t_memory else "memory"
        nc.time_lower_bound_us = max(t_compute, t_memory) * 1e6
    counted = [n for n in top if n.time_lower_bound_us is not None]
    total = add(n.time_lower_bound_us for n in counted)
    symbolic = not isinstance(total, (int, float))
    compute_time = sum(n.time_lower_bound_us for n in counted if n.bound == "compute")  # type: ignore[misc]
    return Roofline(
        device=device.name,
        peak_flops=dict(device.peak_flops),
        bandwidth_bytes_per_s=device.bandwidth_bytes_per_s,
        ridge_intensity=device.peak("fp32") / device.bandwidth_bytes_per_s,
        lower_bound_us=None if symbolic else total,
        compute_bound_nodes=sum(1 for n in counted if n.bound == "compute"),
        memory_bound_nodes=sum(1 for n in counted if n.bound == "memory"),
        dims_bound_nodes=sum(1 for n in counted if n.bound is None),
        compute_bound_share=None if symbolic else (compute_time / total if total else 0.0),
        symbolic_lower_bound_us=total if symbolic else None,
    )


def _symbolic_bound(flops, moved, peak: float, bandwidth: float):
    """(bound, time in µs) of a node whose figures are expressions of the dims."""
    from mlms_ir.ir.expr import maximum, sympy

    sp = sympy()
    t_compute = sp.Float(1e6 / peak) * flops
    t_memory = sp.Float(1e6 / bandwidth) * moved
    if flops == 0:
        return "memory", t_memory
    if moved == 0:
        return "compute", t_compute
    value, kept = maximum([t_compute, t_memory])
    if len(kept) == 1:
        return ("compute" if kept[0] == 0 else "memory"), value
    return None, value
