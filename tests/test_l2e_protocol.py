"""L2E's faithfulness protocol per formulation (Situ et al. 2021, §4.5, Tables 1, 2, 8, 9): a ranking
student learned the order of |teacher weight|, so it is compared with its teacher on the top words by
|score|; a sequence-labelling student learned signed labels, so on its positive and negative words.
The agreement metrics' ``order``, the declared score orders of students and metrics, and the
teacher-vs-student pairing that reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import attribution, metric_input, tiny_suite_text, values_of
from statsmodels.stats.multitest import multipletests

from harness.distillation import pair_students, teacher_ids
from harness.registry import get_registry
from harness.report import Report
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.explainers.l2e import L2E
from plugins.metrics.faithfulness import (
    DeltaLogOdds,
    MatchedDeltaLogOdds,
    PredictionAgreement,
    TeacherAgreement,
)

# The toy model (conftest.py): p(positive) = σ(2m), m the mean embedding of the kept words, good = 2,
# bad = −2. "good good bad": m = ⅔, ŷ = positive. K = 34 % of 3 words = 1 word (1.02 rounded).
TEXT = "good good bad"
SIGNED_TOP_IS_GOOD = [0.3, 0.2, -0.9]  # most positive: good₁; largest |score|: bad


def agreement(order: str | None, classifier, scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """prediction-agreement's value and its removal masks (row 0 the input, row 1 the kept words)."""
    params = PredictionAgreement.Params(percent=34, **({} if order is None else {"order": order}))
    metric = PredictionAgreement(params)
    data = metric_input(classifier, [attribution(classifier, TEXT, scores)])
    return values_of(metric, data), metric.removals(data)[0]


def test_prediction_agreement_signed_keeps_the_most_positive_word(classifier):
    value, masks = agreement("signed", classifier, SIGNED_TOP_IS_GOOD)
    # keeps good₁ (removes good₂ and bad): m = 2 → positive = ŷ
    assert masks[1].tolist() == [False, True, True]
    assert value.tolist() == [1.0]


def test_prediction_agreement_absolute_keeps_the_largest_magnitude_whatever_its_sign(classifier):
    value, masks = agreement("absolute", classifier, SIGNED_TOP_IS_GOOD)
    # keeps bad (|−0.9| is the largest): m = −2 → negative ≠ ŷ
    assert masks[1].tolist() == [True, True, False]
    assert value.tolist() == [0.0]


def test_prediction_agreement_orders_by_signed_score_by_default(classifier):
    assert PredictionAgreement.Params().order == "signed" == TeacherAgreement.Params().order
    default, default_masks = agreement(None, classifier, SIGNED_TOP_IS_GOOD)
    signed, signed_masks = agreement("signed", classifier, SIGNED_TOP_IS_GOOD)
    assert default.tolist() == signed.tolist() and (default_masks == signed_masks).all()


@pytest.mark.parametrize(("order", "expected"), [("signed", 0.0), ("absolute", 1.0), (None, 0.0)])
def test_teacher_agreement_takes_both_explanations_in_the_same_order(classifier, order, expected):
    # A ranking-like student: all scores positive, bad ranked first (its top 1 is bad either way:
    # m = −2, negative). The teacher's most positive word is good₁ (→ positive), its largest |score|
    # bad (→ negative). Signed: student's bad vs teacher's good₁, disagree; absolute: bad vs bad, agree.
    student = attribution(classifier, TEXT, [0.3, 0.2, 0.9])
    teacher = attribution(classifier, TEXT, [0.2, 0.1, -0.8])
    params = TeacherAgreement.Params(percent=34, **({} if order is None else {"order": order}))
    data = metric_input(classifier, [student])
    data.reference = metric_input(classifier, [teacher])
    assert values_of(TeacherAgreement(params), data).tolist() == [expected]


def test_metrics_declare_the_score_order_they_select_in():
    for metric in (DeltaLogOdds, MatchedDeltaLogOdds):
        orders = {
            s: metric.score_order_for(metric.Params(select=s)) for s in ("positive", "negative", "absolute")
        }
        assert orders == {"positive": "signed", "negative": "signed", "absolute": "absolute"}
    for metric in (PredictionAgreement, TeacherAgreement):
        assert metric.score_order_for(metric.Params()) == "signed"
        assert metric.score_order_for(metric.Params(order="absolute")) == "absolute"


