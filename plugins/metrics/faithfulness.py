"""Faithfulness metrics on the shared perturbation engine (``harness.perturb``).

Each metric is a ``RemovalMetric``: it declares, for every attribution of a cell, the boolean removal
masks its definition needs (``removals``), and reduces the engine's class log-probabilities of them to
one value per example, plus the curve behind it where there is one (``reduce``). The runner plans the
removals of every such metric of one explanation together. Defaults (masking, unit of removal, amounts)
follow the paper that defines each metric. An example with no removable unit gets NaN rows from the
engine, so every metric here is NaN on it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field
from scipy.special import logsumexp
from scipy.stats import kendalltau

from harness import (
    GRANULARITY_DOC,
    MASKING_DOC,
    Attribution,
    Granularity,
    Masking,
    MetricInput,
    MetricOutput,
    Order,
    Params,
    RemovalMetric,
    top_count,
    top_unit_masks,
    with_unperturbed,
)

GMASK = "Chen et al. 2021, Explaining Neural Network Predictions on Sentence Pairs via Learning Word-Group Masks (GMASK)"
L2E = "Situ et al. 2021, Learning to Explain: Generating Stable Explanations Fast (L2E), §4.4"
LDAV = "LDAV: explanation-specific word representations learned during training (shared/papers/ldav-*), §4.3"
ZAFAR = "Zafar et al. 2021, On the Lack of Robust Interpretability of Neural Text Classifiers, §2.3"


def _params(default_masking: Masking, default_granularity: Granularity) -> type[Params]:
    """A Params base with the masking and unit-of-removal defaults of one paper."""

    class PerturbationParams(Params):
        masking: Masking = Field(default_masking, description=MASKING_DOC)
        granularity: Granularity = Field(default_granularity, description=GRANULARITY_DOC)

    return PerturbationParams


def _n_units(attribution: Attribution, granularity: Granularity) -> int:
    return len(attribution.units(granularity))


def _same_prediction(log_p: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """1.0 where the rows of ``log_p`` predict the class ``reference`` (one row) predicts, else 0; NaN
    where either is undefined (the engine's NaN rows)."""
    same = (log_p.argmax(axis=-1) == reference.argmax()).astype(float)
    undefined = np.isnan(log_p).any(axis=-1) | np.isnan(reference).any()
    return np.where(undefined, np.nan, same)


def _prediction_unchanged(matrices: list[np.ndarray]) -> list[np.ndarray]:
    """Per attribution, 1.0 where a perturbed row's prediction equals the full input's (row 0), else 0;
    NaN where undefined."""
    return [_same_prediction(log_p[1:], log_p[0]) for log_p in matrices]


def _log_odds(log_probabilities: np.ndarray, target: int) -> np.ndarray:
    """log(p / (1 − p)) of the target class, exact in log space even when p rounds to 1."""
    others = np.delete(log_probabilities, target, axis=-1)
    return log_probabilities[..., target] - logsumexp(others, axis=-1)


# -- GMASK -------------------------------------------------------------------------------------------


class AOPCParams(_params("delete", "word")):
    steps: int = Field(10, ge=1, description="U: remove the top 1, 2, ..., U units (GMASK uses U = 10 words)")


class AOPC(RemovalMetric):
    """Area over the perturbation curve: mean drop in p(ŷ) as the top 1..U words are removed.

    GMASK eq. 9: AOPC = 1/(U+1) · Σ_{u=1..U} [ p(ŷ|x) − p(ŷ|x∖1..u) ] (Samek et al. 2016; Nguyen 2018);
    stored per example, averaged over examples by the report. Texts with fewer than u units lose all of
    them. The curve stored per example is p(ŷ|x∖1..u) for u = 0..U. Higher is better.
    """

    name: ClassVar[str] = "aopc"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    Params = AOPCParams
    paper: ClassVar[str] = GMASK
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        steps, granularity = self.params.steps, self.params.granularity
        return [
            top_unit_masks(
                a, [min(u, _n_units(a, granularity)) for u in range(steps + 1)], granularity=granularity
            )
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> MetricOutput:
        steps = self.params.steps
        values, curves = [], []
        for attribution, log_p in zip(data.attributions, log_probabilities, strict=True):
            p = np.exp(log_p[:, attribution.target])
            values.append(float((p[0] - p[1:]).sum() / (steps + 1)))
            curves.append({"x": list(range(steps + 1)), "y": p.tolist()})
        return MetricOutput(values, curves)


class PostHocAccuracyParams(_params("delete", "word")):
    top: int = Field(10, ge=1, description="v: keep only the top v units (GMASK plots v = 1..10 words)")


class PostHocAccuracy(RemovalMetric):
    """Post-hoc accuracy: does the prediction from only the top v words equal the full-input prediction?

    GMASK §5.1.2 (Chen et al. 2018): post-hoc-acc(v) = 1/M Σ_m 1[ŷ_v = ŷ]; the value per example is the
    indicator at v, and the stored curve the indicator for 1..v. Higher is better.
    """

    name: ClassVar[str] = "post-hoc-accuracy"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    Params = PostHocAccuracyParams
    paper: ClassVar[str] = GMASK
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        top, granularity = self.params.top, self.params.granularity
        return [
            with_unperturbed(
                a,
                top_unit_masks(
                    a,
                    [min(v, _n_units(a, granularity)) for v in range(1, top + 1)],
                    keep=True,
                    granularity=granularity,
                ),
            )
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> MetricOutput:
        unchanged = _prediction_unchanged(log_probabilities)
        curves = [{"x": list(range(1, self.params.top + 1)), "y": row.tolist()} for row in unchanged]
        return MetricOutput([float(row[-1]) for row in unchanged], curves)


class MorfLerfParams(_params("delete", "word")):
    percents: tuple[float, ...] = Field(
        tuple(range(0, 101, 10)), description="degradation proportions ρ (% of units removed), from 0 to 100"
    )


class MorfLerf(RemovalMetric):
    """Degradation score: area between the least- and most-relevant-first removal curves.

    GMASK §5.1.3, eq. 10: S(x_ρ) = (p(ŷ|x_ρ) − p(ŷ|x_o)) / (p(ŷ|x) − p(ŷ|x_o)) with x_o the fully degraded
    input and the probabilities averaged over the test examples; score = ∫₀¹⁰⁰ (S_LeRF − S_MoRF) dρ/100
    (trapezoid over ``percents``). Since the normaliser is an average over the cell's examples (the same
    for every explainer), the value stored per example is ∫ (p_LeRF − p_MoRF) dρ/100 divided by it, so the
    mean over examples is exactly the paper's score. The curves (MoRF, LeRF) are stored. Higher is better.

    The normaliser is a difference of two means over the examples that have a removable unit; when it is
    not positive (the fully degraded input is as likely or likelier to be ŷ than the input itself), the
    score's sign would flip "higher is better": every value of the cell is then NaN and the output's
    ``notes`` give the two means.
    """

    name: ClassVar[str] = "morf-lerf"
    version: ClassVar[str] = "2"  # 2: NaN cell with a note when the normaliser is not positive
    Params = MorfLerfParams
    paper: ClassVar[str] = GMASK
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (-float("inf"), float("inf"))

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        percents, granularity = self.params.percents, self.params.granularity
        removals = []
        for a in data.attributions:
            n = _n_units(a, granularity)
            counts = [top_count(percent, n) for percent in percents]
            morf = top_unit_masks(a, counts, granularity=granularity)
            lerf = top_unit_masks(a, counts, granularity=granularity, order="ascending")
            everything = top_unit_masks(a, [n], granularity=granularity)
            removals.append(np.vstack([with_unperturbed(a, morf), lerf, everything]))
        return removals

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> MetricOutput:
        percents = np.asarray(self.params.percents, dtype=float)
        k = len(percents)
        full, degraded, morf_curves, lerf_curves = [], [], [], []
        for attribution, log_p in zip(data.attributions, log_probabilities, strict=True):
            p = np.exp(log_p[:, attribution.target])
            full.append(p[0])
            morf_curves.append(p[1 : 1 + k])
            lerf_curves.append(p[1 + k : 1 + 2 * k])
            degraded.append(p[-1])
        normaliser, notes = _normaliser(np.asarray(full), np.asarray(degraded))
        values, curves = [], []
        for morf, lerf in zip(morf_curves, lerf_curves, strict=True):
            area = float(np.trapezoid(lerf - morf, percents / 100.0))
            values.append(area / normaliser)
            curves.append({"x": percents.tolist(), "morf": morf.tolist(), "lerf": lerf.tolist()})
        return MetricOutput(values, curves, notes=notes)


_NORMALISER_TOLERANCE = 1e-9


def _normaliser(full: np.ndarray, degraded: np.ndarray) -> tuple[float, tuple[str, ...]]:
    """The degradation score's normaliser, mean p(ŷ|x) − mean p(ŷ|fully degraded) over the examples
    with a removable unit, and no note; or NaN and a note saying why it cannot be used."""
    defined = ~np.isnan(full) & ~np.isnan(degraded)
    if not defined.any():
        return float("nan"), ("undefined: no example has a removable unit",)
    mean_full, mean_degraded = float(full[defined].mean()), float(degraded[defined].mean())
    difference = mean_full - mean_degraded
    if difference > _NORMALISER_TOLERANCE:
        return difference, ()
    relation, sign = ("is below", "negative") if difference < -_NORMALISER_TOLERANCE else ("equals", "zero")
    return float("nan"), (
        f"undefined: mean p(ŷ|x) {mean_full:.4g} {relation} mean p(ŷ|fully degraded) {mean_degraded:.4g}, "
        "so the degradation score's normaliser is " + sign,
    )


# -- L2E ---------------------------------------------------------------------------------------------


class DeltaLogOddsParams(_params("mask", "word")):
    percent: float = Field(
        30, gt=0, le=100, description="K: mask the top K % units (L2E uses 30 % of the words)"
    )
    select: Literal["positive", "negative", "absolute"] = Field(
        "positive",
        description="which units count as the explanation: the highest positive scores, the most negative "
        "scores, or the largest magnitudes (at most K % of the units, fewer if fewer have that sign)",
    )


_SELECT_ORDER: dict[str, Order] = {"positive": "descending", "negative": "ascending", "absolute": "absolute"}

ScoreOrder = Literal["signed", "absolute"]
ORDER_DOC = (
    "how the top K % units are chosen: signed — the highest scores, the strongest evidence for ŷ (L2E's "
    "sequence-labelling formulation, Table 1); absolute — the largest |score|, whatever its sign (L2E's "
    "ranking formulation, whose student learns the order of |teacher weight|: §3, §4.5 'the top 30 % of "
    "the important words'). Compare a student with its teacher in the order its formulation learned"
)
_AGREEMENT_ORDER: dict[str, Order] = {"signed": "descending", "absolute": "absolute"}


def _selected_count(attribution: Attribution, params: DeltaLogOddsParams) -> int:
    """How many units the explanation selects: the top K % of the units, fewer when fewer have the
    selected sign; 0 when none has it (or there is no unit)."""
    scores = attribution.unit_scores(attribution.units(params.granularity))
    eligible = {"positive": scores > 0, "negative": scores < 0, "absolute": np.ones_like(scores, bool)}
    return min(top_count(params.percent, len(scores)), int(eligible[params.select].sum()))


def _selected_masks(attribution: Attribution, count: int, params: DeltaLogOddsParams) -> np.ndarray:
    """One removal mask (1 × L): the attribution's top ``count`` units in the order of ``select``."""
    return top_unit_masks(
        attribution, [count], granularity=params.granularity, order=_SELECT_ORDER[params.select]
    )


def _delta_log_odds(log_p: np.ndarray, target: int) -> np.ndarray:
    """log-odds of row 0 (the input) minus the log-odds of every other row (the masked inputs)."""
    log_odds = _log_odds(log_p, target)
    return log_odds[0] - log_odds[1:]


class DeltaLogOdds(RemovalMetric):
    """Δlog-odds of the predicted class when the explanation's top K % words are masked out.

    L2E §4.4 (Schwab & Karlen 2019; Shrikumar et al. 2017): Δlog-odds(x) = log-odds(p(ŷ|x)) −
    log-odds(p(ŷ|x̃)), log-odds(p) = log(p / (1 − p)), x̃ = x with the selected units masked. Computed in log
    space, so it stays exact when p rounds to 1. With ``select: positive`` or ``absolute`` higher is
    better (masking evidence for ŷ should lower confidence); with ``select: negative`` lower is better
    (masking evidence against ŷ should raise it: L2E Table 8, "Negative Δlog-odds ↓"). The explanation is
    the top K % units, fewer when fewer have the selected sign. A document with no unit of the selected
    sign (e.g. every document of an explainer whose scores carry no sign, for ``negative``) has no
    explanation to mask: NaN, whatever the other documents of the cell (L2E leaves such entries out).
    """

    name: ClassVar[str] = "delta-log-odds"
    version: ClassVar[str] = "3"  # 3: NaN per document without a unit of the selected sign
    Params = DeltaLogOddsParams
    paper: ClassVar[str] = L2E
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (-float("inf"), float("inf"))

    @classmethod
    def direction_for(cls, params: DeltaLogOddsParams) -> Literal["higher", "lower"]:
        return "lower" if params.select == "negative" else "higher"

    @classmethod
    def score_order_for(cls, params: DeltaLogOddsParams) -> ScoreOrder:
        """The order the explanation's units are taken in: by signed score (``select: positive`` or
        ``negative``) or by |score| (``absolute``). The teacher-vs-student pairing reads it
        (``harness.distillation``): a student is compared with its teacher in the order it learned."""
        return "absolute" if params.select == "absolute" else "signed"

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        return [
            with_unperturbed(a, _selected_masks(a, _selected_count(a, self.params), self.params))
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> np.ndarray:
        values = [
            float(_delta_log_odds(log_p, a.target)[0]) if _selected_count(a, self.params) else float("nan")
            for a, log_p in zip(data.attributions, log_probabilities, strict=True)
        ]
        return np.asarray(values, dtype=np.float64)


class MatchedDeltaLogOdds(RemovalMetric):
    """Δlog-odds of the student's and of its teacher's explanation, with the same number of words masked.

    L2E Table 2 and §4.5: "masking the same number of important words in each document based on the
    explanations generated by L2E and by A"; "we select the same number of positive/negative words
    identified by L2E and A". Per document, n = min(the top K % count of its units, the units of the
    selected sign in the student's explanation, those in the teacher's); the value is the student's
    Δlog-odds (as ``delta-log-odds``) with its top n selected units masked, and ``reference_values`` the
    teacher's with its own top n masked. Both NaN when n = 0 (either explanation has no unit of the
    selected sign, or the document no unit). Only for explainers that distil a teacher. Direction as
    ``delta-log-odds``: lower is better for ``select: negative``.
    """

    name: ClassVar[str] = "matched-delta-log-odds"
    Params = DeltaLogOddsParams
    paper: ClassVar[str] = L2E
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (-float("inf"), float("inf"))
    compares: ClassVar[str] = "teacher"

    @classmethod
    def direction_for(cls, params: DeltaLogOddsParams) -> Literal["higher", "lower"]:
        return DeltaLogOdds.direction_for(params)

    @classmethod
    def score_order_for(cls, params: DeltaLogOddsParams) -> ScoreOrder:
        """As ``delta-log-odds``: signed for ``select: positive`` / ``negative``, absolute for ``absolute``."""
        return DeltaLogOdds.score_order_for(params)

    def _counts(self, data: MetricInput) -> list[int]:
        return [
            min(_selected_count(student, self.params), _selected_count(teacher, self.params))
            for student, teacher in data.reference_pairs()
        ]

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        return [
            with_unperturbed(
                student, np.vstack([_selected_masks(a, count, self.params) for a in (student, teacher)])
            )
            for (student, teacher), count in zip(data.reference_pairs(), self._counts(data), strict=True)
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> MetricOutput:
        values, reference = [], []
        for a, count, log_p in zip(data.attributions, self._counts(data), log_probabilities, strict=True):
            student_value, teacher_value = _delta_log_odds(log_p, a.target) if count else (np.nan, np.nan)
            values.append(float(student_value))
            reference.append(float(teacher_value))
        return MetricOutput(values, reference_values=reference)


class PredictionAgreementParams(_params("delete", "word")):
    percent: float = Field(
        30, gt=0, le=100, description="K: the explanation is the top K % units (L2E: 30 %)"
    )
    order: ScoreOrder = Field("signed", description=ORDER_DOC)


def _kept_masks(attribution: Attribution, count: int, params: PredictionAgreementParams) -> np.ndarray:
    """One removal mask (1 × L) keeping only the attribution's top ``count`` units in ``order``."""
    return top_unit_masks(
        attribution,
        [count],
        keep=True,
        granularity=params.granularity,
        order=_AGREEMENT_ORDER[params.order],
    )


class PredictionAgreement(RemovalMetric):
    """Does the model predict the same class from the explanation alone as from the full input?

    L2E §4.4 and Table 1 (Ribeiro et al. 2016): the input keeps only the top K % units (the others
    removed), the highest scores (``order: signed``) or the largest |scores| (``order: absolute``, the
    ranking formulation's "top 30 % of the important words"); the value is 1[argmax p(·|explanation) =
    argmax p(·|x)], its mean the percentage agreement. Higher is better.
    """

    name: ClassVar[str] = "prediction-agreement"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    Params = PredictionAgreementParams
    paper: ClassVar[str] = L2E
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    @classmethod
    def score_order_for(cls, params: PredictionAgreementParams) -> ScoreOrder:
        """The order the top K % units are taken in (``order``); read by the teacher-vs-student pairing."""
        return params.order

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        granularity = self.params.granularity
        return [
            with_unperturbed(
                a, _kept_masks(a, top_count(self.params.percent, _n_units(a, granularity)), self.params)
            )
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> np.ndarray:
        return np.array([row[0] for row in _prediction_unchanged(log_probabilities)])


class TeacherAgreement(RemovalMetric):
    """Do the student's and its teacher's explanations lead the model to the same prediction?

    L2E Table 1, "Both": the input keeps only the top K % units of the student's explanation, then only
    those of the teacher's (same document, same model), both taken in the same ``order`` (signed: the
    highest scores; absolute: the largest |scores|, the ranking formulation's); the value is
    1[argmax p(·|student's explanation) = argmax p(·|teacher's explanation)], its mean the percentage
    agreement. Only for explainers that distil a teacher (the grid has no other cell). Higher is better.
    """

    name: ClassVar[str] = "teacher-agreement"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    Params = PredictionAgreementParams
    paper: ClassVar[str] = L2E
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    compares: ClassVar[str] = "teacher"

    @classmethod
    def score_order_for(cls, params: PredictionAgreementParams) -> ScoreOrder:
        """The order both explanations' top K % units are taken in (``order``)."""
        return params.order

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        granularity = self.params.granularity
        removals = []
        for student, teacher in data.reference_pairs():
            count = top_count(self.params.percent, _n_units(student, granularity))
            removals.append(np.vstack([_kept_masks(a, count, self.params) for a in (student, teacher)]))
        return removals

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> np.ndarray:
        return np.array([float(_same_prediction(log_p[1], log_p[0])) for log_p in log_probabilities])


# -- LDAV --------------------------------------------------------------------------------------------


class LogOddsParams(_params("pad", "word")):
    percent: float = Field(20, gt=0, le=100, description="u: mask the top u % units")


class LogOdds(RemovalMetric):
    """Log-odds ratio of the predicted class after masking the top u % words.

    LDAV eq. 7 (Chen et al. 2018): log( p(ŷ|x_u) / p(ŷ|x) ), x_u = x with its top-u words masked (LDAV
    masks with <pad>). Lower (more negative) is better: the masked words mattered.
    """

    name: ClassVar[str] = "log-odds"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    Params = LogOddsParams
    paper: ClassVar[str] = LDAV
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (-float("inf"), float("inf"))

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        granularity = self.params.granularity
        return [
            with_unperturbed(
                a,
                top_unit_masks(
                    a, [top_count(self.params.percent, _n_units(a, granularity))], granularity=granularity
                ),
            )
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> np.ndarray:
        return np.array(
            [
                float(log_p[1, a.target] - log_p[0, a.target])
                for a, log_p in zip(data.attributions, log_probabilities, strict=True)
            ]
        )


class UnchangedPredictionsParams(_params("pad", "word")):
    percents: tuple[float, ...] = Field(
        tuple(range(10, 101, 10)), description="u: the % of top units masked at each step of the curve"
    )


class UnchangedPredictions(RemovalMetric):
    """LDAV's degradation test: the share of predictions unchanged after masking the top u % words
    (area under the curve). Not GMASK's degradation score, which is ``morf-lerf``.

    LDAV eq. 6 (Nguyen 2018): degradation(u) = 1/m Σ_i 1[ŷ_u⁽ⁱ⁾ = ŷ⁽ⁱ⁾], words masked with <pad> in
    attribution order. The curve 1[ŷ_u = ŷ] over ``percents`` is stored per example; the value is its
    mean over the steps (the normalised area under the degradation curve). Lower is better: a faithful
    explanation flips the prediction after few words.
    """

    name: ClassVar[str] = "unchanged-predictions"
    version: ClassVar[str] = "2"  # 2: NaN for an example with no removable unit
    Params = UnchangedPredictionsParams
    paper: ClassVar[str] = LDAV
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        percents, granularity = self.params.percents, self.params.granularity
        return [
            with_unperturbed(
                a,
                top_unit_masks(
                    a, [top_count(u, _n_units(a, granularity)) for u in percents], granularity=granularity
                ),
            )
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> MetricOutput:
        unchanged = _prediction_unchanged(log_probabilities)
        curves = [{"x": list(self.params.percents), "y": row.tolist()} for row in unchanged]
        return MetricOutput([float(row.mean()) for row in unchanged], curves)


class SwitchingPointParams(_params("unk", "token")):
    pass


class SwitchingPoint(RemovalMetric):
    """Switching point (infidelity): the fraction of units removed, most important first, until the
    prediction changes; 1 when it never changes.

    LDAV §4.3.3 (Nguyen 2018) and Zafar et al. 2021 §2.3 ("interpretation infidelity", tokens replaced by
    the unknown token — the defaults here). Every prefix of the ranking is evaluated, batched. Lower is
    better.
    """

    name: ClassVar[str] = "switching-point"
    Params = SwitchingPointParams
    paper: ClassVar[str] = f"{LDAV}; {ZAFAR}"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        granularity = self.params.granularity
        return [
            with_unperturbed(
                a, top_unit_masks(a, list(range(1, _n_units(a, granularity) + 1)), granularity=granularity)
            )
            for a in data.attributions
        ]

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> np.ndarray:
        values = []
        for log_p in log_probabilities:
            n = len(log_p) - 1
            switched = np.flatnonzero(log_p[1:].argmax(axis=-1) != log_p[0].argmax())
            values.append(float((switched[0] + 1) / n) if len(switched) else 1.0 if n else float("nan"))
        return np.asarray(values)


# -- ferret ------------------------------------------------------------------------------------------


class LooCorrelationParams(_params("delete", "token")):
    pass


class LooCorrelation(RemovalMetric):
    """Kendall τ between the attribution scores and leave-one-out drops in p(ŷ).

    Drop of unit i = p(ŷ|x) − p(ŷ|x∖i); τ-b (scipy) between the units' scores and their drops, per example
    (ferret's ``taucorr_loo``, Attanasio et al. 2023). NaN with fewer than two units or constant inputs.
    Higher is better.
    """

    name: ClassVar[str] = "loo-correlation"
    Params = LooCorrelationParams
    paper: ClassVar[str] = "Attanasio et al. 2023, ferret; leave-one-out after Li et al. 2016"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def removals(self, data: MetricInput) -> list[np.ndarray]:
        removals = []
        for a in data.attributions:
            units = a.units(self.params.granularity)
            masks = np.zeros((len(units), len(a.input_ids)), dtype=bool)
            for row, unit in enumerate(units):
                masks[row, unit] = True
            removals.append(with_unperturbed(a, masks))
        return removals

    def reduce(self, data: MetricInput, log_probabilities: list[np.ndarray]) -> np.ndarray:
        granularity = self.params.granularity
        values = []
        for a, log_p in zip(data.attributions, log_probabilities, strict=True):
            p = np.exp(log_p[:, a.target])
            scores = a.unit_scores(a.units(granularity))
            drops = p[0] - p[1:]
            if len(scores) < 2 or np.ptp(scores) == 0 or np.ptp(drops) == 0:
                values.append(float("nan"))
            else:
                values.append(float(kendalltau(scores, drops).statistic))
        return np.asarray(values)
