"""Reading runs from the store: resume, reports, exports, listings."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from contextlib import closing

from harness.boundary import RANGE_TOLERANCE
from harness.errors import BenchError
from harness.store.schema import Database

CRASHED = "crashed"
"""The status a run stored as ``running`` is read with when no process holds its lock: its process
ended without recording how (killed, crashed, the machine stopped). ``bench run`` resumes it, as an
``interrupted`` one."""


def stored_value_problem(value, value_range: tuple) -> str | None:
    """What is wrong with a record's stored value (or reference value), or None: it must be NULL
    (undefined) or a finite number inside its cell's stored ``value_range`` (low, high; None for an open
    end), to ``RANGE_TOLERANCE``, as the harness checks every value before it records it
    (``harness.boundary.values_problem``).

    Anything else was put there after the run: a report refuses it rather than leave it out or show it.
    Shown, it would be a mean or a column's best that no measurement gave; left out, the table would
    show a number over other examples than those measured, and nothing proves the values still in
    range were not changed too. So a report of such a store is one error naming the record and what to
    do (exit code 2), never a table."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"which is not a number (a {type(value).__name__})"
    if not math.isfinite(value):
        return "which is not finite"
    low, high = value_range
    if (low is not None and value < low - RANGE_TOLERANCE * max(1.0, abs(low))) or (
        high is not None and value > high + RANGE_TOLERANCE * max(1.0, abs(high))
    ):
        return f"outside the metric's declared range [{low}, {high}]"
    return None


def _refuse_impossible(run_id: str, row: dict) -> None:
    """A ``BenchError`` for a stored value or reference value the harness never records (text, infinite,
    outside the cell's declared range: ``stored_value_problem``): the results store was changed after the
    run wrote it, so no report or export is made from it."""
    for field in ("value", "reference_value"):
        problem = stored_value_problem(row[field], row["value_range"])
        if problem is not None:
            raise BenchError(
                f"run {run_id}: cell {row['cell_id']} ({row['explainer_label']!r} × "
                f"{row['metric_label']!r}) stores the {field.replace('_', ' ')} {row[field]!r} for "
                f"example {row['example_id']!r}, {problem}: the harness never records such a value, "
                "so the results store was changed after the run wrote it; no report is made from "
                "it. Run the suite again (bench run SUITE --new-run) or restore the results folder"
            )


@functools.cache  # a store holds a few distinct ranges: parsed once each, not once per record
def _stored_range(text: str | None) -> tuple:
    """A cell's stored ``value_range`` (JSON [low, high], null for an open end; null: unbounded) as
    (low, high); a ``BenchError`` for anything else."""
    try:
        parsed = json.loads(text or "null") or [None, None]
    except ValueError:
        parsed = text
    if not (
        isinstance(parsed, list)
        and len(parsed) == 2
        and all(b is None or (isinstance(b, int | float) and not isinstance(b, bool)) for b in parsed)
    ):
        raise BenchError(
            f"a cell of the results store has the value range {text!r}, not [low, high]: the store was "
            "changed after the run wrote it; run the suite again (bench run SUITE --new-run)"
        )
    return tuple(parsed)


