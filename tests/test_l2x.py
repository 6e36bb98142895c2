"""L2X (Chen et al. 2018): the k-subset relaxation, word units, the approximator's features, training on
the kit (the label hangs on one word, "good" or "bad"), caching, determinism and conformance."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from harness import Example, FitContext, word_units
from harness.cache import Cache
from harness.testing import KitClassifier, check_explainer, kit_dataset
from plugins.explainers._l2x_networks import (
    EXCLUDED,
    pair_features,
    relaxed_subset,
    token_masks,
    top_k_words,
    word_logits,
)
from plugins.explainers.l2x import L2X

# Small budgets for the kit: 24 training documents in batches of 4, 3 words selected.
KIT = {"k": 3, "train_batch_size": 4, "max_epochs": 20, "patience": 5, "selector_hidden": 16}


def fitted(approximator: str = "model", seed: int = 0, **params):
    dataset = kit_dataset(pairs=True)
    classifier = KitClassifier(dataset)
    explainer = L2X(L2X.Params(**(KIT | {"approximator": approximator} | params)), seed=seed)
    explainer.fit(classifier, dataset)  # no context: trained without a cache
    return explainer, classifier, dataset


def explained(explainer: L2X, classifier: KitClassifier, examples):
    encoding = classifier.encode(list(examples))
    encoding.example_ids = [example.id for example in examples]
    targets = classifier.log_probabilities(encoding).argmax(-1)
    return explainer.explain(classifier, encoding, targets), encoding


def top_words(explainer: L2X, classifier: KitClassifier, examples) -> list[str]:
    """The highest-scored real token of each example."""
    explanation, encoding = explained(explainer, classifier, examples)
    tops = []
    for row, tokens in enumerate(encoding.tokens):
        scores = explanation.scores[row, : len(tokens)].clone()
        scores[torch.tensor([segment < 0 for segment in encoding.segments[row]])] = -math.inf
        tops.append(tokens[int(scores.argmax())])
    return tops


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: one thread is fastest, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_l2x(one_thread):
    return fitted("model")


# -- the subset sampler ---------------------------------------------------------------------------------


def test_the_sampler_is_k_concrete_draws_combined_by_an_elementwise_max():
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    gumbel = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 1.0, 2.0]]])  # k = 2 draws
    tau = 0.5

    def softmax(values):
        exps = [math.exp(v / tau) for v in values]
        return [e / sum(exps) for e in exps]

    first = softmax([1.5, 0.0, -1.0])
    second = softmax([1.0, 1.0, 1.0])
    expected = [max(a, b) for a, b in zip(first, second, strict=True)]
    sample = relaxed_subset(logits, torch.ones(1, 3, dtype=torch.bool), gumbel, tau)
    assert sample[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_the_sampler_draws_only_among_an_examples_words():
    logits = torch.tensor([[0.0, math.log(3.0), 5.0]])
    valid = torch.tensor([[True, True, False]])  # the third is the padding of the word axis
    sample = relaxed_subset(logits, valid, torch.zeros(1, 1, 3), 1.0)
    assert sample[0].tolist() == pytest.approx([0.25, 0.75, 0.0])


def test_at_a_low_temperature_the_sampler_selects_at_most_k_words():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 12, generator=generator)
    uniform = torch.rand(50, 4, 12, generator=generator)
    gumbel = -torch.log(-torch.log(uniform))
    sample = relaxed_subset(logits, torch.ones(50, 12, dtype=torch.bool), gumbel, 1e-4)
    assert torch.allclose(sample, sample.round(), atol=1e-3)  # one-hot draws: a 0/1 mask
    selected = sample.round().sum(1)
    assert selected.max() <= 4 and selected.min() >= 1
    assert (selected < 4).any()  # draws may coincide: fewer than k words


def test_the_discrete_selection_is_the_k_highest_logits_among_the_words():
    logits = torch.tensor([[0.3, 2.0, -1.0, 9.0], [1.0, 0.0, 5.0, 7.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert top_k_words(logits, valid, 2).tolist() == [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    assert top_k_words(logits, valid, 10)[0].tolist() == [1.0, 1.0, 1.0, 0.0]  # fewer words than k


# -- words ----------------------------------------------------------------------------------------------


def test_a_words_sub_tokens_share_one_unit_specials_none_and_the_two_texts_never_one():
    classifier = KitClassifier(kit_dataset(pairs=True))
    example = Example(id="x", text="that wonderful book", label=1, text_pair="that book")
    encoding = classifier.encode([example])
    units, valid = word_units(encoding)
    assert encoding.tokens[0] == [
        "[CLS]", "that", "wond", "##erfu", "##l", "book", "[SEP]", "that", "book", "[SEP]"
    ]  # fmt: skip
    assert units[0].tolist() == [-1, 0, 1, 1, 1, 2, -1, 3, 4, -1]
    assert valid.tolist() == [[True] * 5]


def test_a_words_logit_is_the_mean_of_its_tokens_logits():
    units = torch.tensor([[-1, 0, 1, 1, 1, -1, -1]])
    valid = torch.tensor([[True, True, False]])
    tokens = torch.tensor([[9.0, 2.0, 1.0, 2.0, 6.0, 9.0, 9.0]])
    assert word_logits(tokens, units, valid)[0].tolist() == [2.0, 3.0, EXCLUDED]


def test_token_masks_give_sub_tokens_their_words_mask_and_keep_specials():
    units = torch.tensor([[-1, 0, 1, 1, -1, 2, -1]])
    masks = token_masks(torch.tensor([[0.2, 0.7, 0.0]]), units)
    assert masks[0].tolist() == pytest.approx([1.0, 0.2, 0.7, 0.7, 1.0, 0.0, 1.0])


def test_the_approximator_network_reads_each_text_as_its_masked_sum_over_k():
    features = torch.tensor([[[5.0, 5.0], [1.0, 2.0], [3.0, -2.0], [5.0, 5.0], [4.0, 0.0], [5.0, 5.0]]])
    segments = torch.tensor([[-1, 0, 0, -1, 1, -1]])  # [CLS] a b [SEP] c [SEP]
    masks = torch.tensor([[1.0, 1.0, 0.5, 1.0, 1.0, 1.0]])
    u = [(1.0 + 1.5) / 2, (2.0 - 1.0) / 2]  # k = 2
    v = [4.0 / 2, 0.0]
    expected = u + v + [u[0] * v[0], u[1] * v[1]] + [abs(u[0] - v[0]), abs(u[1] - v[1])]
    assert pair_features(features, masks, segments, 2)[0].tolist() == pytest.approx(expected)


# -- explaining after training --------------------------------------------------------------------------


def test_with_the_model_as_approximator_the_deciding_word_ranks_first_on_every_test_pair(model_l2x):
    explainer, classifier, dataset = model_l2x
    expected = ["good" if example.label else "bad" for example in dataset.test]
    assert top_words(explainer, classifier, dataset.test) == expected


def test_every_sub_token_carries_its_words_score_and_k_words_are_selected(model_l2x):
    explainer, classifier, dataset = model_l2x
    explanation, encoding = explained(explainer, classifier, dataset.test)
    units, _ = word_units(encoding)
    for row in range(len(dataset.test)):
        for unit in units[row].unique().tolist():
            if unit >= 0:
                assert explanation.scores[row][units[row] == unit].unique().numel() == 1
        selected = explanation.extras["selected"][row]
        assert len(units[row][selected > 0].unique()) == KIT["k"]
        assert (selected[units[row] < 0] == 0).all()


def test_with_the_network_approximator_too_the_deciding_word_ranks_first_on_every_test_pair():
    explainer, classifier, dataset = fitted("network")
    assert explainer.fit_report()["best_validation_accuracy"] == 1.0  # q reads ŷ off the selection
    expected = ["good" if example.label else "bad" for example in dataset.test]
    assert top_words(explainer, classifier, dataset.test) == expected


def test_training_leaves_the_model_untouched():
    dataset = kit_dataset(pairs=True)
    classifier = KitClassifier(dataset)
    before = {name: value.clone() for name, value in classifier.state_dict().items()}
    L2X(L2X.Params(**(KIT | {"max_epochs": 2}))).fit(classifier, dataset)
    assert all(torch.equal(before[name], value) for name, value in classifier.state_dict().items())
    assert all(parameter.grad is None for parameter in classifier.parameters())


def test_explaining_before_fit_is_an_error():
    from harness import PluginError

    classifier = KitClassifier()
    encoding = classifier.encode(list(kit_dataset().test[:1]))
    with pytest.raises(PluginError, match="after fit"):
        L2X().explain(classifier, encoding, torch.tensor([0]))


def test_the_class_explained_is_always_the_prediction():
    with pytest.raises(ValidationError):
        L2X.Params(target=1)


# -- caching and determinism ----------------------------------------------------------------------------


class CountingKit(KitClassifier):
    """The kit's classifier, counting its logits calls."""

    calls = 0

    def logits(self, **inputs):
        CountingKit.calls += 1
        return super().logits(**inputs)


