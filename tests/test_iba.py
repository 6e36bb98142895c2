"""IBA (Schulz et al. 2020): the bottleneck's information term, the explainer on the kit's classifier, and
the hidden-layer hook of transformers classifiers."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from harness import PluginError, TransformersClassifier, load_minilm_tokenizer
from harness.cache import Cache
from harness.plugin import FitContext
from harness.testing import KitClassifier, check_explainer, kit_dataset
from plugins.explainers._iba_bottleneck import capacity, replaced_output, restricted
from plugins.explainers.iba import IBA

PAIRS = kit_dataset(pairs=True)
# The kit embeds words in 4 dimensions: an example has about 80 features, so the paper's β = 10 on the
# mean capacity prices one word's bits almost as high as the prediction (the deciding word then keeps
# 0.01 bits against 0.004 for the others). β = 1 leaves it a clear margin.
KIT = {"layer": 0, "beta": 1.0}


def logit(probability: float) -> float:
    return math.log(probability / (1 - probability))


def explain(explainer: IBA, classifier, examples, targets=None):
    encoding = classifier.encode(examples)
    encoding.example_ids = [example.id for example in examples]
    if targets is None:
        targets = classifier.log_probabilities(encoding).argmax(-1)
    return explainer.explain(classifier, encoding, targets), encoding


def fitted(params: dict, classifier=None, seed: int = 0) -> tuple[IBA, KitClassifier]:
    classifier = classifier or KitClassifier(kit_dataset())
    explainer = IBA(IBA.Params(**params), seed=seed)
    explainer.fit(classifier, PAIRS)
    return explainer, classifier


# -- the bottleneck ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lam", "h", "mu", "sigma", "nats"),
    [
        # −log(1 − λ) + ((1 − λ)² + λ²((h − μ)/σ)²)/2 − 1/2, by hand:
        (0.5, 3.0, 1.0, 2.0, 0.693147 + (0.25 + 0.25) / 2 - 0.5),  # 0.443147
        (0.9, 1.0, 1.0, 2.0, 2.302585 + 0.01 / 2 - 0.5),  # 1.807585
        (0.8, 5.0, 1.0, 2.0, 1.609438 + (0.04 + 0.64 * 4) / 2 - 0.5),  # 2.409438
    ],
)
def test_capacity_is_the_kl_to_the_estimated_normal_in_nats(lam, h, mu, sigma, nats):
    alpha = torch.tensor([logit(lam)], dtype=torch.float64)
    normalised = torch.tensor([(h - mu) / sigma], dtype=torch.float64)
    assert capacity(alpha, normalised).item() == pytest.approx(nats, abs=1e-6)


def test_capacity_is_zero_when_only_noise_passes_and_finite_when_none_does():
    assert capacity(torch.tensor([-40.0]), torch.tensor([3.0])).item() == pytest.approx(0.0, abs=1e-6)
    kept = capacity(torch.tensor([40.0]), torch.tensor([0.0])).item()  # λ rounds to 1 in float32
    assert kept == pytest.approx(40.0 - 0.5, abs=1e-4)  # −log(1 − λ) = −log sigmoid(−40)


def test_restricted_mixes_the_activation_with_noise_of_the_estimated_mean_and_std():
    # λh + (1 − λ)(μ + σε) = 0.5·3 + 0.5·(1 + 2·0.5)
    z = restricted(
        torch.tensor(3.0), torch.tensor(0.5), torch.tensor(1.0), torch.tensor(2.0), torch.tensor(0.5)
    )
    assert z.item() == pytest.approx(2.5)


# -- the explainer on the kit ------------------------------------------------------------------------------


def test_the_deciding_word_ranks_first_on_the_kit_pairs():
    explainer, classifier = fitted(KIT)
    explanation, encoding = explain(explainer, classifier, PAIRS.test)
    for row, tokens in enumerate(encoding.tokens):
        scores = explanation.scores[row, : len(tokens)]
        assert tokens[int(scores.argmax())] in ("good", "bad"), tokens


def test_scores_are_bits_summed_over_a_words_tokens():
    explainer, classifier = fitted(KIT)
    explanation, encoding = explain(explainer, classifier, PAIRS.test[:1])
    bits = explanation.extras["token_bits"][0]
    words = encoding.word_ids[0]
    pieces = [p for p, w in enumerate(words) if w is not None and words.count(w) > 1]
    assert pieces, "the kit splits long words into pieces"
    for position in pieces:
        same = [p for p, w in enumerate(words) if w == words[position]]
        assert explanation.scores[0, position].item() == pytest.approx(bits[same].sum().item(), rel=1e-6)


def test_specials_and_padding_are_never_restricted():
    class Recording(KitClassifier):
        def __init__(self):
            super().__init__(kit_dataset())
            self.fed: list[torch.Tensor] = []

        def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
            if inputs_embeds is not None:
                self.fed.append(inputs_embeds.detach().clone())
            return super().logits(
                attention_mask=attention_mask, input_ids=input_ids, inputs_embeds=inputs_embeds
            )

    classifier = Recording()
    explainer, _ = fitted(KIT, classifier)
    examples = [PAIRS.test[0], PAIRS.test[1]]  # of different lengths: the second is padded
    encoding = classifier.encode(examples)
    kept = encoding.special_mask  # specials and padding
    assert kept[1].sum() > kept[0].sum()
    original = classifier.input_embeddings(encoding.input_ids)
    classifier.fed.clear()
    explanation, _ = explain(explainer, classifier, examples)
    assert len(classifier.fed) == explainer.params.steps
    for batch in classifier.fed:  # one pass per step: each example's noise samples, one after the other
        rows = batch.view(len(examples), -1, *batch.shape[1:])
        for row in range(len(examples)):
            expected = original[row][kept[row]].expand(rows.shape[1], -1, -1)
            assert torch.equal(rows[row][:, kept[row]], expected)
            real = rows[row][:, ~kept[row]]  # restricted: noise mixed in
            assert not torch.equal(real, original[row][~kept[row]].expand_as(real))
    assert (explanation.scores[kept] == 0).all()


def test_the_layer_statistics_are_the_mean_and_std_of_real_train_tokens():
    explainer, classifier = fitted({"layer": 0, "estimation_documents": 10})
    encoding = classifier.encode(PAIRS.train[:10])
    values = classifier.input_embeddings(encoding.input_ids)[~encoding.special_mask].double()
    mean, std = explainer.statistics
    torch.testing.assert_close(mean.double(), values.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(std.double(), values.std(0, correction=0), rtol=0, atol=1e-6)
    assert explainer.fit_report()["documents"] == 10
    assert explainer.fit_report()["tokens"] == len(values)


def test_the_statistics_are_cached_with_a_report(tmp_path, monkeypatch):
    classifier = KitClassifier(kit_dataset())
    context = FitContext(cache=Cache(tmp_path), key="iba-test", seed=0, batch_size=8)
    first = IBA(IBA.Params(layer=0), seed=0)
    first.fit(classifier, PAIRS, context)
    assert {"documents", "seconds"} <= set(first.fit_report())

    def no_estimate(*args, **kwargs):
        raise AssertionError("estimated again instead of reading the cache")

    second = IBA(IBA.Params(layer=0), seed=0)
    monkeypatch.setattr(second, "_estimate", no_estimate)
    second.fit(classifier, PAIRS, context)
    assert second.fit_report() == first.fit_report()
    for a, b in zip(first.statistics, second.statistics, strict=True):
        assert torch.equal(a, b)


def test_same_seed_same_scores_other_seed_other_scores():
    explainer, classifier = fitted(KIT, seed=3)
    again, _ = fitted(KIT, classifier, seed=3)
    other, _ = fitted(KIT, classifier, seed=4)
    first = explain(explainer, classifier, PAIRS.test[:3])[0].extras["token_bits"]
    assert torch.equal(first, explain(again, classifier, PAIRS.test[:3])[0].extras["token_bits"])
    assert not torch.equal(first, explain(other, classifier, PAIRS.test[:3])[0].extras["token_bits"])


def test_passes_the_conformance_kit():
    check_explainer(IBA, {"layer": 0})


def test_explaining_before_fit_is_a_plugin_error():
    classifier = KitClassifier(kit_dataset())
    with pytest.raises(PluginError, match="after fit"):
        explain(IBA(IBA.Params(layer=0)), classifier, PAIRS.test[:1])


def test_a_hidden_layer_of_a_model_without_them_is_a_plugin_error_pointing_to_layer_0():
    with pytest.raises(PluginError, match=r"KitClassifier.*layer 0"):
        IBA(IBA.Params(layer=4)).fit(KitClassifier(kit_dataset()), PAIRS)


# -- the hidden-layer hook on a tiny BERT ------------------------------------------------------------------


class TinyBert(TransformersClassifier):
    @property
    def word_embeddings(self):
        return self.network.get_input_embeddings()

    def forward(self, *, attention_mask, input_ids, inputs_embeds, token_type_ids):
        return self.network(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
        ).logits


@pytest.fixture(scope="module")
def bert() -> TinyBert:
    """A random 2-layer BERT (hidden size 32) with the MiniLM tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = load_minilm_tokenizer()
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = BertForSequenceClassification(config)
    return TinyBert(network, tokenizer, ("negative", "positive"), 32, "cpu")


