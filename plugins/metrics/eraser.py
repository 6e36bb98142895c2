"""ERASER faithfulness metrics: comprehensiveness and sufficiency (DeYoung et al., 2020).

Both are aggregated over bins of the top-k % tokens (AOPC-style), with the model's probability of the
explained class (the predicted class by default) on the full input as the reference. NaN for an example
with no removable unit (the perturbation engine's rule).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from harness import (
    GRANULARITY_DOC,
    MASKING_DOC,
    Granularity,
    Masking,
    MetricInput,
    MetricOutput,
    Params,
    RemovalMetric,
    removal_masks,
)

ERASER = "DeYoung et al. 2020, ERASER: A Benchmark to Evaluate Rationalized NLP Models, §4 (eqs. 1-3)"


class RemovalParams(Params):
    bins: tuple[float, ...] = Field(
        (1, 5, 10, 20, 50), description="percentages k of the top-scored tokens removed or kept"
    )
    masking: Masking = Field("delete", description=MASKING_DOC)
    granularity: Granularity = Field("token", description=GRANULARITY_DOC)

    @field_validator("bins")
    @classmethod
    def _percentages(cls, bins: tuple[float, ...]) -> tuple[float, ...]:
        if not bins or any(not 0 < k <= 100 for k in bins):
            raise ValueError("bins must be a non-empty list of percentages in (0, 100]")
        return bins


class _BinnedRemoval(RemovalMetric):
    """Shared computation: 1/|B| · Σ_{k∈B} [ p(ŷ|x) − p(ŷ|x') ], x' the input with its top-k % tokens
    removed (``keep = False``) or with only them kept (``keep = True``)."""

    keep: ClassVar[bool]
    Params = RemovalParams
    paper: ClassVar[str] = ERASER
    family: ClassVar[str] = "faithfulness"
    range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        return [
            removal_masks(a, self.params.bins, keep=self.keep, granularity=self.params.granularity)
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> MetricOutput:
        p = np.array(
            [
                np.exp(log_p[:, a.target])
                for a, log_p in zip(data.attributions, log_probabilities, strict=True)
            ]
        ).reshape(len(data.attributions), 1 + len(self.params.bins))
        full, perturbed = p[:, 0], p[:, 1:]
        curves = [
            {"x": [0, *self.params.bins], "y": [f, *row]}
            for f, row in zip(full.tolist(), perturbed.tolist(), strict=True)
        ]
        return MetricOutput((full[:, None] - perturbed).mean(axis=1), curves)


class Comprehensiveness(_BinnedRemoval):
    """ERASER comprehensiveness: mean drop in p(ŷ) when the top-k % tokens are removed.

    comprehensiveness(x) = 1/|B| · Σ_{k∈B} [ p(ŷ|x) − p(ŷ|x \\ r_k) ], with r_k the ⌊k·n/100 + ½⌋
    (at least one) highest-scored tokens of the n real tokens. Higher is more faithful.
    """

    name: ClassVar[str] = "comprehensiveness"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    direction: ClassVar[str] = "higher"
    keep: ClassVar[bool] = False


class Sufficiency(_BinnedRemoval):
    """ERASER sufficiency: mean drop in p(ŷ) when only the top-k % tokens are kept.

    sufficiency(x) = 1/|B| · Σ_{k∈B} [ p(ŷ|x) − p(ŷ|r_k) ]. Lower is more faithful.
    """

    name: ClassVar[str] = "sufficiency"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    direction: ClassVar[str] = "lower"
    keep: ClassVar[bool] = True
