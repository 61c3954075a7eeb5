"""Sweeps: spec checks, local worker processes, failures recorded, resume (after kill -9 too), Ray."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlms_ir.store import Store, StoreRecord
from mlms_ir.sweep import SweepSpecError, load_spec, run_sweep
from mlms_ir.zoo import builtin_path

MODEL = str(builtin_path())


def _spec(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


def test_spec_expands_the_matrix(tmp_path):
    (tmp_path / "other.onnx").write_bytes(Path(MODEL).read_bytes())
    spec = load_spec(_spec(tmp_path, f"""
name: m
kind: run
models: [{MODEL}, {{path: other.onnx, dims: {{batch: 2}}}}]
backends: [ort, reference]
devices: [cpu]
batches: [1, 8]
precisions: [fp32, fp16]
iterations: 5
"""))
    assert len(spec.jobs) == 2 * 2 * 1 * 2 * 2
    assert len({j.key for j in spec.jobs}) == len(spec.jobs)  # every cell its own key
    assert spec.jobs[-1].model == str(tmp_path / "other.onnx")  # relative to the spec's folder
    assert spec.jobs[-1].bind == {"dims": {"batch": 2}} and spec.jobs[0].settings == {"iterations": 5}
    again = load_spec(_spec(tmp_path, (tmp_path / "spec.yaml").read_text().replace("iterations: 5", "iterations: 5\ntimeout_s: 9")))
    assert [j.key for j in again.jobs] == [j.key for j in spec.jobs]  # a timeout does not change what a job is


@pytest.mark.parametrize("text,msg", [
    ("[1, 2]", "a sweep spec is a mapping"),
    ("kind: run\nmodels: [a.onnx]", "'name'"),
    ("name: x\nmodels: [a.onnx]\nbogus: 1", "unknown key 'bogus'"),
    ("name: x\nmodels: [a.onnx]\nprecisions: [fp8]", "unknown precision 'fp8'"),
    ("name: x\nmodels: [a.onnx]\nbatches: [0]", "positive integers"),
    ("name: x\nmodels: [a.onnx]\nkind: train", "'kind' must be one of"),
    ("name: x\nmodels: [{path: a.onnx, batch: 3}]", "a model is a path or"),
    ("name: x\nmodels: [a.onnx]\ntimeout_s: -1", "'timeout_s' must be a positive number"),
    ("name: [unclosed", "not valid YAML"),
])
def test_bad_specs_say_what_is_wrong(tmp_path, text, msg):
    with pytest.raises(SweepSpecError, match=msg.replace("[", r"\[").replace("(", r"\(")):
        load_spec(_spec(tmp_path, text))


@pytest.mark.parametrize("text,msg", [
    ("name: x\nmodels: [a.onnx]", "model 'a.onnx' is not a file"),
    ("name: x\nmodels: [zoo:resnet5O]", "the zoo has no model 'resnet5O'; did you mean"),
    ("name: x\nmodels: [MODEL]\nbackends: [ort, tensorrtt]", "unknown backend 'tensorrtt' (did you mean tensorrt?)"),
    ("name: x\nmodels: [MODEL]\nkind: diverge\nreference: refrence", "unknown backend 'refrence'"),
    ("name: x\nmodels: [MODEL]\ndevices: [gpu]", "unknown device 'gpu'; one of cpu, cuda, tensorrt"),
])
def test_a_spec_is_checked_whole_before_any_job(tmp_path, text, msg):
    """Every model, backend and device a spec names is checked when it is read, so a typo in the last
    cell of a matrix does not surface hours into a sweep."""
    with pytest.raises(SweepSpecError, match=re.escape(msg)):
        load_spec(_spec(tmp_path, text.replace("MODEL", MODEL)))


def test_zoo_models_in_a_spec(tmp_path):
    """``zoo:NAME`` is the zoo's model, not a file beside the spec; the job resolves it when it runs."""
    spec = load_spec(_spec(tmp_path, "name: z\nmodels: [zoo:Digits-CNN]\nbackends: [ort]\nbatches: [1]\niterations: 2\nwarmup: 0"))
    assert [j.model for j in spec.jobs] == ["zoo:digits-cnn"]  # the catalog's own spelling: one key per model
    res = run_sweep(spec, tmp_path / "s.sqlite", progress=False)
    assert (res.ok, res.failed) == (1, 0), Store(tmp_path / "s.sqlite").list(sweep="z")[0].error
    with Store(tmp_path / "s.sqlite") as st:
        (r,) = st.list(sweep="z")
        assert r.status == "ok" and r.model_name == "digits_cnn.onnx"


