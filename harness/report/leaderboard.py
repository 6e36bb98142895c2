"""Stored runs → leaderboards: every complete cell of one or more results folders, one board per metric
family, explainers ranked with uncertainty and read against chance and against the sanity checks.

Collection: every ``done`` cell of the chosen runs; cells of the same identity (dataset, model, variant,
explainer, metric, seed: ``grid.Cell.identity``) measured on the same examples (their fingerprint) are
one measurement, of which the latest is kept (``all_runs`` keeps each run's, as rows of their own).
A board's column is (dataset, model and variant, metric, examples fingerprint): cells measured on
different examples are never pooled, and a column's seeds are pooled as a report pools them.

The statistics are ``harness.ranking``'s and ``harness.stats``': per cell the mean with its cluster
bootstrap interval, the rank with its paired bootstrap interval, the tie groups of the Holm-corrected
pairwise Wilcoxon tests of each column (Holm across every pairwise test of the board), the difference
from the ``random`` explainer; per row the mean rank over the board's columns with its bootstrap
interval and HELM's mean win rate; per (dataset, model) the agreement of the board's metrics
(Kendall's W, pairwise Kendall's τ). The board becomes a ``Document`` (the renderers' common form) and a
JSON object that carries the format version and the run and cell ids every number comes from.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.distillation import pair_students, teacher_ids
from harness.entries import model_label
from harness.errors import BenchError
from harness.expectations import Verdict, check_expectations
from harness.ranking import (
    MeanRank,
    RankInterval,
    agreement,
    column_ranks,
    holm_across,
    mean_rank_intervals,
    pairwise_tests,
    tie_groups,
    win_rates,
)
from harness.report.analysis import best_of, stored_claims, stored_expectations
from harness.report.document import (
    ARROWS,
    Cell,
    Document,
    Header,
    Section,
    Table,
    number,
    reproduction_sections,
    summary_text,
)
from harness.reproduction import ClaimResult, judge_claims
from harness.rows import samples_by
from harness.stats import ALPHA, TEST_NAME, Comparison, Sample, Summary, holm, paired_wilcoxon, summarize
from harness.store import Queries

LEADERBOARD_FORMAT = 1  # the version of what a leaderboard file holds; bumped when its meaning changes
RANDOMIZATION = "randomization"  # the family of the metrics that compare an explainer across model variants
CHANCE = "chance"  # the baseline every explainer is tested against (Explainer.baseline)


@dataclass(frozen=True)
class Source:
    """A stored run that the leaderboard reads, with the folder holding it."""

    folder: Path
    run: dict
    rows: list[dict] = field(compare=False, repr=False)  # its report rows (Queries.report_rows)

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    def as_dict(self) -> dict:
        run = self.run
        return {
            "results": str(self.folder),
            **{key: run[key] for key in ("run_id", "suite", "suite_version", "suite_hash", "status")},
            **{key: run[key] for key in ("started_at", "finished_at", "device", "git_revision", "host")},
            "versions": run["versions"],
            "limit": run["options"].get("limit"),
            "executor": run["options"].get("executor"),
        }


@dataclass(frozen=True)
class Chosen:
    """A stored cell on a board with its run and its per-example rows."""

    cell: dict
    source: Source
    rows: list[dict]


# -- collection -------------------------------------------------------------------------------------------


def collect(
    folders: Sequence[Path],
    runs: Sequence[str] = (),
    suites: Sequence[str] = (),
    all_runs: bool = False,
) -> tuple[list[Source], list[Chosen]]:
    """The runs to read (``runs``: ids, prefixes or ``latest``; none: every run of every folder; ``suites``:
    only runs of these suite names) and the cells the boards hold."""
    stores = []
    for folder in folders:
        store = Queries(folder)
        if not store.path.exists():
            raise BenchError(
                f"{folder}: no results there (no bench.sqlite); give --results a folder written by 'bench run'"
            )
        stores.append(store)
    selected = _select_runs(stores, runs)
    sources = []
    for store, run_id in selected:
        run = store.run(run_id)
        if suites and run["suite"] not in suites:
            continue
        sources.append(Source(store.results_dir, run, store.report_rows(run_id)))
    if not sources:
        wanted = f" of suite {', '.join(suites)}" if suites else ""
        raise BenchError(
            f"no stored run{wanted} in {', '.join(str(f) for f in folders)}; run a suite first (bench run SUITE)"
        )
    chosen: dict[tuple, Chosen] = {}
    for source in sources:
        rows_by_cell: dict[str, list[dict]] = defaultdict(list)
        for row in source.rows:
            rows_by_cell[row["cell_id"]].append(row)
        for cell in Queries(source.folder).cells(source.run_id):
            if cell["status"] != "done" or _compares_explainers(cell):
                continue
            key = (_identity_key(cell), cell["examples_fingerprint"])
            if all_runs:
                key += (str(source.folder), source.run_id)
            entry = Chosen(cell, source, rows_by_cell.get(cell["cell_id"], []))
            held = chosen.get(key)
            if held is None or _when(entry) >= _when(held):  # ties (same second): the later-stored run
                chosen[key] = entry
    used = {id(entry.source) for entry in chosen.values()}
    return [source for source in sources if id(source) in used], list(chosen.values())


def _select_runs(stores: list[Queries], runs: Sequence[str]) -> list[tuple[Queries, str]]:
    if not runs:
        return [(store, row["run_id"]) for store in stores for row in store.runs()]
    selected: list[tuple[Queries, str]] = []
    for run in runs:
        if run == "latest":
            found = [(store, store.resolve("latest")) for store in stores if store.runs()]
            found = [max(found, key=lambda pair: pair[0].run(pair[1])["started_at"])] if found else []
        else:
            found = [(store, run_id) for store in stores for run_id in store.matching(run)]
        if not found:
            folders = ", ".join(str(store.results_dir) for store in stores)
            raise BenchError(
                f"run '{run}' not found in {folders}; see the run ids with 'bench runs --results DIR'"
            )
        if len(found) > 1:
            raise BenchError(
                f"run '{run}' is ambiguous ({len(found)} runs start with it); give more of the id"
            )
        selected += [pair for pair in found if pair not in selected]
    return selected


def _compares_explainers(cell: dict) -> bool:
    """A disagreement cell (``compares = "explainer"``) scores a pair of explainers, not an explainer: no
    board ranks it; the report's explainer × explainer matrices show it."""
    metric = (cell["identity"] or {}).get("metric") or {}
    return "reference_explainer" in metric


