"""The result store: one SQLite database, ``results/bench.sqlite``.

SQLite because it ships with Python, is one file a user can copy or query with any SQL tool, and
gives atomic transactions: a cell's records and its "done" mark are committed together, so a run
killed at any moment (kill -9 included) never leaves a half-written cell, and a resumed run knows
exactly which cells are finished. The schema is documented in ``results/README.md``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from harness.attribution import Attribution
from harness.entries import PluginEntry
from harness.errors import BenchError
from harness.grid import Cell


def _number(value: float | None) -> float | None:
    """A value as stored: NULL for undefined (NaN); ±inf stays, and the report counts it as undefined."""
    return None if value is None or value != value else float(value)


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    suite         TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    suite_hash    TEXT NOT NULL,
    suite_path    TEXT,
    suite_text    TEXT NOT NULL,
    status        TEXT NOT NULL,          -- running | complete | complete-with-failures
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    device        TEXT,
    git_revision  TEXT,
    versions      TEXT NOT NULL,          -- JSON: library and plugin package versions
    options       TEXT NOT NULL,          -- JSON: command-line options of the run
    host          TEXT,
    pid           INTEGER
);
CREATE TABLE IF NOT EXISTS cells (
    run_id           TEXT NOT NULL REFERENCES runs(run_id),
    cell_id          TEXT NOT NULL,
    dataset          TEXT NOT NULL,
    model            TEXT NOT NULL,
    variant          TEXT NOT NULL,
    explainer        TEXT NOT NULL,
    explainer_label  TEXT NOT NULL,
    explainer_params TEXT NOT NULL,       -- JSON, every parameter with defaults
    metric           TEXT NOT NULL,
    metric_label     TEXT NOT NULL,
    metric_params    TEXT NOT NULL,       -- JSON
    family           TEXT NOT NULL,
    direction        TEXT NOT NULL,       -- higher | lower
    seed             INTEGER NOT NULL,
    status           TEXT NOT NULL,       -- done | failed | skipped (a device this machine lacks)
    error            TEXT,                -- why it failed or was skipped
    seconds          REAL,
    finished_at      TEXT NOT NULL,
    dataset_id       TEXT,                -- short hashes of each part's identity: what reports group by
    model_id         TEXT,
    explainer_id     TEXT,
    metric_id        TEXT,
    identity         TEXT,                -- JSON: the cell's identity (grid.Cell.identity)
    examples_fingerprint TEXT,            -- sha256 of the explained examples (ids and texts)
    n_examples       INTEGER,
    example_limit    INTEGER,             -- --limit of the run (NULL: none)
    notes            TEXT,                -- JSON list: the metric's statements about the cell
    timing           TEXT,                -- JSON list: host, device, measured_at of the timings the cell read
    PRIMARY KEY (run_id, cell_id)
);
CREATE TABLE IF NOT EXISTS records (
    run_id           TEXT NOT NULL,
    cell_id          TEXT NOT NULL,
    dataset          TEXT NOT NULL,
    model            TEXT NOT NULL,
    variant          TEXT NOT NULL,
    explainer        TEXT NOT NULL,
    explainer_params TEXT NOT NULL,
    metric           TEXT NOT NULL,
    metric_params    TEXT NOT NULL,
    family           TEXT NOT NULL,
    seed             INTEGER NOT NULL,
    example_id       TEXT NOT NULL,
    value            REAL,                -- NULL where the metric is undefined for the example
    unit             TEXT,                -- the independent measurement the value belongs to (NULL: the example)
    reference_value  REAL,                -- metrics comparing two cells: the reference's value, same protocol
    PRIMARY KEY (run_id, cell_id, example_id)
);
CREATE TABLE IF NOT EXISTS models (
    run_id        TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    model         TEXT NOT NULL,
    model_params  TEXT NOT NULL,
    variant       TEXT NOT NULL,
    seed          INTEGER NOT NULL,
    cache_key     TEXT NOT NULL,
    test_accuracy REAL,
    n_test        INTEGER,
    training      TEXT NOT NULL,          -- JSON: the model plugin's training report
    test_predictions TEXT,                -- JSON: predicted class per test example, in split order
    dataset_id    TEXT,
    model_id      TEXT,
    PRIMARY KEY (run_id, dataset, model, model_params, variant, seed)
);
CREATE TABLE IF NOT EXISTS attributions (
    run_id           TEXT NOT NULL,
    dataset          TEXT NOT NULL,
    model            TEXT NOT NULL,
    variant          TEXT NOT NULL,
    explainer        TEXT NOT NULL,
    explainer_params TEXT NOT NULL,
    seed             INTEGER NOT NULL,
    example_id       TEXT NOT NULL,
    attribution      TEXT NOT NULL,       -- JSON: harness.Attribution (tokens, offsets, word ids, scores...)
    PRIMARY KEY (run_id, dataset, model, variant, explainer, explainer_params, seed, example_id)
);
CREATE TABLE IF NOT EXISTS curves (
    run_id     TEXT NOT NULL,
    cell_id    TEXT NOT NULL,
    example_id TEXT NOT NULL,
    curve      TEXT NOT NULL,             -- JSON: the curve behind the record's value, e.g. {"x": [...], "y": [...]}
    PRIMARY KEY (run_id, cell_id, example_id)
);
CREATE TABLE IF NOT EXISTS explainer_fits (
    run_id           TEXT NOT NULL,
    dataset          TEXT NOT NULL,
    model            TEXT NOT NULL,
    variant          TEXT NOT NULL,
    explainer        TEXT NOT NULL,
    explainer_label  TEXT NOT NULL,
    explainer_params TEXT NOT NULL,
    seed             INTEGER NOT NULL,
    report           TEXT NOT NULL,       -- JSON: the explainer's fit report (training cost, never in runtime)
    teacher          TEXT,                -- JSON {"name", "params"} of the explainer a student distils
    explainer_id     TEXT,
    teacher_id       TEXT,                -- identity hash of the teacher (joins its cells' explainer_id)
    PRIMARY KEY (run_id, dataset, model, variant, explainer, explainer_params, seed)
);
CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, family, metric);
"""

