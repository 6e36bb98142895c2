"""The analysis of a run (``harness.report.analysis.Report``) → the report as a document: a heading and
sections of tables and lines, built once and walked by every renderer (rich, Markdown, CSV, JSON).

Everything a reader sees is decided here, as plain text with semantic flags: a cell says that it is
its column's best, significantly different from it, or timed on another host, and an outcome whether
it is good or bad news; how that shows (bold, ★, colour) and how user strings are escaped is each
renderer's business. Family cells and columns also carry their machine-readable values (``data``),
which CSV and JSON read instead of the text.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from harness.distillation import TEST as PAIRING_TEST
from harness.entries import model_label
from harness.expectations import TEST as EXPECTATION_TEST
from harness.reproduction import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, VERDICTS, ClaimResult, tally
from harness.stats import ALPHA, CORRECTION, TEST_NAME, Summary

if TYPE_CHECKING:
    from harness.distillation import Pairing
    from harness.expectations import Verdict
    from harness.report.analysis import Column, ExplainerMatrix, FamilyTable, Report, Row

ARROWS = {"higher": "↑", "lower": "↓"}
Tone = Literal["good", "bad", "warning", "error"]


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and what it means, never how it looks."""

    text: str
    best: bool = False  # the best of its column, by the metric's direction
    significant: bool = False  # significantly different from its column's best (†)
    timed_elsewhere: bool = False  # timed on another host or device than the run's (‡)
    tone: Tone | None = None  # an outcome's news: "good" (holds, student better) or "bad"
    data: dict | None = None  # machine-readable value (family tables), as JSON shows it

    @property
    def marked(self) -> str:
        """The text with its footnote marks, as every renderer shows it."""
        return self.text + (" †" if self.significant else "") + (" ‡" if self.timed_elsewhere else "")


@dataclass(frozen=True)
class Header:
    """A column heading. Its parts are stacked where space is short (rich) and joined by " · " on one
    line otherwise (Markdown)."""

    parts: tuple[str, ...]
    numeric: bool = False  # right-aligned
    names_rows: bool = False  # the column naming each row (the explainer)
    data: dict | None = None  # machine-readable column (family tables)

    @property
    def text(self) -> str:
        return " · ".join(self.parts)


@dataclass
class Table:
    headers: list[Header]
    rows: list[list[Cell]]  # one cell per header
    footer: list[str] = field(default_factory=list)  # how to read it: the test behind its marks
    measured: list[str] = field(default_factory=list)  # where and when its timings were measured
    data: dict = field(default_factory=dict)  # machine-readable facts about it (family tables)


SECTION_KINDS = (
    "models", "reproductions", "family", "matrix", "expectations", "pairings", "training", "notes", "legend",
    "skipped", "failures",
)  # fmt: skip


@dataclass
class Section:
    """A part of the report. ``kind`` names it for renderers that place a kind their own way: one of
    ``SECTION_KINDS``."""

    kind: str
    title: str = ""  # a heading
    note: str = ""  # said after the heading, in a lighter voice
    lead: str = ""  # a sentence introducing the items, where there is no heading
    tables: list[Table] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # a list of statements
    tone: Tone | None = None


@dataclass(frozen=True)
class Heading:
    suite: str
    version: str
    run_id: str
    status: str
    device: str

    @property
    def title(self) -> str:
        return f"{self.suite} (version {self.version}) — run {self.run_id}"

    @property
    def state(self) -> str:
        return f"({self.status}, device {self.device})"


@dataclass
class Document:
    heading: Heading
    sections: list[Section]

    def of_kind(self, kind: str) -> list[Section]:
        return [section for section in self.sections if section.kind == kind]

    def only(self, kinds: set[str]) -> Document:
        """The document with only the sections of these kinds (``bench report --section``)."""
        return Document(self.heading, [section for section in self.sections if section.kind in kinds])


