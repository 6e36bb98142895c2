"""The reproduction table: a paper's claims stated in a suite, validated against its names, and judged on a
stored run's cells (values checked by hand on synthetic report rows, then end to end on a tiny run)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_suite_text

from harness.errors import BenchError
from harness.registry import get_registry
from harness.report import Report
from harness.report.leaderboard import Leaderboard
from harness.reproduction import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    UNTESTABLE,
    judge_claims,
    paired_differences,
)
from harness.runner import Runner, RunOptions
from harness.stats import Sample, summarize
from harness.store import Store
from harness.suite import Claim, Suite, load_suite

# -- judging, on synthetic report rows -------------------------------------------------------------------


def rows(variant: str, values: list[float], explainer: str = "saliency", k: float = 25.0) -> list[dict]:
    return [
        {
            "dataset_id": "d", "model_id": "m", "variant": variant, "explainer_id": explainer,
            "metric_id": f"jaccard{k}", "dataset": "sst2", "model": "minilm-head", "explainer": explainer,
            "explainer_label": explainer, "metric": "jaccard", "metric_label": f"jaccard(k={k:g})",
            "metric_params": json.dumps({"k": k, "reference": "default"}), "seed": 0,
            "example_id": f"e{index}", "value": value, "unit": f"e{index}",
        }
        for index, value in enumerate(values)
    ]  # fmt: skip


INIT2 = [0.6, 0.7, 0.8, 0.5]
UNTRAINED = [0.55, 0.6, 0.75, 0.5]  # differences 0.05, 0.1, 0.05, 0: mean 0.05, every resample in [0, 0.1]
RECORDS = rows("init:2", INIT2) + rows("untrained", UNTRAINED)


def claim(**fields) -> Claim:
    base = {"paper": "Zafar et al. 2021", "source": "Table 2", "claim": "c", "metric": "jaccard"}
    return Claim.model_validate({**base, **fields})


def two_sided(criterion: str, margin: float | None = None, reverse: bool = False, **extra) -> Claim:
    sides = ({"variant": "init:2"}, {"variant": "untrained"})
    above, below = sides[::-1] if reverse else sides
    return claim(above=above, below=below, reproduced_if=criterion, margin=margin, **extra)


def test_a_two_sided_claim_shows_both_means_and_the_paired_difference():
    [result] = judge_claims([two_sided("direction")], RECORDS)
    assert result.ours.mean == pytest.approx(0.65)
    assert result.ours_below.mean == pytest.approx(0.6)
    assert result.difference.mean == pytest.approx(0.05)
    assert result.difference.n_units == 4
    assert (result.above, result.below) == ("init:2", "untrained")
    assert result.cells == "sst2 · minilm-head · saliency · jaccard(k=25)"
    assert result.verdict == REPRODUCED


def test_direction_is_the_sign_of_the_mean_difference():
    [result] = judge_claims([two_sided("direction", reverse=True)], RECORDS)
    assert result.difference.mean == pytest.approx(-0.05)
    assert result.verdict == NOT_REPRODUCED


def test_within_and_beyond_are_judged_on_the_interval():
    interval = summarize(
        paired_differences(
            *[Sample.of({(0, f"e{i}"): v for i, v in enumerate(s)}) for s in (INIT2, UNTRAINED)]
        )
    )
    assert 0 <= interval.ci_low < 0.06 < interval.ci_high <= 0.1  # a resample's mean lies in [0, 0.1]
    within, close, beyond, far = judge_claims(
        [
            two_sided("within", 0.1),
            two_sided("within", 0.06),
            two_sided("beyond", 0.1),
            two_sided("beyond", 0.2),
        ],
        RECORDS,
    )
    assert within.verdict == REPRODUCED  # the whole interval within ±0.1
    assert close.verdict == INCONCLUSIVE  # the interval straddles 0.06
    assert (close.difference.ci_low, close.difference.ci_high) == (interval.ci_low, interval.ci_high)
    assert beyond.verdict == NOT_REPRODUCED  # no resample's difference exceeds 0.1
    assert far.verdict == NOT_REPRODUCED


def test_near_compares_one_cell_with_the_papers_value():
    near, far = judge_claims(
        [
            claim(where={"variant": "init:2"}, paper_value=0.65, reproduced_if="near", margin=0.2),
            claim(where={"variant": "init:2"}, paper_value=0.2, reproduced_if="near", margin=0.1),
        ],
        RECORDS,
    )
    assert near.ours.mean == pytest.approx(0.65) and near.ours_below is None
    # values in [0.5, 0.8], so is every resample's mean: inside [0.45, 0.85]
    assert near.verdict == REPRODUCED
    assert far.verdict == NOT_REPRODUCED  # [0.5, 0.8] is outside [0.1, 0.3]


def test_significant_is_holm_corrected_over_the_runs_significant_claims():
    ten_above = rows("init:2", [0.5 + 0.01 * i for i in range(10)])
    ten_below = rows("untrained", [0.4] * 10)  # ten positive differences: one-sided p = 2^-10
    holds, reversed_ = judge_claims(
        [two_sided("significant"), two_sided("significant", reverse=True)], ten_above + ten_below
    )
    assert holds.comparison.p_value == pytest.approx(2**-10)
    assert holds.comparison.p_adjusted == pytest.approx(2 * 2**-10)  # Holm over the two rows
    assert holds.verdict == REPRODUCED
    assert reversed_.verdict == NOT_REPRODUCED


def test_metric_parameters_select_the_cells_and_numbers_match_as_numbers():
    records = RECORDS + rows("init:2", [0.1] * 4, k=10.0) + rows("untrained", [0.9] * 4, k=10.0)
    at_25, at_10, *every = judge_claims(
        [
            two_sided("direction", params={"k": 25}),
            two_sided("direction", params={"k": 10}),
            two_sided("direction"),
        ],
        records,
    )
    assert at_25.verdict == REPRODUCED and at_25.metric == "jaccard(k=25)"
    assert at_10.verdict == NOT_REPRODUCED and at_10.metric == "jaccard(k=10)"
    # without params: a row per metric entry, in the run's order
    assert [(row.metric, row.verdict) for row in every] == [
        ("jaccard(k=25)", REPRODUCED),
        ("jaccard(k=10)", NOT_REPRODUCED),
    ]


def test_a_star_side_gives_a_row_per_other_value():
    records = (
        rows("default", [0.2] * 4, "ldav")
        + rows("default", [0.5] * 4, "lime")
        + rows("default", [0.6] * 4, "random")
    )
    results = judge_claims(
        [claim(above={"explainer": "*"}, below={"explainer": "ldav"}, reproduced_if="direction")], records
    )
    assert [(r.above, r.below, r.verdict) for r in results] == [
        ("lime", "ldav", REPRODUCED),
        ("random", "ldav", REPRODUCED),
    ]


def test_untestable_claims_say_why():
    stated, unmatched = judge_claims(
        [
            Claim(
                paper="p", source="Table 4, DBpedia", claim="c", untestable="DBpedia is not on this machine"
            ),
            two_sided("direction", params={"k": 50}),
        ],
        RECORDS,
    )
    assert stated.verdict == UNTESTABLE and stated.reason == "DBpedia is not on this machine"
    assert unmatched.verdict == UNTESTABLE and unmatched.reason.startswith("no cell of this run matches")


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"reproduced_if": "within", "above": {"variant": "a"}, "below": {"variant": "b"}},
            "within needs a margin",
        ),
        ({"reproduced_if": "near", "margin": 0.1}, "near needs paper_value"),
        ({"reproduced_if": "direction"}, "give above and below"),
        ({"reproduced_if": "direction", "above": {"variant": "a"}, "below": {"explainer": "b"}}, "same axis"),
        ({"reproduced_if": "direction", "untestable": "x"}, "untestable claim names no metric"),
    ],
)
def test_inconsistent_claims_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        claim(**fields)


def test_a_suite_without_claims_hashes_as_before_claims_existed():
    suite = Suite.model_validate(
        {
            "name": "s", "version": "1", "datasets": [{"name": "jsonl"}], "models": [{"name": "bow"}],
            "explainers": [{"name": "random"}], "metrics": [{"name": "runtime"}],
        }
    )  # fmt: skip
    data = suite.model_dump(mode="json")
    del data["claims"]
    assert suite.canonical_hash() == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# -- end to end: a tiny run, its report and its leaderboard ------------------------------------------------

CLAIMS = """claims:
  - paper: Tiny et al. 2026
    source: Table 1, tiny
    claim: saliency is more comprehensive than random
    metric: comprehensiveness
    params: {bins: [10, 50]}
    above: {explainer: saliency}
    below: {explainer: random}
    paper_value: {above: 0.3, below: 0.1}
    reproduced_if: direction
  - paper: Tiny et al. 2026
    source: Table 1, random
    claim: random's comprehensiveness is about 0
    metric: comprehensiveness
    where: {explainer: random, dataset: tiny}
    paper_value: 0.0
    reproduced_if: near
    margin: 5
  - paper: Tiny et al. 2026
    source: Table 3, DBpedia
    claim: the same on DBpedia
    untestable: DBpedia is not in ../shared/data
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("claims")
    path = tmp_path / "suite.yaml"
    path.write_text(tiny_suite_text(extra=CLAIMS))
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(load_suite(path, get_registry()), options).run()
    assert not result.failed
    return tmp_path / "results", result.run_id


