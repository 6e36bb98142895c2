"""Explainer disagreement (Krishna et al. 2022): the six measures against hand computations, the grid of
explainer pairs a metric with ``compares = "explainer"`` expands to, and a tiny run whose stored values
and report matrices are recomputed independently from the stored attributions."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math

import numpy as np
import pytest
from conftest import TINY_DATA, attribution, hand_bow, metric_input
from pydantic import ValidationError
from scipy.stats import spearmanr

from harness import Attribution, MetricOutput
from harness.errors import BenchError
from harness.grid import expand
from harness.plan import build_plan
from harness.registry import get_registry
from harness.report import Report, render
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.metrics.disagreement import (
    FeatureAgreement,
    PairwiseRankAgreement,
    RankAgreement,
    RankCorrelation,
    RankingAgreementParams,
    SignAgreement,
    SignedRankAgreement,
    TopKAgreementParams,
)
from tests.test_cli_errors import bench_main

# -- the six measures by hand ----------------------------------------------------------------------------
# Five features f0..f4 (the toy model reads "good bad the good bad" as five tokens, no special token):
#
#   A = [0.9, -0.5, 0.1, 0.5, -0.2]   |A| = [0.9, 0.5, 0.1, 0.5, 0.2]
#   B = [0.8,  0.5, -0.3, 0.05, 0.6]  |B| = [0.8, 0.5, 0.3, 0.05, 0.6]
#
# Rankings by |score|, ties in text order: A: f0, f1, f3, f4, f2 (f1 and f3 tie at 0.5: f1 first);
# B: f0, f4, f1, f2, f3. With k = 3: T_A = [f0, f1, f3], T_B = [f0, f4, f1].
TEXT = "good bad the good bad"
A = [0.9, -0.5, 0.1, 0.5, -0.2]
B = [0.8, 0.5, -0.3, 0.05, 0.6]


def value(metric, a: list[float], b: list[float], target_b: int = 1, text: str = TEXT) -> float:
    """The metric on one example explained as ``a`` by the cell's explainer and ``b`` by the reference."""
    [result] = output(metric, a, b, target_b, text).values
    return float(result)


def output(metric, a: list[float], b: list[float], target_b: int = 1, text: str = TEXT) -> MetricOutput:
    classifier = hand_bow()
    data = metric_input(classifier, [attribution(classifier, text, a)])
    data.reference = metric_input(classifier, [attribution(classifier, text, b, target=target_b)])
    return metric.compute(data)


def test_feature_agreement_by_hand():
    # T_A ∩ T_B = {f0, f1}: 2 / 3
    assert value(FeatureAgreement(TopKAgreementParams(k=3)), A, B) == pytest.approx(2 / 3)


def test_rank_agreement_by_hand_with_a_tie_ranked_in_text_order():
    # rank 1: f0 = f0 ✓; rank 2: f1 ≠ f4; rank 3: f3 ≠ f1 → 1 / 3. Were A's tie f1/f3 broken the other
    # way (f3 at rank 2, f1 at rank 3), rank 3 would match and give 2 / 3.
    assert value(RankAgreement(TopKAgreementParams(k=3)), A, B) == pytest.approx(1 / 3)


def test_sign_agreement_by_hand_counts_shared_features_of_the_same_sign():
    # shared {f0, f1}: f0 + and + ✓, f1 − (A) and + (B) ✗ → 1 / 3; feature agreement would be 2 / 3
    assert value(SignAgreement(TopKAgreementParams(k=3)), A, B) == pytest.approx(1 / 3)
    # with B's f1 negative too, both shared features agree: 2 / 3
    flipped = [0.8, -0.5, -0.3, 0.05, 0.6]
    assert value(SignAgreement(TopKAgreementParams(k=3)), A, flipped) == pytest.approx(2 / 3)


def test_signed_rank_agreement_by_hand():
    # same rank: only f0 (rank 1), same sign (+, +) → 1 / 3
    assert value(SignedRankAgreement(TopKAgreementParams(k=3)), A, B) == pytest.approx(1 / 3)
    # B with f0 negative: f0 still shares rank 1 (|−0.8| is the largest) but not the sign → 0
    negative = [-0.8, 0.5, -0.3, 0.05, 0.6]
    assert value(SignedRankAgreement(TopKAgreementParams(k=3)), A, negative) == 0.0
    assert value(RankAgreement(TopKAgreementParams(k=3)), A, negative) == pytest.approx(1 / 3)


