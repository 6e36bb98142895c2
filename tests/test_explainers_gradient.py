"""Gradient, propagation and attention explainers: smoothgrad, saliency's sum reduction, deeplift,
deeplift-shap, lrp and attention.

Most facts are checked on bag-of-words models with hand-set weights, whose outputs can be worked out by
hand: for ``logits = W · mean(E[tokens])`` the gradient of a logit with respect to a token's embedding is
W[target] / n. The few MiniLM tests are marked slow and use tiny inputs.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import hand_bow
from torch import nn

from harness import TOKENS_PER_PASS, Example, PluginError, rows_per_pass
from harness import WORD_SPECIALS as SPECIALS
from plugins.explainers.attention import Attention, last_layer_mean, rollout
from plugins.explainers.deeplift import LRP, DeepLift, DeepLiftShap
from plugins.explainers.gradient import IntegratedGradients, Saliency, SmoothGrad
from plugins.models.bow import BagOfWordsClassifier

WORDS = ["the", "good", "bad", "film", "was", "not", "very", "plot"]
TEXTS = ["the film was very good", "bad", "not good plot", "the plot was not very bad at all"]


def make_bow(cls=BagOfWordsClassifier, dim: int = 4, seed: int = 0, **kwargs) -> BagOfWordsClassifier:
    """A bag-of-words model with seeded random weights (unk, mask and pad embeddings differ)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        model = cls([*SPECIALS, *WORDS], ("negative", "positive"), dim=dim, **kwargs)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model.eval().requires_grad_(False)


@pytest.fixture(name="hand_bow")
def hand_bow_fixture() -> BagOfWordsClassifier:
    """e(good) = 2, e(bad) = −2, e(the) = 0, e([UNK]) = −1, pad and mask 0; logits = (−m, m) for the mean
    embedding m, so the positive logit's gradient per token is 1/n."""
    return hand_bow()


