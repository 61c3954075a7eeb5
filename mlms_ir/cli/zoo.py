"""``zoo list|show|build``: the model catalog on the command line."""

from __future__ import annotations

import json
from typing import Any

from mlms_ir.cli.common import write_text
from mlms_ir.errors import MlmsIrError

FORMATS = ("table", "json")


def _format(format: str) -> str:  # noqa: A002
    f = str(format)
    if f not in FORMATS:
        raise MlmsIrError(f"unknown --format '{format}'; one of: {', '.join(FORMATS)}")
    return f


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.1f}k"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _preprocessing_text(pre: dict[str, Any]) -> str:
    keys = ("resize", "crop", "crop_pct", "interpolation", "mean", "std", "scale", "layout")
    text = ", ".join(f"{k}={pre[k]}" for k in keys if pre.get(k) is not None)
    return text + (f", in the model: {pre['in_model']}" if pre.get("in_model") else "")


def _labels_text(ref: str | None, names: list[str]) -> str:
    if not names:
        return "-"
    return f"{ref} ({len(names)}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"


def _reference_text(reference: list[dict[str, Any]]) -> str:
    from mlms_ir.zoo.manifest import FRACTION_METRICS

    parts = []
    for r in reference:
        shown = {k: v for k, v in r.items() if k not in ("dataset", "measured_with")}
        figures = [f"{k}={_pct(v) if k in FRACTION_METRICS else v}" for k, v in shown.items()]
        parts.append(f"{r['dataset']}: {', '.join(figures)}")
    return "; ".join(parts) or "-"


def _cache_state(name: str) -> dict[str, Any]:
    """Whether a zoo model is built (and with which weights) and whether its weights were downloaded."""
    from mlms_ir.zoo.builder import built_path, read_build_info, weights_downloaded, weights_file
    from mlms_ir.zoo.manifest import get

    from mlms_ir.zoo.builder import DOWNLOADABLE_KINDS

    kind = get(name)["source"]["kind"]
    path = built_path(name)
    return {
        "built": str(path) if path else None,
        "built_weights": "shipped" if kind == "builtin" else (read_build_info(name) or {}).get("weights"),
        "weights_downloaded": weights_downloaded(name),
        "weights_file": str(weights_file(name)) if kind in DOWNLOADABLE_KINDS else None,
    }


def _source_text(src: dict[str, Any]) -> str:
    if src["kind"] == "torchvision":
        return f"torchvision {src['builder']} with {src['weights']}"
    if src["kind"] == "timm":
        return f"timm.create_model('{src['model']}', pretrained=False) (timm {src.get('timm_version')})"
    return f"shipped file {src['file']} ({src.get('script')})"


def _sha_text(w: dict[str, Any]) -> str:
    if w.get("sha256_prefix"):
        return f"{w['sha256_prefix']}... (a prefix, from the file name)"
    return str(w.get("sha256") or "-")


