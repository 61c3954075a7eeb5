"""How fast the HTML report is made and first drawn, and how large it is, up to a 50,000-node LLM graph.

For each model: the time to write the report in Python (load, analyse, lay out, render; best
of ``--repeat``, each in a fresh process; the render alone too), its size, and in headless
Chromium (Debian's, through Playwright) the time from navigation start to the first frame
painted with the graph drawn (best and median of ``--repeat`` fresh pages), then the time to
recolour by another metric, to search, and, when the graph has repeated blocks, to unfold them
and to open the instance that holds a search match. Goals (issue #19): first paint under 3 s
and a file under 15 MB, for a 50,000-node export with its repeated blocks folded.

    python tools/bench_report.py [--models graph_6k digits resnet50 llm_50k PATH...] [--repeat 5]
                                 [--baseline GITREV] [--json OUT]

``--baseline REV`` makes every report a second time with the ``mlms_ir`` of that git revision
(extracted to a temporary folder, run in its own processes) and opens the two pages
interleaved, so the before/after figures come from the same run on the same (loaded) machine.

``graph_6k`` is written by ``tools/make_bench_models.py`` and ``llm_50k`` (a 48-layer decoder,
49,838 nodes) by ``tools/make_llm_graph.py``; both are made here when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 3.0
GOAL_MB = 15.0
KNOWN = {
    "graph_6k": ("/tmp/mlms_bench/graph_6k/model.onnx", {}),
    "llm_50k": ("/tmp/mlms_bench/decoder48_50k.onnx", {}),
    "resnet50": ("/tmp/resnet50.onnx", {}),
    "digits": (None, {"batch": 1}),
}
MAKERS = {
    "graph_6k": [str(REPO / "tools" / "make_bench_models.py"), "--only", "graph6k"],
    "llm_50k": [str(REPO / "tools" / "make_llm_graph.py"), "--layers", "48", "--nodes", "50000", "--out", KNOWN["llm_50k"][0]],
}

# run in a fresh process (of this tree or of the baseline's): write the report, print the timings as JSON
_MAKE = """
import json, sys, time
t0 = time.perf_counter()
import mlms_ir
from mlms_ir.report.html import render_html
graph = mlms_ir.load(sys.argv[1], **json.loads(sys.argv[3]))
analysis = mlms_ir.analyze(graph)
t1 = time.perf_counter()
html = render_html(analysis, graph)
t2 = time.perf_counter()
open(sys.argv[2], "w", encoding="utf-8").write(html)
print(json.dumps({"make_s": t2 - t0, "render_s": t2 - t1, "nodes": analysis.totals.nodes, "bytes": len(html.encode())}))
"""


def resolve(spec: str) -> tuple[str, str, dict] | None:
    if spec in KNOWN:
        path, bind = KNOWN[spec]
        if path is None:
            from mlms_ir.zoo import builtin_path

            return spec, str(builtin_path()), bind
        if spec in MAKERS and not Path(path).is_file():
            print(f"== writing {spec} with {Path(MAKERS[spec][0]).name}", flush=True)
            subprocess.run([sys.executable, *MAKERS[spec]], check=False)
        return (spec, path, bind) if Path(path).is_file() else None
    if not Path(spec).is_file():
        raise SystemExit(f"model '{spec}' does not exist")
    return Path(spec).stem, spec, {}


def make(python_path: str, model: str, bind: dict, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": python_path}
    r = subprocess.run([sys.executable, "-c", _MAKE, model, str(out), json.dumps(bind)], env=env, capture_output=True, text=True,
                       cwd=python_path)
    if r.returncode:
        raise SystemExit(f"making the report of {model} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def frames(page) -> None:
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def measure_page(browser, html: Path) -> dict:
    import time

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(html.as_uri(), timeout=120_000)
    page.wait_for_selector("body[data-painted-ms]", timeout=120_000)
    out = {"painted_s": float(page.get_attribute("body", "data-painted-ms")) / 1000,
           "render_s": float(page.get_attribute("body", "data-render-ms")) / 1000,
           "drawn": page.locator("g.node").count()}
    t0 = time.perf_counter()
    page.select_option("#metric", "params")
    frames(page)
    out["recolour_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    page.fill("#search", "MatMul")
    page.press("#search", "Enter")  # a match inside a folded block opens its instance
    frames(page)
    out["search_s"] = time.perf_counter() - t0
    if page.locator("#unfold").count() and page.is_visible("#unfold"):
        t0 = time.perf_counter()
        page.click("#unfold")
        frames(page)
        out["unfold_s"] = time.perf_counter() - t0
    if errors:
        print(f"   page errors: {errors}")
    page.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["digits", "resnet50", "graph_6k", "llm_50k"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="git revision whose mlms_ir makes a second report of each model")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    print(f"== {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="mlms_ir_bench_report_"))
    trees = {"now": str(REPO)}
    if args.baseline:
        base = work / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline, "mlms_ir"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        trees["baseline"] = str(base)
        print(f"   baseline: mlms_ir of {args.baseline}")
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
        print(f"   Chromium {browser.version} (headless), viewport 1400x900")
        for spec in args.models:
            r = resolve(spec)
            if r is None:
                print(f"   ({spec}: not found here, skipped)")
                continue
            label, path, bind = r
            made: dict[str, list[dict]] = {k: [] for k in trees}
            for _ in range(args.repeat):  # interleaved: now, baseline, now, baseline...
                for k, tree in trees.items():
                    made[k].append(make(tree, path, bind, work / f"{label}.{k}.html"))
            pages: dict[str, list[dict]] = {k: [] for k in trees}
            for _ in range(args.repeat):
                for k in trees:
                    pages[k].append(measure_page(browser, work / f"{label}.{k}.html"))
            for k in trees:
                m, pg = made[k], pages[k]
                med = lambda key: statistics.median(x[key] for x in pg)  # noqa: E731
                entry = {"model": label, "tree": k, "path": path, "nodes": m[0]["nodes"], "drawn": pg[0]["drawn"],
                         "html_mb": m[0]["bytes"] / 1e6, "make_s": min(x["make_s"] for x in m),
                         "render_s": min(x["render_s"] for x in m), "first_paint_s_best": min(x["painted_s"] for x in pg),
                         "first_paint_s_median": med("painted_s"), "graph_build_s_median": med("render_s"),
                         "recolour_s_median": med("recolour_s"), "search_s_median": med("search_s"),
                         "unfold_s_median": med("unfold_s") if all("unfold_s" in x for x in pg) else None}
                results.append(entry)
                ok = entry["first_paint_s_median"] < GOAL_S and entry["html_mb"] < GOAL_MB
                print(f"   {label:<9} {k:<8} {entry['nodes']:>6} nodes ({entry['drawn']} drawn), {entry['html_mb']:.2f} MB: "
                      f"written in {entry['make_s']:.2f} s (render {entry['render_s']:.2f} s); first paint "
                      f"{entry['first_paint_s_median']:.2f} s median (best {entry['first_paint_s_best']:.2f} s, of which drawing "
                      f"{entry['graph_build_s_median']:.2f} s); recolour {entry['recolour_s_median'] * 1000:.0f} ms, search+Enter "
                      f"{entry['search_s_median'] * 1000:.0f} ms"
                      + (f", unfold {entry['unfold_s_median'] * 1000:.0f} ms" if entry["unfold_s_median"] is not None else "")
                      + f" -> {'PASS' if ok else 'FAIL'} (< {GOAL_S:g} s, < {GOAL_MB:g} MB)", flush=True)
        browser.close()
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(e["first_paint_s_median"] < GOAL_S and e["html_mb"] < GOAL_MB for e in results if e["tree"] == "now") else 1


if __name__ == "__main__":
    sys.exit(main())
