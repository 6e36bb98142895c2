"""IMASK and GMASK (Chen & Ji 2020; Chen et al. 2021): the objectives' terms against values computed by
hand from Eq. 2, 6, 7 and 8, the pre-selection, the model inputs under masks, and both explainers on toy
models whose deciding words are known."""

from __future__ import annotations

import math

import pytest
import torch
from pair_toys import GUITAR_PAIR, AndPairClassifier, RecordingClassifier

from harness import Example
from harness.testing import CLS, SEP, KitClassifier, check_explainer, kit_dataset
from plugins.explainers._gmask_masks import (
    MaskedInputs,
    bernoulli_kl_to_half,
    example_words,
    expected_masks,
    gmask_objective,
    group_word_masks,
    imask_objective,
    relaxed_bernoulli,
    relaxed_categorical,
    select_words,
)
from plugins.explainers.gmask import GMask, IMask

FAST_GMASK = {"steps": 40, "samples": 16, "imask_steps": 10, "imask_samples": 8}


def explain(explainer, classifier, examples, target=None):
    encoding = classifier.encode(examples)
    encoding.example_ids = [example.id for example in examples]
    predicted = classifier.log_probabilities(encoding).argmax(-1)
    targets = predicted if target is None else torch.full_like(predicted, target)
    return explainer.explain(classifier, encoding, targets), encoding


def word_scores(scores: torch.Tensor, encoding, row: int = 0) -> dict[str, float]:
    """Each word's score (its first token's), keyed by the word's first token."""
    result = {}
    for position, (token, segment) in enumerate(
        zip(encoding.tokens[row], encoding.segments[row], strict=True)
    ):
        if segment >= 0 and not token.startswith("##"):
            result[token] = float(scores[row, position])
    return result


# -- GMASK's objective (Eq. 6–8) --------------------------------------------------------------------------

# Three selected words, the first two of text 1, the third of text 2; two groups.
PHI = torch.tensor([[[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]])
PSI = torch.tensor([[0.9, 0.1]])
TEXTS = torch.tensor([[0, 0, 1]])
GROUPS = torch.tensor([[True, True]])


def test_gmask_objective_terms_match_the_hand_computed_entropies():
    # φ_U = mean of rows 1–2 = (0.6, 0.4): H = −(0.6 ln 0.6 + 0.4 ln 0.4) = 0.673012;
    # φ_L = (0.3, 0.7): H = 0.610864; H(G) = −(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325083.
    # Cross-entropies 0.5 and 1.5: mean 1. Loss = 1 − 10 (0.673012 + 0.610864) + 1 × 0.325083.
    terms = gmask_objective(torch.tensor([[0.5, 1.5]]), PHI, PSI, TEXTS, GROUPS, gamma1=10.0, gamma2=1.0)
    assert float(terms["h_upper"][0]) == pytest.approx(0.6730116670092565, abs=1e-6)
    assert float(terms["h_lower"][0]) == pytest.approx(0.6108643020548935, abs=1e-6)
    assert float(terms["h_groups"][0]) == pytest.approx(0.3250829733914482, abs=1e-6)
    assert float(terms["cross_entropy"][0]) == pytest.approx(1.0)
    assert float(terms["loss"][0]) == pytest.approx(-11.513676717250052, abs=1e-5)


def test_padded_words_and_groups_change_no_term():
    # The same example padded to 4 words and 3 groups (as in a batch with a larger example).
    phi = torch.zeros(1, 4, 3)
    phi[0, :3, :2] = PHI[0]
    psi = torch.tensor([[0.9, 0.1, 0.0]])
    texts = torch.tensor([[0, 0, 1, -1]])
    groups = torch.tensor([[True, True, False]])
    padded = gmask_objective(torch.tensor([[0.5, 1.5]]), phi, psi, texts, groups, 10.0, 1.0)
    plain = gmask_objective(torch.tensor([[0.5, 1.5]]), PHI, PSI, TEXTS, GROUPS, 10.0, 1.0)
    for name, value in plain.items():
        assert float(padded[name][0]) == pytest.approx(float(value[0]), abs=1e-6), name


def test_a_text_without_selected_words_contributes_no_entropy():
    terms = gmask_objective(torch.tensor([[1.0]]), PHI[:, :2], PSI, TEXTS[:, :2], GROUPS, 10.0, 1.0)
    assert float(terms["h_lower"][0]) == 0.0
    assert float(terms["h_upper"][0]) == pytest.approx(0.6730116670092565, abs=1e-6)


def test_attribution_is_the_expected_mask_of_eq_8():
    # θ_j = Σ_ι φ_j(ι) ψ(ι): 0.8·0.9 + 0.2·0.1 = 0.74; 0.4·0.9 + 0.6·0.1 = 0.42; 0.3·0.9 + 0.7·0.1 = 0.34.
    assert expected_masks(PHI, PSI)[0].tolist() == pytest.approx([0.74, 0.42, 0.34])


def test_word_masks_keep_the_words_of_the_sampled_group():
    # Words 1 and 3 assigned to group 2, word 2 to group 1; group 2 sampled: w = (1, 0, 1) (Eq. 2).
    z = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    g = torch.tensor([[0.0, 1.0]])
    assert group_word_masks(z, g)[0].tolist() == [1.0, 0.0, 1.0]


def test_relaxed_samples_follow_the_gumbel_argmax_and_straight_through_is_one_hot():
    log_probabilities = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    noise = torch.tensor([0.1, -0.4, 0.9])  # log λ + s: −1.51, −1.09, −0.30: the third category wins
    cold = relaxed_categorical(log_probabilities, noise, temperature=0.01)
    assert cold.tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)
    warm = relaxed_categorical(log_probabilities, noise, temperature=0.5)
    assert 0.0 < float(warm[0]) < float(warm[1]) < float(warm[2]) < 1.0
    hard = relaxed_categorical(log_probabilities, noise, temperature=0.5, straight_through=True)
    assert hard.tolist() == [0.0, 0.0, 1.0]


