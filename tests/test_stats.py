"""Statistics of reports: bootstrap summaries, paired Wilcoxon tests, Holm correction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from harness.report import Column, FamilyTable, compare_with_best
from harness.stats import Comparison, holm, paired_wilcoxon, summarize


def keyed(values):
    return {(0, f"ex{i}"): v for i, v in enumerate(values)}


def test_paired_wilcoxon_matches_scipy_with_ties_and_zero_differences():
    a = [0.9, 0.8, 0.7, 0.7, 0.5, 0.4, 0.6, 0.9, 0.3, 0.8]
    b = [0.1, 0.8, 0.2, 0.3, 0.1, 0.4, 0.2, 0.5, 0.1, 0.2]  # two zero differences, tied |d| = 0.4
    result = paired_wilcoxon(keyed(a), keyed(b))
    expected = wilcoxon(np.subtract(a, b), zero_method="wilcox")
    assert result.n_pairs == 10
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_pairs_are_matched_by_example_not_by_position():
    a = {(0, "x"): 1.0, (0, "y"): 2.0, (0, "z"): 3.0}
    b = {(0, "z"): 3.0, (0, "y"): 2.0, (0, "x"): 1.0, (0, "w"): 9.0}  # w has no partner
    result = paired_wilcoxon(a, b)
    assert result == Comparison(3, 0.0, 1.0, note="all paired differences are zero")


def test_no_paired_example_is_reported_not_crashed_on():
    result = paired_wilcoxon({(0, "a"): 1.0}, {(0, "b"): 2.0})
    assert result.p_value is None and result.note == "no paired examples"


def test_undefined_values_are_left_out_of_the_pairs():
    a = keyed([1.0, float("nan"), 3.0, 4.0])
    b = keyed([0.0, 1.0, 1.0, 1.0])
    assert paired_wilcoxon(a, b).n_pairs == 3


def test_holm_matches_statsmodels_and_skips_untestable_comparisons():
    p_values = [0.001, 0.01, 0.02, 0.04, 0.3]
    comparisons = [Comparison(10, 1.0, p) for p in p_values] + [Comparison(0, None, None)]
    adjusted = holm(comparisons)
    rejected, expected, _, _ = multipletests(p_values, alpha=0.05, method="holm")
    assert [c.p_adjusted for c in adjusted[:5]] == pytest.approx(list(expected))
    assert [c.significant for c in adjusted[:5]] == list(rejected) == [True, True, False, False, False]
    assert adjusted[5].p_adjusted is None and not adjusted[5].significant


def test_each_cell_is_compared_with_its_column_best_and_corrected_across_the_table():
    rng = np.random.default_rng(0)
    column = Column("d", "m", "default", "metric", "higher")
    good, same, bad = rng.normal(1.0, 0.1, 30), None, rng.normal(0.0, 0.1, 30)
    same = good + rng.normal(0, 1e-3, 30)
    values = {("good", column): keyed(good), ("same", column): keyed(same), ("bad", column): keyed(bad)}
    cells = {key: summarize(list(v.values())) for key, v in values.items()}
    table = FamilyTable("f", [column], ["good", "same", "bad"], cells)
    table.best = {(max(["good", "same"], key=lambda r: cells[(r, column)].mean), column)}
    comparisons = compare_with_best(table, values)
    assert len(comparisons) == 2
    assert comparisons[("bad", column)].significant
    assert comparisons[("bad", column)].p_adjusted == pytest.approx(
        min(1.0, 2 * comparisons[("bad", column)].p_value)
    )


def test_summary_interval_contains_the_mean_and_handles_constant_and_single_values():
    summary = summarize([0.1, 0.4, 0.2, 0.8, 0.5])
    assert summary.ci_low <= summary.mean <= summary.ci_high and summary.n == 5
    assert summarize([0.3, 0.3]).ci_low == 0.3
    assert summarize([0.3]).ci_low is None and summarize([]).n == 0


def test_significant_differences_are_marked_in_table_markdown_and_json(write_suite, tmp_path):
    """Records written straight into a store: 20 examples where saliency clearly beats random."""
    import json

    from conftest import tiny_suite_text
    from rich.console import Console

    from harness.grid import expand
    from harness.registry import get_registry
    from harness.report import Report, render
    from harness.store import Store
    from harness.suite import load_suite

    loaded = load_suite(write_suite(tiny_suite_text(metrics="\n  - name: sufficiency")), get_registry())
    store = Store(tmp_path / "results")
    store.create_run("r1", loaded.suite, loaded.hash, loaded.path, loaded.text, "cpu", None, {}, {})
    rng = np.random.default_rng(0)
    ids = [f"ex{i}" for i in range(20)]
    for cell in expand(loaded):
        centre = 0.6 if cell.explainer.name == "random" else 0.1  # sufficiency: lower is better
        store.record_cell("r1", cell, ids, list(centre + rng.normal(0, 0.05, size=20)), 0.0)
    report = Report.build(store, "r1")

    [table] = report.tables
    cells = json.loads(render(report, "json"))["tables"][0]["rows"]
    random_cell = next(row["cells"][0] for row in cells if row["explainer"] == "random")
    assert random_cell["vs_best"]["significant"] and random_cell["vs_best"]["p_adjusted"] < 0.05
    markdown = render(report, "md")
    assert next(line for line in markdown.splitlines() if line.startswith("| random |")).endswith("† |")
    console = Console(record=True, width=200)
    report.print(console)
    assert "†" in next(line for line in console.export_text().splitlines() if line.startswith("│ random"))
