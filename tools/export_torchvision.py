#!/usr/bin/env python3
"""Export torchvision classification models to ONNX, with their published figures.

The ONNX files let ``mlms_ir`` compare its static counts (parameters, FLOPs/
MACs) with the figures torchvision publishes in each model's DEFAULT weights:
``meta["num_params"]`` and ``meta["_ops"]`` (GFLOPS, one multiply-add counted
as one op), measured at the resolution of the published weights
(``weights.transforms().crop_size[0]``: 224 for most, 299 for inception_v3,
600 for efficientnet_b7, 518 for vit_h_14, ...).

Models are built with ``weights=None`` (random init, ``torch.manual_seed(0)``
before each build) -- no weights are ever downloaded -- plus the architecture
kwargs the builder would set for the published weights (``builder_kwargs``:
``image_size`` for the ViTs, ``input_size`` for maxvit_t, ``transform_input``/
``aux_logits`` for googlenet and inception_v3), and exported in eval
mode under ``torch.no_grad()`` with a ``[1, 3, R, R]`` input named ``input``
and an output named ``logits``.

Layout under ``--out`` (default ``~/.cache/mlms_ir/torchvision``)::

    <out>/<exporter>/<name>/model.onnx
    <out>/<exporter>/<name>/model.onnx.data   # only for external-data models
    <out>/<exporter>/<name>/meta.json
    <out>/<exporter>/index.json               # summary of every meta.json there

Exporters:

``legacy``
    ``torch.onnx.export(..., dynamo=False, opset_version=17,
    do_constant_folding=True)`` (the TorchScript exporter).  For a model whose
    proto exceeds 2 GB (regnet_y_128gf, vit_h_14) this exporter writes every
    tensor to its own file next to the ``.onnx``; the script therefore exports
    into a scratch folder and, when that happens, re-saves the model with
    ``onnx.save(..., save_as_external_data=True, all_tensors_to_one_file=True,
    location="model.onnx.data")`` so each model has at most two files.
``dynamo``
    ``torch.onnx.export(..., dynamo=True, external_data=True,
    opset_version=18)`` (the torch.export-based exporter; 18 is its native
    opset, asking for 17 makes it attempt a down-conversion that fails and
    leaves 18), which always writes ``model.onnx.data``.

The MultiheadAttention fast path (``torch._native_multi_head_attention``,
used by the ViTs in eval/no_grad mode) has no TorchScript ONNX symbolic, so it
is disabled (``torch.backends.mha.set_fastpath_enabled(False)``) during every
export and restored afterwards.

Usage::

    python tools/export_torchvision.py --out /work/tv_cache
    python tools/export_torchvision.py --models resnet50,vit_b_16 --exporter dynamo
    python tools/export_torchvision.py --skip-existing --isolate

From tests::

    from tools.export_torchvision import export_one
    path = export_one("resnet18", cache_dir, "legacy", skip_existing=True)

Importing this module has no side effects (torch/torchvision/onnx are imported
lazily inside the functions).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

EXPORTERS = ("legacy", "dynamo")
OPSET = 17  # legacy exporter
# The dynamo exporter's native (torchlib) opset.  Asking it for 17 triggers a
# down-conversion that fails on e.g. ReduceMean (axes input -> attribute) and
# leaves the model at 18 anyway, with a traceback in the log.
DYNAMO_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
META_FILE = "meta.json"
INDEX_FILE = "index.json"
DEFAULT_OUT = Path("~/.cache/mlms_ir/torchvision").expanduser()

__all__ = [
    "DEFAULT_OUT",
    "EXPORTERS",
    "export_one",
    "list_classification_models",
    "model_dir",
    "published_meta",
    "builder_kwargs",
    "read_meta",
    "write_index",
]


# ----------------------------------------------------------------------------
# torchvision metadata
# ----------------------------------------------------------------------------
def list_classification_models() -> list[str]:
    """Names of torchvision's classification models (80 in torchvision 0.29)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def published_meta(name: str) -> dict[str, Any]:
    """Published figures of ``name``'s DEFAULT weights (no download).

    Returns ``weights`` (e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``),
    ``resolution`` (``transforms().crop_size[0]``), ``resize_size``,
    ``num_params`` and ``gflops`` (``meta["_ops"]``), plus ``file_size_mb``
    (``meta["_file_size"]``, the size of the published ``.pth``) when present.
    """
    import torchvision

    w = torchvision.models.get_model_weights(name).DEFAULT
    t = w.transforms()
    crop = t.crop_size
    resolution = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    resize = getattr(t, "resize_size", None)
    if isinstance(resize, (list, tuple)):
        resize = int(resize[0]) if resize else None
    out = {
        "weights": f"{type(w).__name__}.{w.name}",
        "resolution": resolution,
        "resize_size": resize,
        "num_params": int(w.meta["num_params"]),
        "gflops": float(w.meta["_ops"]),
    }
    if "_file_size" in w.meta:
        out["file_size_mb"] = float(w.meta["_file_size"])
    return out


