"""A model-free complexity metric: how spread out an explanation is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np

from harness import Attribution, Metric, MetricInput


def attribution_entropy(attribution: Attribution) -> float:
    """Shannon entropy (natural log) of the normalised absolute scores over the removable tokens.

    Bhatt, Weller and Moura 2020, "Evaluating and aggregating feature-based model explanations"
    (IJCAI), "complexity": with ``P(i) = |g_i| / sum_j |g_j|``, complexity is
    ``-sum_i P(i) ln P(i)`` (``0 ln 0 = 0``). Special tokens ([CLS], [SEP]) are left out because no
    metric may remove them. All-zero (or non-finite) scores define no distribution: NaN.
    """
    scores = np.abs(np.asarray(attribution.scores, dtype=np.float64)[attribution.removable])
    total = scores.sum()
    if not np.isfinite(total) or total <= 0:
        return math.nan
    p = scores[scores > 0] / total
    return float(-(p * np.log(p)).sum())


class AttributionEntropy(Metric):
    """Attribution entropy (Bhatt et al. 2020 complexity): lower means fewer tokens carry the score.

    0 when a single token holds all the attribution, ``ln n`` when ``n`` tokens share it equally;
    NaN when every score is 0. Reads the stored scores only, so the model is never loaded.
    """

    name: ClassVar[str] = "attribution-entropy"
    # Read by reports and leaderboards: nothing downstream knows metric names.
    family: ClassVar[str] = "complexity"
    direction: ClassVar[Literal["higher", "lower"]] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = "Bhatt et al. 2020, Evaluating and aggregating feature-based model explanations"

    def compute(self, data: MetricInput) -> Sequence[float]:
        # data.classifier is deliberately never touched: it would load the model.
        return [attribution_entropy(attribution) for attribution in data.attributions]
