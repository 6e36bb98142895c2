"""Statistics of a leaderboard: ranks with bootstrap intervals, pairwise tests, tie groups, win rates,
mean ranks and the agreement between columns.

A board has rows (explainers) and columns (dataset × model × metric); each cell is a
:class:`harness.stats.Sample` of per-record values, each record with its unit (the independent
measurement: the example, or a timed batch). Each column has a direction, ``"higher"`` or
``"lower"``: which value is better. Every row of a column is measured on the same examples, so the
bootstrap of a column is *paired*: one draw of the column's units serves every row, and units are
matched across rows by their label (the example id, or the batch label), as
:func:`harness.stats.paired_wilcoxon` matches records by key.

Ranks are standard competition ranks ("min"): a row's rank is 1 + the number of rows strictly
better than it, so rows with exactly equal values share the better rank (1, 1, 3).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from string import ascii_letters
from typing import NamedTuple, TypeVar

import numpy as np
from scipy.stats import kendalltau, rankdata

from harness.stats import ALPHA, RESAMPLES, Comparison, Sample, holm, paired_wilcoxon

K = TypeVar("K", bound=Hashable)
C = TypeVar("C", bound=Hashable)
X = TypeVar("X", bound=Hashable)

DIRECTIONS = ("higher", "lower")
INTERVAL_LOW, INTERVAL_HIGH = 2.5, 97.5
"""Percentiles of the bootstrap draws that bound a 95 % rank interval."""

_DRAW_BLOCK = 1 << 21
"""Unit indices drawn at once (≈ 16 MiB), so that a large column is resampled in blocks of draws."""


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")


def _min_ranks(scores: np.ndarray) -> np.ndarray:
    """Competition ranks along the last axis of scores oriented so that higher is better: 1 + the
    number of strictly higher scores (−inf, an undefined score, is beaten by every defined one)."""
    return 1 + (scores[..., None, :] > scores[..., :, None]).sum(axis=-1)


@dataclass(frozen=True)
class RankInterval:
    """A row's rank in one column (competition ranking, 1 = best) and its 95 % bootstrap interval."""

    rank: int
    low: int
    high: int

    @property
    def text(self) -> str:
        """The interval as text: "2" when it is one rank, else "1–3"."""
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MeanRank:
    """A row's mean rank over the columns it is ranked in, and its 95 % bootstrap interval."""

    mean: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Column:
    """One column as arrays: per row (those with a finite value) and per unit, the sum and the count
    of its finite values; units are the sorted union of the rows' units with a finite value."""

    rows: list
    units: tuple[str, ...]
    point: np.ndarray  # oriented observed means (Sample.mean; higher is better)
    n_units: np.ndarray  # per row: units with a finite value
    # units × 2d: the sums, then the counts, of the d distinct rows; identical rows share one, so that
    # they resample identically to the last bit (a BLAS product may round two equal columns apart)
    distinct: np.ndarray
    row_of_distinct: np.ndarray  # per row: its distinct row
    sign: float


def _column(samples: Mapping[K, Sample], direction: str) -> _Column:
    _check_direction(direction)
    rows, values, labels = [], [], []
    for row, sample in samples.items():
        x = np.fromiter(sample.values.values(), dtype=np.float64, count=len(sample.values))
        finite = np.isfinite(x)
        if finite.any():
            rows.append(row)
            values.append(x[finite])
            labels.append(np.array([sample.units[key] for key in sample.values], dtype=str)[finite])
    if not rows:
        return _Column([], (), np.zeros(0), np.zeros(0), np.zeros((0, 0)), np.zeros(0, dtype=np.intp), 1.0)
    units = np.unique(np.concatenate(labels))
    sums = np.zeros((len(rows), len(units)))
    counts = np.zeros((len(rows), len(units)))
    for r in range(len(rows)):
        of_unit = np.searchsorted(units, labels[r])
        sums[r] = np.bincount(of_unit, weights=values[r], minlength=len(units))
        counts[r] = np.bincount(of_unit, minlength=len(units))
    sign = 1.0 if direction == "higher" else -1.0
    # the observed mean as Sample.mean computes it (np.mean of the finite values in record order)
    point = np.array([sign * float(np.mean(v)) for v in values], dtype=np.float64)
    distinct: dict[bytes, int] = {}
    row_of_distinct = np.array(
        [distinct.setdefault(sums[r].tobytes() + counts[r].tobytes(), r) for r in range(len(rows))]
    )
    firsts = sorted(set(row_of_distinct.tolist()))
    row_of_distinct = np.searchsorted(firsts, row_of_distinct)
    return _Column(
        rows, tuple(units.tolist()), point, (counts > 0).sum(axis=1),
        np.hstack([sums[firsts].T, counts[firsts].T]), row_of_distinct, sign,
    )


