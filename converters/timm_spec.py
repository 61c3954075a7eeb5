"""What timm's own metadata says about a model: pretrained config, inputs, preprocessing, licence, cost.

Shared by :func:`mlms_ir.converters.torch.from_timm` (to build and export a timm model the way its
published weights expect) and ``tools/make_zoo_manifests.py`` (to write ``zoo/manifests/timm.json``),
so the two never disagree. Everything here reads timm's registry: a model's ``pretrained_cfg``
(``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``, ``num_classes``,
``license``, ``hf_hub_id``), ``timm.data.resolve_model_data_config`` and the evaluation transform
``timm.data.create_transform`` builds from it.

timm's published weights live on the Hugging Face hub, with no sha256 that could be pinned in a
manifest; mlms_ir builds timm models with random weights only (see :data:`WEIGHTS_NOTE`).

Importing this module imports nothing heavy; each function imports timm (and torch) when called.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mlms_ir._lazy import lazy_import
from mlms_ir.converters import ConversionError, patched

#: timm's code licence.
CODE_LICENCE = "Apache-2.0"
#: One 8-bit pixel step: images are scaled by this before mean/std normalisation (timm's ToTensor).
SCALE_UINT8 = 1.0 / 255.0
#: Why a timm entry has no weights URL.
WEIGHTS_NOTE = (
    "timm publishes these weights on the Hugging Face hub ({hub}), which gives no sha256 to pin and "
    "which mlms_ir does not download from: the model is built with random weights only "
    "(fine for cost and speed, never for accuracy)"
)


def _timm():
    return lazy_import("timm")


def split_name(name: str) -> tuple[str, str | None]:
    """``("deit_tiny_patch16_224", "fb_in1k")`` for ``deit_tiny_patch16_224.fb_in1k`` (tag None when absent)."""
    arch, _, tag = str(name).partition(".")
    return arch, (tag or None)


def unknown_model_message(name: str) -> str:
    """One sentence for an unknown timm model name, with the closest names."""
    import difflib

    names = _timm().list_models(pretrained=True)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"see timm.list_models(pretrained=True) ({len(names)} models)"
    return f"timm has no pretrained model '{name}'; {hint}"


def pretrained_cfg(name: str) -> dict[str, Any]:
    """The ``pretrained_cfg`` of ``arch`` (its default tag) or ``arch.tag``, as a dict.

    Raises:
        ConversionError: timm knows no such model or tag.
    """
    timm = _timm()
    arch, _ = split_name(name)
    if not timm.is_model(arch):
        raise ConversionError(unknown_model_message(name))
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None:
        raise ConversionError(unknown_model_message(name))
    return cfg.to_dict()


def full_name(name: str) -> str:
    """``arch.tag`` of ``name`` (the default tag when ``name`` has none)."""
    cfg = pretrained_cfg(name)
    return f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("tag") else cfg["architecture"]


def default_tag(arch: str) -> str | None:
    """The tag timm picks for ``arch`` when none is given."""
    return pretrained_cfg(arch).get("tag")


def builder_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``timm.create_model`` beyond the name: the head size of the published weights."""
    return {"num_classes": int(cfg["num_classes"])} if cfg.get("num_classes") else {}


@contextlib.contextmanager
def _no_hub() -> Iterator[None]:
    """Make any attempt of timm to load pretrained weights an error instead of a download."""
    builder = lazy_import("timm.models._builder")

    def refuse(model: Any, *args: Any, **kwargs: Any) -> None:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        raise ConversionError(
            f"building would download the weights {cfg.get('hf_hub_id') or cfg.get('architecture')}; "
            "mlms_ir builds timm models with random weights only")

    with patched(builder, "load_pretrained", refuse):
        yield


def create(name: str, **kwargs: Any) -> Any:
    """``timm.create_model(name, pretrained=False, **kwargs)`` (random weights; never downloads), in eval mode."""
    timm = _timm()
    cfg = pretrained_cfg(name)
    kw = {**builder_kwargs(cfg), **kwargs}
    with _no_hub():
        try:
            model = timm.create_model(name, pretrained=False, **kw)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"timm cannot build {name} with {kw}: {type(exc).__name__}: {exc}") from exc
    return model.eval()


def data_config(model: Any) -> dict[str, Any]:
    """``timm.data.resolve_model_data_config(model)``: input_size, interpolation, mean, std, crop_pct, crop_mode."""
    return dict(_timm().data.resolve_model_data_config(model))


def resolution_of(model: Any) -> tuple[int, int]:
    """Input height and width of the model's published weights (``input_size`` of its data config)."""
    size = data_config(model)["input_size"]
    return (int(size[-2]), int(size[-1]))


def input_spec(resolution: tuple[int, int], *, batch: int | str = "batch") -> list[dict[str, Any]]:
    """Graph inputs of the exported model: ``[{"name": "input", "shape": [batch, 3, H, W], "dtype": "float32"}]``."""
    h, w = resolution
    return [{"name": "input", "shape": [batch, 3, h, w], "dtype": "float32"}]


