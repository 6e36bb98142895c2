"""The explanation model g_φ of L2E (Situ et al., 2021, "Learning to Explain: Generating Stable
Explanations Fast"): a small Transformer encoder distilled from a teacher explainer's token weights.

The student reads the black box's input word embeddings of a document and the class ŷ the black box
predicted, and is trained in one of the paper's two formulations (§3):

- ``ranking``: one score per token; a pairwise loss teaches it the order of the teacher's |w|.
- ``sequence-labeling``: five labels per token (high/low × negative/positive, and neutral), from the
  teacher's weights discretised per document; cross-entropy loss.

Pure torch: the caller computes the features and the teacher weights and turns scores into attributions.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from harness import IGNORE_INDEX, LABEL_VALUES, discretise

FORMULATIONS = ("ranking", "sequence-labeling")


def _check_formulation(formulation: str) -> None:
    if formulation not in FORMULATIONS:
        raise ValueError(f"unknown L2E formulation {formulation!r}; expected one of {FORMULATIONS}")


def _ordered_pairs(weights: Tensor, mask: Tensor) -> Tensor:
    """(B, L, L) bool: True at [b, i, j] where i and j are real tokens and |w_i| > |w_j|, so that each
    unordered pair with unequal |w| appears exactly once, its more important token first."""
    mask = mask.bool()
    magnitude = weights.abs()
    both_real = mask[:, :, None] & mask[:, None, :]
    return both_real & (magnitude[:, :, None] > magnitude[:, None, :])


def pairwise_ranking_loss(scores: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
    """The ranking loss of L2E, per document: Σ over pairs i < j of real tokens of
    −log(e^{v_k} / (e^{v_i} + e^{v_j})), with k the one of i, j whose teacher weight has the larger |w|.

    Each term equals −log σ(v_k − v_other), computed with ``logsigmoid`` for stability. Pairs with equal
    |w| carry no order and are skipped (``ranking_pair_counts`` gives how many pairs count). Memory and
    time are quadratic in length (B·L² floats): practical up to a few hundred tokens.

    scores, weights: (B, L) float; mask: (B, L) bool, True for real tokens. Returns (B,) losses.
    """
    pairs = _ordered_pairs(weights, mask)
    margins = scores[:, :, None] - scores[:, None, :]
    terms = -functional.logsigmoid(margins)
    return torch.where(pairs, terms, torch.zeros_like(terms)).sum((1, 2))


def ranking_pair_counts(weights: Tensor, mask: Tensor) -> Tensor:
    """(B,) number of token pairs that ``pairwise_ranking_loss`` counts: real tokens with unequal |w|."""
    return _ordered_pairs(weights, mask).sum((1, 2))


class StudentNetwork(nn.Module):
    """g_φ: a Transformer encoder over the black box's word embeddings, conditioned on its prediction.

    As in §4.3 of the paper, the predicted class ŷ is placed as a token at the start and right after the
    last real token of each (right-padded) row: the encoder reads [ŷ, x_1..x_n, ŷ, pad...]. The paper
    uses 4 blocks and 4 heads. Parameters are initialised from torch's global generator: seed it
    (``torch.manual_seed``) before construction to choose an initialisation.

    forward returns (B, L) scores for ``ranking`` and (B, L, 5) label logits for ``sequence-labeling``,
    at the positions of x_1..x_L (outputs at padded positions are meaningless).
    """

    def __init__(
        self,
        input_dim: int,
        n_classes: int,
        formulation: str,
        *,
        d_model: int = 128,
        blocks: int = 4,
        heads: int = 4,
        feedforward: int = 256,
        dropout: float = 0.1,
        max_positions: int = 514,
    ) -> None:
        super().__init__()
        _check_formulation(formulation)
        self.formulation = formulation
        self.max_positions = max_positions
        self.projection = nn.Linear(input_dim, d_model)
        self.label_embedding = nn.Embedding(n_classes, d_model)
        self.position_embedding = nn.Embedding(max_positions, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, feedforward, dropout, activation="gelu", batch_first=True
        )
        # The nested-tensor fast path would drop padded positions; keep dense tensors throughout.
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1 if formulation == "ranking" else len(LABEL_VALUES))

    def forward(self, features: Tensor, attention_mask: Tensor, predicted: Tensor) -> Tensor:
        """features: (B, L, input_dim); attention_mask: (B, L) 0/1, rows right-padded; predicted: (B,)."""
        batch, length, _ = features.shape
        if length + 2 > self.max_positions:
            raise ValueError(f"{length} tokens exceed the student's {self.max_positions - 2} positions")
        lengths = attention_mask.long().sum(1)
        label = self.label_embedding(predicted)
        hidden = torch.cat([label[:, None], self.projection(features), label[:, None]], dim=1)
        rows = torch.arange(batch, device=features.device)
        hidden[rows, lengths + 1] = label
        positions = torch.arange(length + 2, device=features.device)
        hidden = self.dropout(self.norm(hidden + self.position_embedding(positions)))
        padding = positions[None, :] > (lengths + 1)[:, None]
        encoded = self.encoder(hidden, src_key_padding_mask=padding)
        output = self.head(encoded[:, 1 : length + 1])
        return output.squeeze(-1) if self.formulation == "ranking" else output


def scores_and_labels(output: Tensor, formulation: str) -> tuple[Tensor, Tensor | None]:
    """Token scores, and labels for ``sequence-labeling``, from the student's output.

    ranking: importance scores softplus(v) > 0, in float64 (the same order as the student's v, but
    positive, so "the top words" means the same in every metric: highest score, largest magnitude and
    most positive coincide), and no labels. sequence-labeling: the score is the expected label
    value Σ_c p_c · LABEL_VALUES[c] (signed: positive words score above zero), the label is the value of
    the most probable class (a LongTensor in -2..2, 0 neutral).
    """
    _check_formulation(formulation)
    if formulation == "ranking":
        return torch.nn.functional.softplus(output.double()), None
    values = torch.tensor(LABEL_VALUES, device=output.device)
    scores = output.softmax(-1) @ values.to(output.dtype)
    return scores, values[output.argmax(-1)]


def distillation_loss(output: Tensor, weights: Tensor, mask: Tensor, formulation: str) -> Tensor:
    """The training loss of a batch, a scalar.

    ranking: the pairwise ranking losses summed over the batch, divided by the number of counted pairs
    (at least 1). sequence-labeling: mean cross-entropy over the tokens where ``mask`` is True, against
    ``discretise(weights, mask)``.
    """
    _check_formulation(formulation)
    if formulation == "ranking":
        pairs = ranking_pair_counts(weights, mask).sum().clamp(min=1)
        return pairwise_ranking_loss(output, weights, mask).sum() / pairs
    targets = discretise(weights, mask)
    total = functional.cross_entropy(
        output.reshape(-1, output.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total / mask.bool().sum().clamp(min=1)


@dataclass
class StudentBatch:
    """One training batch, all tensors on the student's device.

    features: (B, L, input_dim) detached word embeddings; attention_mask: (B, L) 0/1 real tokens, right
    padded; mask: (B, L) bool, the tokens to learn (e.g. real tokens without specials); predicted: (B,)
    the black box's classes; weights: (B, L) the teacher's attributions.
    """

    features: Tensor
    attention_mask: Tensor
    mask: Tensor
    predicted: Tensor
    weights: Tensor


def _batch_loss(network: StudentNetwork, batch: StudentBatch, formulation: str) -> Tensor:
    output = network(batch.features, batch.attention_mask, batch.predicted)
    return distillation_loss(output, batch.weights, batch.mask, formulation)


def _mean_loss(network: StudentNetwork, batches: list[StudentBatch], formulation: str) -> float:
    network.eval()
    with torch.no_grad():
        return sum(_batch_loss(network, batch, formulation).item() for batch in batches) / len(batches)


def train_student(
    network: StudentNetwork,
    train: list[StudentBatch],
    validation: list[StudentBatch],
    *,
    formulation: str,
    max_epochs: int,
    patience: int,
    learning_rate: float,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict:
    """Train the student on the teacher's explanations (Algorithm 1, lines 14–18) with early stopping.

    The paper trains with SGD at a fixed rate of 1e-4 "until convergence"; Adam at ``learning_rate``
    reaches convergence within a CPU budget. Each epoch visits the training batches in an order drawn
    from a generator seeded with ``seed`` (dropout draws from torch's global generator), clips gradients
    at norm 1.0, then computes the mean validation loss (eval mode, no gradients), or the epoch's mean
    training loss when ``validation`` is empty. Training stops after ``patience`` epochs without a
    strictly lower loss, or after ``max_epochs``; the best epoch's weights are restored and the network is
    left in eval mode. ``on_epoch(epoch, monitored_loss)`` is called after every epoch (1-based).

    Returns {"epochs", "best_epoch", "best_validation_loss", "train_loss" (last epoch's mean), "seconds"}.
    """
    _check_formulation(formulation)
    if not train:
        raise ValueError("the student needs at least one training batch")
    if max_epochs < 1 or patience < 1:
        raise ValueError(f"max_epochs ({max_epochs}) and patience ({patience}) must be at least 1")
    start = time.perf_counter()
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(network.state_dict())
    for epoch in range(1, max_epochs + 1):
        network.train()
        losses = []
        for index in torch.randperm(len(train), generator=generator).tolist():
            optimiser.zero_grad()
            loss = _batch_loss(network, train[index], formulation)
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimiser.step()
            losses.append(loss.item())
        train_loss = sum(losses) / len(losses)
        monitored = _mean_loss(network, validation, formulation) if validation else train_loss
        if on_epoch is not None:
            on_epoch(epoch, monitored)
        if monitored < best_loss:
            best_loss, best_epoch, best_state = monitored, epoch, copy.deepcopy(network.state_dict())
        elif epoch - best_epoch >= patience:
            break
    network.load_state_dict(best_state)
    network.eval()
    return {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "best_validation_loss": best_loss,
        "train_loss": train_loss,
        "seconds": time.perf_counter() - start,
    }