@pytest.mark.slow
def test_local_sweep_records_failures_and_resumes(tmp_path):
    db = tmp_path / "s.sqlite"
    spec = load_spec(_spec(tmp_path, f"""
name: local
models: [{MODEL}]
backends: [ort, tensorrt]
batches: [1, 2]
iterations: 3
warmup: 1
"""))
    seen = []
    res = run_sweep(spec, db, progress=False, on_job=lambda job, status: seen.append((job.backend, status)))
    assert (res.jobs, res.skipped, res.ok, res.failed) == (4, 0, 2, 2)
    assert sorted(s for b, s in seen if b == "ort") == ["done", "done"]
    # tensorrt runs on cuda only: a job that cannot run is recorded as failed, with the reason
    assert all(s.startswith("failed: ") and "'cpu'" in s for b, s in seen if b == "tensorrt")
    with Store(db) as st:
        runs = st.list(sweep="local")
        assert len(runs) == 4 and {r.status for r in runs if r.backend == "tensorrt"} == {"failed"}
        assert all(r.job_key for r in runs) and {r.batch for r in runs} == {1, 2}
    again = run_sweep(spec, db, progress=False)
    assert (again.skipped, again.ok, again.failed) == (2, 0, 2)  # finished jobs skipped; failed ones tried again


def test_a_job_past_its_timeout_is_recorded_as_failed(tmp_path):
    db = tmp_path / "s.sqlite"
    spec = load_spec(_spec(tmp_path, f"""
name: slow
models: [{MODEL}]
backends: [reference]
batches: [64]
iterations: 100000
timeout_s: 3
"""))
    t0 = time.perf_counter()
    res = run_sweep(spec, db, progress=False)
    assert time.perf_counter() - t0 < 30
    assert (res.ok, res.failed) == (0, 1)
    with Store(db) as st:
        (r,) = st.list(sweep="slow")
        assert r.status == "failed" and r.error == "timed out after 3 s"


