"""Comprehensiveness and sufficiency against values computed by hand on the toy model of conftest.py:
p(positive) = σ(2m), m the mean of the attended tokens' one-dimensional embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import attribution, metric_input, sigmoid, values_of

import harness.forward
from harness import Example, MetricInput, TextDataset
from harness.perturb import top_count
from plugins.metrics.eraser import Comprehensiveness, Sufficiency
from plugins.metrics.runtime import Runtime, SpeedUp

# "the good good bad": m = (0 + 2 + 2 − 2)/4 = 0.5, p = σ(1). Scores rank good₁ > good₂ > the > bad.
TEXT, SCORES = "the good good bad", [0.1, 0.9, 0.8, -0.5]


def test_top_count_rounds_half_up_with_at_least_one_token():
    assert [top_count(k, 4) for k in (1, 5, 10, 20, 50)] == [1, 1, 1, 1, 2]
    assert [top_count(k, 128) for k in (1, 5, 10, 20, 50)] == [1, 6, 13, 26, 64]
    assert top_count(100, 7) == 7 and top_count(50, 5) == 3


def test_comprehensiveness_by_hand_with_deletion(classifier):
    values = values_of(
        Comprehensiveness(Comprehensiveness.Params(bins=(25, 50), masking="delete")),
        metric_input(classifier, [attribution(classifier, TEXT, SCORES)]),
    )
    # 25 % = 1 token: "the good bad" → m = 0 → p = ½;  50 % = 2 tokens: "the bad" → m = −1 → p = σ(−2)
    expected = ((sigmoid(1) - 0.5) + (sigmoid(1) - sigmoid(-2))) / 2
    assert values[0] == pytest.approx(expected, abs=1e-6)


def test_comprehensiveness_by_hand_with_mask_token(classifier):
    values = values_of(
        Comprehensiveness(Comprehensiveness.Params(bins=(25, 50), masking="mask")),
        metric_input(classifier, [attribution(classifier, TEXT, SCORES)]),
    )
    # [MASK] has embedding 0 but still counts in the mean: m = 0/4 → ½, then (0+0+0−2)/4 → σ(−1)
    expected = ((sigmoid(1) - 0.5) + (sigmoid(1) - sigmoid(-1))) / 2
    assert values[0] == pytest.approx(expected, abs=1e-6)


def test_comprehensiveness_unk_masking_uses_the_unk_embedding(classifier):
    values = values_of(
        Comprehensiveness(Comprehensiveness.Params(bins=(25,), masking="unk")),
        metric_input(classifier, [attribution(classifier, TEXT, SCORES)]),
    )
    # [UNK] = −1: "the [UNK] good bad" → m = (0 − 1 + 2 − 2)/4 = −¼ → σ(−½)
    assert values[0] == pytest.approx(sigmoid(1) - sigmoid(-0.5), abs=1e-6)


def test_sufficiency_by_hand(classifier):
    values = values_of(
        Sufficiency(Sufficiency.Params(bins=(25, 50, 75), masking="delete")),
        metric_input(classifier, [attribution(classifier, TEXT, SCORES)]),
    )
    # keep "good" → σ(4); keep "good good" → σ(4); keep "the good good" (text order) → m = 4/3 → σ(8/3)
    expected = ((sigmoid(1) - sigmoid(4)) * 2 + (sigmoid(1) - sigmoid(8 / 3))) / 3
    assert values[0] == pytest.approx(expected, abs=1e-6)


def test_sufficiency_with_pad_masking_keeps_the_sequence_length(classifier):
    values = values_of(
        Sufficiency(Sufficiency.Params(bins=(25,), masking="pad")),
        metric_input(classifier, [attribution(classifier, TEXT, SCORES)]),
    )
    # pad embedding is 0 and attended: "[PAD] good [PAD] [PAD]" → m = 2/4 → σ(1): nothing lost
    assert values[0] == pytest.approx(0.0, abs=1e-6)


def test_default_eraser_bins_on_a_short_text(classifier):
    values = values_of(Comprehensiveness(), metric_input(classifier, [attribution(classifier, TEXT, SCORES)]))
    # bins 1, 5, 10, 20 % of 4 tokens → 1 token each; 50 % → 2 tokens (deletion is the default)
    expected = (4 * (sigmoid(1) - 0.5) + (sigmoid(1) - sigmoid(-2))) / 5
    assert values[0] == pytest.approx(expected, abs=1e-6)


def test_many_examples_in_one_batched_call_match_one_at_a_time(classifier):
    texts = ["the good good bad", "bad bad good", "good", "the the bad good good good the"]
    rng = np.random.default_rng(0)
    attributions = [attribution(classifier, t, rng.normal(size=len(t.split())).tolist()) for t in texts]
    metric = Comprehensiveness(Comprehensiveness.Params(bins=(10, 30, 60)))
    together = values_of(metric, metric_input(classifier, attributions))
    alone = [values_of(metric, metric_input(classifier, [a]))[0] for a in attributions]
    np.testing.assert_allclose(together, alone, atol=1e-7)


def test_ties_in_scores_keep_text_order(classifier):
    # all scores equal: the first token ("bad") is removed first
    values = values_of(
        Comprehensiveness(Comprehensiveness.Params(bins=(50,))),
        metric_input(classifier, [attribution(classifier, "bad good", [1.0, 1.0])]),
    )
    # p(full) = σ(0) = ½ (target positive), removing "bad" leaves "good" → σ(4)
    assert values[0] == pytest.approx(0.5 - sigmoid(4), abs=1e-6)


def test_bins_must_be_percentages():
    with pytest.raises(ValueError, match="percentages"):
        Comprehensiveness.Params(bins=(0, 10))


def test_runtime_reports_the_explainer_seconds_without_loading_the_model(classifier):
    attributions = [attribution(classifier, TEXT, SCORES, seconds=s) for s in (0.5, 0.25)]

    def no_model():
        raise AssertionError("runtime must not load the model")

    data = MetricInput(attributions, {}, TextDataset("toy", ("a", "b"), (), (), ()), load_classifier=no_model)
    output = Runtime().compute(data)
    np.testing.assert_array_equal(output.values, [0.5, 0.25])
    assert output.units is None  # the timed batch is unknown: each example is its own unit
    assert (Runtime.direction, Runtime.family) == ("lower", "cost")


def timed(classifier, text: str, seconds: float, batch: int):
    a = attribution(classifier, text, [0.0] * len(text.split()), seconds=seconds)
    a.batch = batch
    return a


def test_runtime_values_of_one_timed_batch_share_one_unit(classifier):
    # batch 0 explained "good" and "bad" in 1 s together, batch 1 "the" alone in 0.25 s
    attributions = [
        timed(classifier, "good", 0.5, 0),
        timed(classifier, "bad", 0.5, 0),
        timed(classifier, "the", 0.25, 1),
    ]
    output = Runtime().compute(metric_input(classifier, attributions))
    np.testing.assert_array_equal(output.values, [0.5, 0.5, 0.25])
    assert list(output.units) == ["batch 0", "batch 0", "batch 1"]


def speed_up(classifier, students, teachers):
    data = metric_input(classifier, students)
    data.reference = metric_input(classifier, teachers)
    return SpeedUp().compute(data)


def test_speed_up_values_share_the_students_timed_batch(classifier):
    students = [
        timed(classifier, "good", 0.5, 0),
        timed(classifier, "bad", 0.5, 0),
        timed(classifier, "the", 1.0, 1),
    ]
    teachers = [
        timed(classifier, "the", 3.0, 1),
        timed(classifier, "good", 2.0, 0),
        timed(classifier, "bad", 2.0, 0),
    ]
    output = speed_up(classifier, students, teachers)
    np.testing.assert_array_equal(output.values, [4.0, 4.0, 3.0])
    assert list(output.units) == ["batch 0", "batch 0", "batch 1"]


def test_speed_up_values_linked_through_a_teacher_batch_share_one_unit(classifier):
    # the teacher timed "bad" and "the" together: the students' batches 0 and 1 are no longer independent
    students = [timed(classifier, t, 1.0, b) for t, b in (("good", 0), ("bad", 0), ("the", 1), ("a", 2))]
    teachers = [timed(classifier, t, 1.0, b) for t, b in (("good", 0), ("bad", 1), ("the", 1), ("a", 2))]
    assert list(speed_up(classifier, students, teachers).units) == ["batch 0"] * 3 + ["batch 2"]
    teachers[0].batch = None  # a timing without its batch: no units
    assert speed_up(classifier, students, teachers).units is None


def test_the_engine_reuses_the_full_input_log_probabilities_stored_with_the_attribution(classifier):
    from harness.perturb import evaluate

    a = attribution(classifier, TEXT, SCORES)
    a.log_probabilities = [math.log(0.25), math.log(0.75)]  # not the model's σ(1): proves reuse
    removals = [np.array([[False] * 4, [False, True, False, False], [False] * 4])]
    [log_p] = evaluate(classifier, [a], removals, masking="delete", batch_size=4)
    np.testing.assert_allclose(np.exp(log_p[[0, 2], 1]), [0.75, 0.75])
    assert np.exp(log_p[1, 1]) == pytest.approx(0.5, abs=1e-6)  # the perturbed row is computed


def test_the_engine_materialises_a_bounded_number_of_rows_and_chunking_leaves_the_values_alone(
    classifier, monkeypatch
):
    import harness.perturb as perturb

    texts = ["good good bad the", "bad the a", "the good a bad good", "a", "good bad"]
    attributions = [
        attribution(classifier, text, [0.0] * len(classifier.encode([Example("x", text, 1)]).tokens[0]))
        for text in texts
    ]
    # Leave-one-out: one row per real token and the unperturbed one (what switching point also needs).
    removals = []
    for a in attributions:
        masks = np.zeros((len(a.removable) + 1, len(a.input_ids)), dtype=bool)
        for row, position in enumerate(a.removable, start=1):
            masks[row, position] = True
        removals.append(masks)
    sizes = []
    forward = harness.forward._forward
    monkeypatch.setattr(
        harness.forward,
        "_forward",
        lambda c, seqs, types, b, **k: sizes.append(len(seqs)) or forward(c, seqs, types, b, **k),
    )
    whole = perturb.evaluate(classifier, attributions, removals, masking="delete", batch_size=3)
    # One chunk when the bound allows it, holding each distinct input once: perturbations of two
    # examples that come out as the same ids run once.
    distinct = {
        tuple(np.asarray(a.input_ids)[~mask])
        for a, masks in zip(attributions, removals, strict=True)
        for mask in masks
        if mask.any() or a.log_probabilities is None
    }
    assert sizes == [len(distinct)]
    sizes.clear()
    harness.forward.forward_service(classifier).clear()  # else every row would be read from memory
    chunked = perturb.evaluate(classifier, attributions, removals, masking="delete", batch_size=3, max_rows=6)
    assert max(sizes) <= 6 and sum(sizes) == len(distinct) and len(sizes) > 1
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