def test_a_student_declares_the_order_its_formulation_learned():
    def order(formulation: str) -> str:
        return L2E.score_order_for(L2E.Params(teacher={"name": "occlusion"}, formulation=formulation))

    assert order("ranking") == "absolute"  # the order of |teacher weight| (softplus scores, no sign)
    assert order("sequence-labeling") == "signed"


# -- the teacher-vs-student pairing ------------------------------------------------------------------


def _fit(student: str, formulation: str) -> dict:
    """A ``Store.fits`` row of an L2E student distilled from occlusion, as the runner writes it."""
    params = L2E.Params(teacher={"name": "occlusion"}, formulation=formulation)
    return {
        "explainer": "l2e", "explainer_params": params.model_dump_json(), "explainer_id": student,
        "teacher": json.dumps({"name": "occlusion", "params": "{}"}), "teacher_id": "T",
    }  # fmt: skip


def _rows(metric: str, params: dict, explainer: str, values) -> list[dict]:
    """Report rows (``Store.report_rows``) of one cell."""
    full = {"delta-log-odds": DeltaLogOdds, "prediction-agreement": PredictionAgreement}[metric].Params(
        **params
    )
    metric_id = f"{metric} {json.dumps(params)}"
    return [
        {"dataset": "d", "model": "m", "variant": "default", "metric": metric, "metric_label": metric_id,
         "metric_params": full.model_dump_json(), "direction": "higher", "explainer_label": explainer,
         "seed": 0, "example_id": str(i), "value": float(v), "unit": str(i), "dataset_id": "d",
         "model_id": "m", "metric_id": metric_id, "explainer_id": explainer}
        for i, v in enumerate(values)
    ]  # fmt: skip


COLUMNS = [
    ("delta-log-odds", {"select": "positive"}),
    ("delta-log-odds", {"select": "negative"}),
    ("delta-log-odds", {"select": "absolute"}),
    ("prediction-agreement", {"order": "signed"}),
    ("prediction-agreement", {"order": "absolute"}),
]


def test_students_are_paired_with_their_teacher_only_in_the_order_they_learned():
    rng = np.random.default_rng(0)
    records = [
        row
        for metric, params in COLUMNS
        for explainer in ("T", "ranking", "labelling")
        for row in _rows(metric, params, explainer, rng.normal(size=12))
    ]
    fits = [_fit("ranking", "ranking"), _fit("labelling", "sequence-labeling")]
    pairings = pair_students(records, teacher_ids(fits))
    paired = {(p.student, p.metric) for p in pairings}
    assert paired == {
        ("ranking", 'delta-log-odds {"select": "absolute"}'),
        ("ranking", 'prediction-agreement {"order": "absolute"}'),
        ("labelling", 'delta-log-odds {"select": "positive"}'),
        ("labelling", 'delta-log-odds {"select": "negative"}'),
        ("labelling", 'prediction-agreement {"order": "signed"}'),
    }
    # Holm over these five pairings only: the pairings left out are not counted as comparisons
    _, adjusted, _, _ = multipletests([p.comparison.p_value for p in pairings], method="holm")
    assert [p.comparison.p_adjusted for p in pairings] == pytest.approx(adjusted)


def test_a_column_or_student_declaring_no_order_is_paired_on_every_column():
    # Rows without metric parameters (a store written before report rows carried them): every column
    # of the ranking student is paired, as before; so is a student given without a declared order.
    records = [
        {**row, "metric_params": None}
        for metric, params in COLUMNS[:3]
        for explainer in ("T", "ranking")
        for row in _rows(metric, params, explainer, range(5))
    ]
    assert len(pair_students(records, teacher_ids([_fit("ranking", "ranking")]))) == 3
    records = [row for m, params in COLUMNS[:3] for e in ("T", "S") for row in _rows(m, params, e, range(5))]
    assert len(pair_students(records, {"S": ("T", "occlusion")})) == 3


# -- end to end: a run, its store and its report -------------------------------------------------------

STUDENTS = """
  - name: occlusion
  - name: l2e
    label: "student-{formulation}"
    params:
      teacher: {name: occlusion}
      train_documents: 30
      validation_documents: 8
      max_epochs: 2
      d_model: 16
      blocks: 1
      heads: 2
      grid: {formulation: [sequence-labeling, ranking]}"""
