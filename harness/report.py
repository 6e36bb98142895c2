"""Records → tables. One table per metric family: rows are explainers, columns are (dataset, model,
metric); a cell shows the mean over examples with a 95 % bootstrap interval and n, and the best value
of each column is marked using the metric's declared direction. Rendered as a rich table, Markdown,
CSV or JSON from the same ``Report`` object."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.distillation import TEST as PAIRING_TEST
from harness.distillation import Pairing, pair_students, teacher_ids
from harness.expectations import TEST as EXPECTATION_TEST
from harness.expectations import Verdict, check_expectations
from harness.rows import samples_by
from harness.stats import (
    ALPHA,
    CORRECTION,
    TEST_NAME,
    Comparison,
    Sample,
    Summary,
    holm,
    paired_wilcoxon,
    summarize,
)
from harness.store import Store
from harness.suite import Suite, with_profile

ARROWS = {"higher": "↑", "lower": "↓"}
CELL_FIELDS = (
    "dataset",
    "model",
    "variant",
    "explainer_label",
    "metric_label",
    "seed",
)  # a cell, as JSON shows it


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
        record["dataset"], record["model"], record["metric_label"],
    )  # fmt: skip
    return record["family"], Row(record["explainer_id"], record["explainer_label"]), column


def model_label(model: str, variant: str) -> str:
    return model if variant == "default" else f"{model}[{variant}]"


@dataclass
class FamilyTable:
    family: str
    columns: list[Column]
    rows: list[Row]
    cells: dict[tuple[Row, Column], Summary]
    best: set[tuple[Row, Column]] = field(default_factory=set)
    # each non-best cell against its column's best, paired by unit, Holm-corrected over the table
    comparisons: dict[tuple[Row, Column], Comparison] = field(default_factory=dict)
    # where and when the timings of a cost table were measured: (row, column) -> {host, device, measured_at}
    timings: dict[tuple[Row, Column], list[dict]] = field(default_factory=dict)

    def significant(self, row: Row, column: Column) -> bool:
        comparison = self.comparisons.get((row, column))
        return comparison is not None and comparison.significant


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

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, store: Store, run_id: str) -> Report:
        records = store.report_rows(run_id)
        samples_by_family: dict[str, dict[tuple[Row, Column], Sample]] = defaultdict(dict)
        row_order: dict[str, list[Row]] = defaultdict(list)
        column_order: dict[str, list[Column]] = defaultdict(list)
        for (family, row, column), sample in samples_by(records, _table_key).items():
            samples_by_family[family][(row, column)] = sample
            if row not in row_order[family]:
                row_order[family].append(row)
            if column not in column_order[family]:
                column_order[family].append(column)
        cells = store.cells(run_id)
        run = store.run(run_id)
        tables = []
        for family in sorted(samples_by_family):
            samples = samples_by_family[family]
            summaries = {cell: summarize(sample) for cell, sample in samples.items()}
            table = FamilyTable(family, column_order[family], row_order[family], summaries)
            for column in table.columns:
                means = {
                    row: summaries[(row, column)].mean
                    for row in table.rows
                    if (row, column) in summaries and summaries[(row, column)].mean is not None
                }
                if len(means) > 1:
                    target = (max if column.direction == "higher" else min)(means.values())
                    table.best |= {(row, column) for row, mean in means.items() if mean == target}
            table.comparisons = compare_with_best(table, samples)
            tables.append(table)
        _attach_timings(tables, cells)
        failed = [cell for cell in cells if cell["status"] == "failed"]
        expectations = stored_expectations(run["suite_text"], run["options"].get("profile"))
        verdicts = check_expectations(expectations, records)
        fits = store.fits(run_id)
        pairings = pair_students(records, teacher_ids(fits))
        models = with_shared_predictions(store.models(run_id))
        notes = [cell for cell in cells if cell["status"] == "done" and cell["notes"]]
        return cls(
            run, models, tables, failed, verdicts, [fit for fit in fits if fit["report"]], pairings, notes
        )

    # -- rendering ------------------------------------------------------------------------------
    def _cell(self, table: FamilyTable, row: Row, column: Column) -> str:
        text = _cell_text(table.cells.get((row, column)))
        text += " †" if table.significant(row, column) else ""
        return text + (" ‡" if self._timed_elsewhere(table, row, column) else "")

    def _timed_elsewhere(self, table: FamilyTable, row: Row, column: Column) -> bool:
        """A cost cell whose timings were measured on another host or device than this run's."""
        here = (self.run.get("host"), self.run.get("device"))
        return any((t.get("host"), t.get("device")) != here for t in table.timings.get((row, column), []))

    def _timing_lines(self, table: FamilyTable) -> list[str]:
        """Where and when a cost table's timings were measured (timings are cached with attributions, so
        a warm run shows the seconds of the run that computed them)."""
        places: dict[tuple, list[str]] = defaultdict(list)
        for timings in table.timings.values():
            for timing in timings:
                place = (timing.get("host"), timing.get("device"))
                places[place].append(timing.get("measured_at") or "?")
        lines = []
        for (host, device), stamps in sorted(places.items(), key=lambda item: str(item[0])):
            elsewhere = (host, device) != (self.run.get("host"), self.run.get("device"))
            lines.append(
                f"{'‡ ' if elsewhere else ''}timings measured on host {host}, device {device}, "
                f"{min(stamps)} to {max(stamps)}"
                + (
                    " (another host or device than this run's: not comparable with its other timings)"
                    if elsewhere
                    else ""
                )
            )
        return lines

    def to_json(self) -> dict:
        run = {
            key: self.run[key]
            for key in (
                "run_id",
                "suite",
                "suite_version",
                "suite_hash",
                "status",
                "started_at",
                "finished_at",
                "device",
                "git_revision",
                "versions",
                "options",
                "host",
            )
        }
        return {
            "run": run,
            "models": [
                {
                    key: model[key]
                    for key in (
                        "dataset",
                        "model",
                        "variant",
                        "seed",
                        "test_accuracy",
                        "n_test",
                        "shared_predictions",
                        "training",
                    )
                }
                for model in self.models
            ],
            "expectations": {
                "test": EXPECTATION_TEST,
                "correction": "Holm-Bonferroni across every expectation comparison of the run",
                "alpha": ALPHA,
                "verdicts": [verdict.as_dict() for verdict in self.verdicts],
            },
            "explainer_training": [
                {
                    key: fit[key]
                    for key in ("dataset", "model", "variant", "explainer_label", "seed", "report")
                }
                for fit in self.fits
            ],
            "teacher_vs_student": {
                "test": PAIRING_TEST,
                "correction": "Holm-Bonferroni across every teacher-student comparison of the run",
                "alpha": ALPHA,
                "pairings": [pairing.as_dict() for pairing in self.pairings],
            },
            "notes": [{key: cell[key] for key in (*CELL_FIELDS, "notes")} for cell in self.notes],
            "tables": [
                {
                    "family": table.family,
                    "statistics": {
                        "center": "mean over examples",
                        "interval": "95% percentile bootstrap over units (examples, or timed batches), 2000 resamples",
                        "n": "defined values; n_undefined values were NaN or infinite and are left out, counted",
                        "best": "per column, by the metric's direction",
                        "test": TEST_NAME + ", each cell against its column's best",
                        "correction": CORRECTION,
                        "alpha": ALPHA,
                        "comparisons": len(table.comparisons),
                    },
                    "columns": [column.as_dict() for column in table.columns],
                    "timings": _timings_json(table) if table.timings else None,
                    "rows": [
                        {
                            "explainer": row.label,
                            "explainer_id": row.id,
                            "cells": [
                                {
                                    **table.cells[(row, column)].as_dict(),
                                    "best": (row, column) in table.best,
                                    "vs_best": (
                                        table.comparisons[(row, column)].as_dict()
                                        if (row, column) in table.comparisons
                                        else None
                                    ),
                                }
                                if (row, column) in table.cells
                                else None
                                for column in table.columns
                            ],
                        }
                        for row in table.rows
                    ],
                }
                for table in self.tables
            ],
            "failed_cells": [{key: cell[key] for key in (*CELL_FIELDS, "error")} for cell in self.failed],
        }

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [
                "family",
                "dataset",
                "model",
                "variant",
                "metric",
                "direction",
                "explainer",
                "mean",
                "ci_low",
                "ci_high",
                "n",
                "n_undefined",
                "n_units",
                "best",
                "p_vs_best",
                "p_adjusted",
                "significant_vs_best",
            ]
        )
        for table in self.tables:
            for column in table.columns:
                for row in table.rows:
                    summary = table.cells.get((row, column))
                    if summary is None:
                        continue
                    comparison = table.comparisons.get((row, column))
                    writer.writerow(
                        [
                            table.family,
                            column.dataset,
                            column.model,
                            column.variant,
                            column.metric,
                            column.direction,
                            row.label,
                            summary.mean,
                            summary.ci_low,
                            summary.ci_high,
                            summary.n,
                            summary.n_undefined,
                            summary.n_units,
                            (row, column) in table.best,
                            None if comparison is None else comparison.p_value,
                            None if comparison is None else comparison.p_adjusted,
                            None if comparison is None else comparison.significant,
                        ]
                    )
        return buffer.getvalue()

    def to_markdown(self) -> str:
        lines = [
            f"# {self.run['suite']} (version {self.run['suite_version']}) — run {self.run['run_id']}",
            "",
        ]
        lines += self._model_lines(markdown=True)
        for table in self.tables:
            lines += ["", f"## {table.family}", ""]
            headers = ["explainer"] + [
                f"{c.dataset} · {c.model_label} · {c.metric} {ARROWS[c.direction]}" for c in table.columns
            ]
            lines.append(_markdown_row(headers))
            lines.append("|" + "---|" * len(headers))
            for row in table.rows:
                cells = []
                for column in table.columns:
                    text = self._cell(table, row, column)
                    cells.append(f"**{text}**" if (row, column) in table.best else text)
                lines.append(_markdown_row([row.label, *cells]))
            lines += ["", _significance_line(table)]
            lines += [f"- {_markdown_text(line)}" for line in self._timing_lines(table)]
        if self.verdicts:
            rows = [_verdict_cells(verdict) for verdict in self.verdicts]
            lines += _markdown_section("expected orders", VERDICT_HEADERS, rows, _verdict_line(self.verdicts))
        if self.pairings:
            rows = [_pairing_cells(pairing) for pairing in self.pairings]
            lines += _markdown_section(
                "teacher vs student", PAIRING_HEADERS, rows, _pairing_line(self.pairings)
            )
        if self.fits:
            lines += ["", "## explainer training (not counted in runtime)", ""]
            lines += [f"- {_markdown_text(_fit_line(fit))}" for fit in self.fits]
        if self.notes:
            lines += ["", "## notes on cells", ""]
            lines += [f"- {_markdown_text(line)}" for line in _note_lines(self.notes)]
        lines += ["", _legend()]
        lines += self._failure_lines()
        return "\n".join(lines) + "\n"

    def print(self, console: Console) -> None:
        run = self.run
        console.print(
            f"[bold]{escape(run['suite'])}[/] (version {escape(run['suite_version'])}) — run "
            f"{escape(run['run_id'])} [dim]({escape(run['status'])}, device {escape(str(run['device']))})[/]"
        )
        for line in self._model_lines(markdown=False):
            console.print(line, highlight=False, markup=False)
        for table in self.tables:
            rich_table = Table(title=escape(table.family), title_justify="left", title_style="bold")
            rich_table.add_column("explainer", style="bold", overflow="fold")
            for column in table.columns:
                # Folded, never cut: a long label must not lose its variant or parameters to an ellipsis.
                rich_table.add_column(
                    Text(
                        f"{column.dataset} · {column.model_label}\n{column.metric} {ARROWS[column.direction]}"
                    ),
                    justify="right",
                    overflow="fold",
                )
            for row in table.rows:
                cells = []
                for column in table.columns:
                    text = self._cell(table, row, column)
                    best = (row, column) in table.best
                    cells.append(Text(f"{text} ★", style="bold green") if best else Text(text))
                rich_table.add_row(Text(row.label), *cells)
            console.print(rich_table)
            console.print(_significance_line(table), style="dim", highlight=False, markup=False)
            for line in self._timing_lines(table):
                console.print(line, style="dim", highlight=False, markup=False)
        if self.verdicts:
            rows = [_verdict_cells(verdict) for verdict in self.verdicts]
            styles = ["green" if verdict.holds else "yellow" for verdict in self.verdicts]
            _print_section(
                console, "expected orders", VERDICT_HEADERS, rows, styles, _verdict_line(self.verdicts)
            )
        if self.pairings:
            rows = [_pairing_cells(pairing) for pairing in self.pairings]
            styles = [
                {"student better": "green", "teacher better": "yellow"}.get(pairing.outcome, "")
                for pairing in self.pairings
            ]
            _print_section(
                console, "teacher vs student", PAIRING_HEADERS, rows, styles, _pairing_line(self.pairings)
            )
        if self.fits:
            console.print("[bold]explainer training[/] (not counted in runtime)")
            for fit in self.fits:
                console.print(f"  {_fit_line(fit)}", highlight=False, markup=False)
        if self.notes:
            console.print("[bold]notes on cells[/]")
            for line in _note_lines(self.notes):
                console.print(f"  {line}", style="yellow", highlight=False, markup=False)
        console.print(_legend().replace("**bold**", "★"), style="dim", highlight=False, markup=False)
        for line in self._failure_lines():
            console.print(line, style="red", highlight=False, markup=False)

    def _model_lines(self, markdown: bool) -> list[str]:
        lines = []
        for model in self.models:
            accuracy = "n/a" if model["test_accuracy"] is None else f"{100 * model['test_accuracy']:.1f} %"
            variant = "" if model["variant"] == "default" else f"[{model['variant']}]"
            shared = model.get("shared_predictions")
            shared_text = (
                ""
                if shared is None
                else f", shares {100 * shared['fraction']:.1f} % of test predictions with {shared['with']}"
            )
            lines.append(
                f"{'- ' if markdown else ''}model {model['model']}{variant} on {model['dataset']}, seed "
                f"{model['seed']}: test accuracy {accuracy} (n={model['n_test']}){shared_text}"
            )
        return lines

    def _failure_lines(self) -> list[str]:
        if not self.failed:
            return []
        lines = ["", f"{len(self.failed)} cell(s) failed:"]
        for cell in self.failed:
            lines.append(f"- {_cell_name(cell)}: {cell['error']}")
        return lines


