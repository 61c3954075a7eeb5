"""How fast the HTML report is made and first drawn, on models up to a 6,000-node graph.

For each model: the time to write the report in Python (load, analyse, lay out, render; best
of ``--repeat``), its size, and in headless Chromium (Debian's, through Playwright) the time
from navigation start to the first frame painted with the whole graph drawn (best and median
of ``--repeat`` fresh pages), then the time to recolour by another metric and to search. The
goal: a 6,000-node graph first renders in under 3 s.

    python tools/bench_report.py [--models graph_6k digits resnet50 PATH...] [--repeat 5] [--json OUT]

``graph_6k`` is written by ``tools/make_bench_models.py`` (``/tmp/mlms_bench/graph_6k``; made
here when missing).
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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 3.0
KNOWN = {
    "graph_6k": ("/tmp/mlms_bench/graph_6k/model.onnx", {}),
    "resnet50": ("/tmp/resnet50.onnx", {}),
    "digits": (None, {"batch": 1}),
}


def resolve(spec: str) -> tuple[str, str, dict] | None:
    if spec in KNOWN:
        path, bind = KNOWN[spec]
        if path is None:
            from mlms_ir.zoo import builtin_path

            return spec, str(builtin_path()), bind
        if spec == "graph_6k" and not Path(path).is_file():
            print("== writing graph_6k with tools/make_bench_models.py", flush=True)
            subprocess.run([sys.executable, str(REPO / "tools" / "make_bench_models.py"), "--only", "graph6k"], check=False)
        return (spec, path, bind) if Path(path).is_file() else None
    if not Path(spec).is_file():
        raise SystemExit(f"model '{spec}' does not exist")
    return Path(spec).stem, spec, {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["digits", "resnet50", "graph_6k"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import mlms_ir
    from mlms_ir.report.html import render_html
    from playwright.sync_api import sync_playwright

    print(f"== {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores")
    results = []
    work = Path(tempfile.mkdtemp(prefix="mlms_ir_bench_report_"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
        print(f"   Chromium {browser.version} (headless), viewport 1400x900")
        for spec in args.models:
            r = resolve(spec)
            if r is None:
                print(f"   ({spec}: not found here, skipped)")
                continue
            label, path, bind = r
            make = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                graph = mlms_ir.load(path, **bind)
                analysis = mlms_ir.analyze(graph)
                html = render_html(analysis, graph)
                make.append(time.perf_counter() - t0)
            out = work / f"{label}.html"
            out.write_text(html, encoding="utf-8")
            painted, render, recolour, search = [], [], [], []
            for _ in range(args.repeat):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(out.as_uri())
                page.wait_for_selector("body[data-painted-ms]", timeout=60_000)
                painted.append(float(page.get_attribute("body", "data-painted-ms")) / 1000)
                render.append(float(page.get_attribute("body", "data-render-ms")) / 1000)
                t0 = time.perf_counter()
                page.select_option("#metric", "params")
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                recolour.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                page.fill("#search", "MatMul")
                page.press("#search", "Enter")
                search.append(time.perf_counter() - t0)
                drawn = page.locator("g.node.op").count()
                page.close()
                if errors:
                    print(f"   {label}: page errors: {errors}")
            entry = {"model": label, "path": path, "nodes": analysis.totals.nodes, "drawn": drawn, "html_mib": len(html.encode()) / 2**20,
                     "make_s": min(make), "first_paint_s_best": min(painted), "first_paint_s_median": statistics.median(painted),
                     "graph_build_s_median": statistics.median(render), "recolour_s_median": statistics.median(recolour),
                     "search_s_median": statistics.median(search)}
            results.append(entry)
            verdict = "PASS" if entry["first_paint_s_median"] < GOAL_S else "FAIL"
            print(f"   {label:<10} {entry['nodes']:>6} nodes ({drawn} drawn), {entry['html_mib']:.2f} MiB: written in {entry['make_s']:.2f} s; "
                  f"first paint {entry['first_paint_s_median']:.2f} s median (best {entry['first_paint_s_best']:.2f} s, of which "
                  f"drawing {entry['graph_build_s_median']:.2f} s); recolour {entry['recolour_s_median'] * 1000:.0f} ms, search "
                  f"{entry['search_s_median'] * 1000:.0f} ms -> {verdict} (< {GOAL_S:g} s)")
        browser.close()
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(e["first_paint_s_median"] < GOAL_S for e in results) else 1


if __name__ == "__main__":
    sys.exit(main())