def test_rank_correlation_by_hand_with_tied_magnitudes_sharing_their_mean_rank():
    # ranks of |A| (ascending, ties averaged): [5, 3.5, 1, 3.5, 2]; of |B|: [5, 3, 2, 1, 4]; both mean 3.
    # deviations: dA = [2, .5, −2, .5, −1], dB = [2, 0, −1, −2, 1]; Σ dA·dB = 4 + 0 + 2 − 1 − 1 = 4,
    # Σ dA² = 9.5, Σ dB² = 10 → ρ = 4 / √95
    expected = 4 / math.sqrt(95)
    assert value(RankCorrelation(RankingAgreementParams()), A, B) == pytest.approx(expected)
    assert expected == pytest.approx(spearmanr(np.abs(A), np.abs(B)).statistic)


def test_rank_correlation_over_the_union_of_the_top_k_by_hand():
    # F = T_A ∪ T_B (k = 3) = {f0, f1, f3, f4}: |A| on F = [.9, .5, .5, .2] → ranks [4, 2.5, 2.5, 1];
    # |B| on F = [.8, .5, .05, .6] → ranks [4, 2, 1, 3]; both mean 2.5; dA = [1.5, 0, 0, −1.5],
    # dB = [1.5, −.5, −1.5, .5]; Σ dA·dB = 2.25 − .75 = 1.5, Σ dA² = 4.5, Σ dB² = 5 → ρ = 1.5 / √22.5
    params = RankingAgreementParams(features="top-k", k=3)
    assert value(RankCorrelation(params), A, B) == pytest.approx(1.5 / math.sqrt(22.5))


def test_pairwise_rank_agreement_by_hand_a_tie_agrees_only_with_a_tie():
    # pairs (i<j), order of |A| vs |B|: (0,1) >,> ✓ (0,2) >,> ✓ (0,3) >,> ✓ (0,4) >,> ✓ (1,2) >,> ✓
    # (1,3) =,> ✗ (A's tie)  (1,4) >,< ✗  (2,3) <,> ✗  (2,4) <,< ✓  (3,4) >,< ✗  → 6 / 10
    assert value(PairwiseRankAgreement(RankingAgreementParams()), A, B) == pytest.approx(0.6)
    # a tie in both explanations agrees: with B's f3 at 0.5, f1 and f3 tie in B as in A, so (1,3) =,= ✓;
    # (2,3) becomes <,< ✓ too (|B_3| = .5 > .3); (3,4) stays >,< ✗ → 8 / 10
    tied = [0.8, 0.5, -0.3, 0.5, 0.6]
    assert value(PairwiseRankAgreement(RankingAgreementParams()), A, tied) == pytest.approx(0.8)
    # and only with a tie, whichever feature the other explanation puts first: the paper's indicator
    # 1[f_i more important than f_j] alone would count (tie, f1 first) as agreeing (0 = 0), not (tie, f0)
    pra = PairwiseRankAgreement(RankingAgreementParams())
    assert value(pra, [0.5, -0.5], [0.2, 0.7], text="good bad") == 0.0
    assert value(pra, [0.5, -0.5], [0.7, 0.2], text="good bad") == 0.0
    assert value(pra, [0.5, -0.5], [0.3, 0.3], text="good bad") == 1.0


def test_a_tie_at_the_top_k_boundary_is_broken_by_text_order_and_noted():
    # A ties f0 and f1 at |0.5|: text order puts f0 in its top 1; B's top 1 is f1 → 0, not 1
    a, b = [0.5, -0.5, 0.1, 0.0, 0.0], [0.1, 0.9, 0.5, 0.0, 0.0]
    result = output(FeatureAgreement(TopKAgreementParams(k=1)), a, b)
    assert list(result.values) == [0.0]
    assert any(
        "1 of 1 examples have equal |scores|" in note and "text order" in note for note in result.notes
    )
    # no tie where the list is cut (k = 2 cuts between 0.5 and 0.1 in A, 0.5 and 0.1 in B): no note
    assert not output(FeatureAgreement(TopKAgreementParams(k=2)), a, b).notes