# Columns added after a table was first released, by table: a store written by an earlier version gets
# them in place (``_migrate``), in order; ``PRAGMA user_version`` says which step a store has reached.
ADDED_COLUMNS: list[dict[str, dict[str, str]]] = [
    {"models": {"test_predictions": "TEXT"}},
    {
        "cells": {
            "dataset_id": "TEXT", "model_id": "TEXT", "explainer_id": "TEXT", "metric_id": "TEXT",
            "identity": "TEXT", "examples_fingerprint": "TEXT", "n_examples": "INTEGER",
            "example_limit": "INTEGER", "notes": "TEXT", "timing": "TEXT",
        },
        "records": {"unit": "TEXT", "reference_value": "REAL"},
        "models": {"dataset_id": "TEXT", "model_id": "TEXT"},
        "explainer_fits": {"explainer_id": "TEXT", "teacher_id": "TEXT"},
    },
]  # fmt: skip
SCHEMA_VERSION = len(ADDED_COLUMNS)

RECORD_FIELDS = (
    "run_id",
    "suite",
    "dataset",
    "model",
    "variant",
    "explainer",
    "explainer_params",
    "metric",
    "metric_params",
    "family",
    "seed",
    "example_id",
    "value",
    "unit",
    "reference_value",
)


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a store to ``SCHEMA_VERSION``: create missing tables, then add the columns of every later
    step (a step's column that exists already, as in a fresh store, is skipped)."""
    if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    with connection:
        connection.executescript(SCHEMA)
        for step in ADDED_COLUMNS:
            for table, columns in step.items():
                present = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in present:
                        connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _insert(db: sqlite3.Connection, table: str, rows: Sequence[dict], replace: bool = False) -> None:
    """Insert rows by column name (never by position, so added columns cannot shift values)."""
    if not rows:
        return
    columns = list(rows[0])
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    db.executemany(
        f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [tuple(row[column] for column in columns) for row in rows],
    )


@dataclass(frozen=True)
class CellProvenance:
    """What a cell was computed on, stored with it so that two runs can be compared cell by cell:
    its identity, a fingerprint of the exact examples explained (ids and texts), ``--limit``, and
    where and when the timings it read were measured."""

    identity: dict
    examples: str | None = None
    n_examples: int | None = None
    limit: int | None = None
    timings: list[dict] | None = None  # the cell's attributions' timing, then its reference's, if any


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / "bench.sqlite"

    def connect(self) -> sqlite3.Connection:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.row_factory = sqlite3.Row
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            _migrate(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise BenchError(
                f"{self.path}: not a bench results database ({error}); move it away or choose another "
                "results folder"
            ) from None
        return connection

    def log_path(self, run_id: str) -> Path:
        return self.results_dir / "logs" / f"{run_id}.log"

    # -- writing -------------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        suite,
        suite_hash: str,
        suite_path: str,
        suite_text: str,
        device: str,
        git_revision: str | None,
        versions: dict,
        options: dict,
    ) -> None:
        row = {
            "run_id": run_id, "suite": suite.name, "suite_version": suite.version, "suite_hash": suite_hash,
            "suite_path": suite_path, "suite_text": suite_text, "status": "running", "started_at": now(),
            "finished_at": None, "device": device, "git_revision": git_revision,
            "versions": json.dumps(versions), "options": json.dumps(options), "host": socket.gethostname(),
            "pid": os.getpid(),
        }  # fmt: skip
        with closing(self.connect()) as db, db:
            _insert(db, "runs", [row])

    def claim_run(self, run_id: str, device: str) -> None:
        """Mark a resumed run as running in this process."""
        with closing(self.connect()) as db, db:
            db.execute(
                "UPDATE runs SET status='running', pid=?, host=?, device=?, finished_at=NULL WHERE run_id=?",
                (os.getpid(), socket.gethostname(), device, run_id),
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with closing(self.connect()) as db, db:
            db.execute("UPDATE runs SET status=?, finished_at=? WHERE run_id=?", (status, now(), run_id))

    def record_model(
        self,
        run_id: str,
        dataset: PluginEntry,
        model: PluginEntry,
        variant: str,
        seed: int,
        cache_key: str,
        test_accuracy: float | None,
        n_test: int,
        training: dict,
        test_predictions: Sequence[int] | None = None,
    ) -> None:
        row = {
            "run_id": run_id, "dataset": dataset.label, "model": model.label, "model_params": model.params_json,
            "variant": variant, "seed": seed, "cache_key": cache_key, "test_accuracy": test_accuracy,
            "n_test": n_test, "training": json.dumps(training),
            "test_predictions": None if test_predictions is None else json.dumps(list(test_predictions)),
            "dataset_id": dataset.id, "model_id": model.id,
        }  # fmt: skip
        with closing(self.connect()) as db, db:
            _insert(db, "models", [row], replace=True)

    def record_attributions(self, run_id: str, cell: Cell, attributions: Sequence[Attribution]) -> None:
        rows = [
            {
                "run_id": run_id,
                "dataset": cell.dataset.label,
                "model": cell.model.label,
                "variant": cell.variant,
                "explainer": cell.explainer.name,
                "explainer_params": cell.explainer.params_json,
                "seed": cell.seed,
                "example_id": a.example_id,
                "attribution": json.dumps(a.to_dict(), ensure_ascii=False),
            }  # fmt: skip
            for a in attributions
        ]
        with closing(self.connect()) as db, db:
            _insert(db, "attributions", rows, replace=True)

    def record_fit(self, run_id: str, cell: Cell, report: dict) -> None:
        """What fitting the cell's explainer cost (e.g. a distilled explainer's training), and the teacher
        it distils, if any."""
        teacher = cell.explainer.teacher
        row = {
            "run_id": run_id, "dataset": cell.dataset.label, "model": cell.model.label, "variant": cell.variant,
            "explainer": cell.explainer.name, "explainer_label": cell.explainer.label,
            "explainer_params": cell.explainer.params_json, "seed": cell.seed, "report": json.dumps(report),
            "teacher": None if teacher is None else json.dumps({"name": teacher.name, "params": teacher.params_json}),
            "explainer_id": cell.explainer.id, "teacher_id": None if teacher is None else teacher.id,
        }  # fmt: skip
        with closing(self.connect()) as db, db:
            _insert(db, "explainer_fits", [row], replace=True)

    def fits(self, run_id: str) -> list[dict]:
        with closing(self.connect()) as db:
            rows = [
                dict(row)
                for row in db.execute("SELECT * FROM explainer_fits WHERE run_id=? ORDER BY rowid", (run_id,))
            ]
        for row in rows:
            row["report"] = json.loads(row["report"])
        return rows

    def record_cell(
        self,
        run_id: str,
        cell: Cell,
        example_ids: Sequence[str],
        values: Sequence[float],
        seconds: float,
        curves: Sequence[dict] | None = None,
        units: Sequence[str] | None = None,
        reference_values: Sequence[float] | None = None,
        notes: Sequence[str] = (),
        provenance: CellProvenance | None = None,
    ) -> None:
        """A finished cell: its per-example records and its done mark, in one transaction."""
        metric = cell.metric
        common = {
            "run_id": run_id, "cell_id": cell.id, "dataset": cell.dataset.label, "model": cell.model.label,
            "variant": cell.variant, "explainer": cell.explainer.name,
            "explainer_params": cell.explainer.params_json, "metric": metric.name,
            "metric_params": metric.params_json, "family": metric.cls.family, "seed": cell.seed,
        }  # fmt: skip
        n = len(example_ids)
        units = [None] * n if units is None else list(units)
        references = [None] * n if reference_values is None else list(reference_values)
        rows = [
            {
                **common,
                "example_id": example_id,
                "value": _number(value),
                "unit": unit,
                "reference_value": _number(reference),
            }  # fmt: skip
            for example_id, value, unit, reference in zip(example_ids, values, units, references, strict=True)
        ]
        with closing(self.connect()) as db, db:
            db.execute("DELETE FROM records WHERE run_id=? AND cell_id=?", (run_id, cell.id))
            _insert(db, "records", rows)
            db.execute("DELETE FROM curves WHERE run_id=? AND cell_id=?", (run_id, cell.id))
            if curves is not None:
                _insert(
                    db,
                    "curves",
                    [
                        {
                            "run_id": run_id,
                            "cell_id": cell.id,
                            "example_id": example_id,
                            "curve": json.dumps(curve),
                        }
                        for example_id, curve in zip(example_ids, curves, strict=True)
                    ],
                )
            self._mark(db, run_id, cell, "done", None, seconds, provenance, list(notes))

    def fail_cell(
        self, run_id: str, cell: Cell, error: str, provenance: CellProvenance | None = None
    ) -> None:
        with closing(self.connect()) as db, db:
            self._mark(db, run_id, cell, "failed", error, None, provenance, [])

    def skip_cell(
        self, run_id: str, cell: Cell, reason: str, provenance: CellProvenance | None = None
    ) -> None:
        """A cell this machine cannot run (``grid.unavailable``: its model names a device it lacks),
        with the reason; not a failure: the suite is right, and another machine runs it."""
        with closing(self.connect()) as db, db:
            self._mark(db, run_id, cell, "skipped", reason, None, provenance, [])

    @staticmethod
    def _mark(
        db,
        run_id: str,
        cell: Cell,
        status: str,
        error: str | None,
        seconds: float | None,
        provenance: CellProvenance | None,
        notes: list[str],
    ) -> None:
        metric = cell.metric
        provenance = provenance or CellProvenance(identity=cell.identity)
        row = {
            "run_id": run_id, "cell_id": cell.id, "dataset": cell.dataset.label, "model": cell.model.label,
            "variant": cell.variant, "explainer": cell.explainer.name, "explainer_label": cell.explainer.label,
            "explainer_params": cell.explainer.params_json, "metric": metric.name, "metric_label": metric.label,
            "metric_params": metric.params_json, "family": metric.cls.family,
            "direction": metric.cls.direction_for(metric.params), "seed": cell.seed, "status": status,
            "error": error, "seconds": seconds, "finished_at": now(),
            "dataset_id": cell.dataset.id, "model_id": cell.model.id, "explainer_id": cell.explainer.id,
            "metric_id": cell.metric.id, "identity": json.dumps(provenance.identity, sort_keys=True),
            "examples_fingerprint": provenance.examples, "n_examples": provenance.n_examples,
            "example_limit": provenance.limit, "notes": json.dumps(notes),
            "timing": None if provenance.timings is None else json.dumps(provenance.timings),
        }  # fmt: skip
        _insert(db, "cells", [row], replace=True)

    # -- reading -------------------------------------------------------------------------------
    def done_cells(self, run_id: str) -> set[str]:
        """The cells a resumed run does not run again: the finished ones and the skipped ones (final for
        the run, unlike failures; a new run, ``--new-run``, on a machine with the device runs them)."""
        with closing(self.connect()) as db:
            return {
                row["cell_id"]
                for row in db.execute(
                    "SELECT cell_id FROM cells WHERE run_id=? AND status IN ('done', 'skipped')", (run_id,)
                )
            }

    def run_lock(self, run_id: str) -> FileLock:
        """The lock a process holds while it runs ``run_id``: a lock file, released by the operating
        system when the process ends however it ends (kill -9 included), unlike a pid, which can be
        reused and means nothing on another host."""
        (self.results_dir / "locks").mkdir(parents=True, exist_ok=True)
        return FileLock(self.results_dir / "locks" / f"{run_id}.lock")

    def resumable_run(self, suite_hash: str) -> str | None:
        """The latest unfinished run of this exact suite (its process may still hold its lock: see
        ``run_lock``)."""
        with closing(self.connect()) as db:
            row = db.execute(
                "SELECT run_id FROM runs WHERE suite_hash=? AND status='running' "
                "ORDER BY started_at DESC, rowid DESC LIMIT 1",
                (suite_hash,),
            ).fetchone()
        return None if row is None else row["run_id"]

    def resolve(self, run: str) -> str:
        """A run id from a run id, a unique prefix of one, or ``latest``."""
        if not self.path.exists():
            raise BenchError(f"{self.path}: no results yet; run a suite first (bench run SUITE)")
        with closing(self.connect()) as db:
            if run == "latest":
                row = db.execute(
                    "SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1"
                ).fetchone()
                if row is None:
                    raise BenchError(f"{self.path}: no runs stored yet; run a suite first (bench run SUITE)")
                return row["run_id"]
            rows = db.execute(  # a prefix match that reads % and _ literally (LIKE would not)
                "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(run), run)
            ).fetchall()
        if len(rows) == 1:
            return rows[0]["run_id"]
        if not rows:
            raise BenchError(f"run '{run}' not found in {self.path}; see the run ids with 'bench runs'")
        raise BenchError(f"run '{run}' is ambiguous ({len(rows)} runs start with it); give more of the id")

    def run(self, run_id: str) -> dict:
        with closing(self.connect()) as db:
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        result = dict(row)
        result["versions"] = json.loads(result["versions"])
        result["options"] = json.loads(result["options"])
        return result

    def runs(self) -> list[dict]:
        if not self.path.exists():
            return []
        with closing(self.connect()) as db:
            return [
                dict(row)
                for row in db.execute(
                    "SELECT r.run_id, r.suite, r.suite_version, r.status, r.started_at, r.finished_at, r.device, "
                    "(SELECT COUNT(*) FROM cells c WHERE c.run_id=r.run_id AND c.status='done') AS done, "
                    "(SELECT COUNT(*) FROM cells c WHERE c.run_id=r.run_id AND c.status='failed') AS failed "
                    "FROM runs r ORDER BY r.started_at, r.rowid"
                )
            ]

    def cells(self, run_id: str) -> list[dict]:
        with closing(self.connect()) as db:
            rows = [
                dict(row)
                for row in db.execute("SELECT * FROM cells WHERE run_id=? ORDER BY rowid", (run_id,))
            ]
        for row in rows:
            for key, empty in (("identity", "null"), ("notes", "[]"), ("timing", "null")):
                row[key] = json.loads(row[key] or empty)
        return rows

    def models(self, run_id: str) -> list[dict]:
        with closing(self.connect()) as db:
            rows = [
                dict(row)
                for row in db.execute("SELECT * FROM models WHERE run_id=? ORDER BY rowid", (run_id,))
            ]
        for row in rows:
            row["training"] = json.loads(row["training"])
            row["test_predictions"] = json.loads(row["test_predictions"] or "null")
            row["dataset_id"] = row["dataset_id"] or row["dataset"]
            row["model_id"] = row["model_id"] or f"{row['model']} {row['model_params']}"
        return rows

    def records(self, run_id: str) -> Iterator[dict]:
        """Per-example records with the documented export field names, params as objects."""
        with closing(self.connect()) as db:
            query = (
                "SELECT r.run_id, runs.suite, r.dataset, r.model, r.variant, r.explainer, r.explainer_params, "
                "r.metric, r.metric_params, r.family, r.seed, r.example_id, r.value, r.unit, r.reference_value "
                "FROM records r JOIN runs ON runs.run_id = r.run_id WHERE r.run_id=? ORDER BY r.rowid"
            )
            for row in db.execute(query, (run_id,)):
                record = dict(row)
                record["explainer_params"] = json.loads(record["explainer_params"])
                record["metric_params"] = json.loads(record["metric_params"])
                yield record

    def report_rows(self, run_id: str) -> list[dict]:
        """Per-example values with the identities reports group by (``*_id``; a store written before
        identities were stored falls back to the labels), the labels they show, and the metadata they
        rank by."""
        with closing(self.connect()) as db:
            return [
                dict(row)
                for row in db.execute(
                    "SELECT c.family, c.direction, c.dataset, c.model, c.variant, c.explainer, c.explainer_label, "
                    "c.metric, c.metric_label, "
                    "COALESCE(c.dataset_id, c.dataset) AS dataset_id, COALESCE(c.model_id, c.model) AS model_id, "
                    "COALESCE(c.explainer_id, c.explainer_label) AS explainer_id, "
                    "COALESCE(c.metric_id, c.metric_label) AS metric_id, "
                    "r.seed, r.example_id, r.value, COALESCE(r.unit, r.example_id) AS unit, r.reference_value "
                    "FROM records r JOIN cells c "
                    "ON c.run_id = r.run_id AND c.cell_id = r.cell_id WHERE r.run_id=? ORDER BY r.rowid",
                    (run_id,),
                )
            ]

    def curves(self, run_id: str) -> Iterator[dict]:
        """Per-example curves with the record's identifying fields."""
        with closing(self.connect()) as db:
            query = (
                "SELECT r.run_id, r.dataset, r.model, r.variant, r.explainer, r.explainer_params, r.metric, "
                "r.metric_params, r.seed, r.example_id, c.curve FROM curves c JOIN records r "
                "ON r.run_id = c.run_id AND r.cell_id = c.cell_id AND r.example_id = c.example_id "
                "WHERE c.run_id=? ORDER BY c.rowid"
            )
            for row in db.execute(query, (run_id,)):
                record = dict(row)
                for key in ("explainer_params", "metric_params", "curve"):
                    record[key] = json.loads(record[key])
                yield record

    def attributions(self, run_id: str) -> Iterator[dict]:
        with closing(self.connect()) as db:
            for row in db.execute("SELECT * FROM attributions WHERE run_id=? ORDER BY rowid", (run_id,)):
                record = dict(row)
                record["explainer_params"] = json.loads(record["explainer_params"])
                record.update(json.loads(record.pop("attribution")))
                yield record
