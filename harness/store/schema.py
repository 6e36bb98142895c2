"""The result store's database: one SQLite file, ``results/bench.sqlite``, its schema and migrations.

SQLite because it ships with Python, is one file a user can copy or query with any SQL tool, and
gives atomic transactions: a cell's records and its "done" mark are committed together, so a run
killed at any moment (kill -9 included) never leaves a half-written cell, and a resumed run knows
exactly which cells are finished. The schema is documented in ``results/README.md``. Writing a run is
``harness.store.writer``'s (only the driver of a run writes), reading runs ``harness.store.queries``'.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from harness.errors import BenchError


def _number(value: float | None) -> float | None:
    """A value as stored: NULL for undefined (NaN). The harness records only checked values, finite or
    NaN (``harness.boundary.values_problem``); a report refuses any other (``stored_value_problem``)."""
    return None if value is None or value != value else float(value)


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    suite         TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    suite_hash    TEXT NOT NULL,
    suite_path    TEXT,
    suite_text    TEXT NOT NULL,
    status        TEXT NOT NULL,          -- running | interrupted | complete | complete-with-failures
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    device        TEXT,
    git_revision  TEXT,
    versions      TEXT NOT NULL,          -- JSON: library and plugin package versions
    options       TEXT NOT NULL,          -- JSON: command-line options of the run
    host          TEXT,
    pid           INTEGER,
    inputs        TEXT,                   -- JSON: each dataset's content fingerprint, each model's weights
    in_flight     TEXT,                   -- JSON: the task running in the driver's process (serial), if any
    crashed       TEXT,                   -- JSON {task id: why}: tasks that ended the process, not retried
    expectations  TEXT,                   -- JSON list: the suite's expectations as the run read them
    claims        TEXT                    -- JSON list: the paper's claims the suite states, as the run read them
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
    value_range      TEXT,                -- JSON [low, high]: the metric's declared range (null: unbounded)
    metric_description TEXT,              -- the metric's one-line description, as the run's plugin gave it
    explainer_baseline TEXT,              -- Explainer.baseline: "chance", or NULL (a method)
    chance_applies   INTEGER,             -- Metric.chance_applies: 1 or 0
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
    labels        TEXT,                   -- JSON: the dataset's class names, by class index
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
    gold_label       INTEGER,             -- the example's labelled class
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
    {"cells": {"value_range": "TEXT"}, "models": {"labels": "TEXT"}, "attributions": {"gold_label": "INTEGER"}},
    # inputs: what a resume must find unchanged; in_flight and crashed: what a crash must not repeat
    {"runs": {"inputs": "TEXT", "in_flight": "TEXT", "crashed": "TEXT"}},
    # what the report judges and says, as the run read it: never today's schema or registry
    {"runs": {"expectations": "TEXT", "claims": "TEXT"}, "cells": {"metric_description": "TEXT", "explainer_baseline": "TEXT", "chance_applies": "INTEGER"}},
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


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def database_problem(path: Path | str | None, error: sqlite3.DatabaseError) -> str | None:
    """One line saying why the results database at ``path`` failed when the file is not at fault: a
    read-only folder or mount, a full disk, a file that cannot be opened (permissions) or is locked. None
    for any other error (the file may not be a bench database), whose message is the caller's."""
    name = path or "the results folder's bench.sqlite"
    text = str(error).lower()
    if "readonly" in text or "read-only" in text:
        return (
            f"{name}: cannot write the results database: it is read-only (a read-only mount, or no write "
            "permission); choose a writable results folder (--out, --results)"
        )
    if "disk is full" in text or "disk full" in text:
        return (
            f"{name}: the disk is full; free space there, or choose a results folder on another disk "
            "(--out, --results)"
        )
    if "unable to open" in text:
        return (
            f"{name}: cannot open the results database (permission denied, or a folder missing); check that "
            "you may write there, or choose another results folder (--out, --results)"
        )
    if "locked" in text:
        return f"{name}: {error}; another bench process is writing it: try again when it has finished"
    return None


class Database:
    """The results folder's database: connections (each migrated to the current schema), the run logs
    and the run locks."""

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
                database_problem(self.path, error)
                or f"{self.path}: not a bench results database ({error}); move it away or choose another "
                "results folder"
            ) from None
        return connection

    def log_path(self, run_id: str) -> Path:
        return self.results_dir / "logs" / f"{run_id}.log"

    def run_lock(self, run_id: str) -> FileLock:
        """The lock a process holds while it runs ``run_id``: a lock file, released by the operating
        system when the process ends however it ends (kill -9 included), unlike a pid, which can be
        reused and means nothing on another host."""
        (self.results_dir / "locks").mkdir(parents=True, exist_ok=True)
        return FileLock(self._lock_path(run_id))

    def run_lock_held(self, run_id: str) -> bool:
        """Whether a live process (this one included) holds ``run_id``'s lock: tried without waiting and
        let go at once. A lock file that is not there is held by none (taking a lock creates it); one
        that cannot be tried here (a read-only results folder) counts as held, as nothing is known."""
        path = self._lock_path(run_id)
        if not path.exists():
            return False
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except (Timeout, OSError):
            return True
        lock.release()
        return False

    def _lock_path(self, run_id: str) -> Path:
        return self.results_dir / "locks" / f"{run_id}.lock"