def test_a_second_fit_with_the_same_key_reads_the_cache_instead_of_training():
    dataset = kit_dataset(pairs=True)
    classifier = CountingKit(dataset)
    with tempfile.TemporaryDirectory() as folder:
        context = FitContext(cache=Cache(Path(folder)), key="l2x-test", seed=0, batch_size=8)
        first = L2X(L2X.Params(**(KIT | {"max_epochs": 2})))
        first.fit(classifier, dataset, context)
        assert CountingKit.calls > 0
        CountingKit.calls = 0
        second = L2X(L2X.Params(**(KIT | {"max_epochs": 2})))
        second.fit(classifier, dataset, context)
        assert CountingKit.calls == 0
    assert second.fit_report() == first.fit_report()
    assert set(first.fit_report()) >= {"train_documents", "epochs", "seconds"}
    a, _ = explained(first, classifier, dataset.test)
    b, _ = explained(second, classifier, dataset.test)
    assert torch.equal(a.scores, b.scores)


def test_the_same_seed_gives_the_same_scores_and_another_seed_others():
    scores = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        explainer, classifier, dataset = fitted("network", seed=seed, max_epochs=2)
        scores[name] = explained(explainer, classifier, dataset.test)[0].scores
    assert torch.equal(scores["a"], scores["b"])
    assert not torch.allclose(scores["a"], scores["c"])


def test_l2x_passes_the_conformance_kit():
    check_explainer(L2X, KIT | {"max_epochs": 2})
    check_explainer(L2X, KIT | {"max_epochs": 2, "approximator": "network"})