def _identity_key(cell: dict) -> str:
    """A cell's identity as a key; a cell stored before identities were falls back to its ids."""
    if cell["identity"]:
        return json.dumps(cell["identity"], sort_keys=True)
    parts = ("dataset_id", "model_id", "variant", "explainer_id", "metric_id", "seed")
    return json.dumps([cell[part] for part in parts])


def _when(entry: Chosen) -> tuple[str, str]:
    return (entry.cell["finished_at"] or "", entry.source.run["started_at"] or "")


# -- boards -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A board's column: (dataset, model, variant, metric) measured on one set of examples."""

    dataset_id: str
    model_id: str
    variant: str
    metric_id: str
    examples: str | None  # the explained examples' fingerprint
    direction: str
    dataset: str = field(compare=False)
    model: str = field(compare=False)
    metric: str = field(compare=False)
    value_range: tuple = field(compare=False, default=(None, None))
    n_examples: int | None = field(compare=False, default=None)

    @property
    def model_label(self) -> str:
        return model_label(self.model, self.variant)

    @property
    def group(self) -> tuple:
        """What the metric columns of one agreement share: the data and the model it was measured on."""
        return (self.dataset_id, self.model_id, self.variant, self.examples)

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset, "model": self.model, "variant": self.variant, "metric": self.metric,
            "direction": self.direction, "range": list(self.value_range), "n_examples": self.n_examples,
            "examples_fingerprint": self.examples, "dataset_id": self.dataset_id, "model_id": self.model_id,
            "metric_id": self.metric_id,
        }  # fmt: skip


@dataclass(frozen=True)
class Row:
    """A board's row: an explainer with its parameters and plugin version (and, with ``all_runs``, the
    run that measured it)."""

    id: str
    run: str | None
    label: str = field(compare=False)
    name: str = field(compare=False)
    params: dict = field(compare=False, default_factory=dict)
    version: str | None = field(compare=False, default=None)
    baseline: str | None = field(compare=False, default=None)  # Explainer.baseline, as the run stored it

    @property
    def text(self) -> str:
        return self.label if self.run is None else f"{self.label} (run {short_run(self.run)})"

    def as_dict(self) -> dict:
        return {
            "explainer": self.label, "name": self.name, "params": self.params, "plugin_version": self.version,
            "explainer_id": self.id, "run_id": self.run,
        }  # fmt: skip


