"""Preprocessing from a model's manifest: resize, centre crop, scale, normalise, layout, dtype.

Done once per batch, before the batch goes to every backend, so each backend is timed on
inference alone and all see the same input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlms_ir.datasets.readers import DatasetError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


@dataclass
class Preprocess:
    """How a batch of images becomes the model's input.

    ``resize``: the shorter side is resized to this many pixels (aspect kept), then ``crop``
    takes the centre square of this size (both with Pillow, as torchvision does for PIL images);
    then pixel values are multiplied by ``scale`` (``1/255`` for 8-bit images; ``1/16`` for
    scikit-learn's digits), normalised per channel with ``mean`` and ``std``, laid out as
    ``NCHW`` or ``NHWC`` and cast to ``dtype``. ``channels`` (1 or 3) converts grey to RGB or
    back when the data and the model differ."""

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
        if self.layout not in ("NCHW", "NHWC"):
            raise DatasetError(f"preprocessing layout must be NCHW or NHWC, not '{self.layout}'")
        if self.interpolation not in INTERPOLATIONS:
            raise DatasetError(f"unknown interpolation '{self.interpolation}'; one of {', '.join(INTERPOLATIONS)}")
        for k in ("resize", "crop"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise DatasetError(f"preprocessing '{k}' must be a positive number of pixels, not {v!r}")
        if self.channels not in (None, 1, 3):
            raise DatasetError(f"preprocessing 'channels' must be 1 or 3, not {self.channels!r}")
        if (self.mean is None) != (self.std is None) or (self.std is not None and any(s == 0 for s in self.std)):
            raise DatasetError("preprocessing needs both 'mean' and 'std' (non-zero), or neither")

    @classmethod
    def from_manifest(cls, d: Mapping[str, Any]) -> Preprocess:
        """From a manifest's ``preprocessing`` (torchvision's ``resize_size``/``crop_size`` lists
        are accepted too)."""

        def first(v: Any) -> Any:
            return v[0] if isinstance(v, Sequence) and not isinstance(v, str) and v else v

        known = {"resize", "resize_size", "crop", "crop_size", "scale", "mean", "std", "layout", "dtype", "channels", "interpolation"}
        extra = sorted(set(d) - known - {"description", "note", "transform", "antialias"})
        if extra:
            raise DatasetError(f"unknown preprocessing key {', '.join(map(repr, extra))}; known: {', '.join(sorted(known))}")
        resize, crop = first(d.get("resize", d.get("resize_size"))), first(d.get("crop", d.get("crop_size")))
        interp = str(d.get("interpolation", "bilinear")).lower().replace("interpolationmode.", "")
        return cls(resize=int(resize) if resize is not None else None, crop=int(crop) if crop is not None else None,
                   scale=float(d.get("scale", 1 / 255)), mean=list(map(float, d["mean"])) if d.get("mean") is not None else None,
                   std=list(map(float, d["std"])) if d.get("std") is not None else None, layout=str(d.get("layout", "NCHW")),
                   dtype=str(d.get("dtype", "float32")), channels=d.get("channels"), interpolation=interp)

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
        return np.ascontiguousarray(x.astype(self.dtype))


#: The embedded digits CNN's preprocessing (``tools/train_digits_cnn.py``: pixel values / 16, NCHW).
DIGITS = Preprocess(scale=1 / 16, channels=1)
