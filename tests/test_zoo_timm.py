"""The zoo's timm entries: manifests from timm's metadata, a real build of timm's tiny ``test_vit``,
``zoo show``, the clean error for ``--weights``, ``zoo:NAME``, concurrent builds in two processes,
and ``from_timm`` with a local weights file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from test_zoo import cli

import mlms_ir
from mlms_ir.errors import MlmsIrError
from mlms_ir.zoo import get, list_models, resolve
from mlms_ir.zoo.manifest import TASKS, labels, validate

#: timm's own tiny test models: real timm architectures with published weights, built in seconds.
TINY = "test_vit"
TINY_CNN = "test_efficientnet"


def _timm_models() -> list[dict]:
    return list_models(source="timm")


# ------------------------------------------------------------------------------------------------
# manifests (no timm needed)
# ------------------------------------------------------------------------------------------------
def test_zoo_has_at_least_mlmodelscopes_count_across_tasks():
    ms = list_models()
    assert len(ms) >= 170  # MLModelScope's zoo had 170 models
    assert set(Counter(m["task"] for m in ms)) == set(TASKS)  # classification, detection, segmentation, video, ...
    names = {m["name"] for m in ms}
    transformers = {"vit_b_16", "swin_t", "mvit_v2_s", "deit_tiny_patch16_224", "vit_tiny_patch16_224", "levit_128s"}
    assert transformers <= names


def test_timm_manifests_are_valid_and_honest():
    ms = _timm_models()
    assert 20 <= len(ms) <= 60
    tv_builders = {m["source"]["builder"] for m in list_models(source="torchvision")}
    for m in ms:
        assert validate(m) == [], m["name"]
        src, w, pre = m["source"], m["weights"], m["preprocessing"]
        assert m["task"] == "image-classification" and m["framework"] == "pytorch"
        assert src["architecture"] not in tv_builders  # not a torchvision duplicate
        assert src["model"] == f"{src['architecture']}.{src['tag']}"
        assert m["name"] == (src["architecture"] if src["default"] else src["model"])
        assert m["aliases"] == ([src["model"]] if src["default"] else [])
        # weights: on the Hugging Face hub, nothing pinned, said so
        assert w["url"] is None and w["downloadable"] is False and w["sha256_prefix"] is None
        assert w["hf_hub_id"] == src["weights"] == f"timm/{src['model']}" and "Hugging Face" in w["weights_note"]
        # inputs and preprocessing from the pretrained_cfg
        h, wd = m["resolution"]
        assert m["inputs"] == [{"name": "input", "shape": ["batch", 3, h, wd], "dtype": "float32"}]
        assert pre["crop"] == [h, wd] and pre["transform"] == "timm.data.create_transform"
        resize = pre["resize"] if isinstance(pre["resize"], int) else min(pre["resize"])
        assert resize == int(min(h, wd) / pre["crop_pct"])  # timm: floor(size / crop_pct)
        assert len(pre["mean"]) == len(pre["std"]) == 3 and pre["interpolation"] in ("bicubic", "bilinear")
        assert m["labels"] == "imagenet-1k" and m["reference"] == []  # timm's package publishes no accuracy
        assert m["licence"]["code"] == "Apache-2.0" and m["licence"]["weights_note"]
        assert isinstance(m["num_params"], int) and m["gflops"] > 0 and "flop_counter" in m["gflops_note"]
    deit = get("deit_tiny_patch16_224.fb_in1k")
    assert deit["name"] == "deit_tiny_patch16_224" and deit["num_params"] == 5717416
    assert deit["preprocessing"]["resize"] == 248 and deit["preprocessing"]["crop_pct"] == 0.9
    # 12 blocks of 197 tokens x 192 channels, attention included (torch's SDPA kernel is not counted, so it is unfused)
    assert deit["gflops"] == pytest.approx(1.2537, abs=1e-4)
    assert get("mobilevit_xxs")["licence"]["weights"] == "cvnets-license"
    assert len(labels("imagenet-1k")) == 1000


def test_timm_lookup_and_listing():
    assert get(f"zoo:{TINY}.r160_in1k")["name"] == TINY
    with pytest.raises(MlmsIrError, match="did you mean deit_tiny_patch16_224"):
        get("deit_tiny_patch16_22")
    with pytest.raises(MlmsIrError, match="no source 'hf'"):
        list_models(source="hf")
    r = cli("zoo", "list", "--source", "timm", "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["count"] == len(_timm_models()) and {m["source"] for m in d["models"]} == {"timm"}
    assert next(m for m in d["models"] if m["name"] == TINY)["weights"] == f"timm/{TINY}.r160_in1k"


def test_listing_and_showing_import_neither_torch_nor_timm(tmp_path):
    code = (
        "import sys, contextlib, io\n"
        "from mlms_ir.cli.zoo import Zoo\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    Zoo().list(source='timm'); Zoo().show('deit_tiny_patch16_224'); Zoo().show('resnet50', format='json')\n"
        "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))\n"
    )
    env = {**os.environ, "MLMS_IR_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"


def test_cli_zoo_show_timm(tmp_path):
    env = {**os.environ, "MLMS_IR_CACHE": str(tmp_path)}
    r = cli("zoo", "show", "deit_tiny_patch16_224", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["source"]["kind"] == "timm" and d["source"]["model"] == "deit_tiny_patch16_224.fb_in1k"
    assert d["cache"] == {"built": None, "built_weights": None, "weights_downloaded": False, "weights_file": None}
    r = cli("zoo", "show", "deit_tiny_patch16_224", env={**env, "COLUMNS": "400"})  # one line per field
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "timm.create_model('deit_tiny_patch16_224.fb_in1k', pretrained=False)" in text
    assert "Hugging Face hub" in text and "imagenet-1k" in text and "cannot download" in text


def test_weights_of_a_timm_entry_are_a_clean_error(tmp_path, monkeypatch):
    from mlms_ir.zoo.builder import (
        WeightsUnavailableError,
        build,
        fetch_weights,
        weights_downloaded,
    )

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"Hugging Face hub \(timm/deit_tiny_patch16_224.fb_in1k\)") as err:
        build("deit_tiny_patch16_224", weights=True)
    assert isinstance(err.value, MlmsIrError) and "\n" not in str(err.value) and "without --weights" in str(err.value)
    with pytest.raises(WeightsUnavailableError):
        fetch_weights("deit_tiny_patch16_224")
    assert not weights_downloaded("deit_tiny_patch16_224") and not tmp_path.joinpath("zoo").exists()
    r = cli("zoo", "build", "deit_tiny_patch16_224", "--weights", env={**os.environ, "MLMS_IR_CACHE": str(tmp_path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Hugging Face hub" in r.stderr and "from_timm" in r.stderr


# ------------------------------------------------------------------------------------------------
# building (needs timm)
# ------------------------------------------------------------------------------------------------
def test_manifest_matches_the_timm_model():
    pytest.importorskip("timm")
    from mlms_ir.converters import timm_spec

    m = get(TINY)
    model = timm_spec.create(m["source"]["model"])
    assert m["num_params"] == sum(p.numel() for p in model.parameters()) == 371240
    assert m["resolution"] == [160, 160] and m["preprocessing"]["resize"] == 168  # floor(160 / 0.95)
    assert timm_spec.data_config(model)["crop_pct"] == m["preprocessing"]["crop_pct"] == 0.95
    assert timm_spec.count_macs(model, (160, 160)) / 1e9 == pytest.approx(m["gflops"], rel=1e-6)


def test_build_a_timm_model_and_resolve_it(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import onnx
    from mlms_ir.zoo.builder import RANDOM_NOTE, build, read_build_info

    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    path = resolve(f"zoo:{TINY}.r160_in1k")  # zoo:NAME builds on first use (random weights)
    assert path == tmp_path / "zoo" / TINY / "model.onnx"
    m = get(TINY)
    analysis = mlms_ir.analyze(mlms_ir.load(path, dims={"batch": 1}))
    # the exporter adds one float scalar constant, which the IR counts as a parameter
    assert abs(analysis.totals.params - m["num_params"]) <= 2
    assert analysis.totals.macs / 1e9 == pytest.approx(m["gflops"], rel=1e-3)
    info = read_build_info(TINY)
    assert info["weights"] == "random" and info["note"] == RANDOM_NOTE and info["source_kind"] == "timm"
    assert info["builder"] == f"{TINY}.r160_in1k" and info["conversion"]["max_abs_error"] < 1e-3
    assert info["conversion"]["checked_batches"] == [1, 3]
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta["mlms_ir.weights"] == "random" and meta["mlms_ir.source"] == f"timm:{TINY}.r160_in1k"
    assert meta["mlms_ir.zoo_name"] == TINY and meta["mlms_ir.timm_version"]
    mtime = path.stat().st_mtime_ns
    assert build(TINY) == path == resolve(f"zoo:{TINY}") and path.stat().st_mtime_ns == mtime  # cached
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == [TINY]


@pytest.mark.slow
def test_two_processes_build_one_model_at_once(tmp_path, monkeypatch):
    """Two ``zoo build`` processes on one model and one cache: both succeed and the cache holds one valid model."""
    pytest.importorskip("timm")
    import onnx
    from mlms_ir.zoo.builder import read_build_info

    env = {**os.environ, "MLMS_IR_CACHE": str(tmp_path), "MLMS_IR_LOG": "INFO"}
    script = "import sys, mlms_ir.cli as c; sys.exit(c.main(sys.argv[1:]))"
    procs = [subprocess.Popen([sys.executable, "-c", script, "zoo", "build", TINY_CNN], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    # one conversion: the other process waited for the lock and reused it (without the lock, both convert)
    assert sum(f"converting {TINY_CNN} (random weights)" in o[1] for o in outs) == 1, [o[1][-2000:] for o in outs]
    path = tmp_path / "zoo" / TINY_CNN / "model.onnx"
    assert [o[0].split(" (")[0] for o in outs] == [str(path), str(path)]
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == [TINY_CNN]  # no temporary folder left
    assert sorted(p.name for p in (tmp_path / "zoo" / TINY_CNN).iterdir()) == ["build.json", "model.onnx"]
    onnx.checker.check_model(str(path))
    monkeypatch.setenv("MLMS_IR_CACHE", str(tmp_path))
    assert read_build_info(TINY_CNN)["conversion"]["max_abs_error"] < 1e-3


def test_from_timm_with_a_local_weights_file(tmp_path):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    import numpy as np
    import onnxruntime as ort
    from mlms_ir.converters import ConversionError
    from mlms_ir.converters.torch import from_timm
    from safetensors.torch import save_file

    torch.manual_seed(7)
    model = timm.create_model(f"{TINY_CNN}.r160_in1k", pretrained=False).eval()
    file = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    r = from_timm(TINY_CNN, tmp_path / "m.onnx", weights_path=file, resolution=96)
    assert r.provenance["weights"] == f"file:{file.resolve()}" and "weights_note" not in r.provenance
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        want = model(x).numpy()
    got = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
    with pytest.raises(ConversionError, match="did you mean"):
        from_timm("test_vitt", tmp_path / "x.onnx")
    with pytest.raises(ConversionError, match="no weights file"):
        from_timm(TINY_CNN, tmp_path / "x.onnx", weights_path=tmp_path / "missing.safetensors")
