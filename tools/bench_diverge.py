"""mlms_ir ``diverge`` against Polygraphy: run time, peak memory, and the same first mismatch.

For each model a deliberately perturbed copy is written (one weight tensor of a mid-graph Conv,
MatMul or Gemm multiplied by ``--scale``, 1.01 by default, in a fresh initializer so that no
other node sees it), so the perturbed node is where the outputs first diverge. Both tools then
compare every intermediate tensor of the perturbed model with the original's, on the same
inputs (seeded N(0, 1), written to an ``.npz``), on ONNX Runtime CPU:

* mlms_ir: ``diverge(ORIGINAL, "ort-perturbed", "ort-none", introduced="none")`` in a fresh
  process, where ``ort-perturbed`` (registered in-process) runs the perturbed file for the same
  graph and ``ort-none`` is ORT with graph optimisations off (as the backend under test gets);
* Polygraphy: ``polygraphy run ORIGINAL --onnxrt --onnx-outputs mark all --save-outputs REF``,
  then ``polygraphy run PERTURBED --onnxrt --onnx-outputs mark all --load-outputs REF --atol A
  --rtol R --save-accuracy-results ACC``; the first failing tensor in graph order is its answer.

Each process is timed (wall) and its peak RSS read from ``os.wait4``'s rusage. On the largest
model, mlms_ir also runs with a small ``memory_budget_bytes`` (streaming in small chunks), and
optionally with ``introduced="auto"`` (re-running the diverging nodes alone).

Polygraphy lives in its own virtualenv (created at ``/tmp/polygraphy_venv`` if no usable one is
found) so that mlms_ir's environment is untouched.

    python tools/bench_diverge.py [--models digits resnet50 vit_b_16 PATH[@name:1x3x224x224]]
                                  [--batch 8] [--budget-small-mib 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEV_PY = REPO / ".venv" / "bin" / "python"
POLY_VENV_DEFAULT = Path("/tmp/polygraphy_venv")

#: Known models: (candidate paths, input shapes). The digits model's path comes from mlms_ir.
KNOWN = {
    "digits": (None, {"image": [1, 1, 8, 8]}),
    "resnet50": (["/tmp/resnet50.onnx", "/work/tv_cache/legacy/resnet50/model.onnx"], {"input": [1, 3, 224, 224]}),
    "vit_b_16": (["/work/tv_cache/legacy/vit_b_16/model.onnx"], {"input": [1, 3, 224, 224]}),
    "vit_l_16": (["/work/tv_cache/legacy/vit_l_16/model.onnx"], {"input": [1, 3, 224, 224]}),
}
WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def run_measured(argv: list[str], cwd: str | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run one process: wall seconds, CPU seconds, peak RSS (MiB, of the process and any child it
    waited for), exit code, stdout and stderr."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=cwd)
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if timeout and time.perf_counter() - t0 > timeout:
                p.kill()
                timed_out = True
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024,
            "rc": p.returncode, "timed_out": timed_out, "stdout": out, "stderr": err}


def py_probe(python: str, code: str) -> str | None:
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    return r.stdout.strip() if r.returncode == 0 else None


VERSIONS = ("import json, importlib\nv = {}\nfor m in ('polygraphy', 'onnx', 'onnxruntime', 'numpy'):\n"
            "    try:\n        v[m] = importlib.import_module(m).__version__\n"
            "    except Exception:\n        v[m] = None\nprint(json.dumps(v))")


def versions(python: str) -> dict[str, str | None]:
    out = py_probe(python, VERSIONS)
    return json.loads(out) if out else {}


def ensure_polygraphy(explicit: str | None) -> tuple[str, dict[str, Any]]:
    """A Python that imports polygraphy, onnx, onnxruntime and numpy: ``--poly-venv``, then
    ``/tmp/polygraphy_venv``, then ``$PEERS_VENV`` (``/tmp/mlms_peers``), then the dev venv;
    otherwise ``/tmp/polygraphy_venv`` is created and filled from PyPI."""
    cands = [Path(explicit)] if explicit else []
    cands += [POLY_VENV_DEFAULT, Path(os.environ.get("PEERS_VENV", "/tmp/mlms_peers")), REPO / ".venv"]
    looked = []
    for venv in cands:
        py = venv / "bin" / "python"
        if not py.is_file():
            looked.append(f"{venv}: no venv")
            continue
        v = versions(str(py))
        missing = [m for m in ("polygraphy", "onnx", "onnxruntime", "numpy") if not v.get(m)]
        if not missing:
            return str(py), {"venv": str(venv), "created": False, "looked": looked, **v}
        looked.append(f"{venv}: lacks {', '.join(missing)}")
    venv = Path(explicit) if explicit else POLY_VENV_DEFAULT
    print(f"== creating {venv} (polygraphy onnx onnxruntime numpy from PyPI)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", "polygraphy", "onnx", "onnxruntime", "numpy"], check=True)
    v = versions(py)
    if not v.get("polygraphy"):
        raise SystemExit(f"polygraphy does not import in {venv} after installing it")
    return py, {"venv": str(venv), "created": True, "looked": looked, **v}


# --------------------------------------------------------------------------------------------
# models, perturbation, inputs
# --------------------------------------------------------------------------------------------


def parse_shape(spec: str) -> tuple[str, list[int]]:
    name, _, dims = spec.rpartition(":")
    return name, [int(d) for d in dims.lower().split("x")]


def resolve_model(spec: str) -> tuple[str, str, dict[str, list[int]]] | None:
    """(label, path, input shapes) for a known name or ``PATH[@name:1x3x224x224[,name2:...]]``;
    None when a known model is absent here."""
    if spec in KNOWN:
        paths, shapes = KNOWN[spec]
        if paths is None:
            from mlms_ir.zoo import builtin_path

            return spec, str(builtin_path()), dict(shapes)
        for p in paths:
            if Path(p).is_file():
                return spec, p, dict(shapes)
        return None
    path, _, shape_spec = spec.partition("@")
    if not Path(path).is_file():
        raise SystemExit(f"model '{path}' does not exist")
    shapes = dict(parse_shape(s) for s in shape_spec.split(",") if s)
    if not shapes:  # the model's own static input shapes
        import onnx

        m = onnx.load(path, load_external_data=False)
        inits = {i.name for i in m.graph.initializer}
        for i in m.graph.input:
            if i.name in inits:
                continue
            dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
            if not dims or any(d <= 0 for d in dims):
                raise SystemExit(f"input '{i.name}' of {path} has dynamic dims: give {path}@{i.name}:1x...")
            shapes[i.name] = dims
    label = Path(path).parent.name if Path(path).name == "model.onnx" else Path(path).stem
    return label, path, shapes


def rebatch(path: str, out: Path, batch: int) -> str:
    """A copy of ``path`` whose inputs and outputs have leading dim ``batch`` (for models exported
    with a fixed batch of 1 whose ops do not depend on it: torchvision's CNNs and ViTs)."""
    import onnx

    m = onnx.load(path)
    inits = {i.name for i in m.graph.initializer}
    for v in list(m.graph.input) + list(m.graph.output):
        if v.name in inits:
            continue
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    del m.graph.value_info[:]
    onnx.save(m, str(out))
    return str(out)


def perturb(path: str, out: Path, index: int, scale: float) -> dict[str, Any]:
    """Write a copy of ``path`` where the ``index``-th (1-based; clipped to the middle of the
    list) Conv/MatMul/Gemm with a float initializer weight uses that weight times ``scale``, in
    a new initializer (weights shared through Identity nodes are not touched elsewhere)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: t for t in m.graph.initializer}
    alias = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "Identity" and n.input and n.output}

    def weight_of(node) -> tuple[int, str] | None:
        slots = [1, 0] if node.op_type == "MatMul" else [1]
        for k in slots:
            if k >= len(node.input) or not node.input[k]:
                continue
            name = node.input[k]
            while name not in inits and name in alias:
                name = alias[name]
            t = inits.get(name)
            if t is not None and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
                return k, name
        return None

    cands = [(i, n, w) for i, n in enumerate(m.graph.node) if n.op_type in WEIGHTED_OPS and (w := weight_of(n))]
    if not cands:
        raise SystemExit(f"{path}: no Conv/MatMul/Gemm with a float initializer weight to perturb")
    k = min(index, (len(cands) + 1) // 2)
    pos, node, (slot, wname) = cands[k - 1]
    arr = numpy_helper.to_array(inits[wname])
    new = numpy_helper.from_array((arr * np.asarray(scale, arr.dtype)).astype(arr.dtype), wname + "__perturbed")
    m.graph.initializer.append(new)
    node.input[slot] = new.name
    onnx.save(m, str(out))
    return {"node": node.name, "op_type": node.op_type, "node_index": pos, "slot": slot, "nodes": len(m.graph.node),
            "weight": wname, "weight_shape": list(arr.shape), "scale": scale, "candidate": k, "candidates": len(cands),
            "file": str(out)}


def write_inputs(shapes: dict[str, list[int]], path: Path, loader: Path, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    np.savez(path, **{k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()})
    loader.write_text(textwrap.dedent(f"""\
        import numpy as np

        def load_data():
            with np.load({str(path)!r}, allow_pickle=False) as d:
                yield {{k: d[k] for k in d.files}}
        """))


def graph_order(path: str) -> dict[str, tuple[int, int, str]]:
    """tensor -> (producing node index, output index, producing node name) in file order."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    return {o: (i, j, n.name) for i, n in enumerate(m.graph.node) for j, o in enumerate(n.output) if o}


# --------------------------------------------------------------------------------------------
# mlms_ir
# --------------------------------------------------------------------------------------------

DRIVER = r'''
"""Driver: one mlms_ir diverge() call in a fresh process (written by tools/bench_diverge.py)."""
import json, os, resource, sys, time

args = json.loads(sys.argv[1])
t_start = time.perf_counter()
import onnx
import mlms_ir
from mlms_ir.backends import registry
from mlms_ir.backends.ort import OrtBackend, OrtSession
from mlms_ir.divergence import diverge


class PerturbedOrt(OrtBackend):
    """ORT running the perturbed file in place of the whole original graph; for any other graph
    (the one-node models of introduced=auto) the same weight of the same node is scaled there."""
    name = "ort-perturbed"

    def _prepare_impl(self, graph, device, **options):
        import numpy as np
        from onnx import helper, numpy_helper
        from mlms_ir.backends.base import model_source

        shapes = {k: list(graph.tensors[k].shape) for k in graph.input_names}
        src = model_source(graph)
        if isinstance(src, str) and os.path.realpath(src) == os.path.realpath(args["model"]):
            return OrtSession(mlms_ir.load(args["perturbed"], input_shapes=shapes), device, **options)
        m = onnx.load(src) if isinstance(src, str) else onnx.load_model_from_string(src)
        p = args["perturbation"]
        for i, n in enumerate(m.graph.node):
            if n.name != p["node"] or p["slot"] >= len(n.input):
                continue
            w = n.input[p["slot"]]
            init = next((t for t in m.graph.initializer if t.name == w), None)
            if init is not None:  # the node's own copy of the weight: scale it as the file does
                a = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array((a * np.asarray(p["scale"], a.dtype)).astype(a.dtype), w))
            else:  # the weight arrives as an input: scale it in the graph
                c = helper.make_tensor("scale__c", onnx.TensorProto.FLOAT, [], [p["scale"]])
                m.graph.node.insert(i, helper.make_node("Constant", [], ["scale__v"], value=c))
                m.graph.node.insert(i + 1, helper.make_node("Mul", [w, "scale__v"], [w + "__scaled"]))
                n.input[p["slot"]] = w + "__scaled"
            break
        return OrtSession(mlms_ir.load(m, input_shapes=shapes, lenient=True), device, **options)


class OrtNoOpt(OrtBackend):
    """ORT with graph optimisations off (diverge() gives opt=none to the backend under test
    only when it is named 'ort'; a reference never gets options)."""
    name = "ort-none"

    def _prepare_impl(self, graph, device, **options):
        options["opt"] = "none"
        return OrtSession(graph, device, **options)


registry._cache["ort-perturbed"] = PerturbedOrt()
registry._cache["ort-none"] = OrtNoOpt()
graph = mlms_ir.load(args["model"], input_shapes=args["shapes"])
acts = [o for n in graph.nodes for o in n.proto.output if o and graph.tensors[o].kind == "activation"]
all_bytes = sum(graph.tensors[o].nbytes or 0 for o in acts)
del graph
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t_import = time.perf_counter() - t_start
t0 = time.perf_counter()
rep = diverge(args["model"], args["backend"], args["reference"], input_shapes=args["shapes"], inputs=args["inputs"],
              atol=args["atol"], rtol=args["rtol"], introduced=args["introduced"],
              memory_budget_bytes=args["budget"], options={"opt": "none"})
wall = time.perf_counter() - t0
exceeding = [n.name for n in rep.nodes if n.exceeds]
intro = [t for t in rep.top_introduced if t["exceeds"]]
print("RESULT " + json.dumps({
    "diverge_wall_s": wall, "import_load_s": t_import, "rss_before_diverge_mib": rss_before,
    "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "first_divergent": rep.first_divergent, "compared_tensors": rep.compared_tensors,
    "missing_tensors": len(rep.missing_tensors), "exceeding_nodes": len(exceeding), "segments": rep.segments,
    "activations": len(acts), "all_activations_mib": all_bytes / 2**20,
    "top_introduced": intro[:3], "introduced_computed": sum(n.introduced_max_abs is not None for n in rep.nodes),
    "output_max_abs": max((o.max_abs or 0.0 for o in rep.outputs), default=None),
}))
'''


def run_mlms(driver: Path, model: str, perturbed: dict[str, Any], shapes, inputs: str, budget: int, introduced: str,
             atol: float, rtol: float, timeout: float, reference: str = "ort-none") -> dict[str, Any]:
    args = {"model": model, "perturbed": perturbed["file"], "perturbation": perturbed, "shapes": shapes, "inputs": inputs, "budget": budget,
            "introduced": introduced, "atol": atol, "rtol": rtol, "backend": "ort-perturbed", "reference": reference}
    r = run_measured([str(DEV_PY), str(driver), json.dumps(args)], timeout=timeout)
    res = next((json.loads(l[7:]) for l in reversed(r["stdout"].splitlines()) if l.startswith("RESULT ")), None)
    if res is None:
        print(f"   mlms_ir driver failed (rc {r['rc']}, timed out {r['timed_out']}):\n{r['stderr'][-3000:]}", flush=True)
    return {"process": {k: r[k] for k in ("wall_s", "cpu_s", "rss_mib", "rc", "timed_out")}, "result": res,
            "budget_bytes": budget, "introduced": introduced, "reference": reference}


# --------------------------------------------------------------------------------------------
# Polygraphy
# --------------------------------------------------------------------------------------------


def compare_results(acc: Any) -> dict[str, bool]:
    """tensor -> passed, from a ``--save-accuracy-results`` file (any nesting)."""
    found: dict[str, bool] = {}

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if isinstance(v, dict) and v.get("polygraphy_class") == "OutputCompareResult":
                    found[k] = found.get(k, True) and bool(v.get("passed"))
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(acc)
    return found


def run_polygraphy(poly_py: str, model: str, perturbed: str, loader: Path, work: Path, atol: float, rtol: float,
                   timeout: float) -> dict[str, Any]:
    poly = [poly_py, "-m", "polygraphy"] if not (Path(poly_py).parent / "polygraphy").is_file() else [str(Path(poly_py).parent / "polygraphy")]
    ref, acc = work / "poly_ref_outputs.json", work / "poly_accuracy.json"
    for p in (ref, acc):
        p.unlink(missing_ok=True)
    common = ["--onnxrt", "--onnx-outputs", "mark", "all", "--data-loader-script", str(loader)]
    save = run_measured(poly + ["run", model] + common + ["--save-outputs", str(ref)], cwd=str(work), timeout=timeout)
    if save["rc"] != 0 or not ref.is_file():
        print(f"   polygraphy (save) failed rc {save['rc']}:\n{(save['stdout'] + save['stderr'])[-3000:]}", flush=True)
        return {"save": _proc(save), "compare": None, "first_failing": None}
    cmp_ = run_measured(poly + ["run", perturbed] + common + ["--load-outputs", str(ref), "--atol", str(atol), "--rtol", str(rtol),
                                                              "--save-accuracy-results", str(acc)], cwd=str(work), timeout=timeout)
    out: dict[str, Any] = {"save": _proc(save), "compare": _proc(cmp_), "ref_outputs_mib": ref.stat().st_size / 2**20}
    if not acc.is_file():
        print(f"   polygraphy (compare) wrote no accuracy results, rc {cmp_['rc']}:\n{(cmp_['stdout'] + cmp_['stderr'])[-3000:]}", flush=True)
        out["first_failing"] = None
        return out
    verdicts = compare_results(json.loads(acc.read_text()))
    order = graph_order(model)
    failing = sorted((t for t, ok in verdicts.items() if not ok), key=lambda t: order.get(t, (1 << 30, 0, "")))
    out.update({"compared_tensors": len(verdicts), "failing_tensors": len(failing),
                "first_failing": ({"tensor": failing[0], "node": order.get(failing[0], (0, 0, None))[2]} if failing else None),
                "rc_compare": cmp_["rc"]})
    ref.unlink(missing_ok=True)
    return out


def _proc(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("wall_s", "cpu_s", "rss_mib", "rc", "timed_out")}


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def environment(poly: dict[str, Any]) -> dict[str, Any]:
    dev = versions(str(DEV_PY))
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 2**20
    except OSError:
        pass
    cpu = None
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), None)
    except OSError:
        pass
    import mlms_ir

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu, "cores": os.cpu_count(),
            "mem_gib": mem, "load_avg": os.getloadavg()[0], "mlms_ir": getattr(mlms_ir, "__version__", None), "git": sha,
            "dev_venv": {k: dev.get(k) for k in ("onnx", "onnxruntime", "numpy")}, "polygraphy_venv": poly}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["digits", "resnet50"],
                    help="known names (digits, resnet50, vit_b_16, vit_l_16) or PATH[@name:1x3x224x224]")
    ap.add_argument("--perturb-index", type=int, default=5, help="which Conv/MatMul/Gemm to perturb (1-based, clipped to mid-graph)")
    ap.add_argument("--scale", type=float, default=1.01)
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1, help="run every model at this batch (a rewritten copy when it is not 1)")
    ap.add_argument("--budget-small-mib", type=float, default=64, help="small memory_budget_bytes for the streaming check")
    ap.add_argument("--memory-model", default=None, help="label of the model for the budget check (default: the largest file)")
    ap.add_argument("--introduced-check", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the budget-check model with introduced='auto' under the small budget")
    ap.add_argument("--poly-venv", default=None)
    ap.add_argument("--workdir", default="/tmp/bench_diverge")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", default=None, help="write all figures here")
    args = ap.parse_args(argv)

    if not DEV_PY.is_file():
        raise SystemExit(f"the dev venv is missing ({DEV_PY})")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    poly_py, poly = ensure_polygraphy(args.poly_venv)
    env = environment(poly)
    print("== environment")
    print(f"   {env['platform']}, Python {env['python']}, {env['cpu']} ({env['cores']} cores), {env['mem_gib']:.1f} GiB, "
          f"load average {env['load_avg']:.2f}")
    print(f"   mlms_ir {env['mlms_ir']} (git {env['git']}): onnx {env['dev_venv']['onnx']}, onnxruntime "
          f"{env['dev_venv']['onnxruntime']}, numpy {env['dev_venv']['numpy']}")
    print(f"   polygraphy {poly['polygraphy']} in {poly['venv']}{' (created)' if poly['created'] else ''}: onnx {poly['onnx']}, "
          f"onnxruntime {poly['onnxruntime']}, numpy {poly['numpy']}" + (f"; skipped: {'; '.join(poly['looked'])}" if poly['looked'] else ""))
    print(f"   tolerances atol {args.atol:g}, rtol {args.rtol:g} (mlms_ir: |d| > atol + rtol*|ref|; polygraphy elemwise: "
          f"|d| > atol and |d|/|ref| > rtol); weight scale {args.scale:g}; ORT CPU; batch {args.batch}")
    driver = work / "mlms_driver.py"
    driver.write_text(DRIVER)

    models = []
    for spec in args.models:
        r = resolve_model(spec)
        if r is None:
            print(f"   (model '{spec}' not found here: skipped)")
        else:
            models.append(r)
    results: dict[str, Any] = {"environment": env, "args": vars(args), "models": []}
    for label, path, shapes in models:
        if args.batch != 1:
            path = rebatch(path, work / f"{label}.b{args.batch}.onnx", args.batch)
            shapes = {k: [args.batch] + v[1:] for k, v in shapes.items()}
            label = f"{label}-b{args.batch}"
        size = Path(path).stat().st_size / 2**20
        print(f"\n== {label}: {path} ({size:.1f} MiB), inputs {', '.join(f'{k}:' + 'x'.join(map(str, v)) for k, v in shapes.items())}")
        pert = perturb(path, work / f"{label}.perturbed.onnx", args.perturb_index, args.scale)
        print(f"   perturbed: {pert['op_type']} '{pert['node']}' (node {pert['node_index'] + 1}/{pert['nodes']}, "
              f"weighted op {pert['candidate']}/{pert['candidates']}), weight '{pert['weight']}' {pert['weight_shape']} x {args.scale:g}")
        safe = "".join(c if c.isalnum() else "_" for c in label)
        npz, loader = work / f"{safe}.inputs.npz", work / f"loader_{safe}.py"  # polygraphy imports it: no dots
        write_inputs(shapes, npz, loader, args.seed)

        default_budget = 1 << 30
        mi = run_mlms(driver, path, pert, shapes, str(npz), default_budget, "none", args.atol, args.rtol, args.timeout)
        pg = run_polygraphy(poly_py, path, pert["file"], loader, work, args.atol, args.rtol, args.timeout)
        m_first = (mi["result"] or {}).get("first_divergent")
        p_first = pg.get("first_failing")
        agree = bool(m_first and p_first and m_first["name"] == p_first["node"] == pert["node"])
        entry = {"label": label, "path": path, "file_mib": size, "shapes": shapes, "perturbed": pert,
                 "mlms_ir": mi, "polygraphy": pg, "agree": agree}
        results["models"].append(entry)
        res = mi["result"] or {}
        print(f"   mlms_ir    diverge(introduced=none, budget 1 GiB): process {mi['process']['wall_s']:.2f} s "
              f"(diverge() {res.get('diverge_wall_s', float('nan')):.2f} s), peak RSS {mi['process']['rss_mib']:.0f} MiB "
              f"(before diverge {res.get('rss_before_diverge_mib', float('nan')):.0f} MiB); compared {res.get('compared_tensors')}"
              f"/{res.get('activations')} tensors ({res.get('all_activations_mib', 0):.1f} MiB all at once), missing "
              f"{res.get('missing_tensors')}, exceeding nodes {res.get('exceeding_nodes')}, segments {res.get('segments')}")
        if pg.get("compare"):
            print(f"   polygraphy save {pg['save']['wall_s']:.2f} s / {pg['save']['rss_mib']:.0f} MiB + compare "
                  f"{pg['compare']['wall_s']:.2f} s / {pg['compare']['rss_mib']:.0f} MiB = {pg['save']['wall_s'] + pg['compare']['wall_s']:.2f} s, "
                  f"peak RSS {max(pg['save']['rss_mib'], pg['compare']['rss_mib']):.0f} MiB; compared {pg.get('compared_tensors')} "
                  f"tensors (saved outputs {pg.get('ref_outputs_mib', 0):.1f} MiB), failing {pg.get('failing_tensors')}")
        print(f"   first mismatch: mlms_ir {m_first['name'] if m_first else None} | polygraphy "
              f"{(p_first['node'] + ' (' + p_first['tensor'] + ')') if p_first else None} | perturbed {pert['node']} -> "
              f"{'AGREE' if agree else 'DISAGREE'}")

    if results["models"]:
        big = (next((e for e in results["models"] if e["label"] == args.memory_model), None) if args.memory_model
               else max(results["models"], key=lambda e: e["file_mib"]))
        if big is None:
            raise SystemExit(f"--memory-model '{args.memory_model}' is not among the models run")
        small = int(args.budget_small_mib * 2**20)
        npz = str(work / (''.join(c if c.isalnum() else '_' for c in big['label']) + ".inputs.npz"))
        print(f"\n== memory budget on {big['label']} (mlms_ir, introduced=none unless said)")
        runs = [("1 GiB (default)", big["mlms_ir"])]
        runs.append((f"{args.budget_small_mib:g} MiB", run_mlms(driver, big["path"], big["perturbed"], big["shapes"], npz,
                                                               small, "none", args.atol, args.rtol, args.timeout)))
        if args.introduced_check:
            runs.append((f"{args.budget_small_mib:g} MiB, introduced=auto",
                         run_mlms(driver, big["path"], big["perturbed"], big["shapes"], npz, small, "auto",
                                  args.atol, args.rtol, args.timeout)))
        results["memory"] = {"model": big["label"], "runs": [{"label": k, **v} for k, v in runs]}
        for k, v in runs:
            res = v["result"] or {}
            fd = (res.get("first_divergent") or {}).get("name")
            extra = (f", introduced computed for {res.get('introduced_computed')} nodes, top {[t['name'] for t in res.get('top_introduced', [])][:1]}"
                     if v["introduced"] == "auto" else "")
            print(f"   budget {k:<28} process {v['process']['wall_s']:7.2f} s, diverge() {res.get('diverge_wall_s', float('nan')):7.2f} s, "
                  f"peak RSS {v['process']['rss_mib']:6.0f} MiB (before diverge {res.get('rss_before_diverge_mib', float('nan')):.0f} MiB), "
                  f"segments {res.get('segments')}, first {fd}{extra}")

    print("\n== summary")
    print(f"   {'model':<10} {'tool':<11} {'wall s':>8} {'peak RSS MiB':>13}  first mismatch (node)")
    for e in results["models"]:
        mi, pg = e["mlms_ir"], e["polygraphy"]
        mf = ((mi["result"] or {}).get("first_divergent") or {}).get("name")
        print(f"   {e['label']:<10} {'mlms_ir':<11} {mi['process']['wall_s']:8.2f} {mi['process']['rss_mib']:13.0f}  {mf}")
        if pg.get("compare"):
            print(f"   {'':<10} {'polygraphy':<11} {pg['save']['wall_s'] + pg['compare']['wall_s']:8.2f} "
                  f"{max(pg['save']['rss_mib'], pg['compare']['rss_mib']):13.0f}  {(pg.get('first_failing') or {}).get('node')}")
        print(f"   {'':<10} {'agree':<11} {str(e['agree']):>8}   (perturbed: {e['perturbed']['node']})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\n   figures written to {args.json}")
    return 0 if all(e["agree"] for e in results["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