class HiddenReLUBagOfWords(BagOfWordsClassifier):
    """Mean embedding → Linear → ReLU → Linear: a non-linear model captum's DeepLIFT has every rule for."""

    def __init__(self, *args, hidden: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        self.mlp = nn.Sequential(
            nn.Linear(self.embedding.embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, len(self.labels))
        )

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        weights = attention_mask.unsqueeze(-1).to(inputs_embeds.dtype)
        return self.mlp((inputs_embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0))


class TanhBagOfWords(BagOfWordsClassifier):
    """logits = W · tanh(mean embedding): a non-linearity in code, invisible to captum's module rules."""

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        weights = attention_mask.unsqueeze(-1).to(inputs_embeds.dtype)
        return self.linear(torch.tanh((inputs_embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0)))


class FlatMLP(BagOfWordsClassifier):
    """Flattened word embeddings of exactly ``length`` tokens → Linear → ReLU → Linear, without biases: a
    chain of modules captum's LRP has rules for (inputs must all have ``length`` tokens)."""

    def __init__(self, *args, length: int = 3, hidden: int = 6, **kwargs):
        super().__init__(*args, **kwargs)
        dim = self.embedding.embedding_dim
        self.mlp = nn.Sequential(
            nn.Linear(length * dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, len(self.labels), bias=False),
        )

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        return self.mlp(inputs_embeds.flatten(1))


class SelfAttentionBagOfWords(BagOfWordsClassifier):
    """A bag-of-words model that also exposes two layers × two heads of dot-product attention over its
    word embeddings (padded keys masked), so attention explainers can be tested without MiniLM."""

    def attentions(self, encoding):
        embeddings = self.embedding(encoding.input_ids)
        keys = encoding.attention_mask[:, None, None, :].bool()
        layers = []
        for layer in range(2):
            heads = []
            for head in range(2):
                projected = embeddings.roll(shifts=layer + head, dims=-1)
                scores = projected @ embeddings.transpose(1, 2) / math.sqrt(embeddings.shape[-1])
                heads.append(scores)
            scores = torch.stack(heads, dim=1).masked_fill(~keys, float("-inf"))
            layers.append(torch.softmax(scores, dim=-1))
        return tuple(layers)


class FixedAttention(BagOfWordsClassifier):
    """A model whose attentions are given by hand."""

    def __init__(self, attentions: tuple[torch.Tensor, ...]):
        super().__init__([*SPECIALS, *WORDS], ("negative", "positive"), dim=1)
        self.fixed = attentions

    def attentions(self, encoding):
        return self.fixed


def encode(classifier, texts: list[str]):
    encoding = classifier.encode([Example(f"id-{text}", text, 0) for text in texts])
    encoding.example_ids = [f"id-{text}" for text in texts]
    return encoding


def explain(explainer, classifier, texts: list[str], target: int = 1) -> torch.Tensor:
    encoding = encode(classifier, texts)
    return explainer.explain(classifier, encoding, torch.full((len(texts),), target))


def assert_batch_equals_one_at_a_time(explainer, classifier, texts, atol=1e-5):
    together = explain(explainer, classifier, texts)
    reversed_order = explain(explainer, classifier, texts[::-1]).flip(0)
    encoding = encode(classifier, texts)
    for row, text in enumerate(texts):
        length = len(encoding.tokens[row])
        alone = explain(explainer, classifier, [text])[0, :length]
        torch.testing.assert_close(together[row, :length], alone, atol=atol, rtol=1e-4)
        torch.testing.assert_close(reversed_order[row, :length], alone, atol=atol, rtol=1e-4)


# Explainers that work on the plain bag-of-words model.
BOW_EXPLAINERS = {
    "saliency-sum": lambda: Saliency(Saliency.Params(reduction="sum")),
    "smoothgrad-l2": lambda: SmoothGrad(SmoothGrad.Params(samples=8), seed=3),
    "smoothgrad-input_x_gradient": lambda: SmoothGrad(
        SmoothGrad.Params(reduction="input_x_gradient", samples=8), seed=3
    ),
    "smoothgrad-sum-probability": lambda: SmoothGrad(
        SmoothGrad.Params(reduction="sum", samples=8, output="probability", internal_batch_size=5), seed=3
    ),
    "integrated-gradients-one-row-per-pass": lambda: IntegratedGradients(
        IntegratedGradients.Params(n_steps=8, internal_batch_size=1)
    ),
    "integrated-gradients-l2-unk": lambda: IntegratedGradients(
        IntegratedGradients.Params(n_steps=8, reduction="l2", baseline="unk")
    ),
    "deeplift": lambda: DeepLift(DeepLift.Params(baseline="unk", internal_batch_size=3)),
    "deeplift-shap": lambda: DeepLiftShap(DeepLiftShap.Params(baselines=4, internal_batch_size=5), seed=3),
}


# -- every explainer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BOW_EXPLAINERS)
def test_scores_are_finite_and_one_per_token(name):
    classifier = make_bow()
    encoding = encode(classifier, TEXTS)
    scores = BOW_EXPLAINERS[name]().explain(classifier, encoding, torch.tensor([1, 0, 1, 0]))
    assert scores.shape == encoding.input_ids.shape
    assert scores.dtype.is_floating_point
    for row, tokens in enumerate(encoding.tokens):
        assert torch.isfinite(scores[row, : len(tokens)]).all()


@pytest.mark.parametrize("name", BOW_EXPLAINERS)
def test_a_batch_of_different_lengths_gives_the_scores_of_one_text_at_a_time(name):
    assert_batch_equals_one_at_a_time(BOW_EXPLAINERS[name](), make_bow(), TEXTS)


@pytest.mark.parametrize("make", [SmoothGrad, DeepLiftShap], ids=["smoothgrad", "deeplift-shap"])
def test_random_explainers_repeat_under_a_seed_and_differ_across_seeds(make):
    classifier = make_bow(HiddenReLUBagOfWords)  # non-linear: its gradients change with the noise
    first = explain(make(seed=1), classifier, TEXTS)
    assert torch.equal(explain(make(seed=1), classifier, TEXTS), first)
    assert not torch.allclose(explain(make(seed=2), classifier, TEXTS), first)


# -- rows per forward/backward pass (bounded memory) ---------------------------------------------------


def test_rows_per_pass_default_holds_a_fixed_number_of_tokens():
    assert rows_per_pass(None, 64) == TOKENS_PER_PASS // 64
    assert rows_per_pass(None, 256) == TOKENS_PER_PASS // 256
    assert rows_per_pass(None, 10 * TOKENS_PER_PASS) == 1
    assert rows_per_pass(7, 256) == 7


def passes_of(explainer, classifier, texts) -> list[int]:
    """The rows of every forward pass the explainer runs."""
    rows = []
    logits = classifier.logits

    def counting(**inputs):
        rows.append(len(inputs["attention_mask"]))
        return logits(**inputs)

    classifier.logits = counting
    explain(explainer, classifier, texts)
    return rows


@pytest.mark.parametrize(
    "make",
    [
        lambda rows: IntegratedGradients(IntegratedGradients.Params(n_steps=8, internal_batch_size=rows)),
        lambda rows: SmoothGrad(SmoothGrad.Params(samples=8, internal_batch_size=rows), seed=3),
    ],
    ids=["integrated-gradients", "smoothgrad"],
)
def test_internal_batch_size_bounds_every_pass_and_changes_no_score(make):
    classifier = make_bow(HiddenReLUBagOfWords)
    reference = explain(make(10_000), classifier, TEXTS)
    for rows in (1, 3, 5):
        assert max(passes_of(make(rows), make_bow(HiddenReLUBagOfWords), TEXTS)) <= rows
        torch.testing.assert_close(explain(make(rows), classifier, TEXTS), reference, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(explain(make(None), classifier, TEXTS), reference, atol=1e-6, rtol=1e-5)


def test_random_scores_depend_on_the_model_so_two_variants_get_independent_draws():
    from plugins.explainers.random import RandomExplainer

    def fitted(classifier, seed=0):
        explainer = RandomExplainer(seed=seed)
        explainer.fit(classifier, None)
        return explainer

    first, same_weights, other = make_bow(seed=0), make_bow(seed=0), make_bow(seed=1)
    scores = explain(fitted(first), first, TEXTS)
    assert torch.equal(explain(fitted(same_weights), same_weights, TEXTS), scores)
    assert not torch.equal(explain(fitted(other), other, TEXTS), scores)
    assert not torch.equal(explain(fitted(first, seed=1), first, TEXTS), scores)
    assert_batch_equals_one_at_a_time(fitted(first), first, TEXTS)


# -- saliency and smoothgrad --------------------------------------------------------------------------


def test_saliency_sum_is_the_plain_sum_of_the_gradient(hand_bow):
    # d logit₊ / d e(token) = 1/n for every token, whatever the token
    scores = explain(Saliency(Saliency.Params(reduction="sum")), hand_bow, ["the good good bad"])
    torch.testing.assert_close(scores, torch.full((1, 4), 0.25))
    scores = explain(Saliency(Saliency.Params(reduction="sum")), hand_bow, ["good bad"], target=0)
    torch.testing.assert_close(scores, torch.full((1, 2), -0.5))


@pytest.mark.parametrize("reduction", ["l2", "input_x_gradient", "sum"])
def test_smoothgrad_with_no_noise_is_saliency(reduction):
    classifier = make_bow()
    smooth = SmoothGrad(SmoothGrad.Params(reduction=reduction, noise=0.0, samples=3))
    plain = Saliency(Saliency.Params(reduction=reduction))
    torch.testing.assert_close(explain(smooth, classifier, TEXTS), explain(plain, classifier, TEXTS))


@pytest.mark.parametrize("reduction", ["l2", "sum"])
def test_smoothgrad_of_a_linear_model_is_saliency_whatever_the_noise(reduction):
    # The gradient of a linear model is the same at every point, so averaging it over noise changes nothing.
    classifier = make_bow()
    smooth = SmoothGrad(SmoothGrad.Params(reduction=reduction, noise=5.0, samples=4))
    plain = Saliency(Saliency.Params(reduction=reduction))
    torch.testing.assert_close(explain(smooth, classifier, TEXTS), explain(plain, classifier, TEXTS))


def test_smoothgrad_noise_moves_input_x_gradient_in_proportion_to_the_noise_level():
    classifier = make_bow()
    plain = explain(Saliency(Saliency.Params(reduction="input_x_gradient")), classifier, TEXTS)

    def shift(noise: float) -> torch.Tensor:
        params = SmoothGrad.Params(reduction="input_x_gradient", noise=noise, samples=4)
        return explain(SmoothGrad(params, seed=5), classifier, TEXTS) - plain

    # For a linear model: mean over samples of (x + σ·z)·g − x·g = σ·(mean z)·g, linear in σ.
    torch.testing.assert_close(shift(0.4), 2 * shift(0.2), atol=1e-5, rtol=1e-4)
    assert shift(0.2).abs().max() > 1e-3


# -- integrated gradients: Zafar et al. 2021's L2 reduction and unk baseline --------------------------


def test_integrated_gradients_l2_with_an_unk_baseline_by_hand():
    # logits = W · mean(e): the gradient w.r.t. token i's embedding is W[t]/n on the whole path, so the
    # attribution vector is (e_i − e_unk) ⊙ W[t]/n and its L2 norm ‖(e_i − e_unk) ⊙ W[t]‖/n (Zafar et al.
    # §2.2, App. B.2). unk, pad and mask embed differently here, so a pad baseline would give other numbers.
    classifier = make_bow()
    texts = ["the film was very good", "bad"]
    explainer = IntegratedGradients(IntegratedGradients.Params(reduction="l2", baseline="unk", n_steps=4))
    scores = explain(explainer, classifier, texts)
    encoding = encode(classifier, texts)
    weights = classifier.embedding.weight
    unk = weights[classifier.unk_token_id]
    for row, tokens in enumerate(encoding.tokens):
        n = len(tokens)
        ids = encoding.input_ids[row, :n]
        expected = ((weights[ids] - unk) * classifier.linear.weight[1]).norm(dim=-1) / n
        torch.testing.assert_close(scores[row, :n], expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(classifier.embedding.weight[classifier.pad_token_id], unk)


def test_integrated_gradients_l2_is_the_norm_of_captums_attribution_vectors():
    # A non-linear model: the scores are the L2 norms over the embedding dimension of captum's own
    # per-dimension integrated gradients from the unk token's embedding (specials keep their own).
    from captum.attr import IntegratedGradients as CaptumIG

    classifier = make_bow(HiddenReLUBagOfWords, dim=4, seed=2)
    texts = ["the film was very good", "not good plot"]
    encoding = encode(classifier, texts)
    targets = torch.tensor([1, 0])
    explainer = IntegratedGradients(IntegratedGradients.Params(reduction="l2", baseline="unk", n_steps=16))
    scores = explainer.explain(classifier, encoding, targets)
    inputs = classifier.input_embeddings(encoding.input_ids).detach()
    real = ~encoding.special_mask
    baseline_ids = torch.where(real, classifier.unk_token_id, encoding.input_ids)
    vectors = CaptumIG(
        lambda embeds, mask: classifier.logits(inputs_embeds=embeds, attention_mask=mask)
    ).attribute(
        inputs,
        baselines=classifier.input_embeddings(baseline_ids).detach(),
        target=targets,
        additional_forward_args=(encoding.attention_mask,),
        n_steps=16,
    )
    assert (vectors.sum(-1) < 0).any()  # the signed sum would differ from the norm
    torch.testing.assert_close(scores, vectors.norm(dim=-1), atol=1e-6, rtol=1e-5)
    signed = IntegratedGradients(IntegratedGradients.Params(baseline="unk", n_steps=16))
    torch.testing.assert_close(signed.explain(classifier, encoding, targets), vectors.sum(dim=-1))


@pytest.mark.parametrize("baseline", ["unk", "pad", "mask"])
def test_integrated_gradients_baseline_is_that_tokens_embedding(baseline):
    # Signed sum on the linear model: (e_i − e_baseline) · W[t] / n, the baseline token's own embedding.
    classifier = make_bow()
    explainer = IntegratedGradients(IntegratedGradients.Params(baseline=baseline, n_steps=4))
    scores = explain(explainer, classifier, ["the film was very good"])
    ids = encode(classifier, ["the film was very good"]).input_ids[0]
    weights = classifier.embedding.weight
    reference = weights[getattr(classifier, f"{baseline}_token_id")]
    expected = (weights[ids] - reference) @ classifier.linear.weight[1] / len(ids)
    torch.testing.assert_close(scores[0], expected, atol=1e-6, rtol=1e-5)


def test_integrated_gradients_reduction_defaults_to_the_signed_sum():
    # Other suites' integrated-gradients entries keep the signed sum (token scores summing to the change
    # of the logit from the baseline).
    assert IntegratedGradients.Params().reduction == "sum"


# -- deeplift and deeplift-shap -----------------------------------------------------------------------


def test_deeplift_with_a_zero_baseline_is_input_x_gradient_on_a_linear_model(hand_bow):
    deeplift = explain(DeepLift(DeepLift.Params(baseline="zero")), hand_bow, ["the good good bad"])
    torch.testing.assert_close(deeplift, torch.tensor([[0.0, 0.5, 0.5, -0.5]]))
    classifier = make_bow()
    torch.testing.assert_close(
        explain(DeepLift(DeepLift.Params(baseline="zero")), classifier, TEXTS),
        explain(Saliency(Saliency.Params(reduction="input_x_gradient")), classifier, TEXTS),
    )


def test_deeplift_scores_sum_to_the_change_of_the_logit_from_the_baseline(hand_bow):
    # Baseline [UNK] (e = −1): scores (x − (−1)) · ¼; they sum to m − m̄ = 0.5 − (−1)
    scores = explain(DeepLift(DeepLift.Params(baseline="unk")), hand_bow, ["the good good bad"])
    torch.testing.assert_close(scores, torch.tensor([[0.25, 0.75, 0.75, -0.25]]))
    assert float(scores.sum()) == pytest.approx(1.5)


def test_deeplift_uses_the_rescale_rule_through_a_relu():
    # m = mean embedding = 2, baseline m̄ = 0; hidden z = m − 1 ∈ {1, −1}, h = ReLU(z) ∈ {1, 0}; out = 3h.
    # Rescale multiplier Δh/Δz = ½, so each of the 2 tokens scores 2 · ½ · 1 · ½ · 3 = 1.5 and the scores
    # sum to Δout = 3, where input×gradient gives each 3 (sum 6).
    model = HiddenReLUBagOfWords([*SPECIALS, *WORDS], ("negative", "positive"), dim=1, hidden=1)
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[len(SPECIALS) + WORDS.index("good"), 0] = 2.0
        model.mlp[0].weight.fill_(1.0)
        model.mlp[0].bias.fill_(-1.0)
        model.mlp[2].weight.copy_(torch.tensor([[0.0], [3.0]]))
        model.mlp[2].bias.zero_()
    model.eval().requires_grad_(False)
    scores = explain(DeepLift(DeepLift.Params(baseline="zero")), model, ["good good"])
    torch.testing.assert_close(scores, torch.tensor([[1.5, 1.5]]))
    gradients = explain(Saliency(Saliency.Params(reduction="input_x_gradient")), model, ["good good"])
    torch.testing.assert_close(gradients, torch.tensor([[3.0, 3.0]]))


def test_deeplift_scores_sum_to_the_change_of_the_logit_on_a_relu_network():
    classifier = make_bow(HiddenReLUBagOfWords)
    encoding = encode(classifier, TEXTS)
    targets = torch.tensor([1, 0, 1, 1])
    scores = DeepLift(DeepLift.Params(baseline="mask")).explain(classifier, encoding, targets)
    masked = torch.where(encoding.special_mask, encoding.input_ids, classifier.mask_token_id)
    with torch.no_grad():
        change = classifier.logits(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
        change -= classifier.logits(input_ids=masked, attention_mask=encoding.attention_mask)
    torch.testing.assert_close(scores.sum(1), change.gather(1, targets[:, None])[:, 0], atol=1e-5, rtol=1e-4)


def test_deeplift_shap_with_no_noise_is_deeplift():
    classifier = make_bow(HiddenReLUBagOfWords)
    shap = DeepLiftShap(DeepLiftShap.Params(baseline="mask", noise=0.0, baselines=3))
    deeplift = DeepLift(DeepLift.Params(baseline="mask"))
    torch.testing.assert_close(explain(shap, classifier, TEXTS), explain(deeplift, classifier, TEXTS))


def test_deeplift_refuses_a_model_whose_nonlinearity_captum_cannot_see():
    # tanh is applied in the model's code: captum would treat it as linear, and the scores would not sum
    # to f(x) − f(x̄). The summation-to-delta check catches it.
    classifier = make_bow(TanhBagOfWords)
    with pytest.raises(PluginError, match="deeplift is not supported for this model: its scores do not sum"):
        explain(DeepLift(), classifier, TEXTS)


# -- lrp ----------------------------------------------------------------------------------------------


def test_lrp_refuses_bow_whose_pooling_has_no_rule():
    with pytest.raises(
        PluginError, match="lrp is not supported for this model: the word embeddings reach Linear"
    ):
        explain(LRP(), make_bow(), TEXTS)


def test_lrp_of_a_bias_free_relu_network_is_input_x_gradient():
    # With no biases and ε → 0, LRP through Linear and ReLU layers equals gradient × input.
    classifier = make_bow(FlatMLP, length=3)
    texts = ["the good film", "bad plot was", "not very good"]
    lrp = explain(LRP(), classifier, texts)
    expected = explain(Saliency(Saliency.Params(reduction="input_x_gradient")), classifier, texts)
    assert lrp.shape == (3, 3)
    torch.testing.assert_close(lrp, expected, atol=1e-5, rtol=1e-4)
    assert_batch_equals_one_at_a_time(LRP(), classifier, texts)


# -- attention ----------------------------------------------------------------------------------------


def test_attention_on_a_model_without_attention_is_a_plugin_error():
    with pytest.raises(PluginError, match="model BagOfWordsClassifier exposes no attention weights"):
        explain(Attention(), make_bow(), TEXTS)


def test_last_layer_mean_is_the_first_row_averaged_over_heads():
    first = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]]])
    last = torch.tensor([[[[0.2, 0.8], [1.0, 0.0]], [[0.6, 0.4], [0.0, 1.0]]]])
    scores = explain(Attention(), FixedAttention((first, last)), ["the film"])
    torch.testing.assert_close(scores, torch.tensor([[0.4, 0.6]]))