def stored_expectations(suite_text: str, profile: str | None = None) -> list:
    """The expectations of the suite a run stored, with the run's profile applied (none for a suite this
    version cannot read)."""
    try:
        return Suite.model_validate(with_profile(yaml.safe_load(suite_text), profile)).expectations
    except (ValidationError, yaml.YAMLError, KeyError, TypeError):
        return []


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


VERDICT_HEADERS = [
    "expectation",
    "dataset",
    "model",
    "fixed",
    "metric",
    "above",
    "below",
    "means",
    "n",
    "p (Holm)",
    "verdict",
]


def _verdict_cells(verdict: Verdict) -> list[str]:
    comparison = verdict.comparison
    means = (
        "—"
        if verdict.mean_above is None or verdict.mean_below is None
        else (f"{_number(verdict.mean_above)} vs {_number(verdict.mean_below)}")
    )
    p = "—" if comparison.p_adjusted is None else _number(comparison.p_adjusted)
    return [
        verdict.expectation,
        verdict.dataset,
        verdict.model,
        verdict.variant or verdict.explainer,
        verdict.metric,
        verdict.above,
        verdict.below,
        means,
        str(comparison.n_pairs),
        p,
        verdict.outcome,
    ]


PAIRING_HEADERS = [
    "dataset",
    "model",
    "metric",
    "teacher",
    "student",
    "teacher mean",
    "student mean",
    "n",
    "p (Holm)",
    "outcome",
]


