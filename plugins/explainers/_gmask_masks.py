"""The arithmetic of IMASK and GMASK (Chen & Ji 2020; Chen et al. 2021, §3): words as mask units, the
model inputs under word masks, relaxed samples of the masks, and the terms of the two objectives.

Everything here works on a batch of examples at once, each padded to the batch's number of words (and
groups); padded entries never reach a loss, a gradient or an output.

A word's mask w multiplies its tokens' word embeddings (x̃ = w ⊙ x, GMASK Eq. 1) and is their weight in
the attention mask the model reads (``TOKEN_WEIGHTS``), as the reference code multiplies the attention
mask by the mask: on a model that provides ``token-weights``, w = 0 is the word's deletion, the removal
the metrics apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from harness import Encoding, word_units

Unselected = Literal["deleted", "kept"]

TOKEN_WEIGHTS = "token-weights"
"""The capability the mask learners (imask, gmask, l2x with the model as its approximator) require: a model
whose ``Classifier.logits`` reads a floating-point ``attention_mask`` as token weights in [0, 1] (a token's
attention and pooling weight), weight 0 giving the model's output on the text with that token deleted,
later positions closing up (``minilm-head``). Integer masks keep their usual meaning. Without it a
masked word would be a zeroed word the model still attends to and pools, which is not what the removal
metrics delete (on MiniLM, pooled outputs with a word zeroed and with it deleted have cosine down to
0.52)."""
# A finite stand-in for log 0 on padded groups: softmax gives them exactly 0 without the NaN gradients
# that -inf produces through entropies.
_ABSENT = -1e4


# -- words as mask units --------------------------------------------------------------------------------


@dataclass
class Words:
    """The mask units of one example: ``unit`` (its length,) the word index of each token position
    (0.. in order of first appearance, -1 for special tokens); ``text`` the text (0 or 1) of each word."""

    unit: list[int]
    text: list[int]

    @property
    def count(self) -> int:
        return len(self.text)


def example_words(encoding: Encoding) -> list[Words]:
    """Each example's words (``harness.word_units``: keyed by word id, never merged across the two texts
    of a pair), with the text each word belongs to."""
    units, _ = word_units(encoding)
    result = []
    for row, segments in enumerate(encoding.segments):
        unit = units[row, : len(segments)].tolist()
        text_of: dict[int, int] = {}
        for word, segment in zip(unit, segments, strict=True):
            if word >= 0:
                text_of.setdefault(word, segment)
        result.append(Words(unit, [text_of[word] for word in range(len(text_of))]))
    return result


def word_values_per_token(words: Sequence[Words], values: Sequence[Sequence[float]], shape) -> torch.Tensor:
    """A (B, L) tensor giving every token of word j of example b the value ``values[b][j]``; 0 at special
    tokens and padding."""
    scores = torch.zeros(shape, dtype=torch.float64)  # 1 + θ stays above an IMASK value near 1
    for row, (example, row_values) in enumerate(zip(words, values, strict=True)):
        for position, unit in enumerate(example.unit):
            if unit >= 0:
                scores[row, position] = float(row_values[unit])
    return scores


# -- inputs under masks ---------------------------------------------------------------------------------


@dataclass
class MaskedInputs:
    """What the model reads under word masks, per example: the token positions it keeps (packed to the
    left, padded to the batch's longest), each one's mask unit (-1: a fixed multiplier instead) and the
    fixed multipliers (1 for special tokens and kept words, 0 for padding)."""

    embeddings: torch.Tensor  # (B, Lc, D) word embeddings of the kept positions
    attention_mask: torch.Tensor  # (B, Lc)
    token_type_ids: torch.Tensor | None  # (B, Lc)
    unit: torch.Tensor  # (B, Lc) long
    fixed: torch.Tensor  # (B, Lc) float

    @classmethod
    def build(
        cls,
        encoding: Encoding,
        embeddings: torch.Tensor,
        words: Sequence[Words],
        selected: Sequence[Sequence[int]] | None = None,
        unselected: Unselected = "deleted",
    ) -> MaskedInputs:
        """Every word of every example is a unit (``selected`` None: IMASK), or only the ``selected`` words
        (unit j = the j-th selected word: GMASK), the others ``deleted`` from the input or ``kept`` as they
        are. Special tokens are always kept with multiplier 1."""
        rows = []
        for row, example in enumerate(words):
            rank = None if selected is None else {word: j for j, word in enumerate(selected[row])}
            kept = []  # (position, unit, fixed multiplier)
            for position, word in enumerate(example.unit):
                if word < 0:
                    kept.append((position, -1, 1.0))
                elif rank is None or word in rank:
                    kept.append((position, word if rank is None else rank[word], 0.0))
                elif unselected == "kept":
                    kept.append((position, -1, 1.0))
            rows.append(kept)
        batch, width = len(rows), max([len(kept) for kept in rows] + [1])
        device = embeddings.device
        index = torch.zeros(batch, width, dtype=torch.long)
        attention = torch.zeros(batch, width, dtype=encoding.attention_mask.dtype)
        unit = torch.full((batch, width), -1, dtype=torch.long)
        fixed = torch.zeros(batch, width)
        for row, kept in enumerate(rows):
            if kept:
                positions, units, values = zip(*kept, strict=True)
                index[row, : len(kept)] = torch.tensor(positions, dtype=torch.long)
                attention[row, : len(kept)] = 1
                unit[row, : len(kept)] = torch.tensor(units, dtype=torch.long)
                fixed[row, : len(kept)] = torch.tensor(values)
        index = index.to(device)
        gathered = torch.gather(embeddings, 1, index[..., None].expand(-1, -1, embeddings.shape[-1]))
        gathered = gathered * attention.to(device)[..., None].to(gathered.dtype)  # padding: zero vectors
        token_types = None
        if encoding.token_type_ids is not None:
            token_types = torch.gather(encoding.token_type_ids.to(device), 1, index)
            token_types = token_types * attention.to(device).to(token_types.dtype)
        return cls(
            gathered, attention.to(device), token_types, unit.to(device), fixed.to(device, gathered.dtype)
        )

    def select(self, index: torch.Tensor) -> MaskedInputs:
        """The same inputs for the examples at ``index`` only."""
        types = None if self.token_type_ids is None else self.token_type_ids[index]
        return MaskedInputs(
            self.embeddings[index], self.attention_mask[index], types, self.unit[index], self.fixed[index]
        )

    def rows(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The model's inputs (inputs_embeds, attention_mask, token_type_ids) for word masks ``masks``
        (B, S, U) (U ≥ 1): S rows per example, example-major, each token's embedding times its word's mask
        (x̃ = W ⊙ x, Eq. 1) or its fixed multiplier, and the same multiplier as the token's weight in a
        floating-point attention mask (0 at padding): a word of mask 0 is deleted (``TOKEN_WEIGHTS``)."""
        batch, samples, _ = masks.shape
        width = self.unit.shape[1]
        index = self.unit.clamp(min=0)[:, None, :].expand(batch, samples, width)
        per_token = torch.gather(masks, 2, index)
        per_token = torch.where(self.unit[:, None, :] >= 0, per_token, self.fixed[:, None, :])
        embeds = per_token[..., None].to(self.embeddings.dtype) * self.embeddings[:, None]
        embeds = embeds.reshape(batch * samples, width, -1)
        weights = per_token.float() * self.attention_mask[:, None, :].float()
        attention = weights.reshape(batch * samples, width)
        types = None if self.token_type_ids is None else self.token_type_ids.repeat_interleave(samples, dim=0)
        return embeds, attention, types


# -- relaxed samples ------------------------------------------------------------------------------------


def gumbel_noise(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard Gumbel noise −log(−log u), u ~ Uniform(0, 1) (Eq. 12), drawn on the CPU from ``generator``."""
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return (-torch.log(-torch.log(uniform))).float()


def relaxed_categorical(
    log_probabilities: torch.Tensor, gumbel: torch.Tensor, temperature: float, straight_through: bool = False
) -> torch.Tensor:
    """Gumbel-softmax samples softmax((log λ + s) / τ) over the last dimension (Eq. 13); with
    ``straight_through`` the one-hot argmax in the forward pass and the soft sample's gradient."""
    soft = torch.softmax((log_probabilities + gumbel) / temperature, dim=-1)
    if not straight_through:
        return soft
    hard = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def relaxed_bernoulli(
    logits: torch.Tensor, gumbel: torch.Tensor, temperature: float, straight_through: bool = False
) -> torch.Tensor:
    """Binary Concrete samples σ((ℓ + s₁ − s₀) / τ) of Bernoulli(σ(ℓ)) variables (the two-category
    Gumbel-softmax with logits ℓ and 0); ``gumbel`` (..., 2) holds s₁, s₀."""
    soft = torch.sigmoid((logits + gumbel[..., 0] - gumbel[..., 1]) / temperature)
    if not straight_through:
        return soft
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


def group_word_masks(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Word masks w_j = z_j · g (Eq. 2, relaxed): z (..., K, T) group assignments, g (..., T) the selected
    group; (..., K)."""
    return (z * g[..., None, :]).sum(-1)


# -- objective terms ------------------------------------------------------------------------------------


def entropy(probabilities: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Shannon entropy (natural log) over the last dimension, counting only ``valid`` entries."""
    if valid is not None:
        probabilities = torch.where(valid, probabilities, torch.ones_like(probabilities))
    return torch.special.entr(probabilities).sum(-1)


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, log-probabilities) over the last dimension, exactly 0 where not ``valid``."""
    log_probabilities = torch.log_softmax(torch.where(valid, logits, torch.full_like(logits, _ABSENT)), -1)
    return log_probabilities.exp(), log_probabilities


def text_entropies(phi: torch.Tensor, word_text: torch.Tensor, group_valid: torch.Tensor) -> torch.Tensor:
    """H(Z_U) and H(Z_L) (Eq. 6) per example, (B, 2): the entropy of φ_U (φ_L), the mean of φ_j over the
    words of text 1 (text 2). ``phi`` (B, K, T); ``word_text`` (B, K) 0, 1 or -1 (padding); a text without
    words contributes 0."""
    entropies = []
    for text in (0, 1):
        member = (word_text == text).to(phi.dtype)
        count = member.sum(1)
        mean = (phi * member[..., None]).sum(1) / count.clamp(min=1)[:, None]
        # A text without words: entropy of all-ones, 0 (a mean of 0 would give NaN gradients).
        mean = torch.where((count > 0)[:, None], mean, torch.ones_like(mean))
        entropies.append(entropy(mean, group_valid))
    return torch.stack(entropies, dim=1)


def expected_masks(phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """θ_j = Σ_ι φ_j(ι) ψ(ι) (Eq. 8): the probability that word j is kept; (B, K)."""
    return (phi * psi[..., None, :]).sum(-1)


def gmask_objective(
    cross_entropy: torch.Tensor,
    phi: torch.Tensor,
    psi: torch.Tensor,
    word_text: torch.Tensor,
    group_valid: torch.Tensor,
    gamma1: float,
    gamma2: float,
) -> dict[str, torch.Tensor]:
    """Eq. 7 per example: mean over samples of L_ce(ŷ, f(x̃)) − γ1 (H(Z_U) + H(Z_L)) + γ2 H(G).

    ``cross_entropy`` (B, S) of each sample; ``phi`` (B, K, T), ``psi`` (B, T); ``word_text`` (B, K) the
    text of each selected word (-1: padding); ``group_valid`` (B, T). Returns every term, (B,) each."""
    texts = text_entropies(phi, word_text, group_valid)
    groups = entropy(psi, group_valid)
    ce = cross_entropy.mean(-1)
    loss = ce - gamma1 * texts.sum(-1) + gamma2 * groups
    return {
        "loss": loss,
        "cross_entropy": ce,
        "h_upper": texts[:, 0],
        "h_lower": texts[:, 1],
        "h_groups": groups,
    }


def bernoulli_kl_to_half(logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(σ(ℓ)) ‖ Bernoulli(½)) = p log p + (1 − p) log(1 − p) + log 2, elementwise: VMASK's
    regulariser (Chen & Ji 2020), 0 at p = ½."""
    p = torch.sigmoid(logits)
    log_p, log_q = torch.nn.functional.logsigmoid(logits), torch.nn.functional.logsigmoid(-logits)
    return p * log_p + (1 - p) * log_q + math.log(2)


def imask_objective(
    cross_entropy: torch.Tensor, logits: torch.Tensor, valid: torch.Tensor, beta: float
) -> dict[str, torch.Tensor]:
    """IMASK per example: mean over samples of L_ce(ŷ, f(x̃)) + β Σ_j KL(Bernoulli(σ(ℓ_j)) ‖ Bernoulli(½)),
    the sum over the example's words (``valid``, (B, U)). Returns every term, (B,) each."""
    ce = cross_entropy.mean(-1)
    kl = (bernoulli_kl_to_half(logits) * valid.to(logits.dtype)).sum(-1)
    return {"loss": ce + beta * kl, "cross_entropy": ce, "kl": kl}


def select_words(values: Sequence[float], texts: Sequence[int], k: int) -> list[int]:
    """GMASK's pre-selection (§3.3): the k words of highest IMASK value (ties: the earlier word), in that
    order. In a pair where they all come from one text, the ⌊k/2⌋ (at least 1) best of each text instead,
    as the reference implementation does, so that a group can hold words of both texts."""
    order = sorted(range(len(values)), key=lambda word: (-values[word], word))
    top = order[:k]
    if len(set(texts)) == 2 and len({texts[word] for word in top}) < 2:
        half = max(1, k // 2)
        chosen = set()
        for text in (0, 1):
            chosen |= set([word for word in order if texts[word] == text][:half])
        top = [word for word in order if word in chosen]
    return top