def bert_logits(classifier, encoding) -> torch.Tensor:
    with torch.no_grad():
        return classifier.logits(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
        )


@pytest.mark.parametrize("index", [1, 2])
def test_hidden_layer_k_outputs_the_hidden_state_after_encoder_layer_k(bert, index):
    encoding = bert.encode(PAIRS.test[:3])
    seen = []
    with replaced_output(bert.hidden_layer(index), lambda h: seen.append(h) or h), torch.no_grad():
        expected = bert.network(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
            output_hidden_states=True,
        ).hidden_states[index]
    assert torch.equal(seen[0], expected)


def test_hidden_layer_0_outputs_the_input_embeddings(bert):
    encoding = bert.encode(PAIRS.test[:2])
    with torch.no_grad():
        assert torch.equal(
            bert.hidden_layer(0)(encoding.input_ids), bert.input_embeddings(encoding.input_ids)
        )


def test_hidden_layers_past_the_last_or_below_0_are_plugin_errors(bert):
    with pytest.raises(PluginError, match="2 encoder layers"):
        bert.hidden_layer(3)
    with pytest.raises(PluginError, match="numbered from 0"):
        bert.hidden_layer(-1)


def test_a_classifier_without_hidden_layers_names_itself():
    with pytest.raises(PluginError, match="KitClassifier"):
        KitClassifier(kit_dataset()).hidden_layer(1)


