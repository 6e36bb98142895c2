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
from rich.table import Table

from harness.distillation import TEST as PAIRING_TEST
from harness.distillation import Pairing, pair_students, teacher_labels
from harness.expectations import TEST as EXPECTATION_TEST
from harness.expectations import Verdict, check_expectations
from harness.stats import ALPHA, CORRECTION, TEST_NAME, Comparison, Summary, holm, paired_wilcoxon, summarize
from harness.store import Store
from harness.suite import Suite, with_profile

ARROWS = {"higher": "↑", "lower": "↓"}


@dataclass(frozen=True)
class Column:
    dataset: str
    model: str
    variant: str
    metric: str
    direction: str

    @property
    def model_label(self) -> str:
        return self.model if self.variant == "default" else f"{self.model}[{self.variant}]"

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "variant": self.variant,
            "metric": self.metric,
            "direction": self.direction,
        }


@dataclass
class FamilyTable:
    family: str
    columns: list[Column]
    rows: list[str]
    cells: dict[tuple[str, Column], Summary]
    best: set[tuple[str, Column]] = field(default_factory=set)
    # each non-best cell against its column's best, paired by example, Holm-corrected over the table
    comparisons: dict[tuple[str, Column], Comparison] = field(default_factory=dict)

    def significant(self, row: str, column: Column) -> bool:
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

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, store: Store, run_id: str) -> Report:
        values: dict[str, dict[tuple[str, Column], dict]] = defaultdict(lambda: defaultdict(dict))
        row_order: dict[str, list[str]] = defaultdict(list)
        column_order: dict[str, list[Column]] = defaultdict(list)
        records = store.report_rows(run_id)
        for record in records:
            column = Column(
                record["dataset"],
                record["model"],
                record["variant"],
                record["metric_label"],
                record["direction"],
            )
            family = record["family"]
            if record["explainer_label"] not in row_order[family]:
                row_order[family].append(record["explainer_label"])
            if column not in column_order[family]:
                column_order[family].append(column)
            value = record["value"]
            values[family][(record["explainer_label"], column)][(record["seed"], record["example_id"])] = (
                float("nan") if value is None else value
            )
        tables = []
        for family in sorted(values):
            cells = {key: summarize(list(vals.values())) for key, vals in values[family].items()}
            table = FamilyTable(family, column_order[family], row_order[family], cells)
            for column in table.columns:
                means = {
                    row: cells[(row, column)].mean
                    for row in table.rows
                    if (row, column) in cells and cells[(row, column)].mean is not None
                }
                if len(means) > 1:
                    target = (max if column.direction == "higher" else min)(means.values())
                    table.best |= {(row, column) for row, mean in means.items() if mean == target}
            table.comparisons = compare_with_best(table, values[family])
            tables.append(table)
        cells = store.cells(run_id)
        failed = [cell for cell in cells if cell["status"] == "failed"]
        run = store.run(run_id)
        expectations = stored_expectations(run["suite_text"], run["options"].get("profile"))
        verdicts = check_expectations(expectations, records)
        fits = store.fits(run_id)
        pairings = pair_students(records, teacher_labels(fits, cells))
        models = with_shared_predictions(store.models(run_id))
        return cls(run, models, tables, failed, verdicts, [fit for fit in fits if fit["report"]], pairings)

    # -- rendering ------------------------------------------------------------------------------
    def _cell(self, table: FamilyTable, row: str, column: Column) -> str:
        text = _cell_text(table.cells.get((row, column)))
        return text + (" †" if table.significant(row, column) else "")

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
            "tables": [
                {
                    "family": table.family,
                    "statistics": {
                        "center": "mean over examples",
                        "interval": "95% percentile bootstrap, 2000 resamples",
                        "best": "per column, by the metric's direction",
                        "test": TEST_NAME + ", each cell against its column's best",
                        "correction": CORRECTION,
                        "alpha": ALPHA,
                        "comparisons": len(table.comparisons),
                    },
                    "columns": [column.as_dict() for column in table.columns],
                    "rows": [
                        {
                            "explainer": row,
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
            "failed_cells": [
                {
                    key: cell[key]
                    for key in (
                        "dataset",
                        "model",
                        "variant",
                        "explainer_label",
                        "metric_label",
                        "seed",
                        "error",
                    )
                }
                for cell in self.failed
            ],
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
                            row,
                            summary.mean,
                            summary.ci_low,
                            summary.ci_high,
                            summary.n,
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
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            for row in table.rows:
                cells = []
                for column in table.columns:
                    text = self._cell(table, row, column)
                    cells.append(f"**{text}**" if (row, column) in table.best else text)
                lines.append("| " + " | ".join([row, *cells]) + " |")
            lines += ["", _significance_line(table)]
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
            lines += [f"- {_fit_line(fit)}" for fit in self.fits]
        lines += ["", _legend()]
        lines += self._failure_lines()
        return "\n".join(lines) + "\n"

    def print(self, console: Console) -> None:
        run = self.run
        console.print(
            f"[bold]{run['suite']}[/] (version {run['suite_version']}) — run {run['run_id']} "
            f"[dim]({run['status']}, device {run['device']})[/]"
        )
        for line in self._model_lines(markdown=False):
            console.print(line, highlight=False)
        for table in self.tables:
            rich_table = Table(title=f"{table.family}", title_justify="left", title_style="bold")
            rich_table.add_column("explainer", style="bold")
            for column in table.columns:
                rich_table.add_column(
                    f"{column.dataset} · {column.model_label}\n{column.metric} {ARROWS[column.direction]}",
                    justify="right",
                )
            for row in table.rows:
                cells = []
                for column in table.columns:
                    text = self._cell(table, row, column)
                    cells.append(f"[bold green]{text} ★[/]" if (row, column) in table.best else text)
                rich_table.add_row(row, *cells)
            console.print(rich_table)
            console.print(_significance_line(table), style="dim", highlight=False)
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
                console.print(f"  {_fit_line(fit)}", highlight=False)
        console.print(_legend().replace("**bold**", "★"), style="dim", highlight=False)
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
            lines.append(
                f"- {cell['dataset']} × {cell['model']} × {cell['explainer_label']} × {cell['metric_label']}"
                f" × seed {cell['seed']}: {cell['error']}"
            )
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
    same model (``init:1``, or ``default``, which is the same model), as Zafar et al.'s Table 6."""

    def identity(model: dict) -> tuple:
        return (model["dataset"], model["model"], model["model_params"], model["seed"])

    by_identity = defaultdict(dict)
    for model in models:
        by_identity[identity(model)][model["variant"]] = model
    result = []
    for model in models:
        variants = by_identity[identity(model)]
        anchor_name = "init:1" if "init:1" in variants else "default"
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
    model = pairing.model if pairing.variant == "default" else f"{pairing.model}[{pairing.variant}]"
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
    lines = ["", f"## {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, "", footer]


def _print_section(
    console: Console, title: str, headers: list[str], rows: list[list[str]], styles: list[str], footer: str
) -> None:
    """A rich table whose last column (the outcome) is coloured by ``styles``, one per row."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for header in headers:
        table.add_column(header, justify="right" if header in ("n", "p (Holm)") else "left")
    for row, style in zip(rows, styles, strict=True):
        table.add_row(*row[:-1], f"[{style}]{row[-1]}[/]" if style else row[-1])
    console.print(table)
    console.print(footer, style="dim", highlight=False)


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _cell_text(summary: Summary | None) -> str:
    if summary is None or summary.mean is None:
        return "—"
    interval = "" if summary.ci_low is None else f" [{_number(summary.ci_low)}, {_number(summary.ci_high)}]"
    return f"{_number(summary.mean)}{interval} n={summary.n}"


def compare_with_best(table: FamilyTable, values: dict[tuple[str, Column], dict]) -> dict:
    """Each cell against its column's best cell, paired by (seed, example), Holm-corrected together."""
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
        "Cells: mean over examples [95 % bootstrap interval] n=examples; ↑/↓ higher/lower is better; "
        "the best of each column in **bold**."
    )


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return report.to_csv()
    if fmt == "md":
        return report.to_markdown()
    raise ValueError(fmt)