def build_document(report: Report) -> Document:
    run = report.run
    heading = Heading(
        run["suite"], str(run["suite_version"]), run["run_id"], run["status"], str(run["device"])
    )
    sections = [Section("models", items=[_model_line(model) for model in report.models])]
    sections += reproduction_sections(report.claims)
    sections += [_family_section(report, table) for table in report.tables]
    sections += [_matrix_section(matrix) for matrix in report.matrices]
    if report.verdicts:
        table = Table(
            _headers(VERDICT_HEADERS),
            [_verdict_cells(verdict) for verdict in report.verdicts],
            [_verdict_line(report.verdicts)],
        )
        sections.append(Section("expectations", "expected orders", tables=[table]))
    if report.pairings:
        table = Table(
            _headers(PAIRING_HEADERS),
            [_pairing_cells(pairing) for pairing in report.pairings],
            [_pairing_line(report.pairings)],
        )
        sections.append(Section("pairings", "teacher vs student", tables=[table]))
    if report.fits:
        items = [_fit_line(fit) for fit in report.fits]
        sections.append(Section("training", "explainer training", "(not counted in runtime)", items=items))
    if report.notes:
        items = [f"{cell_name(cell)}: {note}" for cell in report.notes for note in cell["notes"]]
        sections.append(Section("notes", "notes on cells", items=items, tone="warning"))
    sections.append(Section("legend"))
    if report.skipped:
        reasons = Counter(cell["error"] for cell in report.skipped)  # many cells share one: a device
        lead = f"{len(report.skipped)} cell(s) skipped, not run on this machine:"
        items = [f"{count} cell(s): {reason}" for reason, count in reasons.items()]
        sections.append(Section("skipped", lead=lead, items=items, tone="warning"))
    if report.failed:
        lead = f"{len(report.failed)} cell(s) failed:"
        items = [f"{cell_name(cell)}: {cell['error']}" for cell in report.failed]
        sections.append(Section("failures", lead=lead, items=items, tone="error"))
    return Document(heading, sections)


def legend(best: str) -> str:
    """What a family table's cells say; ``best`` is how the renderer marks a column's best."""
    return (
        "Cells: mean over examples [95 % bootstrap interval over units] n=defined values (units: independent "
        "measurements, when fewer; undefined: NaN or infinite values, left out); ↑/↓ higher/lower is better; "
        f"the best of each column in {best}; ‡ timed on another host or device than this run."
    )


def cell_name(cell: dict) -> str:
    return (
        f"{cell['dataset']} × {model_label(cell['model'], cell['variant'])} × {cell['explainer_label']} × "
        f"{cell['metric_label']} × seed {cell['seed']}"
    )