@dataclass(frozen=True)
class BoardCell:
    summary: Summary
    rank: RankInterval | None
    group: str
    best: bool
    runs: tuple[str, ...]
    cells: tuple[str, ...]
    vs_random: Summary | None = None  # (score − random) in the metric's direction, paired by example
    random_test: Comparison | None = None  # the paired test behind it, Holm-corrected over the board

    @property
    def against_random(self) -> str | None:
        """ "better" / "worse" than random (significant) or "tied" (not separated); None: not compared."""
        if self.random_test is None or self.vs_random is None or self.vs_random.mean is None:
            return None
        if not self.random_test.significant:
            return "tied"
        return "better" if self.vs_random.mean > 0 else "worse"

    def as_dict(self) -> dict:
        return {
            **self.summary.as_dict(),
            "rank": None if self.rank is None else self.rank.as_dict(),
            "group": self.group,
            "best": self.best,
            "vs_random": None if self.vs_random is None else self.vs_random.as_dict(),
            "vs_random_test": None if self.random_test is None else self.random_test.as_dict(),
            "against_random": self.against_random,
            "run_ids": list(self.runs),
            "cell_ids": list(self.cells),
        }


@dataclass(frozen=True)
class Agreement:
    """Do a (dataset, model)'s metrics of one board rank the explainers alike?"""

    dataset: str
    model: str
    metrics: tuple[str, ...]
    w: float | None  # Kendall's W over the explainers every metric ranks
    n_explainers: int
    pairs: dict[tuple[str, str], float | None]  # Kendall's τ-b of each two metrics

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset, "model": self.model, "metrics": list(self.metrics),
            "kendalls_w": self.w, "n_explainers": self.n_explainers,
            "kendalls_tau": [{"metrics": list(pair), "tau": tau} for pair, tau in self.pairs.items()],
        }  # fmt: skip


@dataclass
class Board:
    family: str
    rows: list[Row]  # best mean rank first
    columns: list[Column]
    cells: dict[tuple[Row, Column], BoardCell]
    mean_ranks: dict[Row, MeanRank]
    win_rates: dict[Row, float]
    agreements: list[Agreement]
    pairwise: dict[tuple[Column, Row, Row], Comparison]  # behind the tie groups, Holm across all of them
    n_random: int  # tests against random (Holm across all of them)
    chance_applies: bool = True  # its metrics declare that scoring no better than chance says something

    def coverage(self, row: Row) -> int:
        """In how many of the board's columns the row was measured."""
        return sum((row, column) in self.cells for column in self.columns)

    def as_dict(self) -> dict:
        return {
            "family": self.family,
            "columns": [column.as_dict() for column in self.columns],
            "rows": [
                {
                    **row.as_dict(),
                    "mean_rank": _mean_rank_dict(self.mean_ranks.get(row)),
                    "mean_win_rate": self.win_rates.get(row),
                    "columns": self.coverage(row),
                    "cells": [
                        None if (row, column) not in self.cells else self.cells[(row, column)].as_dict()
                        for column in self.columns
                    ],
                }
                for row in self.rows
            ],
            "agreement": [agreement.as_dict() for agreement in self.agreements],
            "pairwise_tests": [
                {
                    "column": self.columns.index(column),
                    "a": a.text,
                    "b": b.text,
                    **comparison.as_dict(),
                }  # fmt: skip
                for (column, a, b), comparison in self.pairwise.items()
            ],
            "random_tests": self.n_random,
        }


def _mean_rank_dict(mean_rank: MeanRank | None) -> dict | None:
    return None if mean_rank is None else mean_rank.as_dict()


