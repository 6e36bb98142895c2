"""A report → machine-readable CSV (one line per family-table cell and per explainer-matrix cell) and
JSON (the whole report, keyed as its readers expect). Family tables and explainer matrices are read from
the document's cells and columns (their ``data``); the rest from the analysis, whose objects know their
own dictionaries."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from harness.distillation import TEST as PAIRING_TEST
from harness.expectations import TEST as EXPECTATION_TEST
from harness.inert import csv_cell
from harness.report.document import Document, Section
from harness.stats import ALPHA

if TYPE_CHECKING:
    from harness.report.analysis import Report

CELL_FIELDS = (
    "dataset",
    "model",
    "variant",
    "explainer_label",
    "metric_label",
    "seed",
)  # a cell, as JSON shows it
RUN_FIELDS = (
    "run_id", "suite", "suite_version", "suite_hash", "status", "started_at", "finished_at", "device",
    "git_revision", "versions", "options", "host",
)  # fmt: skip
MODEL_FIELDS = (
    "dataset", "model", "variant", "seed", "test_accuracy", "n_test", "shared_predictions", "training",
)  # fmt: skip
FIT_FIELDS = ("dataset", "model", "variant", "explainer_label", "seed", "report")
CSV_HEADER = (
    "family", "dataset", "model", "variant", "metric", "direction", "explainer", "mean", "ci_low", "ci_high",
    "n", "n_undefined", "n_units", "best", "p_vs_best", "p_adjusted", "significant_vs_best",
)  # fmt: skip


class _NeutralWriter:
    """A csv writer whose text cells cannot run as spreadsheet formulas (``harness.inert.csv_cell``):
    labels and dataset names are the user's."""

    def __init__(self, buffer: io.StringIO):
        self._writer = csv.writer(buffer, lineterminator="\n")

    def writerow(self, row: list) -> None:
        self._writer.writerow([csv_cell(value) for value in row])


def csv_text(document: Document) -> str:
    buffer = io.StringIO()
    writer = _NeutralWriter(buffer)
    writer.writerow(CSV_HEADER)
    for section in document.of_kind("family"):
        [table] = section.tables
        for index, header in enumerate(table.headers):
            if header.names_rows:
                continue
            column = header.data
            for row in table.rows:
                cell = row[index].data
                if cell is None:
                    continue
                comparison = cell["vs_best"] or {}
                writer.writerow(
                    [
                        section.title, column["dataset"], column["model"], column["variant"], column["metric"],
                        column["direction"], row[0].text, cell["mean"], cell["ci_low"], cell["ci_high"],
                        cell["n"], cell["n_undefined"], cell["n_units"], cell["best"],
                        comparison.get("p_value"), comparison.get("p_adjusted"), comparison.get("significant"),
                    ]
                )  # fmt: skip
    for section in document.of_kind("matrix"):  # a metric comparing explainers: one line per pair
        [table] = section.tables
        for index, header in enumerate(table.headers):
            if header.names_rows:
                continue
            column = header.data
            for row in table.rows:
                cell = row[index].data
                if cell is None:
                    continue
                writer.writerow(
                    [
                        table.data["family"], column["dataset"], column["model"], column["variant"],
                        f"{column['metric']} vs {column['reference']}", column["direction"], row[0].text,
                        cell["mean"], cell["ci_low"], cell["ci_high"], cell["n"], cell["n_undefined"],
                        cell["n_units"], None, None, None, None,
                    ]
                )  # fmt: skip
    return buffer.getvalue()


def json_document(report: Report, document: Document) -> dict:
    return {
        "run": {key: report.run[key] for key in RUN_FIELDS},
        "models": [{key: model[key] for key in MODEL_FIELDS} for model in report.models],
        "expectations": {
            "test": EXPECTATION_TEST,
            "correction": "Holm-Bonferroni across every expectation comparison of the run",
            "alpha": ALPHA,
            "verdicts": [verdict.as_dict() for verdict in report.verdicts],
        },
        "reproductions": {
            "doc": "the paper's claims the suite states, each judged on this run's cells (harness.reproduction)",
            "claims": [result.as_dict() for result in report.claims],
        },
        "explainer_training": [{key: fit[key] for key in FIT_FIELDS} for fit in report.fits],
        "teacher_vs_student": {
            "test": PAIRING_TEST,
            "correction": "Holm-Bonferroni across every teacher-student comparison of the run",
            "alpha": ALPHA,
            "pairings": [pairing.as_dict() for pairing in report.pairings],
        },
        "notes": [{key: cell[key] for key in (*CELL_FIELDS, "notes")} for cell in report.notes],
        "tables": [_family_json(section) for section in document.of_kind("family")],
        "explainer_matrices": [_matrix_json(section) for section in document.of_kind("matrix")],
        "failed_cells": [{key: cell[key] for key in (*CELL_FIELDS, "error")} for cell in report.failed],
        "skipped_cells": [
            {**{key: cell[key] for key in CELL_FIELDS}, "reason": cell["error"]} for cell in report.skipped
        ],
    }


def _matrix_json(section: Section) -> dict:
    """An explainer × explainer matrix: its metric, its rows' and columns' explainers, and each measured
    pair's summary (``cells[i][j]``: row i compared with column j; None where the grid has no cell)."""
    [table] = section.tables
    columns = [header.data for header in table.headers if not header.names_rows]
    first = columns[0] if columns else {}
    return {
        "family": table.data["family"],
        **{key: first.get(key) for key in ("dataset", "model", "variant", "metric", "direction", "range")},
        "rows": [row[0].text for row in table.rows],
        "columns": [column["reference"] for column in columns],
        "cells": [[cell.data for cell in row[1:]] for row in table.rows],
    }


def _family_json(section: Section) -> dict:
    [table] = section.tables
    return {
        "family": section.title,
        "statistics": table.data["statistics"],
        "columns": [header.data for header in table.headers if not header.names_rows],
        "timings": table.data["timings"],
        "rows": [{**row[0].data, "cells": [cell.data for cell in row[1:]]} for row in table.rows],
    }