def builder_kwargs(name: str, resolution: int) -> dict[str, Any]:
    """Architecture kwargs that torchvision's builder would set for the published weights.

    ``get_model(name, weights=None)`` does not apply them, but the published
    ``num_params`` / ``_ops`` are those of the architecture the weights load
    into (see the ``if weights is not None`` branches of the builders):

    * ``vit_*``: ``image_size`` (the position embedding is sized for it; the
      DEFAULT ``vit_h_14`` weights are at 518, ``weights=None`` builds 224 and
      then rejects a 518 input with "Wrong image height!");
    * ``maxvit_t``: ``input_size``;
    * ``googlenet``: ``transform_input=True``, ``aux_logits=False`` (the
      builder drops the aux heads after loading, and the published 6,624,904
      params exclude them), ``init_weights=False``;
    * ``inception_v3``: ``transform_input=True``, ``aux_logits=True`` (kept:
      the published 27,161,264 params include ``AuxLogits``; it is inactive in
      eval so it is not exported), ``init_weights=False``.
    """
    if name.startswith("vit_"):
        return {"image_size": resolution}
    if name.startswith("maxvit"):
        return {"input_size": (resolution, resolution)}
    if name == "googlenet":
        return {"transform_input": True, "aux_logits": False, "init_weights": False}
    if name == "inception_v3":
        return {"transform_input": True, "aux_logits": True, "init_weights": False}
    return {}


# ----------------------------------------------------------------------------
# paths / meta
# ----------------------------------------------------------------------------
def model_dir(name: str, out_dir: Path | str, exporter: str = "legacy") -> Path:
    """``<out_dir>/<exporter>/<name>``."""
    return Path(out_dir).expanduser() / exporter / name


def read_meta(name: str, out_dir: Path | str, exporter: str = "legacy") -> dict[str, Any] | None:
    """The ``meta.json`` of a model, or None when absent/unreadable."""
    p = model_dir(name, out_dir, exporter) / META_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _is_complete(name: str, out_dir: Path | str, exporter: str) -> bool:
    meta = read_meta(name, out_dir, exporter)
    if not meta or meta.get("status") != "ok":
        return False
    d = model_dir(name, out_dir, exporter)
    files = meta.get("files") or {MODEL_FILE: None}
    for fname, size in files.items():
        p = d / fname
        if not p.is_file() or (size is not None and p.stat().st_size != size):
            return False
    return True


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    import onnx
    import torch
    import torchvision

    out = {
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "onnx_version": onnx.__version__,
    }
    with contextlib.suppress(Exception):
        import onnxscript

        out["onnxscript_version"] = onnxscript.__version__
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------
def _mha_fastpath_disabled():
    """The fused MultiheadAttention fast path has no legacy-exporter symbolic: the converter's own switch."""
    from mlms_ir.converters.torch import _mha_fastpath_disabled as disabled

    return disabled()


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """Silence the exporters' expected warnings (legacy-exporter DeprecationWarning,
    TracerWarnings, torchvision init FutureWarnings), e.g. under ``pytest -W error``."""
    import warnings

    import torch

    cats: list[type[Warning]] = [DeprecationWarning, FutureWarning, UserWarning]
    with contextlib.suppress(AttributeError):
        cats.append(torch.jit.TracerWarning)
    with warnings.catch_warnings():
        for cat in cats:
            warnings.simplefilter("ignore", cat)
        yield


