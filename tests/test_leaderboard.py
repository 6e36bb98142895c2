"""`bench leaderboard`: stored runs of several folders → boards per metric family, ranked with
uncertainty, read against random and beside the sanity checks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import tiny_suite_text
from test_randomization import randomization_suite

from harness.cli import main
from harness.registry import get_registry
from harness.report.leaderboard import LEADERBOARD_FORMAT, Leaderboard
from harness.report.site import render_leaderboard
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: sufficiency
    params: {bins: [10, 50]}
  - name: runtime"""


def run(path, results, cache, **options):
    loaded = load_suite(path, get_registry())
    options = {"results_dir": results, "cache_dir": cache, "progress": False, **options}
    return Runner(loaded, RunOptions(**options)).run()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two results folders: the tiny suite run twice in the first (the second run is the latest), and
    with --limit 4 (other examples) in the second."""
    root = tmp_path_factory.mktemp("boards")
    suite = root / "suite.yaml"
    suite.write_text(tiny_suite_text(metrics=METRICS))
    first = run(suite, root / "a", root / "cache")
    second = run(suite, root / "a", root / "cache", resume=False)
    limited = run(suite, root / "b", root / "cache", limit=4)
    return root, first.run_id, second.run_id, limited.run_id


def board_of(leaderboard: Leaderboard, family: str):
    return next(board for board in leaderboard.boards if board.family == family)


def test_a_cell_measured_twice_is_read_from_its_latest_run_and_all_runs_keeps_both(stores):
    root, first, second, _ = stores
    board = board_of(Leaderboard.build([root / "a"]), "faithfulness")
    assert len(board.rows) == 2 and len(board.columns) == 2
    assert {cell.runs for cell in board.cells.values()} == {(second,)}
    history = board_of(Leaderboard.build([root / "a"], all_runs=True), "faithfulness")
    assert len(history.rows) == 4
    assert {row.run for row in history.rows} == {first, second}
    assert all(f"(run {row.run.split('-', 2)[-1]})" in row.text for row in history.rows)
    assert len({row.text for row in history.rows}) == 4  # runs of one day are still told apart


def test_cells_measured_on_other_examples_are_other_columns_never_pooled(stores):
    root, _, second, limited = stores
    board = board_of(Leaderboard.build([root / "a", root / "b"]), "faithfulness")
    assert len(board.columns) == 4
    assert sorted(column.n_examples for column in board.columns) == [4, 4, 6, 6]
    for (_, column), cell in board.cells.items():
        assert cell.summary.n == column.n_examples
        assert cell.runs == ((limited,) if column.n_examples == 4 else (second,))


def test_runs_and_suites_select_what_is_read(stores):
    root, first, _, limited = stores
    only = Leaderboard.build([root / "a", root / "b"], runs=[first])
    assert [source.run_id for source in only.sources] == [first]
    with pytest.raises(Exception, match="ambiguous"):
        Leaderboard.build([root / "a", root / "b"], runs=[first[:9]])
    assert Leaderboard.build([root / "a", root / "b"], suites=["tiny"]).sources
    with pytest.raises(Exception, match="no stored run of suite other"):
        Leaderboard.build([root / "a"], suites=["other"])
    with pytest.raises(Exception, match="run 'nope' not found"):
        Leaderboard.build([root / "a"], runs=["nope"])


def test_the_improvement_over_random_is_the_mean_difference_in_the_metrics_direction(stores):
    root, _, second, _ = stores
    board = board_of(Leaderboard.build([root / "a"]), "faithfulness")
    records = list(Store(root / "a").records(second))
    for column in board.columns:
        values = {
            (r["explainer"], r["example_id"]): r["value"]
            for r in records
            if r["metric"] == column.metric.split("(")[0]
        }
        sign = 1.0 if column.direction == "higher" else -1.0
        [saliency] = [row for row in board.rows if row.name == "saliency"]
        ids = sorted({example for _, example in values})
        expected = np.mean([sign * (values[("saliency", i)] - values[("random", i)]) for i in ids])
        cell = board.cells[(saliency, column)]
        assert cell.vs_random.mean == pytest.approx(expected)
        assert cell.vs_random.ci_low <= cell.vs_random.mean <= cell.vs_random.ci_high
        assert cell.against_random in {"better", "tied", "worse"}
        [random_row] = [row for row in board.rows if row.name == "random"]
        assert board.cells[(random_row, column)].vs_random is None


def test_no_explainer_is_read_against_random_on_cost(stores):
    root, *_ = stores
    board = board_of(Leaderboard.build([root / "a"]), "cost")
    assert board.n_random == 0 and all(cell.vs_random is None for cell in board.cells.values())
    assert not board.chance_applies


def test_a_run_stores_what_its_plugins_declare_of_chance(stores):
    """Explainer.baseline and Metric.chance_applies, stored with each cell: the boards read them, never
    a plugin's name."""
    root, _, second, _ = stores
    cells = Store(root / "a").cells(second)
    assert {c["explainer"]: c["explainer_baseline"] for c in cells} == {"random": "chance", "saliency": None}
    assert {c["metric"]: c["chance_applies"] for c in cells} == {
        "comprehensiveness": True, "sufficiency": True, "runtime": False,
    }  # fmt: skip


