"""Every faithfulness metric against values computed by hand from the toy model's formula
(conftest.py: p(positive) = σ(2m), m = mean embedding; good = 2, bad = −2, the = 0, [PAD] = [MASK] = 0,
[UNK] = −1). For this bag-of-words model every token is a word, so token and word units coincide."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import attribution, metric_input, sigmoid, values_of

from plugins.metrics.faithfulness import (
    AOPC,
    DeltaLogOdds,
    LogOdds,
    LooCorrelation,
    MatchedDeltaLogOdds,
    MorfLerf,
    PostHocAccuracy,
    PredictionAgreement,
    SwitchingPoint,
    UnchangedPredictions,
)

# "the good good bad": m = ½, p(pos) = σ(1); ranking good₁ (0.9) > good₂ (0.8) > the (0.1) > bad (−0.5)
TEXT, SCORES = "the good good bad", [0.1, 0.9, 0.8, -0.5]


def run(metric, classifier, *attributions):
    output = metric.compute(metric_input(classifier, list(attributions)))
    return values_of(metric, metric_input(classifier, list(attributions))), getattr(output, "curves", None)


def test_aopc_by_hand(classifier):
    values, curves = run(AOPC(AOPC.Params(steps=3)), classifier, attribution(classifier, TEXT, SCORES))
    # remove good₁ → "the good bad" m=0; + good₂ → "the bad" m=−1; + the → "bad" m=−2
    p = [sigmoid(1), 0.5, sigmoid(-2), sigmoid(-4)]
    assert values[0] == pytest.approx(sum(p[0] - q for q in p[1:]) / 4, abs=1e-6)
    assert curves[0]["x"] == [0, 1, 2, 3]
    np.testing.assert_allclose(curves[0]["y"], p, atol=1e-6)


def test_aopc_with_more_steps_than_words_removes_everything(classifier):
    values, _ = run(AOPC(AOPC.Params(steps=5)), classifier, attribution(classifier, TEXT, SCORES))
    # u = 4 and 5 delete all four words: an empty input, m = 0, p = ½
    p = [sigmoid(1), 0.5, sigmoid(-2), sigmoid(-4), 0.5, 0.5]
    assert values[0] == pytest.approx(sum(p[0] - q for q in p[1:]) / 6, abs=1e-6)


def test_post_hoc_accuracy_by_hand(classifier):
    right = attribution(classifier, TEXT, SCORES)
    # "bad bad good": m = −2/3, predicted negative; this explanation points at "good"
    wrong = attribution(classifier, "bad bad good", [0.0, 0.1, 0.9], target=0)
    values, curves = run(PostHocAccuracy(PostHocAccuracy.Params(top=2)), classifier, right, wrong)
    # keep "good" → positive (= ŷ); keep "good good" → positive. Keep "good" → positive ≠ negative;
    # keep "bad good" (text order) → m = 0, a tie that argmax breaks to class 0 = negative = ŷ
    assert values.tolist() == [1.0, 1.0]
    assert curves[0]["y"] == [1.0, 1.0] and curves[1]["y"] == [0.0, 1.0]


def test_morf_lerf_by_hand(classifier):
    metric = MorfLerf(MorfLerf.Params(percents=(0, 50, 100)))
    values, curves = run(metric, classifier, attribution(classifier, TEXT, SCORES))
    morf = [sigmoid(1), sigmoid(-2), 0.5]  # remove good₁ good₂, then everything
    lerf = [sigmoid(1), sigmoid(4), 0.5]  # remove bad, the → "good good", then everything
    area = 0.5 * ((lerf[1] - morf[1]) / 2) * 2  # trapezoid over x = 0, ½, 1 with zero ends
    normaliser = sigmoid(1) - 0.5  # mean p(full) − mean p(fully degraded), one example
    assert values[0] == pytest.approx(area / normaliser, abs=1e-6)
    assert metric.compute(metric_input(classifier, [attribution(classifier, TEXT, SCORES)])).notes == ()
    np.testing.assert_allclose(curves[0]["morf"], morf, atol=1e-6)
    np.testing.assert_allclose(curves[0]["lerf"], lerf, atol=1e-6)


def test_morf_lerf_normaliser_is_shared_by_the_examples(classifier):
    a = attribution(classifier, TEXT, SCORES)
    b = attribution(classifier, "good good", [0.5, 0.4])
    metric = MorfLerf(MorfLerf.Params(percents=(0, 50, 100)))
    together, _ = run(metric, classifier, a, b)
    alone_a, _ = run(metric, classifier, a)
    normaliser_a = sigmoid(1) - 0.5
    normaliser_ab = (sigmoid(1) + sigmoid(4)) / 2 - 0.5
    assert together[0] == pytest.approx(alone_a[0] * normaliser_a / normaliser_ab, abs=1e-6)


def test_delta_log_odds_positive_and_negative_selection(classifier):
    a = attribution(classifier, TEXT, SCORES)
    positive, _ = run(DeltaLogOdds(DeltaLogOdds.Params(percent=50)), classifier, a)
    # mask good₁ good₂ → m = −½, p = σ(−1); log-odds(σ(z)) = z: Δ = 1 − (−1)
    assert positive[0] == pytest.approx(2.0, abs=1e-5)
    negative, _ = run(DeltaLogOdds(DeltaLogOdds.Params(percent=50, select="negative")), classifier, a)
    # only "bad" is negative: mask it → m = 1, p = σ(2): Δ = 1 − 2
    assert negative[0] == pytest.approx(-1.0, abs=1e-5)
    absolute, _ = run(DeltaLogOdds(DeltaLogOdds.Params(percent=75, select="absolute")), classifier, a)
    # |scores|: good₁ .9, good₂ .8, bad .5 → mask 3 → "the" only, m = 0: Δ = 1 − 0
    assert absolute[0] == pytest.approx(1.0, abs=1e-5)


def test_morf_lerf_with_a_negative_normaliser_is_undefined_and_says_why(classifier):
    # explained class negative (ŷ), [UNK] = −1: "bad the the the the" m = −0.4, p(ŷ|x) = σ(0.8);
    # fully degraded "[UNK] × 5" m = −1, p(ŷ) = σ(2) > σ(0.8): the normaliser σ(0.8) − σ(2) < 0
    weak = attribution(classifier, "bad the the the the", [0.5, 0.1, 0.2, 0.3, 0.4], target=0)
    metric = MorfLerf(MorfLerf.Params(percents=(0, 50, 100), masking="unk"))
    output = metric.compute(metric_input(classifier, [weak]))
    assert np.isnan(output.values).all()
    assert list(output.notes) == [
        f"undefined: mean p(ŷ|x) {sigmoid(0.8):.4g} is below mean p(ŷ|fully degraded) {sigmoid(2):.4g}, "
        "so the degradation score's normaliser is negative"
    ]
    # the normaliser is the cell's: with three confident examples ("bad bad", p(ŷ|x) = σ(4), degraded
    # σ(2)) the mean p(ŷ|x) (σ(0.8) + 3σ(4)) / 4 ≈ 0.91 exceeds σ(2) ≈ 0.88, and every value is defined
    strong = attribution(classifier, "bad bad", [0.5, 0.4], target=0)
    together = metric.compute(metric_input(classifier, [weak, strong, strong, strong]))
    assert np.isfinite(together.values).all() and together.notes == ()


def test_morf_lerf_with_a_zero_normaliser_is_undefined_and_says_why(classifier):
    # "the": p(ŷ|x) = ½ and deleting it leaves an empty input, p = ½: nothing to normalise by
    output = MorfLerf().compute(metric_input(classifier, [attribution(classifier, "the", [1.0])]))
    assert np.isnan(output.values).all()
    assert list(output.notes) == [
        "undefined: mean p(ŷ|x) 0.5 equals mean p(ŷ|fully degraded) 0.5, so the degradation score's "
        "normaliser is zero"
    ]


def test_delta_log_odds_of_a_document_without_a_unit_of_the_selected_sign_is_undefined(classifier):
    unsigned = attribution(classifier, TEXT, [0.1, 0.9, 0.8, 0.5])
    signed = attribution(classifier, TEXT, SCORES)
    negative = DeltaLogOdds(DeltaLogOdds.Params(percent=50, select="negative"))
    assert np.isnan(run(negative, classifier, unsigned)[0]).all()  # scores without a sign: no negative words
    # a document's value does not depend on the others of its cell
    np.testing.assert_allclose(run(negative, classifier, unsigned, signed)[0], [np.nan, -1.0], atol=1e-5)
    np.testing.assert_allclose(run(negative, classifier, signed, unsigned)[0], [-1.0, np.nan], atol=1e-5)


def matched(select: str, student: list, teacher: list, classifier) -> tuple[np.ndarray, np.ndarray]:
    """matched-delta-log-odds (K = 50 %) of students against teachers (given in reverse order: pairs
    are made by example id, not position): (values, reference_values)."""
    data = metric_input(classifier, student)
    data.reference = metric_input(classifier, teacher[::-1])
    output = MatchedDeltaLogOdds(MatchedDeltaLogOdds.Params(percent=50, select=select)).compute(data)
    return np.asarray(output.values), np.asarray(output.reference_values)


# "the good good bad" (m = ½, log-odds 1; [MASK] = 0). Student SCORES: positive the .1, good₁ .9, good₂ .8;
# negative bad −.5. The teacher's: positive the .7; negative good₁ −.2, good₂ −.3, bad −.1.
TEACHER = [0.7, -0.2, -0.3, -0.1]


@pytest.mark.parametrize(
    ("select", "student", "teacher"),
    [
        # n = min(50 % of 4 = 2, student 3 positive, teacher 1) = 1. Student masks good₁: m = 0, Δ = 1;
        # teacher masks the (embedding 0 like [MASK]): m = ½, Δ = 0
        ("positive", 1.0, 0.0),
        # n = min(2, student 1 negative, teacher 3) = 1. Student masks bad: m = 1, Δ = 1 − 2 = −1;
        # teacher masks its most negative, good₂: m = 0, Δ = 1
        ("negative", -1.0, 1.0),
        # n = 2 (every unit counts). Student masks good₁ good₂: m = −½, Δ = 2; teacher masks
        # the (.7) and good₂ (.3): m = 0, Δ = 1
        ("absolute", 2.0, 1.0),
    ],
)
def test_matched_delta_log_odds_masks_as_many_units_for_student_and_teacher(
    classifier, select, student, teacher
):
    values, reference = matched(
        select, [attribution(classifier, TEXT, SCORES)], [attribution(classifier, TEXT, TEACHER)], classifier
    )
    assert values == pytest.approx([student], abs=1e-5)
    assert reference == pytest.approx([teacher], abs=1e-5)


def test_matched_delta_log_odds_is_undefined_when_either_explanation_has_no_unit_of_the_sign(classifier):
    # document 2: the teacher's scores are all positive, so n = 0 for select: negative; document 1 as above
    student = [attribution(classifier, TEXT, SCORES), attribution(classifier, "good bad", [0.5, -0.5])]
    teacher = [attribution(classifier, TEXT, TEACHER), attribution(classifier, "good bad", [0.2, 0.1])]
    values, reference = matched("negative", student, teacher, classifier)
    np.testing.assert_allclose(values, [-1.0, np.nan], atol=1e-5)
    np.testing.assert_allclose(reference, [1.0, np.nan], atol=1e-5)


def test_matched_delta_log_odds_compares_with_the_teacher_in_the_direction_of_delta_log_odds():
    assert MatchedDeltaLogOdds.compares == "teacher"
    for select in ("positive", "negative", "absolute"):
        params = MatchedDeltaLogOdds.Params(select=select)
        assert MatchedDeltaLogOdds.direction_for(params) == DeltaLogOdds.direction_for(params)
    assert MatchedDeltaLogOdds.Params() == DeltaLogOdds.Params()


def test_matched_delta_log_odds_is_registered():
    from harness.registry import get_registry

    assert get_registry().get("metric", "matched-delta-log-odds").cls is MatchedDeltaLogOdds


@pytest.mark.parametrize(
    ("select", "direction"), [("positive", "higher"), ("absolute", "higher"), ("negative", "lower")]
)
def test_delta_log_odds_of_negative_words_is_better_lower(select, direction):
    # L2E Table 8 "Negative Δlog-odds ↓": masking evidence against ŷ should raise the log-odds
    assert DeltaLogOdds.direction_for(DeltaLogOdds.Params(select=select)) == direction
    assert PredictionAgreement.direction_for(PredictionAgreement.Params()) == PredictionAgreement.direction


def test_delta_log_odds_is_exact_for_saturated_probabilities(classifier):
    text = " ".join(["good"] * 20)  # m = 2: p = σ(4); the complement is not 0
    a = attribution(classifier, text + " the", [1.0] * 20 + [0.0])
    values, _ = run(
        DeltaLogOdds(DeltaLogOdds.Params(percent=100, select="absolute", masking="delete")), classifier, a
    )
    # delete everything: empty input, p = ½, log-odds 0; full input m = 40/21
    assert values[0] == pytest.approx(2 * 40 / 21, abs=1e-5)


def test_prediction_agreement_by_hand(classifier):
    right = attribution(classifier, TEXT, SCORES)
    wrong = attribution(classifier, "bad bad good", [0.0, 0.1, 0.9], target=0)
    values, _ = run(PredictionAgreement(PredictionAgreement.Params(percent=25)), classifier, right, wrong)
    # keep 1 of 4 ("good") → positive = ŷ; keep 1 of 3 (round(0.75) = 1: "good") → positive ≠ negative
    assert values.tolist() == [1.0, 0.0]


def test_log_odds_by_hand(classifier):
    values, _ = run(LogOdds(LogOdds.Params(percent=50)), classifier, attribution(classifier, TEXT, SCORES))
    # pad (embedding 0, attended) in place of good₁ good₂ → m = −½
    assert values[0] == pytest.approx(math.log(sigmoid(-1) / sigmoid(1)), abs=1e-6)


def test_unchanged_predictions_curve_by_hand(classifier):
    survives = attribution(classifier, "good good good bad", [0.1, 0.2, 0.3, 0.9])
    metric = UnchangedPredictions(UnchangedPredictions.Params(percents=(25, 50, 75, 100), masking="unk"))
    values, curves = run(metric, classifier, survives)
    # unk (−1) replaces bad → m = 5/4 ✓; + good₃ → ½ ✓; + good₂ → −¼ ✗; all → −1 ✗
    assert curves[0]["y"] == [1.0, 1.0, 0.0, 0.0]
    assert values[0] == 0.5


def test_switching_point_by_hand(classifier):
    flips = attribution(classifier, "good good good bad", [0.9, 0.8, 0.7, 0.1])
    never = attribution(classifier, "bad bad", [0.2, 0.1], target=0)
    values, _ = run(SwitchingPoint(), classifier, flips, never)
    # unk: [U g g b] m = ¼ (same), [U U g b] m = −½ (switched after 2 of 4); "bad bad" never switches
    assert values.tolist() == [0.5, 1.0]


def kendall_tau_b(x, y) -> float:
    """τ-b from its definition: (C − D) / sqrt((n0 − n1)(n0 − n2))."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    return (concordant - discordant) / math.sqrt(
        (concordant + discordant + ties_x) * (concordant + discordant + ties_y)
    )


