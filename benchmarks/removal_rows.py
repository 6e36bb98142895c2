"""What the removal benchmarks count their rows against: the distinct perturbed inputs that
comprehensiveness and sufficiency (deletion, one bin per percentage) and leave-one-out need over a set
of explanations, enumerated here independently of the engine, so that a benchmark can check the rows
the forward-pass service ran equal them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from harness import Attribution


def distinct_rows(explanations: Mapping[str, Iterable[Attribution]], bins: Sequence[int]) -> int:
    """The distinct perturbed inputs over every explanation (the unperturbed input's row is stored with
    each attribution, so it is not counted): per bin the text without its top k % tokens and the top
    k % alone (special tokens kept), and each text without one token."""
    rows = set()
    for attributions in explanations.values():
        for a in attributions:
            real = [i for i, s in enumerate(a.segments) if s >= 0]
            ranked = sorted(real, key=lambda i: (-a.scores[i], i))
            for k in bins:
                top = set(ranked[: min(max(int(math.floor(k * len(real) / 100 + 0.5)), 1), len(real))])
                rows.add(tuple(t for i, t in enumerate(a.input_ids) if i not in top))
                rows.add(tuple(t for i, t in enumerate(a.input_ids) if i in top or a.segments[i] < 0))
            rows |= {tuple(a.input_ids[:i] + a.input_ids[i + 1 :]) for i in real}
            rows.discard(tuple(a.input_ids))
    return len(rows)
