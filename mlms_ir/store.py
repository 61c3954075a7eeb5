"""The results store: every ``analyze``, ``run``, ``profile``, ``diverge`` (and later ``evaluate``)
kept in one SQLite file, for comparison across systems, backends, versions and precisions.

One row of ``runs`` per result (a ``run`` over two backends and two batch sizes is four rows),
its per-node figures in ``nodes`` and the whole report, zlib-compressed JSON, in ``payloads``;
an ``analyze`` run's per-node figures are read from its report, which holds every node
(``runs.nodes_in = 'payload'``, schema 3), instead of a row per node.
The schema is versioned with ``PRAGMA user_version`` and brought up to date by
:data:`MIGRATIONS` when a store is opened; WAL mode and a busy timeout let several processes
write at once (a sweep's workers do). See ``docs/store.rst`` for every column.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import sqlite3
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlms_ir.errors import StoreError
from mlms_ir.files import sha256_of
from mlms_ir.results.base import as_number, json_safe

#: Environment variable naming the store file (``none`` turns recording off).
STORE_ENV = "MLMS_IR_STORE"
KINDS = ("analyze", "run", "profile", "diverge", "evaluate", "counters", "scenario")
BUSY_TIMEOUT_MS = 30_000
#: The fewest characters of a uid that name a run (``runs show a43a4f``); fewer are refused as too short.
UID_PREFIX_MIN = 6

#: Schema migrations: ``MIGRATIONS[k]`` brings a store from version ``k`` to ``k + 1``.
MIGRATIONS: tuple[str, ...] = (
    # 1: runs, their per-node figures and their full reports
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        model_name TEXT,
        model_path TEXT,
        model_sha256 TEXT,
        backend TEXT,
        device TEXT,
        batch INTEGER,
        precision TEXT,
        host TEXT,
        mlms_ir_version TEXT,
        summary TEXT NOT NULL DEFAULT '{}',
        system TEXT NOT NULL DEFAULT '{}',
        settings TEXT NOT NULL DEFAULT '{}',
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX runs_kind_model ON runs (kind, model_name);
    CREATE TABLE nodes (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        name TEXT,
        op_type TEXT,
        time_us REAL,
        share REAL,
        macs INTEGER,
        flops INTEGER,
        params INTEGER,
        max_abs REAL,
        introduced_max_abs REAL,
        PRIMARY KEY (run_id, node_id)
    );
    CREATE TABLE payloads (
        run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        encoding TEXT NOT NULL,
        data BLOB NOT NULL
    );
    """,
    # 2: sweeps: which sweep and job a run belongs to (resuming skips jobs already stored)
    """
    ALTER TABLE runs ADD COLUMN sweep TEXT;
    ALTER TABLE runs ADD COLUMN job_key TEXT;
    CREATE INDEX runs_sweep_job ON runs (sweep, job_key);
    """,
    # 3: where a run's per-node figures are: NULL, rows of ``nodes``; 'payload', its report's
    # ``nodes`` (an analysis: writing 50,000 rows cost 5% of analyze, and the report has them all)
    """
    ALTER TABLE runs ADD COLUMN nodes_in TEXT;
    """,
)
#: The tables of the current schema: a store lacking one is damaged (refused when opened).
_TABLES = ("runs", "nodes", "payloads")
STORE_SCHEMA_VERSION = len(MIGRATIONS)
NODE_COLUMNS = ("node_id", "name", "op_type", "time_us", "share", "macs", "flops", "params", "max_abs", "introduced_max_abs")


@dataclass
class StoreRecord:
    """One result to keep: what ran, where, how it went, its figures and its full report."""

    kind: str
    status: str = "ok"
    model_name: str | None = None
    model_path: str | None = None
    model_sha256: str | None = None
    backend: str | None = None
    device: str | None = None
    batch: int | None = None
    precision: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] | None = None
    error: str = ""
    sweep: str | None = None
    job_key: str | None = None
    #: The payload already as zlib-compressed JSON text (what :func:`compress_json` makes), kept
    #: as it is instead of ``payload``: the CLI's analyze encodes a 50,000-node analysis once, for
    #: its output and the store.
    payload_zlib: bytes | None = field(default=None, repr=False)
    #: The per-node figures are the payload's ``nodes`` (an analysis' JSON: ``id``, ``name``,
    #: ``op_type``, ``macs``, ``flops``, ``params``), read from it by :meth:`Store.nodes`: no row
    #: per node is written (``nodes`` is then empty). :func:`records_from_analysis` sets it.
    nodes_in_payload: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["payload_zlib"] is None:
            del d["payload_zlib"]
        return d