def _clean_dir(d: Path) -> None:
    """Remove previous export outputs (keep nothing stale)."""
    if not d.exists():
        return
    for p in d.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _export_legacy(model, x, d: Path, notes: list[str]) -> None:
    import onnx
    import torch

    scratch = d / ".export_tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    tmp_model = scratch / MODEL_FILE
    torch.onnx.export(
        model,
        (x,),
        str(tmp_model),
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
    )
    extra = [p for p in scratch.iterdir() if p.name != MODEL_FILE]
    if extra:
        # > 2 GB: the TorchScript exporter wrote one file per tensor next to
        # the model.  Consolidate them into a single model.onnx.data.
        notes.append(
            f"legacy exporter wrote {len(extra)} per-tensor external files (>2GB); "
            f"re-saved with onnx.save(save_as_external_data=True, location='{DATA_FILE}')"
        )
        proto = onnx.load(str(tmp_model), load_external_data=True)
        onnx.save(
            proto,
            str(d / MODEL_FILE),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=DATA_FILE,
            size_threshold=1024,
        )
        del proto
        with contextlib.suppress(OSError):
            os.chmod(d / DATA_FILE, 0o644)  # onnx.save creates it 0600
    else:
        os.replace(tmp_model, d / MODEL_FILE)
    shutil.rmtree(scratch, ignore_errors=True)


def _export_dynamo(model, x, d: Path, notes: list[str]) -> None:
    import torch

    torch.onnx.export(
        model,
        (x,),
        str(d / MODEL_FILE),
        dynamo=True,
        external_data=True,
        opset_version=DYNAMO_OPSET,
        verbose=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
    )