class Zoo:
    """The model catalog: every torchvision model with published weights, a curated set of timm models, and the shipped digits-cnn."""

    def list(self, task: str | None = None, format: str = "table", framework: str | None = None,  # noqa: A002
             source: str | None = None) -> None:
        """The zoo's models: name, task, parameters, GMACs (billions of multiply-adds: torchvision's "GFLOPS") and reference top-1.

        Args:
            task: only this task: image-classification, object-detection, instance-segmentation,
                keypoint-detection, semantic-segmentation, video-classification or optical-flow.
            format: table or json.
            framework: only this framework (pytorch).
            source: only models of this source: torchvision, timm or builtin.
        """
        from mlms_ir.report.text import default_console, sig
        from mlms_ir.zoo.manifest import list_models, top1

        fmt = _format(format)
        models = list_models(task=task, framework=framework, source=source)
        if fmt == "json":
            rows = [{"name": m["name"], "task": m["task"], "framework": m["framework"], "source": m["source"]["kind"],
                     "num_params": m["num_params"],
                     "gflops": m["gflops"], "top1": top1(m), "weights": m["source"].get("weights")} for m in models]
            write_text(json.dumps({"schema_version": 1, "count": len(rows), "models": rows}, indent=2) + "\n", None)
            return
        from rich.table import Table
        from rich.text import Text

        t = Table(title=f"mlms_ir zoo: {len(models)} models" + "".join(f" ({v})" for v in (task, source) if v))
        t.add_column("name", no_wrap=True)  # whole, so it can be copied
        t.add_column("task", overflow="fold")
        t.add_column("params", justify="right", no_wrap=True)
        t.add_column("GMACs", justify="right", no_wrap=True)  # torchvision's "GFLOPS" count multiply-adds
        t.add_column("top-1", justify="right", no_wrap=True)
        for m in models:
            t.add_row(Text(m["name"]), m["task"], _params(m["num_params"]), sig(m["gflops"]), _pct(top1(m)))
        default_console().print(t)

    def show(self, name: str, format: str = "table") -> None:  # noqa: A002
        """One model's manifest: source, weights, inputs, preprocessing, labels, licence, reference figures.

        Args:
            name: a zoo name (see `zoo list`), e.g. resnet50, resnet50.imagenet1k_v1 or deit_tiny_patch16_224.
            format: table or json.
        """
        from mlms_ir.report.text import default_console, sig
        from mlms_ir.zoo.manifest import get, labels

        fmt = _format(format)
        m = get(str(name))
        state = _cache_state(m["name"])
        if fmt == "json":
            write_text(json.dumps({**m, "cache": state}, indent=2) + "\n", None)
            return
        from rich.table import Table
        from rich.text import Text

        src, w, pre, lic = m["source"], m["weights"], m["preprocessing"], m["licence"]
        label_names = labels(m["labels"]) if m.get("labels") else []
        rows: list[tuple[str, str]] = [
            ("name", m["name"] + (f"  (alias {', '.join(m['aliases'])})" if m["aliases"] else "")),
            ("task", m["task"]),
            ("framework", m["framework"]),
            ("source", _source_text(src)),
            ("weights", str(w.get("url") or w.get("file") or w.get("weights_note") or "-")),
            ("sha256", _sha_text(w)),
            ("weights size", f"{w['size_mb']} MB" if w.get("size_mb") is not None else "-"),
            ("inputs", "; ".join(f"{i['name']}: {i['dtype']}[{', '.join(map(str, i['shape']))}]" for i in m["inputs"])),
            ("preprocessing", _preprocessing_text(pre)),
            ("labels", _labels_text(m["labels"], label_names)),
            ("licence", f"code {lic['code']}; weights: {lic.get('weights') or lic.get('weights_note')}"),
            ("reference", _reference_text(m["reference"])),
            ("params", f"{m['num_params']:,}"),
            ("GMACs", f"{sig(m['gflops'], 4)} (billions of multiply-adds, torchvision's \"GFLOPS\"; compare with MACs)"
             + (f"; {m['gflops_note']}" if m.get("gflops_note") else "")),
            ("recipe", str(m.get("recipe") or "-")),
            ("built", f"{state['built']} ({state['built_weights']})" if state["built"] else f"no: mlms_ir zoo build {m['name']}"),
            ("weights downloaded", "yes" if state["weights_downloaded"] else
             "no" if state["weights_file"] or src["kind"] == "builtin" else "no (mlms_ir cannot download them: see weights)"),
        ]
        t = Table(title=m["name"], show_header=False)
        t.add_column("field", no_wrap=True, style="bold")
        t.add_column("value", overflow="fold")
        for k, v in rows:
            t.add_row(k, Text(v))
        default_console().print(t)

    def build(self, name: str, weights: bool = False, batch: int = 1, force: bool = False) -> None:
        """Convert a zoo model to ONNX in the cache (once) and print its path.

        Args:
            name: a zoo name (see `zoo list`).
            weights: download (verified) and use the published weights; default: random weights, which are
                fine for cost and speed, never for accuracy. timm models have random weights only (their
                weights are on the Hugging Face hub, which mlms_ir does not download from).
            batch: the batch size of the example input (the ONNX model keeps a dynamic batch).
            force: convert again even when the model is in the cache.
        """
        from mlms_ir.zoo.builder import RANDOM_NOTE, build, read_build_info
        from mlms_ir.zoo.manifest import get

        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise MlmsIrError(f"--batch must be a positive integer, got '{batch}'")
        m = get(str(name))
        path = build(m["name"], weights=bool(weights), batch=batch, force=bool(force))
        info = read_build_info(m["name"]) or {}
        conv = info.get("conversion") or {}
        what = "shipped" if m["source"]["kind"] == "builtin" else (
            RANDOM_NOTE if info.get("weights") == "random" else f"weights {info.get('weights')}")
        err = conv.get("max_abs_error")
        detail = f"; exporter {conv['exporter']}, max abs error {err:.3g}" if conv.get("exporter") and err is not None else ""
        print(f"{path} ({what}{detail})")


__all__ = ["Zoo"]
