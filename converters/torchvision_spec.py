"""What torchvision's own metadata says about a model: task, builder arguments, inputs, preprocessing.

Shared by :func:`mlms_ir.converters.torch.from_torchvision` (to build and export a model the way its
published weights expect) and ``tools/make_zoo_manifests.py`` (to write the zoo's manifests), so the
two never disagree. Everything here reads torchvision's registry (``list_models``,
``get_model_weights``, each weight's ``meta`` and ``transforms()``); the few facts torchvision keeps
only in code are written out below with the line of torchvision they mirror.

Importing this module imports nothing heavy; each function imports torchvision when called.
"""

from __future__ import annotations

import re
from typing import Any

from mlms_ir._lazy import lazy_import
from mlms_ir.converters import ConversionError

#: The tasks of the zoo, in display order.
TASKS = (
    "image-classification",
    "object-detection",
    "instance-segmentation",
    "keypoint-detection",
    "semantic-segmentation",
    "video-classification",
    "optical-flow",
)

#: Clip length of the video inputs: torchvision's published GFLOPS of its video models are
#: counted at 16 frames (r3d_18: 40.7 at 16x112x112; mvit_v1_b: 70.6 at 16x224x224).
VIDEO_FRAMES = 16

#: Input size of the optical-flow models: a Sintel frame (436x1024) padded to a multiple of 8, as
#: torchvision's reference evaluation pads it. torchvision does not say at which size its GFLOPS are.
OPTICAL_FLOW_RESOLUTION = (440, 1024)

#: torchvision.transforms._presets.OpticalFlow maps [0, 1] to [-1, 1] with these.
OPTICAL_FLOW_MEAN_STD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])

#: One 8-bit pixel step: images are scaled by this before mean/std normalisation.
SCALE_UINT8 = 1.0 / 255.0


def _models():
    return lazy_import("torchvision.models")


def task_of(name: str) -> str:
    """The zoo task of torchvision model ``name`` (one of :data:`TASKS`)."""
    m = _models()
    module_of = {
        "detection": m.detection,
        "segmentation": m.segmentation,
        "video": m.video,
        "optical_flow": m.optical_flow,
        "quantization": m.quantization,
    }
    for key, module in module_of.items():
        if name in m.list_models(module=module):
            if key == "detection":
                if name.startswith("maskrcnn"):
                    return "instance-segmentation"
                if name.startswith("keypointrcnn"):
                    return "keypoint-detection"
                return "object-detection"
            return {
                "segmentation": "semantic-segmentation",
                "video": "video-classification",
                "optical_flow": "optical-flow",
                "quantization": "image-classification",
            }[key]
    if name in m.list_models(module=m):
        return "image-classification"
    raise ConversionError(unknown_model_message(name))


def is_quantized(name: str) -> bool:
    """Whether ``name`` is one of torchvision's post-training-quantized (int8) models."""
    m = _models()
    return name in m.list_models(module=m.quantization)


def unknown_model_message(name: str) -> str:
    """One sentence for an unknown torchvision model name, with the closest names."""
    import difflib

    names = _models().list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"see torchvision.models.list_models() ({len(names)} models)"
    return f"torchvision has no model '{name}'; {hint}"


def check_model_name(name: str) -> None:
    """Raise :class:`~mlms_ir.converters.ConversionError` unless torchvision knows ``name``."""
    if name not in _models().list_models():
        raise ConversionError(unknown_model_message(name))


def weights_of(name: str, weights: str | None = "DEFAULT") -> Any:
    """The weights enum member of ``name`` called ``weights``.

    ``weights`` may be ``"DEFAULT"``, a member name (``"IMAGENET1K_V1"``, any case) or a full name
    (``"ResNet50_Weights.IMAGENET1K_V1"``); ``None`` means DEFAULT (used for the architecture and
    metadata of a random-weights build).
    """
    check_model_name(name)
    enum = _models().get_model_weights(name)
    key = "DEFAULT" if weights is None else str(weights)
    if "." in key:
        cls, _, key = key.partition(".")
        if cls != enum.__name__:
            raise ConversionError(f"weights '{weights}' are not weights of {name}, whose weights are {enum.__name__}.*")
    members = {k.upper(): v for k, v in enum.__members__.items()}
    if key.upper() not in members:
        known = ", ".join(w.name for w in enum)
        raise ConversionError(f"{name} has no weights '{weights}'; its weights are DEFAULT, {known}")
    return members[key.upper()]