def test_a_zero_score_has_the_sign_only_of_another_zero():
    # k = 2: T_A = [f0, f1], T_B = [f0, f1]; f1 is 0 in A, 0.4 in B (sign 0 vs +) → sign agreement 1/2
    a, b = [0.9, 0.0, 0.0, 0.0, 0.0], [0.9, 0.4, 0.1, 0.0, 0.0]
    assert value(SignAgreement(TopKAgreementParams(k=2)), a, b) == pytest.approx(0.5)
    assert value(SignAgreement(TopKAgreementParams(k=2)), a, [0.9, 0.0, 0.0, 0.0, 0.0]) == 1.0


def test_k_as_a_percentage_and_k_beyond_the_number_of_features():
    # 50 % of 5 features: ⌊2.5 + ½⌋ = 3, the k = 3 of the hand example
    percent = TopKAgreementParams(k_mode="percent", k=50)
    assert value(FeatureAgreement(percent), A, B) == pytest.approx(2 / 3)
    # k = 10 on 5 features is k = 5: the same explanation agrees fully, the two examples share all five
    assert value(FeatureAgreement(TopKAgreementParams(k=10)), A, A) == 1.0
    assert value(FeatureAgreement(TopKAgreementParams(k=10)), A, B) == 1.0
    assert value(RankAgreement(TopKAgreementParams(k=10)), A, B) == pytest.approx(1 / 5)  # only f0


def test_undefined_values_are_nan_with_a_note():
    constant = [0.3, -0.3, 0.3, 0.3, 0.3]  # one |score| for every feature: no ranking
    result = output(RankCorrelation(RankingAgreementParams()), A, constant)
    assert math.isnan(result.values[0]) and "no ranking" in result.notes[0]
    single = output(PairwiseRankAgreement(RankingAgreementParams()), [0.4], [0.2], text="good")
    assert math.isnan(single.values[0]) and "fewer than two" in single.notes[0]
    assert math.isnan(value(RankCorrelation(RankingAgreementParams()), [0.4], [0.2], text="good"))
    other_class = output(FeatureAgreement(TopKAgreementParams(k=3)), A, B, target_b=0)
    assert math.isnan(other_class.values[0]) and "different classes" in other_class.notes[0]


def test_every_measure_is_symmetric():
    rng = np.random.default_rng(0)
    metrics = [
        cls(TopKAgreementParams(k=2))
        for cls in (FeatureAgreement, RankAgreement, SignAgreement, SignedRankAgreement)
    ] + [cls(RankingAgreementParams()) for cls in (RankCorrelation, PairwiseRankAgreement)]
    for _ in range(20):
        a, b = (list(np.round(rng.normal(size=5), 1)) for _ in range(2))  # rounded: ties happen
        for metric in metrics:
            assert value(metric, a, b) == pytest.approx(value(metric, b, a), nan_ok=True), metric.name


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (TopKAgreementParams, {"k": 2.5}, "whole number"),
        (TopKAgreementParams, {"k_mode": "percent", "k": 150}, "percentage"),
        (RankingAgreementParams, {"k": 3}, "only with features: top-k"),
    ],
)
def test_bad_k_parameters_are_rejected(cls, params, message):
    with pytest.raises(ValidationError, match=message):
        cls(**params)


# -- the grid ------------------------------------------------------------------------------------------


def agreement_suite(
    tmp_path, metrics: str = "\n  - name: feature-agreement\n    params: {k: 2}", explainers: str = ""
):
    explainers = (
        explainers
        or """
  - name: random
  - name: saliency
    label: saliency
    params: {reduction: input_x_gradient}
  - name: occlusion"""
    )
    path = tmp_path / "agreement.yaml"
    path.write_text(f"""name: tiny-agreement
version: 1
device: cpu
batch_size: 4
datasets:
  - name: jsonl
    label: tiny
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    sample: 6
models:
  - name: bow
    params: {{dim: 8, max_epochs: 20}}
explainers:{explainers}
metrics:{metrics}
""")
    return path


EXPLAINERS = ("random", "saliency", "occlusion")


