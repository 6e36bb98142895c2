"""Human rationales on the tokens the model read: the one place where character spans meet tokens.

A rationale is a set of ``[start, end)`` character spans over an example's ``text`` (``rationale``)
and, for pairs, over its ``text_pair`` (``rationale_pair``). Tokens carry ``[start, end)`` offsets in
their own segment's text, so matching needs no re-tokenisation.

Overlap rule: the token at position i, of segment s ∈ {0, 1} with offsets ``[a, b)``, is in the
rationale when some span ``[start, end)`` of segment s shares at least one character with it:
``a < end and start < b``, with ``b > a`` and ``end > start``. Zero-width offsets (special tokens,
whose segment is −1 anyway) and empty spans never count. Only the tokens the model read exist here:
a span cut off by truncation matches nothing, and one cut in the middle matches its tokens that were
kept.

Words: ``rationale_units(..., "word")`` works on the units of ``Attribution.units("word")``; a word
is in the rationale when any of its sub-tokens is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.attribution import Attribution, Granularity
from harness.data import Example


def has_rationale(example: Example) -> bool:
    """Whether the example has a human rationale at all (``None`` on both segments means the dataset
    gives none; an empty tuple is a rationale that highlights nothing)."""
    return example.rationale is not None or example.rationale_pair is not None


def rationale_spans(attribution: Attribution, example: Example) -> list[np.ndarray] | None:
    """The token positions (ascending) that each rationale span overlaps, one array per span: the
    spans of ``rationale`` first, then those of ``rationale_pair``, in their given order. An array is
    empty when its span is empty or lies beyond truncation. ``None`` when the example has no rationale.

    For a pair, a segment whose rationale is ``None`` while the other's is not contributes no span.
    """
    if not has_rationale(example):
        return None
    segments = np.asarray(attribution.segments, dtype=np.int64)
    offsets = np.asarray(attribution.offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    result = []
    for segment, spans in ((0, example.rationale), (1, example.rationale_pair)):
        candidates = (segments == segment) & real
        for start, end in spans or ():
            if end <= start:
                result.append(np.zeros(0, dtype=np.int64))
                continue
            result.append(np.flatnonzero(candidates & (starts < end) & (ends > start)))
    return result


def rationale_mask(attribution: Attribution, example: Example) -> np.ndarray | None:
    """Boolean over the attribution's token positions: True where the token overlaps a rationale span
    of its own segment (see the module docstring). Special tokens are always False. ``None`` when the
    example has no rationale (metrics then record NaN)."""
    spans = rationale_spans(attribution, example)
    if spans is None:
        return None
    mask = np.zeros(len(attribution.tokens), dtype=bool)
    for positions in spans:
        mask[positions] = True
    return mask


@dataclass(frozen=True)
class UnitRationale:
    """A rationale on removable units (tokens or words), aligned with ``Attribution.units``.

    ``units``: the units in text order; ``labels``: True for units in the rationale; ``spans``: each
    rationale span as the ascending indices of the units it overlaps (spans matching no unit dropped,
    duplicates kept once), in the order of ``rationale_spans``.
    """

    units: list[np.ndarray]
    labels: np.ndarray
    spans: list[np.ndarray]


def rationale_units(
    attribution: Attribution, example: Example, granularity: Granularity = "token"
) -> UnitRationale | None:
    """The rationale on ``attribution.units(granularity)``: a unit is in it when any of its tokens
    overlaps a rationale span. ``None`` when the example has no rationale."""
    spans = rationale_spans(attribution, example)
    if spans is None:
        return None
    units = attribution.units(granularity)
    unit_of = _unit_index(units, len(attribution.tokens))
    unit_spans: list[np.ndarray] = []
    seen: set[tuple[int, ...]] = set()
    labels = np.zeros(len(units), dtype=bool)
    for positions in spans:
        indices = np.unique(unit_of[positions])
        indices = indices[indices >= 0]
        key = tuple(indices.tolist())
        labels[indices] = True
        if key and key not in seen:
            seen.add(key)
            unit_spans.append(indices)
    return UnitRationale(units=units, labels=labels, spans=unit_spans)


def _unit_index(units: Sequence[np.ndarray], length: int) -> np.ndarray:
    """For each token position, the index of its unit (−1 for special tokens)."""
    index = np.full(length, -1, dtype=np.int64)
    for i, unit in enumerate(units):
        index[unit] = i
    return index