@dataclass
class StoredRun:
    """A run as read back from the store (``nodes`` and ``payload`` are read on demand)."""

    id: int
    uid: str
    kind: str
    status: str
    created_at: str
    model_name: str | None
    model_path: str | None
    model_sha256: str | None
    backend: str | None
    device: str | None
    batch: int | None
    precision: str | None
    host: str | None
    mlms_ir_version: str | None
    summary: dict[str, Any]
    system: dict[str, Any]
    settings: dict[str, Any]
    error: str
    sweep: str | None
    job_key: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_store_path() -> Path | None:
    """``$MLMS_IR_STORE`` (None when it is ``none``/``off``), else ``results.sqlite`` in the
    user's data directory (``~/.local/share/mlms_ir`` on Linux)."""
    env = os.environ.get(STORE_ENV)
    if env is not None and env.strip():
        return None if env.strip().lower() in ("none", "off", "0", "false") else Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("mlms_ir", appauthor=False)) / "results.sqlite"


def resolve_store_path(store: str | os.PathLike | None) -> Path | None:
    """The store a command uses: ``store`` as given (``none``/``off`` for none), else the default."""
    if store is None or str(store) == "":
        return default_store_path()
    if str(store).strip().lower() in ("none", "off", "0", "false"):
        return None
    return Path(store).expanduser()


def _dumps(obj: Any, str_keys: bool = False) -> str:
    """Compact JSON of ``obj`` as :func:`json_safe` makes it. Where every key is a string (the
    caller knows, or :func:`_str_keys` checks) and every float finite, ``obj`` is written as it
    is: walking a 50,000-node analysis with ``json_safe`` cost three times its encoding. A
    non-finite float (which the fast path refuses) or another key goes through ``json_safe``."""
    if str_keys or _str_keys(obj):
        try:
            return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)
        except ValueError:  # NaN or an infinity somewhere: json_safe writes null or "inf"
            pass
    return json.dumps(json_safe(obj), separators=(",", ":"), default=str)