def _onnx_summary(path: Path) -> dict[str, Any]:
    """Cheap facts from the graph (external data not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    g = proto.graph
    n_init = 0
    for t in g.initializer:
        k = 1
        for dim in t.dims:
            k *= dim
        n_init += k
    ops: dict[str, int] = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "opset": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "onnx_nodes": len(g.node),
        "onnx_initializers": len(g.initializer),
        "onnx_initializer_elements": n_init,
        "onnx_op_types": dict(sorted(ops.items())),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
    }


def export_one(
    name: str,
    out_dir: Path,
    exporter: str = "legacy",
    *,
    skip_existing: bool = False,
    resolution: int | None = None,
) -> Path:
    """Export torchvision model ``name`` to ``<out_dir>/<exporter>/<name>/model.onnx``.

    Also writes ``meta.json`` next to it; returns the path of ``model.onnx``.
    With ``skip_existing`` a complete previous export (``meta.json`` with
    ``status == "ok"`` and all files present with the recorded sizes) is
    reused.  ``resolution`` overrides the published one (the default).

    On failure a ``meta.json`` with ``status: "failed"`` and the error is
    written and the exception re-raised.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    out_dir = Path(out_dir).expanduser()
    d = model_dir(name, out_dir, exporter)
    path = d / MODEL_FILE
    if skip_existing and _is_complete(name, out_dir, exporter):
        return path

    import torch
    import torchvision

    pub = published_meta(name)
    R = int(resolution or pub["resolution"])
    kwargs = builder_kwargs(name, R)
    meta: dict[str, Any] = {
        "name": name,
        "exporter": exporter,
        "status": "running",
        "resolution": R,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": [1, 3, R, R],
        "builder_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
        "opset_requested": OPSET if exporter == "legacy" else DYNAMO_OPSET,
        "published_weights": pub["weights"],
        "published_resolution": pub["resolution"],
        "published_num_params": pub["num_params"],
        "published_gflops": pub["gflops"],
        **_versions(),
        "created": _now(),
    }
    notes: list[str] = []
    d.mkdir(parents=True, exist_ok=True)
    _clean_dir(d)
    _write_json(d / META_FILE, meta)

    model = None
    t0 = time.perf_counter()
    try:
        torch.manual_seed(0)
        with _quiet_warnings():  # googlenet/inception init FutureWarning
            model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
        meta["build_seconds"] = round(time.perf_counter() - t0, 3)
        meta["torch_num_params"] = int(sum(p.numel() for p in model.parameters()))
        x = torch.randn(1, 3, R, R)
        t1 = time.perf_counter()
        with torch.no_grad(), _mha_fastpath_disabled(), _quiet_warnings():
            if exporter == "legacy":
                _export_legacy(model, x, d, notes)
            else:
                _export_dynamo(model, x, d, notes)
        meta["export_seconds"] = round(time.perf_counter() - t1, 3)
        if not path.is_file():
            raise RuntimeError(f"exporter produced no {path}")
        files = {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file() and p.name != META_FILE}
        meta["files"] = files
        meta["file_size_bytes"] = sum(files.values())
        meta["model_onnx_bytes"] = files[MODEL_FILE]
        meta["external_data"] = any(f != MODEL_FILE for f in files)
        meta.update(_onnx_summary(path))
        if meta["opset"].get("ai.onnx") != meta["opset_requested"]:
            notes.append(
                f"exporter produced opset {meta['opset'].get('ai.onnx')} (requested {meta['opset_requested']})"
            )
        meta["notes"] = notes
        meta["status"] = "ok"
    except BaseException as e:  # record, then re-raise (incl. KeyboardInterrupt)
        meta["status"] = "failed"
        meta["error"] = f"{type(e).__name__}: {e}"[:4000]
        meta["traceback"] = traceback.format_exc()[-8000:]
        meta["export_seconds"] = round(time.perf_counter() - t0, 3)
        meta["notes"] = notes
        shutil.rmtree(d / ".export_tmp", ignore_errors=True)
        raise
    finally:
        meta["finished"] = _now()
        _write_json(d / META_FILE, meta)
        del model
        gc.collect()
    return path


# ----------------------------------------------------------------------------
# index
# ----------------------------------------------------------------------------
_INDEX_KEYS = (
    "status",
    "resolution",
    "published_num_params",
    "published_gflops",
    "torch_num_params",
    "onnx_initializer_elements",
    "onnx_nodes",
    "opset",
    "build_seconds",
    "export_seconds",
    "file_size_bytes",
    "external_data",
    "files",
    "notes",
    "error",
    "torch_version",
    "torchvision_version",
    "finished",
)