def test_binary_concrete_sample_by_hand():
    # σ((ℓ + s₁ − s₀)/τ) with ℓ = 0.5, s₁ = 0.2, s₀ = −0.3, τ = 0.5: σ(2.0) = 0.880797.
    sample = relaxed_bernoulli(torch.tensor([0.5]), torch.tensor([[0.2, -0.3]]), temperature=0.5)
    assert float(sample[0]) == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-6)
    hard = relaxed_bernoulli(torch.tensor([0.5]), torch.tensor([[0.2, -0.3]]), 0.5, straight_through=True)
    assert float(hard[0]) == 1.0


# -- IMASK's objective ------------------------------------------------------------------------------------


def test_imask_objective_by_hand():
    # p = σ(0) = ½: KL 0; p = σ(ln 3) = ¾: KL = ¾ ln ¾ + ¼ ln ¼ + ln 2 = 0.130812. The third word is padding.
    logits = torch.tensor([[0.0, math.log(3.0), 5.0]])
    valid = torch.tensor([[True, True, False]])
    assert bernoulli_kl_to_half(logits[:, :2])[0].tolist() == pytest.approx(
        [0.0, 0.130812035941137], abs=1e-6
    )
    terms = imask_objective(torch.tensor([[0.2, 0.4]]), logits, valid, beta=0.1)
    assert float(terms["kl"][0]) == pytest.approx(0.130812035941137, abs=1e-6)
    assert float(terms["loss"][0]) == pytest.approx(0.3130812035941137, abs=1e-6)


# -- pre-selection ----------------------------------------------------------------------------------------


def test_selection_takes_the_top_k_words_in_imask_order():
    values = [0.1, 0.9, 0.5, 0.7, 0.3]
    assert select_words(values, [0, 0, 0, 1, 1], k=3) == [1, 3, 2]


def test_selection_in_a_pair_with_one_side_empty_takes_half_of_k_from_each_text():
    # The top k are all of text 1: instead the ⌊k/2⌋ best of each text (at least one).
    values = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.05]
    texts = [0, 0, 0, 0, 1, 1, 1]
    assert select_words(values, texts, k=4) == [0, 1, 4, 5]
    assert select_words(values, texts, k=1) == [0, 4]


def test_selection_of_a_single_text_is_its_top_k():
    assert select_words([0.2, 0.6, 0.4], [0, 0, 0], k=2) == [1, 2]