def _str_keys(obj: Any) -> bool:
    """Whether every dict key in ``obj`` is a string (json.dumps writes a bool or None key as
    ``true``/``null``, json_safe as ``True``/``None``)."""
    if isinstance(obj, dict):
        return all(type(k) is str and _str_keys(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_str_keys(v) for v in obj)
    return True


#: Payloads above this many bytes of JSON are compressed at zlib level 3 instead of 6. Levels 1-3
#: are zlib's fast strategy: a 50,000-node analysis (21 MB of JSON) in 0.057 s at level 3 into
#: 495 KB, against 0.059 s into 636 KB at level 1 and 0.17 s into 407 KB at level 6; the 2 MB of a
#: 5,000-node one in 0.006 s instead of 0.018 s (2026-12-08, the 2-core machine).
FAST_COMPRESS_BYTES = 1 << 20


def _level(size: int) -> int:
    """The zlib level for ``size`` bytes of JSON (see :data:`FAST_COMPRESS_BYTES`)."""
    return 3 if size > FAST_COMPRESS_BYTES else 6


def _compress(data: bytes) -> bytes:
    return zlib.compress(data, _level(len(data)))


def compress_json(chunks: Sequence[str]) -> bytes:
    """A payload for :attr:`StoreRecord.payload_zlib`: the JSON text given in pieces (as a result's
    ``write_json`` writes it), compressed as the store compresses a payload dict."""
    packer = JsonPacker(sum(map(len, chunks)))
    for x in chunks:
        packer.write(x)
    return packer.finish()


class JsonPacker:
    """A sink for a result's ``write_json`` (it has ``write``) that compresses the text as it
    comes, for :attr:`StoreRecord.payload_zlib`: the CLI writes a 200,000-node analysis to its
    output and into the store at once, never holding its 80 MB of text. ``size`` (bytes, an
    estimate will do) picks the :attr:`level` as :func:`_compress` does.

    It also takes text that another process compressed (:meth:`write_deflated`: the node lines a
    worker encoded, :mod:`mlms_ir.passes.nodes_text`). The payload is one zlib stream either way:
    raw deflate segments, each ending on a byte boundary, one after another (as pigz joins its
    threads' output), inside the zlib header and the Adler-32 of the whole text."""

    def __init__(self, size: int) -> None:
        #: The zlib level of the payload.
        self.level = _level(size)
        self._deflate = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw: the frame is ours
        self._parts: list[bytes] = [zlib.compress(b"", self.level)[:2]]  # zlib's own header for the level
        self._adler = zlib.adler32(b"")

    def write(self, text: str) -> None:
        data = text.encode()
        self._adler = zlib.adler32(data, self._adler)
        self._parts.append(self._deflate.compress(data))

    def write_deflated(self, data: bytes, adler32: int, length: int) -> None:
        """Append text compressed elsewhere: ``data`` is raw deflate (no header) that ends with a
        sync flush (a byte boundary, no final block), ``adler32`` and ``length`` its text's
        Adler-32 and size in bytes."""
        self._parts.append(self._deflate.flush(zlib.Z_SYNC_FLUSH))
        self._parts.append(data)
        self._adler = adler32_combine(self._adler, adler32, length)
        # a new compressor after it: the old one's matches would reach back past the segment
        self._deflate = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)

    def finish(self) -> bytes:
        """The compressed text (call once, after the last write)."""
        return b"".join([*self._parts, self._deflate.flush(), self._adler.to_bytes(4, "big")])