def preprocessing(model: Any) -> dict[str, Any]:
    """How to turn 8-bit images into the model's input: timm's evaluation transform for its data config.

    Keys as the torchvision entries have them (``resize``: one int resizes the shorter side, two ints
    the whole image; ``crop``: [H, W] centre crop; ``mean``, ``std``, ``interpolation``,
    ``antialias``, ``layout``, ``dtype``, ``scale``), read from the transform
    ``timm.data.create_transform(**data_config)`` builds, plus timm's own ``crop_pct`` and
    ``crop_mode`` (the resize is ``floor(crop / crop_pct)``).
    """
    timm = _timm()
    cfg = data_config(model)
    t = timm.data.create_transform(**cfg, is_training=False)
    out: dict[str, Any] = {
        "transform": "timm.data.create_transform",
        "resize": None,
        "crop": None,
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "interpolation": str(cfg["interpolation"]),
        "layout": "NCHW",
        "dtype": "float32",
        "scale": SCALE_UINT8,
        "crop_pct": float(cfg["crop_pct"]),
        "crop_mode": str(cfg.get("crop_mode") or "center"),
    }
    for step in getattr(t, "transforms", [t]):
        kind = type(step).__name__
        size = getattr(step, "size", None)
        if kind in ("Resize", "ResizeKeepRatio") and size is not None:
            ints = [int(v) for v in (size if isinstance(size, (list, tuple)) else [size])]
            out["resize"] = ints[0] if len(ints) == 1 else ints
            if getattr(step, "antialias", None) is not None:
                out["antialias"] = bool(step.antialias)
        elif kind == "CenterCrop" and size is not None:
            ints = [int(v) for v in (size if isinstance(size, (list, tuple)) else [size, size])]
            out["crop"] = [ints[0], ints[-1]]
    if out["crop"] is None:
        h, w = resolution_of(model)
        out["crop"] = [h, w]
    return out


def licence(cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"code", "weights", "weights_note"}``: timm's code licence and the weights' ``license`` from ``pretrained_cfg``."""
    lic = cfg.get("license")
    return {
        "code": CODE_LICENCE,
        "weights": lic,
        "weights_note": "timm's pretrained_cfg states this licence for the weights" if lic else
        "timm's pretrained_cfg states no licence for these weights; the terms of their origin and training data may apply",
    }


def weights_entry(cfg: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``weights``: no URL (the hub's files cannot be pinned here) and a note saying so."""
    hub = cfg.get("hf_hub_id") or f"{cfg['architecture']}.{cfg.get('tag')}"
    return {
        "url": None,
        "file": None,
        "sha256_prefix": None,
        "size_mb": None,
        "hf_hub_id": hub,
        "downloadable": False,
        "weights_note": WEIGHTS_NOTE.format(hub=hub),
    }


def num_params(model: Any) -> int:
    """Elements of the model's parameters (buffers such as running statistics not counted)."""
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: Any, resolution: tuple[int, int]) -> int:
    """Multiply-accumulates of one image through the model, by ``torch.utils.flop_counter.FlopCounterMode``.

    FlopCounterMode counts convolutions and matrix products (``mm``, ``addmm``, ``bmm``, ...) as 2
    FLOPs per multiply-add; this returns half of it, i.e. multiply-adds, as torchvision's GFLOPS and
    mlms_ir's MACs count them. The CPU kernel of ``scaled_dot_product_attention`` is not counted by
    FlopCounterMode, so timm's fused attention is turned off for the count (the modules' ``fused_attn``
    flag): its two matmuls are counted as such.
    """
    torch = lazy_import("torch")
    from torch.utils.flop_counter import FlopCounterMode

    with unfused_attention(model):
        counter = FlopCounterMode(display=False)
        x = torch.zeros(1, 3, *resolution)
        with counter:  # FlopCounterMode's module tracker needs autograd on: no torch.no_grad() here
            model(x)
    return int(counter.get_total_flops()) // 2


@contextlib.contextmanager
def unfused_attention(model: Any) -> Iterator[None]:
    """Every timm attention module of ``model`` computing attention as plain matmuls (``fused_attn = False``)."""
    flagged = [m for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    saved = [m.fused_attn for m in flagged]
    for m in flagged:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, v in zip(flagged, saved, strict=True):
            m.fused_attn = v


__all__ = [
    "CODE_LICENCE",
    "WEIGHTS_NOTE",
    "builder_kwargs",
    "count_macs",
    "create",
    "data_config",
    "default_tag",
    "full_name",
    "input_spec",
    "licence",
    "num_params",
    "preprocessing",
    "pretrained_cfg",
    "resolution_of",
    "split_name",
    "unfused_attention",
    "unknown_model_message",
    "weights_entry",
]