# -- inputs under masks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unselected", "kept_tokens", "multipliers"),
    [
        # [CLS] i play the elec ##tric guit ##ar ever ##y day [SEP] she owns a banj ##o at home [SEP]
        # selected: "guitar" (word 4) and "banjo" (word 10) with masks 0.25 and 0.75.
        (
            "deleted",
            ["[CLS]", "guit", "##ar", "[SEP]", "banj", "##o", "[SEP]"],
            [1, 0.25, 0.25, 1, 0.75, 0.75, 1],
        ),
        ("kept", None, [1, 1, 1, 1, 1, 1, 0.25, 0.25, 1, 1, 1, 1, 1, 1, 1, 0.75, 0.75, 1, 1, 1]),
    ],
)
def test_unselected_words_are_deleted_or_kept_and_masks_weight_embeddings_and_attention(
    unselected, kept_tokens, multipliers
):
    classifier = AndPairClassifier()
    encoding = classifier.encode([GUITAR_PAIR])
    embeddings = classifier.input_embeddings(encoding.input_ids)
    words = example_words(encoding)
    inputs = MaskedInputs.build(encoding, embeddings, words, [[4, 10]], unselected)
    embeds, attention, _ = inputs.rows(torch.tensor([[[0.25, 0.75]]]))
    tokens = kept_tokens or encoding.tokens[0]
    expected = torch.stack([classifier.input_embeddings(torch.tensor(classifier.index[t])) for t in tokens])
    assert attention.dtype.is_floating_point  # token weights, not a 0/1 padding mask
    assert attention[0].tolist() == multipliers
    assert torch.allclose(embeds[0], expected * torch.tensor(multipliers)[:, None])


def test_every_sub_token_of_a_word_shares_its_mask():
    classifier = AndPairClassifier()
    encoding = classifier.encode([GUITAR_PAIR])
    words = example_words(encoding)
    guitar = encoding.tokens[0].index("guit")
    assert words[0].unit[guitar] == words[0].unit[guitar + 1] == 4
    assert words[0].text == [0] * 7 + [1] * 6


# -- the explainers on toy models --------------------------------------------------------------------------


def test_imask_ranks_the_deciding_word_first_on_the_kit_classifier():
    dataset = kit_dataset(pairs=True)
    classifier = KitClassifier(kit_dataset())
    examples = list(dataset.test[:4])
    scores, encoding = explain(IMask(IMask.Params(steps=15), seed=0), classifier, examples)
    for row, example in enumerate(examples):
        ranked = sorted(word_scores(scores, encoding, row).items(), key=lambda item: -item[1])
        assert ranked[0][0] == ("good" if example.label else "bad")


def test_gmask_groups_the_two_words_of_an_and_across_the_pair():
    classifier = AndPairClassifier()
    explanation, encoding = explain(GMask(GMask.Params(**FAST_GMASK), seed=0), classifier, [GUITAR_PAIR], 1)
    tokens = encoding.tokens[0]
    guitar, banjo = tokens.index("guit"), tokens.index("banj")
    group = int(explanation.groups[0, guitar])
    assert group == int(explanation.groups[0, banjo]) >= 0
    psi = explanation.group_scores[0]
    assert group == int(torch.nan_to_num(psi, nan=-1.0).argmax())
    ranked = sorted(word_scores(explanation.scores, encoding).items(), key=lambda item: -item[1])
    assert {ranked[0][0], ranked[1][0]} == {"guit", "banj"}


def test_gmask_ranks_unselected_words_below_selected_ones_in_imask_order():
    classifier = AndPairClassifier()
    explanation, encoding = explain(
        GMask(GMask.Params(**FAST_GMASK, k=4), seed=0), classifier, [GUITAR_PAIR], 1
    )
    real = ~encoding.special_mask[0]
    scores, imask, groups = explanation.scores[0], explanation.extras["imask"][0], explanation.groups[0]
    selected = real & (groups >= 0)
    unselected = real & (groups < 0)
    assert len(set(encoding.word_ids[0][p] for p in range(len(real)) if selected[p])) == 4
    assert float(scores[selected].min()) > float(scores[unselected].max())
    assert torch.equal(scores[unselected], imask[unselected])  # ordered as IMASK orders them
    assert bool((imask[real] < 1).all()) and bool((scores[selected] > 1).all())


def test_gmask_on_a_single_text_uses_min_groups_groups():
    classifier = AndPairClassifier()
    single = Example(id="single", text=GUITAR_PAIR.text, label=0)
    explanation, _ = explain(GMask(GMask.Params(**FAST_GMASK, min_groups=3), seed=0), classifier, [single])
    psi = explanation.group_scores[0]
    assert psi.shape == (3,) and bool(torch.isfinite(psi).all())
    assert float(psi.sum()) == pytest.approx(1.0, abs=1e-5)


