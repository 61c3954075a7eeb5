"""Preprocessing from a model's manifest: resize, centre crop, scale, normalise, layout, dtype.

Done once per batch, before the batch goes to every backend, so each backend is timed on
inference alone and all see the same input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlms_ir.datasets.readers import DatasetError
from mlms_ir.results.evaluation import describe_preprocess as describe  # noqa: F401 - re-exported here

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
#: The dtypes a batch can be fed as: a float model input takes its own float type (``evaluate``
#: sets it); an integer type is for a model that takes integer pixels, and must be asked for.
FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64")
DTYPES = FLOAT_DTYPES + INT_DTYPES
#: Keys of a manifest's ``preprocessing`` that describe it but change nothing here.
IGNORED_KEYS = ("description", "note", "transform", "antialias")
#: The keys :meth:`Preprocess.from_manifest` reads.
KNOWN_KEYS = ("channels", "crop", "crop_size", "dtype", "interpolation", "layout", "mean", "resize", "resize_size", "scale", "std")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _pixels(key: str, v: Any) -> int | None:
    """A positive whole number of pixels (``256``, ``256.0``, or torchvision's ``[256]`` / ``[224, 224]``), or None."""
    if isinstance(v, Sequence) and not isinstance(v, str):
        vals = list(v)
        if not vals or len(set(map(repr, vals))) != 1:
            what = "the shorter side" if key == "resize" else "the side of the centre square"
            raise DatasetError(f"preprocessing '{key}' must be one number of pixels ({what}), not {v!r}")
        v = vals[0]
    if v is None:
        return None
    if not _is_number(v) or v != int(v) or v < 1:
        raise DatasetError(f"preprocessing '{key}' must be a positive whole number of pixels, not {v!r}")
    return int(v)


def _values(key: str, v: Any) -> list[float] | None:
    """A list of finite numbers (one per channel, or one for all), or None."""
    if v is None:
        return None
    vals = [v] if _is_number(v) else v
    if isinstance(vals, str) or not isinstance(vals, Sequence) or len(vals) not in (1, 3) or not all(map(_is_number, vals)):
        raise DatasetError(f"preprocessing '{key}' must be a number or a list of 1 or 3 numbers (one per channel), not {v!r}")
    return [float(x) for x in vals]


@dataclass
class Preprocess:
    """How a batch of images becomes the model's input.

    ``resize``: the shorter side is resized to this many pixels (aspect kept), then ``crop``
    takes the centre square of this size (both with Pillow, as torchvision does for PIL images,
    with ``interpolation``: nearest, bilinear, bicubic or lanczos);
    then pixel values are multiplied by ``scale`` (``1/255`` for 8-bit images; ``1/16`` for
    scikit-learn's digits), normalised per channel with ``mean`` and ``std``, laid out as
    ``NCHW`` or ``NHWC`` and cast to ``dtype`` (float16, float32, float64, or an integer type
    for a model that takes integer pixels: values are then rounded, and must fit). ``channels``
    (1 or 3) converts grey to RGB or back when the data and the model differ.

    Every field is checked: a bad value raises :class:`~mlms_ir.errors.DatasetError` naming it."""

    resize: int | None = None
    crop: int | None = None
    scale: float = 1 / 255
    mean: list[float] | None = None
    std: list[float] | None = None
    layout: str = "NCHW"
    dtype: str = "float32"
    channels: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        self.resize, self.crop = _pixels("resize", self.resize), _pixels("crop", self.crop)
        if not _is_number(self.scale) or self.scale <= 0:
            raise DatasetError(f"preprocessing 'scale' must be a positive number (e.g. 0.00392156862745098 for 1/255), "
                               f"not {self.scale!r}")
        self.scale = float(self.scale)
        self.mean, self.std = _values("mean", self.mean), _values("std", self.std)
        if (self.mean is None) != (self.std is None):
            raise DatasetError("preprocessing needs both 'mean' and 'std', or neither")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise DatasetError(f"preprocessing 'std' must be positive numbers, not {self.std!r}")
        if not isinstance(self.layout, str) or self.layout.upper() not in ("NCHW", "NHWC"):
            raise DatasetError(f"preprocessing 'layout' must be NCHW or NHWC, not {self.layout!r}")
        self.layout = self.layout.upper()
        if not isinstance(self.dtype, str) or self.dtype.lower() not in DTYPES:
            raise DatasetError(f"preprocessing 'dtype' must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        self.dtype = self.dtype.lower()
        if self.channels is not None and (not _is_number(self.channels) or self.channels not in (1, 3)):
            raise DatasetError(f"preprocessing 'channels' must be 1 or 3, not {self.channels!r}")
        self.channels = int(self.channels) if self.channels is not None else None
        if not isinstance(self.interpolation, str) or self.interpolation not in INTERPOLATIONS:
            raise DatasetError(f"preprocessing 'interpolation' must be one of {', '.join(INTERPOLATIONS)}, not {self.interpolation!r}")

    @classmethod
    def from_manifest(cls, d: Mapping[str, Any]) -> Preprocess:
        """From a manifest's ``preprocessing`` or ``--preprocess`` (torchvision's ``resize_size``/
        ``crop_size`` lists and ``InterpolationMode.BILINEAR`` are accepted too; a key set to
        null takes its default). An unknown key or a bad value raises
        :class:`~mlms_ir.errors.DatasetError` naming it and what it takes."""
        if not isinstance(d, Mapping):
            raise DatasetError(f"preprocessing must be an object of {', '.join(KNOWN_KEYS)}, not {d!r}")
        extra = sorted(set(d) - set(KNOWN_KEYS) - set(IGNORED_KEYS), key=str)
        if extra:
            raise DatasetError(f"unknown preprocessing key {', '.join(map(repr, extra))}; known: {', '.join(KNOWN_KEYS)}")
        for a, b in (("resize", "resize_size"), ("crop", "crop_size")):
            if d.get(a) is not None and d.get(b) is not None:
                raise DatasetError(f"preprocessing has both '{a}' and '{b}': give one")
        interp = d.get("interpolation")
        if isinstance(interp, str):
            interp = interp.lower().replace("interpolationmode.", "")
        given = {"resize": d.get("resize", d.get("resize_size")), "crop": d.get("crop", d.get("crop_size")),
                 "scale": d.get("scale"), "mean": d.get("mean"), "std": d.get("std"), "layout": d.get("layout"),
                 "dtype": d.get("dtype"), "channels": d.get("channels"), "interpolation": interp}
        defaults = ("scale", "layout", "dtype", "interpolation")
        return cls(**{k: v for k, v in given.items() if v is not None or k not in defaults})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _resize_crop(self, img: np.ndarray) -> np.ndarray:
        from PIL import Image

        squeeze = img.ndim == 3 and img.shape[2] == 1
        im = Image.fromarray(img[..., 0] if squeeze else img)
        if self.resize is not None:
            w, h = im.size
            if w <= h:
                size = (self.resize, max(1, int(self.resize * h / w)))
            else:
                size = (max(1, int(self.resize * w / h)), self.resize)
            resample = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                        "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}[self.interpolation]
            im = im.resize(size, resample)
        if self.crop is not None:
            w, h = im.size
            if w < self.crop or h < self.crop:
                raise DatasetError(f"cannot crop {self.crop}x{self.crop} from a {w}x{h} image: give a resize at least that large")
            left, top = int(round((w - self.crop) / 2.0)), int(round((h - self.crop) / 2.0))
            im = im.crop((left, top, left + self.crop, top + self.crop))
        out = np.asarray(im)
        return out[..., None] if out.ndim == 2 else out

    def __call__(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """A batch ``[N, H, W, C]`` (or a list of ``[H, W, C]`` images of any size) as model input."""
        if self.resize is not None or self.crop is not None:
            if isinstance(images, np.ndarray) and images.dtype != np.uint8:
                raise DatasetError("resizing and cropping work on 8-bit images; this data set has other pixels")
            images = [self._resize_crop(np.ascontiguousarray(im)) for im in images]
        if isinstance(images, list):
            shapes = {im.shape for im in images}
            if len(shapes) > 1:
                raise DatasetError(f"the images have different sizes ({', '.join(map(str, sorted(shapes)[:3]))}): give a resize and crop")
            images = np.stack(images) if images else np.zeros((0, 1, 1, 1), np.uint8)
        x = images.astype(np.float32)
        c = x.shape[-1]
        if self.channels == 3 and c == 1:
            x = np.repeat(x, 3, axis=-1)
        elif self.channels == 1 and c == 3:
            x = (x @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
        x = x * np.float32(self.scale)
        if self.mean is not None and self.std is not None:
            if len(self.mean) not in (1, x.shape[-1]) or len(self.std) not in (1, x.shape[-1]):
                raise DatasetError(f"mean/std have {len(self.mean)}/{len(self.std)} values for {x.shape[-1]}-channel images")
            x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        if self.dtype in INT_DTYPES:
            x = np.rint(x)
            info = np.iinfo(self.dtype)
            if x.size and (x.min() < info.min or x.max() > info.max):
                raise DatasetError(f"the preprocessed pixels run {x.min():g}..{x.max():g}, outside {self.dtype}'s "
                                   f"{info.min}..{info.max}: give a 'scale' that fits them (1 keeps 8-bit pixels as they are)")
        return np.ascontiguousarray(x.astype(self.dtype))


#: The embedded digits CNN's preprocessing (``tools/train_digits_cnn.py``: pixel values / 16, NCHW).
DIGITS = Preprocess(scale=1 / 16, channels=1)

#: Each data set's natural preprocessing, used (and reported as assumed) for a model with no
#: manifest: its pixel range scaled to [0, 1] (digits run 0..16, the others 0..255), NCHW; for
#: ImageNet the zoo's usual torchvision recipe (resize 256, centre crop 224, bilinear, ImageNet's
#: mean and std), which 57 of its torchvision classifiers use.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"scale": 1 / 16, "layout": "NCHW"},
    "mnist": {"scale": 1 / 255, "layout": "NCHW"},
    "fashion-mnist": {"scale": 1 / 255, "layout": "NCHW"},
    "cifar10": {"scale": 1 / 255, "layout": "NCHW"},
    "cifar100": {"scale": 1 / 255, "layout": "NCHW"},
    "imagenet": {"resize": 256, "crop": 224, "interpolation": "bilinear", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406],
                 "std": [0.229, 0.224, 0.225], "layout": "NCHW"},
}


def dataset_default(name: str) -> dict[str, Any]:
    """The preprocessing a model with no manifest gets on data set ``name`` (a copy of
    :data:`DATASET_DEFAULTS`' entry)."""
    if name not in DATASET_DEFAULTS:
        raise DatasetError(f"unknown data set '{name}'; known: {', '.join(DATASET_DEFAULTS)}")
    return {k: list(v) if isinstance(v, list) else v for k, v in DATASET_DEFAULTS[name].items()}


