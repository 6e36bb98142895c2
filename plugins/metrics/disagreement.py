"""Explainer disagreement (Krishna et al. 2022): do two explainers agree on the same prediction?

Each metric compares a cell's attributions with another explainer's attributions of the same examples
on the same model, variant and seed (``Metric.compares = "explainer"``): its ``reference`` parameter
names that explainer by its label (or its name) in the suite, or is ``each`` (the default), which gives
one cell per ordered pair of the suite's distinct explainers. The harness explains each example once
per explainer (cached like any explanation) and hands both sides to the metric; the report shows an
explainer × explainer matrix per metric.

For one example, A and B are the two explanations over the same features: the model's real
(non-special) tokens, or its words with ``granularity: word`` (a word's score is the mean of its
tokens'). Importance is magnitude, |score|, as in the paper. T_A is the top-k list of A: its k
features of largest |score|, ties in text order (the harness's ranking convention,
``Attribution.ranking(order="absolute")``), and r_A(f) the rank of f in it; sign(0) is 0, so a zero
score has the same sign only as another zero. k is a count (``k_mode: count``, capped at the number of
features n) or k % of n (``k_mode: percent``, ⌊k·n/100 + ½⌋, at least one, as every top-k % of the
harness); every top-k measure divides by that effective k, so two identical explanations score 1 even
on an example shorter than k.

- feature agreement@k  = |T_A ∩ T_B| / k
- rank agreement@k     = |{i ≤ k : T_A[i] = T_B[i]}| / k   (the same feature at the same rank)
- sign agreement@k     = |{f ∈ T_A ∩ T_B : sign(A_f) = sign(B_f)}| / k
- signed rank agreement@k = |{i ≤ k : T_A[i] = T_B[i] and sign(A_{T_A[i]}) = sign(B_{T_A[i]})}| / k
- rank correlation     = Spearman's ρ of |A| and |B| over the features of interest F: the Pearson
  correlation of their ranks, tied magnitudes sharing their mean rank (scipy's ``rankdata``)
- pairwise rank agreement = 1 / C(|F|, 2) · Σ_{i<j ∈ F} 1[sign(|A_i| − |A_j|) = sign(|B_i| − |B_j|)]

F is every feature (``features: all``, the default) or T_A ∪ T_B (``features: top-k``; the paper
leaves F to the practitioner, and the union keeps the measure symmetric). Pairwise rank agreement reads
the paper's indicator 1[f_i more important than f_j] in both directions of each pair, so that a pair
tied in one explanation agrees only with a tie in the other, whatever the features' text order.

Every measure is symmetric in A and B. Undefined (NaN, counted in the cell's notes): an example without
features; an example whose two attributions explain different classes (an explainer with a fixed
``target``); rank correlation with fewer than two features of interest or with equal |scores| on all of
them in either explanation (no ranking: ρ has no variance to divide by); pairwise rank agreement with
fewer than two features of interest. Where equal |scores| straddle the top-k boundary (or, for the
rank measures, sit inside the top k), text order decides, deterministically; the cell's notes count
those examples, since an explainer giving every feature one score "agrees" with anything by text order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.stats import rankdata

from harness import (
    Granularity,
    Metric,
    MetricInput,
    MetricOutput,
    Params,
    top_count,
)

KRISHNA = (
    "Krishna et al. 2022, The Disagreement Problem in Explainable Machine Learning: A Practitioner's "
    "Perspective, arXiv:2202.01602 (TMLR 2024): feature, rank, sign and signed rank agreement, rank "
    "correlation, pairwise rank agreement"
)
REFERENCE_DOC = (
    "the explainer compared with: the label of one of the suite's explainers as the report shows it (or "
    "its name, standing for every entry of that plugin), or each: every other explainer of the suite, "
    "one cell per ordered pair; cells comparing an explainer with itself are not in the grid"
)
GRANULARITY_DOC = (
    "features compared: the model's real tokens, or words (a word's score is the mean of its tokens')"
)

KMode = Literal["count", "percent"]


class AgreementParams(Params):
    reference: str = Field("each", min_length=1, description=REFERENCE_DOC)
    granularity: Granularity = Field("token", description=GRANULARITY_DOC)


class TopKAgreementParams(AgreementParams):
    k_mode: KMode = Field(
        "count", description="k is a count of features (count) or a percentage of the example's (percent)"
    )
    k: float = Field(
        5,
        description=(
            "the top-k size: a whole number ≥ 1 (k_mode count; capped at the example's number of features) "
            "or a percentage in (0, 100] (k_mode percent; ⌊k·n/100 + ½⌋, at least one feature)"
        ),
    )

    @model_validator(mode="after")
    def _k_matches_mode(self) -> TopKAgreementParams:
        if self.k_mode == "count" and not (self.k >= 1 and float(self.k).is_integer()):
            raise ValueError("with k_mode 'count', k must be a whole number ≥ 1")
        if self.k_mode == "percent" and not 0 < self.k <= 100:
            raise ValueError("with k_mode 'percent', k must be a percentage in (0, 100]")
        return self

    def top_k(self, n_features: int) -> int:
        """The effective k of an example with ``n_features`` features (0 when it has none)."""
        if n_features == 0:
            return 0
        if self.k_mode == "count":
            return min(int(self.k), n_features)
        return top_count(self.k, n_features)


class RankingAgreementParams(TopKAgreementParams):
    features: Literal["all", "top-k"] = Field(
        "all",
        description=(
            "F, the features of interest: every feature (all), or the union of the two explanations' "
            "top-k features (top-k; k and k_mode as for the top-k measures)"
        ),
    )

    @model_validator(mode="after")
    def _k_only_for_top_k(self) -> RankingAgreementParams:
        if self.features == "all" and self.model_fields_set & {"k", "k_mode"}:
            raise ValueError("k and k_mode choose the features of interest only with features: top-k")
        return self


# -- the six measures, on one example's feature scores (text order) --------------------------------------


def top_k_list(scores: np.ndarray, k: int) -> np.ndarray:
    """T: the indices of the k features of largest |score|, most important first; ties in text order."""
    return np.argsort(-np.abs(scores), kind="stable")[:k]


def feature_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|T_A ∩ T_B| / k."""
    if k == 0:
        return float("nan")
    return len(set(top_k_list(a, k).tolist()) & set(top_k_list(b, k).tolist())) / k


