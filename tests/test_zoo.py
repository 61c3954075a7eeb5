"""The zoo: manifests (count, validity, naming, label sets), lookups, ``zoo:NAME``, a real build with
random weights, the resumable verified download (against a local HTTP server), and ``zoo list/show/build``."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

import mlms_ir
from mlms_ir.errors import MlmsIrError
from mlms_ir.zoo import builtin_path, get, list_models, resolve
from mlms_ir.zoo.download import DownloadError, cache_dir, download, sha256_of
from mlms_ir.zoo.manifest import TASKS, UnknownModelError, labels, manifests, names, top1, validate

ROOT = Path(__file__).resolve().parents[1]
CLI = textwrap.dedent("""
    import sys, mlms_ir.cli as c
    from mlms_ir.cli.convert import convert
    from mlms_ir.cli.zoo import Zoo
    base = c.commands
    c.commands = lambda verb=None: {"zoo": Zoo(), "convert": convert, **base(verb)}
    sys.exit(c.main(sys.argv[1:]))
""")


def cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=900, env=env)


# ------------------------------------------------------------------------------------------------
# manifests
# ------------------------------------------------------------------------------------------------
def test_manifest_count_and_tasks():
    ms = list_models()
    # one manifest per (model, weights) pair of torchvision 0.29 (166) + the curated timm models + digits-cnn;
    # MLModelScope's zoo had 170
    assert len(ms) >= 170
    by_source = Counter(m["source"]["kind"] for m in ms)
    assert by_source["torchvision"] == 166 and by_source["builtin"] == 1 and by_source["timm"] >= 20
    by_task = Counter(m["task"] for m in ms)
    assert set(by_task) == set(TASKS)
    assert by_task["optical-flow"] == 8 and by_task["keypoint-detection"] == 2 and by_task["instance-segmentation"] == 2
    assert len(names()) == len(set(names())) == len(ms)


def test_manifests_cover_every_torchvision_weight():
    tv = pytest.importorskip("torchvision")
    from torchvision import models as M

    pairs = {(n, f"{type(w).__name__}.{w.name}") for n in M.list_models() for w in M.get_model_weights(n)}
    ours = {(m["source"]["builder"], m["source"]["weights"]) for m in list_models() if m["source"]["kind"] == "torchvision"}
    assert ours == pairs
    assert len(list_models(source="torchvision")) == len(pairs)
    versions = {m["source"]["torchvision_version"] for m in list_models() if m["source"]["kind"] == "torchvision"}
    assert versions == {tv.__version__.split("+")[0]}


def test_every_manifest_is_valid():
    for m in list_models():
        assert validate(m) == [], m["name"]
        pre = m["preprocessing"]
        assert pre["layout"] in ("NCHW", "NCTHW") and pre["dtype"] == "float32" and pre["scale"] > 0
        one_image = m["task"] in ("object-detection", "instance-segmentation", "keypoint-detection")
        assert m["inputs"][0]["shape"][0] == (1 if one_image else "batch") and m["inputs"][0]["dtype"] == "float32"
        assert m["inputs"][0]["shape"][-2:] == m["resolution"]
        assert isinstance(m["num_params"], int) and m["gflops"] > 0
        if m["source"]["kind"] != "torchvision":
            continue
        w = m["weights"]
        assert w["url"].startswith("https://download.pytorch.org/models/") and w["url"].endswith(w["file"])
        assert re.fullmatch(r"[0-9a-f]{8,}", w["sha256_prefix"]) and w["sha256_prefix"] in w["file"]
        assert m["licence"]["code"] == "BSD-3-Clause" and m["licence"]["weights_note"]


def test_classification_manifests_have_accuracy_and_preprocessing():
    cls = list_models(task="image-classification")
    assert len(cls) >= 130
    for m in cls:
        pre = m["preprocessing"]
        if m["source"]["kind"] == "timm":  # timm's package publishes no accuracy (tests/test_zoo_timm.py)
            assert m["reference"] == []
            continue
        if m["labels"] is None:  # vgg16.imagenet1k_features: feature-extractor weights, no accuracy published
            assert m["reference"] == [] and m["name"] == "vgg16.imagenet1k_features"
            continue
        ref = m["reference"][0]
        assert 0.0 <= ref["top5"] <= 1.0 and 0.0 <= ref["top1"] <= ref["top5"], m["name"]
        if m["source"]["kind"] == "torchvision":
            assert pre["transform"] == "ImageClassification"
            assert all(pre[k] is not None for k in ("resize", "crop", "mean", "std", "interpolation")), m["name"]
            assert len(pre["mean"]) == len(pre["std"]) == 3 and pre["crop"] == m["resolution"]
    r50 = get("resnet50")
    assert top1(r50) == pytest.approx(0.80858) and r50["reference"][0]["top5"] == pytest.approx(0.95434)
    assert r50["preprocessing"]["resize"] == 232 and r50["preprocessing"]["interpolation"] == "bilinear"
    assert r50["num_params"] == 25557032 and r50["gflops"] == 4.089


def test_other_tasks_carry_their_own_figures():
    frcnn = get("fasterrcnn_resnet50_fpn")
    assert frcnn["reference"] == [{"dataset": "COCO-val2017", "box_map": 0.37}]
    assert frcnn["preprocessing"]["in_model"]["min_size"] == [800] and frcnn["resolution"] == [800, 800]
    assert frcnn["inputs"] == [{"name": "images", "shape": [1, 3, 800, 800], "dtype": "float32"}]  # one image per run
    assert get("ssd300_vgg16")["resolution"] == [300, 300]
    kp = get("keypointrcnn_resnet50_fpn")
    assert kp["task"] == "keypoint-detection" and len(labels(kp["keypoints"])) == 17
    seg = get("fcn_resnet50")
    assert seg["reference"][0]["miou"] == pytest.approx(0.605) and len(labels(seg["labels"])) == 21
    vid = get("r3d_18")
    assert vid["inputs"][0]["shape"] == ["batch", 3, 16, 112, 112] and vid["clip_len"] == 16
    flow = get("raft_large")
    assert [i["name"] for i in flow["inputs"]] == ["image1", "image2"] and flow["reference"][0]["epe_px"] == 1.819
    q = get("quantized_resnet50")
    assert q["quantized"] == {"backend": "fbgemm", "unquantized": "ResNet50_Weights.IMAGENET1K_V2"}
    swag = get("vit_h_14")
    assert swag["licence"]["weights"].startswith("https://github.com/facebookresearch/SWAG")


def test_naming_scheme():
    for m in list_models():
        src = m["source"]
        if src["kind"] != "torchvision":
            continue
        member = src["weights"].split(".")[1].lower()
        if src["default"]:
            assert m["name"] == src["builder"] and m["aliases"] == [f"{src['builder']}.{member}"]
        else:
            assert m["name"] == f"{src['builder']}.{member}" and m["aliases"] == []
    assert get("resnet50.imagenet1k_v1")["source"]["weights"] == "ResNet50_Weights.IMAGENET1K_V1"
    assert get("resnet50.IMAGENET1K_V2")["name"] == "resnet50"  # the DEFAULT's alias, any case
    assert get("zoo:ResNet50")["name"] == "resnet50"


def test_label_sets_are_stored_once():
    text = resources.files("mlms_ir.zoo").joinpath("manifests/torchvision.json").read_text()
    assert "tench" not in text  # ImageNet's first category lives only in labels.json
    label_text = resources.files("mlms_ir.zoo").joinpath("labels.json").read_text()
    assert label_text.count('"tench"') == 1
    assert labels("imagenet-1k")[0] == "tench" and len(labels("imagenet-1k")) == 1000
    assert len(labels("coco-val2017-91")) == 91 and len(labels("kinetics-400")) == 400
    used = {m["labels"] for m in list_models()} | {m.get("keypoints") for m in list_models()}
    assert set(json.loads(label_text)) == used - {None}


def test_lookup_errors_list_close_matches():
    with pytest.raises(UnknownModelError, match=r"no model 'resnet5O'; did you mean resnet50") as err:
        get("resnet5O")
    assert isinstance(err.value, MlmsIrError)
    with pytest.raises(UnknownModelError, match="see `mlms_ir zoo list`"):
        get("qqqqqqqqqqqq")
    with pytest.raises(UnknownModelError, match="did you mean optical-flow"):
        list_models(task="optical_flow")
    with pytest.raises(UnknownModelError, match="no label set"):
        labels("imagenet-22k")


def test_lookups_return_copies():
    get("resnet50")["num_params"] = 0
    assert get("resnet50")["num_params"] == 25557032
    assert len(manifests()) == len(list_models(framework="pytorch"))


def test_zoo_ref_resolves():
    assert resolve("zoo:digits-cnn") == builtin_path()
    assert resolve("zoo:digits-cnn").is_file()
    assert resolve("some/model.onnx") == Path("some/model.onnx")
    assert resolve(Path("m.onnx")) == Path("m.onnx")
    with pytest.raises(UnknownModelError):
        resolve("zoo:no-such-model")


def test_digits_cnn_entry_matches_the_shipped_file():
    from mlms_ir.zoo import builtin_manifest

    m = get("digits-cnn")
    b = builtin_manifest()
    assert m["weights"]["sha256"] == b["sha256"] == sha256_of(builtin_path())
    assert m["reference"][0]["top1"] == b["accuracy"]["top1"]
    analysis = mlms_ir.analyze(mlms_ir.load(builtin_path(), dims={"batch": 1}))
    assert m["num_params"] == analysis.totals.params
    # conv1 9216 + conv2 294912 + conv3 294912 + fc1 65536 + fc2 640 MACs (see test_cli)
    assert m["gflops"] == pytest.approx(665216 / 1e9)


@pytest.mark.slow
def test_manifests_are_what_the_generator_writes():
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    # a generous limit: a loaded 2-core machine takes minutes to import torchvision and timm
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "make_zoo_manifests.py"), "--check"], capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------------
# build
# ------------------------------------------------------------------------------------------------
def test_build_squeezenet_with_random_weights(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    import onnx

    from mlms_ir.zoo.builder import RANDOM_NOTE, build, read_build_info, weights_downloaded

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    path = build("squeezenet1_1")
    assert path == tmp_path / "zoo" / "squeezenet1_1" / "model.onnx"
    m = get("squeezenet1_1")
    analysis = mlms_ir.analyze(mlms_ir.load(path, dims={"batch": 1}))
    assert analysis.totals.params == m["num_params"] == 1235496
    # torchvision counts multiply-adds once, as our MACs: 0.349 GFLOPS
    assert analysis.totals.macs / 1e9 == pytest.approx(m["gflops"], rel=1e-3)
    info = read_build_info("squeezenet1_1")
    assert info["weights"] == "random" and info["note"] == RANDOM_NOTE
    assert info["conversion"]["max_abs_error"] < 1e-3 and info["conversion"]["checked_batches"] == [1, 3]
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["mlms_ir.weights"] == "random" and meta["mlms_ir.zoo_name"] == "squeezenet1_1"
    assert not weights_downloaded("squeezenet1_1")
    mtime = path.stat().st_mtime_ns
    assert build("squeezenet1_1") == path and path.stat().st_mtime_ns == mtime  # cached
    assert resolve("zoo:squeezenet1_1") == path
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["squeezenet1_1"]  # no temporary folder left


def test_build_digits_cnn_is_the_shipped_file(tmp_path, monkeypatch):
    from mlms_ir.zoo.builder import build

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    assert build("digits-cnn") == builtin_path() and not (tmp_path / "zoo").exists()


# ------------------------------------------------------------------------------------------------
# download, against a local HTTP server
# ------------------------------------------------------------------------------------------------
PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one read chunk


class _Server:
    """A threaded HTTP server on 127.0.0.1 serving PAYLOAD at /w-<prefix>.pth, with Range support."""

    def __init__(self) -> None:
        self.honour_range = True
        self.truncate_at: int | None = None
        self.requests: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                server.requests.append(rng)
                if not self.path.startswith("/w"):
                    self.send_error(404)
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_at is not None:
                    self.wfile.write(body[: server.truncate_at])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w-{DIGEST[:8]}.pth"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def test_download_whole_file_verified(tmp_path, server):
    dest = tmp_path / "sub" / "w.pth"
    assert download(server.url, dest, sha256=DIGEST, progress=True) == dest
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "sub" / "w.pth.part").exists()
    assert server.requests == [None]
    # already there and verified: no request
    assert download(server.url, dest, sha256_prefix=DIGEST[:8], progress=False) == dest
    assert server.requests == [None]


def test_download_resumes_a_partial_file(tmp_path, server):
    dest = tmp_path / "w.pth"
    part = tmp_path / "w.pth.part"
    part.write_bytes(PAYLOAD[:1000])
    download(server.url, dest, sha256_prefix=DIGEST[:8], progress=False)
    assert server.requests == ["bytes=1000-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_download_of_a_complete_partial_file(tmp_path, server):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(PAYLOAD)
    download(server.url, dest, sha256=DIGEST, progress=False)  # the server answers 416
    assert server.requests == [f"bytes={len(PAYLOAD)}-"] and dest.read_bytes() == PAYLOAD


def test_download_restarts_when_the_server_ignores_ranges(tmp_path, server):
    server.honour_range = False
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"garbage that must not stay")
    download(server.url, dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_broken_off_keeps_the_part_and_resumes(tmp_path, server):
    dest = tmp_path / "w.pth"
    server.truncate_at = 5000
    with pytest.raises(DownloadError, match="run again to resume"):
        download(server.url, dest, sha256=DIGEST, progress=False)
    assert (tmp_path / "w.pth.part").stat().st_size == 5000 and not dest.exists()
    server.truncate_at = None
    download(server.url, dest, sha256=DIGEST, progress=False)
    assert server.requests[-1] == "bytes=5000-" and dest.read_bytes() == PAYLOAD


def test_download_hash_mismatch_deletes_the_file(tmp_path, server):
    dest = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(b"x" * 10)  # a corrupt beginning: the whole file hashes wrong
    with pytest.raises(DownloadError, match=r"does not match the expected sha256 prefix 0000abcd; the downloaded file was delet"):
        download(server.url, dest, sha256_prefix="0000abcd", progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="expected sha256 "):
        download(server.url, dest, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_errors(tmp_path, server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url.replace("/w-", "/missing-"), tmp_path / "x.pth", progress=False)
    with pytest.raises(DownloadError, match="cannot download"):
        download("http://127.0.0.1:9/nothing.pth", tmp_path / "y.pth", progress=False)
    with pytest.raises(ValueError, match="not a sha256 prefix"):
        download(server.url, tmp_path / "z.pth", sha256_prefix="xyz")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MLMS_IR_CACHE")
    assert cache_dir() == Path("~/.cache/mlms_ir").expanduser()


def test_build_with_weights_downloads_verifies_and_loads_them(tmp_path, monkeypatch):
    """build(weights=True) end to end: the .pth comes from a local server into the cache, verified by
    its sha256 prefix, and is loaded into the model the way torchvision's builder loads it."""
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    import onnx

    from mlms_ir.converters import torchvision_spec
    from mlms_ir.zoo import builder

    torch.manual_seed(5)
    model = tv.models.squeezenet1_1(weights=None).eval()
    pth = tmp_path / "served.pth"
    torch.save(model.state_dict(), pth)
    payload = pth.read_bytes()
    prefix = hashlib.sha256(payload).hexdigest()[:8]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        real_get = builder.get

        def served(name: str) -> dict:
            m = real_get(name)
            m["weights"].update(url=f"http://127.0.0.1:{httpd.server_address[1]}/squeezenet1_1-{prefix}.pth",
                                file=f"squeezenet1_1-{prefix}.pth", sha256_prefix=prefix)
            m["resolution"] = [64, 64]
            return m

        monkeypatch.setattr(builder, "get", served)
        monkeypatch.setattr(torchvision_spec, "sha256_prefix_of", lambda url: prefix)
        monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path / "cache"))
        path = builder.build("squeezenet1_1", weights=True, progress=False)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (tmp_path / "cache" / "weights" / f"squeezenet1_1-{prefix}.pth").read_bytes() == payload
    assert builder.weights_downloaded("squeezenet1_1")
    info = builder.read_build_info("squeezenet1_1")
    assert info["weights"] == "SqueezeNet1_1_Weights.IMAGENET1K_V1" and info["note"] is None
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["mlms_ir.weights"] == "SqueezeNet1_1_Weights.IMAGENET1K_V1" and "mlms_ir.weights_note" not in meta
    import numpy as np
    import onnxruntime as ort

    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------
