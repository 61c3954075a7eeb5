"""Data set readers on small files written in the real formats, preprocessing, safe extraction."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mlms_ir.datasets import DatasetError, open_dataset
from mlms_ir.datasets.preprocess import Preprocess
from mlms_ir.datasets.readers import read_cifar, read_idx, read_imagenet, read_mnist

RNG = np.random.default_rng(0)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    data = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def mnist_files(root: Path, n: int = 20, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = RNG.integers(0, 10, n, dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(root / f"t10k-images-idx3-ubyte{sfx}", images, gz)
    write_idx(root / f"t10k-labels-idx1-ubyte{sfx}", labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files(tmp_path, gz):
    images, labels = mnist_files(tmp_path, gz=gz)
    ds = read_mnist(tmp_path)
    assert (ds.name, ds.size, ds.pixels, len(ds.labels)) == ("mnist", 20, "uint8", 10)
    batches = list(ds.batches(8))
    assert [len(b[1]) for b in batches] == [8, 8, 4]
    x = np.concatenate([b[0] for b in batches])
    assert x.shape == (20, 28, 28, 1) and np.array_equal(x[..., 0], images)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), labels) and batches[0][1].dtype == np.int64
    assert open_dataset("fashion-mnist", tmp_path, limit=5).labels[9] == "Ankle boot"
    assert open_dataset("mnist", tmp_path, limit=5).size == 5


def test_idx_errors_name_the_file(tmp_path):
    mnist_files(tmp_path, gz=False)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_idx(p)
    p.write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
    with pytest.raises(DatasetError, match="is not an IDX file"):
        read_idx(p)
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"abc")[:-4])
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(DatasetError, match="no t10k-images-idx3-ubyte .or .gz. in"):
        read_mnist(tmp_path / "nowhere")


def cifar_files(root: Path, classes: int = 10, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    folder = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in RNG.integers(0, classes, n)]
    key = b"labels" if classes == 10 else b"fine_labels"
    with open(folder / ("test_batch" if classes == 10 else "test"), "wb") as fh:
        pickle.dump({b"batch_label": b"testing batch 1 of 1", b"data": data, key: labels, b"filenames": [b"a.png"] * n}, fh, protocol=2)
    names_key = b"label_names" if classes == 10 else b"fine_label_names"
    with open(folder / ("batches.meta" if classes == 10 else "meta"), "wb") as fh:
        pickle.dump({names_key: [f"class{i}".encode() for i in range(classes)], b"num_vis": 3072}, fh, protocol=2)
    return data, np.asarray(labels)


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_python_batches(tmp_path, classes):
    data, labels = cifar_files(tmp_path, classes)
    ds = read_cifar(tmp_path, classes=classes)
    assert (ds.size, len(ds.labels), ds.labels[3]) == (12, classes, "class3")
    x, y = next(ds.batches(100))
    assert x.shape == (12, 32, 32, 3) and np.array_equal(y, labels)
    # the channel planes of CIFAR's rows become HWC pixels
    assert x[0, 0, 0, 0] == data[0, 0] and x[0, 0, 0, 1] == data[0, 1024] and x[0, 0, 1, 2] == data[0, 2049]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch evil-ran",))


def test_a_crafted_cifar_pickle_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [1]}))
    with pytest.raises(DatasetError, match="refused to load posix.system|refused to load os.system"):
        read_cifar(tmp_path)
    assert not (tmp_path / "evil-ran").exists()
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetError, match="not a CIFAR batch"):
        read_cifar(tmp_path)


def _png(path: Path, w: int, h: int, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), colour).save(path)


def test_imagenet_class_folders_and_flat_files(tmp_path):
    root = tmp_path / "val"
    _png(root / "n02" / "b.png", 40, 30, (0, 255, 0))
    _png(root / "n01" / "a.png", 30, 50, (255, 0, 0))
    _png(root / "n01" / "c.jpeg", 64, 64, (0, 0, 255))
    (root / "n01" / "notes.txt").write_text("not an image")
    ds = read_imagenet(root)
    assert ds.labels == ["n01", "n02"] and ds.size == 3
    imgs, y = next(ds.batches(8))
    assert [im.shape for im in imgs] == [(50, 30, 3), (64, 64, 3), (30, 40, 3)] and y.tolist() == [0, 0, 1]
    prep = Preprocess(resize=32, crop=24, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    x = prep(imgs)
    assert x.shape == (3, 3, 24, 24) and x.dtype == np.float32
    assert np.allclose(x[0, 0], (1 - 0.5) / 0.25) and np.allclose(x[0, 1], (0 - 0.5) / 0.25)  # pure red
    # flat files with synset labels and a synset map giving the class order
    flat = tmp_path / "flat"
    _png(flat / "x1.png", 10, 10, (1, 2, 3))
    _png(flat / "x2.png", 10, 10, (1, 2, 3))
    (tmp_path / "map.txt").write_text("n09 zebra\nn01 tench, Tinca tinca\n")
    (tmp_path / "labels.txt").write_text("x1.png n01\nx2.png 0\n")
    ds = read_imagenet(flat, labels_file=tmp_path / "labels.txt", synsets=tmp_path / "map.txt")
    assert ds.labels == ["zebra", "tench, Tinca tinca"] and next(ds.batches(4))[1].tolist() == [1, 0]
    (tmp_path / "labels.txt").write_text("../map.txt 0\n")
    with pytest.raises(DatasetError, match="outside"):
        read_imagenet(flat, labels_file=tmp_path / "labels.txt")
    (tmp_path / "labels.txt").write_text("x1.png n77\n")
    with pytest.raises(DatasetError, match="neither a class index nor a synset"):
        read_imagenet(flat, labels_file=tmp_path / "labels.txt", synsets=tmp_path / "map.txt")
    (flat / "x1.png").write_bytes(b"not a png")
    (tmp_path / "labels.txt").write_text("x1.png 0\n")
    with pytest.raises(DatasetError, match="cannot decode the image"):
        next(read_imagenet(flat, labels_file=tmp_path / "labels.txt").batches(1))


def test_preprocess_layouts_channels_and_checks():
    imgs = np.full((2, 4, 4, 1), 128, np.uint8)
    x = Preprocess(channels=3, layout="NHWC")(imgs)
    assert x.shape == (2, 4, 4, 3) and np.allclose(x, 128 / 255)
    assert Preprocess(scale=1 / 16)(np.full((1, 8, 8, 1), 16.0, np.float32)).max() == 1.0
    p = Preprocess.from_manifest({"resize_size": [232], "crop_size": [224], "mean": [0.485, 0.456, 0.406],
                                  "std": [0.229, 0.224, 0.225], "interpolation": "InterpolationMode.BILINEAR"})
    assert (p.resize, p.crop, p.interpolation) == (232, 224, "bilinear")
    with pytest.raises(DatasetError, match="unknown preprocessing key 'rezise'"):
        Preprocess.from_manifest({"rezise": 3})
    with pytest.raises(DatasetError, match="both 'mean' and 'std'"):
        Preprocess(mean=[0.5])
    with pytest.raises(DatasetError, match="cannot crop 10x10"):
        Preprocess(crop=10)(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="different sizes"):
        Preprocess()([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


@pytest.mark.parametrize("key,value,message", [
    ("scale", "x", r"'scale' must be a positive number .*, not 'x'"),
    ("scale", 0, r"'scale' must be a positive number .*, not 0"),
    ("scale", float("nan"), r"'scale' must be a positive number"),
    ("scale", True, r"'scale' must be a positive number .*, not True"),
    ("resize", "256", r"'resize' must be a positive whole number of pixels, not '256'"),
    ("resize", 2.5, r"'resize' must be a positive whole number of pixels, not 2.5"),
    ("resize_size", [128, 171], r"'resize' must be one number of pixels \(the shorter side\), not \[128, 171\]"),
    ("crop", -1, r"'crop' must be a positive whole number of pixels, not -1"),
    ("crop_size", [224, 200], r"'crop' must be one number of pixels \(the side of the centre square\)"),
    ("mean", "x", r"'mean' must be a number or a list of 1 or 3 numbers \(one per channel\), not 'x'"),
    ("mean", [0.1, 0.2], r"'mean' must be a number or a list of 1 or 3 numbers"),
    ("std", [0.5, "a", 0.5], r"'std' must be a number or a list of 1 or 3 numbers"),
    ("std", [0.0], r"'std' must be positive numbers, not \[0.0\]"),
    ("layout", "CHW", r"'layout' must be NCHW or NHWC, not 'CHW'"),
    ("layout", 3, r"'layout' must be NCHW or NHWC, not 3"),
    ("dtype", "int3", r"'dtype' must be one of float16, float32, float64, uint8, int8, uint16, int16, int32, int64, not 'int3'"),
    ("channels", 2, r"'channels' must be 1 or 3, not 2"),
    ("channels", "3", r"'channels' must be 1 or 3, not '3'"),
    ("interpolation", "cubic", r"'interpolation' must be one of nearest, bilinear, bicubic, lanczos, not 'cubic'"),
    ("interpolation", 5, r"'interpolation' must be one of nearest, bilinear, bicubic, lanczos, not 5"),
])
def test_every_preprocessing_key_is_checked(key, value, message):
    spec = {key: value}
    if key in ("mean", "std"):
        spec.setdefault("std" if key == "mean" else "mean", [0.5])
    with pytest.raises(DatasetError, match=r"^preprocessing " + message):
        Preprocess.from_manifest(spec)


def test_preprocessing_keys_unknown_doubled_or_null():
    with pytest.raises(DatasetError, match=r"unknown preprocessing key 'rezise'; known: channels, crop, crop_size, dtype, "
                                           r"interpolation, layout, mean, resize, resize_size, scale, std$"):
        Preprocess.from_manifest({"rezise": 3, "scale": 1})
    with pytest.raises(DatasetError, match="both 'resize' and 'resize_size'"):
        Preprocess.from_manifest({"resize": 8, "resize_size": [8]})
    with pytest.raises(DatasetError, match="^preprocessing must be an object"):
        Preprocess.from_manifest([1])  # type: ignore[arg-type]
    # the builtin manifest's nulls take the defaults; a single mean/std number is one value for all channels
    p = Preprocess.from_manifest({"resize": None, "crop": None, "interpolation": None, "scale": 0.0625, "mean": 0.5, "std": 0.25,
                                  "layout": "nhwc", "dtype": "Float16", "note": "ignored"})
    assert (p.interpolation, p.layout, p.dtype, p.mean, p.std) == ("bilinear", "NHWC", "float16", [0.5], [0.25])
    assert p(np.full((1, 2, 2, 1), 16.0, np.float32)).tolist() == [[[[2.0], [2.0]], [[2.0], [2.0]]]]
    assert Preprocess.from_manifest({"resize_size": [256.0], "crop_size": [224, 224]}).to_dict()["crop"] == 224


def test_integer_dtypes_round_and_must_fit():
    pixels = np.asarray([[[[0], [7]], [[130], [255]]]], np.uint8)
    assert Preprocess(scale=1, dtype="uint8", layout="NHWC")(pixels).tolist() == pixels.tolist()
    assert Preprocess(scale=0.5, dtype="uint8", layout="NHWC")(pixels).ravel().tolist() == [0, 4, 65, 128]  # rounded, half to even
    with pytest.raises(DatasetError, match=r"the preprocessed pixels run 0..255, outside int8's -128..127"):
        Preprocess(scale=1, dtype="int8")(pixels)


def test_each_data_set_has_its_own_default_preprocessing():
    import json
    from collections import Counter

    from mlms_ir.datasets import DATASETS
    from mlms_ir.datasets.preprocess import DATASET_DEFAULTS, dataset_default, describe
    from mlms_ir.zoo import manifest as zoo_manifest

    assert set(DATASET_DEFAULTS) == set(DATASETS)
    for name in DATASETS:
        Preprocess.from_manifest(dataset_default(name))  # each one valid
    # the pixel range: digits run 0..16, the 8-bit sets 0..255; each default maps it onto [0, 1]
    digits = next(open_dataset("digits").batches(450))[0]
    assert digits.max() * dataset_default("digits")["scale"] == 1.0
    assert all(255 * dataset_default(n)["scale"] == 1.0 for n in ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet"))
    # ImageNet's: the recipe most of the zoo's torchvision classifiers have
    recipes = Counter(json.dumps({k: v for k, v in m["preprocessing"].items() if k not in ("transform", "antialias", "dtype")},
                                 sort_keys=True)
                      for m in zoo_manifest.list_models(source="torchvision")
                      if m["preprocessing"].get("transform") == "ImageClassification")
    common = Preprocess.from_manifest(json.loads(recipes.most_common(1)[0][0]))
    assert Preprocess.from_manifest(dataset_default("imagenet")) == common
    assert describe(dataset_default("digits")) == "scale 1/16, layout NCHW"
    assert describe({"scale": 1, "mean": [0.5, 0.25]}) == "scale 1, mean [0.5, 0.25]"
    d = dataset_default("imagenet")
    d["mean"].append(9)  # a copy: the table itself is untouched
    assert len(DATASET_DEFAULTS["imagenet"]["mean"]) == 3
    with pytest.raises(DatasetError, match="unknown data set 'svhn'"):
        dataset_default("svhn")


def test_digits_is_the_held_out_split():
    ds = open_dataset("digits")
    assert (ds.size, ds.pixels) == (450, "digits")
    x, y = next(ds.batches(450))
    assert x.shape == (450, 8, 8, 1) and x.max() == 16 and np.bincount(y).tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]


def test_unknown_and_missing_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    with pytest.raises(DatasetError, match="unknown data set 'svhn'"):
        open_dataset("svhn")
    with pytest.raises(DatasetError, match="datasets download mnist"):
        open_dataset("mnist")
    with pytest.raises(DatasetError, match="ImageNet cannot be downloaded"):
        open_dataset("imagenet")


def test_extract_members_keeps_only_plain_files_inside(tmp_path):
    from mlms_ir.datasets.sources import extract_members

    arc = tmp_path / "a.tar.gz"
    with tarfile.open(arc, "w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("d/ok")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("d/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
        evil = tarfile.TarInfo("../evil")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    out = tmp_path / "out"
    extract_members(arc, ("d/ok",), out)
    assert (out / "d" / "ok").read_bytes() == b"hello"
    for bad in ("d/link", "../evil"):
        with pytest.raises(DatasetError, match="not a plain file inside"):
            extract_members(arc, (bad,), out)
    assert not (tmp_path / "evil").exists()


def test_download_a_set_verifies_and_extracts(tmp_path, monkeypatch):
    """datasets download against a local HTTP server: sha256 checked, only the needed members kept."""
    import functools
    import hashlib
    import http.server
    import threading

    from mlms_ir.datasets import sources
    from mlms_ir.errors import MlmsIrError

    src = tmp_path / "src"
    data, labels = cifar_files(src)
    (src / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not needed")
    arc = tmp_path / "www" / "cifar-10-python.tar.gz"
    arc.parent.mkdir()
    with tarfile.open(arc, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    digest = hashlib.sha256(arc.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(arc.parent))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
        members = ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta")
        monkeypatch.setitem(sources.SOURCES, "cifar10", (sources.Source(url, digest, members),))
        monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
        dest = sources.download_dataset("cifar10", progress=False)
        assert dest == tmp_path / "cache" / "datasets" / "cifar10"
        assert not (dest / "cifar-10-batches-py" / "data_batch_1").exists()
        ds = open_dataset("cifar10")  # read from the cache by default
        assert ds.size == 12 and np.array_equal(next(ds.batches(100))[1], labels)
        monkeypatch.setitem(sources.SOURCES, "cifar10", (sources.Source(url, "0" * 64, members),))
        with pytest.raises(MlmsIrError, match="sha256"):
            sources.download_dataset("cifar10", tmp_path / "other", progress=False)
        assert not list((tmp_path / "other").glob("*.tar.gz"))
    finally:
        server.shutdown()
    with pytest.raises(DatasetError, match="cannot be downloaded"):
        sources.download_dataset("imagenet")