def test_rollout_of_one_layer_by_hand():
    # Heads average to A = [[.6, .4, 0], [.2, .2, .6], [.1, .1, .8]]; (A + I) / 2 row 0 = [.8, .2, 0]
    heads = torch.tensor(
        [
            [[0.8, 0.2, 0.0], [0.0, 0.4, 0.6], [0.2, 0.0, 0.8]],
            [[0.4, 0.6, 0.0], [0.4, 0.0, 0.6], [0.0, 0.2, 0.8]],
        ]
    )[None]
    attention = Attention(Attention.Params(method="rollout"))
    scores = explain(attention, FixedAttention((heads,)), ["the film was"])
    torch.testing.assert_close(scores, torch.tensor([[0.8, 0.2, 0.0]]))


def test_rollout_multiplies_the_layers_from_the_first_up():
    # A₁ = [[1, 0], [1, 0]] → Â₁ = (A₁ + I)/2 = [[1, 0], [.5, .5]];
    # A₂ = [[0, 1], [0, 1]] → Â₂ = [[.5, .5], [0, 1]];  R = Â₂ Â₁ = [[.75, .25], [.5, .5]]
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0]])[None, None]
    second = torch.tensor([[0.0, 1.0], [0.0, 1.0]])[None, None]
    torch.testing.assert_close(rollout((first, second))[0], torch.tensor([[0.75, 0.25], [0.5, 0.5]]))