def test_a_bottleneck_that_lets_everything_through_leaves_the_logits_unchanged(bert):
    encoding = bert.encode(PAIRS.test[:3])
    dim = bert.network.config.hidden_size
    mean, std = torch.randn(dim), torch.rand(dim) + 0.5
    noise = torch.randn(*encoding.input_ids.shape, dim)
    bottleneck = partial(restricted, lam=torch.ones(()), mean=mean, std=std, noise=noise)
    with replaced_output(bert.hidden_layer(1), bottleneck):
        hooked = bert_logits(bert, encoding)
    torch.testing.assert_close(hooked, bert_logits(bert, encoding), rtol=0, atol=0)
    # ... and one that lets only noise through changes them.
    nothing = partial(restricted, lam=torch.zeros(()), mean=mean, std=std, noise=noise)
    with replaced_output(bert.hidden_layer(1), nothing):
        assert not torch.allclose(bert_logits(bert, encoding), hooked)


def test_the_hook_replaces_the_first_element_of_a_tuple_output():
    class Pair(torch.nn.Module):
        def forward(self, x):
            return x, "kept"

    module = Pair()
    with replaced_output(module, lambda h: h + 1):
        assert module(torch.zeros(2))[0].tolist() == [1.0, 1.0]
        assert module(torch.zeros(2))[1] == "kept"
    assert module(torch.zeros(2))[0].tolist() == [0.0, 0.0]


def test_iba_in_a_hidden_layer_explains_and_removes_its_hook(bert):
    explainer = IBA(IBA.Params(layer=1, steps=3, samples=2, estimation_documents=8))
    explainer.fit(bert, PAIRS)
    encoding = bert.encode(PAIRS.test[:3])
    before = bert_logits(bert, encoding)
    hooks = dict(bert.hidden_layer(1)._forward_hooks)  # transformers keeps hooks of its own there
    explanation, encoding = explain(explainer, bert, PAIRS.test[:3])
    real = ~encoding.special_mask
    assert torch.isfinite(explanation.scores[real]).all() and (explanation.scores[real] > 0).all()
    assert (explanation.scores[~real] == 0).all()
    assert dict(bert.hidden_layer(1)._forward_hooks) == hooks
    assert torch.equal(bert_logits(bert, encoding), before)


def test_the_hook_is_removed_when_explain_raises(bert, monkeypatch):
    explainer = IBA(IBA.Params(layer=2, steps=2, samples=2, estimation_documents=8))
    explainer.fit(bert, PAIRS)
    encoding = bert.encode(PAIRS.test[:2])
    before = bert_logits(bert, encoding)
    hooks = dict(bert.hidden_layer(2)._forward_hooks)
    forward = bert.forward

    def failing(**inputs):  # the optimisation's passes (2 noise samples per example) fail mid-pass
        logits = forward(**inputs)
        if len(logits) > 2:
            raise RuntimeError("failed while the bottleneck was in place")
        return logits

    monkeypatch.setattr(bert, "forward", failing)
    with pytest.raises(RuntimeError, match="bottleneck was in place"):
        explain(explainer, bert, PAIRS.test[:2])
    monkeypatch.undo()
    assert dict(bert.hidden_layer(2)._forward_hooks) == hooks
    assert torch.equal(bert_logits(bert, encoding), before)
