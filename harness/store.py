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
from datetime import UTC, datetime
from pathlib import Path

from harness.attribution import Attribution
from harness.errors import BenchError
from harness.grid import Cell

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
    status           TEXT NOT NULL,       -- done | failed
    error            TEXT,
    seconds          REAL,
    finished_at      TEXT NOT NULL,
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
    PRIMARY KEY (run_id, dataset, model, variant, explainer, explainer_params, seed)
);
CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, family, metric);
"""

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
)


def _upgrade(connection: sqlite3.Connection) -> None:
    """Add the columns later versions introduced to a store written by an earlier one."""
    columns = {row["name"] for row in connection.execute("PRAGMA table_info(models)")}
    if "test_predictions" not in columns:
        with connection:
            connection.execute("ALTER TABLE models ADD COLUMN test_predictions TEXT")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / "bench.sqlite"

    def connect(self) -> sqlite3.Connection:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(SCHEMA)
        _upgrade(connection)
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
        with closing(self.connect()) as db, db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    suite.name,
                    suite.version,
                    suite_hash,
                    suite_path,
                    suite_text,
                    "running",
                    now(),
                    None,
                    device,
                    git_revision,
                    json.dumps(versions),
                    json.dumps(options),
                    socket.gethostname(),
                    os.getpid(),
                ),
            )

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
        dataset: str,
        model: str,
        model_params: str,
        variant: str,
        seed: int,
        cache_key: str,
        test_accuracy: float | None,
        n_test: int,
        training: dict,
        test_predictions: Sequence[int] | None = None,
    ) -> None:
        with closing(self.connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    dataset,
                    model,
                    model_params,
                    variant,
                    seed,
                    cache_key,
                    test_accuracy,
                    n_test,
                    json.dumps(training),
                    None if test_predictions is None else json.dumps(list(test_predictions)),
                ),
            )

    def record_attributions(self, run_id: str, cell: Cell, attributions: Sequence[Attribution]) -> None:
        rows = [
            (
                run_id,
                cell.dataset.label,
                cell.model.label,
                cell.variant,
                cell.explainer.name,
                cell.explainer.params_json,
                cell.seed,
                a.example_id,
                json.dumps(a.to_dict(), ensure_ascii=False),
            )
            for a in attributions
        ]
        with closing(self.connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO attributions VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def record_fit(self, run_id: str, cell: Cell, report: dict) -> None:
        """What fitting the cell's explainer cost (e.g. a distilled explainer's training), and the teacher
        it distils, if any."""
        teacher = cell.explainer.teacher
        teacher_json = (
            None if teacher is None else json.dumps({"name": teacher.name, "params": teacher.params_json})
        )
        row = (
            run_id, cell.dataset.label, cell.model.label, cell.variant, cell.explainer.name,
            cell.explainer.label, cell.explainer.params_json, cell.seed, json.dumps(report), teacher_json,
        )  # fmt: skip
        with closing(self.connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO explainer_fits VALUES (?,?,?,?,?,?,?,?,?,?)", row)

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
    ) -> None:
        """A finished cell: its per-example records and its done mark, in one transaction."""
        metric = cell.metric
        common = (
            run_id, cell.id, cell.dataset.label, cell.model.label, cell.variant, cell.explainer.name,
            cell.explainer.params_json, metric.name, metric.params_json, metric.cls.family, cell.seed,
        )  # fmt: skip
        rows = [
            (*common, example_id, None if value != value else float(value))
            for example_id, value in zip(example_ids, values, strict=True)
        ]
        with closing(self.connect()) as db, db:
            db.execute("DELETE FROM records WHERE run_id=? AND cell_id=?", (run_id, cell.id))
            db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.execute("DELETE FROM curves WHERE run_id=? AND cell_id=?", (run_id, cell.id))
            if curves is not None:
                db.executemany(
                    "INSERT INTO curves VALUES (?,?,?,?)",
                    [
                        (run_id, cell.id, example_id, json.dumps(curve))
                        for example_id, curve in zip(example_ids, curves, strict=True)
                    ],
                )
            self._mark(db, run_id, cell, "done", None, seconds)

    def fail_cell(self, run_id: str, cell: Cell, error: str) -> None:
        with closing(self.connect()) as db, db:
            self._mark(db, run_id, cell, "failed", error, None)

    @staticmethod
    def _mark(db, run_id: str, cell: Cell, status: str, error: str | None, seconds: float | None) -> None:
        metric = cell.metric
        db.execute(
            "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                cell.id,
                cell.dataset.label,
                cell.model.label,
                cell.variant,
                cell.explainer.name,
                cell.explainer.label,
                cell.explainer.params_json,
                metric.name,
                metric.label,
                metric.params_json,
                metric.cls.family,
                metric.cls.direction_for(metric.params),
                cell.seed,
                status,
                error,
                seconds,
                now(),
            ),  # fmt: skip
        )

    # -- reading -------------------------------------------------------------------------------
    def done_cells(self, run_id: str) -> set[str]:
        with closing(self.connect()) as db:
            return {
                row["cell_id"]
                for row in db.execute("SELECT cell_id FROM cells WHERE run_id=? AND status='done'", (run_id,))
            }

    def resumable_run(self, suite_hash: str) -> str | None:
        """The latest unfinished run of this exact suite whose process is gone (killed or crashed)."""
        with closing(self.connect()) as db:
            row = db.execute(
                "SELECT run_id, pid, host FROM runs WHERE suite_hash=? AND status='running' "
                "ORDER BY started_at DESC, rowid DESC LIMIT 1",
                (suite_hash,),
            ).fetchone()
        if row is None:
            return None
        if row["host"] == socket.gethostname() and _pid_alive(row["pid"]) and row["pid"] != os.getpid():
            return None  # still running in another process
        return row["run_id"]

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
            rows = db.execute("SELECT run_id FROM runs WHERE run_id LIKE ?", (run + "%",)).fetchall()
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
            return [
                dict(row)
                for row in db.execute("SELECT * FROM cells WHERE run_id=? ORDER BY rowid", (run_id,))
            ]

    def models(self, run_id: str) -> list[dict]:
        with closing(self.connect()) as db:
            rows = [
                dict(row)
                for row in db.execute("SELECT * FROM models WHERE run_id=? ORDER BY rowid", (run_id,))
            ]
        for row in rows:
            row["training"] = json.loads(row["training"])
            row["test_predictions"] = json.loads(row["test_predictions"] or "null")
        return rows

    def records(self, run_id: str) -> Iterator[dict]:
        """Per-example records with the documented export field names, params as objects."""
        with closing(self.connect()) as db:
            query = (
                "SELECT r.run_id, runs.suite, r.dataset, r.model, r.variant, r.explainer, r.explainer_params, "
                "r.metric, r.metric_params, r.family, r.seed, r.example_id, r.value "
                "FROM records r JOIN runs ON runs.run_id = r.run_id WHERE r.run_id=? ORDER BY r.rowid"
            )
            for row in db.execute(query, (run_id,)):
                record = dict(row)
                record["explainer_params"] = json.loads(record["explainer_params"])
                record["metric_params"] = json.loads(record["metric_params"])
                yield record

    def report_rows(self, run_id: str) -> list[dict]:
        """Per-example values with the labels and metadata reports group and rank by."""
        with closing(self.connect()) as db:
            return [
                dict(row)
                for row in db.execute(
                    "SELECT c.family, c.direction, c.dataset, c.model, c.variant, c.explainer, c.explainer_label, "
                    "c.metric, c.metric_label, "
                    "r.seed, r.example_id, r.value FROM records r JOIN cells c "
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