def test_attention_scores_ignore_the_target_and_rollout_rows_sum_to_one():
    classifier = make_bow(SelfAttentionBagOfWords)
    encoding = encode(classifier, TEXTS)
    attentions = classifier.attentions(encoding)
    matrix = rollout(attentions)
    for row, tokens in enumerate(encoding.tokens):
        torch.testing.assert_close(matrix[row, : len(tokens)].sum(-1), torch.ones(len(tokens)))
        torch.testing.assert_close(last_layer_mean(attentions)[row].sum(), torch.tensor(1.0))
    for method in ("last-layer-mean", "rollout"):
        attention = Attention(Attention.Params(method=method))
        assert torch.equal(explain(attention, classifier, TEXTS, 0), explain(attention, classifier, TEXTS, 1))
        assert_batch_equals_one_at_a_time(attention, classifier, TEXTS)


# -- minilm-head --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    """MiniLM with an untrained (seeded) head: enough for shapes, refusals and the attention path."""
    from plugins.models.minilm_head import MiniLMHead

    return MiniLMHead()._new_classifier(("negative", "positive"), "cpu", init_seed=0)


MINILM_TEXTS = ["A wonderful film.", "Awful.", "The plot was not bad at all, really."]


@pytest.mark.slow
def test_minilm_attentions_leave_the_normal_path_untouched(minilm):
    encoding = encode(minilm, MINILM_TEXTS)
    inputs = {"input_ids": encoding.input_ids, "attention_mask": encoding.attention_mask}
    with torch.no_grad():
        before = minilm.logits(**inputs, token_type_ids=encoding.token_type_ids)
    implementation = minilm.network.encoder.config._attn_implementation
    attentions = minilm.attentions(encoding)
    assert len(attentions) == 6 and attentions[0].shape == (3, 12, *encoding.input_ids.shape[1:] * 2)
    assert minilm.network.encoder.config._attn_implementation == implementation
    with torch.no_grad():
        assert torch.equal(minilm.logits(**inputs, token_type_ids=encoding.token_type_ids), before)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["last-layer-mean", "rollout"])