def write_index(out_dir: Path | str, exporter: str = "legacy") -> Path:
    """Summarise every ``<out_dir>/<exporter>/*/meta.json`` into ``index.json``."""
    root = Path(out_dir).expanduser() / exporter
    root.mkdir(parents=True, exist_ok=True)
    models: dict[str, Any] = {}
    for meta_path in sorted(root.glob(f"*/{META_FILE}")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            models[meta_path.parent.name] = {"status": "failed", "error": f"unreadable meta.json: {e}"}
            continue
        entry = {k: meta[k] for k in _INDEX_KEYS if k in meta}
        entry["path"] = f"{meta_path.parent.name}/{MODEL_FILE}"
        models[meta_path.parent.name] = entry
    ok = [n for n, m in models.items() if m.get("status") == "ok"]
    failed = {n: m.get("error", m.get("status")) for n, m in models.items() if m.get("status") != "ok"}
    index = {
        "exporter": exporter,
        "generated": _now(),
        **_versions(),
        "count": len(models),
        "ok": len(ok),
        "failed": failed,
        "total_export_seconds": round(sum(m.get("export_seconds") or 0 for m in models.values()), 3),
        "total_file_size_bytes": sum(m.get("file_size_bytes") or 0 for m in models.values()),
        "models": models,
    }
    p = root / INDEX_FILE
    _write_json(p, index)
    return p


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------
def _fmt_bytes(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return str(n)


def _run_isolated(name: str, args: argparse.Namespace) -> tuple[bool, str]:
    """Export ``name`` in a child process (survives segfaults / OOM kills)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--out", str(args.out),
        "--exporter", args.exporter,
        "--models", name,
        "--threads", str(args.threads),
        "--no-index",
        "--quiet",
    ]
    rc = subprocess.call(cmd)
    meta = read_meta(name, args.out, args.exporter) or {}
    if meta.get("status") == "ok" and rc == 0:
        return True, ""
    if meta.get("status") == "failed":
        return False, meta.get("error", f"child rc={rc}")
    # the child died before recording anything useful (e.g. SIGKILL on OOM)
    err = f"export subprocess exited with rc={rc}" + (" (killed by signal %d)" % -rc if rc < 0 else "")
    d = model_dir(name, args.out, args.exporter)
    d.mkdir(parents=True, exist_ok=True)
    meta.update({"name": name, "exporter": args.exporter, "status": "failed", "error": err, "finished": _now()})
    _write_json(d / META_FILE, meta)
    shutil.rmtree(d / ".export_tmp", ignore_errors=True)
    return False, err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output root (default {DEFAULT_OUT})")
    ap.add_argument("--models", default="", help="comma-separated subset (default: all classification models)")
    ap.add_argument("--exporter", choices=EXPORTERS, default="legacy")
    ap.add_argument("--skip-existing", action="store_true", help="keep complete previous exports")
    ap.add_argument("--isolate", action="store_true", help="export each model in its own subprocess")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--no-index", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--list", action="store_true", help="print names, resolutions and published figures, then exit")
    args = ap.parse_args(argv)
    args.out = args.out.expanduser()

    import warnings

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    with contextlib.suppress(AttributeError):
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

    all_names = list_classification_models()
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = [n for n in names if n not in all_names]
        if unknown:
            ap.error(f"unknown model(s): {', '.join(unknown)}")
    else:
        names = all_names

    if args.list:
        for n in names:
            p = published_meta(n)
            print(f"{n:22s} R={p['resolution']:4d} params={p['num_params']:>11,d} gflops={p['gflops']:9.3f}")
        return 0

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, flush=True)

    log(f"exporting {len(names)} model(s) with the {args.exporter} exporter into {args.out / args.exporter}")
    n_fail = 0
    t_all = time.perf_counter()
    for i, name in enumerate(names, 1):
        tag = f"[{i:2d}/{len(names)}] {name:22s}"
        if args.skip_existing and _is_complete(name, args.out, args.exporter):
            m = read_meta(name, args.out, args.exporter) or {}
            log(f"{tag} skipped (exists, export {m.get('export_seconds', 0):.1f}s, {_fmt_bytes(m.get('file_size_bytes'))})")
            continue
        t0 = time.perf_counter()
        if args.isolate:
            ok, err = _run_isolated(name, args)
        else:
            try:
                export_one(name, args.out, args.exporter)
                ok, err = True, ""
            except KeyboardInterrupt:
                raise
            except Exception as e:  # recorded in meta.json by export_one
                ok, err = False, f"{type(e).__name__}: {e}"
        wall = time.perf_counter() - t0
        if ok:
            m = read_meta(name, args.out, args.exporter) or {}
            extra = " ext-data" if m.get("external_data") else ""
            log(
                f"{tag} ok  R={m.get('resolution')} build {m.get('build_seconds', 0):6.1f}s "
                f"export {m.get('export_seconds', 0):7.1f}s wall {wall:7.1f}s "
                f"{_fmt_bytes(m.get('file_size_bytes')):>9s} nodes={m.get('onnx_nodes')}{extra}"
            )
        else:
            n_fail += 1
            log(f"{tag} FAILED after {wall:.1f}s: {err.splitlines()[0] if err else '?'}")
        if not args.no_index:
            write_index(args.out, args.exporter)  # keep the index current during long runs

    if not args.no_index:
        p = write_index(args.out, args.exporter)
        log(f"done in {time.perf_counter() - t_all:.1f}s, {n_fail} failure(s); index: {p}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