def build_board(family: str, entries: Iterable[Chosen], all_runs: bool = False) -> Board:
    chance_applies = True  # unless a metric of the board declares otherwise
    rows_of: dict[tuple[Row, Column], list[dict]] = defaultdict(list)
    where: dict[tuple[Row, Column], list[Chosen]] = defaultdict(list)
    for entry in entries:
        cell = entry.cell
        column = Column(
            cell["dataset_id"], cell["model_id"], cell["variant"], cell["metric_id"],
            cell["examples_fingerprint"], cell["direction"], cell["dataset"], cell["model"],
            cell["metric_label"], tuple(cell.get("value_range") or (None, None)), cell["n_examples"],
        )  # fmt: skip
        explainer = cell["identity"]["explainer"] if cell["identity"] else {}
        row = Row(
            cell["explainer_id"], entry.source.run_id if all_runs else None, cell["explainer_label"],
            cell["explainer"], explainer.get("params", {}), explainer.get("version"), cell["explainer_baseline"],
        )  # fmt: skip
        chance_applies = chance_applies and cell["chance_applies"]
        rows_of[(row, column)] += entry.rows
        where[(row, column)].append(entry)
    samples: dict[Column, dict[Row, Sample]] = defaultdict(dict)
    for (row, column), rows in rows_of.items():
        [sample] = samples_by(rows, lambda _: 0).values() if rows else [Sample({}, {})]
        samples[column][row] = sample
    columns = sorted(samples, key=lambda c: (c.dataset, c.model_label, c.metric, c.examples or ""))
    directions = {column: column.direction for column in columns}

    tests: dict[tuple[Column, Row, Row], Comparison] = {}
    for column in columns:
        for (a, b), comparison in pairwise_tests(samples[column]).items():
            tests[(column, a, b)] = comparison
    tests = holm_across(tests)

    def separated(column: Column):
        def test(a: Row, b: Row) -> bool:
            comparison = tests.get((column, a, b)) or tests.get((column, b, a))
            return comparison is not None and comparison.significant

        return test

    random_cells = _against_random(columns, samples) if chance_applies else {}
    cells: dict[tuple[Row, Column], BoardCell] = {}
    means: dict[Column, dict[Row, float]] = {}
    for column in columns:
        summaries = {row: summarize(sample) for row, sample in samples[column].items()}
        means[column] = {row: s.mean for row, s in summaries.items() if s.mean is not None}
        ranks = column_ranks(samples[column], column.direction)
        better_first = sorted(
            means[column], key=lambda r: means[column][r], reverse=column.direction == "higher"
        )
        groups = tie_groups(better_first, separated(column))
        best = best_of(means[column], column.direction)
        for row, summary in summaries.items():
            vs_random, random_test = random_cells.get((row, column), (None, None))
            cells[(row, column)] = BoardCell(
                summary, ranks.get(row), groups.get(row, ""), row in best,
                tuple(dict.fromkeys(e.source.run_id for e in where[(row, column)])),
                tuple(e.cell["cell_id"] for e in where[(row, column)]),
                vs_random, random_test,
            )  # fmt: skip
    mean_ranks = mean_rank_intervals(samples, directions)
    rates = win_rates(means, directions)
    # Aggregates compare rows measured in the same columns: the rows in most columns come first.
    coverage = Counter(row for column in columns for row in samples[column])
    rows = sorted(
        coverage,
        key=lambda r: (-coverage[r], mean_ranks[r].mean if r in mean_ranks else float("inf"), r.text),
    )
    agreements = _agreements(columns, means)
    n_random = sum(1 for pair in random_cells.values() if pair[1] is not None)
    return Board(family, rows, columns, cells, mean_ranks, rates, agreements, tests, n_random, chance_applies)


def _against_random(
    columns: list[Column], samples: dict[Column, dict[Row, Sample]]
) -> dict[tuple[Row, Column], tuple[Summary, Comparison]]:
    """Each explainer's (score − random) in the column's direction, per example, and the paired
    Wilcoxon test of it, Holm-corrected over the board; columns without a chance baseline
    (``Explainer.baseline``) have none."""
    keys, differences, comparisons = [], [], []
    for column in columns:
        randoms = [row for row in samples[column] if row.baseline == CHANCE]
        if not randoms:
            continue
        chance = samples[column][randoms[0]]
        sign = 1.0 if column.direction == "higher" else -1.0
        for row, sample in samples[column].items():
            if row.baseline == CHANCE:
                continue
            mine, theirs = sample.finite(), chance.finite()
            common = [key for key in mine if key in theirs]
            difference = Sample.of(
                {key: sign * (mine[key] - theirs[key]) for key in common},
                {key: sample.units[key] for key in common},
            )
            keys.append((row, column))
            differences.append(summarize(difference))
            comparisons.append(paired_wilcoxon(sample, chance))
    return dict(zip(keys, zip(differences, holm(comparisons), strict=True), strict=True))


def _agreements(columns: list[Column], means: dict[Column, dict[Row, float]]) -> list[Agreement]:
    groups: dict[tuple, list[Column]] = defaultdict(list)
    for column in columns:
        groups[column.group].append(column)
    result = []
    for group_columns in groups.values():
        if len(group_columns) < 2:
            continue
        w, n_rows, pairs = agreement(
            {column: means[column] for column in group_columns}, {c: c.direction for c in group_columns}
        )
        first = group_columns[0]
        result.append(
            Agreement(
                first.dataset,
                first.model_label,
                tuple(c.metric for c in group_columns),
                w,
                n_rows,
                {(a.metric, b.metric): tau for (a, b), tau in pairs.items()},
            )  # fmt: skip
        )
    return result


# -- sanity ---------------------------------------------------------------------------------------------


@dataclass
class Sanity:
    """What the stored checks say of one explainer (by label), across the boards' runs."""

    explainer: str
    randomization: list[bool] = field(default_factory=list)  # init-vs-init above init-vs-untrained: held?
    against_random: Counter = field(default_factory=Counter)  # better / tied / worse, over board cells
    vs_teacher: Counter = field(default_factory=Counter)  # the pairings' outcomes, for a student
    orders: list[bool] = field(default_factory=list)  # other expected orders naming the explainer: held?

    def texts(self) -> dict[str, str]:
        return {
            "model randomization": _held(self.randomization, "passes", "fails"),
            "against random": _counts(self.against_random, ("better", "tied", "worse")),
            "student vs teacher": _counts(
                self.vs_teacher, ("student better", "no significant difference", "teacher better")
            ),
            "expected orders": _held(self.orders, "hold", "not shown"),
        }

    def as_dict(self) -> dict:
        return {
            "explainer": self.explainer,
            "model_randomization": {"held": sum(self.randomization), "tested": len(self.randomization)},
            "against_random": dict(self.against_random),
            "student_vs_teacher": dict(self.vs_teacher),
            "expected_orders": {"held": sum(self.orders), "tested": len(self.orders)},
        }