def test_the_report_carries_the_reproduction_table(stored):
    results, run_id = stored
    report = Report.build(Store(results), run_id)
    [section] = report.document().of_kind("reproductions")
    assert section.title == "reproduction: Tiny et al. 2026"
    [table] = section.tables
    verdicts = [row[-2].text for row in table.rows]
    assert len(verdicts) == 3 and verdicts[2] == UNTESTABLE
    assert verdicts[1] == REPRODUCED  # comprehensiveness lies in [-1, 1], within 5 of 0
    assert "0.3 vs 0.1" in [cell.text for cell in table.rows[0]]
    assert "reproduction: Tiny et al. 2026" in report.to_markdown()
    claims = report.to_json()["reproductions"]["claims"]
    assert [c["verdict"] for c in claims] == verdicts
    assert claims[0]["difference"]["mean"] == pytest.approx(
        claims[0]["ours"]["mean"] - claims[0]["ours_below"]["mean"]
    )


def test_the_leaderboard_carries_each_runs_reproduction_table(stored):
    results, run_id = stored
    board = Leaderboard.build([results])
    titles = [s.title for s in board.document().of_kind("reproductions")]
    assert titles == [f"reproduction: Tiny et al. 2026 (suite tiny, run {run_id})"]
    assert len(board.to_json()["reproductions"][0]["claims"]) == 3


