"""Attention weights as token scores: the last layer's [CLS] attention, or attention rollout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from pydantic import Field

from harness import Classifier, Encoding, Explainer, ExplainerParams


def last_layer_mean(
    attentions: Sequence[torch.Tensor], positions: torch.Tensor | None = None
) -> torch.Tensor:
    """The attention the position each row is read from (``positions``, (B,); the first, [CLS], by
    default) pays to each token in the last layer, averaged over heads: (B, L) from per-layer
    (B, heads, L, L)."""
    mean = attentions[-1].mean(dim=1)
    return mean[:, 0, :] if positions is None else _rows(mean, positions)


def _rows(matrices: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Row ``positions[b]`` of each matrix ``b``: (B, L) from (B, L, L)."""
    return matrices[torch.arange(matrices.shape[0], device=matrices.device), positions.to(matrices.device)]


def rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020), (B, L, L): per layer, the heads' mean attention plus the
    identity for the residual connection, rows renormalised, multiplied from the first layer up:
    R = Â_n ⋯ Â_1 with Â = (A + I) / rowsum. Row i is how much input token i's information reaches
    position i of the last layer, and each row sums to 1."""
    result = None
    for layer in attentions:
        mean = layer.mean(dim=1)
        mixed = mean + torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result


class AttentionParams(ExplainerParams):
    method: Literal["last-layer-mean", "rollout"] = Field(
        "last-layer-mean",
        description="last-layer-mean: attention from the position the model reads its prediction from "
        "([CLS] in an encoder, the last token in a causal decoder) to each token in the last layer, mean over "
        "heads; rollout: that position's row of attention rollout through all layers (Abnar & Zuidema 2020)",
    )


class Attention(Explainer):
    """Attention weights from the position the prediction is read from ([CLS] in an encoder, the last token
    in a causal decoder): in the last layer, or rolled out through all layers.

    Attention as explanation is a test-based method in the taxonomy of Sun et al. 2021 (Interpreting Deep
    Learning Models in NLP: A Review, §4.2), whose faithfulness is debated: Jain & Wallace 2019 (Attention
    is not Explanation), Wiegreffe & Pinter 2019 (Attention is not not Explanation). Rollout is Abnar &
    Zuidema 2020, Quantifying Attention Flow in Transformers.

    ``last-layer-mean`` is the last layer's attention from the position the classifier reads its prediction
    from (``Classifier.output_positions``: the first, [CLS] / <s>, in an encoder; the last attended one in a
    causal decoder such as Llama or GPT-2, whose first position attends only to itself) to every token,
    averaged over heads. ``rollout`` adds the identity to each layer's head-averaged attention for the
    residual connection, renormalises the rows and multiplies the layers through; the score is that
    position's row.

    Attention is not a target-specific explanation: the scores are the same whatever class is explained
    (the ``target`` is ignored), and they are non-negative. The model's ``attentions`` provides the weights:
    the explainer requires ``attentions``, so the grid leaves it out on models that do not provide them
    (e.g. ``bow``) instead of failing those cells.
    """

    name: ClassVar[str] = "attention"
    Params = AttentionParams
    requires: ClassVar[frozenset[str]] = frozenset({"attentions"})
    paper: ClassVar[str] = (
        "Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers; Jain & Wallace 2019"
    )

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        attentions = classifier.attentions(encoding)
        positions = classifier.output_positions(encoding.attention_mask)
        if self.params.method == "rollout":
            return _rows(rollout(attentions), positions).float()
        return last_layer_mean(attentions, positions).float()