def _held(outcomes: list[bool], yes: str, no: str) -> str:
    if not outcomes:
        return "not tested"
    held = sum(outcomes)
    return (
        f"{yes} {held}/{len(outcomes)}"
        if held == len(outcomes)
        else f"{no} {len(outcomes) - held}/{len(outcomes)}"
    )


def _counts(counter: Counter, order: tuple[str, ...]) -> str:
    if not counter:
        return "not tested"
    return ", ".join(f"{counter[key]} {key}" for key in order if counter[key])


def sanity_checks(sources: list[Source], boards: list[Board]) -> tuple[list[Sanity], list[Verdict]]:
    """Per explainer: the model-randomization verdicts (variant expectations on a metric of the
    randomization family, such as Jaccard between variants, whose lower side is the untrained model),
    the other expected orders naming it, its teacher pairings (a student), and how its board cells
    compare with random."""
    by_label: dict[str, Sanity] = {}

    def of(label: str) -> Sanity:
        return by_label.setdefault(label, Sanity(label))

    for board in boards:
        for row in board.rows:
            of(row.label)
        for (row, _), cell in board.cells.items():
            if cell.against_random is not None:
                of(row.label).against_random[cell.against_random] += 1
    verdicts: list[Verdict] = []
    for source in sources:
        expectations = stored_expectations(source.run)
        run_verdicts = check_expectations(expectations, source.rows)
        verdicts += run_verdicts
        families = {row["metric_label"]: row["family"] for row in source.rows}
        for verdict in run_verdicts:
            if verdict.comparison.p_value is None:
                continue
            randomization = families.get(verdict.metric) == RANDOMIZATION
            if verdict.explainer and verdict.below == "untrained" and randomization:
                of(verdict.explainer).randomization.append(verdict.holds)
            elif verdict.explainer:
                of(verdict.explainer).orders.append(verdict.holds)
            else:
                for label in {verdict.above, verdict.below}:
                    if label != "*":
                        of(label).orders.append(verdict.holds)
        fits = Queries(source.folder).fits(source.run_id)
        for pairing in pair_students(source.rows, teacher_ids(fits)):
            of(pairing.student).vs_teacher[pairing.outcome] += 1
    # in the order of the quality boards (cost last: it ranks by speed)
    order = [row.label for board in sorted(boards, key=lambda b: not b.chance_applies) for row in board.rows]
    return sorted(
        by_label.values(),
        key=lambda s: (order.index(s.explainer) if s.explainer in order else len(order), s.explainer),
    ), verdicts


# -- the leaderboard --------------------------------------------------------------------------------------

DEFINITIONS = {
    "cell": "mean over the column's examples (seeds pooled) with its 95 % percentile bootstrap interval over "
    "examples; n = defined values",
    "rank": "1 + the number of explainers with a better mean in the column (ties share the better rank); "
    "its interval: the 2.5th–97.5th percentiles of the ranks over 2,000 bootstrap resamples of the column's "
    "examples, the same examples drawn for every explainer",
    "group": "explainers sharing a letter are not separated by any test: two-sided Wilcoxon signed-rank "
    "tests of every pair of explainers in the column, paired by example, Holm-Bonferroni-corrected across "
    f"every pairwise test of the board, α = {ALPHA}; letters from a compact letter display, best group 'a'",
    "mean rank": "the mean of the explainer's ranks over the columns it was measured in ('columns'), with "
    "the 2.5th–97.5th percentiles of the same mean over 2,000 bootstrap draws (columns on the same examples "
    "are resampled together, others independently); rows are ordered by how many columns they are in, "
    "then by mean rank: aggregates compare explainers measured in the same columns",
    "win rate": "HELM's mean win rate: in each column the fraction of the other explainers it beats (a "
    "tie counts ½), averaged over the columns it is in",
    "vs random": "(score − random's score) per example, in the metric's direction (positive: better than "
    "chance), its mean and bootstrap interval; better / worse when a two-sided Wilcoxon signed-rank test, "
    "Holm-corrected across the board's comparisons with random, separates them",
    "agreement": "Kendall's W of the metrics of one (dataset, model) over the explainers every one of them "
    "ranks (1: identical rankings, 0: no agreement), and Kendall's τ-b of each two",
}


