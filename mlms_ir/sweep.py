"""Sweeps: a YAML matrix of models x backends x devices x batch sizes x precisions, expanded
into jobs, run locally (each job in a worker process, with a timeout) or on a Ray cluster, every
result kept in the results store.

A sweep is named; each job has a key (a hash of what it runs, the model file's sha256 included).
Resuming a sweep skips the jobs whose results are already stored (a model file changed since gives
its jobs new keys: they run again), so an interrupted sweep (even by ``kill -9``) loses nothing it
finished: a local worker writes its result into the store itself before it exits. A job that
fails, crashes or times out is recorded as failed, and the sweep goes on.

A spec::

    name: cpu-latency            # required: the sweep's name in the store
    kind: run                    # run (default), profile, diverge or analyze
    models:                      # paths (beside the spec), zoo:NAME, or {path, input_shape, dims}
      - model.onnx
      - {path: bert.onnx, dims: {seq: 128}}
    backends: [ort, torch]
    devices: [cpu]               # cpu, cuda, tensorrt
    batches: [1, 8]
    precisions: [fp32]           # fp16, bf16, int8 where the backend supports them
    iterations: 50               # run/profile: timed iterations; warmup: untimed ones
    warmup: 5
    runs: 5                      # profile: traced runs
    reference: reference         # diverge: the reference backend
    timeout_s: 600               # per job
    gpu_type: H200               # Ray: GPU jobs only on nodes with this accelerator type
    scenarios: [server, offline] # run: MLPerf LoadGen scenarios instead of the timing loop (also: scenario)
    target_qps: [100, 200]       # server (and offline) targets, one job each
    latency_bound_ms: 50         # server: the bound at the 99th percentile
    duration_s: 10               # LoadGen's minimum duration; min_queries: its minimum query count
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlms_ir._proc import ChildStartError, ChildTimeout, child_env, run_child
from mlms_ir.errors import MlmsIrError, SweepSpecError
from mlms_ir.progress import ProgressBar, progress_bar
from mlms_ir.store import Store, StoreRecord

SPEC_KEYS = {"name", "kind", "models", "backends", "devices", "batches", "precisions", "iterations", "warmup", "runs", "reference",
             "timeout_s", "gpu_type", "options", "scenarios", "scenario", "target_qps", "latency_bound_ms", "duration_s", "min_queries"}
#: Keys of a LoadGen scenario sweep (kind run with ``scenarios``).
SCENARIO_KEYS = ("scenarios", "scenario", "target_qps", "latency_bound_ms", "duration_s", "min_queries")
JOB_KINDS = ("run", "profile", "diverge", "analyze")
DEFAULT_TIMEOUT_S = 600.0
JOB_FAILED = "failed: "


@dataclass
class Job:
    """One cell of the matrix: a model on one backend, device, batch size and precision."""

    sweep: str
    kind: str
    model: str
    backend: str | None
    device: str
    batch: int | None
    precision: str
    bind: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    gpu_type: str | None = None
    #: The model file's sha256, set by :func:`run_sweep` when it plans the jobs (a ``zoo:`` model
    #: not built yet has none until its job builds it); part of the key.
    model_sha256: str | None = None

    @property
    def key(self) -> str:
        """What the job runs, hashed: the same job in a resumed sweep has the same key, and the
        same job on a model file whose content changed has another."""
        what = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("timeout_s", "gpu_type")}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def label(self) -> str:
        sc, qps = self.settings.get("scenario"), self.settings.get("target_qps")
        parts = [Path(self.model).name, self.backend or "", self.device, f"b{self.batch}" if self.batch else "", self.precision,
                 sc or "", f"{qps:g} QPS" if qps else ""]
        return " ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Spec:
    name: str
    jobs: list[Job]


def _as_list(value: Any, key: str, kind: type | tuple[type, ...]) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, kind) or isinstance(v, bool):
            raise SweepSpecError(f"sweep spec: '{key}' must be a list of {getattr(kind, '__name__', 'values')}, got {v!r}")
    return items


def load_spec(source: str | os.PathLike | dict[str, Any]) -> Spec:
    """Read and check a sweep spec (a YAML file or a dict) and expand it into jobs."""
    if isinstance(source, dict):
        d, base = source, Path.cwd()
    else:
        import yaml

        path = Path(source)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SweepSpecError(f"cannot read the sweep spec '{path}': {exc.strerror or exc}") from exc
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SweepSpecError(f"the sweep spec '{path}' is not valid YAML: {' '.join(str(exc).split())}") from exc
        base = path.resolve().parent
    if not isinstance(d, dict):
        raise SweepSpecError("a sweep spec is a mapping (name, kind, models, backends, ...)")
    unknown = sorted(set(d) - SPEC_KEYS)
    if unknown:
        raise SweepSpecError(f"sweep spec: unknown key {', '.join(map(repr, unknown))}; known: {', '.join(sorted(SPEC_KEYS))}")
    name = d.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SweepSpecError("sweep spec: 'name' (the sweep's name in the store) is required")
    kind = d.get("kind", "run")
    if kind not in JOB_KINDS:
        raise SweepSpecError(f"sweep spec: 'kind' must be one of {', '.join(JOB_KINDS)}, got {kind!r}")
    if "models" not in d:
        raise SweepSpecError("sweep spec: 'models' is required")
    models = []
    for m in _as_list(d["models"], "models", (str, dict)):
        if isinstance(m, str):
            m = {"path": m}
        extra = sorted(set(m) - {"path", "input_shape", "dims"})
        if "path" not in m or extra:
            raise SweepSpecError(f"sweep spec: a model is a path or {{path, input_shape, dims}}, got {m!r}")
        models.append({"path": str(m["path"]), "bind": {k: m[k] for k in ("input_shape", "dims") if k in m}})
    backends = _as_list(d.get("backends", ["ort"]), "backends", str) if kind != "analyze" else [None]
    devices = _as_list(d.get("devices", ["cpu"]), "devices", str)
    batches = _as_list(d.get("batches", [None]), "batches", (int, type(None)))
    if any(b is not None and b < 1 for b in batches):
        raise SweepSpecError("sweep spec: batch sizes must be positive integers")
    precisions = _as_list(d.get("precisions", ["fp32"]), "precisions", str)
    bad = [p for p in precisions if p not in ("fp32", "fp16", "bf16", "int8")]
    if bad:
        raise SweepSpecError(f"sweep spec: unknown precision {bad[0]!r}; one of fp32, fp16, bf16, int8")
    settings = {k: d[k] for k in ("iterations", "warmup", "runs", "reference") if k in d}
    for k in ("iterations", "warmup", "runs"):
        if k in settings and (not isinstance(settings[k], int) or isinstance(settings[k], bool) or settings[k] < (0 if k == "warmup" else 1)):
            raise SweepSpecError(f"sweep spec: '{k}' must be a positive integer, got {settings[k]!r}")
    if "options" in d:
        if not isinstance(d["options"], dict):
            raise SweepSpecError("sweep spec: 'options' maps option names (e.g. opt) to values")
        settings["options"] = d["options"]
    axes = _scenario_axes(d, kind)
    timeout = d.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise SweepSpecError(f"sweep spec: 'timeout_s' must be a positive number, got {timeout!r}")
    # what the names name, checked before any job starts: every model, backend and device
    for m in models:
        m["path"] = _model_ref(m["path"], base)
    _check_backends([b for b in backends if b is not None] + ([d["reference"]] if "reference" in d else []), devices)
    jobs = [Job(sweep=name, kind=kind, model=m["path"], backend=b, device=dev, batch=bs, precision=p, bind=m["bind"],
                settings={**settings, **axis}, timeout_s=float(timeout), gpu_type=d.get("gpu_type"))
            for m in models for b in backends for dev in devices for bs in batches for p in precisions for axis in axes]
    return Spec(name=name, jobs=jobs)


def _scenario_axes(d: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The LoadGen settings of each job: one entry per scenario and (Server, Offline) target QPS;
    ``[{}]`` for a spec without scenarios, so its jobs keep the keys they always had."""
    given = [k for k in SCENARIO_KEYS if k in d]
    if not given:
        return [{}]
    if "scenarios" in d and "scenario" in d:
        raise SweepSpecError("sweep spec: give 'scenarios' (or its alias 'scenario'), not both")
    if "scenarios" not in d and "scenario" not in d:
        raise SweepSpecError(f"sweep spec: {', '.join(map(repr, given))} belong to LoadGen's scenarios: add 'scenarios' "
                             "(singlestream, multistream, server, offline)")
    if kind != "run":
        raise SweepSpecError(f"sweep spec: 'scenarios' are run by kind 'run', not {kind!r}")
    from mlms_ir.scenarios import SCENARIOS, scenario_key

    key = "scenarios" if "scenarios" in d else "scenario"
    scenarios = []
    for s in _as_list(d[key], key, str):
        try:
            scenarios.append(scenario_key(s))
        except MlmsIrError:
            raise SweepSpecError(f"sweep spec: unknown scenario {s!r}; one of {', '.join(SCENARIOS)}") from None
    qps = _as_list(d["target_qps"], "target_qps", (int, float)) if "target_qps" in d else []
    if any(not (q > 0 and q != float("inf")) for q in qps):
        raise SweepSpecError(f"sweep spec: 'target_qps' must be positive numbers, got {d['target_qps']!r}")
    if "server" in scenarios and not qps:
        raise SweepSpecError("sweep spec: the server scenario needs 'target_qps' (a list of queries per second)")
    fixed: dict[str, Any] = {}
    for k in ("latency_bound_ms", "duration_s"):
        if k in d:
            v = d[k]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v > 0 and v != float("inf")):
                raise SweepSpecError(f"sweep spec: '{k}' must be a positive number, got {v!r}")
            fixed[k] = float(v)
    if "min_queries" in d:
        v = d["min_queries"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SweepSpecError(f"sweep spec: 'min_queries' must be a positive integer, got {v!r}")
        fixed["min_queries"] = v
    if "latency_bound_ms" in fixed and "server" not in scenarios:
        raise SweepSpecError("sweep spec: 'latency_bound_ms' is the server scenario's bound; add server to 'scenarios'")
    axes = []
    for sc in dict.fromkeys(scenarios):
        targets = qps if sc in ("server", "offline") and qps else [None]
        for q in targets:
            axes.append({"scenario": sc, "target_qps": None if q is None else float(q),
                         **{k: v for k, v in fixed.items() if k != "latency_bound_ms" or sc == "server"}})
    return axes


def _model_ref(ref: str, base: Path) -> str:
    """A spec's model as a job keeps it: ``zoo:NAME`` as given (once the zoo knows NAME; it is built
    when the job runs), a path made absolute against the spec's folder (once it exists)."""
    from mlms_ir.zoo.manifest import get, is_zoo_ref

    if is_zoo_ref(ref):
        try:
            return "zoo:" + get(ref)["name"]
        except MlmsIrError as exc:
            raise SweepSpecError(f"sweep spec: {exc}") from None
    p = Path(ref).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise SweepSpecError(f"sweep spec: model '{ref}' is not a file ({p}); a zoo model is written zoo:NAME")
    return str(p)


def _check_backends(names: list[str], devices: list[str]) -> None:
    from mlms_ir.backends.base import DEVICES
    from mlms_ir.backends.registry import check

    try:
        check(names)
    except MlmsIrError as exc:
        raise SweepSpecError(f"sweep spec: {exc}") from None
    bad = [dev for dev in devices if dev not in DEVICES]
    if bad:
        raise SweepSpecError(f"sweep spec: unknown device {bad[0]!r}; one of {', '.join(DEVICES)}")


# ----------------------------------------------------------------------------- one job


def model_file_sha256(path: str | os.PathLike, cache: dict[tuple[str, int, int], str] | None = None) -> str | None:
    """The sha256 of the file at ``path`` (None where there is none), read in chunks; ``cache``
    keeps it by path, modification time and size, so a sweep hashes each file once however many
    jobs run it."""
    from mlms_ir.files import sha256_of

    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if cache is not None and key in cache:
        return cache[key]
    try:
        sha = sha256_of(path)
    except OSError:
        return None
    if cache is not None:
        cache[key] = sha
    return sha


def _model_file(ref: str) -> str | None:
    """The file a job's model is, without building anything: a path as it is, a ``zoo:`` model's
    ONNX file once built (None before)."""
    from mlms_ir.zoo.manifest import is_zoo_ref

    if not is_zoo_ref(ref):
        return ref
    from mlms_ir.zoo.builder import built_path

    try:
        path = built_path(ref.removeprefix("zoo:"))
    except MlmsIrError:
        return None
    return str(path) if path is not None else None


def hash_models(jobs: list[Job], cache: dict[tuple[str, int, int], str] | None = None) -> None:
    """Set each job's ``model_sha256`` from its model file as it is now (a ``zoo:`` model not built
    yet: None), each file hashed once."""
    cache = {} if cache is None else cache
    for job in jobs:
        path = _model_file(job.model)
        job.model_sha256 = model_file_sha256(path, cache) if path else None


def execute_job(job: Job) -> list[StoreRecord]:
    """Run one job in this process and return what to store (a failure is a failed record)."""
    from mlms_ir.ir.shapes import dims_text, input_shape_list
    from mlms_ir.store import records_from_analysis, records_from_divergence, records_from_profile, records_from_runs
    from mlms_ir.zoo.manifest import resolve

    s = job.settings
    bind = {"input_shapes": input_shape_list(job.bind.get("input_shape")), "dims": dims_text(job.bind.get("dims"))}
    options = dict(s.get("options") or {})
    if job.precision != "fp32":
        options["precision"] = job.precision
    try:
        model = str(resolve(job.model))  # zoo:NAME is built (or found in the cache) here
        if job.model_sha256 is None:  # a zoo model built just now: its key is of the file built
            job.model_sha256 = model_file_sha256(model)
        if job.kind == "run" and s.get("scenario"):
            from mlms_ir.scenarios import run_scenarios
            from mlms_ir.store import records_from_scenarios

            rep = run_scenarios(model, [job.backend], scenario=s["scenario"], device=job.device, target_qps=s.get("target_qps"),
                                latency_bound_ms=s.get("latency_bound_ms"), duration_s=s.get("duration_s", 10.0),
                                min_queries=s.get("min_queries"), max_batch=job.batch, options={job.backend: options}, **bind)
            recs = records_from_scenarios(rep)
        elif job.kind == "run":
            from mlms_ir.runner import run_backends

            rep = run_backends(model, [job.backend], device=job.device, batches=[job.batch], iterations=s.get("iterations", 50),
                               warmup=s.get("warmup", 5), options={job.backend: options}, **bind)
            recs = records_from_runs(rep)
        elif job.kind == "profile":
            from mlms_ir.runner import profile_backend

            rep, _ = profile_backend(model, job.backend, device=job.device, batch=job.batch, runs=s.get("runs", 5),
                                     warmup=s.get("warmup", 5), iterations=s.get("iterations", 50), options=options, **bind)
            recs = records_from_profile(rep)
        elif job.kind == "diverge":
            from mlms_ir.divergence import diverge

            opts = {k: v for k, v in options.items() if k != "precision"}
            rep = diverge(model, job.backend, s.get("reference", "reference"), device=job.device, batch=job.batch,
                          precision=job.precision, options=opts, **bind)
            recs = records_from_divergence([rep])
        else:
            from mlms_ir.passes.analyze import analyze

            recs = records_from_analysis(analyze(model, batch=job.batch, **bind))
    except MlmsIrError as exc:
        recs = [failed_record(job, str(exc))]
    for r in recs:
        r.sweep, r.job_key = job.sweep, job.key
        r.batch = r.batch if r.batch is not None else job.batch
    return recs


def failed_record(job: Job, error: str) -> StoreRecord:
    """What is stored for a job that failed, crashed or timed out."""
    from mlms_ir.system import system_facts

    return StoreRecord(kind="scenario" if job.settings.get("scenario") else job.kind, status="failed", model_name=Path(job.model).name, model_path=job.model, backend=job.backend,
                       device=job.device, batch=job.batch, precision=job.precision, system=system_facts(),
                       settings={"job": job.to_dict()}, error=error, sweep=job.sweep, job_key=job.key)


def run_isolated(job: Job, store_path: Path | None) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``job`` in a worker process with its timeout. With ``store_path`` the worker writes its
    result into the store itself (nothing finished is lost if this process dies); without, it
    sends the records back. Returns (records sent back, error or None)."""
    argv = [sys.executable, "-m", "mlms_ir.sweep", "worker"]
    if store_path is not None:
        argv += ["--store", str(store_path)]
    try:  # our own interpreter: our environment as it is; a timeout kills the worker's whole group
        done = run_child(argv, timeout=job.timeout_s, stdin=json.dumps(job.to_dict()), env=child_env())
    except ChildTimeout:
        return [], f"timed out after {job.timeout_s:g} s"
    except ChildStartError as exc:
        return [], str(exc)
    if not done.ok:
        return [], f"the worker {done.how()}: {done.tail(1, stdout_too=False) or 'no message'}"
    try:
        out = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return [], "the worker sent no result"
    if out.get("errors"):  # the job failed cleanly: its failure is among the records (or stored)
        return out.get("records", []), JOB_FAILED + out["errors"][0]
    return out.get("records", []), None


def _worker_main(argv: list[str]) -> int:
    """``python -m mlms_ir.sweep worker [--store PATH]``: one job (JSON on stdin)."""
    job = Job(**json.loads(sys.stdin.read()))
    recs = execute_job(job)
    if len(argv) >= 2 and argv[0] == "--store":
        with Store(argv[1]) as st:
            runs = st.add_all(recs)
        print(json.dumps({"stored": [r.id for r in runs], "errors": [r.error for r in runs if r.status != "ok"]}))
    else:
        print(json.dumps({"records": [r.to_dict() for r in recs], "errors": [r.error for r in recs if r.status != "ok"]}))
    return 0


# ----------------------------------------------------------------------------- executors


@dataclass
class SweepResult:
    name: str
    jobs: int
    skipped: int
    ok: int = 0
    failed: int = 0
    run_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_sweep(spec: Spec, store_path: str | os.PathLike, *, executor: str = "local", workers: int = 1, address: str | None = None,
              progress: bool = True, on_job: Callable[[Job, str], None] | None = None) -> SweepResult:
    """Run the jobs of ``spec`` not yet stored; every result goes into the store at ``store_path``."""
    if executor not in ("local", "ray"):
        raise MlmsIrError(f"unknown executor '{executor}'; choose local or ray")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise MlmsIrError(f"--workers must be a positive integer, got '{workers}'")
    path = Path(store_path)
    hashes: dict[tuple[str, int, int], str] = {}
    hash_models(spec.jobs, hashes)  # the model files as they are now: a changed one gives new keys
    with Store(path) as st:
        done = st.jobs_done(spec.name)
        before = st.last_id()
    pending = [j for j in spec.jobs if j.key not in done]
    result = SweepResult(name=spec.name, jobs=len(spec.jobs), skipped=len(spec.jobs) - len(pending))
    t0 = time.perf_counter()
    bar = progress_bar(len(pending), f"sweep {spec.name}", enabled=progress, keep=True)
    try:
        if executor == "local":
            _run_local(pending, path, workers, bar, on_job)
        else:
            _run_ray(pending, path, address, bar, on_job)
    finally:
        bar.close()
    with Store(path) as st:
        mine = [r for r in st.list(sweep=spec.name, limit=None) if r.id > before]
    result.run_ids = sorted(r.id for r in mine)
    hash_models([j for j in pending if j.model_sha256 is None], hashes)  # zoo models its jobs built: keyed as their workers did
    keys_ok = {r.job_key for r in mine if r.status == "ok"}
    result.ok = sum(1 for j in pending if j.key in keys_ok)
    result.failed = len(pending) - result.ok
    result.seconds = time.perf_counter() - t0
    return result


def _run_local(jobs: list[Job], store_path: Path, workers: int, bar: ProgressBar, on_job) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(job: Job) -> None:
        _, error = run_isolated(job, store_path)
        if error is not None and not error.startswith(JOB_FAILED):  # crashed or timed out: nothing stored
            with Store(store_path) as st:
                st.add(failed_record(job, error))
        status = error if error else "done"
        bar.advance(note=f"{job.label()}: {status}")
        if on_job:
            on_job(job, status)

    if workers == 1:
        for job in jobs:
            one(job)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, jobs))


def _run_ray(jobs: list[Job], store_path: Path, address: str | None, bar: ProgressBar, on_job) -> None:
    try:
        import ray
    except ImportError as exc:
        raise MlmsIrError("the ray executor needs Ray: pip install 'mlms_ir[ray]'") from exc
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        except Exception as exc:  # noqa: BLE001 - Ray raises many types for a cluster it cannot reach
            raise MlmsIrError(f"cannot reach a Ray cluster at {address or 'a new local one'}: {' '.join(str(exc).split())[:300]}") from exc
        started = True
    remote = ray.remote(_ray_job)
    pending = {}
    resources = ray.cluster_resources()
    try:
        with Store(store_path) as st:
            for job in jobs:
                opts: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
                if job.device != "cpu":
                    opts["num_gpus"] = 1
                    if job.gpu_type:
                        opts["accelerator_type"] = job.gpu_type
                why = _infeasible(opts, resources)
                if why:  # Ray would keep such a task waiting for a node that never comes
                    st.add(failed_record(job, why))
                    bar.advance(note=f"{job.label()}: {why}")
                    if on_job:
                        on_job(job, why)
                    continue
                pending[remote.options(**opts).remote(job.to_dict())] = job
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                try:
                    records, error = ray.get(ready[0])
                except Exception as exc:  # noqa: BLE001 - a task that died on its node
                    records, error = [], f"the Ray task failed: {' '.join(str(exc).split())[:300]}"
                if records:
                    st.add_all(StoreRecord(**r) for r in records)  # streamed back as each job ends
                else:
                    error = error or "the job returned no result"
                    st.add(failed_record(job, error))
                status = error if error else "done"
                bar.advance(note=f"{job.label()}: {status}")
                if on_job:
                    on_job(job, status)
    finally:
        if started:
            ray.shutdown()


def _infeasible(opts: dict[str, Any], resources: dict[str, float]) -> str | None:
    """Why no node of the cluster can take a task with ``opts`` (None when one can)."""
    if opts.get("num_gpus") and not resources.get("GPU"):
        return "no node of the Ray cluster has a GPU"
    acc = opts.get("accelerator_type")
    if acc and not resources.get(f"accelerator_type:{acc}"):
        have = sorted(k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:"))
        return f"no node of the Ray cluster has a {acc} GPU (it has: {', '.join(have) or 'none'})"
    return None


def _ray_job(job: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """On a Ray worker: the job in its own process, its records sent back to the driver."""
    return run_isolated(Job(**job), None)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "worker":
        sys.exit(_worker_main(sys.argv[2:]))
    print("usage: python -m mlms_ir.sweep worker [--store PATH] < job.json", file=sys.stderr)
    sys.exit(2)