def weights_full_name(w: Any) -> str:
    """``"ResNet50_Weights.IMAGENET1K_V2"`` for a weights enum member."""
    return f"{type(w).__name__}.{w.name}"


def builder_kwargs(name: str, w: Any) -> dict[str, Any]:
    """Keyword arguments that build ``name`` with the architecture its weights ``w`` load into.

    torchvision's builders change the architecture only when given weights (their ``if weights is
    not None`` branches: ``num_classes`` from the categories, ``image_size`` for the ViTs, ...);
    passing these with ``weights=None`` builds the same architecture with random parameters, so the
    parameter count and cost are those of the published weights. ``weights_backbone=None`` keeps a
    detection or segmentation builder from fetching its backbone's weights.
    """
    import inspect

    m = _models()
    task = task_of(name)
    meta = w.meta
    kw: dict[str, Any] = {}
    if meta.get("categories") and task != "optical-flow":  # vgg16 IMAGENET1K_FEATURES has None
        kw["num_classes"] = len(meta["categories"])
    params = inspect.signature(m.get_model_builder(name)).parameters
    if "weights_backbone" in params:
        kw["weights_backbone"] = None
    if "aux_loss" in params:  # fcn, deeplabv3: the published weights carry the auxiliary head
        kw["aux_loss"] = True
    if "num_keypoints" in params and "keypoint_names" in meta:
        kw["num_keypoints"] = len(meta["keypoint_names"])
    base = name.removeprefix("quantized_")
    if is_quantized(name):
        kw["quantize"] = True
        if "backend" in meta:
            kw["backend"] = meta["backend"]
    if base.startswith("vit_"):
        kw["image_size"] = int(meta["min_size"][0])
    elif base.startswith("maxvit"):
        kw["input_size"] = tuple(int(v) for v in meta["min_size"])
    elif base in ("googlenet", "inception_v3"):
        # googlenet.py/inception.py: transform_input=True, aux_logits=True to load, then the aux
        # heads are dropped unless the caller asked for them (inception_v3 keeps them by default;
        # they are inactive in eval, so they never reach the ONNX graph).
        kw["transform_input"] = True
        keep_aux = base == "inception_v3" and not is_quantized(name)
        kw["aux_logits"] = keep_aux
        kw["init_weights"] = False
    return kw


def resolution_of(name: str, w: Any) -> tuple[int, int] | None:
    """Input height and width that ``w``'s transforms produce (None for detection: see :func:`detection_transform`)."""
    task = task_of(name)
    if task == "optical-flow":
        return OPTICAL_FLOW_RESOLUTION
    if task in ("object-detection", "instance-segmentation", "keypoint-detection"):
        return None
    t = w.transforms()
    size = getattr(t, "crop_size", None) or getattr(t, "resize_size", None)
    if size is None:
        return None
    size = list(size)
    return (int(size[0]), int(size[-1]))


def detection_transform(model: Any) -> dict[str, Any]:
    """The resizing and normalisation a detection model does inside itself (``model.transform``)."""
    t = model.transform
    out: dict[str, Any] = {
        "min_size": [int(v) for v in t.min_size],
        "max_size": int(t.max_size),
        "mean": [float(v) for v in t.image_mean],
        "std": [float(v) for v in t.image_std],
    }
    fixed = getattr(t, "fixed_size", None)
    if fixed:
        out["fixed_size"] = [int(v) for v in fixed]
    return out


def detection_resolution(model: Any) -> tuple[int, int]:
    """Nominal input size of a detection model: its fixed size (SSD) or a square of its min_size."""
    t = detection_transform(model)
    if "fixed_size" in t:
        return (t["fixed_size"][0], t["fixed_size"][1])
    return (t["min_size"][0], t["min_size"][0])