@pytest.mark.slow
def test_cli_sweep_and_kill_9_loses_no_finished_result(tmp_path):
    db = tmp_path / "s.sqlite"
    spec = _spec(tmp_path, f"""
name: killed
models: [{MODEL}]
backends: [ort, reference]
batches: [1, 2, 3, 4]
iterations: 30
warmup: 1
""")
    argv = [sys.executable, "-m", "mlms_ir", "sweep", str(spec), "--store", str(db), "--progress", "False"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and p.poll() is None:
        if db.exists():
            with Store(db) as st:
                done = len(st.jobs_done("killed"))
            if done >= 2:
                break
        time.sleep(0.05)
    assert done >= 2, "the sweep stored nothing in time"
    os.killpg(p.pid, signal.SIGKILL)  # the sweep and the worker it is running
    p.wait()
    with Store(db) as st:
        kept = st.jobs_done("killed")
    assert 2 <= len(kept) < 8 or p.returncode == 0
    r = subprocess.run(argv + ["--format", "json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["jobs"] == 8 and res["skipped"] == len(kept) and res["ok"] == 8 - len(kept) and res["failed"] == 0
    with Store(db) as st:
        runs = [x for x in st.list(sweep="killed", limit=None) if x.status == "ok"]
        assert len(runs) == 8 and len({x.job_key for x in runs}) == 8  # each job stored exactly once


def _ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed: CI must run the Ray sweep test (pip install -e '.[test]')")
        pytest.skip("ray is not installed (pip install 'mlms_ir[ray]')")
    return ray


@pytest.mark.slow
def test_a_sweep_on_a_real_local_ray(tmp_path):
    ray = _ray()
    db = tmp_path / "s.sqlite"
    spec = load_spec(_spec(tmp_path, f"""
name: on-ray
models: [{MODEL}]
backends: [ort, reference]
devices: [cpu, cuda]
batches: [1, 2]
iterations: 3
warmup: 1
gpu_type: H200
"""))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_sweep(spec, db, executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert (res.jobs, res.ok, res.failed) == (8, 4, 4)
    with Store(db) as st:
        runs = st.list(sweep="on-ray", limit=None)
        ok = [r for r in runs if r.status == "ok"]
        assert {(r.backend, r.device, r.batch) for r in ok} == {(b, "cpu", n) for b in ("ort", "reference") for n in (1, 2)}
        assert all(r.summary["latency_ms"]["p50"] > 0 for r in ok)
        gpu = [r for r in runs if r.device == "cuda"]
        assert len(gpu) == 4 and {r.error for r in gpu} == {"no node of the Ray cluster has a GPU"}


def test_a_changed_model_file_runs_again_and_an_unchanged_one_does_not(tmp_path):
    """A job's key holds its model file's sha256: the same spec on an edited model is another job
    (the stale result is not kept as the new file's), on the same bytes the same one."""
    import onnx
    from conftest import small_cnn

    model = tmp_path / "model.onnx"
    model.write_bytes(Path(MODEL).read_bytes())
    db = tmp_path / "s.sqlite"
    spec = load_spec(_spec(tmp_path, "name: edit\nkind: analyze\nmodels: [model.onnx]\nbatches: [1]"))
    with Store(db) as st:  # a result stored under a key made before keys held the sha256 matches no job: no crash, a rerun
        st.add(StoreRecord(kind="analyze", model_name="model.onnx", sweep="edit", job_key="0123456789abcdef"))
    first = run_sweep(spec, db, progress=False)
    assert (first.jobs, first.skipped, first.ok, first.failed) == (1, 0, 1, 0)
    os.utime(model, ns=(time.time_ns() + 10**9,) * 2)  # touched, not changed: the same job
    again = run_sweep(spec, db, progress=False)
    assert (again.skipped, again.ok) == (1, 0)
    onnx.save(small_cnn(), model)  # edited in place: the same path, other bytes
    edited = run_sweep(spec, db, progress=False)
    assert (edited.skipped, edited.ok, edited.failed) == (0, 1, 0)
    with Store(db) as st:
        old, new = sorted((r for r in st.list(sweep="edit") if r.job_key != "0123456789abcdef"), key=lambda r: r.id)
        assert old.job_key != new.job_key and new.model_sha256 == spec.jobs[0].model_sha256 != old.model_sha256
    assert run_sweep(spec, db, progress=False).skipped == 1


def test_a_sweep_hashes_each_model_file_once(tmp_path, monkeypatch):
    import mlms_ir.files
    from mlms_ir.files import sha256_of
    from mlms_ir.sweep import hash_models

    (tmp_path / "m.onnx").write_bytes(Path(MODEL).read_bytes())
    spec = load_spec(_spec(tmp_path, "name: h\nmodels: [m.onnx, zoo:digits-cnn]\nbackends: [ort, reference]\nbatches: [1, 2, 4]"))
    hashed = []
    monkeypatch.setattr(mlms_ir.files, "sha256_of", lambda p: hashed.append(str(p)) or sha256_of(p))
    cache: dict = {}
    hash_models(spec.jobs, cache)
    assert sorted(hashed) == sorted([str(tmp_path / "m.onnx"), str(builtin_path())])  # 12 jobs, 2 files read
    assert {j.model_sha256 for j in spec.jobs} == {sha256_of(MODEL)}  # the zoo's digits-cnn is MODEL: the same bytes
    keys = [j.key for j in spec.jobs]
    hash_models(spec.jobs, cache)
    assert len(hashed) == 2 and [j.key for j in spec.jobs] == keys and len(set(keys)) == 12


def test_a_zoo_model_not_built_yet_is_keyed_by_the_file_its_job_builds(tmp_path, monkeypatch):
    """Before its job builds it a zoo model has no file to hash; the worker keys the job by the file
    it built, the sweep counts the job as such, and a resumed sweep (the file there) skips it."""
    import mlms_ir.zoo.builder

    real, built = mlms_ir.zoo.builder.built_path, []
    monkeypatch.setattr(mlms_ir.zoo.builder, "built_path", lambda name: real(name) if built else None)  # in this process only
    spec = load_spec(_spec(tmp_path, "name: z\nkind: analyze\nmodels: [zoo:digits-cnn]\nbatches: [1]"))
    res = run_sweep(spec, tmp_path / "s.sqlite", progress=False, on_job=lambda job, status: built.append(job.model_sha256))
    assert built == [None] and (res.ok, res.failed) == (1, 0)  # planned without a sha256, counted by the worker's key
    with Store(tmp_path / "s.sqlite") as st:
        (r,) = st.list(sweep="z")
        assert r.job_key == spec.jobs[0].key and spec.jobs[0].model_sha256 == r.model_sha256 is not None
    assert run_sweep(spec, tmp_path / "s.sqlite", progress=False).skipped == 1