@dataclass
class Leaderboard:
    sources: list[Source]
    boards: list[Board]
    sanity: list[Sanity]
    verdicts: list[Verdict]
    all_runs: bool
    built_at: str
    reproductions: list[tuple[Source, list[ClaimResult]]] = field(default_factory=list)  # runs with claims

    @classmethod
    def build(
        cls,
        folders: Sequence[Path],
        runs: Sequence[str] = (),
        suites: Sequence[str] = (),
        all_runs: bool = False,
    ) -> Leaderboard:
        sources, chosen = collect(folders, runs, suites, all_runs)
        by_family: dict[str, list[Chosen]] = defaultdict(list)
        for entry in chosen:
            by_family[entry.cell["family"]].append(entry)
        boards = [build_board(family, by_family[family], all_runs) for family in sorted(by_family)]
        sanity, verdicts = sanity_checks(sources, boards)
        reproductions = []
        for source in sources:
            claims = stored_claims(source.run)
            if claims:
                store = Queries(source.folder)
                teachers = teacher_ids(store.fits(source.run_id))
                models = store.models(source.run_id)
                reproductions.append((source, judge_claims(claims, source.rows, models, teachers)))
        return cls(
            sources,
            boards,
            sanity,
            verdicts,
            all_runs,
            datetime.now(UTC).isoformat(timespec="seconds"),
            reproductions,
        )

    def to_json(self) -> dict:
        return {
            "format_version": LEADERBOARD_FORMAT,
            "built_at": self.built_at,
            "all_runs": self.all_runs,
            "definitions": {**DEFINITIONS, "test": TEST_NAME, "alpha": ALPHA},
            "boards": [board.as_dict() for board in self.boards],
            "sanity": [sanity.as_dict() for sanity in self.sanity],
            "expected_orders": [verdict.as_dict() for verdict in self.verdicts],
            "reproductions": [
                {
                    "run_id": source.run_id,
                    "suite": source.run["suite"],
                    "claims": [r.as_dict() for r in results],
                }
                for source, results in self.reproductions
            ],
            "sources": [source.as_dict() for source in self.sources],
        }

    def document(self, compact: bool = False) -> Document:
        """The leaderboard as the renderers walk it; ``compact``: the boards' cells as "mean (rank) group"
        and one line per source, short enough for a paper's appendix (Markdown)."""
        return leaderboard_document(self, compact)


# -- as a document ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardHeading:
    """The heading of a leaderboard page (a report's is ``document.Heading``)."""

    runs: int
    built_at: str

    @property
    def title(self) -> str:
        return "Leaderboard"

    @property
    def state(self) -> str:
        return (
            f"(from {self.runs} stored run{'s' if self.runs != 1 else ''}, built {self.built_at}, "
            f"leaderboard format {LEADERBOARD_FORMAT})"
        )


def leaderboard_document(board: Leaderboard, compact: bool = False) -> Document:
    sections = [
        Section(
            "board", f"{b.family} board", _shared_place(b.columns) or "", tables=_board_tables(b, compact)
        )
        for b in board.boards
    ]
    if not compact:
        sections += [_agreement_section(b) for b in board.boards if b.agreements]
    for source, results in board.reproductions:  # the papers' claims, judged on the run that states them
        for section in reproduction_sections(results):
            section.title += f" (suite {source.run['suite']}, run {source.run_id})"
            sections.append(section)
    sections.append(_sanity_section(board.sanity))
    sections.append(
        Section(
            "definitions",
            "how to read the boards",
            items=[f"{name}: {text}" for name, text in DEFINITIONS.items()]
            if not compact
            else [_compact_definition()],
        )
    )
    sections.append(_sources_section(board.sources, compact))
    return Document(BoardHeading(len(board.sources), board.built_at), sections)  # type: ignore[arg-type]


def _compact_definition() -> str:
    return (
        "Cells: mean over the column's n examples, (the 95 % bootstrap interval of its rank), tie group: explainers "
        f"sharing a letter are not separated by a Holm-corrected paired Wilcoxon test (α = {ALPHA}); [k undef.]: "
        "examples where the metric is undefined, left out; best of each column in bold; mean rank [95 % "
        "interval] over the columns; win rate as HELM's (ties ½). The means' intervals, the tests and the "
        "provenance of every number are in the leaderboard's index.html and leaderboard.json."
    )


def _shared_place(columns: list[Column]) -> str | None:
    """ "dataset · model" when every column of a board shares them (the heading says it once)."""
    places = {(column.dataset, column.model_label) for column in columns}
    return f"({' · '.join(next(iter(places)))})" if len(places) == 1 else None


