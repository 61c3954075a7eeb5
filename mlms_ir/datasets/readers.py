"""Readers of evaluation data sets in their published formats (see :mod:`mlms_ir.datasets`)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlms_ir.errors import DatasetError, MissingExtraError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


Batch = tuple["np.ndarray | list[np.ndarray]", np.ndarray]


@dataclass
class Dataset:
    """An evaluation split: ``size`` samples of ``len(labels)`` classes, read in batches.

    ``pixels`` is ``uint8`` (0..255 images, ``[H, W, C]`` each) or ``digits`` (scikit-learn's
    0..16 values). Images of one size come as one array ``[N, H, W, C]``; of several sizes
    (ImageNet) as a list, to be resized by the preprocessing."""

    name: str
    labels: list[str]
    size: int
    pixels: str
    source: str
    _read: Callable[[int, int], Batch]

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """``(images, labels)`` of at most ``batch_size`` samples each, in order."""
        if batch_size < 1:
            raise DatasetError(f"the batch size must be a positive integer, got {batch_size}")
        for start in range(0, self.size, batch_size):
            yield self._read(start, min(self.size, start + batch_size))


def _limited(n: int, limit: int | None) -> int:
    if limit is None:
        return n
    if limit < 1:
        raise DatasetError(f"--limit must be a positive integer, got {limit}")
    return min(n, limit)


def _arrays(name: str, images: np.ndarray, labels: np.ndarray, classes: list[str], pixels: str, source: str,
            limit: int | None) -> Dataset:
    n = _limited(len(labels), limit)
    return Dataset(name, classes, n, pixels, source, lambda a, b: (images[a:b], labels[a:b].astype(np.int64)))


# --------------------------------------------------------------------------------- digits


def read_digits(limit: int | None = None) -> Dataset:
    """scikit-learn's digits, the test split ``tools/train_digits_cnn.py`` held out
    (``train_test_split(test_size=0.25, random_state=0, stratify=y)``: 450 images)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingExtraError("the digits data set comes with scikit-learn: pip install 'mlms_ir[datasets]'") from exc
    d = load_digits()
    x = d.images.astype(np.float32)[..., None]  # [N, 8, 8, 1], 0..16
    y = d.target.astype(np.int64)
    _, x_te, _, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return _arrays("digits", x_te, y_te, [str(i) for i in range(10)], "digits", "sklearn.datasets.load_digits (test split)", limit)


# ---------------------------------------------------------------------------------- IDX (MNIST)

MNIST_LABELS = [str(i) for i in range(10)]
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _find(root: Path, stems: Sequence[str]) -> Path:
    for stem in stems:
        for cand in (root / stem, root / f"{stem}.gz", root / "raw" / stem, root / "raw" / f"{stem}.gz"):
            if cand.is_file():
                return cand
    raise DatasetError(f"no {stems[0]} (or .gz) in '{root}'")