def _pairing_cells(pairing: Pairing) -> list[str]:
    comparison = pairing.comparison
    model = model_label(pairing.model, pairing.variant)
    return [
        pairing.dataset,
        model,
        f"{pairing.metric} {ARROWS[pairing.direction]}",
        pairing.teacher,
        pairing.student,
        "—" if pairing.mean_teacher is None else _number(pairing.mean_teacher),
        "—" if pairing.mean_student is None else _number(pairing.mean_student),
        str(comparison.n_pairs),
        "—" if comparison.p_adjusted is None else _number(comparison.p_adjusted),
        pairing.outcome,
    ]


def _pairing_line(pairings: list[Pairing]) -> str:
    tested = sum(p.comparison.p_value is not None for p in pairings)
    return (
        f"Teacher vs student: {PAIRING_TEST}; Holm-Bonferroni across the {tested} comparisons; "
        f"significant = corrected p < {ALPHA}."
    )


def _cell_name(cell: dict) -> str:
    return (
        f"{cell['dataset']} × {model_label(cell['model'], cell['variant'])} × {cell['explainer_label']} × "
        f"{cell['metric_label']} × seed {cell['seed']}"
    )


def _note_lines(cells: list[dict]) -> list[str]:
    return [f"{_cell_name(cell)}: {note}" for cell in cells for note in cell["notes"]]


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
            timings = cell["timing"]
            by_identity[key].extend([timings] if isinstance(timings, dict) else timings)
    for table in tables:
        for row, column in table.cells:
            key = (row.id, column.dataset_id, column.model_id, column.variant, column.metric_id)
            if key in by_identity:
                table.timings[(row, column)] = by_identity[key]