def _draws(rng: np.random.Generator, n_units: int, resamples: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap draws: row d of a block counts how often each of the n units was drawn
    when n units are drawn with replacement."""
    per_block = max(1, _DRAW_BLOCK // n_units)
    done = 0
    while done < resamples:
        size = min(per_block, resamples - done)
        drawn = rng.integers(0, n_units, size=(size, n_units)) + (np.arange(size) * n_units)[:, None]
        yield np.bincount(drawn.ravel(), minlength=size * n_units).reshape(size, n_units).astype(np.float64)
        done += size


def _draw_ranks(column: _Column, weights: np.ndarray) -> np.ndarray:
    """Ranks (draws × rows) of the column's rows in each draw: a row's mean is the sum of its values
    in the drawn units over their count; a row with no value in the drawn units ranks last."""
    totals = weights @ column.distinct  # one product for sums and counts: BLAS calls cost on small boards
    d = totals.shape[1] // 2
    sums, counts = totals[:, :d][:, column.row_of_distinct], totals[:, d:][:, column.row_of_distinct]
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(counts > 0, column.sign * sums / counts, -np.inf)
    return _min_ranks(scores)


def _percentile_bounds(draws: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower 2.5th and higher 97.5th percentiles of each column of draws (values that occur in the
    draws), widened where needed to contain the point."""
    low = np.percentile(draws, INTERVAL_LOW, axis=0, method="lower")
    high = np.percentile(draws, INTERVAL_HIGH, axis=0, method="higher")
    return np.minimum(low, point), np.maximum(high, point)


def column_ranks(
    samples: Mapping[K, Sample], direction: str, resamples: int = RESAMPLES, seed: int = 0
) -> dict[K, RankInterval]:
    """Each row's rank in one column with a 95 % paired percentile-bootstrap interval.

    *Rank*: from the observed means (``Sample.mean``, oriented by ``direction``), 1 + the number of
    rows strictly better; exact ties share the better rank. Rows without a finite value are not
    ranked (no entry).

    *Interval*: each of ``resamples`` draws takes, with replacement, as many units as the column has
    from the union of the units of its rows (paired: the same drawn units for every row); a row's
    mean in a draw is the sum of its finite values in the drawn units over their count, so a unit
    weighs by its number of values as in ``harness.stats.summarize``. Every ranked row is ranked in
    every draw the same way; a row with no value in the drawn units has no mean there and ranks
    last (tied with any other such row): it was not measured, so it beats no row, and the rows that
    were measured keep the ranks they have among themselves. The interval runs from the lower 2.5th
    to the higher 97.5th percentile of the row's ranks over the draws (ranks that occur in the
    draws), widened to contain the point rank where it does not. A row whose values come from fewer
    than two units gets the interval [1, number of ranked rows]: one measurement says nothing about
    its variability (``summarize`` gives it no interval). The draws are seeded: the same samples and
    seed give the same result, whatever the order of the rows.
    """
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    column = _column(samples, direction)
    if not column.rows:
        return {}
    point = _min_ranks(column.point)
    rng = np.random.default_rng(seed)
    draws = np.vstack([_draw_ranks(column, w) for w in _draws(rng, len(column.units), resamples)])
    low, high = _percentile_bounds(draws, point)
    n = len(column.rows)
    return {
        row: RankInterval(int(point[r]), int(low[r]), int(high[r])) if column.n_units[r] >= 2
        else RankInterval(int(point[r]), 1, n)
        for r, row in enumerate(column.rows)
    }


def mean_rank_intervals(
    columns: Mapping[C, Mapping[K, Sample]],
    directions: Mapping[C, str],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[K, MeanRank]:
    """Each row's mean rank over the columns it is ranked in, with a 95 % bootstrap interval.

    *Mean rank*: the mean, over the columns where the row has a finite value, of its rank in the
    column (as in :func:`column_ranks`). Rows ranked in different columns are averaged over
    different columns; rows ranked in no column have no entry.

    *Interval*: in each draw every column is resampled and ranked as in :func:`column_ranks` and the
    row's ranks are averaged over its columns; the interval runs from the lower 2.5th to the higher
    97.5th percentile of these means (values that occur in the draws), widened to contain the point.
    Columns whose units are the same set (in practice: one dataset's examples, shared by its models
    and metrics) are resampled jointly, one draw serving them all, because a row's values on one
    example tend to go together across metrics and independent draws would then understate the
    spread of its mean rank; columns with different units are resampled independently. A row with
    fewer than two units in any of its columns gets the widest interval: from 1 to the mean over its
    columns of the number of rows ranked there. Seeded: the same inputs in the same order give the
    same result.
    """
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    parsed = {c: _column(samples, directions[c]) for c, samples in columns.items()}
    parsed = {c: column for c, column in parsed.items() if column.rows}
    rows: dict = {}
    for column in parsed.values():
        for row in column.rows:
            rows.setdefault(row, len(rows))
    if not rows:
        return {}
    n_columns = np.zeros(len(rows))
    point_total = np.zeros(len(rows))
    widest_total = np.zeros(len(rows))
    few_units = np.zeros(len(rows), dtype=bool)
    draw_total = np.zeros((resamples, len(rows)))
    groups: dict[tuple[str, ...], list[_Column]] = {}
    for column in parsed.values():
        at = np.array([rows[row] for row in column.rows])
        n_columns[at] += 1
        point_total[at] += _min_ranks(column.point)
        widest_total[at] += len(column.rows)
        few_units[at] |= column.n_units < 2
        groups.setdefault(column.units, []).append(column)
    rng = np.random.default_rng(seed)
    for units, members in groups.items():
        start = 0
        for weights in _draws(rng, len(units), resamples):
            for column in members:
                at = np.array([rows[row] for row in column.rows])
                draw_total[start : start + len(weights), at] += _draw_ranks(column, weights)
            start += len(weights)
    point = point_total / n_columns
    low, high = _percentile_bounds(draw_total / n_columns, point)
    widest = widest_total / n_columns
    return {
        row: MeanRank(float(point[r]), 1.0, float(widest[r])) if few_units[r]
        else MeanRank(float(point[r]), float(low[r]), float(high[r]))
        for row, r in rows.items()
    }


def pairwise_tests(samples: Mapping[K, Sample]) -> dict[tuple[K, K], Comparison]:
    """The Wilcoxon signed-rank test (``harness.stats.paired_wilcoxon``, two-sided, paired by unit)
    of every unordered pair of rows of one column, keyed (a, b) with a before b in the mapping's
    order, testing a − b. The p-values are unadjusted: adjust a whole board at once with
    :func:`holm_across`."""
    keys = list(samples)
    return {(a, b): paired_wilcoxon(samples[a], samples[b]) for a, b in combinations(keys, 2)}


def holm_across(tests: Mapping[X, Comparison], alpha: float = ALPHA) -> dict[X, Comparison]:
    """Holm-Bonferroni adjustment (``harness.stats.holm``) across every comparison given at once,
    e.g. every pairwise test of every column of a board; comparisons without a p-value are kept
    unadjusted and do not count in the family."""
    keys = list(tests)
    return dict(zip(keys, holm([tests[key] for key in keys], alpha), strict=True))


def _absorb(columns: list[set[int]]) -> list[set[int]]:
    """Drops repeated letter columns and those contained in another (Piepho's absorption)."""
    kept: list[set[int]] = []
    for i, column in enumerate(columns):
        repeated = any(column == other for other in columns[:i])
        contained = any(column < other for other in columns)
        if not repeated and not contained:
            kept.append(column)
    return kept


def _sweep(columns: list[set[int]]) -> list[set[int]]:
    """Removes a row from a letter column where every pair it forms there is covered by another
    letter too (Piepho's sweeping), so that no letter is redundant for a row; the display stays
    valid: no pair loses its last shared letter and every row keeps one letter."""
    for column in columns:
        for t in sorted(column):
            others = [other for other in columns if other is not column and t in other]
            if others and all(any(u in other for other in others) for u in column - {t}):
                column.discard(t)
    return _absorb([column for column in columns if column])


def tie_groups(ranked: Sequence[K], separated: Callable[[K, K], bool]) -> dict[K, str]:
    """Compact letter display of a ranking: two rows share at least one letter if and only if no
    test separates them.

    ``ranked`` lists the rows best first; ``separated(a, b)`` is asked once for each pair, with a
    ranked before b, and says whether a test separates them (e.g. a Holm-adjusted significant
    difference). Letters come from Piepho's insert-and-absorb algorithm (Piepho 2004, "An algorithm
    for a letter-based representation of all-pairwise comparisons", J. Comput. Graph. Stat. 13):
    start with one letter shared by all rows; for each separated pair, split every letter that holds
    both into one without the first and one without the second, then drop letters contained in
    another; finally sweep out letters a row does not need. Letters are named 'a', 'b', … in rank
    order (sorted by the ranks of their rows, best first), so the best row has 'a'; a row may have
    several ("ab"). When no pair is separated every row gets "a". The display is valid, not always
    the one with the fewest letters; more than 52 letters (a–z, A–Z) raise ValueError.
    """
    rows = list(ranked)
    if len(set(rows)) != len(rows):
        raise ValueError("a row is listed twice")
    columns: list[set[int]] = [set(range(len(rows)))] if rows else []
    for i, j in combinations(range(len(rows)), 2):
        if separated(rows[i], rows[j]):
            split: list[set[int]] = []
            for column in columns:
                split.extend([column - {i}, column - {j}] if i in column and j in column else [column])
            columns = _absorb(split)
    columns = sorted(_sweep(columns), key=sorted)
    if len(columns) > len(ascii_letters):
        raise ValueError(f"{len(columns)} letters needed, more than {len(ascii_letters)}")
    return {
        row: "".join(letter for letter, column in zip(ascii_letters, columns, strict=False) if r in column)
        for r, row in enumerate(rows)
    }


def win_rates(means: Mapping[C, Mapping[K, float | None]], directions: Mapping[C, str]) -> dict[K, float]:
    """Mean win rate, as HELM aggregates its leaderboard (Liang et al. 2022, "Holistic Evaluation of
    Language Models").

    In a column, a row's win rate is the fraction of the *other* rows present in that column that it
    beats, a tie (exactly equal means) counting ½; a row is present where its mean is finite. A
    row's mean win rate is the mean of its win rates over the columns where it is present together
    with at least one other row; rows with no such column have no entry.
    """
    totals: dict = {}
    counts: dict = {}
    for c, values in means.items():
        _check_direction(directions[c])
        sign = 1.0 if directions[c] == "higher" else -1.0
        present = {k: sign * float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
        if len(present) < 2:
            continue
        x = np.array(list(present.values()))
        beaten = (x[:, None] > x[None, :]).sum(axis=1)
        tied = (x[:, None] == x[None, :]).sum(axis=1) - 1  # not itself
        rates = (beaten + 0.5 * tied) / (len(x) - 1)
        for k, rate in zip(present, rates, strict=True):
            totals[k] = totals.get(k, 0.0) + float(rate)
            counts[k] = counts.get(k, 0) + 1
    return {k: totals[k] / counts[k] for k in totals}


def kendalls_w(ranks: np.ndarray) -> float:
    """Kendall's coefficient of concordance W of an m × n matrix: m judges (e.g. columns) each
    ranking the same n items (rows), smaller = better.

    Each judge's row is re-ranked with average ranks for ties, so ranks with ties in any
    convention (or any scores where smaller is better) give the same W. With R_i the sum of item
    i's ranks, S = Σ (R_i − m(n + 1)/2)² and, per judge, T = Σ (t³ − t) over its groups of t tied
    items, W = 12 S / (m² (n³ − n) − m Σ T) (Kendall & Babington Smith 1939; the tie correction as
    in Kendall, Rank Correlation Methods, 1948): 1 when every judge ranks alike, 0 when the rank sums are all equal. NaN when it is
    undefined: fewer than two items, or every judge ties every item.
    """
    x = np.asarray(ranks, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError("ranks must be a 2-d matrix: judges × items")
    if not np.all(np.isfinite(x)):
        raise ValueError("ranks must be finite")
    m, n = x.shape
    if m < 1 or n < 2:
        return float("nan")
    r = rankdata(x, axis=1)
    ties = sum(float((t**3 - t).sum()) for t in (np.unique(row, return_counts=True)[1] for row in r))
    totals = r.sum(axis=0)
    s = float(((totals - m * (n + 1) / 2) ** 2).sum())
    denominator = m**2 * (n**3 - n) - m * ties
    return 12 * s / denominator if denominator > 0 else float("nan")


def rank_correlations(orderings: Mapping[C, Mapping[K, float | None]]) -> dict[tuple[C, C], float | None]:
    """Kendall's tau-b (scipy.stats.kendalltau, which corrects for ties) between each pair of
    columns (c1, c2), c1 before c2 in the mapping's order, over the rows with a finite value in
    both. The values must be oriented alike in every column (e.g. ranks, 1 = best). None where tau
    is undefined: fewer than three common rows (too few to say anything), or a column constant on
    them. None rather than NaN, so that it stays valid JSON."""
    result: dict[tuple[C, C], float | None] = {}
    for c1, c2 in combinations(list(orderings), 2):
        a, b = orderings[c1], orderings[c2]
        common = [
            k for k, v in a.items()
            if v is not None and np.isfinite(v) and b.get(k) is not None and np.isfinite(b[k])
        ]
        tau = float("nan")
        if len(common) >= 3:
            tau = float(kendalltau([a[k] for k in common], [b[k] for k in common]).statistic)
        result[(c1, c2)] = None if np.isnan(tau) else tau
    return result


class Agreement(NamedTuple):
    """How far the columns of a board agree on the order of its rows."""

    w: float | None
    """Kendall's W over the rows present in every column; None when undefined."""
    n_rows: int
    """The rows W is computed over."""
    pairwise: dict
    """Kendall's tau-b between each pair of columns (see :func:`rank_correlations`)."""


def agreement(
    columns_means: Mapping[C, Mapping[K, float | None]], directions: Mapping[C, str]
) -> Agreement:
    """The agreement of a board's columns on the order of its rows.

    Each column ranks its rows (those with a finite mean) by its direction, best = 1, average ranks
    for ties. ``w`` is Kendall's W (:func:`kendalls_w`, columns as judges) over the rows present in
    every column, ``n_rows`` their number; ``w`` is None with fewer than two columns or two such
    rows, or when every column ties all of them. ``pairwise`` is Kendall's tau-b between each pair
    of columns over the rows both have (:func:`rank_correlations`).
    """
    ranks: dict = {}
    for c, values in columns_means.items():
        _check_direction(directions[c])
        sign = 1.0 if directions[c] == "higher" else -1.0
        present = {k: float(v) for k, v in values.items() if v is not None and np.isfinite(v)}
        ranked = rankdata([-sign * v for v in present.values()])
        ranks[c] = dict(zip(present, map(float, ranked), strict=True))
    common = [k for k in next(iter(ranks.values()), {}) if all(k in r for r in ranks.values())]
    w = None
    if len(ranks) >= 2 and len(common) >= 2:
        value = kendalls_w(np.array([[r[k] for k in common] for r in ranks.values()]))
        w = None if np.isnan(value) else value
    return Agreement(w, len(common), rank_correlations(ranks))
