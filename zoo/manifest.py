"""The zoo's catalog: load and validate the manifests, look models up, resolve ``zoo:NAME`` to a file.

Manifests are data (``manifests/*.json``, each a JSON list; label sets once in ``labels.json``),
written by ``tools/make_zoo_manifests.py`` from torchvision's and timm's own metadata. A manifest is
a plain dict; ``docs/zoo.rst`` describes its fields. Names: a builder's DEFAULT weights are called
after the builder (``resnet50``), its other weights ``builder.member`` in lower case
(``resnet50.imagenet1k_v1``); ``resnet50.imagenet1k_v2`` is an alias of ``resnet50``. A timm model
is called after its architecture when its tag is timm's default (``deit_tiny_patch16_224``, alias
``deit_tiny_patch16_224.fb_in1k``), else ``architecture.tag``.

Nothing here imports torch or timm: looking models up is cheap; building one (:mod:`mlms_ir.zoo.builder`) is not.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from mlms_ir.errors import ManifestError, UnknownModelError

#: The manifest schema this code reads.
SCHEMA_VERSION = 1
#: Prefix of a zoo reference where a model path is expected.
ZOO_PREFIX = "zoo:"
#: Tasks a manifest may have.
from mlms_ir.converters.torchvision_spec import TASKS  # noqa: E402 - one list of tasks
#: Fields every manifest has.
REQUIRED = ("schema_version", "name", "aliases", "task", "framework", "source", "weights", "inputs", "resolution",
            "preprocessing", "labels", "licence", "reference", "num_params", "gflops")
#: Fields of every preprocessing entry.
PREPROCESSING = ("resize", "crop", "mean", "std", "interpolation", "layout", "dtype", "scale")
#: Source kinds of the manifests: how a model is built.
SOURCE_KINDS = ("torchvision", "timm", "builtin")
#: Reference metrics stored as fractions in [0, 1].
FRACTION_METRICS = ("top1", "top5", "box_map", "mask_map", "kp_map", "miou", "pixel_acc", "fl_all")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


def _zoo_files():
    return resources.files("mlms_ir.zoo")


def validate(m: dict[str, Any]) -> list[str]:
    """Problems of one manifest, each a short sentence (an empty list: valid)."""
    name = m.get("name", "?")
    problems = [f"{name}: missing field '{k}'" for k in REQUIRED if k not in m]
    if problems:
        return problems
    if m["schema_version"] != SCHEMA_VERSION:
        problems.append(f"{name}: schema_version {m['schema_version']}, expected {SCHEMA_VERSION}")
    if m["task"] not in TASKS:
        problems.append(f"{name}: unknown task '{m['task']}'")
    if not isinstance(m["num_params"], int) or m["num_params"] <= 0:
        problems.append(f"{name}: num_params must be a positive int")
    if not isinstance(m["gflops"], (int, float)) or not m["gflops"] > 0:
        problems.append(f"{name}: gflops must be positive")
    pre = m["preprocessing"]
    problems += [f"{name}: preprocessing lacks '{k}'" for k in PREPROCESSING if k not in pre]
    one_image = m["task"] in ("object-detection", "instance-segmentation", "keypoint-detection")
    for inp in m["inputs"]:
        if not {"name", "shape", "dtype"} <= set(inp) or inp["shape"][0] != (1 if one_image else "batch"):
            problems.append(f"{name}: input {inp} needs name, dtype and a shape starting with 'batch' (detection: 1)")
    for ref in m["reference"]:
        for k in FRACTION_METRICS:
            v = ref.get(k)
            if v is not None and not (isinstance(v, (int, float)) and not math.isnan(v) and 0.0 <= v <= 1.0):
                problems.append(f"{name}: reference {k}={v} is not a fraction in [0, 1]")
    src = m["source"]
    w = m["weights"]
    if src.get("kind") == "torchvision":
        if not str(w.get("url", "")).startswith("https://"):
            problems.append(f"{name}: weights url must be https")
        if not _SHA_PREFIX.match(str(w.get("sha256_prefix") or "")):
            problems.append(f"{name}: weights sha256_prefix must be lower-case hex")
        if not src.get("builder") or not src.get("weights"):
            problems.append(f"{name}: a torchvision source needs builder and weights")
    elif src.get("kind") == "timm":
        if w.get("url") is not None or w.get("downloadable") is not False:
            problems.append(f"{name}: timm weights live on the Hugging Face hub: url must be null and downloadable false")
        if not str(w.get("weights_note") or "").strip() or not w.get("hf_hub_id"):
            problems.append(f"{name}: timm weights need hf_hub_id and a weights_note")
        if not src.get("model") or not src.get("architecture") or not src.get("weights"):
            problems.append(f"{name}: a timm source needs model, architecture and weights")
        elif src["model"] != src["architecture"] and not str(src["model"]).startswith(src["architecture"] + "."):
            problems.append(f"{name}: timm model '{src['model']}' is not of architecture '{src['architecture']}'")
        elif not (src["weights"] == w.get("hf_hub_id") == f"timm/{src['model']}"):
            problems.append(f"{name}: timm weights '{src['weights']}' and hf_hub_id '{w.get('hf_hub_id')}' must both be "
                            f"'timm/{src['model']}'")
    elif src.get("kind") != "builtin":
        problems.append(f"{name}: unknown source kind '{src.get('kind')}'")
    return problems


@functools.lru_cache(maxsize=1)
def _load() -> tuple[tuple[dict[str, Any], ...], dict[str, int], dict[str, list[str]]]:
    """(manifests, index by lower-case name or alias, label sets); validated once per process."""
    files = sorted((p for p in _zoo_files().joinpath("manifests").iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    manifests: list[dict[str, Any]] = []
    for f in files:
        try:
            items = json.loads(f.read_text())
        except ValueError as exc:
            raise ManifestError(f"zoo manifest file {f.name} is not valid JSON: {exc}") from exc
        if not isinstance(items, list):
            raise ManifestError(f"zoo manifest file {f.name} must hold a JSON list")
        manifests += items
    labels = json.loads(_zoo_files().joinpath("labels.json").read_text())
    index: dict[str, int] = {}
    problems: list[str] = []
    for i, m in enumerate(manifests):
        problems += validate(m)
        for key in [m.get("name", ""), *m.get("aliases", [])]:
            if key.lower() in index:
                problems.append(f"{key}: the name is used twice")
            index[key.lower()] = i
        for key in ("labels", "keypoints"):
            if m.get(key) is not None and m[key] not in labels:
                problems.append(f"{m.get('name')}: unknown label set '{m[key]}'")
    if problems:
        raise ManifestError(f"{len(problems)} problem(s) in the zoo's manifests, first: {problems[0]}")
    return tuple(manifests), index, labels


def manifests() -> list[dict[str, Any]]:
    """Every manifest (copies), in file order (builtin, then timm, then torchvision, each sorted by name)."""
    return copy.deepcopy(list(_load()[0]))


def names() -> list[str]:
    """Every model name (no aliases)."""
    return [m["name"] for m in _load()[0]]


def get(name: str) -> dict[str, Any]:
    """The manifest of ``name`` (a name or alias, any case; a ``zoo:`` prefix is accepted).

    Raises:
        UnknownModelError: no such model; the message lists the closest names.
    """
    key = str(name).removeprefix(ZOO_PREFIX)
    all_manifests, index, _ = _load()
    i = index.get(key.lower())
    if i is None:
        candidates = sorted(index)
        close = difflib.get_close_matches(key.lower(), candidates, n=5, cutoff=0.6)
        close = list(dict.fromkeys(all_manifests[index[c]]["name"] for c in close))
        hint = f"did you mean {', '.join(close)}?" if close else "see `mlms_ir zoo list`"
        raise UnknownModelError(f"the zoo has no model '{key}'; {hint}")
    return copy.deepcopy(all_manifests[i])


def list_models(task: str | None = None, framework: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
    """Manifests, optionally only those of one ``task``, ``framework`` (e.g. ``pytorch``) and/or ``source``
    kind (``torchvision``, ``timm``, ``builtin``)."""
    if task is not None and task not in TASKS:
        close = difflib.get_close_matches(task, TASKS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"one of: {', '.join(TASKS)}"
        raise UnknownModelError(f"the zoo has no task '{task}'; {hint}")
    if source is not None and source not in SOURCE_KINDS:
        raise UnknownModelError(f"the zoo has no source '{source}'; one of: {', '.join(SOURCE_KINDS)}")
    return [copy.deepcopy(m) for m in _load()[0]
            if (task is None or m["task"] == task) and (framework is None or m["framework"] == framework)
            and (source is None or m["source"]["kind"] == source)]


def labels(ref: str) -> list[str]:
    """The names of a label set (a manifest's ``labels`` or ``keypoints`` value)."""
    sets = _load()[2]
    if ref not in sets:
        raise UnknownModelError(f"the zoo has no label set '{ref}'; known: {', '.join(sorted(sets))}")
    return list(sets[ref])


def top1(m: dict[str, Any]) -> float | None:
    """The first reference top-1 accuracy of a manifest (a fraction), or None."""
    return next((r["top1"] for r in m.get("reference", []) if r.get("top1") is not None), None)


def is_zoo_ref(ref: str | os.PathLike[str]) -> bool:
    """Whether ``ref`` is a ``zoo:NAME`` reference."""
    return isinstance(ref, str) and ref.startswith(ZOO_PREFIX)


def resolve(ref: str | os.PathLike[str]) -> Path:
    """A model path for ``ref``: ``zoo:NAME`` gives the zoo model's ONNX file, anything else ``Path(ref)``.

    A zoo model not yet built is built (:func:`mlms_ir.zoo.builder.build`, needs torch): with its
    published weights when they were downloaded before (``mlms_ir zoo build NAME --weights``), else
    with random weights -- fine for cost and speed, never for accuracy. ``zoo:digits-cnn`` is the file
    shipped in the package.
    """
    if not is_zoo_ref(ref):
        return Path(ref)
    from mlms_ir.zoo.builder import build, built_path, weights_downloaded

    name = get(str(ref))["name"]
    path = built_path(name)
    if path is not None:
        return path
    return build(name, weights=weights_downloaded(name))


__all__ = [
    "ManifestError",
    "SCHEMA_VERSION",
    "SOURCE_KINDS",
    "TASKS",
    "UnknownModelError",
    "ZOO_PREFIX",
    "get",
    "is_zoo_ref",
    "labels",
    "list_models",
    "manifests",
    "names",
    "resolve",
    "top1",
    "validate",
]