def rank_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|{i ≤ k : T_A[i] = T_B[i]}| / k: the same feature at the same rank."""
    if k == 0:
        return float("nan")
    return float(np.sum(top_k_list(a, k) == top_k_list(b, k))) / k


def sign_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|{f ∈ T_A ∩ T_B : sign(A_f) = sign(B_f)}| / k."""
    if k == 0:
        return float("nan")
    common = set(top_k_list(a, k).tolist()) & set(top_k_list(b, k).tolist())
    return sum(np.sign(a[f]) == np.sign(b[f]) for f in common) / k


def signed_rank_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|{i ≤ k : T_A[i] = T_B[i] and sign(A_{T_A[i]}) = sign(B_{T_A[i]})}| / k."""
    if k == 0:
        return float("nan")
    ta, tb = top_k_list(a, k), top_k_list(b, k)
    same = (ta == tb) & (np.sign(a[ta]) == np.sign(b[ta]))
    return float(np.sum(same)) / k


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ of |a| and |b|: Pearson's r of their ranks, ties sharing their mean rank; NaN with
    fewer than two features or when either has one |score| for all (no ranking)."""
    if len(a) < 2:
        return float("nan")
    ra, rb = rankdata(np.abs(a)), rankdata(np.abs(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / norm) if norm > 0 else float("nan")


def pairwise_rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of pairs i < j whose order by |score| is the same in both (i above j, j above i,
    or tied in both); NaN with fewer than two features."""
    n = len(a)
    if n < 2:
        return float("nan")
    ma, mb = np.abs(a), np.abs(b)
    same = np.sign(ma[:, None] - ma[None, :]) == np.sign(mb[:, None] - mb[None, :])
    return float(same[np.triu_indices(n, k=1)].mean())


def text_order_decides(scores: np.ndarray, k: int, inside: bool) -> bool:
    """Whether equal |scores| straddle the top-k boundary (and, with ``inside``, sit within the top k),
    so that text order decides the top-k list."""
    n = len(scores)
    if k == 0 or (k >= n and not inside):
        return False
    ordered = np.sort(np.abs(scores))[::-1]
    if k < n and ordered[k - 1] == ordered[k]:
        return True
    return inside and len(np.unique(ordered[:k])) < k


# -- the metrics --------------------------------------------------------------------------------------------


class _Agreement(Metric):
    """Shared loop: the two attributions of each example, paired by id, on the same features."""

    family: ClassVar[str] = "agreement"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    compares: ClassVar[str] = "explainer"
    paper: ClassVar[str] = KRISHNA
    undefined: ClassVar[str] = "no features"  # why ``measure`` gives NaN on an example with features

    def measure(self, a: np.ndarray, b: np.ndarray) -> float:
        """The value of one example: the two explanations' scores, feature by feature in text order."""
        raise NotImplementedError

    def ties(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether text order decided between equal |scores| on this example (counted in a note)."""
        return False

    def compute(self, data: MetricInput) -> MetricOutput:
        values = np.full(len(data.attributions), np.nan)
        undefined: Counter[str] = Counter()
        tied = 0
        for row, (attribution, other) in enumerate(data.reference_pairs()):
            units = attribution.units(self.params.granularity)
            a, b = attribution.unit_scores(units), other.unit_scores(units)
            if attribution.target != other.target:
                undefined["the two explainers explain different classes"] += 1
            elif len(a) == 0:
                undefined["no features (an empty text)"] += 1
            else:
                values[row] = self.measure(a, b)
                if np.isnan(values[row]):
                    undefined[self.undefined] += 1
                tied += self.ties(a, b)
        n = len(values)
        notes = [f"{count} of {n} examples undefined: {why}" for why, count in undefined.items()]
        if tied:
            notes.append(
                f"{tied} of {n} examples have equal |scores| where the top-k list is cut or ranked, in at "
                "least one explanation: text order decided"
            )
        return MetricOutput(values, notes=notes)


class _TopKAgreement(_Agreement):
    Params: ClassVar[type[Params]] = TopKAgreementParams
    params: TopKAgreementParams
    of_top_k: ClassVar[Callable[[np.ndarray, np.ndarray, int], float]]
    ranked: ClassVar[bool] = False  # whether ranks inside the top k count (rank and signed rank agreement)

    def measure(self, a: np.ndarray, b: np.ndarray) -> float:
        return type(self).of_top_k(a, b, self.params.top_k(len(a)))

    def ties(self, a: np.ndarray, b: np.ndarray) -> bool:
        k = self.params.top_k(len(a))
        return text_order_decides(a, k, self.ranked) or text_order_decides(b, k, self.ranked)


class FeatureAgreement(_TopKAgreement):
    """Feature agreement@k: the share of top-k features two explainers have in common.

    |T_A ∩ T_B| / k, T being the k features of largest |score| (ties in text order) and k a count or a
    percentage of the example's features. The module docstring states the conventions of the six measures.
    """

    name: ClassVar[str] = "feature-agreement"
    of_top_k = staticmethod(feature_agreement)


class RankAgreement(_TopKAgreement):
    """Rank agreement@k: the share of the k ranks at which two explainers' top-k lists hold one feature.

    |{i ≤ k : T_A[i] = T_B[i]}| / k (see the module docstring)."""

    name: ClassVar[str] = "rank-agreement"
    of_top_k = staticmethod(rank_agreement)
    ranked: ClassVar[bool] = True


class SignAgreement(_TopKAgreement):
    """Sign agreement@k: the share of k features in both top-k lists that have the same sign in both.

    |{f ∈ T_A ∩ T_B : sign(A_f) = sign(B_f)}| / k, sign(0) = 0 (see the module docstring)."""

    name: ClassVar[str] = "sign-agreement"
    of_top_k = staticmethod(sign_agreement)


class SignedRankAgreement(_TopKAgreement):
    """Signed rank agreement@k: the share of the k ranks holding one feature with one sign in both lists.

    |{i ≤ k : T_A[i] = T_B[i] and sign(A_{T_A[i]}) = sign(B_{T_A[i]})}| / k (see the module docstring)."""

    name: ClassVar[str] = "signed-rank-agreement"
    of_top_k = staticmethod(signed_rank_agreement)
    ranked: ClassVar[bool] = True


class _RankingAgreement(_Agreement):
    Params: ClassVar[type[Params]] = RankingAgreementParams
    params: RankingAgreementParams
    over: ClassVar[Callable[[np.ndarray, np.ndarray], float]]

    def measure(self, a: np.ndarray, b: np.ndarray) -> float:
        if self.params.features == "top-k":
            k = self.params.top_k(len(a))
            interest = np.union1d(top_k_list(a, k), top_k_list(b, k))  # F in text order
            a, b = a[interest], b[interest]
        return type(self).over(a, b)


class RankCorrelation(_RankingAgreement):
    """Rank correlation: Spearman's ρ between two explainers' rankings of the features by |score|.

    Over the features of interest F (all by default): Pearson's r of the ranks of |A| and |B| on F, ties
    sharing their mean rank. Undefined with fewer than two features of interest, or when either
    explanation gives all of them one |score|."""

    name: ClassVar[str] = "rank-correlation"
    range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    over = staticmethod(rank_correlation)
    undefined: ClassVar[str] = (
        "fewer than two features of interest, or one |score| for all of them in an explanation (no ranking)"
    )


class PairwiseRankAgreement(_RankingAgreement):
    """Pairwise rank agreement: the share of feature pairs two explainers order the same way by |score|.

    1 / C(|F|, 2) · Σ_{i<j ∈ F} 1[sign(|A_i| − |A_j|) = sign(|B_i| − |B_j|)] over the features of
    interest F (all by default); a pair tied in one explanation agrees only with a tie in the other.
    Undefined with fewer than two features of interest."""

    name: ClassVar[str] = "pairwise-rank-agreement"
    over = staticmethod(pairwise_rank_agreement)
    undefined: ClassVar[str] = "fewer than two features of interest"


AGREEMENT_METRICS = (
    FeatureAgreement,
    RankAgreement,
    SignAgreement,
    SignedRankAgreement,
    RankCorrelation,
    PairwiseRankAgreement,
)