class Queries(Database):
    """Runs, cells, models, records, curves, attributions and fits of the results folder."""

    def _status_now(self, run: dict) -> dict:
        """The run with its status as it is now: ``running`` only while a process holds the run's lock,
        else ``CRASHED``. Derived when read: the stored row keeps what its process last wrote."""
        if run["status"] == "running" and not self.run_lock_held(run["run_id"]):
            run["status"] = CRASHED
        return run

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

    def resumable_run(self, suite_hash: str) -> str | None:
        """The latest unfinished run of this exact suite: ``running`` (its process may still hold its
        lock, see ``run_lock``, or have died) or ``interrupted`` (by the user)."""
        with closing(self.connect()) as db:
            row = db.execute(
                "SELECT run_id FROM runs WHERE suite_hash=? AND status IN ('running', 'interrupted') "
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
        rows = self.matching(run)
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise BenchError(f"run '{run}' not found in {self.path}; see the run ids with 'bench runs'")
        raise BenchError(f"run '{run}' is ambiguous ({len(rows)} runs start with it); give more of the id")

    def matching(self, prefix: str) -> list[str]:
        """The ids of the stored runs that start with ``prefix``."""
        if not self.path.exists():
            return []
        with closing(self.connect()) as db:
            rows = db.execute(  # a prefix match that reads % and _ literally (LIKE would not)
                "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        return [row["run_id"] for row in rows]

    def run(self, run_id: str) -> dict:
        with closing(self.connect()) as db:
            row = db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        result = self._status_now(dict(row))
        result["versions"] = json.loads(result["versions"])
        result["options"] = json.loads(result["options"])
        for key, empty in (
            ("inputs", "null"), ("in_flight", "null"), ("crashed", "{}"), ("expectations", "null"), ("claims", "null"),
        ):  # fmt: skip
            result[key] = json.loads(result[key] or empty)
        return result

    def runs(self) -> list[dict]:
        if not self.path.exists():
            return []
        with closing(self.connect()) as db:
            return [
                self._status_now(dict(row))
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
            for key, empty in (
                ("identity", "null"),
                ("notes", "[]"),
                ("timing", "null"),
                ("value_range", "null"),
            ):
                row[key] = json.loads(row[key] or empty)
            _declared(row)
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
            row["labels"] = json.loads(row["labels"] or "null")
            row["dataset_id"] = row["dataset_id"] or row["dataset"]
            row["model_id"] = row["model_id"] or f"{row['model']} {row['model_params']}"
        return rows

    def records(self, run_id: str) -> Iterator[dict]:
        """Per-example records with the documented export field names, params as objects; a value the
        harness never records is refused as ``report_rows`` refuses it (``_refuse_impossible``), so an
        export carries no number a report would not show."""
        with closing(self.connect()) as db:
            query = (
                "SELECT r.run_id, runs.suite, r.dataset, r.model, r.variant, r.explainer, r.explainer_params, "
                "r.metric, r.metric_params, r.family, r.seed, r.example_id, r.value, r.unit, r.reference_value, "
                "r.cell_id, c.explainer_label, c.metric_label, c.value_range "
                "FROM records r JOIN runs ON runs.run_id = r.run_id "
                "LEFT JOIN cells c ON c.run_id = r.run_id AND c.cell_id = r.cell_id "
                "WHERE r.run_id=? ORDER BY r.rowid"
            )
            for row in db.execute(query, (run_id,)):
                record = dict(row)
                checked = {
                    key: record.pop(key)
                    for key in ("cell_id", "explainer_label", "metric_label", "value_range")
                }
                checked["value_range"] = _stored_range(checked["value_range"])
                _refuse_impossible(run_id, {**checked, **record})
                record["explainer_params"] = json.loads(record["explainer_params"])
                record["metric_params"] = json.loads(record["metric_params"])
                yield record

    def report_rows(self, run_id: str) -> list[dict]:
        """Per-example values with the identities reports group by (``*_id``; a store written before
        identities were stored falls back to the labels), the labels they show, and the metadata they
        rank by and colour by (``value_range``: the metric's declared (low, high), None for an open end)."""
        with closing(self.connect()) as db:
            rows = [
                dict(row)
                for row in db.execute(
                    "SELECT c.cell_id, c.family, c.direction, c.dataset, c.model, c.variant, c.explainer, c.explainer_label, "
                    "c.metric_params, "
                    "c.metric, c.metric_label, "
                    "COALESCE(c.dataset_id, c.dataset) AS dataset_id, COALESCE(c.model_id, c.model) AS model_id, "
                    "COALESCE(c.explainer_id, c.explainer_label) AS explainer_id, "
                    "COALESCE(c.metric_id, c.metric_label) AS metric_id, "
                    "c.value_range, r.seed, r.example_id, r.value, COALESCE(r.unit, r.example_id) AS unit, r.reference_value "
                    "FROM records r JOIN cells c "
                    "ON c.run_id = r.run_id AND c.cell_id = r.cell_id WHERE r.run_id=? ORDER BY r.rowid",
                    (run_id,),
                )
            ]
        for row in rows:
            row["value_range"] = _stored_range(row["value_range"])
            _refuse_impossible(run_id, row)
        return rows

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

    def fits(self, run_id: str) -> list[dict]:
        with closing(self.connect()) as db:
            rows = [
                dict(row)
                for row in db.execute("SELECT * FROM explainer_fits WHERE run_id=? ORDER BY rowid", (run_id,))
            ]
        for row in rows:
            row["report"] = json.loads(row["report"])
        return rows


def _declared(cell: dict) -> None:
    """A cell stored before cells kept their plugins' declarations (store schema 5) gets them as that
    version decided them: the explainer named ``random`` was the chance baseline, and chance applied to
    every family but cost."""
    if cell.get("chance_applies") is None:
        cell["explainer_baseline"] = "chance" if cell["explainer"] == "random" else None
        cell["chance_applies"] = cell["family"] != "cost"
    cell["chance_applies"] = bool(cell["chance_applies"])