def _read_maybe_gz(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except OSError as exc:
        raise DatasetError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    except (EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"'{path}' is not a complete gzip file: {exc}") from exc


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (``magic = 0x00000800 | type``, big-endian dims, then the data)."""
    data = _read_maybe_gz(path)
    if len(data) < 4:
        raise DatasetError(f"'{path}' is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack_from(">HBB", data)
    types = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
    if zero != 0 or dtype_code not in types or not 1 <= ndim <= 4:
        raise DatasetError(f"'{path}' is not an IDX file (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"'{path}' is truncated in its header")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    dt = np.dtype(types[dtype_code])
    need = int(np.prod(dims)) * dt.itemsize
    if len(data) - header != need:
        raise DatasetError(f"'{path}' holds {len(data) - header} bytes of data, but its header ({'x'.join(map(str, dims))}) "
                           f"says {need}: truncated or corrupt")
    return np.frombuffer(data, dt, offset=header).reshape(dims)


def read_mnist(root: str | os.PathLike, *, fashion: bool = False, split: str = "test", limit: int | None = None) -> Dataset:
    """MNIST or Fashion-MNIST from its IDX files in ``root`` (``t10k-*`` for the test split)."""
    r = Path(root)
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise DatasetError(f"unknown split '{split}': test or train")
    images = read_idx(_find(r, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]))
    labels = read_idx(_find(r, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"]))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
        raise DatasetError(f"the IDX files in '{r}' do not pair up: images {images.shape} {images.dtype}, labels {labels.shape}")
    name = "fashion-mnist" if fashion else "mnist"
    return _arrays(name, images[..., None], labels, FASHION_LABELS if fashion else MNIST_LABELS, "uint8", str(r), limit)


# --------------------------------------------------------------------------------- CIFAR


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR's python batches hold: dicts, lists, bytes, str, numbers and
    numpy arrays. Any other global (a function to call, a class to build) is refused, so a
    crafted file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode"), ("builtins", "bytearray")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read '{path}': {exc.strerror or exc}") from exc
    try:
        obj = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DatasetError(f"'{path}' is not a CIFAR batch: {exc}") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"'{path}' is not a complete CIFAR batch: {exc}") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"'{path}' is not a CIFAR batch (it holds a {type(obj).__name__}, not a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar(root: str | os.PathLike, *, classes: int = 10, split: str = "test", limit: int | None = None) -> Dataset:
    """CIFAR-10 (``test_batch``) or CIFAR-100 (``test``, fine labels) python batches in ``root``
    (or in its ``cifar-10-batches-py`` / ``cifar-100-python`` folder)."""
    r = Path(root)
    sub = r / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    base = sub if sub.is_dir() else r
    if classes == 10:
        files = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
        meta_name, label_key, names_key = "batches.meta", "labels", "label_names"
    else:
        files = ["test"] if split == "test" else ["train"]
        meta_name, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    xs, ys = [], []
    for f in files:
        p = base / f
        if not p.is_file():
            raise DatasetError(f"no CIFAR-{classes} '{f}' in '{base}'")
        d = _unpickle(p)
        data, labels = d.get("data"), d.get(label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
            raise DatasetError(f"'{p}' does not hold CIFAR images (uint8 [N, 3072]) and '{label_key}'")
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(data) or labels.min(initial=0) < 0 or labels.max(initial=0) >= classes:
            raise DatasetError(f"'{p}': {len(labels)} labels for {len(data)} images, or labels outside 0..{classes - 1}")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    names = [str(i) for i in range(classes)]
    meta = base / meta_name
    if meta.is_file():
        m = _unpickle(meta).get(names_key)
        if isinstance(m, list) and len(m) == classes:
            names = [x.decode() if isinstance(x, bytes) else str(x) for x in m]
    return _arrays(f"cifar{classes}", np.concatenate(xs), np.concatenate(ys), names, "uint8", str(base), limit)


# --------------------------------------------------------------------------------- ImageNet


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingExtraError("reading image files needs Pillow: pip install 'mlms_ir[datasets]'") from exc
    return Image


def decode_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8 ``[H, W, 3]``."""
    Image = _pil()
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot decode the image '{path}': {exc}") from exc


def read_synset_map(path: Path) -> tuple[list[str], list[str]]:
    """``LOC_synset_mapping.txt``-style lines ``n01440764 tench, Tinca tinca``: (synsets, names)."""
    synsets, names = [], []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read the synset map '{path}': {exc.strerror or exc}") from exc
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        syn, _, name = line.strip().partition(" ")
        if not syn:
            raise DatasetError(f"{path}:{k}: expected 'SYNSET NAME'")
        synsets.append(syn)
        names.append(name.strip() or syn)
    return synsets, names


def read_imagenet(root: str | os.PathLike, *, labels_file: str | os.PathLike | None = None, synsets: str | os.PathLike | None = None,
                  limit: int | None = None) -> Dataset:
    """ImageNet validation images: class folders under ``root`` (sorted synsets give the class
    indices, as torchvision's ImageFolder), or image files in ``root`` with ``labels_file``
    (``FILE LABEL`` per line: a class index, or a synset looked up in ``synsets``)."""
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"no ImageNet folder '{r}'")
    syn_list, names = (read_synset_map(Path(synsets)) if synsets else ([], []))
    files: list[Path] = []
    labels: list[int] = []
    if labels_file is None:
        classes = sorted(d.name for d in r.iterdir() if d.is_dir())
        if not classes:
            raise DatasetError(f"'{r}' has no class folders; give --labels-file for flat image files")
        if syn_list and set(classes) - set(syn_list):
            raise DatasetError(f"class folders not in the synset map: {', '.join(sorted(set(classes) - set(syn_list))[:5])}")
        index = {s: i for i, s in enumerate(syn_list or classes)}
        for c in classes:
            for f in sorted((r / c).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(index[c])
        label_names = names or classes
    else:
        lf = Path(labels_file)
        try:
            lines = lf.read_text().splitlines()
        except OSError as exc:
            raise DatasetError(f"cannot read the labels file '{lf}': {exc.strerror or exc}") from exc
        index = {s: i for i, s in enumerate(syn_list)}
        for k, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.replace(",", " ").split()
            if len(parts) < 2:
                raise DatasetError(f"{lf}:{k}: expected 'FILE LABEL'")
            name, lab = parts[0], parts[1]
            f = (r / name).resolve()
            if r.resolve() not in f.parents:
                raise DatasetError(f"{lf}:{k}: '{name}' is outside '{r}'")
            if lab.isdigit():
                labels.append(int(lab))
            elif lab in index:
                labels.append(index[lab])
            else:
                raise DatasetError(f"{lf}:{k}: label '{lab}' is neither a class index nor a synset of the map")
            files.append(f)
        label_names = names or [str(i) for i in range(max(labels, default=-1) + 1)]
    if not files:
        raise DatasetError(f"no images in '{r}'")
    n = _limited(len(files), limit)
    lab = np.asarray(labels, dtype=np.int64)

    def read(a: int, b: int) -> Batch:
        return [decode_image(f) for f in files[a:b]], lab[a:b]

    return Dataset("imagenet", label_names, n, "uint8", str(r), read)


# ------------------------------------------------------------------------------- registry

#: name -> (description, needs a root folder)
DATASETS = {
    "digits": ("scikit-learn's 8x8 digits, the held-out test split (450 images)", False),
    "mnist": ("MNIST test set (IDX files)", True),
    "fashion-mnist": ("Fashion-MNIST test set (IDX files)", True),
    "cifar10": ("CIFAR-10 test batch (python format)", True),
    "cifar100": ("CIFAR-100 test batch (python format, fine labels)", True),
    "imagenet": ("ImageNet validation: class folders, or files with a labels file", True),
}


def open_dataset(name: str, root: str | os.PathLike | None = None, *, limit: int | None = None, split: str = "test",
                 labels_file: str | os.PathLike | None = None, synsets: str | os.PathLike | None = None) -> Dataset:
    """Open a data set by name (see :data:`DATASETS`); ``root`` is its folder (default: the
    download cache, ``~/.cache/mlms_ir/datasets/NAME``)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown data set '{name}'; known: {', '.join(DATASETS)}")
    if name == "digits":
        return read_digits(limit)
    if root is None:
        from mlms_ir.datasets.sources import cache_dir

        root = cache_dir(name)
        if not Path(root).exists():
            raise DatasetError(f"no {name} data: give --root, or fetch it with 'python -m mlms_ir datasets download {name}'"
                               if name != "imagenet" else "ImageNet cannot be downloaded here: give --root (class folders)")
    if not Path(root).exists():
        raise DatasetError(f"no folder '{root}' for the {name} data set")
    if name in ("mnist", "fashion-mnist"):
        return read_mnist(root, fashion=name == "fashion-mnist", split=split, limit=limit)
    if name in ("cifar10", "cifar100"):
        return read_cifar(root, classes=10 if name == "cifar10" else 100, split=split, limit=limit)
    return read_imagenet(root, labels_file=labels_file, synsets=synsets, limit=limit)