def test_each_gives_one_cell_per_ordered_pair_of_distinct_explainers(tmp_path):
    loaded = load_suite(agreement_suite(tmp_path), get_registry())
    cells = expand(loaded)
    pairs = [(cell.explainer.label, cell.metric.reference_explainer.label) for cell in cells]
    assert sorted(pairs) == sorted(itertools.permutations(EXPLAINERS, 2))  # 6 cells, no self-pair
    assert len({cell.id for cell in cells}) == 6
    for cell in cells:  # the reference explainer's identity, not its label, is in the cell's identity
        assert cell.identity["metric"]["reference_explainer"] == cell.metric.reference_explainer.identity
        assert "reference" not in cell.identity["metric"]["params"]
        assert cell.metric.label == f"feature-agreement(k=2) vs {cell.metric.reference_explainer.label}"
        assert cell.reference.explainer == cell.metric.reference_explainer
        assert cell.reference.explanation[:3] == cell.explanation[:3] and cell.reference.seed == cell.seed


def test_a_named_reference_compares_with_it_alone_sharing_the_cells_of_each(tmp_path):
    each = {cell.id for cell in expand(load_suite(agreement_suite(tmp_path), get_registry()))}
    named = "\n  - name: feature-agreement\n    params: {k: 2, reference: occlusion}"
    cells = expand(load_suite(agreement_suite(tmp_path, named), get_registry()))
    assert [(c.explainer.label, c.metric.reference_explainer.label) for c in cells] == [
        ("random", "occlusion"),
        ("saliency", "occlusion"),
    ]
    assert {cell.id for cell in cells} <= each  # same pair, same cell: the cache is shared


def test_the_plan_explains_each_explainer_once_and_scores_against_the_references_explanation(tmp_path):
    loaded = load_suite(agreement_suite(tmp_path), get_registry())
    plan = build_plan(loaded, expand(loaded))
    explains = plan.stage("explain")
    assert len(explains) == 3
    by_explainer = {task.explainer["name"]: task.id for task in explains}
    for task in plan.stage("score"):
        own, reference = task.inputs
        assert own != reference and {own, reference} <= set(by_explainer.values())


def test_a_reference_naming_no_explainer_is_a_one_line_error_naming_the_field(tmp_path, monkeypatch, capsys):
    path = agreement_suite(tmp_path, "\n  - name: rank-agreement\n    params: {reference: oclusion}")
    with pytest.raises(BenchError) as error:
        load_suite(path, get_registry())
    message = str(error.value)
    assert "\n" not in message
    assert "metrics[0].params.reference" in message and "'oclusion'" in message
    assert "did you mean 'occlusion'?" in message and "random, saliency, occlusion; or each" in message
    code, _, err = bench_main(monkeypatch, capsys, "validate", path)
    assert code == 2 and "metrics[0].params.reference" in err


def test_comparing_explainers_in_a_suite_of_one_explainer_is_an_error(tmp_path):
    path = agreement_suite(tmp_path, explainers="\n  - name: random")
    with pytest.raises(BenchError, match=r"metrics\[0\].params.reference: .* lists only one"):
        load_suite(path, get_registry())


# -- a tiny run, recomputed from its stored attributions ----------------------------------------------

ALL_SIX = """
  - name: feature-agreement
    params: {k: 2}
  - name: rank-agreement
    params: {k: 2}
  - name: sign-agreement
    params: {k: 2}
  - name: signed-rank-agreement
    params: {k: 2}
  - name: rank-correlation
  - name: pairwise-rank-agreement"""


def top(scores: list[float], k: int) -> list[int]:
    """Indices by |score| descending, ties in text order (Python's sort is stable)."""
    return sorted(range(len(scores)), key=lambda i: -abs(scores[i]))[: min(k, len(scores))]


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def recomputed(metric: str, a: list[float], b: list[float]) -> float:
    """Each measure written again from its definition, independently of the plugin."""
    ta, tb = top(a, 2), top(b, 2)
    k = len(ta)
    if metric == "feature-agreement":
        return len(set(ta) & set(tb)) / k
    if metric == "rank-agreement":
        return sum(x == y for x, y in zip(ta, tb, strict=True)) / k
    if metric == "sign-agreement":
        return sum(sign(a[f]) == sign(b[f]) for f in set(ta) & set(tb)) / k
    if metric == "signed-rank-agreement":
        return sum(x == y and sign(a[x]) == sign(b[x]) for x, y in zip(ta, tb, strict=True)) / k
    if metric == "rank-correlation":
        if len(a) < 2 or len(set(map(abs, a))) < 2 or len(set(map(abs, b))) < 2:
            return math.nan
        return spearmanr(np.abs(a), np.abs(b)).statistic
    pairs = list(itertools.combinations(range(len(a)), 2))
    if not pairs:
        return math.nan
    same = [sign(abs(a[i]) - abs(a[j])) == sign(abs(b[i]) - abs(b[j])) for i, j in pairs]
    return sum(same) / len(same)


