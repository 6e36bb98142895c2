"""Statistics for reports, computed once in the harness from per-record values.

A record is keyed ``(seed, example id)`` and belongs to a *unit*: the independent measurement it
comes from. By default the unit is the example, so the seeds of one example form one cluster (they
share the example's text, and often its explanation). Records that share one measurement say so
with their unit, e.g. ``"batch 3"`` for the runtime of the examples of one timed batch, whose
per-example value is the batch's seconds divided by its size. Treating such records as independent
would make intervals too narrow and p-values too small (24 records of 3 batches are 3 pairs, whose
two-sided signed-rank p-value cannot go below 0.25), so every interval resamples units and every
paired test pairs units.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.stats import bootstrap, wilcoxon
from statsmodels.stats.multitest import multipletests

Key = tuple[int, str]
"""A record's key: (seed, example id)."""

CONFIDENCE = 0.95
RESAMPLES = 2000


def _unit_mean(values: list[float]) -> float:
    """Mean of a unit's values; a unit whose values are all equal (one shared measurement) gives
    that value exactly, so units with equal measurements stay tied despite float rounding."""
    if all(value == values[0] for value in values):
        return float(values[0])
    return float(np.mean(values))


@dataclass(frozen=True)
class Sample:
    """Values of one cell keyed by record, with each record's unit (its independent measurement).

    Undefined values (NaN, ±inf) stay in the sample so that they are counted, never silently
    dropped; statistics use the finite values only.
    """

    values: dict[Key, float]
    units: dict[Key, str]

    def __post_init__(self) -> None:
        if missing := [key for key in self.values if key not in self.units]:
            raise ValueError(f"records without a unit: {missing[:3]}")

    @classmethod
    def of(cls, values: Mapping[Key, float | None], units: Mapping[Key, str | None] | None = None) -> Sample:
        """A sample from raw values (None → NaN) and optional units (missing or None → the
        record's example id, so that the seeds of an example form one cluster)."""
        units = units or {}
        return cls(
            {key: float("nan") if value is None else float(value) for key, value in values.items()},
            {key: key[1] if units.get(key) is None else str(units[key]) for key in values},
        )

    def finite(self) -> dict[Key, float]:
        return {key: value for key, value in self.values.items() if np.isfinite(value)}

    @property
    def n(self) -> int:
        """Number of finite values."""
        return len(self.finite())

    @property
    def n_undefined(self) -> int:
        """Number of undefined values (NaN, ±inf, or None given to ``of``)."""
        return len(self.values) - self.n

    @property
    def n_units(self) -> int:
        """Number of units with at least one finite value: the independent measurements."""
        return len({self.units[key] for key in self.finite()})

    @property
    def mean(self) -> float | None:
        """The mean of the finite values (every record weighs the same); None when there is none."""
        finite = list(self.finite().values())
        return float(np.mean(finite)) if finite else None

    def unit_means(self) -> dict[str, float]:
        """Mean of each unit's finite values (units without one are absent)."""
        groups: dict[str, list[float]] = defaultdict(list)
        for key, value in self.finite().items():
            groups[self.units[key]].append(value)
        return {unit: _unit_mean(vals) for unit, vals in groups.items()}


@dataclass(frozen=True)
class Summary:
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_undefined: int = 0
    n_units: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _ratio_of_sums(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the values of the resampled units: their values' total over their values' count."""
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def summarize(sample: Sample, seed: int = 0) -> Summary:
    """Mean of the finite values with a 95 % percentile cluster-bootstrap interval.

    The bootstrap resamples units with replacement (records of one unit are not independent) and
    recomputes the mean of all values of the drawn units, so a unit counts by its number of values
    as in the point estimate. With fewer than two units the interval is absent: one measurement says
    nothing about its variability. When every unit has the same mean each resample gives that mean,
    so the interval is (mean, mean). The resampling is seeded, so a report is reproducible.
    """
    finite = sample.finite()
    n, n_undefined, n_units = len(finite), sample.n_undefined, sample.n_units
    if n == 0:
        return Summary(None, None, None, 0, n_undefined, 0)
    mean = sample.mean
    if n_units < 2:
        return Summary(mean, None, None, n, n_undefined, n_units)
    means = sample.unit_means()
    if len(set(means.values())) == 1:
        return Summary(mean, mean, mean, n, n_undefined, n_units)
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for key, value in finite.items():
        sums[sample.units[key]] += value
        counts[sample.units[key]] += 1
    order = list(sums)
    interval = bootstrap(
        (np.array([sums[u] for u in order]), np.array([counts[u] for u in order], dtype=np.float64)),
        _ratio_of_sums,
        paired=True,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return Summary(mean, float(interval.low), float(interval.high), n, n_undefined, n_units)


ALPHA = 0.05
TEST_NAME = "Wilcoxon signed-rank (two-sided, paired by unit: example, or timed batch)"
CORRECTION = "Holm-Bonferroni across every comparison of the table"


@dataclass(frozen=True)
class Comparison:
    """One paired test of a cell against another; ``n_pairs`` counts independent units."""

    n_pairs: int
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None = None
    significant: bool = False
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def paired_wilcoxon(a: Sample, b: Sample, alternative: str = "two-sided") -> Comparison:
    """Wilcoxon signed-rank test of the differences a − b, one difference per unit;
    ``alternative="greater"`` tests the one-sided hypothesis that a tends to exceed b.

    Records are matched by key (seed, example id) where both values are finite. The differences of
    the records of one unit are averaged into one, since they are one measurement (or one example
    seen under several seeds); a record whose unit differs between a and b belongs to the unit
    "ua|ub". Zero differences are dropped (Wilcoxon's treatment); when every unit's difference is
    zero the samples are identical (p = 1), and with no pair at all there is nothing to test
    (p undefined).
    """
    fa, fb = a.finite(), b.finite()
    groups: dict[str, list[float]] = defaultdict(list)
    for key, value in fa.items():
        if key in fb:
            ua, ub = a.units[key], b.units[key]
            groups[ua if ua == ub else f"{ua}|{ub}"].append(value - fb[key])
    differences = np.array([_unit_mean(d) for d in groups.values()], dtype=np.float64)
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
