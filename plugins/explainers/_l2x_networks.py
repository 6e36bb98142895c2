"""The pieces of L2X (Chen, Song, Wainwright & Jordan 2018, "Learning to Explain: An Information-Theoretic
Perspective on Model Interpretation"), over words of a (possibly paired) text:

- ``word_logits`` / ``token_values``: token logits pooled per word (mean), word values spread back to tokens;
- ``relaxed_subset``: the continuous subset sampler of §4 (k Concrete draws, elementwise max), or its
  straight-through hard subset;
- ``top_k_words``: the discrete selection used at validation (the k highest selector logits);
- ``token_masks``: word masks as token masks, specials kept (mask 1);
- ``Selector``: the explainer network, logits per token (a small conv net, global and local branches);
- ``Approximator``: the variational family q(y | x_S) as a small network over masked embeddings;
- ``train_l2x``: joint training with early stopping on the discrete selection's accuracy.

Pure torch: the caller computes the black box's word embeddings and predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from harness import EarlyStopping

EXCLUDED = -1e9
"""The logit of a position that is not a word (padding of the word axis): finite, so that softmax and its
gradient stay finite for any temperature the parameters allow, and far below any real logit."""


# -- words ----------------------------------------------------------------------------------------------


def word_logits(token_logits: Tensor, units: Tensor, valid: Tensor) -> Tensor:
    """(B, W) each word's logit: the mean of its tokens' logits; ``EXCLUDED`` where ``valid`` is False."""
    inside = units >= 0
    index = units.clamp(min=0)
    values = torch.where(inside, token_logits, torch.zeros_like(token_logits))
    sums = token_logits.new_zeros(valid.shape).scatter_add(1, index, values)
    counts = token_logits.new_zeros(valid.shape).scatter_add(1, index, inside.to(token_logits.dtype))
    means = sums / counts.clamp(min=1)
    return torch.where(valid, means, torch.full_like(means, EXCLUDED))


def token_values(word_values: Tensor, units: Tensor, fill: float) -> Tensor:
    """(B, L) each token's word's value; ``fill`` at specials and padding (units -1)."""
    gathered = word_values.gather(1, units.clamp(min=0))
    return torch.where(units >= 0, gathered, torch.full_like(gathered, fill))


def token_masks(word_masks: Tensor, units: Tensor) -> Tensor:
    """(B, L) token masks from word masks (B, W): every sub-token of a word gets its word's mask; special
    tokens (and padding, which the attention mask hides anyway) keep mask 1: never removed."""
    return token_values(word_masks, units, 1.0)


# -- the subset sampler ---------------------------------------------------------------------------------


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Standard Gumbel noise −log(−log U), U uniform on (tiny, 1), drawn on the CPU from ``generator``."""
    uniform = torch.rand(shape, generator=generator).clamp(min=torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(uniform))


def relaxed_subset(
    logits: Tensor, valid: Tensor, gumbel: Tensor, temperature: float, straight_through: bool = False
) -> Tensor:
    """The continuous relaxation of sampling k of the words (L2X §4): k independent Concrete (Gumbel-
    softmax) draws over the words, C_j = softmax((logits + G_j) / τ), combined by the elementwise max
    V = max_j C_j. logits, valid: (B, W); gumbel: (B, k, W) standard Gumbel noise, one row per draw.
    Returns V (B, W) in [0, 1], 0 where not ``valid``. As τ → 0 each draw is one-hot, so V selects at
    most k words (fewer when draws coincide). With ``straight_through``: the hard subset H (each draw's
    argmax one-hot, combined by the max: 1 on at most k words, 0 elsewhere) in the value, V's gradient
    (H − V.detach() + V)."""
    noisy = (logits[:, None, :] + gumbel) / temperature
    noisy = noisy.masked_fill(~valid[:, None, :], EXCLUDED)
    draws = torch.softmax(noisy, dim=-1)
    samples = draws.amax(dim=1)
    if straight_through:
        hard = functional.one_hot(draws.argmax(-1), draws.shape[-1]).to(draws.dtype).amax(dim=1)
        samples = hard - samples.detach() + samples
    return samples * valid.to(samples.dtype)


def top_k_words(logits: Tensor, valid: Tensor, k: int) -> Tensor:
    """(B, W) 0/1: the k words with the highest logits in each example (all its words when it has fewer):
    L2X's discrete selection, used to validate (and what the explanation ranks first)."""
    count = min(k, logits.shape[1])
    ranked = logits.masked_fill(~valid, float("-inf")).topk(count, dim=1).indices
    chosen = torch.zeros_like(logits).scatter(1, ranked, 1.0)
    return chosen * valid.to(chosen.dtype)


