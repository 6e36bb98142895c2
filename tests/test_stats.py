"""Statistics of reports: cluster-bootstrap summaries, Wilcoxon tests paired by unit, Holm correction.

Expected values are textbook values (exact signed-rank tail probabilities, hand-computed Holm
adjustments) or come from an independent computation, never from the call under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap, wilcoxon

from harness.stats import RESAMPLES, Comparison, Sample, holm, paired_wilcoxon, summarize

NAN, INF = float("nan"), float("inf")


def by_example(values, seed=0):
    """One record per example (its own unit): ex0, ex1, …"""
    return Sample.of({(seed, f"ex{i}"): v for i, v in enumerate(values)})


# --- Sample ----------------------------------------------------------------------------------------


def test_sample_counts_undefined_values_and_defaults_units_to_the_example():
    sample = Sample.of(
        {(0, "x"): 1.0, (1, "x"): 3.0, (0, "y"): None, (0, "z"): INF, (0, "w"): -INF, (0, "v"): NAN},
        {(0, "z"): "batch 1", (0, "y"): None},
    )
    assert sample.n == 2
    assert sample.n_undefined == 4  # None, +inf, -inf, NaN
    assert sample.units == {
        (0, "x"): "x", (1, "x"): "x", (0, "y"): "y", (0, "z"): "batch 1", (0, "w"): "w", (0, "v"): "v"
    }
    assert sample.n_units == 1  # only x has a finite value; its two seeds are one unit
    assert sample.unit_means() == {"x": 2.0}


def test_unit_means_average_the_finite_values_of_each_unit():
    sample = Sample.of(
        {(0, "a"): 1.0, (0, "b"): 2.0, (0, "c"): 6.0, (0, "d"): NAN, (0, "e"): 0.1, (0, "f"): 0.1, (0, "g"): 0.1},
        {(0, "a"): "b1", (0, "b"): "b1", (0, "c"): "b1", (0, "d"): "b2", (0, "e"): "b3", (0, "f"): "b3", (0, "g"): "b3"},
    )
    # b2 has no finite value; b3's shared measurement comes back exactly (0.1 + 0.1 + 0.1 ≠ 0.3)
    assert sample.unit_means() == {"b1": 3.0, "b3": 0.1}
    assert sample.n_units == 2


def test_a_sample_rejects_records_without_a_unit():
    with pytest.raises(ValueError):
        Sample({(0, "x"): 1.0}, {})


# --- summarize -------------------------------------------------------------------------------------


def test_summary_mean_is_over_all_finite_values_and_counts_units_and_undefined():
    # units of 1 and 3 values: the mean weighs values, not units ((1 + 2 + 3 + 10) / 4 = 4)
    sample = Sample.of(
        {(0, "a"): 10.0, (0, "b"): 1.0, (0, "c"): 2.0, (0, "d"): 3.0, (0, "e"): None},
        {(0, "b"): "batch", (0, "c"): "batch", (0, "d"): "batch"},
    )
    summary = summarize(sample)
    assert (summary.mean, summary.n, summary.n_undefined, summary.n_units) == (4.0, 4, 1, 2)
    assert summary.as_dict()["n_units"] == 2


def test_no_interval_from_a_single_unit_even_with_several_seeds():
    summary = summarize(Sample.of({(0, "x"): 1.0, (1, "x"): 2.0, (2, "x"): 4.0}))
    assert (summary.mean, summary.ci_low, summary.ci_high, summary.n, summary.n_units) == (
        pytest.approx(7 / 3), None, None, 3, 1
    )


def test_constant_and_empty_samples():
    assert summarize(by_example([0.3, 0.3, 0.3])).as_dict() == {
        "mean": pytest.approx(0.3), "ci_low": pytest.approx(0.3), "ci_high": pytest.approx(0.3),
        "n": 3, "n_undefined": 0, "n_units": 3,
    }
    empty = summarize(by_example([None, NAN]))
    assert (empty.mean, empty.ci_low, empty.n, empty.n_undefined, empty.n_units) == (None, None, 0, 2, 0)


def test_cluster_bootstrap_of_homogeneous_clusters_equals_the_bootstrap_of_one_value_per_cluster():
    """Clusters of equal size whose records share one value (runtime of timed batches): resampling
    clusters is resampling the per-cluster values, computed here by scipy over those values alone."""
    batch_values = [0.8, 1.3, 0.2, 2.1, 1.7, 0.9]
    values = {(0, f"ex{b}-{i}"): v for b, v in enumerate(batch_values) for i in range(8)}
    units = {(0, f"ex{b}-{i}"): f"batch {b}" for b in range(len(batch_values)) for i in range(8)}
    summary = summarize(Sample.of(values, units), seed=7)
    expected = bootstrap(
        (np.array(batch_values),), np.mean, n_resamples=RESAMPLES, method="percentile",
        vectorized=True, random_state=np.random.default_rng(7),
    ).confidence_interval
    assert (summary.n, summary.n_units) == (48, 6)
    assert summary.ci_low == pytest.approx(expected.low, rel=1e-9)
    assert summary.ci_high == pytest.approx(expected.high, rel=1e-9)
    # the interval of 48 records treated as independent would be much narrower
    naive = bootstrap(
        (np.array(list(values.values())),), np.mean, n_resamples=RESAMPLES, method="percentile",
        random_state=np.random.default_rng(7),
    ).confidence_interval
    assert (summary.ci_high - summary.ci_low) > 2 * (naive.high - naive.low)


def test_cluster_bootstrap_agrees_with_a_hand_written_cluster_resampling():
    """Unequal clusters with varying values: draw clusters with replacement, pool their values."""
    rng = np.random.default_rng(3)
    clusters = [rng.normal(rng.normal(0, 1), 0.5, size=rng.integers(1, 6)) for _ in range(15)]
    values, units = {}, {}
    for c, cluster in enumerate(clusters):
        for s, value in enumerate(cluster):
            values[(s, f"ex{c}")] = float(value)  # seeds of one example: one cluster by default
    summary = summarize(Sample.of(values, units))

    draws = np.random.default_rng(12345).integers(0, len(clusters), size=(40_000, len(clusters)))
    sums = np.array([cluster.sum() for cluster in clusters])
    counts = np.array([len(cluster) for cluster in clusters])
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    width = high - low
    assert summary.mean == pytest.approx(np.concatenate(clusters).mean())
    assert summary.n_units == 15 and summary.n == counts.sum()
    assert summary.ci_low == pytest.approx(low, abs=0.1 * width)
    assert summary.ci_high == pytest.approx(high, abs=0.1 * width)


# --- paired_wilcoxon -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("differences", "alternative", "statistic", "p_value"),
    [
        ([1.0, 2.0, 3.0], "two-sided", 0.0, 2 / 2**3),  # all positive: only the extreme sign pattern
        ([1.0, 2.0, 3.0], "greater", 6.0, 1 / 2**3),  # W+ = 1 + 2 + 3
        ([1.0, 2.0, 3.0, 4.0, 5.0], "two-sided", 0.0, 2 / 2**5),
        # W- = 2; subsets of ranks {1..5} summing to ≤ 2: {}, {1}, {2} → 3/32 per tail
        ([1.0, -2.0, 3.0, 4.0, 5.0], "two-sided", 2.0, 6 / 32),
        ([1.0, -2.0, 3.0, 4.0, 5.0], "greater", 13.0, 3 / 32),
    ],
)
def test_paired_wilcoxon_gives_exact_textbook_p_values(differences, alternative, statistic, p_value):
    b = [0.5 * i for i in range(len(differences))]
    a = [x + d for x, d in zip(b, differences, strict=True)]
    result = paired_wilcoxon(by_example(a), by_example(b), alternative=alternative)
    assert result.n_pairs == len(differences)
    assert result.statistic == pytest.approx(statistic)
    assert result.p_value == pytest.approx(p_value)


def test_runtime_records_of_three_timed_batches_are_three_pairs():
    """Regression: 24 runtime records from 3 batches of 8 hold 3 measurements. Treated as 24 pairs
    they gave p ≈ 1e-5; 3 independent pairs cannot give a two-sided p below 2/2^3 = 0.25."""
    ids = [f"ex{i}" for i in range(24)]
    units = {(0, e): f"batch {i // 8}" for i, e in enumerate(ids)}
    fast = Sample.of({(0, e): [0.010, 0.012, 0.011][i // 8] for i, e in enumerate(ids)}, units)
    slow = Sample.of({(0, e): [0.020, 0.025, 0.030][i // 8] for i, e in enumerate(ids)}, units)
    result = paired_wilcoxon(slow, fast)
    assert result.n_pairs == 3
    assert result.p_value >= 0.25
    assert result.p_value == pytest.approx(0.25)


def test_the_seeds_of_an_example_are_one_pair_whose_difference_is_their_mean():
    # per-example mean differences (0.5+1.5)/2 = 1, (-1-3)/2 = -2, 3, 4, 5 → the textbook case above
    seed_differences = {"p": (0.5, 1.5), "q": (-1.0, -3.0), "r": (3.0, 3.0), "s": (2.0, 6.0), "t": (5.0, 5.0)}
    a = Sample.of({(seed, e): d[seed] for e, d in seed_differences.items() for seed in (0, 1)})
    b = Sample.of({(seed, e): 0.0 for e in seed_differences for seed in (0, 1)})
    result = paired_wilcoxon(a, b)
    assert result.n_pairs == 5
    assert result.statistic == pytest.approx(2.0)
    assert result.p_value == pytest.approx(6 / 32)


@pytest.mark.parametrize(
    "layout",
    [
        [1] * 12,  # one record per example
        [2] * 6,  # two seeds per example
        [8, 8, 8],  # timed batches of 8
        [5, 1, 3, 7, 2, 4, 6],  # batches of mixed size (a last, short batch)
    ],
)
def test_a_test_sees_as_many_pairs_as_independent_measurements(layout):
    """Each unit holds one measurement shared by its records; the test must equal scipy's signed-rank
    test over the measurements themselves, however many records share each one."""
    rng = np.random.default_rng(len(layout))
    measured = rng.normal(0.3, 1.0, size=len(layout))
    a, b, units = {}, {}, {}
    for u, size in enumerate(layout):
        for i in range(size):
            key = (i % 2, f"u{u}-{i // 2}")
            a[key], b[key], units[key] = 1.0 + measured[u], 1.0, f"unit {u}"
    result = paired_wilcoxon(Sample.of(a, units), Sample.of(b, units))
    expected = wilcoxon(measured, zero_method="wilcox")
    assert result.n_pairs == len(layout)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert summarize(Sample.of(a, units)).n_units == len(layout)


def test_records_with_different_units_in_a_and_b_pair_by_the_combined_unit():
    a = Sample.of(
        {(0, "x"): 3.0, (0, "y"): 3.0, (0, "z"): 4.0},
        {(0, "x"): "batch 0", (0, "y"): "batch 0", (0, "z"): "batch 1"},
    )
    b = Sample.of({(0, "x"): 1.0, (0, "y"): 1.0, (0, "z"): 1.0})  # units: the examples
    # units "batch 0|x", "batch 0|y", "batch 1|z": differences 2, 2, 3 → all positive, 3 pairs
    result = paired_wilcoxon(a, b)
    assert result.n_pairs == 3
    assert result.p_value == pytest.approx(0.25)


def test_pairs_are_matched_by_key_not_by_position():
    a = Sample.of({(0, "x"): 1.0, (0, "y"): 2.0, (0, "z"): 3.0})
    b = Sample.of({(0, "z"): 3.0, (0, "y"): 2.0, (0, "x"): 1.0, (0, "w"): 9.0})  # w has no partner
    assert paired_wilcoxon(a, b) == Comparison(3, 0.0, 1.0, note="all paired differences are zero")
    # the same seed is needed: seed 1 of x does not pair with seed 0 of x
    other_seed = Sample.of({(1, "x"): 5.0})
    assert paired_wilcoxon(other_seed, a) == Comparison(0, None, None, note="no paired examples")


def test_undefined_values_are_left_out_of_the_pairs():
    a = by_example([1.0, NAN, 3.0, 4.0, None, 6.0, 7.0])
    b = by_example([0.0, 1.0, 1.0, 1.0, 1.0, INF, -INF])
    result = paired_wilcoxon(a, b)
    assert result.n_pairs == 3  # ex0, ex2, ex3: differences 1, 2, 3
    assert result.p_value == pytest.approx(0.25)


# --- holm ------------------------------------------------------------------------------------------


def test_holm_adjusts_by_hand_computed_values_and_skips_untestable_comparisons():
    # sorted 0.01, 0.03, 0.04 × (3, 2, 1) = 0.03, 0.06, 0.04 → running maximum 0.03, 0.06, 0.06
    comparisons = [Comparison(5, 0.0, p) for p in (0.01, 0.04, 0.03)] + [Comparison(0, None, None)]
    adjusted = holm(comparisons)
    assert [c.p_adjusted for c in adjusted[:3]] == pytest.approx([0.03, 0.06, 0.06])
    assert [c.significant for c in adjusted] == [True, False, False, False]
    assert adjusted[3] == comparisons[3]
    assert holm([Comparison(1, 0.0, 0.5)], alpha=0.6)[0].significant  # alpha is passed through
