"""LDAV (harness.ldav, the ``bilstm-attention`` model and the ``ldav`` explainer): the loss terms and the
score against values computed by hand, the bound on the class vectors, a toy task where one word decides
the class, the variants of the randomization test, and the capability check."""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import tiny_suite_text
from test_cli_errors import bench_main

from harness import (
    ClassVectors,
    Example,
    LDAVParams,
    PluginError,
    TextDataset,
    ldav_loss_terms,
    ldav_scores,
)
from plugins.explainers.ldav import LDAV
from plugins.models.bilstm import BiLSTMAttention

# -- the loss terms and the score, by hand --------------------------------------------------------------


def test_loss_terms_by_hand():
    logits = torch.tensor([[2.0, 0.0]])
    embeddings = torch.tensor([[[1.0, 0.0], [1.0, 2.0], [100.0, 100.0]]])  # the third is padding
    mask = torch.tensor([[1, 1, 0]])
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    l1, l2, l3 = ldav_loss_terms(logits, torch.tensor([0]), embeddings, mask, z, rho1=2.0, rho2=0.1)
    # L1 = −log softmax(2, 0)₀ = log(1 + e⁻²): the cross-entropy, as the reference implementation has it
    assert float(l1) == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # x̂ = (1, 1), ŷ = 0: cos(x̂, z₀) = 2 / (√2 · 2) = 1/√2 → L2 = 2 (1 − 1/√2)
    assert float(l2) == pytest.approx(2 * (1 - 1 / math.sqrt(2)), abs=1e-6)
    # ‖z₀ − z₁‖² = 5, counted for (0, 1) and (1, 0) → L3 = 0.1 · 10
    assert float(l3) == pytest.approx(1.0, abs=1e-6)


def test_l1_is_the_mean_cross_entropy_not_divided_by_the_number_of_classes():
    """L1 as housamkhalifa/ldav computes it (``reduce_mean(softmax_cross_entropy_with_logits)``), not
    eq. 1's −(1/k) Σ ȳ_i log y_i: with k = 3 classes the two differ by a factor 3."""
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 2])
    embeddings = torch.ones(2, 1, 2)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    l1, _, _ = ldav_loss_terms(logits, labels, embeddings, torch.ones(2, 1), z, rho1=1.0, rho2=1.0)
    # row 1: −log(e¹ / (e¹ + e⁰ + e⁻¹)); row 2: −log(e⁰ / (e⁰ + e² + e⁰)); L1 is their mean
    first = math.log(math.e + 1 + 1 / math.e) - 1.0
    second = math.log(2 + math.e**2)
    assert float(l1) == pytest.approx((first + second) / 2, abs=1e-6)  # ≈ 1.3236; eq. 1 as written: 0.4412


def test_the_loss_weights_default_to_the_reference_implementations():
    """ρ1 = ρ2 = 1: housamkhalifa/ldav's ``loss + 1*cos_similarity - 1*reduce_sum(pairwise)``."""
    params = LDAVParams()
    assert (params.rho1, params.rho2) == (1.0, 1.0)
    assert BiLSTMAttention.Params().rho2 == 1.0


def test_l2_follows_the_models_prediction_not_the_label():
    embeddings = torch.tensor([[[1.0, 0.0]]])
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    _, towards_own, _ = ldav_loss_terms(
        torch.tensor([[3.0, 0.0]]), torch.tensor([1]), embeddings, torch.ones(1, 1), z, rho1=1.0, rho2=0.0
    )
    assert float(towards_own) == pytest.approx(0.0, abs=1e-7)  # ŷ = 0, whatever the label says


def test_scores_by_hand():
    embeddings = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [9.0, 9.0]]])
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    scored = torch.tensor([[True, True, True, False]])  # the last position is a special token
    scores = ldav_scores(embeddings, z, torch.tensor([0]), scored)
    # α = (0, 5, 10), μ = 5, σ = √(50/3) → −(α − μ)/σ
    sigma = math.sqrt(50 / 3)
    assert scores[0].tolist() == pytest.approx([5 / sigma, 0.0, -5 / sigma, 0.0], abs=1e-9)