def _column_header(column: Column, shared: bool) -> Header:
    metric = f"{column.metric} {ARROWS[column.direction]}"
    if column.n_examples is not None:
        metric += f" (n={column.n_examples})"
    parts = (metric,) if shared else (f"{column.dataset} · {column.model_label}", metric)
    return Header(parts, numeric=True, data=column.as_dict())


def _board_tables(board: Board, compact: bool) -> list[Table]:
    shared = _shared_place(board.columns) is not None
    headers = [
        Header(("explainer",), names_rows=True),
        Header(("mean rank",), numeric=True),
        Header(("win rate",), numeric=True),
        Header(("columns",), numeric=True),
    ] + [_column_header(column, shared) for column in board.columns]
    if not compact:
        headers.append(Header(("runs",)))
    rows = []
    for row in board.rows:
        mean_rank = board.mean_ranks.get(row)
        rate = board.win_rates.get(row)
        cells = [
            Cell(row.text, data=row.as_dict()),
            Cell("—" if mean_rank is None else _mean_rank_text(mean_rank), data=_mean_rank_dict(mean_rank)),
            Cell("—" if rate is None else f"{rate:.2f}", data={"mean_win_rate": rate}),
            Cell(f"{board.coverage(row)}/{len(board.columns)}"),
        ]
        for column in board.columns:
            cell = board.cells.get((row, column))
            cells.append(_board_cell(cell, compact))
        if not compact:  # the runs behind the row's numbers: their provenance is in the sources table
            runs = sorted({run for (r, _), cell in board.cells.items() if r == row for run in cell.runs})
            cells.append(Cell(_runs_text(runs), data={"run_ids": runs}))
        rows.append(cells)
    footer = [
        f"Ranks and groups: {len(board.pairwise)} pairwise {TEST_NAME} tests, Holm-Bonferroni across the board, "
        f"α = {ALPHA}. Missing: not measured (never counted as zero)."
    ]
    tables = [Table(headers, rows, footer, data={"family": board.family})]
    if not compact and board.n_random:
        tables.append(_random_table(board))
    return tables


def short_run(run_id: str) -> str:
    """A run id without its date and time (``quickstart-0ce481``): unique by its hash, unlike a prefix,
    which runs of one day share."""
    return run_id.split("-", 2)[-1]


def _runs_text(runs: list[str]) -> str:
    """A row's runs, short (``short_run``), or their number when there are many (every id is in the JSON
    and in the sources table)."""
    if len(runs) > 3:
        return f"{len(runs)} runs"
    return ", ".join(map(short_run, runs))


def _mean_rank_text(mean_rank: MeanRank) -> str:
    return f"{mean_rank.mean:.1f} [{mean_rank.low:.1f}, {mean_rank.high:.1f}]"


def _board_cell(cell: BoardCell | None, compact: bool) -> Cell:
    if cell is None:
        return Cell("—")
    summary = cell.summary
    if summary.mean is None:
        return Cell(summary_text(summary), data=cell.as_dict())
    rank = "" if cell.rank is None else cell.rank.text
    if compact:
        undefined = f" [{summary.n_undefined} undef.]" if summary.n_undefined else ""
        text = f"{number(summary.mean)} ({rank}) {cell.group}{undefined}"
        return Cell(text.strip(), best=cell.best, data=cell.as_dict())
    text = f"{summary_text(summary)} · rank {rank} · {cell.group}"
    return Cell(text, best=cell.best, data=cell.as_dict())


RANDOM_TONES = {"better": "good", "worse": "bad"}


def _random_table(board: Board) -> Table:
    shared = _shared_place(board.columns) is not None
    columns = [
        c
        for c in board.columns
        if any(board.cells.get((r, c)) and board.cells[(r, c)].vs_random for r in board.rows)
    ]
    headers = [Header(("explainer",), names_rows=True)] + [
        Header(
            (f"{c.metric} − random",)
            if shared
            else (f"{c.dataset} · {c.model_label}", f"{c.metric} − random"),
            numeric=True,
        )
        for c in columns
    ]
    rows = []
    for row in board.rows:
        if row.baseline == CHANCE:
            continue
        cells = [Cell(row.text)]
        for column in columns:
            cell = board.cells.get((row, column))
            if cell is None or cell.vs_random is None or cell.vs_random.mean is None:
                cells.append(Cell("—"))
                continue
            diff = cell.vs_random
            interval = "" if diff.ci_low is None else f" [{number(diff.ci_low)}, {number(diff.ci_high)}]"
            cells.append(
                Cell(
                    f"{diff.mean:+.3g}{interval} {cell.against_random}",
                    tone=RANDOM_TONES.get(cell.against_random or ""),  # type: ignore[arg-type]
                    data={
                        "vs_random": diff.as_dict(),
                        "test": cell.random_test.as_dict() if cell.random_test else None,
                    },
                )
            )
        rows.append(cells)
    footer = [f"Improvement over random: {DEFINITIONS['vs random']} ({board.n_random} comparisons)."]
    return Table(headers, rows, footer)