def test_the_chance_baseline_is_the_explainer_declared_so_whatever_its_name():
    """A third-party explainer declaring ``baseline = "chance"`` is what every other explainer is tested
    against; a metric declaring ``chance_applies = False`` gets no such test, whatever its family. Both
    used to be decided by names: an explainer called ``random``, the family ``cost``."""
    from harness.report.leaderboard import build_board

    rng = np.random.default_rng(1)
    base = rng.normal(size=30)
    values = {"method": list(base + 1 + rng.normal(scale=0.1, size=30)), "noise": list(base)}
    board = build_board("faithfulness", synthetic_entries(values, baselines={"noise": "chance"}))
    [column] = board.columns
    method = next(row for row in board.rows if row.name == "method")
    assert board.n_random == 1 and board.cells[(method, column)].against_random == "better"
    assert board.cells[(method, column)].vs_random.mean == pytest.approx(1.0, abs=0.1)
    quiet = build_board(
        "faithfulness", synthetic_entries(values, baselines={"noise": "chance"}, chance=False)
    )
    assert quiet.n_random == 0 and not quiet.chance_applies


def test_a_cell_no_run_measured_is_missing_never_zero(stores, tmp_path):
    root, *_ = stores
    suite = tmp_path / "more.yaml"
    explainers = "\n  - name: random\n  - name: occlusion"
    suite.write_text(
        tiny_suite_text(explainers=explainers, metrics=METRICS.split("  - name: sufficiency")[0])
    )
    run(suite, tmp_path / "c", root / "cache")
    leaderboard = Leaderboard.build([root / "a", tmp_path / "c"])
    board = board_of(leaderboard, "faithfulness")
    [occlusion] = [row for row in board.rows if row.name == "occlusion"]
    missing = [column for column in board.columns if (occlusion, column) not in board.cells]
    assert [column.metric for column in missing] == ["sufficiency(bins=[10,50])"]
    data = json.loads(render_leaderboard(leaderboard, "json"))
    [faithfulness] = [b for b in data["boards"] if b["family"] == "faithfulness"]
    [row] = [r for r in faithfulness["rows"] if r["name"] == "occlusion"]
    assert row["cells"].count(None) == 1
    markdown = render_leaderboard(leaderboard, "md")
    faithfulness_board = markdown.split("## faithfulness board")[1].split("\n## ")[0]
    [line] = [line for line in faithfulness_board.splitlines() if line.startswith("| occlusion")]
    assert line.count("| — ") == 1


def test_every_file_carries_the_format_version_and_the_runs_behind_each_number(stores):
    root, _, second, _ = stores
    leaderboard = Leaderboard.build([root / "a"])
    data = json.loads(render_leaderboard(leaderboard, "json"))
    assert data["format_version"] == LEADERBOARD_FORMAT
    assert [source["run_id"] for source in data["sources"]] == [second]
    source = data["sources"][0]
    assert source["suite"] == "tiny" and source["suite_hash"] and source["versions"]["torch"]
    cells = [cell for board in data["boards"] for row in board["rows"] for cell in row["cells"] if cell]
    assert cells and all(cell["run_ids"] == [second] and cell["cell_ids"] for cell in cells)
    assert f"format {LEADERBOARD_FORMAT}" in render_leaderboard(leaderboard, "md")


@pytest.mark.slow
def test_the_model_randomization_verdict_stands_beside_each_explainer(tmp_path):
    # the suite expects init:2 above untrained on jaccard (the randomization test) and, on switching-point,
    # random above every explainer (another expected order)
    suite = randomization_suite(tmp_path)
    run(suite, tmp_path / "r", tmp_path / "cache")
    leaderboard = Leaderboard.build([tmp_path / "r"])
    sanity = {entry.explainer: entry for entry in leaderboard.sanity}
    jaccard = {v.explainer: v for v in leaderboard.verdicts if v.metric.startswith("jaccard")}
    assert set(jaccard) == {"random", "saliency"}
    for explainer, verdict in jaccard.items():
        expected = "passes 1/1" if verdict.holds else "fails 1/1"
        assert sanity[explainer].texts()["model randomization"] == expected
    orders = [v for v in leaderboard.verdicts if v.metric.startswith("switching-point")]  # one per variant
    assert len(orders) == 3 and {(v.above, v.below) for v in orders} == {("random", "saliency")}
    held = sorted(v.holds for v in orders)
    assert sorted(sanity["saliency"].orders) == held and sorted(sanity["random"].orders) == held