def test_cosine_scores_by_hand():
    embeddings = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    z = torch.tensor([[1.0, 0.0]])
    scores = ldav_scores(
        embeddings, z, torch.tensor([0]), torch.ones(1, 3, dtype=torch.bool), distance="cosine"
    )
    # α = 1 − cos = (0, 1, 2): the same standardised scores as α = (0, 5, 10)
    sigma = math.sqrt(2 / 3)
    assert scores[0].tolist() == pytest.approx([1 / sigma, 0.0, -1 / sigma], abs=1e-9)


def test_a_row_with_one_scored_token_scores_zero():
    scores = ldav_scores(
        torch.ones(1, 2, 2), torch.zeros(1, 2), torch.tensor([0]), torch.tensor([[True, False]])
    )
    assert scores.tolist() == [[0.0, 0.0]]


# -- the bound ------------------------------------------------------------------------------------------


def spread(vectors: ClassVectors, steps: int, project: bool) -> float:
    """Minimise −L3 alone (what nothing else holds back) and return the largest norm reached."""
    optimizer = torch.optim.Adam(vectors.parameters(), lr=0.5)
    for _ in range(steps):
        z = vectors()
        loss = -(z.unsqueeze(0) - z.unsqueeze(1)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if project:
            vectors.project()
    return float(vectors().detach().norm(dim=1).max())


def test_the_bound_keeps_the_class_vectors_finite_over_long_training():
    bounded = ClassVectors(4, 8, radius=3.0, generator=torch.Generator().manual_seed(0))
    assert spread(bounded, 3000, project=True) <= 3.0 + 1e-5
    # The objective as written: without the projection the norms grow without end.
    unbounded = ClassVectors(4, 8, radius=3.0, generator=torch.Generator().manual_seed(0))
    assert spread(unbounded, 3000, project=False) > 100 * 3.0


# -- a toy task: one word decides the class -------------------------------------------------------------

FILLER = [f"w{i}" for i in range(40)]


def toy(n: int, rng: random.Random, prefix: str) -> tuple[Example, ...]:
    examples = []
    for i in range(n):
        label = i % 2
        words = rng.sample(FILLER, 6)
        words.insert(rng.randrange(7), ("awful", "great")[label])
        examples.append(Example(f"{prefix}{i}", " ".join(words), label))
    return tuple(examples)


@pytest.fixture(scope="module")
def toy_dataset() -> TextDataset:
    rng = random.Random(0)
    return TextDataset(
        "one-word",
        ("negative", "positive"),
        toy(160, rng, "train"),
        toy(40, rng, "val"),
        toy(40, rng, "test"),
    )


def small(**params) -> BiLSTMAttention:
    defaults = {
        "dim": 16,
        "hidden_size": 16,
        "dropout": 0.0,
        "max_epochs": 50,
        "patience": 50,
        "learning_rate": 0.01,
    }
    return BiLSTMAttention(BiLSTMAttention.Params(**{**defaults, **params}))


@pytest.fixture(scope="module")
def trained(toy_dataset):
    return small(ldav=True).build(toy_dataset, seed=0, device=torch.device("cpu"))


def explain(classifier, examples):
    encoding = classifier.encode(examples)
    with torch.no_grad():
        predicted = classifier.logits(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
    targets = predicted.argmax(-1)
    return encoding, targets, LDAV().explain(classifier, encoding, targets)


def test_the_ldav_model_learns_the_toy_task_and_ranks_the_deciding_word_first(trained, toy_dataset):
    encoding, targets, scores = explain(trained, toy_dataset.test)
    assert (targets == torch.tensor([e.label for e in toy_dataset.test])).float().mean() == 1.0
    top = [
        encoding.tokens[row][int(scores[row, : len(encoding.tokens[row])].argmax())]
        for row in range(len(scores))
    ]
    # With the reference's ρ2 = 1 the deciding word is first in 34, 36 and 39 of 40 sentences (seeds 0-2;
    # 40, 36, 39 with ρ2 = 0.1); random scores would put it first in about 6 (one word in seven).
    assert top.count("great") + top.count("awful") >= 0.8 * len(top), top
    report = trained.training_report
    assert report["ldav"] and all(
        norm <= report["class_vector_radius"] + 1e-5 for norm in report["class_vector_norms"]
    )


def test_ldav_is_deterministic_under_a_seed(trained, toy_dataset):
    again = small(ldav=True).build(toy_dataset, seed=0, device=torch.device("cpu"))
    assert torch.equal(again.class_vectors(), trained.class_vectors())
    assert torch.equal(explain(again, toy_dataset.test)[2], explain(trained, toy_dataset.test)[2])


def test_saved_and_loaded_the_model_is_the_same(trained, toy_dataset, tmp_path):
    model = small(ldav=True)
    model.save(trained, tmp_path)
    loaded = model.load(tmp_path, toy_dataset, torch.device("cpu"))
    encoding = trained.encode(toy_dataset.test)
    inputs = {"input_ids": encoding.input_ids, "attention_mask": encoding.attention_mask}
    assert torch.equal(loaded.logits(**inputs), trained.logits(**inputs))
    assert torch.equal(loaded.class_vectors(), trained.class_vectors())
    assert loaded.training_report == trained.training_report


def test_reinitialising_above_the_embeddings_keeps_the_embeddings_and_class_vectors(trained, toy_dataset):
    reinit = small(ldav=True).build(
        toy_dataset, seed=0, device=torch.device("cpu"), variant="reinit-above-embeddings"
    )
    assert torch.equal(reinit.embedding.weight, trained.embedding.weight)
    assert torch.equal(reinit.class_vectors(), trained.class_vectors())
    assert not torch.equal(reinit.output.weight, trained.output.weight)
    assert not torch.equal(reinit.lstm.weight_hh_l0, trained.lstm.weight_hh_l0)
    # The explanation depends on the layers above only through the prediction it explains.
    _, targets, scores = explain(reinit, toy_dataset.test)
    _, trained_targets, trained_scores = explain(trained, toy_dataset.test)
    same = targets == trained_targets
    assert torch.equal(scores[same], trained_scores[same])


def test_without_ldav_there_are_no_class_vectors(toy_dataset):
    control = small(max_epochs=2).build(toy_dataset, seed=0, device=torch.device("cpu"))
    with pytest.raises(PluginError, match="no learned class vectors"):
        control.class_vectors()
    assert BiLSTMAttention.provides_for(BiLSTMAttention.Params()) == frozenset()
    assert BiLSTMAttention.provides_for(BiLSTMAttention.Params(ldav=True)) == {"class-vectors"}


def test_the_ablations_train_and_stay_finite(toy_dataset):
    for params in ({"rho1": 0.0}, {"rho2": 0.0}):
        classifier = small(ldav=True, max_epochs=3, **params).build(
            toy_dataset, seed=0, device=torch.device("cpu")
        )
        assert torch.isfinite(classifier.class_vectors()).all()
        assert all(math.isfinite(v) for v in classifier.training_report["last_epoch_loss_terms"].values())


# -- the capability -------------------------------------------------------------------------------------


def test_validate_leaves_ldav_out_on_a_model_without_class_vectors(write_suite, monkeypatch, capsys):
    text = tiny_suite_text(explainers="\n  - name: ldav\n  - name: random", metrics="\n  - name: runtime")
    text = text.replace(
        "models:\n",
        "models:\n  - name: bilstm-attention\n    label: with-ldav\n    params: {ldav: true, dim: 8, hidden_size: 8}\n",
    )
    path = write_suite(text)
    code, out, err = bench_main(monkeypatch, capsys, "validate", path)
    assert code == 0, err
    summary, *reasons = out.splitlines()
    assert "3 cells" in summary and "1 left out" in summary
    assert reasons == [
        "  1 left out: explainer 'ldav' requires 'class-vectors', which neither dataset 'tiny' nor model "
        "'bow(dim=8, max_epochs=20)' provides"
    ]


# -- the ablation's expected order: a model axis -------------------------------------------------------


def test_a_model_expectation_compares_the_ablations_with_the_full_model():
    from test_randomization import rows

    from harness.expectations import check_expectations
    from harness.suite import Expectation

    def of_model(label: str, values: list[float], explainer: str = "ldav") -> list[dict]:
        return [
            {**row, "model": label, "model_id": label}
            for row in rows("default", explainer, values, "switching-point")
        ]

    records = (
        of_model("ldav", [0.1, 0.2, 0.1, 0.15, 0.1, 0.2])
        + of_model("ldav-no-l2", [0.5, 0.6, 0.4, 0.55, 0.5, 0.6])
        + of_model("control", [0.05] * 6)  # not named: not compared
        + of_model("ldav", [0.5] * 6, explainer="random")  # left out by where
        + of_model("ldav-no-l2", [0.1] * 6, explainer="random")
    )
    # Switching point: lower is better, so the ablation is expected *above* the full model.
    expectation = Expectation(
        metric="switching-point",
        above={"model": "ldav-no-l2"},
        below={"model": "ldav"},
        where={"explainer": "ldav"},
    )
    assert expectation.describe() == "switching-point, explainer ldav: model ldav-no-l2 above ldav"
    [verdict] = check_expectations([expectation], records)
    assert (verdict.above, verdict.below, verdict.model, verdict.explainer) == (
        "ldav-no-l2",
        "ldav",
        "",
        "ldav",
    )
    assert verdict.comparison.p_value == pytest.approx(1 / 64)  # all 6 differences positive
    assert verdict.holds


def test_where_cannot_fix_the_compared_axis():
    from harness.suite import Expectation

    with pytest.raises(ValueError, match="where cannot fix the compared axis"):
        Expectation(metric="m", above={"model": "a"}, below={"model": "b"}, where={"model": "a"})


def test_with_class_vectors_of_the_embeddings_own_size_the_deciding_word_falls_behind(trained, toy_dataset):
    """Why the default radius is 10 × the embeddings' mean norm (harness/ldav.py): with R = 1 × the
    Euclidean score ranks by norm, and the word the model relies on, which grows, is never first."""
    radius = trained.training_report["class_vector_radius"] / 10
    small_ball = small(ldav=True, class_vector_radius=radius).build(
        toy_dataset, seed=0, device=torch.device("cpu")
    )
    encoding, _, scores = explain(small_ball, toy_dataset.test)
    top = [
        encoding.tokens[row][int(scores[row, : len(encoding.tokens[row])].argmax())]
        for row in range(len(scores))
    ]
    assert top.count("great") + top.count("awful") <= len(top) // 4


# -- the vocabulary: [UNK] is trained only if some training word is rare enough to be one ----------------


def test_min_count_2_makes_the_rare_training_words_unk_so_that_unk_is_trained(toy_dataset):
    """Audit 3.2: with min_count 1 no training token is [UNK], so its embedding stays at its random start
    while the test words the vocabulary lacks all read it; with min_count 2 the words seen once are [UNK]
    in training too, and its embedding is trained."""
    from harness import WORD_UNK, derive_seed

    once = tuple(
        Example(example.id, f"{example.text} rare{i}", example.label)
        for i, example in enumerate(toy_dataset.train)
    )
    dataset = TextDataset("one-word-rare", toy_dataset.labels, once, toy_dataset.validation, toy_dataset.test)
    rows = {}
    for min_count in (1, 2):
        model = small(ldav=True, max_epochs=1, min_count=min_count)
        trained = model.build(dataset, seed=0, device=torch.device("cpu"))
        start = model._new_classifier(trained.vocabulary, dataset.labels, init_seed=derive_seed(0, "init"))
        assert ("rare0" in trained.index) == (min_count == 1)
        rows[min_count] = (start.embedding.weight[WORD_UNK], trained.embedding.weight[WORD_UNK])
    assert torch.equal(*rows[1])  # never read in training: as initialised
    assert not torch.equal(*rows[2])  # read by every training text: trained