def _timings_json(table: FamilyTable) -> list[dict]:
    return [
        {"explainer": row.label, "column": column.as_dict(), "measured": timings}
        for (row, column), timings in table.timings.items()
    ]


def _markdown_text(text: str) -> str:
    """A user-derived string inside Markdown: a ``|`` would end a table cell."""
    return str(text).replace("|", "\\|")


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(_markdown_text(cell) for cell in cells) + " |"


def _fit_line(fit: dict) -> str:
    variant = "" if fit["variant"] == "default" else f"[{fit['variant']}]"
    facts = ", ".join(
        f"{key.replace('_', ' ')} {_number(value) if isinstance(value, float) else value}"
        for key, value in fit["report"].items()
    )
    return (
        f"{fit['explainer_label']} on {fit['dataset']} · {fit['model']}{variant}, seed {fit['seed']}: {facts}"
    )


def _verdict_line(verdicts: list[Verdict]) -> str:
    tested = sum(v.comparison.p_value is not None for v in verdicts)
    return (
        f"Expected orders: {EXPECTATION_TEST}; Holm-Bonferroni across the {tested} comparisons; "
        f"holds = corrected p < {ALPHA}."
    )


def _markdown_section(title: str, headers: list[str], rows: list[list[str]], footer: str) -> list[str]:
    lines = ["", f"## {title}", "", _markdown_row(headers), "|" + "---|" * len(headers)]
    lines += [_markdown_row(row) for row in rows]
    return [*lines, "", footer]


