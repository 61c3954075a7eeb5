"""``runs list|show|compare``: the results store on the command line; and recording into it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from mlms_ir.cli.common import emit, write_text
from mlms_ir.errors import MlmsIrError


def record(store: str | None, make_records: Callable[[], list], quiet: bool = False) -> list:
    """Keep a command's results in the store (``store``: a path, ``none``, or None for the
    default). A store that cannot be written costs a warning, never the command's result.
    ``quiet`` (for a command about to fail with its one error line) says nothing on success."""
    from mlms_ir.store import Store, resolve_store_path

    path = resolve_store_path(store)
    if path is None:
        return []
    try:
        with Store(path) as st:
            runs = st.add_all(make_records())
    except MlmsIrError as exc:
        print(f"mlms_ir: warning: not recorded: {exc}", file=sys.stderr)
        return []
    if runs and not quiet:
        ids = ", ".join(str(r.id) for r in runs)
        print(f"recorded {'run' if len(runs) == 1 else 'runs'} {ids} in {path}", file=sys.stderr)
    return runs


def _open(store: str | None):
    from mlms_ir.store import Store, StoreError, resolve_store_path

    path = resolve_store_path(store)
    if path is None:
        raise StoreError("no results store: --store none (or MLMS_IR_STORE=none) turns it off")
    if not path.exists():
        raise StoreError(f"no results store at '{path}' yet: run analyze, run, profile or diverge first")
    return Store(path)


class Runs:
    """The results store: list, show and compare recorded runs."""

    def list(self, kind: str | None = None, model: str | None = None, backend: str | None = None, sweep: str | None = None,
             limit: int = 30, store: str | None = None, format: str = "table") -> None:  # noqa: A002
        """The newest recorded runs first.

        Args:
            kind: only runs of this kind: analyze, run, scenario, profile, counters, diverge or evaluate.
            model: only runs whose model name or path contains this.
            backend: only runs of this backend.
            sweep: only the runs of this sweep.
            limit: at most this many.
            store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
            format: table or json.
        """
        from mlms_ir.store import KINDS

        if kind is not None and kind not in KINDS:
            raise MlmsIrError(f"unknown --kind '{kind}'; one of: {', '.join(KINDS)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise MlmsIrError(f"--limit must be a positive integer, got '{limit}'")
        with _open(store) as st:
            runs = st.list(kind=kind, model=model, backend=backend, sweep=sweep, limit=limit)
            path = st.path
        if str(format) == "json":
            write_text(json.dumps({"store": str(path), "runs": [r.to_dict() for r in runs]}, indent=2) + "\n", None)
            return
        from mlms_ir.report.store_text import render_run_list
        from mlms_ir.report.text import default_console

        render_run_list(runs, str(path), default_console())

    def show(self, run: str, store: str | None = None, format: str = "table", payload: bool = False) -> None:  # noqa: A002
        """One recorded run: what ran where, its figures, and (with --payload) its whole report.

        Args:
            run: the run's id or uid (a unique prefix of at least 6 characters).
            store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
            format: table or json.
            payload: include the whole stored report (JSON).
        """
        with _open(store) as st:
            r = st.get(run)
            nodes = st.nodes(r.id)
            report = st.payload(r.id) if payload else None
        if str(format) == "json":
            d = r.to_dict()
            d["nodes"] = nodes
            if payload:
                d["payload"] = report
            write_text(json.dumps(d, indent=2) + "\n", None)
            return
        from mlms_ir.report.store_text import render_run
        from mlms_ir.report.text import default_console

        render_run(r, nodes, report, default_console())

    def compare(self, *runs: str, store: str | None = None, format: str | None = None, output: str | None = None,  # noqa: A002
                top: int = 20) -> None:
        """Runs side by side, the first one the baseline: the settings that differ between them
        (first), what ran where, latency, accuracy, errors, and per-node time deltas (profiles)
        or errors (divergence).

        Args:
            runs: two or more run ids or uids.
            store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
            format: table (default), json or html; inferred from --output's suffix.
            output: write to this file instead of stdout.
            top: how many nodes the per-node table lists.
        """
        from pathlib import Path

        from mlms_ir.compare import compare_runs

        if len(runs) < 2:
            raise MlmsIrError("give two or more runs to compare (see 'runs list')")
        fmt = format or {".json": "json", ".html": "html", ".htm": "html"}.get(Path(output).suffix.lower() if output else "", "table")
        if fmt not in ("table", "json", "html"):
            raise MlmsIrError(f"unknown --format '{fmt}'; choose table, json or html")
        notes: list[str] = []
        with _open(store) as st:
            cmp = compare_runs(st, list(runs), top=int(top), notes=notes)
        emit(cmp, fmt, output)
        inline = fmt == "table" and not output
        for line in notes:  # under the table it belongs to; beside JSON, HTML or a file, on stderr
            print(line if inline else f"mlms_ir: note: {line}", file=sys.stdout if inline else sys.stderr)


def sweep(spec: str, store: str | None = None, executor: str = "local", address: str | None = None, workers: int = 1,
          progress: bool = True, format: str = "table") -> None:  # noqa: A002
    """Run a sweep: a YAML matrix of models x backends x devices x batch sizes x precisions.

    Each job runs in its own worker process with a timeout; its result goes into the results
    store as soon as it ends. A failing job is recorded as failed and the sweep goes on; running
    the same spec again resumes it, skipping the jobs already stored.

    Args:
        spec: the sweep's YAML file (see docs/store.rst).
        store: the results store (default: $MLMS_IR_STORE, else the user's data dir).
        executor: local (worker processes here) or ray (a Ray cluster).
        address: the Ray cluster's address (default: start a local one, or RAY_ADDRESS).
        workers: local jobs run at once (1 keeps timings undisturbed).
        progress: show a progress bar.
        format: table or json (the summary).
    """
    from mlms_ir.store import StoreError, resolve_store_path
    from mlms_ir.sweep import load_spec, run_sweep

    path = resolve_store_path(store)
    if path is None:
        raise StoreError("a sweep keeps its results in the store: give --store PATH")
    sp = load_spec(spec)
    res = run_sweep(sp, path, executor=str(executor), workers=workers, address=address, progress=bool(progress))
    if str(format) == "json":
        write_text(json.dumps({"store": str(path), **res.to_dict()}, indent=2) + "\n", None)
    else:
        print(f"sweep {res.name}: {res.jobs} jobs, {res.skipped} already stored, {res.ok} ok, {res.failed} failed "
              f"in {res.seconds:.1f} s; runs {_ranges(res.run_ids)} in {path}")
    if res.failed and not res.ok and not res.skipped:
        raise MlmsIrError(f"every job of sweep '{res.name}' failed (see 'runs list --sweep {res.name}')")


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    out, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}-{prev}" if prev != start else str(start))
        if i is not None:
            start = prev = i
    return ", ".join(out)
