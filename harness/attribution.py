"""One explanation of one example: a score per token, with everything needed to interpret it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from harness.classifier import Encoding

Granularity = Literal["token", "word"]
Order = Literal["descending", "ascending", "absolute"]

# L2E's token labels (Situ et al. 2021, §3), by class index: high negative, low negative, neutral, low
# positive, high positive. ``Attribution.labels`` holds the values.
LABEL_VALUES = (-2, -1, 0, 1, 2)
NEUTRAL_CLASS = LABEL_VALUES.index(0)
IGNORE_INDEX = -100  # torch's cross-entropy ignore index

# The version of ``Attribution``'s fields, stored in each (``Attribution.schema``): 3 added ``groups``,
# ``group_scores`` and ``extras``. Dicts written before carry no schema and load as 2.
ATTRIBUTION_SCHEMA = 3
UNVERSIONED_SCHEMA = 2


def _masked_mean(values: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """(B, 1) mean of each row's selected values; 0 where a row selects none."""
    total = torch.where(selected, values, torch.zeros_like(values)).sum(1, keepdim=True)
    return total / selected.sum(1, keepdim=True).clamp(min=1)


def discretise(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L2E's heuristic h: each token's class index (0..4, see ``LABEL_VALUES``).

    Thresholds are per document: the mean of its positive weights and the mean of its negative weights,
    over the tokens where ``mask`` is True. A positive weight at or above the positive mean is high
    positive (4), below it low positive (3); a negative weight at or below the negative mean is high
    negative (0), above it low negative (1). Exact zeros are neutral (2). Positions where ``mask`` is
    False get -100, the cross-entropy ignore index.

    weights: (B, L) float; mask: (B, L) bool. Returns a (B, L) LongTensor.
    """
    mask = mask.bool()
    positive = (weights > 0) & mask
    negative = (weights < 0) & mask
    positive_mean = _masked_mean(weights, positive)
    negative_mean = _masked_mean(weights, negative)
    classes = torch.full_like(weights, NEUTRAL_CLASS, dtype=torch.long)
    classes[positive] = 3
    classes[positive & (weights >= positive_mean)] = 4
    classes[negative] = 1
    classes[negative & (weights <= negative_mean)] = 0
    classes[~mask] = IGNORE_INDEX
    return classes


@dataclass
class Attribution:
    """Scores for the tokens the model read (truncation included), aligned one-to-one with
    ``input_ids``, ``tokens``, ``offsets``, ``word_ids`` and ``segments`` (see ``Encoding``).

    ``target`` is the explained class, ``predicted`` the model's prediction on the full input and
    ``probability`` its probability of ``target``; ``seconds`` is the explainer's time for this example.
    ``log_probabilities`` are the model's class log-probabilities on the full input, computed once when
    explaining and reused by every metric (``None`` when unknown: the engine then computes them).
    ``labels`` is set by explainers that also output a discrete label per token (e.g. L2E's sequence
    labelling: -2 high negative, -1 low negative, 0 neutral, 1 low positive, 2 high positive); ``None``
    for explainers that only score. ``batch`` is the index (within the cell's examples) of the explainer
    call that timed this example: ``seconds`` is that call's time divided by its size, so the examples of
    one batch share one measurement.

    Explainers that return a ``harness.Explanation`` may add: ``groups``, each token's group id (-1 for
    none; a group may span both texts of a pair, as GMASK's word groups); ``group_scores``, the importance
    of group ids 0, 1, ...; ``extras``, further named scores per token (e.g. per-class scores). Each is
    ``None`` when the explainer gives none. ``schema`` is the version of these fields
    (``ATTRIBUTION_SCHEMA``) the attribution was written under.
    """

    example_id: str
    target: int
    predicted: int
    probability: float
    input_ids: list[int]
    token_type_ids: list[int] | None
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    segments: list[int]
    scores: list[float]
    seconds: float
    log_probabilities: list[float] | None = None
    labels: list[int] | None = None
    batch: int | None = None
    groups: list[int] | None = None
    group_scores: list[float] | None = None
    extras: dict[str, list[float]] | None = None
    schema: int = ATTRIBUTION_SCHEMA

    def discretised_labels(self) -> list[int]:
        """``scores`` as L2E's labels (-2..2), by its heuristic h over the real tokens (special tokens
        neutral): how an explainer that only scores is compared label-wise with one that labels."""
        real = torch.from_numpy(np.asarray(self.segments) >= 0)[None]
        classes = discretise(torch.tensor(self.scores, dtype=torch.float64)[None], real)[0]
        return [LABEL_VALUES[c] if c != IGNORE_INDEX else 0 for c in classes.tolist()]

    @property
    def removable(self) -> np.ndarray:
        """Positions of real (non-special) tokens: the ones metrics may remove or keep."""
        return np.flatnonzero(np.asarray(self.segments) >= 0)

    def units(self, granularity: Granularity = "token") -> list[np.ndarray]:
        """The removable units in text order, each an array of token positions: one per real token
        (``token``), or one per word with all its sub-tokens (``word``)."""
        positions = self.removable
        if granularity == "token":
            return [positions[i : i + 1] for i in range(len(positions))]
        groups: dict[tuple[int, int], list[int]] = {}
        for position in positions:
            word = self.word_ids[position]
            key = (self.segments[position], position if word is None else word)
            groups.setdefault(key, []).append(int(position))
        return [np.asarray(group) for group in groups.values()]

    def unit_scores(self, units: list[np.ndarray]) -> np.ndarray:
        """A unit's score is the mean of its tokens' scores (for word-level attributions, whose
        sub-tokens share one score, that is the word's score)."""
        scores = np.asarray(self.scores, dtype=np.float64)
        return np.array([scores[unit].mean() for unit in units], dtype=np.float64)

    def ranking(self, granularity: Granularity = "token", order: Order = "descending") -> list[np.ndarray]:
        """Units from the most to the least important; ties keep text order.

        ``descending``: highest score first (most positive evidence for the target); ``ascending``:
        lowest first; ``absolute``: largest magnitude first.
        """
        units = self.units(granularity)
        scores = self.unit_scores(units)
        key = {"descending": -scores, "ascending": scores, "absolute": -np.abs(scores)}[order]
        return [units[i] for i in np.argsort(key, kind="stable")]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Attribution:
        data = dict(data)
        data["offsets"] = [tuple(span) for span in data["offsets"]]
        data.setdefault("schema", UNVERSIONED_SCHEMA)
        return cls(**data)


def attributions_from_batch(
    example_ids: Sequence[str],
    encoding: Encoding,
    scores: torch.Tensor,
    targets: torch.Tensor,
    log_probabilities: torch.Tensor,
    seconds_per_example: float,
    labels: torch.Tensor | None = None,
    batch: int | None = None,
    groups: torch.Tensor | None = None,
    group_scores: torch.Tensor | None = None,
    extras: dict[str, torch.Tensor] | None = None,
) -> list[Attribution]:
    """Split a batch of explainer output into per-example attributions (padding dropped).
    ``log_probabilities`` (B, K) are the model's on the unperturbed batch; ``labels`` (B, L) the
    explainer's discrete token labels, ``groups`` (B, L) its group id per token, ``group_scores`` (B, G)
    its importance per group id (trailing NaN are a row's padding) and ``extras`` its further named
    (B, L) scores, if it gives any (see ``harness.Explanation``)."""
    scores = scores.detach().to("cpu", torch.float64)
    labels = None if labels is None else labels.detach().to("cpu", torch.long)
    groups = None if groups is None else groups.detach().to("cpu", torch.long)
    group_scores = None if group_scores is None else group_scores.detach().to("cpu", torch.float64)
    extras = None if extras is None else {k: v.detach().to("cpu", torch.float64) for k, v in extras.items()}
    log_probabilities = log_probabilities.detach().to("cpu", torch.float64)
    result = []
    for row, example_id in enumerate(example_ids):
        length = len(encoding.tokens[row])
        token_type_ids = (
            None if encoding.token_type_ids is None else encoding.token_type_ids[row, :length].tolist()
        )
        target = int(targets[row])
        result.append(
            Attribution(
                example_id=example_id,
                target=target,
                predicted=int(log_probabilities[row].argmax()),
                probability=float(log_probabilities[row, target].exp()),
                input_ids=encoding.input_ids[row, :length].tolist(),
                token_type_ids=token_type_ids,
                tokens=list(encoding.tokens[row]),
                offsets=list(encoding.offsets[row]),
                word_ids=list(encoding.word_ids[row]),
                segments=list(encoding.segments[row]),
                scores=scores[row, :length].tolist(),
                seconds=seconds_per_example,
                log_probabilities=log_probabilities[row].tolist(),
                labels=None if labels is None else labels[row, :length].tolist(),
                batch=batch,
                groups=None if groups is None else groups[row, :length].tolist(),
                group_scores=None if group_scores is None else _without_trailing_nan(group_scores[row]),
                extras=None if extras is None else {k: v[row, :length].tolist() for k, v in extras.items()},
            )
        )
    return result


def _without_trailing_nan(values: torch.Tensor) -> list[float]:
    """A row of a padded (B, G) tensor without its padding: the NaN after its last number."""
    numbers = torch.nonzero(~torch.isnan(values)).flatten()
    return values[: int(numbers[-1]) + 1 if len(numbers) else 0].tolist()


def aggregate_words(scores: torch.Tensor, encoding: Encoding, reduction: str) -> torch.Tensor:
    """Word-level scores: each token gets the sum, mean or max of its word's sub-token scores, so the
    attribution stays aligned with the tokens the model read."""
    result = scores.clone()
    for row, word_ids in enumerate(encoding.word_ids):
        groups: dict[int, list[int]] = {}
        for position, word in enumerate(word_ids):
            if word is not None:
                groups.setdefault(word, []).append(position)
        for positions in groups.values():
            values = scores[row, positions]
            value = {"sum": values.sum, "mean": values.mean, "max": values.max}[reduction]()
            result[row, positions] = value
    return result


def word_units(encoding: Encoding) -> tuple[torch.Tensor, torch.Tensor]:
    """Words as mask units (explainers that mask or select whole words: gmask, imask, l2x).

    (units, valid): units (B, L) long, each real token's word index within its example (0, 1, ... in
    order of appearance; a word's sub-tokens share it; word ids are unique across the two texts of a pair,
    so no unit spans both), -1 at special tokens and padding; valid (B, W) bool, True for the word indices
    each example has (W = the most words of any example, at least 1)."""
    batch, length = encoding.input_ids.shape
    units = torch.full((batch, length), -1, dtype=torch.long)
    counts = []
    for row, (word_ids, segments) in enumerate(zip(encoding.word_ids, encoding.segments, strict=True)):
        index: dict[int, int] = {}
        for position, (word, segment) in enumerate(zip(word_ids, segments, strict=True)):
            if segment < 0 or word is None:
                continue
            units[row, position] = index.setdefault(word, len(index))
        counts.append(len(index))
    width = max([1, *counts])
    valid = torch.arange(width)[None, :] < torch.tensor(counts)[:, None]
    device = encoding.input_ids.device
    return units.to(device), valid.to(device)