@pytest.fixture(scope="module")
def agreement_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("agreement")
    loaded = load_suite(agreement_suite(tmp_path, ALL_SIX), get_registry())
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(loaded, options).run()
    return Store(tmp_path / "results"), result


def test_stored_values_equal_the_measures_recomputed_from_the_stored_attributions(agreement_run):
    store, result = agreement_run
    assert not result.failed and result.cells == 6 * 6
    fields = set(Attribution.__dataclass_fields__)
    scores = {}  # (explainer name, example id) -> its features' scores (every token is real here)
    for row in store.attributions(result.run_id):
        a = Attribution.from_dict({key: value for key, value in row.items() if key in fields})
        scores[(row["explainer"], a.example_id)] = [a.scores[i] for i in a.removable]
    records = list(store.records(result.run_id))
    assert len(records) == 6 * 6 * 6  # metrics × ordered pairs × examples
    for record in records:
        reference = record["metric_params"]["reference"]  # the label, here the explainer's name
        mine, theirs = (
            scores[(record["explainer"], record["example_id"])],
            scores[(reference, record["example_id"])],
        )
        expected = recomputed(record["metric"], mine, theirs)
        if math.isnan(expected):
            assert record["value"] is None
        else:
            assert record["value"] == pytest.approx(expected), (
                record["metric"],
                record["explainer"],
                reference,
            )


def test_the_report_shows_one_symmetric_explainer_matrix_per_metric(agreement_run):
    store, result = agreement_run
    report = Report.build(store, result.run_id)
    assert all(table.family != "agreement" for table in report.tables)  # matrices, not columns per pair
    assert [m.metric for m in report.matrices] == [
        "feature-agreement(k=2)", "rank-agreement(k=2)", "sign-agreement(k=2)", "signed-rank-agreement(k=2)",
        "rank-correlation", "pairwise-rank-agreement",
    ]  # fmt: skip
    means: dict[tuple[str, str, str], list[float]] = {}
    for record in store.records(result.run_id):
        if record["value"] is not None:
            key = (record["metric"], record["explainer"], record["metric_params"]["reference"])
            means.setdefault(key, []).append(record["value"])
    for matrix in report.matrices:
        assert (
            [row.label for row in matrix.rows]
            == [column.label for column in matrix.columns]
            == list(EXPLAINERS)
        )
        assert set(matrix.cells) == {(r, c) for r in matrix.rows for c in matrix.columns if r != c}
        name = matrix.metric.split("(")[0]
        for (row, column), summary in matrix.cells.items():
            assert summary.mean == pytest.approx(np.mean(means[(name, row.label, column.label)]))
            assert summary.mean == pytest.approx(matrix.cells[(column, row)].mean)  # symmetric measures
    [section] = [s for s in report.document().of_kind("matrix") if "rank-correlation" in s.title]
    [table] = section.tables
    assert [h.text for h in table.headers][1:] == list(EXPLAINERS)
    assert [[cell.text for cell in row][1:] for row in table.rows][0][0] == ""  # blank diagonal
    rank_correlation = report.matrices[4]
    summary = rank_correlation.cells[(rank_correlation.rows[0], rank_correlation.rows[2])]
    assert table.rows[0][3].text.startswith(f"{summary.mean:.3g} n={summary.n}")


def test_the_matrices_are_in_every_format(agreement_run):
    store, result = agreement_run
    report = Report.build(store, result.run_id)
    markdown = render(report, "md")
    assert "## agreement: feature-agreement(k=2) ↑ · tiny · bow(dim=8, max_epochs=20)" in markdown
    assert "| explainer · compared with → | random | saliency | occlusion |" in markdown
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    agreement = [row for row in rows if row["family"] == "agreement"]
    assert len(agreement) == 6 * 6
    assert {row["metric"] for row in agreement if row["explainer"] == "random"} >= {
        "rank-correlation vs saliency",
        "rank-correlation vs occlusion",
    }
    data = json.loads(render(report, "json"))
    matrices = data["explainer_matrices"]
    assert len(matrices) == 6 and matrices[0]["columns"] == list(EXPLAINERS)
    assert matrices[0]["cells"][0][0] is None and matrices[0]["cells"][0][1]["n"] == 6
