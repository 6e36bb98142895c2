"""Writing a run into the store: what the driver records as the run goes (its one writer)."""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass

from harness.attribution import Attribution
from harness.entries import PluginEntry
from harness.grid import Cell
from harness.store.schema import Database, _insert, _number, now


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


def _bound(value: float) -> float | None:
    """A range bound as JSON holds it: None for an infinite one."""
    return float(value) if math.isfinite(value) else None


def _dumped(items) -> str:
    """Expectations or claims as JSON, every field written (defaults included, so that a later default
    does not change what a stored run said)."""
    return json.dumps([item.model_dump(mode="json", by_alias=True) for item in items])


class RunWriter(Database):
    """Creates, claims and finishes runs; records models, attributions, fits and cells."""

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
        inputs: dict | None = None,
    ) -> None:
        """A new run, ``running``; ``inputs`` is what it computes on beyond the suite's text (each
        dataset's fingerprint, each model's weights), which a resume must find unchanged."""
        row = {
            "run_id": run_id, "suite": suite.name, "suite_version": suite.version, "suite_hash": suite_hash,
            "suite_path": suite_path, "suite_text": suite_text, "status": "running", "started_at": now(),
            "finished_at": None, "device": device, "git_revision": git_revision,
            "versions": json.dumps(versions), "options": json.dumps(options), "host": socket.gethostname(),
            "pid": os.getpid(), "inputs": None if inputs is None else json.dumps(inputs, sort_keys=True),
            "expectations": _dumped(suite.expectations), "claims": _dumped(suite.claims),
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
        """The run is over (``complete``, ``complete-with-failures``) or stopped by the user
        (``interrupted``, which a re-run resumes); no task of it is in flight any more."""
        with closing(self.connect()) as db, db:
            db.execute(
                "UPDATE runs SET status=?, finished_at=?, in_flight=NULL WHERE run_id=?",
                (status, now(), run_id),
            )

    def set_in_flight(self, run_id: str, task: dict | None) -> None:
        """The task about to run in the driver's process (None: none), committed before it runs: if it
        takes the process down, the next run of the suite finds it here (``Queries.run``)."""
        with closing(self.connect()) as db, db:
            db.execute(
                "UPDATE runs SET in_flight=? WHERE run_id=?",
                (None if task is None else json.dumps(task), run_id),
            )

    def set_crashed(self, run_id: str, crashed: dict[str, str]) -> None:
        """The run's tasks that ended its process (task id -> why): a resume fails them rather than run
        them again (``bench run --retry-crashed`` clears them). Clears the task in flight."""
        with closing(self.connect()) as db, db:
            db.execute(
                "UPDATE runs SET crashed=?, in_flight=NULL WHERE run_id=?",
                (json.dumps(crashed, sort_keys=True) if crashed else None, run_id),
            )

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
        labels: Sequence[str] | None = None,
    ) -> None:
        row = {
            "run_id": run_id, "dataset": dataset.label, "model": model.label, "model_params": model.params_json,
            "variant": variant, "seed": seed, "cache_key": cache_key, "test_accuracy": test_accuracy,
            "n_test": n_test, "training": json.dumps(training),
            "test_predictions": None if test_predictions is None else json.dumps(list(test_predictions)),
            "dataset_id": dataset.id, "model_id": model.id,
            "labels": None if labels is None else json.dumps(list(labels), ensure_ascii=False),
        }  # fmt: skip
        with closing(self.connect()) as db, db:
            _insert(db, "models", [row], replace=True)

    def record_attributions(
        self,
        run_id: str,
        cell: Cell,
        attributions: Sequence[Attribution],
        gold_labels: Sequence[int | None] | None = None,
    ) -> None:
        """The cell's attributions, each with its example's labelled class (``gold_labels``, aligned)."""
        gold = list(gold_labels) if gold_labels else [None] * len(attributions)
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
                "gold_label": label,
            }  # fmt: skip
            for a, label in zip(attributions, gold, strict=True)
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
            "value_range": json.dumps([_bound(bound) for bound in metric.cls.range]),
            "metric_description": metric.cls.description(),
            "explainer_baseline": cell.explainer.cls.baseline, "chance_applies": int(metric.cls.chance_applies),
        }  # fmt: skip
        _insert(db, "cells", [row], replace=True)
