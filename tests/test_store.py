"""The results store: schema, migrations, concurrent writers, recording from the CLI, runs list/show/compare."""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from mlms_ir.store import MIGRATIONS, STORE_SCHEMA_VERSION, Store, StoreError, StoreRecord, default_store_path, resolve_store_path


def _rec(**kw) -> StoreRecord:
    base = dict(kind="run", backend="ort", device="cpu", batch=1, model_name="m.onnx", system={"host": "h1"},
                summary={"latency_ms": {"p50": 1.5}}, nodes=[{"node_id": "n0", "name": "a", "op_type": "Conv", "time_us": 3.0}],
                payload={"x": [1, 2, 3]})
    base.update(kw)
    return StoreRecord(**base)


def test_add_and_read_back(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        assert st.version == STORE_SCHEMA_VERSION == len(MIGRATIONS)
        r = st.add(_rec(summary={"latency_ms": {"p50": 1.5}, "bad": math.nan}))
        assert (r.id, r.kind, r.backend, r.batch, r.host, r.status) == (1, "run", "ort", 1, "h1", "ok")
        assert r.summary == {"latency_ms": {"p50": 1.5}, "bad": None}  # NaN is stored as null
        assert st.get(r.uid[:8]).id == 1 and st.get("1").uid == r.uid
        assert st.nodes(1) == [{"node_id": "n0", "name": "a", "op_type": "Conv", "time_us": 3.0, "share": None, "macs": None,
                                "flops": None, "params": None, "max_abs": None, "introduced_max_abs": None}]
        assert st.payload(1) == {"x": [1, 2, 3]}
        st.add(_rec(kind="profile", backend="torch", model_name="other.onnx"))
        assert [x.id for x in st.list()] == [2, 1]
        assert [x.id for x in st.list(kind="run")] == [1] and [x.id for x in st.list(model="other")] == [2]
        assert [x.id for x in st.list(backend="torch")] == [2]
        with pytest.raises(StoreError, match="no run '99'"):
            st.get(99)
        with pytest.raises(StoreError, match="unknown kind"):
            st.add(_rec(kind="nonsense"))


def test_a_uid_prefix_of_digits_only_finds_its_run(tmp_path):
    """A uid is hex: its first 8 characters are all digits once in 43 runs, and such a prefix is
    no run's id; it is taken as the uid's prefix (an id that exists still wins)."""
    with Store(tmp_path / "s.sqlite") as st:
        r = st.add(_rec())
        st._db.execute("UPDATE runs SET uid = '1234567890abcdef' WHERE id = ?", (r.id,))
        assert st.get("12345678").id == r.id and st.get("1").id == r.id
        with pytest.raises(StoreError, match="no run '12345678'"):
            st.get(12345678)  # an int is an id


def test_an_infinite_error_is_stored_as_infinite_not_unknown(tmp_path):
    """One convention for infinities (results' JSON, json_safe, the store): "inf" in JSON, REAL
    infinity in the nodes table; only NaN is unknown. A node named "inf" keeps its name."""
    from mlms_ir.results.base import json_safe
    from mlms_ir.store import records_from_divergence

    assert json_safe({"a": math.inf, "b": (-math.inf, math.nan, 1.5)}) == {"a": "inf", "b": ["-inf", None, 1.5]}
    d = {"backend": "ort", "model": {"name": "m.onnx"}, "reference": "reference",
         "outputs": [{"name": "y", "max_abs": 0.5}, {"name": "z", "max_abs": "inf"}],  # as DivergenceReport.to_dict writes it
         "nodes": [{"id": "n0", "name": "inf", "op_type": "MatMul", "max_abs": "inf", "introduced_max_abs": math.inf},
                   {"id": "n1", "name": "b", "op_type": "Add", "max_abs": math.nan, "introduced_max_abs": 0.25}]}
    (rec,) = records_from_divergence([d], system={"host": "h1"})
    assert rec.summary["output_max_abs"] == math.inf
    with Store(tmp_path / "s.sqlite") as st:
        r = st.add(rec)
        assert r.summary["output_max_abs"] == "inf"
        n0, n1 = st.nodes(r.id)
        assert n0["name"] == "inf" and n0["max_abs"] == math.inf and n0["introduced_max_abs"] == math.inf
        assert n1["max_abs"] is None and n1["introduced_max_abs"] == 0.25
        top = st._db.execute("SELECT node_id FROM nodes WHERE run_id = ? ORDER BY max_abs DESC", (r.id,)).fetchone()
        assert top == ("n0",)


def test_a_failed_write_leaves_nothing_half_written(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(StoreError):
            st.add(_rec(nodes=[{"node_id": "n0"}, {"node_id": object()}]))  # the second node cannot be bound
        assert st.count() == 0 and st._db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0] == 0


def test_migrates_an_old_store_and_refuses_a_newer_one(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO runs (uid, kind, status, created_at) VALUES ('abcdef0123', 'analyze', 'ok', '2026-01-01')")
    db.commit()
    db.close()
    with Store(path) as st:
        assert st.version == STORE_SCHEMA_VERSION == 3
        old = st.get(1)
        assert (old.kind, old.sweep, old.job_key) == ("analyze", None, None)
        st.add(_rec(sweep="s", job_key="k"))
        assert st.jobs_done("s") == {"k"}
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this mlms_ir knows"):
        Store(path)


def test_corrupt_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the results store"):
        Store(bad)


def _writer(path: str, k: int, n: int) -> None:
    with Store(path) as st:
        for i in range(n):
            st.add(_rec(batch=k * 1000 + i))


@pytest.mark.slow
def test_several_processes_write_at_once(tmp_path):
    path = str(tmp_path / "s.sqlite")
    Store(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k, 25)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with Store(path) as st:
        runs = st.list(limit=None)
        assert len(runs) == 100 and sorted(r.batch for r in runs) == sorted(k * 1000 + i for k in range(4) for i in range(25))
        assert st._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("MLMS_IR_STORE", "none")
    assert default_store_path() is None and resolve_store_path(None) is None
    assert resolve_store_path(str(tmp_path / "x.sqlite")) == tmp_path / "x.sqlite"
    monkeypatch.delenv("MLMS_IR_STORE")
    assert default_store_path().name == "results.sqlite" and "mlms_ir" in str(default_store_path())
    assert resolve_store_path("off") is None


def _cli(*args, store=None, env_store=None):
    import os

    env = dict(os.environ)
    if env_store is not None:
        env["MLMS_IR_STORE"] = str(env_store)
    argv = [sys.executable, "-m", "mlms_ir", *args] + (["--store", str(store)] if store is not None else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_every_command_records_its_results(tmp_path):
    db = tmp_path / "r.sqlite"
    for args in (["analyze", "--batch", "1"], ["run", "--batch", "1,2", "--backends", "ort,reference", "--iters", "3"],
                 ["profile", "--batch", "1", "--runs", "2", "--iters", "3"], ["diverge", "--batch", "1"]):
        r = _cli(*args, env_store=db)
        assert r.returncode == 0, r.stderr
        assert f"in {db}" in r.stderr and "recorded run" in r.stderr
    with Store(db) as st:
        runs = list(reversed(st.list()))
        assert [r.kind for r in runs] == ["analyze", "run", "run", "run", "run", "profile", "diverge"]
        assert {(r.backend, r.batch) for r in runs if r.kind == "run"} == {("ort", 1), ("ort", 2), ("reference", 1), ("reference", 2)}
        assert all(r.model_name == "digits_cnn.onnx" and len(r.model_sha256) == 64 for r in runs)
        assert runs[0].summary["macs"] > 0 and len(st.nodes(runs[0].id)) == 11
        prof = runs[5]
        assert prof.summary["latency_ms"]["p50"] > 0 and prof.system["cpu"]["logical_cores"] >= 1
        assert all(n["time_us"] is not None for n in st.nodes(prof.id))
        assert st.payload(prof.id)["backend"] == "ort"
        div = runs[6]
        assert div.summary["first_divergent"] is None and all(n["max_abs"] is not None for n in st.nodes(div.id))


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_analyze_output_and_store_get_the_same_analysis_and_an_unwritable_output_still_records(tmp_path, fmt):
    """analyze --format json writes its text to the output and compresses it for the store piece
    by piece (never holding the whole text); the default table is written first, then the store
    gets the same JSON (a large graph's node lines for it are encoded by a worker meanwhile). When
    the output cannot be written, the command fails with one line and the store still gets the
    whole analysis."""
    db = tmp_path / "r.sqlite"
    out = tmp_path / "a.json"
    assert _cli("analyze", "--batch", "1", "--format", "json", "--output", str(out), store="none").returncode == 0
    r = _cli("analyze", "--batch", "1", "--format", fmt, "--output", str(tmp_path / f"a.{fmt}"), store=db)
    assert r.returncode == 0, r.stderr
    assert "MACs" in (tmp_path / f"a.{fmt}").read_text()
    r2 = _cli("analyze", "--batch", "1", "--format", fmt, "--output", str(tmp_path / "no" / "such" / "a.out"), store=db)
    assert r2.returncode != 0 and r2.stderr.strip().splitlines()[-1].startswith("mlms_ir: error: cannot write")
    assert "Traceback" not in r2.stderr
    written = json.loads(out.read_text())
    with Store(db) as st:
        first, second = sorted(st.list(), key=lambda run: run.id)
        assert st.payload(first.id) == written == st.payload(second.id)
        assert [n["node_id"] for n in st.nodes(second.id)] == [n["id"] for n in written["nodes"]]


def test_store_none_records_nothing_and_a_bad_store_only_warns(tmp_path):
    r = _cli("analyze", "--batch", "1", "--format", "json", store="none")
    assert r.returncode == 0 and "recorded" not in r.stderr
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 200)
    r = _cli("analyze", "--batch", "1", "--format", "json", store=bad)
    assert r.returncode == 0 and json.loads(r.stdout)["totals"]["macs"] > 0
    assert r.stderr.strip().startswith("mlms_ir: warning: not recorded: cannot open the results store")


@pytest.mark.slow
def test_runs_list_show_compare(tmp_path):
    db = tmp_path / "r.sqlite"
    for opt in ("all", "none"):
        assert _cli("profile", "--batch", "1", "--runs", "2", "--iters", "3", "--opt", opt, env_store=db).returncode == 0
    r = _cli("runs", "list", "--format", "json", env_store=db)
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in json.loads(r.stdout)["runs"]] == [2, 1]
    r = _cli("runs", "list", env_store=db)
    assert r.returncode == 0 and "profile" in r.stdout
    r = _cli("runs", "show", "1", "--format", "json", "--payload", env_store=db)
    d = json.loads(r.stdout)
    assert d["kind"] == "profile" and len(d["nodes"]) >= 8 and d["payload"]["options"]["opt"] == "all"
    r = _cli("runs", "compare", "1", "2", "--format", "json", env_store=db)
    assert r.returncode == 0, r.stderr
    cmp = json.loads(r.stdout)
    fields = {row["field"]: row for row in cmp["figures"]}
    p50 = fields["latency p50 (ms)"]
    assert p50["ratio_to_first"][1] == pytest.approx(p50["values"][1] / p50["values"][0])
    pn = cmp["per_node"]
    assert pn["metric"] == "time_us" and pn["compared_nodes"] >= 8
    first = pn["nodes"][0]
    assert first["delta"][1] == pytest.approx(first["values"][1] - first["values"][0])
    assert abs(first["delta"][1]) >= max(abs(n["delta"][1]) for n in pn["nodes"])
    # the settings that differ come first: --opt all against --opt none
    assert list(cmp)[:4] == ["kind", "schema_version", "store", "differing_settings"] and cmp["schema_version"] == "1.2"
    assert cmp["differing_settings"] == [{"field": "opt", "values": ["all", "none"]}]
    r = _cli("runs", "compare", "1", "2", env_store=db)
    assert r.returncode == 0 and "runs compared" in r.stdout and "per node: time_us" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert re.match(r"│ setting opt +│ all +│ none +│$", rows[0]) and re.match(r"│ kind +│ profile +│ profile +│$", rows[1]), r.stdout
    # three significant digits (0.0275, not 0.02746), whatever the machine's speed
    sig3 = r"(?:0\.0*[1-9]\d{0,2}|[1-9]\d{0,2}(?:\.\d{1,2})?)"
    assert re.search(rf"│ latency p50 \(ms\) +│ {sig3} +│ {sig3} \({sig3}x\) +│", r.stdout), r.stdout
    t = r"[\d.]+ (?:µs|ms|s)"  # a node of a loaded machine may take milliseconds
    assert re.search(rf"│ /features/conv1/Conv +│ Conv +│ +{t} │ +{t} │ +[+-]{t} │", r.stdout), r.stdout
    out = tmp_path / "cmp.html"
    r = _cli("runs", "compare", "1", "2", "--output", str(out), env_store=db)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "Runs 1, 2 compared" in html and "<script" not in html and "/features/conv1/Conv" in html
    assert html.index("<h2>Settings that differ</h2>") < html.index("<h2>What ran where</h2>")
    assert "<tr><td>opt</td><td>all</td><td>none</td></tr>" in html


def test_compare_lists_the_settings_that_differ(tmp_path):
    from mlms_ir.compare import compare_runs, flat_settings
    from mlms_ir.report.store_text import render_compare

    assert flat_settings({"options": {"opt": "all", "precision": "fp32"}, "bindings": {"dims": {"N": 4}}, "iterations": 50}) == {
        "opt": "all", "precision": "fp32", "bindings.dims.N": 4, "iterations": 50}
    same = {"warmup": 5, "inputs": "random"}
    with Store(tmp_path / "s.sqlite") as st:
        st.add(_rec(settings={**same, "iterations": 100, "options": {"opt": "all"}}))
        st.add(_rec(settings={**same, "iterations": 50, "options": {"opt": "none", "threads": 2}}))
        st.add(_rec(settings={**same, "iterations": 100, "options": {"opt": "all"}}))
        cmp = compare_runs(st, [1, 2, 3])
        assert [(r.field, r.values) for r in cmp.differing_settings] == [
            ("iterations", [100, 50, 100]), ("opt", ["all", "none", "all"]), ("threads", [None, 2, None])]
        assert type(cmp).from_dict(json.loads(cmp.to_json())) == cmp
        out = io.StringIO()
        render_compare(cmp, Console(file=out, width=120, color_system=None))
        rows = [line for line in out.getvalue().splitlines() if line.startswith("│")]
        assert [re.sub(r" +", " ", line) for line in rows[:3]] == [
            "│ setting iterations │ 100 │ 50 │ 100 │", "│ setting opt │ all │ none │ all │", "│ setting threads │ - │ 2 │ - │"]
        cmp = compare_runs(st, [1, 3])
        assert cmp.differing_settings == []
        out = io.StringIO()
        render_compare(cmp, Console(file=out, width=120, color_system=None))
        assert "every run recorded the same settings" in out.getvalue() and "setting " not in out.getvalue()


def test_runs_list_cuts_a_long_error_at_a_word_and_json_keeps_it_whole(tmp_path):
    import os

    db = tmp_path / "r.sqlite"
    error = ("BackendError: onnxruntime could not create a session for the model: [ONNXRuntimeError] : 10 : INVALID_GRAPH : "
             "This is an invalid model. Type Error: Type 'tensor(int8)' of input parameter (x) of operator (Relu) in node (r) is invalid.")
    with Store(db) as st:
        st.add(_rec(status="failed", error=error, summary={}))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe: the table keeps its natural width
    env["MLMS_IR_STORE"] = str(db)
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "runs", "list"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    # 80 characters at most, cut after a whole word ('model', not '[ONNXRuntime'), marked with '…'
    assert "│ BackendError: onnxruntime could not create a session for the model… │" in r.stdout, r.stdout
    assert "[ONNXRuntime" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "mlms_ir", "runs", "list", "--format", "json"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert json.loads(r.stdout)["runs"][0]["error"] == error


def test_compare_of_runs_carries_the_output_verdict(tmp_path):
    db = tmp_path / "r.sqlite"
    r = _cli("run", "--backends", "ort,reference", "--batch", "2", "--iters", "2", "--warmup", "0", "--atol", "0", "--rtol", "0",
             env_store=db)
    assert r.returncode == 0, r.stderr
    r = _cli("runs", "compare", "1", "2", "--format", "json", env_store=db)
    fields = {row["field"]: row for row in json.loads(r.stdout)["figures"]}
    assert fields["outputs agree with first backend"]["values"] == [None, False]


def test_runs_errors_are_one_line(tmp_path):
    db = tmp_path / "r.sqlite"
    r = _cli("runs", "list", env_store=db)
    assert r.returncode == 2 and r.stderr.strip() == f"mlms_ir: error: no results store at '{db}' yet: run analyze, run, profile or diverge first"
    assert _cli("analyze", "--batch", "1", "--format", "json", env_store=db).returncode == 0
    r = _cli("runs", "compare", "1", env_store=db)
    assert r.returncode == 2 and "give two or more runs" in r.stderr
    r = _cli("runs", "show", "42", env_store=db)
    assert r.returncode == 2 and "no run '42'" in r.stderr and "Traceback" not in r.stderr


def test_compare_html_escapes_model_strings(tmp_path):
    from mlms_ir.compare import compare_runs
    from mlms_ir.report.compare_html import render_compare_html

    hostile = "<img src=x onerror=alert(1)>"
    with Store(tmp_path / "s.sqlite") as st:
        st.add(_rec(kind="profile", model_name=hostile, nodes=[{"node_id": "n0", "name": hostile, "op_type": "<b>", "time_us": 1.0}]))
        st.add(_rec(kind="profile", model_name=hostile, nodes=[{"node_id": "n0", "name": hostile, "op_type": "<b>", "time_us": 2.0}]))
        html = render_compare_html(compare_runs(st, [1, 2]))
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html and "<b>" not in html
    assert Path  # the page has no script at all
    assert "<script" not in html


def test_an_analysis_with_formulas_is_stored_and_compared_with_them(tmp_path, cnn):
    import mlms_ir
    from mlms_ir.compare import compare_runs
    from mlms_ir.store import records_from_analysis

    with Store(tmp_path / "s.sqlite") as st:
        symbolic = mlms_ir.analyze(cnn)  # batch left unbound: figures are formulas of N
        bound = mlms_ir.analyze(cnn, batch=2)
        a = st.add(records_from_analysis(symbolic)[0])
        b = st.add(records_from_analysis(bound)[0])
        assert a.summary["macs"] is None and a.summary["symbolic"]["macs"] == symbolic.totals.symbolic["macs"]
        cmp = compare_runs(st, [a.id, b.id])
        rows = {r.field: r for r in cmp.figures}
        assert rows["MACs"].values == [symbolic.totals.symbolic["macs"], bound.totals.macs]
        assert rows["MACs"].ratio_to_first == [None, None]  # no ratio to a formula
        assert type(cmp).from_dict(json.loads(cmp.to_json())) == cmp


# --------------------------------------------------------------------------- schema 3: an analysis' nodes in its payload
def _old_analysis_rows(a) -> list[dict]:
    """An analysis' per-node dicts as records_from_analysis made them before schema 3 (one row each)."""
    return [{"node_id": n.id, "name": n.name, "op_type": n.op_type, "macs": n.macs, "flops": n.flops, "params": n.params}
            for n in a.nodes]


def test_a_schema_2_store_opens_and_its_node_rows_read_back_the_same(tmp_path, cnn):
    """A store written before schema 3 (an analysis and a profile with a row per node) is migrated
    when opened; its old runs' nodes read back as they did, and a new analysis (no node rows: its
    nodes are its payload's) reads back the same nodes, which runs show and compare give alike."""
    import zlib

    import mlms_ir
    from mlms_ir.compare import compare_runs
    from mlms_ir.store import _node_rows, records_from_analysis

    a = mlms_ir.analyze(cnn, batch=2)
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + ";" + MIGRATIONS[1])
    db.execute("PRAGMA user_version = 2")
    cols = "run_id, node_id, name, op_type, time_us, share, macs, flops, params, max_abs, introduced_max_abs"
    for run_id, kind, nodes in ((1, "analyze", _old_analysis_rows(a)),
                                (2, "profile", [{"node_id": "n0", "name": "c", "op_type": "Conv", "time_us": 2.5, "share": 1.0}])):
        db.execute("INSERT INTO runs (id, uid, kind, status, created_at, model_name) VALUES (?, ?, ?, 'ok', '2026-01-01', 'cnn')",
                   (run_id, f"abcdef{run_id:04d}", kind))
        db.executemany(f"INSERT OR REPLACE INTO nodes ({cols}) VALUES ({', '.join('?' * 11)})", _node_rows(run_id, nodes))
        db.execute("INSERT INTO payloads VALUES (?, 'json+zlib', ?)", (run_id, zlib.compress(json.dumps(a.to_dict()).encode())))
    db.commit()
    db.close()
    with Store(path) as st:
        assert st.version == STORE_SCHEMA_VERSION == 3
        old = st.nodes(1)
        assert len(old) == len(a.nodes) and old[0]["node_id"] == a.nodes[0].id and old[0]["time_us"] is None
        assert st.nodes(2) == [{"node_id": "n0", "name": "c", "op_type": "Conv", "time_us": 2.5, "share": 1.0, "macs": None,
                                "flops": None, "params": None, "max_abs": None, "introduced_max_abs": None}]
        (rec,) = records_from_analysis(a)
        assert rec.nodes_in_payload and rec.nodes == []
        new = st.add(rec)
        assert st._db.execute("SELECT COUNT(*) FROM nodes WHERE run_id = ?", (new.id,)).fetchone()[0] == 0
        assert st._db.execute("SELECT nodes_in FROM runs WHERE id = ?", (new.id,)).fetchone() == ("payload",)
        assert st.nodes(new.id) == old
        assert [(n["node_id"], n["macs"], n["flops"], n["params"]) for n in st.nodes(new.id)] == \
            [(n.id, n.macs, n.flops, n.params) for n in a.nodes]
        cmp = compare_runs(st, [1, new.id])
        assert cmp.per_node.metric is None and not cmp.per_node.nodes
        assert "MACs" in [r.field for r in cmp.figures]
    for ref in ("1", str(new.id)):
        r = _cli("runs", "show", ref, "--format", "json", store=path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["nodes"] == old


def test_an_analysis_nodes_read_back_alike_from_rows_and_from_its_payload(tmp_path, cnn):
    """Bound and symbolic analyses, with the payload as a dict or as the CLI's JSON text: the
    nodes read from the payload equal those a row per node gives."""
    import mlms_ir
    from mlms_ir.store import compress_json, records_from_analysis

    with Store(tmp_path / "s.sqlite") as st:
        for a in (mlms_ir.analyze(cnn), mlms_ir.analyze(cnn, batch=3)):
            pieces: list[str] = []
            a.write_json(type("Sink", (), {"write": staticmethod(pieces.append)})())
            rows = st.add(StoreRecord(kind="analyze", nodes=_old_analysis_rows(a), payload={"x": 1}))
            plain = st.add(records_from_analysis(a)[0])
            fast = st.add(records_from_analysis(a, payload_zlib=compress_json(pieces))[0])
            assert st.nodes(rows.id) == st.nodes(plain.id) == st.nodes(fast.id) and len(st.nodes(fast.id)) == len(a.nodes)


def test_odd_figures_in_a_payload_read_back_as_a_row_would(tmp_path):
    """A payload's node with a float, an "inf", a string figure or a non-string name reads back as
    the nodes table would keep it (SQLite's column affinities), not as the JSON has it."""
    odd = [{"id": "n0", "name": "a", "op_type": "Conv", "macs": 2.0, "flops": "inf", "params": "12"},
           {"id": "n1", "name": 5, "op_type": None, "macs": math.nan, "flops": 1.5, "params": None},
           {"id": "n2", "name": "plain", "op_type": "Relu", "macs": 3, "flops": None, "params": 0}]
    with Store(tmp_path / "s.sqlite") as st:
        rows = st.add(StoreRecord(kind="analyze", nodes=[{**n, "node_id": n["id"]} for n in odd]))
        packed = st.add(StoreRecord(kind="analyze", payload={"nodes": odd}, nodes_in_payload=True))
        want = st.nodes(rows.id)
        got = st.nodes(packed.id)
        assert got == want and [[type(v) for v in n.values()] for n in got] == [[type(v) for v in n.values()] for n in want]
        assert got[0]["macs"] == 2 and type(got[0]["macs"]) is int and got[0]["flops"] == math.inf and got[0]["params"] == 12
        assert got[1]["name"] == "5" and got[1]["macs"] is None
        # without a payload there is nothing to read the nodes from: the rows are kept
        bare = st.add(StoreRecord(kind="analyze", nodes=[{"node_id": "n0"}], nodes_in_payload=True))
        assert [n["node_id"] for n in st.nodes(bare.id)] == ["n0"]


def test_a_store_lacking_a_table_or_with_unknown_node_storage_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.add(_rec())
        st._db.execute("UPDATE runs SET nodes_in = 'columns+zstd' WHERE id = 1")
        with pytest.raises(StoreError, match="cannot read"):
            st.nodes(1)
        st._db.execute("DROP TABLE nodes")
    with pytest.raises(StoreError, match="damaged or not one .no table nodes"):
        Store(path)


def test_system_facts_list_the_packages_a_full_metadata_scan_finds():
    """The recorded package versions skip distributions by their directory's name (no METADATA
    read): the same as reading every distribution's metadata."""
    import importlib.metadata as md

    from mlms_ir import system

    full = {}
    for dist in md.distributions():
        name = system._normalize_dist(dist.metadata["Name"] or "")
        if name and system._wanted(name) and name not in full:
            full[name] = dist.version
    assert system.software_facts()["packages"] == dict(sorted(full.items()))


# --------------------------------------------------------------------------- runs compare: only one model's nodes are joined
def _node(nid: str, op: str, name: str, t: float) -> dict:
    return {"node_id": nid, "name": name, "op_type": op, "time_us": t, "max_abs": t / 10}


@pytest.mark.parametrize("kind", ["profile", "diverge"])
def test_compare_joins_per_node_rows_only_of_one_model(tmp_path, kind):
    from mlms_ir.compare import compare_runs

    a_nodes = [_node("n0", "MatMul", "node0", 37.0), _node("n1", "Relu", "node1", 5.0)]
    with Store(tmp_path / "s.sqlite") as st:
        st.add(_rec(kind=kind, model_name="a.onnx", model_sha256="a" * 64, nodes=a_nodes))
        st.add(_rec(kind=kind, model_name="b.onnx", model_sha256="b" * 64,
                    nodes=[_node("n0", "Add", "add_it", 13.0), _node("n1", "Mul", "mul_it", 4.0)]))
        st.add(_rec(kind=kind, model_name="a.onnx", model_sha256="a" * 64, nodes=[dict(n, time_us=n["time_us"] * 2) for n in a_nodes]))
        notes: list[str] = []
        cmp = compare_runs(st, [1, 2], notes=notes)
        assert cmp.per_node.nodes == [] and cmp.per_node.compared_nodes == 0
        assert notes == [f"runs 1 and 2 are of different models (sha256 {'a' * 12} and {'b' * 12}): per-node rows not compared"]
        assert (cmp.differing_settings[0].field, cmp.differing_settings[0].values) == (
            "model", [f"a.onnx (sha256 {'a' * 12})", f"b.onnx (sha256 {'b' * 12})"])
        notes = []
        cmp = compare_runs(st, [1, 3, 2], notes=notes)  # one run of another model is enough to leave the table out
        assert cmp.per_node.nodes == [] and notes[0].startswith("runs 1 and 2 are of different models")
        notes = []
        cmp = compare_runs(st, [1, 3], notes=notes)  # the same model: joined, and no model row
        assert notes == [] and cmp.per_node.compared_nodes == 2 and cmp.differing_settings == []
        assert [n.node_id for n in cmp.per_node.nodes] == ["n0", "n1"]


def test_compare_of_old_records_without_sha256_joins_only_the_same_nodes(tmp_path):
    """A record without a model sha256 (an old one) is of the first run's model where every node
    id both runs have is the same op type with the same name."""
    from mlms_ir.compare import compare_runs

    a_nodes = [_node("n0", "MatMul", "node0", 37.0), _node("n3", "Tanh", "node3", 5.0)]
    with Store(tmp_path / "s.sqlite") as st:
        st.add(_rec(kind="profile", nodes=a_nodes))
        st.add(_rec(kind="profile", nodes=[_node("n0", "MatMul", "node0", 30.0), _node("n3", "Sigmoid", "node3", 5.0)]))
        st.add(_rec(kind="profile", nodes=[_node("n0", "MatMul", "other", 30.0), _node("n3", "Tanh", "node3", 5.0)]))
        st.add(_rec(kind="profile", model_sha256="a" * 64, nodes=[_node("n0", "MatMul", "node0", 40.0)]))
        for other, why in ((2, "node n3 is Tanh 'node3' in run 1 but Sigmoid 'node3' in run 2"),
                           (3, "node n0 is MatMul 'node0' in run 1 but MatMul 'other' in run 3")):
            notes: list[str] = []
            cmp = compare_runs(st, [1, other], notes=notes)
            assert cmp.per_node.nodes == [] and notes == [f"runs 1 and {other} are of different models ({why}): per-node rows not compared"]
            assert cmp.differing_settings[0].field == "model"
        notes = []
        cmp = compare_runs(st, [1, 4], notes=notes)  # one sha256 known, the nodes agree: joined
        assert notes == [] and [(n.node_id, n.delta) for n in cmp.per_node.nodes] == [("n0", [0.0, 3.0])]


def test_cli_compare_says_why_per_node_rows_are_left_out(tmp_path):
    db = tmp_path / "s.sqlite"
    with Store(db) as st:
        st.add(_rec(kind="profile", model_sha256="a" * 64, nodes=[_node("n0", "MatMul", "node0", 37.0)]))
        st.add(_rec(kind="profile", model_sha256="b" * 64, nodes=[_node("n0", "Add", "add_it", 13.0)]))
    line = f"runs 1 and 2 are of different models (sha256 {'a' * 12} and {'b' * 12}): per-node rows not compared"
    r = _cli("runs", "compare", "1", "2", env_store=db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith(line) and "per node" not in r.stdout and "Add" not in r.stdout
    # (the cell may wrap where the terminal is narrow: its parts, not one line)
    assert "every run recorded the same settings" not in r.stdout and re.search(r"│ setting model +│ m\.onnx", r.stdout)
    assert "a" * 12 in r.stdout and "b" * 12 in r.stdout
    r = _cli("runs", "compare", "1", "2", "--format", "json", env_store=db)
    assert r.returncode == 0 and json.loads(r.stdout)["per_node"]["nodes"] == []  # the JSON stays JSON: the line on stderr
    assert r.stderr.strip() == f"mlms_ir: note: {line}"


def test_compare_shows_no_empty_options_and_one_precision(tmp_path):
    """The reference backend records ``options: {}`` and no precision option: neither is a setting
    that differs from ort's ``{precision: fp32}``, since every run ran at fp32."""
    from mlms_ir.compare import compare_runs, flat_settings

    assert flat_settings({"options": {}, "bindings": {"dims": {}}, "iterations": 3}) == {"iterations": 3}
    with Store(tmp_path / "s.sqlite") as st:
        for backend, options in (("ort", {"opt": "default", "precision": "fp32"}), ("torch", {"precision": "fp32"}), ("reference", {})):
            st.add(_rec(backend=backend, precision="fp32", settings={"iterations": 3, "device": "cpu", "options": options}))
        st.add(_rec(backend="ort", precision="fp16", settings={"iterations": 3, "device": "cpu", "options": {"precision": "fp16"}}))
        cmp = compare_runs(st, [1, 2, 3])
        assert [(r.field, r.values) for r in cmp.differing_settings] == [("opt", ["default", None, None])]
        assert {r.field: r.values for r in cmp.describe}["precision"] == ["fp32"] * 3
        cmp = compare_runs(st, [3, 4])  # a precision that differs is one row, the runs' own
        assert [(r.field, r.values) for r in cmp.differing_settings] == [("precision", ["fp32", "fp16"])]


def test_a_uid_prefix_too_short_says_how_long_one_must_be(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        r = st.add(_rec())
        with pytest.raises(StoreError, match=r"no run 'a43a4' in the results store .*: a uid prefix needs at least 6 characters; "
                                             r"give the run's id or more of its uid \(see 'runs list'\)"):
            st.get("a43a4")
        with pytest.raises(StoreError, match=r"no run '42' in the results store '[^']*' \(see 'runs list'\)$"):
            st.get("42")  # digits: an id
        assert st.get(r.uid[:6]).id == r.id
    r2 = _cli("runs", "show", "a43a4", env_store=tmp_path / "s.sqlite")
    assert r2.returncode == 2 and "a uid prefix needs at least 6 characters" in r2.stderr and "Traceback" not in r2.stderr


def test_compare_prints_small_ratios_with_their_digits(tmp_path):
    from mlms_ir.compare import compare_runs
    from mlms_ir.report.compare_html import render_compare_html
    from mlms_ir.report.store_text import render_compare

    with Store(tmp_path / "s.sqlite") as st:
        st.add(_rec(summary={"latency_ms": {"p50": 100.0}}))
        st.add(_rec(summary={"latency_ms": {"p50": 0.34}}))
        cmp = compare_runs(st, [1, 2])
    out = io.StringIO()
    render_compare(cmp, Console(file=out, width=120, color_system=None))
    assert "0.34 (0.0034x)" in out.getvalue() and "0.00x" not in out.getvalue()
    assert 'class="ratio">(0.0034x)' in render_compare_html(cmp)


def test_adler32_combine_is_the_adler32_of_the_joined_texts():
    """The payload's checksum when a worker's compressed text is joined in: checked against zlib's
    own Adler-32 of the whole, over lengths around the modulus and long runs of 0xff."""
    import random
    import zlib

    from mlms_ir.store import adler32_combine

    rnd = random.Random(7)
    cases = [(b"", b""), (b"a", b""), (b"", b"a"), (b"\xff" * 5552, b"\xff" * 65521), (b"x" * 70000, b"\xff" * 131043)]
    cases += [(rnd.randbytes(rnd.randrange(300)), rnd.randbytes(rnd.randrange(300))) for _ in range(500)]
    for x, y in cases:
        assert adler32_combine(zlib.adler32(x), zlib.adler32(y), len(y)) == zlib.adler32(x + y)


def test_a_packer_joins_text_compressed_elsewhere_into_one_zlib_stream():
    import zlib

    from mlms_ir.store import JsonPacker

    def deflated(data: bytes, level: int) -> tuple[bytes, int, int]:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH), zlib.adler32(data), len(data)

    for size in (10, 50 << 20):
        p = JsonPacker(size)
        p.write('{"head": "é",')
        p.write_deflated(*deflated(b'"nodes": [' + b"1," * 40000, 1))
        p.write("2")
        p.write_deflated(*deflated(b"", 6))
        p.write_deflated(*deflated(b"]", 9))
        p.write("}")
        out = p.finish()
        assert zlib.decompress(out) == ('{"head": "é",' + '"nodes": [' + "1," * 40000 + "2]}").encode()
        assert out[:2] == zlib.compress(b"", p.level)[:2]  # zlib's header for the level
    assert zlib.decompress(JsonPacker(10).finish()) == b""