@pytest.mark.parametrize(
    "edit, where",
    [
        (("above: {explainer: saliency}", "above: {explainer: salincy}"), "claims[0].above.explainer"),
        (("params: {bins: [10, 50]}", "params: {bins: [10, 20]}"), "claims[0].params"),
        (("where: {explainer: random, dataset: tiny}", "where: {dataset: tinny}"), "claims[1].where.dataset"),
        (("metric: comprehensiveness\n    where", "metric: sufficiencyy\n    where"), "claims[1].metric"),
    ],
)
def test_validation_checks_every_name_a_claim_gives(tmp_path, edit, where):
    path = tmp_path / "suite.yaml"
    path.write_text(tiny_suite_text(extra=CLAIMS.replace(*edit)))
    with pytest.raises(BenchError, match=r"suite.yaml:\d+: " + re.escape(where) + ":"):
        load_suite(path, get_registry())


def test_accuracy_claims_read_the_trained_models_per_seed():
    def model(label: str, seed: int, accuracy: float) -> dict:
        return {
            "dataset_id": "d", "model_id": label, "variant": "default", "dataset": "ag-news", "model": label,
            "seed": seed, "test_accuracy": accuracy, "n_test": 400,
        }  # fmt: skip

    models = [model("bilstm", s, a) for s, a in enumerate([0.80, 0.82, 0.78])]
    models += [
        model("bilstm-ldav", s, a) for s, a in enumerate([0.79, 0.82, 0.76])
    ]  # differences 0.01, 0, 0.02
    keeps, near = judge_claims(
        [
            claim(
                metric="test-accuracy", above={"model": "bilstm"}, below={"model": "bilstm-ldav"},
                reproduced_if="within", margin=0.03,
            ),
            claim(metric="test-accuracy", where={"model": "bilstm"}, paper_value=0.9, reproduced_if="near", margin=0.05),
        ],
        [],
        models,
    )  # fmt: skip
    assert keeps.ours.mean == pytest.approx(0.8) and keeps.ours_below.mean == pytest.approx(0.79)
    assert keeps.difference.mean == pytest.approx(0.01) and keeps.difference.n_units == 3  # seeds
    assert keeps.verdict == REPRODUCED  # every resample of {0.01, 0, 0.02} lies within ±0.03
    assert near.verdict == NOT_REPRODUCED  # [0.78, 0.82] is outside [0.85, 0.95]
    assert near.metric == "test accuracy (n=400)"