_ADLER_BASE = 65521  # the largest prime below 2**16


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two texts one after the other, from each one's Adler-32 and the second's
    length in bytes (zlib has ``adler32_combine``; Python's zlib module does not offer it).

    Adler-32 is ``B << 16 | A`` with ``A = 1 + sum of the bytes`` and ``B = sum of A after each
    byte`` (mod 65521). Appending ``n`` bytes adds their sum to A: ``A = A1 + A2 - 1``; and B gains
    ``B2``, in which each of the n steps started from ``A1 - 1`` more: ``B = B1 + B2 + n (A1 - 1)``."""
    a1, b1 = first & 0xFFFF, first >> 16
    a2, b2 = second & 0xFFFF, second >> 16
    a = (a1 + a2 - 1) % _ADLER_BASE
    b = (b1 + b2 + second_length * (a1 - 1)) % _ADLER_BASE
    return b << 16 | a


_PLAIN_CELL_TYPES = frozenset({type(None), int, str})
_PLAIN_FIGURE_TYPES = frozenset({type(None), int})


def _node_rows(run_id: int, nodes: list[dict[str, Any]]) -> list[tuple]:
    """The ``nodes`` rows of a run: a row of None, ints and strings is taken as it is (checked by
    type in C, not value by value) unless a figure is a string (the ``"inf"`` of a result's JSON);
    another goes through :func:`_cell` (the text columns through :func:`json_safe`)."""
    rows = []
    plain = _PLAIN_CELL_TYPES.issuperset
    plain_figures = _PLAIN_FIGURE_TYPES.issuperset
    for n in nodes:
        values = tuple(map(n.get, NODE_COLUMNS))
        if plain(map(type, values[:_FIRST_FIGURE])) and plain_figures(map(type, values[_FIRST_FIGURE:])):
            rows.append((run_id, *values))
        else:
            rows.append((run_id, *map(json_safe, values[:_FIRST_FIGURE]), *map(_cell, values[_FIRST_FIGURE:])))
    return rows


#: Where the figures (REAL and INTEGER columns) start in :data:`NODE_COLUMNS`.
_FIRST_FIGURE = NODE_COLUMNS.index("time_us")


def _cell(v: Any) -> Any:
    """A figure for a ``nodes`` column: numbers as they are, NaN as NULL, and an infinity (a float,
    or the ``"inf"`` a result's JSON writes) as SQLite's REAL infinity, so an infinite error sorts
    above every finite one and never reads as unknown."""
    v = as_number(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if v is None or isinstance(v, (int, float)) else json_safe(v)


def _damage_is_a_store_error(method):
    """A store file can be damaged or hostile (a dropped table, a payload that is not zlib or not
    JSON, a negative schema version): whatever the reading or writing trips on is a
    :class:`StoreError` naming the file, never a traceback."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except (sqlite3.Error, zlib.error, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            raise StoreError(f"the results store '{self.path}' is damaged or not one ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}); move it away or give another with --store") from None
    return wrapper


class Store:
    """A results store in one SQLite file (created, or migrated to the current schema, on open)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"the store '{self.path}' cannot use write-ahead logging (journal mode {mode})")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            self._check_tables()
        except (sqlite3.DatabaseError, ValueError) as exc:
            raise StoreError(f"cannot open the results store '{self.path}': {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot open the results store '{self.path}': {exc.strerror or exc}") from exc

    # ------------------------------------------------------------------ schema
    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current < 0:
            raise StoreError(f"the store '{self.path}' has schema version {current}: it is damaged or not an mlms_ir store")
        if current > STORE_SCHEMA_VERSION:
            raise StoreError(f"the store '{self.path}' has schema version {current}, newer than this mlms_ir knows "
                             f"({STORE_SCHEMA_VERSION}): upgrade mlms_ir")
        while current < STORE_SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                now = int(self._db.execute("PRAGMA user_version").fetchone()[0])
                if now != current:  # another process migrated meanwhile
                    self._db.execute("COMMIT")
                    current = now
                    continue
                for stmt in _statements(MIGRATIONS[current]):
                    self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version = {current + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            current += 1

    def _check_tables(self) -> None:
        """A store whose schema version is current but which lacks one of its tables is damaged:
        refused when opened, before a run is written into what is left of it."""
        have = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()}
        missing = [t for t in _TABLES if t not in have]
        if missing:
            self._db.close()
            raise StoreError(f"the results store '{self.path}' is damaged or not one (no table {', '.join(missing)}); "
                             "move it away or give another with --store")

    # ------------------------------------------------------------------ writing
    @_damage_is_a_store_error
    def add(self, rec: StoreRecord) -> StoredRun:
        """Keep one result (in one transaction: the run, its nodes and its payload, or nothing)."""
        from mlms_ir import __version__

        if rec.kind not in KINDS:
            raise StoreError(f"unknown kind of run '{rec.kind}'; one of: {', '.join(KINDS)}")
        uid = uuid.uuid4().hex
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        host = rec.system.get("host") if isinstance(rec.system, dict) else None
        has_payload = rec.payload_zlib is not None or rec.payload is not None
        nodes_in = "payload" if rec.nodes_in_payload and has_payload else None
        # A result's to_dict (to_plain) and JSON read back have string keys only: not walked again.
        if rec.payload_zlib is not None:
            payload = rec.payload_zlib
        else:
            payload = _compress(_dumps(rec.payload, str_keys=True).encode()) if rec.payload is not None else None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO runs (uid, kind, status, created_at, model_name, model_path, model_sha256, backend, device, batch,"
                    " precision, host, mlms_ir_version, summary, system, settings, error, sweep, job_key, nodes_in)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (uid, rec.kind, rec.status, now, rec.model_name, rec.model_path, rec.model_sha256, rec.backend, rec.device,
                     rec.batch, rec.precision, host, __version__, _dumps(rec.summary), _dumps(rec.system), _dumps(rec.settings),
                     rec.error or "", rec.sweep, rec.job_key, nodes_in))
                run_id = int(cur.lastrowid)
                if rec.nodes and nodes_in is None:
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO nodes (run_id, {', '.join(NODE_COLUMNS)}) VALUES (?{', ?' * len(NODE_COLUMNS)})",
                        _node_rows(run_id, rec.nodes))
                if payload is not None:
                    self._db.execute("INSERT INTO payloads (run_id, encoding, data) VALUES (?, 'json+zlib', ?)", (run_id, payload))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write to the results store '{self.path}': {exc}") from exc
        return self.get(run_id)

    @_damage_is_a_store_error
    def add_all(self, recs: Iterable[StoreRecord]) -> list[StoredRun]:
        return [self.add(r) for r in recs]

    # ------------------------------------------------------------------ reading
    _COLUMNS = ("id, uid, kind, status, created_at, model_name, model_path, model_sha256, backend, device, batch, precision, host,"
                " mlms_ir_version, summary, system, settings, error, sweep, job_key")

    def _row(self, r: Sequence[Any]) -> StoredRun:
        vals = list(r)
        for k in (14, 15, 16):
            vals[k] = json.loads(vals[k] or "{}")
        return StoredRun(*vals)

    @_damage_is_a_store_error
    def get(self, ref: int | str) -> StoredRun:
        """A run by its id (an integer) or its uid (or a unique prefix of at least :data:`UID_PREFIX_MIN`, 6, characters;
        one of digits only, which no run has as its id, is taken as a uid's prefix)."""
        try:
            text = str(ref).strip()
            row = None
            if text.isdigit():
                row = self._db.execute(f"SELECT {self._COLUMNS} FROM runs WHERE id = ?", (int(text),)).fetchone()
            if row is None and len(text) >= UID_PREFIX_MIN and not isinstance(ref, int):
                rows = self._db.execute(f"SELECT {self._COLUMNS} FROM runs WHERE uid LIKE ? LIMIT 2", (text.lower() + "%",)).fetchall()
                if len(rows) > 1:
                    raise StoreError(f"run '{text}' is ambiguous in '{self.path}': give more of its uid, or its id")
                row = rows[0] if rows else None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the results store '{self.path}': {exc}") from exc
        if row is None and len(text) < UID_PREFIX_MIN and not isinstance(ref, int) and not text.isdigit():
            raise StoreError(f"no run '{ref}' in the results store '{self.path}': a uid prefix needs at least {UID_PREFIX_MIN} "
                             "characters; give the run's id or more of its uid (see 'runs list')")
        if row is None:
            raise StoreError(f"no run '{ref}' in the results store '{self.path}' (see 'runs list')")
        return self._row(row)

    @_damage_is_a_store_error
    def list(self, kind: str | None = None, model: str | None = None, backend: str | None = None, sweep: str | None = None,
             limit: int | None = 50) -> list[StoredRun]:
        """The newest runs first, filtered by kind, model name (substring), backend or sweep."""
        where, args = [], []
        for col, val in (("kind", kind), ("backend", backend), ("sweep", sweep)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if model is not None:
            where.append("(model_name LIKE ? OR model_path LIKE ?)")
            args += [f"%{model}%", f"%{model}%"]
        sql = f"SELECT {self._COLUMNS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            return [self._row(r) for r in self._db.execute(sql, args).fetchall()]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read the results store '{self.path}': {exc}") from exc

    @_damage_is_a_store_error
    def nodes(self, run_id: int) -> list[dict[str, Any]]:
        """A run's per-node figures, one dict of :data:`NODE_COLUMNS` per node in the order
        recorded: its rows of ``nodes``, or (``nodes_in = 'payload'``) its report's nodes."""
        where = self._db.execute("SELECT nodes_in FROM runs WHERE id = ?", (run_id,)).fetchone()
        if where is not None and where[0] == "payload":
            return _nodes_of_payload(self.payload(run_id))
        if where is not None and where[0] is not None:
            raise StoreError(f"run {run_id}'s per-node figures are in '{where[0]}', which this mlms_ir cannot read")
        rows = self._db.execute(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
        return [dict(zip(NODE_COLUMNS, r)) for r in rows]

    @_damage_is_a_store_error
    def payload(self, run_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT encoding, data FROM payloads WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        if row[0] != "json+zlib":
            raise StoreError(f"run {run_id}'s report is stored as '{row[0]}', which this mlms_ir cannot read")
        return json.loads(zlib.decompress(row[1]).decode())

    @_damage_is_a_store_error
    def jobs_done(self, sweep: str) -> set[str]:
        """The job keys of a sweep's runs that finished (status ok)."""
        rows = self._db.execute("SELECT DISTINCT job_key FROM runs WHERE sweep = ? AND status = 'ok' AND job_key IS NOT NULL", (sweep,))
        return {r[0] for r in rows.fetchall()}

    @_damage_is_a_store_error
    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    @_damage_is_a_store_error
    def last_id(self) -> int:
        """The newest run's id (0 for an empty store)."""
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nodes_of_payload(payload: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``nodes`` rows an analysis' report stands for: each node's id, name, op type, MACs,
    FLOPs and parameters, read back as its row would be: a node of None, ints and strings as it
    is, another (a float, an ``"inf"``, a list) through :func:`_node_rows`' conversions and
    SQLite's column affinities (:func:`_as_stored`)."""
    if payload is None:
        return []
    rows = [(n["id"], n.get("name"), n.get("op_type"), None, None, n.get("macs"), n.get("flops"), n.get("params"), None, None)
            for n in payload["nodes"]]
    plain = _PLAIN_CELL_TYPES.issuperset
    plain_figures = _PLAIN_FIGURE_TYPES.issuperset
    odd = [i for i, r in enumerate(rows) if not (plain(map(type, r[:_FIRST_FIGURE])) and plain_figures(map(type, r[_FIRST_FIGURE:])))]
    if odd:
        for i, r in zip(odd, _as_stored([rows[i] for i in odd])):
            rows[i] = r
    return [dict(zip(NODE_COLUMNS, r)) for r in rows]


#: The ``nodes`` table's columns as declared (their affinities), for :func:`_as_stored`.
_NODE_DECLARATIONS = ("node_id TEXT, name TEXT, op_type TEXT, time_us REAL, share REAL, macs INTEGER, flops INTEGER, params INTEGER,"
                      " max_abs REAL, introduced_max_abs REAL")


def _as_stored(rows: list[tuple]) -> list[tuple]:
    """``rows`` (values in :data:`NODE_COLUMNS` order) as the ``nodes`` table gives them back,
    through a table of the same columns in memory."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE TABLE nodes ({_NODE_DECLARATIONS})")
        cells = [r[1:] for r in _node_rows(0, [dict(zip(NODE_COLUMNS, r)) for r in rows])]  # _node_rows puts a run id first
        db.executemany(f"INSERT INTO nodes VALUES (?{', ?' * (len(NODE_COLUMNS) - 1)})", cells)
        return db.execute("SELECT * FROM nodes ORDER BY rowid").fetchall()
    finally:
        db.close()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


# ------------------------------------------------------------------------- reports to records


def model_fields(model: dict[str, Any] | None, path: str | None = None) -> dict[str, Any]:
    model = model or {}
    p = path or model.get("path")
    # the sha256 of the model file itself (not its external data); None when there is no file
    sha = sha256_of(p) if p and Path(p).is_file() else None
    return {"model_name": model.get("name"), "model_path": str(p) if p else None, "model_sha256": sha}


def records_from_analysis(analysis: Any, settings: dict[str, Any] | None = None,
                          payload_zlib: bytes | None = None, head: dict[str, Any] | None = None) -> list[StoreRecord]:
    """An ``analyze`` result: totals as the summary, the whole analysis as the payload, whose
    nodes are the run's per-node cost (:attr:`StoreRecord.nodes_in_payload`: no row per node).

    ``payload_zlib`` is the analysis' JSON text (``analysis.write_json``), compressed, when the
    caller has it already (a :class:`JsonPacker`'s, or :func:`compress_json` of its pieces): kept
    as it is, and no dict of every node is built; ``head`` is then the analysis'
    :meth:`~mlms_ir.results.analysis.Analysis.head_dict`, when the caller has made it already."""
    from mlms_ir.system import system_facts

    if payload_zlib is None:
        d = analysis.to_dict()
    else:
        d = analysis.head_dict() if head is None else head
    summary = {k: d["totals"][k] for k in ("params", "macs", "flops", "weight_bytes", "peak_activation_bytes", "nodes", "complete")}
    if d["totals"].get("symbolic"):  # figures that are formulas of unbound dims (their numbers are null)
        summary["symbolic"] = {k: v for k, v in d["totals"]["symbolic"].items() if k in ("macs", "flops", "peak_activation_bytes")}
    return [StoreRecord(kind="analyze", summary=summary, system=system_facts(), settings={"bindings": d["bindings"], **(settings or {})},
                        nodes_in_payload=True, payload=d if payload_zlib is None else None,
                        payload_zlib=payload_zlib, **model_fields(d["model"]))]


def _run_precision(options: dict | None, settings: dict | None) -> str:
    """The precision a ``run`` row computed in: a backend's conversion (its ``precision`` option),
    else the model's own (``model_precision``: an fp16 export runs in fp16 as it is)."""
    asked = (options or {}).get("precision")
    return asked if asked not in (None, "fp32") else (settings or {}).get("model_precision") or "fp32"


def records_from_runs(report: Any) -> list[StoreRecord]:
    """A ``run`` result: one record per backend, device and batch size."""
    d = report.to_dict() if hasattr(report, "to_dict") else report
    out = []
    for r in d["runs"]:
        summary = {k: r.get(k) for k in ("latency_ms", "throughput", "max_abs_diff", "max_rel_diff", "compared_with",
                                         "beyond_tolerance", "outputs_agree")}
        out.append(StoreRecord(kind="run", status=r["status"] if r["status"] == "ok" else "failed", backend=r["backend"],
                               device=r["device"], batch=r.get("batch"),
                               precision=_run_precision(r.get("options"), d.get("settings")),
                               summary=summary, system=d.get("system") or {}, settings={**(d.get("settings") or {}), "options": r.get("options")},
                               payload={"model": d.get("model"), "settings": d.get("settings"), "run": r}, error=r.get("error") or "",
                               **model_fields(d.get("model"))))
    return out


def records_from_profile(report: Any) -> list[StoreRecord]:
    """A ``profile`` result: latency and coverage as the summary, per-node time and cost."""
    d = report.to_dict() if hasattr(report, "to_dict") else report
    nodes = [{"node_id": n["id"], "name": n.get("name"), "op_type": n.get("op_type"), "time_us": n.get("time_us"), "share": n.get("share"),
              "macs": n.get("macs"), "flops": n.get("flops")} for n in d["nodes"]]
    summary = {k: d.get(k) for k in ("latency_ms", "coverage", "node_time_us", "traced_wall_ms", "tracing_overhead", "runs")}
    return [StoreRecord(kind="profile", backend=d["backend"], device=d["device"], batch=d.get("batch"),
                        precision=(d.get("options") or {}).get("precision") or "fp32", summary=summary, system=d.get("system") or {},
                        settings={"options": d.get("options"), "roofline_device": d.get("roofline_device")}, nodes=nodes, payload=d,
                        **model_fields(d.get("model")))]


def records_from_counters(report: Any, device: str = "cuda", system: dict[str, Any] | None = None) -> list[StoreRecord]:
    """A ``profile --counters`` result: its totals (kernel time, measured/static FLOPs and bytes,
    throughputs) as the summary; per node its kernel time under ncu and its measured FLOPs (the
    ratios and throughputs per node stay in the payload)."""
    from mlms_ir.system import system_facts

    d = report.to_dict() if hasattr(report, "to_dict") else report
    t = d.get("totals") or {}
    nodes = [{"node_id": n["id"], "name": n.get("name"), "op_type": n.get("op_type"), "time_us": n.get("gpu_time_us"),
              "share": n.get("share"), "flops": n.get("flops")} for n in d["nodes"]]
    summary = {"coverage": d.get("coverage"), "gpu_time_us": t.get("gpu_time_us"), "kernels": t.get("kernels"),
               "flops_ratio": t.get("flops_ratio"), "bytes_ratio": t.get("bytes_ratio"), "sm_pct": t.get("sm_pct"),
               "memory_pct": t.get("memory_pct"), "achieved_flops_per_s": t.get("achieved_flops_per_s"), "gpu": d.get("gpu")}
    model = d.get("model") or {}
    settings = d.get("settings") or {}
    return [StoreRecord(kind="counters", backend="torch", device=device, batch=model.get("batch"),
                        precision=settings.get("precision") or "fp32", summary=summary,
                        system=system if system is not None else system_facts(),
                        settings={"metric_set": d.get("metric_set"), "metrics": d.get("metrics"), "roofline_device": d.get("device"),
                                  **{k: settings.get(k) for k in ("replay_mode", "cache_control", "clock_control")}},
                        nodes=nodes, payload=d, **model_fields(model))]


def records_from_divergence(reports: Sequence[Any], system: dict[str, Any] | None = None) -> list[StoreRecord]:
    """``diverge`` results: one record per backend compared with the reference."""
    from mlms_ir.system import system_facts

    facts = system if system is not None else system_facts()
    out = []
    for rep in reports:
        d = rep.to_dict() if hasattr(rep, "to_dict") else rep
        nodes = [{"node_id": n["id"], "name": n.get("name"), "op_type": n.get("op_type"), "max_abs": n.get("max_abs"),
                  "introduced_max_abs": n.get("introduced_max_abs")} for n in d["nodes"]]
        known = [as_number(o.get("max_abs")) for o in d.get("outputs", [])]
        worst = max((x for x in known if x is not None), default=None)  # none compared, or none a number: no figure
        summary = {"reference": d.get("reference"), "first_divergent": d.get("first_divergent"), "first_nan": d.get("first_nan"),
                   "output_max_abs": worst, "compared_tensors": d.get("compared_tensors"), "atol": d.get("atol"), "rtol": d.get("rtol")}
        settings = {"reference": d.get("reference"), "atol": d.get("atol"), "rtol": d.get("rtol"), "inputs": d.get("inputs"),
                    "seed": d.get("seed"), "input_shapes": d.get("input_shapes")}
        out.append(StoreRecord(kind="diverge", backend=d["backend"], device=d.get("device"), batch=d.get("batch"),
                               precision=d.get("precision"), summary=summary, system=facts,
                               settings={k: v for k, v in settings.items() if v is not None},
                               nodes=nodes, payload=d, **model_fields(d.get("model"))))
    return out


def records_from_scenarios(report: Any) -> list[StoreRecord]:
    """A ``run --scenario`` result: one record per backend, LoadGen's verdict and figures as the
    summary (``latency_ms`` and ``throughput`` as a ``run`` keeps them, so comparisons line them up)."""
    d = report.to_dict() if hasattr(report, "to_dict") else report
    out = []
    for r in d["runs"]:
        summary = {"scenario": r.get("scenario"), "valid": r.get("valid"), "latency_ms": r.get("latency_ms"),
                   "throughput": r.get("samples_per_s"), "target_qps": r.get("target_qps"), "peak_qps": r.get("peak_qps"),
                   "latency_bound_ms": r.get("latency_bound_ms"), "query_count": r.get("query_count"),
                   "invalid_reasons": r.get("invalid_reasons") or None}
        summary = {k: v for k, v in summary.items() if v is not None}
        settings = {**(d.get("settings") or {}), "options": r.get("options")}
        if r.get("target_qps") is not None and not (d.get("settings") or {}).get("target_qps"):
            settings["target_qps"] = r.get("target_qps")  # a peak search's best target, an Offline expectation
        out.append(StoreRecord(kind="scenario", status="ok" if r["status"] == "ok" else "failed", backend=r["backend"],
                               device=r["device"], batch=r.get("max_batch"),
                               precision=(r.get("options") or {}).get("precision") or "fp32", summary=summary,
                               system=d.get("system") or {}, settings=settings,
                               payload={"model": d.get("model"), "settings": d.get("settings"), "run": r}, error=r.get("error") or "",
                               **model_fields(d.get("model"))))
    return out
