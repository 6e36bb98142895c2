"""Statistics for reports, computed once in the harness from per-example records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Summary:
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(values: Sequence[float | None], seed: int = 0) -> Summary:
    """Mean with a 95 % percentile-bootstrap interval over examples (undefined values dropped).

    The interval needs at least two values; with one value it is absent. The resampling is seeded, so
    a report is reproducible.
    """
    data = np.array([value for value in values if value is not None and np.isfinite(value)], dtype=np.float64)
    if data.size == 0:
        return Summary(None, None, None, 0)
    mean = float(data.mean())
    if data.size < 2:
        return Summary(mean, None, None, 1)
    if np.all(data == data[0]):
        return Summary(mean, mean, mean, int(data.size))
    interval = bootstrap(
        (data,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    ).confidence_interval
    return Summary(mean, float(interval.low), float(interval.high), int(data.size))