DELTA_LOG_ODDS = """
  - name: delta-log-odds
    params: {grid: {select: [positive, absolute]}}"""


def test_a_ranking_student_is_compared_with_its_teacher_on_its_top_words_by_magnitude(tmp_path):
    """The report's teacher-vs-student table pairs the ranking student on ``select: absolute`` only
    (the paper's Table 9), never on its "positive" words, which are its top |w| words while its
    teacher's are its most positive ones; the sequence-labelling student on ``positive`` only."""
    path = tmp_path / "suite.yaml"
    path.write_text(tiny_suite_text(explainers=STUDENTS, metrics=DELTA_LOG_ODDS))
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(load_suite(path, get_registry()), options).run()
    assert not result.failed, result.failed
    report = Report.build(Store(tmp_path / "results"), result.run_id)
    paired = {(p.student, p.metric) for p in report.pairings}
    assert paired == {
        ("student-ranking", "delta-log-odds(select=absolute)"),
        ("student-sequence-labeling", "delta-log-odds(select=positive)"),
    }, paired


# -- the shipped suite -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(
    not (SHARED / "sst2" / "sentences_test.jsonl").is_file()
    or not (SHARED / "ag_news" / "test_full.jsonl").is_file(),
    reason="../shared/data (SST-2 sentences, AG News test_full) is absent: it sits beside the repo",
)


@pytest.fixture
def l2e_suite(monkeypatch):
    monkeypatch.chdir(REPO)  # the suite's data paths are relative to the repository
    return load_suite(REPO / "suites" / "l2e.yaml", get_registry())


@needs_shared_data
def test_the_l2e_suite_reads_the_papers_splits(l2e_suite):
    """SST-2 at sentence level with its standard splits (the paper's Table 6: 6,920 / 872 / 1,821), AG
    News carved from its 7,600 original test documents, CoLA's out-of-domain dev set as the test set."""
    sizes = {}
    for entry in l2e_suite.entries["datasets"]:
        data = entry.cls(entry.params).load()
        sizes[entry.label] = (len(data.train), len(data.validation), len(data.test))
    assert sizes["sst2"] == (6920, 872, 1821)
    assert sum(sizes["ag-news"]) == 7600 and sizes["ag-news"][0] >= 5000
    assert sizes["cola"][2] == 516


def _orders(entries) -> dict[str, set[str]]:
    """Metric name → the score orders its entries declare (metrics declaring none left out)."""
    orders: dict[str, set[str]] = {}
    for entry in entries:
        order = entry.cls.score_order_for(entry.params)
        if order is not None:
            orders.setdefault(entry.name, set()).add(order)
    return orders


@needs_shared_data
def test_every_student_of_the_l2e_suite_has_each_faithfulness_metric_in_the_order_it_learned(l2e_suite):
    orders = _orders(l2e_suite.entries["metrics"])
    assert set(orders) == {
        "prediction-agreement",
        "teacher-agreement",
        "delta-log-odds",
        "matched-delta-log-odds",
    }
    students = [e for e in l2e_suite.entries["explainers"] if e.teacher is not None]
    assert {L2E.score_order_for(s.params) for s in students} == {"signed", "absolute"}
    for student in students:
        learned = L2E.score_order_for(student.params)
        assert all(learned in declared for declared in orders.values()), (student.label, orders)


@needs_shared_data
def test_the_l2e_claims_read_each_student_in_the_order_it_learned(l2e_suite):
    """A claim about a student on a faithfulness metric names the parameters of the student's order
    (a ranking student's Table 1 and Table 9 claims: order / select absolute)."""
    students = {e.label: e for e in l2e_suite.entries["explainers"] if e.teacher is not None}
    metrics = {e.name: e.cls for e in l2e_suite.entries["metrics"]}
    checked = 0
    for claim in l2e_suite.suite.claims:
        named = {claim.where.get("explainer"), claim.above_value, claim.below_value} & set(students)
        metric = metrics.get(claim.metric)
        order = None if metric is None else metric.score_order_for(metric.Params(**claim.params))
        if not named or order is None:
            continue
        assert {L2E.score_order_for(students[label].params) for label in named} == {order}, claim.source
        checked += 1
    assert checked >= 60