def test_loo_correlation_by_hand(classifier):
    values, _ = run(LooCorrelation(), classifier, attribution(classifier, TEXT, SCORES))
    p = sigmoid(1)
    # delete the → m = 2/3; delete a good → m = 0; delete bad → m = 4/3
    drops = [p - sigmoid(4 / 3), p - 0.5, p - 0.5, p - sigmoid(8 / 3)]
    assert values[0] == pytest.approx(kendall_tau_b(SCORES, drops), abs=1e-9)


def test_loo_correlation_is_undefined_for_a_single_token(classifier):
    values, _ = run(LooCorrelation(), classifier, attribution(classifier, "good", [1.0]))
    assert math.isnan(values[0])


@pytest.mark.parametrize("metric_cls", [AOPC, DeltaLogOdds, LogOdds, UnchangedPredictions, PostHocAccuracy, MorfLerf])
def test_word_granularity_is_the_default_of_word_level_papers(metric_cls):
    assert metric_cls.Params().granularity == "word"


def test_word_units_remove_every_sub_token(classifier):
    """On the MiniLM tokenizer a word can be several tokens: the word unit removes all of them."""
    from harness import Attribution

    a = Attribution(
        "x", 1, 1, 0.0, [101, 7, 8, 9, 102], None, ["[CLS]", "un", "##like", "ly", "[SEP]"],
        [(0, 0), (0, 2), (2, 6), (7, 9), (0, 0)], [None, 0, 0, 1, None], [-1, 0, 0, 0, -1],
        [0.0, 0.2, 0.6, 0.5, 0.0], 0.0,
    )  # fmt: skip
    words = a.ranking("word")
    assert [unit.tolist() for unit in words] == [[3], [1, 2]]  # mean(.2, .6) = .4 < .5
    assert [unit.tolist() for unit in a.ranking("token")] == [[2], [3], [1]]