def test_minilm_attention_scores(minilm, method):
    attention = Attention(Attention.Params(method=method))
    encoding = encode(minilm, MINILM_TEXTS)
    scores = explain(attention, minilm, MINILM_TEXTS)
    for row, tokens in enumerate(encoding.tokens):
        assert torch.isfinite(scores[row, : len(tokens)]).all()
        assert float(scores[row, : len(tokens)].sum()) == pytest.approx(1.0, abs=1e-5)
    assert_batch_equals_one_at_a_time(attention, minilm, MINILM_TEXTS)


@pytest.mark.slow
def test_minilm_smoothgrad_is_finite_and_batch_independent(minilm):
    smoothgrad = SmoothGrad(SmoothGrad.Params(samples=3), seed=0)
    scores = explain(smoothgrad, minilm, MINILM_TEXTS[:2])
    assert torch.isfinite(scores).all() and scores.shape == encode(minilm, MINILM_TEXTS[:2]).input_ids.shape
    assert_batch_equals_one_at_a_time(smoothgrad, minilm, MINILM_TEXTS[:2], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("explainer", "message"),
    [
        (
            DeepLift(),
            "deeplift is not supported for this model: captum has no DeepLIFT rule for GELUActivation, LayerNorm",
        ),
        (
            DeepLiftShap(),
            "deeplift-shap is not supported for this model: captum has no DeepLIFT rule for GELU",
        ),
        (
            LRP(),
            "lrp is not supported for this model: captum has no LRP rule for Embedding, GELUActivation, LayerNorm",
        ),
    ],
    ids=["deeplift", "deeplift-shap", "lrp"],
)
def test_propagation_explainers_refuse_minilm_head(minilm, explainer, message):
    with pytest.raises(PluginError, match=message):
        explain(explainer, minilm, MINILM_TEXTS[:1])