def test_cli_zoo_list(tmp_path):
    r = cli("zoo", "list", "--task", "optical-flow", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["count"] == 8 and {m["name"] for m in d["models"]} >= {"raft_large", "raft_small", "raft_small.c_t_v1"}
    import os

    piped = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe: the table keeps its natural width
    r = cli("zoo", "list", "--task", "semantic-segmentation", env=piped)
    assert r.returncode == 0, r.stderr
    assert "fcn_resnet50" in r.stdout and "top-1" in r.stdout and "6 models" in r.stdout
    # the column holds multiply-adds (torchvision's "GFLOPS"): it is named for what it holds
    assert "GMACs" in r.stdout and "GFLOPS" not in r.stdout
    assert re.search(r"│ fcn_resnet50 +│ semantic-segmentation +│ +35\.3M │ +153 │", r.stdout), r.stdout
    r = cli("zoo", "list", env=piped)  # three significant digits, never an exponent: vit_h_14's 1016.7 GMACs
    assert re.search(r"│ vit_h_14 +│ image-classification +│ +633\.5M │ +1020 │ 88\.55% │", r.stdout), r.stdout
    assert "e+" not in r.stdout


def test_cli_zoo_show(tmp_path):
    import os

    env = {**os.environ, "MLMS_IR_CACHE": str(tmp_path)}
    r = cli("zoo", "show", "resnet50", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["name"] == "resnet50" and d["cache"] == {
        "built": None, "built_weights": None, "weights_downloaded": False,
        "weights_file": str(tmp_path / "weights" / "resnet50-11ad3fa6.pth")}
    wide = {k: v for k, v in env.items() if k != "COLUMNS"}  # pytest may export COLUMNS=80; a pipe keeps the natural width
    r = cli("zoo", "show", "mobilenet_v3_small", env=wide)
    assert r.returncode == 0, r.stderr
    assert "MobileNet_V3_Small_Weights.IMAGENET1K_V1" in r.stdout and "imagenet-1k" in r.stdout
    assert re.search(r"│ GMACs +│ 0\.057 \(billions of multiply-adds, torchvision's \"GFLOPS\"; compare with MACs\)", r.stdout), r.stdout
    r = cli("zoo", "show", "mobilenet_v3_smal", env=env)
    assert r.returncode == 2 and "did you mean mobilenet_v3_small" in r.stderr and "Traceback" not in r.stderr


def test_cli_zoo_build_digits():
    r = cli("zoo", "build", "digits-cnn")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{builtin_path()} (shipped)"


# ------------------------------------------------------------------------------------------------
# concurrent builds: the build lock
# ------------------------------------------------------------------------------------------------
def test_concurrent_builds_of_one_model_convert_once(tmp_path, monkeypatch):
    """Two threads build one model at once: the lock lets one convert while the other waits, then
    reuses the model; the cache holds one valid build and no temporary folder."""
    import time

    from mlms_ir.zoo import builder

    calls: list[Path] = []

    class Result:
        def to_dict(self) -> dict:
            return {"exporter": "fake", "max_abs_error": 0.0}

    def slow_convert(m, out, **kwargs):
        calls.append(out)
        time.sleep(0.5)
        out.write_bytes(b"fake onnx of " + m["name"].encode())
        return Result()

    monkeypatch.setattr(builder, "_convert", slow_convert)
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(builder.build("squeezenet1_1"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 2 and len(calls) == 1
    path = tmp_path / "zoo" / "squeezenet1_1" / "model.onnx"
    assert results == [path, path] and path.read_bytes() == b"fake onnx of squeezenet1_1"
    assert builder.read_build_info("squeezenet1_1")["conversion"]["exporter"] == "fake"
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["squeezenet1_1"]
    assert builder.lock_path("squeezenet1_1") == tmp_path / "locks" / "squeezenet1_1.lock"
    # force converts again and swaps the folder in whole
    assert builder.build("squeezenet1_1", force=True) == path and len(calls) == 2
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["squeezenet1_1"]


def test_build_lock_excludes_a_second_holder(tmp_path, monkeypatch):
    import time

    from mlms_ir.zoo.builder import build_lock

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    order: list[str] = []

    def second() -> None:
        with build_lock("resnet50.imagenet1k_v2", wait_note=False):  # an alias: the same lock
            order.append("second")

    with build_lock("resnet50"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(10)
    assert order == ["first done", "second"]


def test_quantized_shufflenet_converts(tmp_path, monkeypatch):
    """torchvision's int8 ShuffleNetV2 splits its channels with x.chunk(2, dim=1); the legacy exporter
    has no quantized ConstantChunk, so mlms_ir registers one while exporting (dequantize, chunk, quantize)."""
    pytest.importorskip("torchvision")
    from mlms_ir.zoo.builder import build, read_build_info

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    path = build("quantized_shufflenet_v2_x0_5")
    conv = read_build_info("quantized_shufflenet_v2_x0_5")["conversion"]
    assert conv["exporter"] == "legacy" and conv["checked_batches"] == [1, 3] and conv["max_abs_error"] < 0.05
    import onnx

    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0  # int8 as QDQ pairs around float ops
    assert ops["Slice"] >= 2 * 13  # two halves in each of the 13 stride-1 blocks
    # int8 weights sit in large Constant nodes, which the IR loads without their data
    m = get("quantized_shufflenet_v2_x0_5")
    analysis = mlms_ir.analyze(mlms_ir.load(path, dims={"batch": 1}))
    assert analysis.totals.params == pytest.approx(m["num_params"], rel=0.01)  # 1362816 vs 1366792: folded BN
    assert analysis.totals.macs / 1e9 == pytest.approx(m["gflops"], rel=0.02)  # 0.0405 vs torchvision's 0.04
    # the registration is undone: torch's own symbolic is back
    from torch.onnx._internal.torchscript_exporter import registration

    assert not registration.registry.get_function_group("prim::ConstantChunk")._functions.overridden(17)


def test_a_build_that_died_is_cleaned_up_and_an_old_build_recovered(tmp_path, monkeypatch):
    """Under the lock, a later build deletes the half-made model a dead build left in staging,
    and puts back a finished build that was moved aside just before the process died."""
    from mlms_ir.zoo import builder

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    name = "squeezenet1_1"
    stage = builder._staging(name)
    (stage / "new").mkdir(parents=True)
    (stage / "new" / "model.onnx").write_bytes(b"half")
    (stage / "old").mkdir()
    (stage / "old" / "model.onnx").write_bytes(b"complete")
    (stage / "old" / "build.json").write_text("{}")
    builder._recover(name)
    assert not stage.exists()
    assert (builder.model_dir(name) / "model.onnx").read_bytes() == b"complete"
    # with the model in place, a stale old copy is simply deleted
    (stage / "old").mkdir(parents=True)
    builder._recover(name)
    assert not stage.exists() and (builder.model_dir(name) / "model.onnx").read_bytes() == b"complete"