def _agreement_section(board: Board) -> Section:
    items = []
    for entry in board.agreements:
        w = "undefined (fewer than two explainers in every metric)" if entry.w is None else f"{entry.w:.2f}"
        line = (
            f"{entry.dataset} · {entry.model}: Kendall's W = {w} over {len(entry.metrics)} metrics "
            f"and {entry.n_explainers} explainers"
        )
        defined = {pair: tau for pair, tau in entry.pairs.items() if tau is not None}
        if defined:
            (a, b), low = min(defined.items(), key=lambda item: item[1])
            (c, d), high = max(defined.items(), key=lambda item: item[1])
            line += f"; least alike: {a} vs {b} (τ = {low:.2f}); most alike: {c} vs {d} (τ = {high:.2f})"
        items.append(line)
    tables = [_tau_table(entry) for entry in board.agreements if len(entry.metrics) > 2]
    return Section("agreement", f"{board.family}: do the metrics agree?", tables=tables, items=items)


def _tau_table(entry: Agreement) -> Table:
    """Kendall's τ-b of each two metrics of one (dataset, model), as a matrix."""
    metrics = list(dict.fromkeys(entry.metrics))
    tau = {**entry.pairs, **{(b, a): value for (a, b), value in entry.pairs.items()}}
    headers = [Header((f"{entry.dataset} · {entry.model}",), names_rows=True)] + [
        Header((metric,), numeric=True) for metric in metrics
    ]
    rows = [
        [Cell(a)]
        + [Cell("1" if a == b else "—" if tau.get((a, b)) is None else f"{tau[(a, b)]:.2f}") for b in metrics]
        for a in metrics
    ]
    return Table(headers, rows, ["Kendall's τ-b between the metrics' rankings of the explainers they share."])


SANITY_HEADERS = (
    "explainer",
    "model randomization",
    "against random",
    "student vs teacher",
    "expected orders",
)


def _sanity_section(sanity: list[Sanity]) -> Section:
    rows = []
    for entry in sanity:
        texts = entry.texts()
        tones = {
            "model randomization": None
            if not entry.randomization
            else "good"
            if all(entry.randomization)
            else "bad",
        }
        rows.append([Cell(entry.explainer)] + [Cell(texts[h], tone=tones.get(h)) for h in SANITY_HEADERS[1:]])  # type: ignore[arg-type]
    footer = [
        "Model randomization: the stored expected order 'Jaccard (or another metric) of init vs init above init vs "
        "untrained' per (dataset, metric), one-sided Wilcoxon, Holm-corrected within its run; against random: "
        "board cells better / tied / worse than the random explainer; student vs teacher: the stored pairings "
        "of a distilled explainer with its teacher; 'not tested' where no stored run has the check."
    ]
    return Section(
        "sanity",
        "sanity checks",
        tables=[Table([Header((h,), names_rows=i == 0) for i, h in enumerate(SANITY_HEADERS)], rows, footer)],
    )


def _sources_section(sources: list[Source], compact: bool) -> Section:
    if compact:
        items = [
            f"run {s.run_id}: {s.run['suite']} v{s.run['suite_version']} (suite hash {s.run['suite_hash'][:12]}), "
            f"git {(s.run['git_revision'] or '?')[:10]}, {s.run['device']}, {s.run['started_at']}"
            + (f", --limit {s.run['options'].get('limit')}" if s.run["options"].get("limit") else "")
            for s in sources
        ]
        return Section("sources", "sources", items=items)
    headers = [
        Header((h,))
        for h in (
            "run",
            "results",
            "suite",
            "version",
            "suite hash",
            "git",
            "device",
            "started",
            "status",
            "limit",
            "versions",
        )
    ]
    rows = []
    for s in sources:
        run = s.run
        versions = {k: v for k, v in run["versions"].items() if k not in ("plugins", "code")}
        rows.append(
            [
                Cell(run["run_id"]), Cell(str(s.folder)), Cell(run["suite"]), Cell(str(run["suite_version"])),
                Cell(run["suite_hash"][:12]), Cell((run["git_revision"] or "?")[:12]), Cell(str(run["device"])),
                Cell(run["started_at"]), Cell(run["status"], tone=None if run["status"] == "complete" else "warning"),
                Cell(str(run["options"].get("limit") or "—")),
                Cell(", ".join(f"{k} {v}" for k, v in versions.items())),
            ]
        )  # fmt: skip
    return Section("sources", "sources", tables=[Table(headers, rows)])