def input_spec(name: str, resolution: tuple[int, int], *, batch: int | str = "batch",
               frames: int = VIDEO_FRAMES) -> list[dict[str, Any]]:
    """Graph inputs of the exported model: ``[{"name", "shape", "dtype"}]`` (shape with the batch first).

    Detection models take a list of images and are exported for one image: their batch dim is 1.
    """
    h, w = resolution
    task = task_of(name)
    if task == "optical-flow":
        return [{"name": n, "shape": [batch, 3, h, w], "dtype": "float32"} for n in ("image1", "image2")]
    if task == "video-classification":
        return [{"name": "input", "shape": [batch, 3, frames, h, w], "dtype": "float32"}]
    if task in ("object-detection", "instance-segmentation", "keypoint-detection"):
        return [{"name": "images", "shape": [1, 3, h, w], "dtype": "float32"}]
    return [{"name": "input", "shape": [batch, 3, h, w], "dtype": "float32"}]


def _ints(v: Any) -> list[int] | None:
    if v is None:
        return None
    return [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def preprocessing(name: str, w: Any, model: Any = None) -> dict[str, Any]:
    """How to turn 8-bit images into the model's input, from ``w.transforms()``.

    Keys: ``transform`` (torchvision's preset class), ``resize`` (torchvision semantics: one int
    resizes the shorter side, two ints the whole image), ``crop`` ([H, W], centre crop), ``mean``,
    ``std``, ``interpolation``, ``antialias``, ``layout``, ``dtype``, ``scale`` (multiply the 8-bit
    values by it before mean/std). Detection models resize and normalise inside themselves; their
    ``in_model`` entry says how (needs the built ``model``).
    """
    task = task_of(name)
    t = w.transforms()
    layout = "NCTHW" if task == "video-classification" else "NCHW"
    out: dict[str, Any] = {
        "transform": type(t).__name__,
        "resize": None,
        "crop": None,
        "mean": None,
        "std": None,
        "interpolation": None,
        "layout": layout,
        "dtype": "float32",
        "scale": SCALE_UINT8,
    }
    if task == "optical-flow":
        out["mean"], out["std"] = OPTICAL_FLOW_MEAN_STD
        return out
    if task in ("object-detection", "instance-segmentation", "keypoint-detection"):
        if model is not None:
            out["in_model"] = detection_transform(model)
        return out
    resize = _ints(getattr(t, "resize_size", None))
    crop = _ints(getattr(t, "crop_size", None))
    out["resize"] = resize[0] if resize and len(resize) == 1 else resize
    out["crop"] = [crop[0], crop[-1]] if crop else None
    out["mean"] = [float(v) for v in t.mean]
    out["std"] = [float(v) for v in t.std]
    interp = getattr(t, "interpolation", None)
    out["interpolation"] = getattr(interp, "value", None if interp is None else str(interp))
    if getattr(t, "antialias", None) is not None:
        out["antialias"] = bool(t.antialias)
    return out


_HASH_IN_NAME = re.compile(r"[-_]([0-9a-f]{8,64})\.(?:pth|pt)$")


def sha256_prefix_of(url: str) -> str | None:
    """The sha256 prefix torchvision puts at the end of a weights file's name (``resnet50-11ad3fa6.pth``).

    ``torch.hub`` checks it (``check_hash``) for names with ``-HASH.``; a few quantized weights use
    ``_HASH.`` instead, which torch.hub does not check; both are read here.
    """
    m = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    return m.group(1) if m else None


def clip_len_of(w: Any) -> int | None:
    """The clip length a video model's reference accuracy was measured with (from its docs)."""
    m = re.search(r"clip_len=(\d+)", w.meta.get("_docs", ""))
    return int(m.group(1)) if m else None


__all__ = [
    "OPTICAL_FLOW_RESOLUTION",
    "TASKS",
    "VIDEO_FRAMES",
    "builder_kwargs",
    "check_model_name",
    "clip_len_of",
    "detection_resolution",
    "detection_transform",
    "input_spec",
    "is_quantized",
    "preprocessing",
    "resolution_of",
    "sha256_prefix_of",
    "task_of",
    "unknown_model_message",
    "weights_full_name",
    "weights_of",
]
