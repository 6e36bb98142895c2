"""Randomization tests (Zafar et al. 2021): do two models' explanations of the same input agree?

``jaccard`` compares a cell with the same explainer, examples and seed on a reference variant of the
model (``Metric.compares = "variant"``): Init#1 vs Init#2 is the different-initialisations test, Init#1
vs Untrained the untrained-model test. The harness pairs the cells; the suite states the expected order
(``expectations``) and the report tests it. The paper's infidelity is ``switching-point``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import Field

from harness import VARIANT_PATTERN, Attribution, Granularity, Metric, MetricInput, Order, Params, top_count

ZAFAR = (
    "Zafar et al. 2021, On the Lack of Robust Interpretability of Neural Text Classifiers, "
    "Findings of ACL, §3 (Jaccard@K%), App. D (examples)"
)


def top_set(attribution: Attribution, percent: float, granularity: Granularity, order: Order) -> set[int]:
    """Token positions of the top-K % units; ties keep text order (``Attribution.ranking``)."""
    ranking = attribution.ranking(granularity, order)
    count = top_count(percent, len(ranking), rounding="up")  # as App. D counts
    return {int(position) for unit in ranking[:count] for position in unit}


def jaccard(a: set[int], b: set[int]) -> float:
    """|a ∩ b| / |a ∪ b|; NaN when both are empty."""
    union = a | b
    return len(a & b) / len(union) if union else math.nan


class JaccardParams(Params):
    k: float = Field(25.0, gt=0, le=100, description="top K % of the units compared (paper: 25 and 10)")
    reference: str = Field(
        "init:1",
        pattern=VARIANT_PATTERN,
        description="the model variant compared with (paper: Init#1); cells on this variant are skipped",
    )
    granularity: Granularity = Field("token", description="units ranked: tokens (the paper's) or words")
    order: Order = Field(
        "descending",
        description="ranking: highest score first (evidence for the explained class), ascending, or |score|",
    )


class Jaccard(Metric):
    """Jaccard@K%: overlap of the top-K % token sets of two model variants' explanations.

    For each example on which both variants predict the same class (the attributions explain the
    predicted class, so other examples are NaN), J = |s₁ ∩ s₂| / |s₁ ∪ s₂| with s the token positions
    ranked in the top ⌈K·n/100⌉ (ties in text order). Both variants read the same tokens, so positions
    identify tokens; a repeated word at two positions counts twice, unlike a set of strings.
    """

    name: ClassVar[str] = "jaccard"
    family: ClassVar[str] = "randomization"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    compares: ClassVar[str] = "variant"
    paper: ClassVar[str] = ZAFAR
    Params: ClassVar[type[Params]] = JaccardParams

    params: JaccardParams

    def compute(self, data: MetricInput) -> np.ndarray:
        p = self.params
        values = np.full(len(data.attributions), np.nan)
        for row, (attribution, other) in enumerate(data.reference_pairs()):
            if other.predicted == attribution.predicted:
                values[row] = jaccard(
                    top_set(attribution, p.k, p.granularity, p.order),
                    top_set(other, p.k, p.granularity, p.order),
                )
        return values