# -- the networks ---------------------------------------------------------------------------------------


class Selector(nn.Module):
    """The explainer network: one logit per token of a padded batch.

    A small version of L2X's text selector over the black box's frozen word embeddings: a linear
    projection plus a learned segment embedding (special, first text, second text), then a first
    convolution (width 3, ReLU) feeding two branches: global, the max over each text's positions (the
    two texts pooled separately, so a choice in one text can depend on the other) through a dense layer
    (ReLU); local, two more convolutions (width 3, ReLU). The global vector is tiled over the positions,
    concatenated with the local ones, and two width-1 convolutions (ReLU, then linear) give the logits.
    Padding is zeroed before every convolution, so an example gets the same logits alone as in a padded
    batch.
    """

    def __init__(self, input_dim: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        padding = kernel_size // 2
        self.projection = nn.Linear(input_dim, hidden)
        self.segment = nn.Embedding(3, hidden)
        self.first = nn.Conv1d(hidden, hidden, kernel_size, padding=padding)
        self.global_dense = nn.Linear(2 * hidden, hidden)
        self.local = nn.ModuleList(
            [nn.Conv1d(hidden, hidden, kernel_size, padding=padding) for _ in range(2)]
        )
        self.combine = nn.Conv1d(2 * hidden, hidden, 1)
        self.output = nn.Conv1d(hidden, 1, 1)

    def forward(self, features: Tensor, segments: Tensor, attention_mask: Tensor) -> Tensor:
        """features (B, L, D); segments (B, L) long in {-1, 0, 1} (-1: special or padding);
        attention_mask (B, L). Returns (B, L) logits (meaningless at padding)."""
        keep = attention_mask.bool()[:, None, :]  # (B, 1, L): channels first from here on

        def conv(layer: nn.Conv1d, x: Tensor) -> Tensor:
            return torch.relu(layer(x)) * keep

        x = (self.projection(features) + self.segment(segments + 1)).transpose(1, 2) * keep
        first = conv(self.first, x)
        pooled = []
        for segment in (0, 1):  # ReLU outputs are ≥ 0: zeroing other positions leaves each text's max
            inside = ((segments == segment) & attention_mask.bool())[:, None, :]
            pooled.append((first * inside).amax(dim=2))
        global_info = torch.relu(self.global_dense(torch.cat(pooled, dim=1)))
        local = first
        for layer in self.local:
            local = conv(layer, local)
        combined = torch.cat([global_info[:, :, None].expand_as(local), local], dim=1) * keep
        return self.output(conv(self.combine, combined)).squeeze(1)


def pair_features(features: Tensor, masks: Tensor, segments: Tensor, k: int) -> Tensor:
    """What the approximator network reads (B, 4D): per text, the sum of its masked word embeddings
    divided by k (L2X's "mean" over the k selected words), u for the first text and v for the second
    (zero for a single text), combined as [u, v, u ⊙ v, |u − v|]. Special tokens are left out."""
    masked = features * masks[..., None]
    u, v = ((masked * (segments == s)[..., None]).sum(dim=1) / k for s in (0, 1))
    return torch.cat([u, v, u * v, (u - v).abs()], dim=-1)


class Approximator(nn.Module):
    """The variational family q(y | x_S) as a network (L2X's text approximator, given the pair features
    of ``pair_features``): a dense layer (ReLU) and a linear layer to class logits."""

    def __init__(self, input_dim: int, hidden: int, classes: int, k: int):
        super().__init__()
        self.k = k
        self.hidden = nn.Linear(4 * input_dim, hidden)
        self.output = nn.Linear(hidden, classes)

    def forward(self, features: Tensor, masks: Tensor, segments: Tensor) -> Tensor:
        features = pair_features(features.float(), masks.float(), segments, self.k)
        return self.output(torch.relu(self.hidden(features)))


# -- training -------------------------------------------------------------------------------------------


@dataclass
class L2XBatch:
    """One batch, tensors on the training device: the black box's word embeddings (B, L, D, detached, in
    the model's dtype), attention_mask and segments (B, L), token_type_ids (B, L) or None, units (B, L)
    and valid (B, W) from ``harness.word_units``, and predicted (B,) the black box's classes (what q learns to
    predict)."""

    features: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor | None
    segments: Tensor
    units: Tensor
    valid: Tensor
    predicted: Tensor


Approximate = Callable[[L2XBatch, Tensor], Tensor]
"""q: a batch and its token masks (B, L) in, class logits (B, K) out."""


def selector_logits(selector: Selector, batch: L2XBatch) -> Tensor:
    """(B, W) word logits: the selector's token logits pooled per word."""
    tokens = selector(batch.features.float(), batch.segments, batch.attention_mask)
    return word_logits(tokens, batch.units, batch.valid)


def train_l2x(
    selector: Selector,
    approximate: Approximate,
    approximator: nn.Module | None,
    train: list[L2XBatch],
    validation: list[L2XBatch],
    *,
    k: int,
    temperature: float,
    max_epochs: int,
    patience: int,
    learning_rate: float,
    seed: int,
    on_epoch: Callable[[int, float, float], None] | None = None,
    straight_through: bool = False,
) -> dict:
    """Maximise the variational bound of I(X_S; Y) (L2X Eq. 6): minimise the cross-entropy of q on the
    relaxed subset x_S = V ⊙ x (``straight_through``: the hard subset, with V's gradient) against the black
    box's prediction, over the parameters of the selector and of ``approximator`` (the network
    ``approximate`` calls, None when q is the frozen black box) jointly, with Adam.

    Each epoch visits the training batches in an order drawn from a generator seeded with ``seed``, which
    also draws the Gumbel noise (on the CPU), then validates the discrete selection (the top k words of the
    selector): the accuracy of q on them against the black box's prediction, and the mean cross-entropy.
    ``EarlyStopping`` keeps the best epoch (accuracy, ties broken by loss) and stops after ``patience``
    epochs without a better one; the best weights are restored. ``on_epoch(epoch, accuracy, loss)``.

    Returns {"epochs", "best_epoch", "best_validation_accuracy", "best_validation_loss", "train_loss",
    "stopped_early", "seconds"}.
    """
    if not train or not validation:
        raise ValueError("L2X needs at least one training and one validation batch")
    start = time.perf_counter()
    modules = nn.ModuleDict({"selector": selector})
    if approximator is not None:
        modules["approximator"] = approximator
    parameters = list(modules.parameters())
    optimiser = torch.optim.Adam(parameters, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    stopping = EarlyStopping(patience)
    epoch, stopped, train_loss = 0, False, float("nan")
    for epoch in range(1, max_epochs + 1):
        modules.train()
        losses = []
        for index in torch.randperm(len(train), generator=generator).tolist():
            batch = train[index]
            logits = selector_logits(selector, batch)
            noise = gumbel_noise((logits.shape[0], k, logits.shape[1]), generator).to(logits)
            subset = relaxed_subset(logits, batch.valid, noise, temperature, straight_through)
            masks = token_masks(subset, batch.units)
            loss = functional.cross_entropy(approximate(batch, masks), batch.predicted)
            # Gradients of our parameters only: a black box approximator leaves the model's .grad alone.
            gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.grad = gradient
            optimiser.step()
            losses.append(loss.item())
        train_loss = sum(losses) / len(losses)
        accuracy, validation_loss = validate(selector, approximate, validation, k, modules)
        if on_epoch is not None:
            on_epoch(epoch, accuracy, validation_loss)
        if stopping.update(epoch, accuracy, validation_loss, modules.state_dict()):
            stopped = True
            break
    modules.load_state_dict(stopping.best_state)
    modules.eval()
    report = stopping.report(epoch, stopped)
    return {
        "epochs": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "best_validation_accuracy": report["best_validation_accuracy"],
        "best_validation_loss": report["best_validation_loss"],
        "train_loss": round(train_loss, 6),
        "stopped_early": stopped,
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def validate(
    selector: Selector, approximate: Approximate, batches: list[L2XBatch], k: int, modules: nn.Module
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of q on the top-k words of each example against the black box's
    prediction: L2X's post-hoc accuracy of the discrete explanation."""
    modules.eval()
    correct, total, loss = 0, 0, 0.0
    for batch in batches:
        logits = selector_logits(selector, batch)
        masks = token_masks(top_k_words(logits, batch.valid, k), batch.units)
        output = approximate(batch, masks)
        correct += int((output.argmax(-1) == batch.predicted).sum())
        loss += float(functional.cross_entropy(output, batch.predicted, reduction="sum"))
        total += len(batch.predicted)
    return correct / total, loss / total