def test_the_number_of_groups_is_the_smaller_side_of_the_selection():
    classifier = AndPairClassifier()
    # k = 10 of 13 words (7 in text 1, 6 in text 2): at least 3 per side, t = min(k1, k2) ≥ 3.
    explanation, encoding = explain(GMask(GMask.Params(**FAST_GMASK), seed=0), classifier, [GUITAR_PAIR], 1)
    selected = {
        encoding.word_ids[0][p]: s
        for p, s in enumerate(encoding.segments[0])
        if explanation.groups[0, p] >= 0
    }
    counts = [sum(1 for s in selected.values() if s == text) for text in (0, 1)]
    assert sum(counts) == 10
    assert explanation.group_scores.shape[1] == min(counts)


def test_special_tokens_are_never_masked():
    inner = AndPairClassifier()
    cls, sep = inner.input_embeddings(torch.tensor([CLS, SEP]))
    for explainer in (
        IMask(IMask.Params(steps=3, samples=4)),
        GMask(GMask.Params(**{**FAST_GMASK, "steps": 3})),
    ):
        recording = RecordingClassifier(inner)
        explain(explainer, recording, [GUITAR_PAIR], 1)
        assert recording.seen
        for embeds, attention in recording.seen:
            for row, mask in zip(embeds, attention, strict=True):
                read = row[mask.bool()]
                assert torch.equal(read[0], cls)
                assert sum(bool(torch.equal(vector, sep)) for vector in read) == 2  # both [SEP]s, untouched


def test_imask_masks_every_word_it_reads():
    recording = RecordingClassifier(AndPairClassifier())
    explain(IMask(IMask.Params(steps=1, samples=2)), recording, [GUITAR_PAIR], 1)
    embeds, _ = recording.seen[0]
    full = recording.input_embeddings(recording.encode([GUITAR_PAIR]).input_ids)[0]
    changed = [not torch.equal(embeds[0, p], full[p]) for p in range(full.shape[0])]
    segments = recording.encode([GUITAR_PAIR]).segments[0]
    assert changed == [s >= 0 for s in segments]


def test_gmask_is_deterministic_per_example_and_seed():
    dataset = kit_dataset(pairs=True)
    classifier = KitClassifier(kit_dataset())
    examples = list(dataset.test[:3])
    params = GMask.Params(steps=10, samples=8, imask_steps=5, imask_samples=4)
    batch, encoding = explain(GMask(params, seed=0), classifier, examples)
    again, _ = explain(GMask(params, seed=0), classifier, examples)
    assert torch.equal(batch.scores, again.scores)
    alone, _ = explain(GMask(params, seed=0), classifier, examples[1:2])
    length = len(encoding.tokens[1])
    assert torch.allclose(alone.scores[0, :length], batch.scores[1, :length], atol=1e-5, rtol=1e-4)
    other, _ = explain(GMask(params, seed=1), classifier, examples)
    assert not torch.equal(other.scores, batch.scores)


def test_imask_is_deterministic_per_seed():
    classifier = AndPairClassifier()
    first, _ = explain(IMask(IMask.Params(steps=5), seed=0), classifier, [GUITAR_PAIR], 1)
    second, _ = explain(IMask(IMask.Params(steps=5), seed=0), classifier, [GUITAR_PAIR], 1)
    other, _ = explain(IMask(IMask.Params(steps=5), seed=1), classifier, [GUITAR_PAIR], 1)
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_gmask_stops_early_with_patience():
    calls = []

    class Counting(RecordingClassifier):
        def logits(self, **inputs):
            calls.append(1)
            return super().logits(**inputs)

    classifier = Counting(AndPairClassifier())
    params = {**FAST_GMASK, "imask_steps": 1, "steps": 100}
    explain(GMask(GMask.Params(**params, patience=2)), classifier, [GUITAR_PAIR], 1)
    early = len(calls)
    calls.clear()
    explain(GMask(GMask.Params(**params)), classifier, [GUITAR_PAIR], 1)
    assert early < len(calls) == 1 + 1 + 100  # the prediction, 1 IMASK step, every GMASK step


def test_imask_passes_the_conformance_kit():
    check_explainer(IMask, {"steps": 4, "samples": 4})


def test_gmask_passes_the_conformance_kit():
    check_explainer(GMask, {"steps": 4, "samples": 4, "imask_steps": 3, "imask_samples": 4})
