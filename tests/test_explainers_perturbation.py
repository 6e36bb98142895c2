"""Perturbation explainers: occlusion, LIME, Kernel SHAP and Partition SHAP.

The toy model is a bag-of-words classifier with hand-set weights: each word has a one-dimensional
embedding e(w), logits = (−m, m) with m the mean embedding of the attended tokens, so p(positive) = σ(2m).
[MASK] and [PAD] embed to 0, [UNK] to −1. When a removed token is replaced (length kept), the log-odds
2m = Σ 2·e(wᵢ)/L is linear in which tokens are present, so token i's Shapley value is exactly 2·e(wᵢ)/L.
Expected values below come from these formulas, not from the model.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from conftest import hand_bow

from harness import Encoding, Example, PluginError, TextDataset, engine_inputs
from harness.perturb import evaluate
from harness.testing import _Recording
from plugins.explainers.lime import Lime
from plugins.explainers.occlusion import Occlusion
from plugins.explainers.shap import KernelShap, PartitionShap
from plugins.models.bow import BagOfWordsClassifier

EMBEDDING = {"good": 2.0, "bad": -2.0, "the": 0.0, "film": 0.1, "was": -0.1, "plot": 0.05, "and": 0.0}
POSITIVE = torch.tensor([1])

SAMPLING = [
    pytest.param(Lime, {"samples": 300}, id="lime"),
    pytest.param(Lime, {"backend": "captum", "samples": 300}, id="lime-captum"),
    pytest.param(KernelShap, {"samples": 300}, id="kernel-shap"),
    pytest.param(KernelShap, {"backend": "shap", "samples": 300}, id="kernel-shap-shap"),
]
EXPLAINERS = [pytest.param(Occlusion, {}, id="occlusion"), *SAMPLING]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def toy() -> BagOfWordsClassifier:
    return hand_bow(EMBEDDING)


def encode(classifier, *examples: Example) -> Encoding:
    encoding = classifier.encode(list(examples))
    encoding.example_ids = [example.id for example in examples]
    return encoding


A = Example("a", "the film was good and the plot was", 1)
B = Example("b", "bad bad film", 0)


@pytest.mark.parametrize(("explainer", "params"), EXPLAINERS)
def test_scores_are_finite_one_per_token_and_zero_on_padding(toy, explainer, params):
    encoding = encode(toy, A, B)
    scores = explainer(explainer.Params(**params)).explain(toy, encoding, torch.tensor([1, 0]))
    assert scores.shape == encoding.input_ids.shape and scores.is_floating_point()
    assert torch.isfinite(scores).all()
    assert (scores[1, len(encoding.tokens[1]) :] == 0).all()  # B is padded to A's length
    assert (scores[0] != 0).any() and (scores[1, :3] != 0).all()


@pytest.mark.parametrize(("explainer", "params"), EXPLAINERS)
def test_special_tokens_score_zero(toy, explainer, params):
    encoding = encode(toy, Example("pair", "the good film", 1, text_pair="bad plot"))
    assert encoding.segments[0][3] == -1  # [SEP] between the two texts
    scores = explainer(explainer.Params(**params)).explain(toy, encoding, POSITIVE)
    assert scores[0, 3] == 0 and (scores[0, [1, 4]] != 0).all()


@pytest.mark.parametrize(("explainer", "params"), EXPLAINERS)
def test_scores_do_not_depend_on_batch_composition(toy, explainer, params):
    together = explainer(explainer.Params(**params), seed=3).explain(
        toy, encode(toy, B, A), torch.tensor([0, 1])
    )
    alone = explainer(explainer.Params(**params), seed=3).explain(toy, encode(toy, A), POSITIVE)
    torch.testing.assert_close(together[1], alone[0], rtol=0, atol=1e-7)


@pytest.mark.parametrize(("explainer", "params"), SAMPLING)
def test_sampling_is_reproducible_under_a_seed_and_changes_with_it(toy, explainer, params):
    params = {**params, "samples": 100}  # fewer than the 2⁸ − 2 coalitions, which shap would enumerate

    def run(seed: int) -> torch.Tensor:
        return explainer(explainer.Params(**params), seed=seed).explain(toy, encode(toy, A), POSITIVE)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


# "the good good bad": m = (0 + 2 + 2 − 2)/4 = ½, p = σ(1).
OCCLUSION_BY_HAND = {
    # [MASK] embeds to 0 and still counts in the mean: removing "good" leaves m = 0, "bad" leaves m = 1.
    "mask": [
        sigmoid(1) - sigmoid(1),
        sigmoid(1) - sigmoid(0),
        sigmoid(1) - sigmoid(0),
        sigmoid(1) - sigmoid(2),
    ],
    "pad": [
        sigmoid(1) - sigmoid(1),
        sigmoid(1) - sigmoid(0),
        sigmoid(1) - sigmoid(0),
        sigmoid(1) - sigmoid(2),
    ],
    # [UNK] embeds to −1: "[UNK] good good bad" → m = ¼, "the [UNK] good bad" → m = −¼, "… [UNK]" → m = ¾.
    "unk": [
        sigmoid(1) - sigmoid(0.5),
        sigmoid(1) - sigmoid(-0.5),
        sigmoid(1) - sigmoid(-0.5),
        sigmoid(1) - sigmoid(1.5),
    ],
    # deletion shortens the mean: "good good bad" → m = ⅔, "the good bad" → m = 0, "the good good" → m = 4/3.
    "delete": [
        sigmoid(1) - sigmoid(4 / 3),
        sigmoid(1) - sigmoid(0),
        sigmoid(1) - sigmoid(0),
        sigmoid(1) - sigmoid(8 / 3),
    ],
}


@pytest.mark.parametrize("masking", sorted(OCCLUSION_BY_HAND))
def test_occlusion_by_hand(toy, masking):
    scores = Occlusion(Occlusion.Params(masking=masking)).explain(
        toy, encode(toy, Example("x", "the good good bad", 1)), POSITIVE
    )
    np.testing.assert_allclose(scores[0].numpy(), OCCLUSION_BY_HAND[masking], atol=1e-6)


def test_occlusion_of_the_negative_class_in_log_odds_by_hand(toy):
    scores = Occlusion(Occlusion.Params(output="log-odds")).explain(
        toy, encode(toy, Example("x", "the good good bad", 1)), torch.tensor([0])
    )
    # log-odds of "negative" = −2m: −1 in full; removing "good" → 0, removing "bad" → −2.
    np.testing.assert_allclose(scores[0].numpy(), [0.0, -1.0, -1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize(("explainer", "params"), SAMPLING)
def test_sampling_explainers_rank_the_decisive_word_first(toy, explainer, params):
    encoding = encode(toy, A)
    scores = explainer(explainer.Params(**params)).explain(toy, encoding, POSITIVE)
    assert encoding.tokens[0][int(scores[0].argmax())] == "good"


@pytest.mark.parametrize("backend", ["captum", "shap"])
def test_kernel_shap_finds_the_exact_shapley_values_of_a_linear_model(toy, backend):
    encoding = encode(toy, A)
    scores = KernelShap(KernelShap.Params(backend=backend, samples=300, output="log-odds")).explain(
        toy, encoding, POSITIVE
    )
    expected = [2 * EMBEDDING[token] / len(encoding.tokens[0]) for token in encoding.tokens[0]]
    np.testing.assert_allclose(scores[0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["captum", "shap"])
def test_kernel_shap_dropping_to_unk_finds_the_shapley_values_from_the_unk_embedding(toy, backend):
    # Zafar et al. 2021 App. B.2: a dropped token takes the unk token's embedding, here −1, so the
    # log-odds 2m is linear in presence with slope 2·(e(wᵢ) − e([UNK]))/L = 2·(e(wᵢ) + 1)/L.
    encoding = encode(toy, A)
    params = KernelShap.Params(backend=backend, samples=300, output="log-odds", masking="unk")
    scores = KernelShap(params).explain(toy, encoding, POSITIVE)
    length = len(encoding.tokens[0])
    expected = [2 * (EMBEDDING[token] + 1) / length for token in encoding.tokens[0]]
    np.testing.assert_allclose(scores[0].numpy(), expected, atol=1e-5)


def test_kernel_shap_with_unk_masking_puts_the_unk_id_at_removed_positions(toy):
    recording = _Recording(toy)
    encoding = encode(toy, A)
    KernelShap(KernelShap.Params(samples=60, masking="unk")).explain(recording, encoding, POSITIVE)
    original = encoding.input_ids[0]
    rows = torch.cat([ids for ids, _ in recording.seen])
    assert rows.shape[1] == len(original) and len(rows) > 2
    removed = rows != original
    assert removed.any() and (~removed).any()
    assert (rows[removed] == toy.unk_token_id).all()  # never [MASK] or [PAD]
    assert toy.unk_token_id not in original.tolist()


def test_a_single_token_gets_its_exact_shapley_value(toy):
    scores = KernelShap().explain(toy, encode(toy, Example("x", "good", 1)), POSITIVE)
    assert scores[0, 0].item() == pytest.approx(sigmoid(4) - sigmoid(0), abs=1e-6)


def test_lime_backends_fit_the_same_surrogate_closely(toy):
    """Same kernel, same ridge, same features: only the sampling of removals differs."""
    encoding = encode(toy, A)
    lime = Lime(Lime.Params(samples=2000, output="log-odds")).explain(toy, encoding, POSITIVE)
    captum = Lime(Lime.Params(backend="captum", samples=2000, output="log-odds")).explain(
        toy, encoding, POSITIVE
    )
    assert np.corrcoef(lime[0].numpy(), captum[0].numpy())[0, 1] > 0.95


def test_partition_shap_needs_a_hugging_face_tokenizer(toy):
    with pytest.raises(PluginError, match="partition-shap needs a model with a Hugging Face fast tokenizer"):
        PartitionShap().explain(toy, encode(toy, A), POSITIVE)


# -- partition-shap on minilm-head ------------------------------------------------------------------------

LONG = (
    "The film was wonderful, and the acting was great, but the ending dragged on far too long "
    "for my taste and patience."
)


@pytest.fixture(scope="module")
def minilm():
    from plugins.models.minilm_head import MiniLMHead

    rng = random.Random(0)
    words = (["awful", "boring", "dreadful", "bad"], ["great", "lovely", "superb", "wonderful"])

    def split(prefix: str, n: int) -> tuple[Example, ...]:
        return tuple(
            Example(
                f"{prefix}{i}",
                f"The {rng.choice(['film', 'meal', 'trip'])} was {rng.choice(words[i % 2])}.",
                i % 2,
            )
            for i in range(n)
        )

    dataset = TextDataset("toy", ("negative", "positive"), split("train", 16), split("validation", 4), ())
    model = MiniLMHead(MiniLMHead.Params(max_length=16, max_epochs=3))
    return model.build(dataset, seed=0, device=torch.device("cpu"))


@pytest.mark.slow
def test_partition_shap_maps_to_the_models_truncated_tokens_and_is_efficient(minilm):
    example = Example("long", LONG, 1)
    encoding = encode(minilm, example)
    length = len(encoding.tokens[0])
    assert length == 16 and len(minilm.tokenizer(LONG)["input_ids"]) > 16  # the model truncates
    # Enough evaluations for shap to split the tree down to [CLS] and [SEP]: with fewer, it leaves them part
    # of the credit of unexplored clusters, which is dropped (special tokens score 0).
    explainer = PartitionShap(PartitionShap.Params(max_evals=300))
    explainer.fit(minilm, TextDataset("one", minilm.labels, (), (), (example,)))
    text = explainer.model_visible_text(minilm.tokenizer, encoding, 0)
    assert LONG.startswith(text) and minilm.tokenizer(text)["input_ids"] == encoding.input_ids[0].tolist()

    scores = explainer.explain(minilm, encoding, POSITIVE)
    assert scores.shape == (1, length) and scores[0, 0] == 0 and scores[0, -1] == 0
    # Efficiency: the scores sum to f(x) − f(every real token masked), computed by the engine.
    remove = np.zeros((2, length), dtype=bool)
    remove[1, 1:-1] = True
    p = np.exp(evaluate(minilm, engine_inputs(encoding), [remove], masking="mask", batch_size=2)[0][:, 1])
    assert scores.sum().item() == pytest.approx(p[0] - p[1], abs=1e-5)


@pytest.mark.slow
def test_partition_shap_without_the_raw_text_explains_the_decoded_tokens_identically(minilm):
    encoding = encode(minilm, Example("long", LONG, 1))
    params = PartitionShap.Params(max_evals=60)
    fitted = PartitionShap(params)
    fitted.fit(minilm, TextDataset("one", minilm.labels, (), (), (Example("long", LONG, 1),)))
    unfitted = PartitionShap(params)  # no dataset: shap gets the model's tokens decoded (lower-cased here)
    assert unfitted.model_visible_text(minilm.tokenizer, encoding, 0) != fitted.model_visible_text(
        minilm.tokenizer, encoding, 0
    )
    torch.testing.assert_close(
        unfitted.explain(minilm, encoding, POSITIVE),
        fitted.explain(minilm, encoding, POSITIVE),
        atol=1e-6,
        rtol=0,
    )