def test_an_accuracy_claim_names_no_explainer(tmp_path):
    extra = (
        CLAIMS
        + """  - paper: Tiny et al. 2026
    source: Table 2
    claim: accuracy
    metric: test-accuracy
    where: {explainer: random}
    paper_value: 0.9
    reproduced_if: near
    margin: 0.1
"""
    )
    path = tmp_path / "suite.yaml"
    path.write_text(tiny_suite_text(extra=extra))
    with pytest.raises(BenchError, match=r"claims\[3\]: test-accuracy is a model's"):
        load_suite(path, get_registry())


def test_bench_report_prints_only_the_reproduction_table(stored):
    results, _ = stored
    command = [sys.executable, "-m", "harness.cli", "report", "--results", str(results), "--format", "md"]
    shown = subprocess.run([*command, "--section", "reproductions"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "## reproduction: Tiny et al. 2026" in shown.stdout
    assert "| Table 3, DBpedia | the same on DBpedia |" in shown.stdout
    assert "comprehensiveness ↑" not in shown.stdout  # no family table
    wrong = subprocess.run([*command, "--section", "reproduction"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "--section: no section kind 'reproduction'" in wrong.stderr


def test_a_claim_on_a_teacher_reads_the_values_its_students_cell_stores_beside_its_own():
    """matched Δlog-odds has cells for students only; each holds the teacher's value under the same
    protocol (reference_value). A claim student vs teacher pairs each student with its own."""
    from harness.distillation import Teacher

    def student(name: str, values: list[float], teacher_values: list[float]) -> list[dict]:
        result = rows("default", values, name)
        for row, reference in zip(result, teacher_values, strict=True):
            row.update(metric="matched-delta-log-odds", metric_label="matched", metric_id="matched")
            row["reference_value"] = reference
        return result

    records = student("L2E-seq", [1.0, 2.0, 3.0], [1.5, 2.5, 3.0])  # differences -0.5, -0.5, 0
    records += student("L2E-rank", [0.0, 0.0, 0.0], [9.0, 9.0, 9.0])
    records += rows("default", [5.0, 5.0, 5.0], "occlusion")  # the teacher's own cells, of another metric
    teachers = {"L2E-seq": Teacher("occlusion", "occlusion"), "L2E-rank": Teacher("occlusion", "occlusion")}
    wanted = claim(
        metric="matched-delta-log-odds", above={"explainer": "L2E-seq"}, below={"explainer": "occlusion"},
        reproduced_if="within", margin=0.6,
    )  # fmt: skip
    [result] = judge_claims([wanted], records, teachers=teachers)
    assert (result.above, result.below) == ("L2E-seq", "occlusion")
    assert result.ours.mean == pytest.approx(2.0) and result.ours_below.mean == pytest.approx(7 / 3)
    assert result.difference.mean == pytest.approx(-1 / 3)
    assert result.verdict == REPRODUCED  # every resample of {-0.5, -0.5, 0} lies within ±0.6
    [reversed_] = judge_claims(
        [wanted.model_copy(update={"above": {"explainer": "occlusion"}, "below": {"explainer": "L2E-seq"}})],
        records,
        teachers=teachers,
    )
    assert reversed_.difference.mean == pytest.approx(1 / 3)
    [without] = judge_claims([wanted], records)  # no teachers known: the teacher has no cell
    assert without.verdict == UNTESTABLE


def test_the_readmes_claims_example_is_valid():
    """The README's example of ``claims:`` parses as claims (the names it gives are illustrative)."""
    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("**Reproductions: a paper's claims as data.**", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    claims = [Claim.model_validate(item) for item in yaml.safe_load(block)["claims"]]
    assert [c.reproduced_if for c in claims] == ["within", "within", None]
    assert claims[1].metric == "test-accuracy" and claims[2].untestable