def test_the_command_writes_the_site_and_bad_input_is_one_line_and_exit_2(stores, tmp_path, capsys):
    root, *_ = stores
    with pytest.raises(SystemExit) as exit_:
        main(["leaderboard", "--results", str(root / "a"), "--out", str(tmp_path / "site"), "--format", "md"])
    assert exit_.value.code == 0
    assert (tmp_path / "site" / "leaderboard.md").read_text().startswith("# Leaderboard")
    assert "wrote" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["leaderboard", "--results", str(tmp_path / "nothing")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "nothing" in error and "--results" in error
    with pytest.raises(SystemExit) as exit_:
        main(["leaderboard", "--results", str(root / "a"), "zzzz"])
    assert exit_.value.code == 2


def test_two_explainers_share_a_group_letter_exactly_when_no_corrected_test_separates_them(stores):
    root, *_ = stores
    for board in Leaderboard.build([root / "a", root / "b"]).boards:
        adjusted = [c.p_adjusted for c in board.pairwise.values() if c.p_adjusted is not None]
        raw = sorted(c.p_value for c in board.pairwise.values() if c.p_value is not None)
        assert len(adjusted) == len(raw) and min(adjusted, default=1) >= min(raw, default=1)
        for (column, a, b), comparison in board.pairwise.items():
            letters_a, letters_b = board.cells[(a, column)].group, board.cells[(b, column)].group
            assert bool(set(letters_a) & set(letters_b)) == (not comparison.significant)


def synthetic_entries(
    values: dict[str, list[float]],
    direction: str = "higher",
    metric: str = "m",
    baselines: dict[str, str] | None = None,
    chance: bool = True,
):
    """Board entries as the store gives them: one done cell per explainer on one column, one row per
    example. ``baselines``: explainer -> its declared baseline (default: ``random`` is the chance one);
    ``chance``: whether the metric declares that chance applies."""
    baselines = {"random": "chance"} if baselines is None else baselines
    from pathlib import Path

    from harness.report.leaderboard import Chosen, Source

    source = Source(Path("."), {"run_id": "r1", "started_at": "t"}, [])
    entries = []
    for explainer, column in values.items():
        cell = {
            "cell_id": f"c-{explainer}", "dataset_id": "d", "model_id": "m", "variant": "default",
            "metric_id": metric, "examples_fingerprint": "f", "direction": direction, "dataset": "data",
            "model": "model", "metric_label": metric, "value_range": [None, None], "n_examples": len(column),
            "identity": None, "explainer_id": explainer, "explainer_label": explainer, "explainer": explainer,
            "explainer_baseline": baselines.get(explainer), "chance_applies": chance,
        }  # fmt: skip
        rows = [
            {"seed": 0, "example_id": f"e{i}", "value": value, "unit": f"e{i}"}
            for i, value in enumerate(column)
        ]
        entries.append(Chosen(cell, source, rows))
    return entries


def test_a_board_separates_what_its_tests_separate_and_groups_what_they_do_not():
    from harness.report.leaderboard import build_board

    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    board = build_board(
        "faithfulness",
        synthetic_entries(
            {
                "strong": list(base + 2 + rng.normal(scale=0.1, size=40)),
                "weak": list(base + 1 + rng.normal(scale=0.1, size=40)),
                "weak-twin": list(base + 1 + rng.normal(scale=0.1, size=40)),
                "random": list(base + rng.normal(scale=0.1, size=40)),
            }
        ),
    )
    [column] = board.columns
    groups = {row.name: board.cells[(row, column)].group for row in board.rows}
    ranks = {row.name: board.cells[(row, column)].rank for row in board.rows}
    assert groups["strong"] == "a" and groups["random"] == "c"
    assert groups["weak"] == groups["weak-twin"] == "b"
    assert (ranks["strong"].low, ranks["strong"].high) == (1, 1)
    assert {ranks["weak"].low, ranks["weak"].high, ranks["weak-twin"].low, ranks["weak-twin"].high} == {2, 3}
    assert [row.name for row in board.rows][0] == "strong" and board.win_rates[board.rows[0]] == 1.0
    strong = next(row for row in board.rows if row.name == "strong")
    assert board.cells[(strong, column)].against_random == "better"
    assert board.cells[(strong, column)].vs_random.mean == pytest.approx(2.0, abs=0.1)


def test_the_site_page_is_self_contained_escapes_labels_and_draws_each_boards_ranks(tmp_path):
    suite = tmp_path / "suite.yaml"
    explainers = "\n  - name: random\n    label: '<script>alert(1)</script>'\n  - name: saliency"
    suite.write_text(tiny_suite_text(explainers=explainers, metrics=METRICS))
    run(suite, tmp_path / "results", tmp_path / "cache")
    page = render_leaderboard(Leaderboard.build([tmp_path / "results"]), "html")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<svg") == 2 and "faithfulness board: mean rank" in page  # one figure per board
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "<link" not in page
    assert f"leaderboard format {LEADERBOARD_FORMAT}" in page


def test_cells_comparing_two_explainers_rank_no_explainer_and_stay_off_the_boards(tmp_path):
    suite = tmp_path / "suite.yaml"
    metrics = "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}\n  - name: feature-agreement"
    suite.write_text(tiny_suite_text(metrics=metrics))
    result = run(suite, tmp_path / "r", tmp_path / "cache")
    assert not result.failed
    leaderboard = Leaderboard.build([tmp_path / "r"])
    assert [board.family for board in leaderboard.boards] == ["faithfulness"]