def _print_section(
    console: Console, title: str, headers: list[str], rows: list[list[str]], styles: list[str], footer: str
) -> None:
    """A rich table whose last column (the outcome) is coloured by ``styles``, one per row."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for header in headers:
        table.add_column(header, justify="right" if header in ("n", "p (Holm)") else "left", overflow="fold")
    for row, style in zip(rows, styles, strict=True):
        table.add_row(*(Text(cell) for cell in row[:-1]), Text(row[-1], style=style or ""))
    console.print(table)
    console.print(footer, style="dim", highlight=False, markup=False)


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _cell_text(summary: Summary | None) -> str:
    if summary is None:
        return "—"
    undefined = f" ({summary.n_undefined} undefined)" if summary.n_undefined else ""
    if summary.mean is None:
        return f"— n=0{undefined}"
    interval = "" if summary.ci_low is None else f" [{_number(summary.ci_low)}, {_number(summary.ci_high)}]"
    units = f", {summary.n_units} units" if summary.n_units and summary.n_units != summary.n else ""
    return f"{_number(summary.mean)}{interval} n={summary.n}{units}{undefined}"


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


def _significance_line(table: FamilyTable) -> str:
    if not table.comparisons:
        return "† none: fewer than two explainers per column, nothing to compare."
    untestable = sum(c.p_value is None for c in table.comparisons.values())
    text = (
        f"† significantly different from the column's best: {TEST_NAME}, {CORRECTION} "
        f"({len(table.comparisons) - untestable} comparisons), α = {ALPHA}."
    )
    return text + (f" {untestable} comparison(s) had no paired examples." if untestable else "")


def _legend() -> str:
    return (
        "Cells: mean over examples [95 % bootstrap interval over units] n=defined values (units: independent "
        "measurements, when fewer; undefined: NaN or infinite values, left out); ↑/↓ higher/lower is better; "
        "the best of each column in **bold**; ‡ timed on another host or device than this run."
    )


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return report.to_csv()
    if fmt == "md":
        return report.to_markdown()
    raise ValueError(fmt)
