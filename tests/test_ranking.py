"""Statistics of a leaderboard: rank intervals, mean ranks, pairwise tests with Holm across the board,
compact letter displays, HELM win rates, Kendall's W and tau.

Expected values are hand-computed (the arithmetic is written next to them), follow from the data's
construction (probabilities of a draw given in the comments), or come from an independent library,
never from the call under test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from statsmodels.stats.multitest import multipletests

from harness.ranking import (
    MeanRank,
    RankInterval,
    agreement,
    column_ranks,
    holm_across,
    kendalls_w,
    mean_rank_intervals,
    pairwise_tests,
    rank_correlations,
    tie_groups,
    win_rates,
)
from harness.stats import Comparison, Sample, paired_wilcoxon, summarize

NAN = float("nan")


def by_example(values, prefix="ex"):
    """One record per example (its own unit): ex0, ex1, …"""
    return Sample.of({(0, f"{prefix}{i}"): v for i, v in enumerate(values)})


def standardized(n, seed):
    """n values with mean 0 and (population) standard deviation 1."""
    z = np.random.default_rng(seed).normal(size=n)
    return (z - z.mean()) / z.std()


# --- column_ranks ----------------------------------------------------------------------------------


def test_well_separated_rows_get_their_rank_exactly():
    rng = np.random.default_rng(0)
    column = {name: by_example(rng.normal(mean, 1.0, 200)) for name, mean in [("A", 10), ("B", 5), ("C", 0)]}
    assert column_ranks(column, "higher") == {
        "A": RankInterval(1, 1, 1), "B": RankInterval(2, 2, 2), "C": RankInterval(3, 3, 3)
    }


def test_direction_lower_reverses_the_ranks():
    rng = np.random.default_rng(0)
    column = {name: by_example(rng.normal(mean, 1.0, 200)) for name, mean in [("A", 10), ("B", 5), ("C", 0)]}
    assert column_ranks(column, "lower") == {
        "A": RankInterval(3, 3, 3), "B": RankInterval(2, 2, 2), "C": RankInterval(1, 1, 1)
    }


def test_the_bootstrap_is_paired_across_rows():
    # the examples differ wildly (sd 100) but B is A − 1 on every example: the rows' own intervals
    # overlap, yet every paired draw keeps A ahead
    base = 100 * standardized(200, seed=1)
    a, b = by_example(base), by_example(base - 1.0)
    sa, sb = summarize(a), summarize(b)
    assert sb.ci_high > sa.ci_low  # unpaired, the two means could not be told apart
    assert column_ranks({"A": a, "B": b}, "higher") == {"A": RankInterval(1, 1, 1), "B": RankInterval(2, 2, 2)}


def test_identical_rows_tie_at_the_better_rank_in_every_draw():
    rng = np.random.default_rng(2)
    values = rng.normal(0, 1, 200)
    column = {"A": by_example(values), "B": by_example(values), "C": by_example(values - 5)}
    assert column_ranks(column, "higher") == {
        "A": RankInterval(1, 1, 1), "B": RankInterval(1, 1, 1), "C": RankInterval(3, 3, 3)
    }


def test_rows_a_hair_apart_both_span_ranks_one_to_two():
    # B − A has mean 0.1 standard errors (sd 0.01 over 200 examples: se ≈ 0.0007; offset 0.0001), so
    # B beats A in about half of the draws
    a = np.random.default_rng(3).normal(0, 1, 200)
    b = a + 0.01 * standardized(200, seed=4) + 0.0001
    ranks = column_ranks({"A": by_example(a), "B": by_example(b)}, "higher")
    assert ranks == {"A": RankInterval(2, 1, 2), "B": RankInterval(1, 1, 2)}
    assert ranks["A"].text == "1–2"


def test_the_bootstrap_resamples_units_not_records():
    # 2 timed batches of 200 records each; per record A − B is +0.5 (batch 1) or −0.3 (batch 2), so
    # 400 independent records would put A ahead in every draw (mean 0.1, se 0.4/√400 = 0.02), but
    # the draw {batch 2, batch 2} (probability ¼) puts B ahead
    def batches(first, second):
        values = {(0, f"ex{i}"): first if i < 200 else second for i in range(400)}
        return Sample.of(values, {key: "batch 1" if i < 200 else "batch 2" for i, key in enumerate(values)})

    ranks = column_ranks({"A": batches(1.0, 0.2), "B": batches(0.5, 0.5)}, "higher")
    assert ranks == {"A": RankInterval(1, 1, 2), "B": RankInterval(2, 1, 2)}


def test_a_row_unmeasured_in_a_draw_ranks_last_there():
    # C has a value on 2 of the 200 examples: no draw of 200 holds either with probability
    # (198/200)^200 ≈ 0.134 > 0.025, so C ranks last in ≈ 13 % of the draws, and A and B move up
    rng = np.random.default_rng(5)
    c = by_example([50.0, 50.0] + [NAN] * 198)
    column = {"A": by_example(rng.normal(10, 1, 200)), "B": by_example(rng.normal(5, 1, 200)), "C": c}
    assert column_ranks(column, "higher") == {
        "A": RankInterval(2, 1, 2), "B": RankInterval(3, 2, 3), "C": RankInterval(1, 1, 3)
    }


def test_a_row_measured_on_one_unit_gets_the_widest_interval():
    rng = np.random.default_rng(6)
    one_unit = Sample.of({(seed, "ex0"): 50.0 for seed in range(3)})  # three seeds of one example
    column = {"A": by_example(rng.normal(10, 1, 200)), "B": by_example(rng.normal(5, 1, 200)), "C": one_unit}
    assert column_ranks(column, "higher")["C"] == RankInterval(1, 1, 3)


def test_rows_without_a_finite_value_are_not_ranked():
    column = {"A": by_example([1.0, 2.0, 3.0]), "B": by_example([NAN, None, NAN])}
    assert list(column_ranks(column, "higher")) == ["A"]
    assert column_ranks({}, "higher") == {}
    assert column_ranks({"B": by_example([NAN])}, "higher") == {}


def test_rank_intervals_are_seeded_and_ignore_the_order_of_the_rows():
    rng = np.random.default_rng(7)
    column = {name: by_example(rng.normal(0, 1, 30)) for name in "ABCDE"}
    first = column_ranks(column, "higher", resamples=500, seed=11)
    assert column_ranks(column, "higher", resamples=500, seed=11) == first
    assert column_ranks(dict(reversed(column.items())), "higher", resamples=500, seed=11) == first
    assert any(interval.low < interval.high for interval in first.values())  # the noisy case it claims


@pytest.mark.parametrize("seed", range(5))
def test_the_interval_always_holds_the_point_rank(seed):
    # one draw alone often ranks a noisy row elsewhere than the observed means do
    rng = np.random.default_rng(seed)
    column = {name: by_example(rng.normal(0, 1, 10)) for name in "ABCDEF"}
    for interval in column_ranks(column, "higher", resamples=1, seed=seed).values():
        assert 1 <= interval.low <= interval.rank <= interval.high <= 6


def test_rank_interval_text_and_dict():
    assert RankInterval(2, 2, 2).text == "2"
    assert RankInterval(2, 1, 3).text == "1–3"
    assert RankInterval(2, 1, 3).as_dict() == {"rank": 2, "low": 1, "high": 3}


def test_an_unknown_direction_is_an_error():
    with pytest.raises(ValueError, match="direction"):
        column_ranks({"A": by_example([1.0, 2.0])}, "up")


# --- mean_rank_intervals ---------------------------------------------------------------------------


def test_mean_rank_averages_the_ranks_over_the_columns_a_row_has():
    rng = np.random.default_rng(8)
    columns = {
        "acc": {"A": by_example(rng.normal(3, 0.1, 100)), "B": by_example(rng.normal(2, 0.1, 100)),
                "C": by_example(rng.normal(1, 0.1, 100))},
        "time": {"A": by_example(rng.normal(2, 0.1, 100)), "B": by_example(rng.normal(1, 0.1, 100))},
    }
    # acc (higher): A 1, B 2, C 3; time (lower): B 1, A 2, C absent
    # A (1 + 2) / 2 = 1.5, B (2 + 1) / 2 = 1.5, C 3 / 1 = 3; well separated: intervals are the point
    assert mean_rank_intervals(columns, {"acc": "higher", "time": "lower"}) == {
        "A": MeanRank(1.5, 1.5, 1.5), "B": MeanRank(1.5, 1.5, 1.5), "C": MeanRank(3.0, 3.0, 3.0)
    }


def test_columns_on_the_same_units_are_resampled_jointly():
    # B − A has mean −1.4 standard errors, so B beats A in ≈ 8 % of the draws of a column.
    # Two copies of the column on the same examples share their draws: A's mean rank is 1 or 2,
    # and 2 in ≈ 8 % > 2.5 % of the draws. On different examples the draws are independent:
    # 1.5 in ≈ 2·0.08·0.92 ≈ 15 %, 2 in only ≈ 0.08² ≈ 0.6 % < 2.5 %, so the interval stops at 1.5.
    a = np.random.default_rng(9).normal(0, 1, 200)
    b = a - 0.1 * (standardized(200, seed=10) + 1.4 / math.sqrt(200))

    def column(prefix):
        return {"A": by_example(a, prefix), "B": by_example(b, prefix)}

    directions = {"m1": "higher", "m2": "higher"}
    joint = mean_rank_intervals({"m1": column("ex"), "m2": column("ex")}, directions)
    independent = mean_rank_intervals({"m1": column("ex"), "m2": column("other")}, directions)
    assert joint["A"] == MeanRank(1.0, 1.0, 2.0)
    assert independent["A"] == MeanRank(1.0, 1.0, 1.5)


def test_a_row_on_one_unit_in_a_column_gets_the_widest_mean_rank_interval():
    rng = np.random.default_rng(11)
    columns = {
        "m1": {"A": by_example(rng.normal(3, 0.1, 50)), "B": by_example(rng.normal(2, 0.1, 50)),
               "C": by_example([0.0] + [NAN] * 49)},
        "m2": {"A": by_example(rng.normal(3, 0.1, 50)), "B": by_example(rng.normal(2, 0.1, 50))},
    }
    result = mean_rank_intervals(columns, {"m1": "higher", "m2": "higher"})
    # C: ranked 3rd of 3 in m1 only; the widest interval runs from 1 to 3
    assert result["C"] == MeanRank(3.0, 1.0, 3.0)
    assert result["A"] == MeanRank(1.0, 1.0, 1.0)


def test_mean_rank_intervals_are_seeded():
    rng = np.random.default_rng(12)
    columns = {m: {name: by_example(rng.normal(0, 1, 30)) for name in "ABC"} for m in ("m1", "m2")}
    directions = {"m1": "higher", "m2": "lower"}
    first = mean_rank_intervals(columns, directions, resamples=300, seed=3)
    assert mean_rank_intervals(columns, directions, resamples=300, seed=3) == first
    assert any(r.low < r.high for r in first.values())


# --- pairwise tests and Holm across the board ------------------------------------------------------


def test_pairwise_tests_cover_every_pair_in_order_unadjusted():
    rng = np.random.default_rng(13)
    column = {name: by_example(rng.normal(shift, 1, 20)) for name, shift in [("A", 0), ("B", 1), ("C", 0.2)]}
    tests = pairwise_tests(column)
    assert list(tests) == [("A", "B"), ("A", "C"), ("B", "C")]
    for (a, b), comparison in tests.items():
        assert comparison == paired_wilcoxon(column[a], column[b])
        assert comparison.p_adjusted is None


def test_holm_across_matches_statsmodels_and_the_textbook():
    p_values = {("m1", "A", "B"): 0.01, ("m1", "A", "C"): 0.04, ("m2", "A", "B"): 0.03, ("m2", "B", "C"): 0.5}
    tests = {key: Comparison(10, 1.0, p) for key, p in p_values.items()}
    tests[("m3", "A", "B")] = Comparison(0, None, None, note="no paired examples")
    adjusted = holm_across(tests)
    assert list(adjusted) == list(tests)
    reject, expected, _, _ = multipletests(list(p_values.values()), alpha=0.05, method="holm")
    assert [adjusted[key].p_adjusted for key in p_values] == pytest.approx(expected)
    assert [adjusted[key].significant for key in p_values] == list(reject)
    # by hand: sorted 0.01·4 = 0.04, 0.03·3 = 0.09, 0.04·2 = 0.08 → 0.09 (monotone), 0.5·1 = 0.5
    assert [adjusted[key].p_adjusted for key in p_values] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjusted[("m3", "A", "B")] == tests[("m3", "A", "B")]


# --- tie_groups ------------------------------------------------------------------------------------


def separated_by(pairs):
    pairs = {frozenset(pair) for pair in pairs}
    return lambda a, b: frozenset((a, b)) in pairs


def test_only_the_ends_separated_share_the_middle():
    assert tie_groups("ABC", separated_by(["AC"])) == {"A": "a", "B": "ab", "C": "b"}


def test_a_fully_separated_chain_gets_one_letter_each():
    assert tie_groups("ABC", separated_by(["AB", "AC", "BC"])) == {"A": "a", "B": "b", "C": "c"}


def test_nothing_separated_gives_everyone_a():
    assert tie_groups("ABCD", separated_by([])) == {"A": "a", "B": "a", "C": "a", "D": "a"}
    assert tie_groups([], separated_by([])) == {}


def test_a_non_transitive_case_needs_three_letters():
    # only the neighbours A–B, B–C, C–D are not separated
    assert tie_groups("ABCD", separated_by(["AC", "AD", "BD"])) == {"A": "a", "B": "ab", "C": "bc", "D": "c"}


def test_a_row_separated_from_no_one_shares_a_letter_with_everyone():
    assert tie_groups("ABCD", separated_by(["AC"])) == {"A": "a", "B": "ab", "C": "b", "D": "ab"}


def test_no_row_carries_a_letter_it_does_not_need():
    # insert-and-absorb alone gives B "abc" here, but B shares "a" with A and E and "c" with C and D:
    # the sweep drops its "b"
    letters = tie_groups("ABCDE", separated_by(["AC", "CE", "DE"]))
    assert letters == {"A": "ab", "B": "ac", "C": "c", "D": "bc", "E": "a"}


@pytest.mark.parametrize("seed", range(20))
def test_letters_are_shared_exactly_by_the_pairs_no_test_separates(seed):
    rng = np.random.default_rng(seed)
    rows = list(range(7))
    separated_pairs = [pair for pair in itertools.combinations(rows, 2) if rng.random() < 0.4]
    letters = tie_groups(rows, separated_by(separated_pairs))
    assert letters[0].startswith("a")
    for a, b in itertools.combinations(rows, 2):
        assert bool(set(letters[a]) & set(letters[b])) == ((a, b) not in separated_pairs)
    for r in rows:  # each letter of a row is its only letter, or the only one it shares with someone
        for letter in letters[r]:
            assert len(letters[r]) == 1 or any(
                set(letters[r]) & set(letters[u]) == {letter} for u in rows if u != r
            )
    used = sorted(set("".join(letters.values())))
    assert used == [chr(ord("a") + i) for i in range(len(used))]  # a, b, … with no gap
    first_row = {letter: min(r for r in rows if letter in letters[r]) for letter in used}
    assert [first_row[letter] for letter in used] == sorted(first_row.values())  # named in rank order


def test_a_row_listed_twice_is_an_error():
    with pytest.raises(ValueError):
        tie_groups("ABA", separated_by([]))


# --- win_rates -------------------------------------------------------------------------------------


def test_mean_win_rate_textbook_example():
    means = {
        "acc": {"A": 0.9, "B": 0.5, "C": 0.5},  # higher is better
        "time": {"A": 3.0, "B": 1.0, "C": None},  # lower is better; C missing
        "solo": {"A": 1.0},  # no other row: not counted
        "alone": {"E": 1.0, "F": NAN},  # E alone among finite values: E has no win rate anywhere
    }
    directions = {"acc": "higher", "time": "lower", "solo": "higher", "alone": "higher"}
    # acc:  A beats B and C → 2/2 = 1; B ties C, loses to A → ½/2 = 0.25; C likewise 0.25
    # time: A loses to B → 0/1 = 0; B beats A → 1/1 = 1
    # mean: A (1 + 0)/2 = 0.5; B (0.25 + 1)/2 = 0.625; C 0.25/1 = 0.25
    assert win_rates(means, directions) == pytest.approx({"A": 0.5, "B": 0.625, "C": 0.25})


def test_a_full_tie_is_a_win_rate_of_one_half():
    assert win_rates({"m": {"A": 1.0, "B": 1.0, "C": 1.0}}, {"m": "lower"}) == {"A": 0.5, "B": 0.5, "C": 0.5}


# --- Kendall's W and tau ---------------------------------------------------------------------------


def test_kendalls_w_textbook_value():
    ranks = np.array([[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4]])
    # R = (4, 6, 8, 12), mean m(n+1)/2 = 7.5, S = 12.25 + 2.25 + 0.25 + 20.25 = 35
    # W = 12·35 / (3²·(4³ − 4)) = 420 / 540 = 7/9
    assert kendalls_w(ranks) == pytest.approx(7 / 9)


def test_kendalls_w_is_one_for_perfect_agreement_and_zero_for_a_reversed_pair():
    assert kendalls_w(np.array([[1, 2, 3, 4, 5]] * 4)) == pytest.approx(1.0)
    # two judges in opposite orders: every rank sum is n + 1, S = 0
    assert kendalls_w(np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])) == pytest.approx(0.0)


def test_kendalls_w_with_ties_uses_the_corrected_denominator():
    ranks = np.array([[1, 2, 3, 4], [1.5, 1.5, 3, 4], [1, 2, 4, 3]])
    # R = (3.5, 5.5, 10, 11), S = 16 + 4 + 6.25 + 12.25 = 38.5; judge 2 ties 2 items: T = 2³ − 2 = 6
    # W = 12·38.5 / (9·60 − 3·6) = 462 / 522 = 77/87 (uncorrected it would be 462/540)
    assert kendalls_w(ranks) == pytest.approx(77 / 87)
    # ties written as competition ranks ("min") or as scores give the same W
    assert kendalls_w(np.array([[1, 2, 3, 4], [1, 1, 3, 4], [1, 2, 4, 3]])) == pytest.approx(77 / 87)
    assert kendalls_w(np.array([[0.1, 0.2, 0.3, 0.4], [5, 5, 7, 9], [1, 2, 4, 3]])) == pytest.approx(77 / 87)


def test_kendalls_w_agrees_with_the_mean_spearman_correlation():
    # without ties, the mean Spearman rho over the pairs of judges is (m·W − 1) / (m − 1)
    rng = np.random.default_rng(14)
    ranks = np.array([rng.permutation(8) + 1 for _ in range(5)])
    rhos = [spearmanr(ranks[i], ranks[j]).statistic for i, j in itertools.combinations(range(5), 2)]
    m = 5
    assert kendalls_w(ranks) == pytest.approx((1 + (m - 1) * np.mean(rhos)) / m)


def test_kendalls_w_undefined_cases():
    assert math.isnan(kendalls_w(np.array([[1], [1]])))  # one item
    assert math.isnan(kendalls_w(np.array([[1, 1, 1], [2, 2, 2]])))  # every judge ties every item
    with pytest.raises(ValueError):
        kendalls_w(np.array([1, 2, 3]))
    with pytest.raises(ValueError):
        kendalls_w(np.array([[1, NAN, 3], [1, 2, 3]]))


def test_rank_correlations_are_kendalls_tau_b_over_common_rows():
    orderings = {
        "c1": {"A": 1, "B": 2, "C": 3, "D": 4},
        "c2": {"A": 1, "B": 3, "C": 2, "D": 4},
        "c3": {"A": 1, "B": 1, "C": 3, "D": 4, "E": 9},
        "c4": {"A": 1, "B": 2, "E": 3, "F": None},
    }
    taus = rank_correlations(orderings)
    assert list(taus) == [("c1", "c2"), ("c1", "c3"), ("c1", "c4"), ("c2", "c3"), ("c2", "c4"), ("c3", "c4")]
    # 6 pairs, one discordant (B, C): (5 − 1) / 6
    assert taus[("c1", "c2")] == pytest.approx(2 / 3)
    # 5 concordant, 0 discordant, c3 ties (A, B): tau-b = 5 / √(6·(6 − 1)) = 5/√30
    assert taus[("c1", "c3")] == pytest.approx(5 / math.sqrt(30))
    assert taus[("c1", "c4")] is None  # A and B only in common
    # A, B, E in common: (A, E), (B, E) concordant, (A, B) tied in c3: 2 / √((3 − 1)·(3 − 0)) = 2/√6
    assert taus[("c3", "c4")] == pytest.approx(2 / math.sqrt(6))
    constant = rank_correlations({"c1": orderings["c1"], "flat": {"A": 1, "B": 1, "C": 1}})
    assert constant == {("c1", "flat"): None}  # tau is undefined when a column ties every row


def test_agreement_ranks_each_column_by_its_direction_over_common_rows():
    means = {
        "acc": {"A": 0.9, "B": 0.8, "C": 0.7, "D": 0.6, "E": 0.5},  # ranks 1 2 3 4 (5)
        "time": {"A": 2.0, "B": 1.0, "C": 3.0, "D": 4.0, "E": 5.0},  # lower: 2 1 3 4 (5)
        "auc": {"A": 5.0, "B": 3.0, "C": 4.0, "D": 1.0},  # 1 3 2 4; E missing
    }
    result = agreement(means, {"acc": "higher", "time": "lower", "auc": "higher"})
    assert result.n_rows == 4  # E is not in every column
    assert result.w == pytest.approx(7 / 9)  # the textbook matrix above
    assert result.pairwise[("acc", "auc")] == pytest.approx(2 / 3)  # (B, C) discordant of 6 pairs
    assert result.pairwise[("acc", "time")] == pytest.approx(0.8)  # A..E: (A, B) discordant of 10: (9 − 1)/10


def test_agreement_is_undefined_with_one_column_or_one_common_row():
    assert agreement({"acc": {"A": 1.0, "B": 2.0}}, {"acc": "higher"}).w is None
    result = agreement({"m1": {"A": 1.0, "B": 2.0}, "m2": {"A": 1.0, "C": 2.0}}, {"m1": "higher", "m2": "lower"})
    assert (result.w, result.n_rows) == (None, 1)
    assert result.pairwise == {("m1", "m2"): None}
