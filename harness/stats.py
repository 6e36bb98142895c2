"""Statistics for reports, computed once in the harness from per-example records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.stats import bootstrap, wilcoxon
from statsmodels.stats.multitest import multipletests

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


ALPHA = 0.05
TEST_NAME = "Wilcoxon signed-rank (two-sided, paired by example)"
CORRECTION = "Holm-Bonferroni across every comparison of the table"


@dataclass(frozen=True)
class Comparison:
    """One paired test of a cell against the best cell of its column."""

    n_pairs: int
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None = None
    significant: bool = False
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def paired_wilcoxon(a: dict, b: dict, alternative: str = "two-sided") -> Comparison:
    """Wilcoxon signed-rank test of the differences a − b over the keys (examples) both have;
    ``alternative="greater"`` tests the one-sided hypothesis that a tends to exceed b.

    Zero differences are dropped (Wilcoxon's treatment); when every difference is zero the samples
    are identical (p = 1), and with no pair at all there is nothing to test (p undefined).
    """
    keys = [k for k in a if k in b and np.isfinite(a[k]) and np.isfinite(b[k])]
    differences = np.array([a[k] - b[k] for k in keys], dtype=np.float64)
    if len(differences) == 0:
        return Comparison(0, None, None, note="no paired examples")
    if not np.any(differences != 0):
        return Comparison(len(differences), 0.0, 1.0, note="all paired differences are zero")
    result = wilcoxon(differences, zero_method="wilcox", alternative=alternative)
    return Comparison(len(differences), float(result.statistic), float(result.pvalue))


def holm(comparisons: list[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm-Bonferroni adjustment over the comparisons that have a p-value (statsmodels)."""
    tested = [i for i, c in enumerate(comparisons) if c.p_value is not None]
    result = list(comparisons)
    if not tested:
        return result
    rejected, adjusted, _, _ = multipletests(
        [comparisons[i].p_value for i in tested], alpha=alpha, method="holm"
    )
    for i, reject, p in zip(tested, rejected, adjusted, strict=True):
        result[i] = replace(comparisons[i], p_adjusted=float(p), significant=bool(reject))
    return result