def number(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


# -- family tables ------------------------------------------------------------------------------------


def _family_section(report: Report, table: FamilyTable) -> Section:
    headers = [Header(("explainer",), names_rows=True)] + [
        Header(
            (f"{column.dataset} · {column.model_label}", f"{column.metric} {ARROWS[column.direction]}"),
            numeric=True,
            data=column.as_dict(),
        )
        for column in table.columns
    ]
    rows = [
        [
            Cell(row.label, data={"explainer": row.label, "explainer_id": row.id}),
            *(_family_cell(report, table, row, column) for column in table.columns),
        ]
        for row in table.rows
    ]
    data = {"statistics": _statistics(table), "timings": _timings_json(table) if table.timings else None}
    measured = _timing_lines(report.run, table)
    return Section(
        "family", table.family, tables=[Table(headers, rows, [_significance_line(table)], measured, data)]
    )


def _family_cell(report: Report, table: FamilyTable, row: Row, column: Column) -> Cell:
    if (row, column) in table.skipped:
        return Cell("skipped", tone="warning")  # why: the report's skipped section
    summary = table.cells.get((row, column))
    if summary is None:
        return Cell(summary_text(None))
    comparison = table.comparisons.get((row, column))
    best = (row, column) in table.best
    data = {
        **summary.as_dict(),
        "best": best,
        "vs_best": None if comparison is None else comparison.as_dict(),
    }
    return Cell(
        summary_text(summary),
        best=best,
        significant=table.significant(row, column),
        timed_elsewhere=_timed_elsewhere(report.run, table.timings.get((row, column), [])),
        data=data,
    )


def summary_text(summary: Summary | None) -> str:
    """A cell's summary as its table shows it: mean [interval] n=defined values, units when fewer,
    undefined values counted."""
    if summary is None:
        return "—"
    undefined = f" ({summary.n_undefined} undefined)" if summary.n_undefined else ""
    if summary.mean is None:
        return f"— n=0{undefined}"
    interval = "" if summary.ci_low is None else f" [{number(summary.ci_low)}, {number(summary.ci_high)}]"
    units = f", {summary.n_units} units" if summary.n_units and summary.n_units != summary.n else ""
    return f"{number(summary.mean)}{interval} n={summary.n}{units}{undefined}"


def _statistics(table: FamilyTable) -> dict:
    return {
        "center": "mean over examples",
        "interval": "95% percentile bootstrap over units (examples, or timed batches), 2000 resamples",
        "n": "defined values; n_undefined values were NaN or infinite and are left out, counted",
        "best": "per column, by the metric's direction",
        "test": TEST_NAME + ", each cell against its column's best",
        "correction": CORRECTION,
        "alpha": ALPHA,
        "comparisons": len(table.comparisons),
    }


def _significance_line(table: FamilyTable) -> str:
    if not table.comparisons:
        return "† none: fewer than two explainers per column, nothing to compare."
    untestable = sum(c.p_value is None for c in table.comparisons.values())
    text = (
        f"† significantly different from the column's best: {TEST_NAME}, {CORRECTION} "
        f"({len(table.comparisons) - untestable} comparisons), α = {ALPHA}."
    )
    return text + (f" {untestable} comparison(s) had no paired examples." if untestable else "")


def _here(run: dict) -> tuple:
    return (run.get("host"), run.get("device"))


def _timed_elsewhere(run: dict, timings: list[dict]) -> bool:
    """A cost cell whose timings were measured on another host or device than this run's."""
    return any((t.get("host"), t.get("device")) != _here(run) for t in timings)


def _timing_lines(run: dict, table: FamilyTable) -> list[str]:
    """Where and when a cost table's timings were measured (timings are cached with attributions, so
    a warm run shows the seconds of the run that computed them)."""
    places: dict[tuple, list[str]] = defaultdict(list)
    for timings in table.timings.values():
        for timing in timings:
            places[(timing.get("host"), timing.get("device"))].append(timing.get("measured_at") or "?")
    lines = []
    for (host, device), stamps in sorted(places.items(), key=lambda item: str(item[0])):
        elsewhere = (host, device) != _here(run)
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


def _timings_json(table: FamilyTable) -> list[dict]:
    return [
        {"explainer": row.label, "column": column.as_dict(), "measured": timings}
        for (row, column), timings in table.timings.items()
    ]


# -- explainer × explainer matrices ------------------------------------------------------------------

MATRIX_FOOTER = (
    "Rows: the cell's explainer; columns: the explainer it is compared with. Cells: mean over examples, "
    "n = defined values (undefined values left out, counted). The diagonal is blank: an explainer is not "
    "compared with itself (each measure would be 1 there, where defined); — : no cell for that pair."
)


def _matrix_section(matrix: ExplainerMatrix) -> Section:
    """One metric comparing explainers on one (dataset, model, variant) as an explainer × explainer
    table: the same ``Table`` every renderer draws, its columns carrying the metric's direction and range
    (the HTML page colours by them) and its cells their summaries (CSV and JSON read them)."""
    column_data = {
        "dataset": matrix.dataset, "model": matrix.model, "variant": matrix.variant, "metric": matrix.metric,
        "direction": matrix.direction, "range": list(matrix.value_range),
    }  # fmt: skip
    headers = [Header(("explainer", "compared with →"), names_rows=True)] + [
        Header((column.label,), numeric=True, data={**column_data, "reference": column.label})
        for column in matrix.columns
    ]
    rows = [
        [
            Cell(row.label, data={"explainer": row.label, "explainer_id": row.id}),
            *(_matrix_cell(matrix, row, column) for column in matrix.columns),
        ]
        for row in matrix.rows
    ]
    title = f"{matrix.family}: {matrix.metric} {ARROWS[matrix.direction]} · {matrix.dataset} · {matrix.model_label}"
    table = Table(headers, rows, [MATRIX_FOOTER], data={"family": matrix.family})
    return Section("matrix", title, tables=[table])


def _matrix_cell(matrix: ExplainerMatrix, row: Row, column: Row) -> Cell:
    if row == column:
        return Cell("")
    if (row, column) in matrix.skipped:
        return Cell("skipped", tone="warning")
    summary = matrix.cells.get((row, column))
    if summary is None:
        return Cell("—")
    undefined = f" ({summary.n_undefined} undefined)" if summary.n_undefined else ""
    text = "—" if summary.mean is None else number(summary.mean)
    return Cell(f"{text} n={summary.n}{undefined}", data=summary.as_dict())


# -- the reproduction table ----------------------------------------------------------------------------

CLAIM_HEADERS = [
    "source", "claim", "cells", "compared", "paper", "ours", "difference [95 % CI]", "n", "reproduced if",
    "verdict", "why",
]  # fmt: skip
VERDICT_TONES: dict[str, Tone] = {REPRODUCED: "good", NOT_REPRODUCED: "bad", INCONCLUSIVE: "warning"}


def reproduction_sections(results: list[ClaimResult]) -> list[Section]:
    """One reproduction table per paper: its claims beside our cells, with verdicts."""
    by_paper: dict[str, list[ClaimResult]] = defaultdict(list)
    for result in results:
        by_paper[result.claim.paper].append(result)
    sections = []
    for paper, rows in by_paper.items():
        table = Table(
            [Header((name,), numeric=name == "n") for name in CLAIM_HEADERS],
            [_claim_cells(row) for row in rows],
            _claim_footer(paper, rows),
            data={"paper": paper, "claims": [row.as_dict() for row in rows]},
        )
        note = (
            "the paper's findings beside this run's cells (kept apart from the suite's own expected orders)"
        )
        sections.append(Section("reproductions", f"reproduction: {paper}", note, tables=[table]))
    return sections


def _summary_text(summary: Summary | None) -> str:
    if summary is None or summary.mean is None:
        return "—"
    if summary.ci_low is None:
        return number(summary.mean)
    return f"{number(summary.mean)} [{number(summary.ci_low)}, {number(summary.ci_high)}]"


def paper_value_text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return f"{_plain(value.get('above'))} vs {_plain(value.get('below'))}"
    return _plain(value)


def _plain(value: object) -> str:
    return number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _claim_cells(result: ClaimResult) -> list[Cell]:
    claim = result.claim
    compared = f"{result.above} vs {result.below}" if result.above or result.below else ""
    if result.ours_below is not None:
        ours = f"{_summary_text(result.ours)} vs {_summary_text(result.ours_below)}"
        n = result.difference.n_units if result.difference is not None else 0
    else:
        ours = _summary_text(result.ours)
        n = result.ours.n_units if result.ours is not None else 0
    texts = [
        claim.source, claim.claim, result.cells, compared, paper_value_text(claim.paper_value), ours,
        _summary_text(result.difference), str(n) if (result.ours is not None) else "—", claim.criterion,
    ]  # fmt: skip
    return [
        *map(Cell, texts),
        Cell(result.verdict, tone=VERDICT_TONES.get(result.verdict)),
        Cell(result.reason),
    ]


def _claim_footer(paper: str, rows: list[ClaimResult]) -> list[str]:
    counts = tally(rows)[paper]
    lines = [
        f"{paper}: "
        + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
        + f" (of {len(rows)} rows)."
    ]
    per_claim: dict[tuple, list[ClaimResult]] = defaultdict(list)
    for row in rows:
        per_claim[(row.claim.source, row.claim.claim)].append(row)
    for (source, text), group in per_claim.items():
        judged = [row for row in group if row.verdict != "not testable here"]
        if len(group) > 1 and judged:
            held = sum(row.verdict == REPRODUCED for row in judged)
            lines.append(f"{source}, \u201c{text}\u201d: reproduced in {held} of {len(judged)} judged rows.")
    lines.append(
        "n: independent units (examples) with a finite value on both sides; intervals: 95 % cluster bootstrap; "
        "within / beyond / near are judged on the interval (reproduced: all of it meets the margin; "
        "inconclusive: it straddles the edge); significant: one-sided Wilcoxon signed-rank, Holm-Bonferroni "
        f"across the run's significant claims, p < {ALPHA}."
    )
    return lines


# -- expected orders, teacher vs student, training, models ---------------------------------------------

NUMERIC_HEADERS = ("n", "p (Holm)")
VERDICT_HEADERS = [
    "expectation", "dataset", "model", "fixed", "metric", "above", "below", "means", "n", "p (Holm)", "verdict",
]  # fmt: skip
PAIRING_HEADERS = [
    "dataset", "model", "metric", "teacher", "student", "teacher mean", "student mean", "n", "p (Holm)",
    "outcome",
]  # fmt: skip
PAIRING_TONES: dict[str, Tone] = {"student better": "good", "teacher better": "bad"}


def _headers(names: list[str]) -> list[Header]:
    return [Header((name,), numeric=name in NUMERIC_HEADERS) for name in names]


def _verdict_cells(verdict: Verdict) -> list[Cell]:
    comparison = verdict.comparison
    means = (
        "—"
        if verdict.mean_above is None or verdict.mean_below is None
        else f"{number(verdict.mean_above)} vs {number(verdict.mean_below)}"
    )
    p = "—" if comparison.p_adjusted is None else number(comparison.p_adjusted)
    fixed = verdict.variant or verdict.explainer
    if verdict.variant and verdict.explainer:  # a model expectation: the explainer and variant are fixed
        fixed = (
            verdict.explainer if verdict.variant == "default" else f"{verdict.explainer} · {verdict.variant}"
        )
    texts = [
        verdict.expectation, verdict.dataset, verdict.model or "—", fixed,
        verdict.metric, verdict.above, verdict.below, means, str(comparison.n_pairs), p,
    ]  # fmt: skip
    return [*map(Cell, texts), Cell(verdict.outcome, tone="good" if verdict.holds else "bad")]


def _verdict_line(verdicts: list[Verdict]) -> str:
    tested = sum(v.comparison.p_value is not None for v in verdicts)
    return (
        f"Expected orders: {EXPECTATION_TEST}; Holm-Bonferroni across the {tested} comparisons; "
        f"holds = corrected p < {ALPHA}."
    )


def _pairing_cells(pairing: Pairing) -> list[Cell]:
    comparison = pairing.comparison
    texts = [
        pairing.dataset,
        model_label(pairing.model, pairing.variant),
        f"{pairing.metric} {ARROWS[pairing.direction]}",
        pairing.teacher,
        pairing.student,
        "—" if pairing.mean_teacher is None else number(pairing.mean_teacher),
        "—" if pairing.mean_student is None else number(pairing.mean_student),
        str(comparison.n_pairs),
        "—" if comparison.p_adjusted is None else number(comparison.p_adjusted),
    ]
    return [*map(Cell, texts), Cell(pairing.outcome, tone=PAIRING_TONES.get(pairing.outcome))]


def _pairing_line(pairings: list[Pairing]) -> str:
    tested = sum(p.comparison.p_value is not None for p in pairings)
    return (
        f"Teacher vs student: {PAIRING_TEST}; Holm-Bonferroni across the {tested} comparisons; "
        f"significant = corrected p < {ALPHA}."
    )


def _fit_line(fit: dict) -> str:
    facts = ", ".join(
        f"{key.replace('_', ' ')} {number(value) if isinstance(value, float) else value}"
        for key, value in fit["report"].items()
    )
    model = model_label(fit["model"], fit["variant"])
    return f"{fit['explainer_label']} on {fit['dataset']} · {model}, seed {fit['seed']}: {facts}"


def _model_line(model: dict) -> str:
    accuracy = "n/a" if model["test_accuracy"] is None else f"{100 * model['test_accuracy']:.1f} %"
    shared = model.get("shared_predictions")
    shared_text = (
        ""
        if shared is None
        else f", shares {100 * shared['fraction']:.1f} % of test predictions with {shared['with']}"
    )
    return (
        f"model {model_label(model['model'], model['variant'])} on {model['dataset']}, seed {model['seed']}: "
        f"test accuracy {accuracy} (n={model['n_test']}){shared_text}"
    )
