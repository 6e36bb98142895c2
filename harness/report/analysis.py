"""Records → the analysis a report shows. One table per metric family: rows are explainers, columns
are (dataset, model, metric); a cell holds the summary of its examples (mean, 95 % bootstrap interval,
n), the best cell of each column by the metric's declared direction and each other cell's paired test
against it. Besides: expected-order verdicts, teacher–student pairings, explainers' training, the
metrics' notes on cells, the models, the failed cells and the skipped ones (a device this machine lacks:
shown in their tables' places as skipped, never as values or failures). A metric comparing explainers
(``Metric.compares = "explainer"``) gets an explainer × explainer matrix per (dataset, model, variant,
metric) instead of one family-table column per explainer compared with. ``harness.report.document`` turns
it into what the renderers walk."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import yaml
from pydantic import ValidationError
from rich.console import Console

from harness.distillation import Pairing, pair_students, teacher_ids
from harness.entries import model_label, short_hash
from harness.expectations import Verdict, check_expectations
from harness.report.document import Document, build_document
from harness.report.machine import csv_text, json_document
from harness.report.markdown import markdown
from harness.report.terminal import print_document
from harness.reproduction import ClaimResult, judge_claims
from harness.rows import samples_by
from harness.stats import Comparison, Sample, Summary, holm, paired_wilcoxon, summarize
from harness.store import Queries
from harness.suite import Claim, Expectation, Suite, with_profile

log = logging.getLogger("bench.report")

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Column:
    """A column of a family table: one (dataset, model, variant, metric), grouped by identity; the
    labels are for display."""

    dataset_id: str
    model_id: str
    variant: str
    metric_id: str
    direction: str
    dataset: str = field(compare=False)
    model: str = field(compare=False)
    metric: str = field(compare=False)
    value_range: tuple = field(compare=False, default=(None, None))  # declared; None: unbounded or unknown

    @property
    def model_label(self) -> str:
        return model_label(self.model, self.variant)

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "variant": self.variant,
            "metric": self.metric,
            "direction": self.direction,
            "range": list(self.value_range),
            "dataset_id": self.dataset_id,
            "model_id": self.model_id,
            "metric_id": self.metric_id,
        }


@dataclass(frozen=True)
class Row:
    """A row of a family table: one explainer with its parameters (by identity), shown by its label."""

    id: str
    label: str = field(compare=False)


def _table_key(record: dict) -> tuple[str, Row, Column]:
    """Where a report row goes: its family's table, its explainer's row, its column (by identity)."""
    column = Column(
        record["dataset_id"], record["model_id"], record["variant"], record["metric_id"], record["direction"],
        record["dataset"], record["model"], record["metric_label"], record.get("value_range") or (None, None),
    )  # fmt: skip
    return record["family"], Row(record["explainer_id"], record["explainer_label"]), column


@dataclass
class FamilyTable:
    family: str
    columns: list[Column]
    rows: list[Row]
    cells: dict[tuple[Row, Column], Summary]
    best: set[tuple[Row, Column]] = field(default_factory=set)
    # each non-best cell against its column's best, paired by unit, Holm-corrected over the table
    comparisons: dict[tuple[Row, Column], Comparison] = field(default_factory=dict)
    # where and when the timings of a cost table were measured: (row, column) -> [{host, device, measured_at}]
    timings: dict[tuple[Row, Column], list[dict]] = field(default_factory=dict)
    # cells not run on this machine (Store.skip_cell): (row, column) -> why
    skipped: dict[tuple[Row, Column], str] = field(default_factory=dict)

    def significant(self, row: Row, column: Column) -> bool:
        comparison = self.comparisons.get((row, column))
        return comparison is not None and comparison.significant


@dataclass(frozen=True)
class Compared:
    """What a cell of a metric comparing explainers compares: the metric without its reference (what a
    matrix groups by) and the explainer compared with (its column)."""

    metric_id: str
    metric: str  # its label without " vs <reference>"
    reference: Row


@dataclass
class ExplainerMatrix:
    """One metric comparing explainers on one (dataset, model, variant): a row per explainer of its
    cells, a column per explainer they are compared with (both in the run's order), each cell the
    summary of its examples; (row, column) pairs the grid has no cell for (an explainer with itself, a
    reference no cell names) are absent."""

    family: str
    dataset: str
    model: str
    variant: str
    metric: str
    direction: str
    value_range: tuple
    rows: list[Row]
    columns: list[Row]
    cells: dict[tuple[Row, Row], Summary] = field(default_factory=dict)
    skipped: dict[tuple[Row, Row], str] = field(default_factory=dict)

    @property
    def model_label(self) -> str:
        return model_label(self.model, self.variant)


@dataclass
class Report:
    run: dict
    models: list[dict]
    tables: list[FamilyTable]
    failed: list[dict]
    verdicts: list[Verdict] = field(default_factory=list)
    fits: list[dict] = field(default_factory=list)  # explainers' training cost (Store.fits)
    pairings: list[Pairing] = field(default_factory=list)  # students vs their teachers
    notes: list[dict] = field(default_factory=list)  # metrics' statements about cells (why undefined...)
    skipped: list[dict] = field(default_factory=list)  # cells not run on this machine, with the reason
    matrices: list[ExplainerMatrix] = field(default_factory=list)  # metrics comparing explainers
    claims: list[ClaimResult] = field(default_factory=list)  # the reproduced paper's findings, judged

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, store: Queries, run_id: str) -> Report:
        records = store.report_rows(run_id)
        cells = store.cells(run_id)
        compared = explainer_comparisons(cells)
        matrices = explainer_matrices(
            [r for r in records if r["cell_id"] in compared],
            [c for c in cells if c["cell_id"] in compared],
            compared,
        )
        records_in_tables = [r for r in records if r["cell_id"] not in compared]
        samples_by_family: dict[str, dict[tuple[Row, Column], Sample]] = defaultdict(dict)
        row_order: dict[str, list[Row]] = defaultdict(list)
        column_order: dict[str, list[Column]] = defaultdict(list)

        def place(family: str, row: Row, column: Column) -> None:
            if row not in row_order[family]:
                row_order[family].append(row)
            if column not in column_order[family]:
                column_order[family].append(column)

        for (family, row, column), sample in samples_by(records_in_tables, _table_key).items():
            samples_by_family[family][(row, column)] = sample
            place(family, row, column)
        skipped = [cell for cell in cells if cell["status"] == "skipped"]
        skipped_by_family: dict[str, dict[tuple[Row, Column], str]] = defaultdict(dict)
        for cell in (c for c in skipped if c["cell_id"] not in compared):  # after the measured cells
            family, row, column = _table_key(cell)
            skipped_by_family[family][(row, column)] = cell["error"]
            place(family, row, column)
        run = store.run(run_id)
        tables = []
        for family in sorted(row_order):
            samples = samples_by_family[family]
            summaries = {cell: summarize(sample) for cell, sample in samples.items()}
            table = FamilyTable(family, column_order[family], row_order[family], summaries)
            table.skipped = skipped_by_family[family]
            for column in table.columns:
                means = {
                    row: summaries[(row, column)].mean
                    for row in table.rows
                    if (row, column) in summaries and summaries[(row, column)].mean is not None
                }
                table.best |= {(row, column) for row in best_of(means, column.direction)}
            table.comparisons = compare_with_best(table, samples)
            tables.append(table)
        _attach_timings(tables, cells)
        failed = [cell for cell in cells if cell["status"] == "failed"]
        expectations = stored_expectations(run)
        verdicts = check_expectations(expectations, records)
        fits = store.fits(run_id)
        pairings = pair_students(records, teacher_ids(fits))
        models = with_shared_predictions(store.models(run_id))
        claims = judge_claims(
            stored_claims(run),
            records,
            models,
            teacher_ids(fits),
        )
        notes = [cell for cell in cells if cell["status"] == "done" and cell["notes"]]
        return cls(
            run, models, tables, failed, verdicts, [fit for fit in fits if fit["report"]], pairings, notes,
            skipped, matrices, claims,
        )  # fmt: skip

    # -- rendering ------------------------------------------------------------------------------
    def document(self) -> Document:
        """The report as the renderers walk it: sections of tables and lines, built once."""
        return build_document(self)

    def print(self, console: Console) -> None:
        print_document(self.document(), console)

    def to_markdown(self) -> str:
        return markdown(self.document())

    def to_csv(self) -> str:
        return csv_text(self.document())

    def to_json(self) -> dict:
        return json_document(self, self.document())


def explainer_comparisons(cells: list[dict]) -> dict[str, Compared]:
    """The cells of metrics comparing explainers, by cell id: their metric's identity names the
    explainer compared with (``PluginEntry.identity``'s ``reference_explainer``), whose id is the one
    its own cells carry; its label is the metric's ``reference`` parameter."""
    result = {}
    for cell in cells:
        metric = (cell.get("identity") or {}).get("metric") or {}
        if "reference_explainer" not in metric:
            continue
        label = json.loads(cell["metric_params"]).get("reference", "?")
        base = {key: value for key, value in metric.items() if key != "reference_explainer"}
        result[cell["cell_id"]] = Compared(
            short_hash(base),
            cell["metric_label"].removesuffix(f" vs {label}"),
            Row(short_hash(metric["reference_explainer"]), label),
        )
    return result


def explainer_matrices(
    records: list[dict], cells: list[dict], compared: Mapping[str, Compared]
) -> list[ExplainerMatrix]:
    """The report rows of metrics comparing explainers as one explainer × explainer matrix per
    (dataset, model, variant, metric), in the run's order; ``cells`` adds the skipped ones."""

    def key(row: dict) -> tuple:
        return (row["dataset_id"], row["model_id"], row["variant"], compared[row["cell_id"]].metric_id)

    matrices: dict[tuple, ExplainerMatrix] = {}

    def matrix_of(row: dict) -> tuple[ExplainerMatrix, Row, Row]:
        what = compared[row["cell_id"]]
        matrix = matrices.get(key(row))
        if matrix is None:
            matrix = matrices[key(row)] = ExplainerMatrix(
                row["family"], row["dataset"], row["model"], row["variant"], what.metric, row["direction"],
                tuple(row.get("value_range") or (None, None)), [], [],
            )  # fmt: skip
        explainer = Row(row["explainer_id"], row["explainer_label"])
        for rows, entry in ((matrix.rows, explainer), (matrix.columns, what.reference)):
            if entry not in rows:
                rows.append(entry)
        return matrix, explainer, what.reference

    def place(row: dict) -> tuple:  # a matrix cell: its seeds' records together, as a table column's
        matrix, explainer, reference = matrix_of(row)
        return key(row), explainer, reference

    for (where, explainer, reference), sample in samples_by(records, place).items():
        matrices[where].cells[(explainer, reference)] = summarize(sample)
    for cell in cells:
        if cell["status"] == "skipped":
            where, explainer, reference = place(cell)
            matrices[where].skipped[(explainer, reference)] = cell["error"]
    for matrix in matrices.values():  # the explainers of rows and columns in one order: rows' first
        order = {row: index for index, row in enumerate(dict.fromkeys([*matrix.rows, *matrix.columns]))}
        matrix.columns.sort(key=order.__getitem__)
    return list(matrices.values())


def best_of(means: Mapping[K, float], direction: str) -> set[K]:
    """The rows whose mean is the best of a column by its direction (ties: all of them); none when the
    column has fewer than two means, nothing to compare."""
    if len(means) < 2:
        return set()
    target = (max if direction == "higher" else min)(means.values())
    return {row for row, mean in means.items() if mean == target}


def stored_suite(suite_text: str, profile: str | None = None) -> Suite | None:
    """The suite a run stored, with the run's profile applied (None for a suite this version cannot
    read)."""
    try:
        return Suite.model_validate(with_profile(yaml.safe_load(suite_text), profile))
    except (ValidationError, yaml.YAMLError, KeyError, TypeError):
        return None


def stored_expectations(run: dict) -> list[Expectation]:
    """The expectations of a stored run (``Queries.run``), as the run read them."""
    return _as_run_read(run, "expectations", Expectation)


def stored_claims(run: dict) -> list[Claim]:
    """The paper's claims a stored run's suite states (``Suite.claims``), as the run read them."""
    return _as_run_read(run, "claims", Claim)


def _as_run_read(run: dict, field: str, kind: type[Expectation] | type[Claim]) -> list:
    """A run stores its expectations and claims as it read them (schema 5). One stored before has only its
    suite's text, read here with today's schema and the run's profile; a suite this version cannot read
    gives none, with a warning naming the run."""
    if run.get(field) is not None:
        return [kind.model_validate(item) for item in run[field]]
    suite = stored_suite(run["suite_text"], run["options"].get("profile"))
    if suite is None:
        log.warning(
            "run %s: its suite (stored before runs kept their %s) cannot be read by this version: "
            "no %s judged", run.get("run_id"), field, field,
        )  # fmt: skip
        return []
    return getattr(suite, field)


def with_shared_predictions(models: list[dict]) -> list[dict]:
    """Each variant's fraction of test predictions equal to those of the first initialisation of the
    same model (``default``, which is ``init:1``), as Zafar et al.'s Table 6."""

    def identity(model: dict) -> tuple:
        return (model["dataset_id"], model["model_id"], model["seed"])

    by_identity = defaultdict(dict)
    for model in models:
        by_identity[identity(model)][model["variant"]] = model
    result = []
    for model in models:
        variants = by_identity[identity(model)]
        anchor_name = "default"
        anchor = variants.get(anchor_name)
        shared = None
        if (
            anchor is not None
            and anchor is not model
            and model["test_predictions"]
            and anchor["test_predictions"]
        ):
            mine, theirs = model["test_predictions"], anchor["test_predictions"]
            if len(mine) == len(theirs):
                same = sum(a == b for a, b in zip(mine, theirs, strict=True))
                shared = {"with": anchor_name, "fraction": same / len(mine)}
        result.append({**model, "shared_predictions": shared})
    return result


def _attach_timings(tables: list[FamilyTable], cells: list[dict]) -> None:
    """Give each cost table the host, device and time at which its cells' timings were measured."""
    by_identity = defaultdict(list)
    for cell in cells:
        if cell["status"] == "done" and cell.get("timing") and cell["family"] == "cost":
            key = (
                cell["explainer_id"],
                cell["dataset_id"],
                cell["model_id"],
                cell["variant"],
                cell["metric_id"],
            )
            by_identity[key].extend(cell["timing"])
    for table in tables:
        for row, column in table.cells:
            key = (row.id, column.dataset_id, column.model_id, column.variant, column.metric_id)
            if key in by_identity:
                table.timings[(row, column)] = by_identity[key]


def compare_with_best(table: FamilyTable, values: dict[tuple[Row, Column], Sample]) -> dict:
    """Each cell against its column's best cell, paired by unit (example, or timed batch),
    Holm-corrected together."""
    keys, comparisons = [], []
    for column in table.columns:
        best = next((row for row in table.rows if (row, column) in table.best), None)
        if best is None:
            continue
        for row in table.rows:
            if row != best and (row, column) in values:
                keys.append((row, column))
                comparisons.append(paired_wilcoxon(values[(best, column)], values[(row, column)]))
    return dict(zip(keys, holm(comparisons), strict=True))
