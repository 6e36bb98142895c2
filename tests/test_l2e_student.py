"""The L2E student g_φ: discretisation, ranking loss, label conditioning, and distillation of a toy teacher.

Expected values are computed by hand from the definitions in Situ et al. (2021), §3 and §4.3.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness.attribution import LABEL_VALUES, discretise
from plugins.explainers._l2e_student import (
    StudentBatch,
    StudentNetwork,
    distillation_loss,
    pairwise_ranking_loss,
    ranking_pair_counts,
    scores_and_labels,
    train_student,
)

INPUT_DIM = 16
VOCABULARY = 30
KEYWORD = 0


def small_network(formulation: str, seed: int = 0) -> StudentNetwork:
    torch.manual_seed(seed)
    return StudentNetwork(
        INPUT_DIM, 2, formulation, d_model=32, blocks=2, heads=2, feedforward=64, dropout=0.1
    ).eval()


# --- discretisation -------------------------------------------------------------------------------------


def test_discretise_thresholds_at_the_document_means_of_positive_and_negative_weights():
    # Positives 0.6, 0.2, 0.1: mean 0.3, so 0.6 → high (4), 0.2 and 0.1 → low (3).
    # Negatives -0.1, -0.5: mean -0.3, so -0.5 → high negative (0), -0.1 → low negative (1); 0.0 → neutral (2).
    weights = torch.tensor([[0.6, 0.2, 0.0, -0.1, -0.5, 0.1]])
    mask = torch.ones(1, 6, dtype=torch.bool)
    assert discretise(weights, mask).tolist() == [[4, 3, 2, 1, 0, 3]]


def test_discretise_ignores_masked_positions_in_labels_and_thresholds():
    # Masked-in positives 0.4, 0.2: mean 0.3 (the masked 5.0 would raise it to 1.87 and make 0.4 low).
    # Masked-in negatives: -0.2 alone, mean -0.2, so -0.2 → high negative (0).
    weights = torch.tensor([[0.4, 5.0, 0.2, -0.2, -9.0]])
    mask = torch.tensor([[True, False, True, True, False]])
    assert discretise(weights, mask).tolist() == [[4, -100, 3, 0, -100]]


def test_discretise_without_negative_weights_labels_only_positive_and_neutral():
    # Positives 0.3, 0.1: mean 0.2, so 0.3 → 4, 0.1 → 3; zeros → 2; thresholds are per row, so the
    # first row's negatives do not matter here.
    weights = torch.tensor([[-1.0, -3.0, 1.0, 0.0], [0.3, 0.0, 0.1, 0.0]])
    mask = torch.ones(2, 4, dtype=torch.bool)
    # Row 0: negatives mean -2 → -1.0 low (1), -3.0 high (0); the lone positive 1.0 is its own mean → 4.
    assert discretise(weights, mask).tolist() == [[1, 0, 4, 2], [4, 2, 3, 2]]


# --- ranking loss ---------------------------------------------------------------------------------------


def hand_ranking_loss() -> float:
    # v = [2, 0, 1], |w| = [0.1, 0.9, 0.5].
    # (0,1): k = 1 → −log(e^0 / (e^2 + e^0)); (0,2): k = 2 → −log(e^1 / (e^2 + e^1));
    # (1,2): k = 1 → −log(e^0 / (e^0 + e^1)).
    e = math.exp
    return -math.log(e(0) / (e(2) + e(0))) - math.log(e(1) / (e(2) + e(1))) - math.log(e(0) / (e(0) + e(1)))


def test_pairwise_ranking_loss_matches_the_paper_formula():
    scores = torch.tensor([[2.0, 0.0, 1.0]])
    weights = torch.tensor([[0.1, -0.9, 0.5]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss = pairwise_ranking_loss(scores, weights, mask)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(hand_ranking_loss(), rel=1e-6)
    assert ranking_pair_counts(weights, mask).tolist() == [3]


def test_pairwise_ranking_loss_ignores_masked_tokens():
    # A fourth, masked token with the largest |w| and any score adds no pair.
    scores = torch.tensor([[2.0, 0.0, 1.0, -7.0]])
    weights = torch.tensor([[0.1, -0.9, 0.5, 3.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert pairwise_ranking_loss(scores, weights, mask).item() == pytest.approx(hand_ranking_loss(), rel=1e-6)
    assert ranking_pair_counts(weights, mask).tolist() == [3]


def test_pairwise_ranking_loss_skips_pairs_of_equal_magnitude():
    # |0.5| = |−0.5|: no order, no term; the pair with 0.2 counts twice: −log σ(0 − 1) each = 2·log(1 + e).
    scores = torch.tensor([[0.0, 0.0, 1.0]])
    weights = torch.tensor([[0.5, -0.5, 0.2]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert ranking_pair_counts(weights, mask).tolist() == [2]
    assert pairwise_ranking_loss(scores, weights, mask).item() == pytest.approx(2 * math.log(1 + math.e))


def test_pairwise_ranking_loss_is_lower_for_scores_ordered_like_the_magnitudes():
    weights = torch.tensor([[0.1, -0.9, 0.5], [0.1, -0.9, 0.5]])
    scores = torch.tensor([[0.0, 2.0, 1.0], [2.0, 0.0, 1.0]])  # ordered like |w|, then reversed
    mask = torch.ones(2, 3, dtype=torch.bool)
    agreeing, reversed_ = pairwise_ranking_loss(scores, weights, mask).tolist()
    assert agreeing < reversed_


# --- outputs --------------------------------------------------------------------------------------------


def test_scores_and_labels_for_sequence_labeling_are_expected_value_and_most_probable_label():
    # p = [.05, .05, .1, .2, .6]: E = −2·.05 − 1·.05 + 0 + 1·.2 + 2·.6 = 1.25, argmax class 4 → label 2.
    # p = [.5, .3, .1, .05, .05]: E = −1 − .3 + 0 + .05 + .1 = −1.15, argmax class 0 → label −2.
    # p = [.1, .2, .4, .2, .1]: E = −.2 − .2 + 0 + .2 + .2 = 0, argmax class 2 → label 0.
    probabilities = torch.tensor(
        [[[0.05, 0.05, 0.1, 0.2, 0.6], [0.5, 0.3, 0.1, 0.05, 0.05], [0.1, 0.2, 0.4, 0.2, 0.1]]]
    )
    scores, labels = scores_and_labels(probabilities.log() + 3.0, "sequence-labeling")
    assert scores[0].tolist() == pytest.approx([1.25, -1.15, 0.0], abs=1e-6)
    assert labels.dtype == torch.long
    assert labels.tolist() == [[2, -2, 0]]


def test_scores_and_labels_for_ranking_are_positive_in_the_students_order():
    output = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    scores, labels = scores_and_labels(output, "ranking")
    # softplus(x) = log(1 + e^x)
    expected = [math.log(1 + math.exp(x)) for x in (0.3, -1.0, 2.0)]
    assert scores[0].tolist() == pytest.approx(expected, rel=1e-12)
    assert scores.argsort(descending=True).tolist() == [[2, 0, 1]]
    assert labels is None


@pytest.mark.parametrize("formulation", ["ranking", "sequence-labeling"])
def test_network_output_shapes(formulation):
    network = small_network(formulation)
    output = network(torch.randn(3, 7, INPUT_DIM), torch.ones(3, 7), torch.tensor([0, 1, 0]))
    assert output.shape == ((3, 7) if formulation == "ranking" else (3, 7, len(LABEL_VALUES)))


def test_padding_does_not_change_outputs_at_real_positions():
    network = small_network("sequence-labeling")
    features = torch.randn(1, 4, INPUT_DIM)
    predicted = torch.tensor([1])
    alone = network(features, torch.ones(1, 4), predicted)
    # The same row padded to 9 positions, with two different contents at the padded positions: the end
    # label sits after the 4th token in both, and the padding is never attended to.
    attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 0]])
    for padding in (torch.zeros(1, 5, INPUT_DIM), 100 * torch.randn(1, 5, INPUT_DIM)):
        padded = network(torch.cat([features, padding], dim=1), attention_mask, predicted)
        torch.testing.assert_close(padded[:, :4], alone, atol=1e-5, rtol=1e-5)


def test_predicted_label_conditions_the_output():
    network = small_network("ranking")
    features = torch.randn(2, 5, INPUT_DIM)
    attention_mask = torch.ones(2, 5)
    for_class_0 = network(features, attention_mask, torch.tensor([0, 0]))
    for_class_1 = network(features, attention_mask, torch.tensor([1, 1]))
    assert (for_class_0 - for_class_1).abs().max() > 1e-3


# --- training -------------------------------------------------------------------------------------------


def toy_documents(count: int, generator: torch.Generator) -> list[tuple[list[int], int]]:
    """Documents of 6–12 token ids; 70 % hold the keyword once. Each gets a random predicted class."""
    documents = []
    for _ in range(count):
        length = int(torch.randint(6, 13, (1,), generator=generator))
        ids = torch.randint(1, VOCABULARY, (length,), generator=generator).tolist()
        if torch.rand(1, generator=generator).item() < 0.7:
            ids[int(torch.randint(0, length, (1,), generator=generator))] = KEYWORD
        documents.append((ids, int(torch.randint(0, 2, (1,), generator=generator))))
    return documents


def toy_batch(documents: list[tuple[list[int], int]], table: torch.Tensor) -> StudentBatch:
    """The toy teacher: weight +1 on the keyword when the predicted class is 1, −1 when it is 0, else 0."""
    length = max(len(ids) for ids, _ in documents)
    ids = torch.zeros(len(documents), length, dtype=torch.long)
    attention_mask = torch.zeros(len(documents), length, dtype=torch.long)
    for row, (tokens, _) in enumerate(documents):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        attention_mask[row, : len(tokens)] = 1
    predicted = torch.tensor([label for _, label in documents])
    sign = (2 * predicted - 1).float()[:, None]
    weights = torch.where((ids == KEYWORD) & (attention_mask == 1), sign, torch.zeros(()))
    return StudentBatch(table[ids], attention_mask, attention_mask.bool(), predicted, weights)


def toy_batches(documents: list[tuple[list[int], int]], table: torch.Tensor, size: int) -> list[StudentBatch]:
    return [toy_batch(documents[start : start + size], table) for start in range(0, len(documents), size)]


@pytest.mark.parametrize("formulation", ["ranking", "sequence-labeling"])
def test_student_learns_to_reproduce_a_keyword_teacher(formulation):
    generator = torch.Generator().manual_seed(7)
    table = torch.randn(VOCABULARY, INPUT_DIM, generator=generator)
    train = toy_batches(toy_documents(200, generator), table, 16)
    validation = toy_batches(toy_documents(40, generator), table, 20)
    held_out = toy_batch(toy_documents(50, generator), table)
    network = small_network(formulation, seed=1)
    report = train_student(
        network,
        train,
        validation,
        formulation=formulation,
        max_epochs=30,
        patience=5,
        learning_rate=3e-3,
        seed=0,
    )
    with torch.no_grad():
        output = network(held_out.features, held_out.attention_mask, held_out.predicted)
    scores, labels = scores_and_labels(output, formulation)
    has_keyword = held_out.weights.abs().sum(1) > 0
    rows = has_keyword.nonzero().flatten().tolist()
    assert len(rows) >= 25, report
    correct = 0
    for row in rows:
        length = int(held_out.attention_mask[row].sum())
        position = int(held_out.weights[row].abs().argmax())
        sign = 1 if held_out.predicted[row] == 1 else -1
        if formulation == "ranking":
            correct += int(scores[row, :length].argmax()) == position
        else:
            correct += labels[row, position].item() == 2 * sign and scores[row, position].item() * sign > 0
    assert correct / len(rows) >= 0.9, (correct, len(rows), report)


def test_train_student_reports_and_restores_the_best_epoch():
    generator = torch.Generator().manual_seed(3)
    table = torch.randn(VOCABULARY, INPUT_DIM, generator=generator)
    train = toy_batches(toy_documents(32, generator), table, 16)
    validation = toy_batches(toy_documents(16, generator), table, 16)
    network = small_network("ranking").train()
    seen = []
    report = train_student(
        network,
        train,
        validation,
        formulation="ranking",
        max_epochs=4,
        patience=4,
        learning_rate=1e-3,
        seed=0,
        on_epoch=lambda epoch, loss: seen.append((epoch, loss)),
    )
    assert set(report) == {"epochs", "best_epoch", "best_validation_loss", "train_loss", "seconds"}
    assert 1 <= report["best_epoch"] <= report["epochs"] == len(seen)
    assert report["best_validation_loss"] == min(loss for _, loss in seen)
    assert not network.training
    # The restored weights are the best epoch's: their validation loss is the reported one.
    with torch.no_grad():
        restored = sum(
            distillation_loss(
                network(batch.features, batch.attention_mask, batch.predicted),
                batch.weights,
                batch.mask,
                "ranking",
            ).item()
            for batch in validation
        ) / len(validation)
    assert restored == pytest.approx(report["best_validation_loss"], rel=1e-5)


def test_train_student_stops_early_when_validation_loss_cannot_improve():
    # learning_rate = 0: the weights never move, every epoch's validation loss equals the first,
    # so with patience 1 training stops after epoch 2 and keeps epoch 1.
    generator = torch.Generator().manual_seed(5)
    table = torch.randn(VOCABULARY, INPUT_DIM, generator=generator)
    batches = toy_batches(toy_documents(16, generator), table, 8)
    report = train_student(
        small_network("sequence-labeling"),
        batches,
        batches,
        formulation="sequence-labeling",
        max_epochs=10,
        patience=1,
        learning_rate=0.0,
        seed=0,
    )
    assert report["epochs"] == 2
    assert report["best_epoch"] == 1
