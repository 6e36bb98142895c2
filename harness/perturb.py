"""The perturbation engine shared by removal-based metrics.

Metrics describe perturbations (which token positions of which attribution to remove, or to keep);
the engine builds every perturbed input of a whole cell and runs them through the model in batched
forward passes, longest-first so that padding is minimal. No metric runs its own forward loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from harness.attribution import Attribution
from harness.classifier import Classifier
from harness.errors import PluginError

Masking = Literal["mask", "unk", "pad", "delete"]
MASKING_DOC = (
    "how a removed token is removed: replaced by the tokenizer's mask, unk or pad token (attention kept), "
    "or deleted from the sequence"
)


def replacement_id(classifier: Classifier, masking: Masking) -> int | None:
    """The token id that stands in for a removed token (``None`` for deletion)."""
    if masking == "delete":
        return None
    token_id = {
        "mask": classifier.mask_token_id,
        "unk": classifier.unk_token_id,
        "pad": classifier.pad_token_id,
    }[masking]
    if token_id is None:
        raise PluginError(
            f"masking '{masking}' is not available: the model's tokenizer has no {masking} token"
        )
    return int(token_id)


def top_count(fraction_percent: float, n_tokens: int) -> int:
    """How many tokens "the top k %" of ``n_tokens`` is: k·n/100 rounded half up, at least one (so
    that small bins of short texts still remove something) and at most n."""
    count = int(np.floor(fraction_percent * n_tokens / 100.0 + 0.5))
    return min(max(count, 1), n_tokens)


def perturbed_rows(
    attribution: Attribution, remove: np.ndarray, replacement: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One perturbed input per row of ``remove`` (a boolean matrix S × L over token positions).

    Returns ``ids`` (S × L, or a ragged object array for deletion) and token type ids alike.
    """
    ids = np.asarray(attribution.input_ids, dtype=np.int64)
    types = (
        None if attribution.token_type_ids is None else np.asarray(attribution.token_type_ids, dtype=np.int64)
    )
    if replacement is not None:
        rows = np.where(remove, replacement, ids[None, :])
        return rows, None if types is None else np.broadcast_to(types, rows.shape)
    kept = [ids[~row] for row in remove]
    kept_types = None if types is None else [types[~row] for row in remove]
    return kept, kept_types


def target_probabilities(
    classifier: Classifier,
    sequences: Sequence[np.ndarray],
    type_sequences: Sequence[np.ndarray] | None,
    targets: Sequence[int],
    batch_size: int,
) -> np.ndarray:
    """p(target | sequence) for many sequences, in batched forward passes sorted by length."""
    lengths = np.array([len(sequence) for sequence in sequences])
    order = np.argsort(-lengths, kind="stable")
    result = np.empty(len(sequences), dtype=np.float64)
    pad = classifier.pad_token_id
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = int(lengths[chunk].max())
            ids = np.full((len(chunk), width), pad, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            types = None if type_sequences is None else np.zeros((len(chunk), width), dtype=np.int64)
            for row, index in enumerate(chunk):
                length = lengths[index]
                ids[row, :length] = sequences[index]
                mask[row, :length] = 1
                if types is not None:
                    types[row, :length] = type_sequences[index]
            device = classifier.device
            logits = classifier.logits(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
                token_type_ids=None if types is None else torch.from_numpy(types).to(device),
            )
            probabilities = torch.softmax(logits.double(), dim=-1)
            chunk_targets = torch.as_tensor([targets[i] for i in chunk], device=probabilities.device)
            result[chunk] = probabilities.gather(1, chunk_targets[:, None])[:, 0].cpu().numpy()
    return result


def removal_curves(
    classifier: Classifier,
    attributions: Sequence[Attribution],
    percents: Sequence[float],
    *,
    keep: bool,
    masking: Masking,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each attribution: p(target | full input) and, for each k in ``percents``, p(target | input)
    with the top-k % tokens (by descending score) removed (``keep=False``) or with only them kept
    (``keep=True``, every other real token removed). Special tokens are never removed.

    Returns ``(full, curves)`` with shapes (N,) and (N, len(percents)).
    """
    replacement = replacement_id(classifier, masking)
    sequences: list[np.ndarray] = []
    type_sequences: list[np.ndarray] | None = (
        None if any(a.token_type_ids is None for a in attributions) else []
    )
    targets: list[int] = []
    steps = len(percents) + 1  # the full input first, then one row per percent
    for attribution in attributions:
        ranking = attribution.ranking()
        remove = np.zeros((steps, len(attribution.input_ids)), dtype=bool)
        for step, percent in enumerate(percents, start=1):
            top = ranking[: top_count(percent, len(ranking))]
            if keep:
                remove[step, ranking] = True
                remove[step, top] = False
            else:
                remove[step, top] = True
        rows, type_rows = perturbed_rows(attribution, remove, replacement)
        sequences.extend(rows)
        if type_sequences is not None:
            type_sequences.extend(type_rows)
        targets.extend([attribution.target] * steps)
    probabilities = target_probabilities(classifier, sequences, type_sequences, targets, batch_size)
    probabilities = probabilities.reshape(len(attributions), steps)
    return probabilities[:, 0], probabilities[:, 1:]
