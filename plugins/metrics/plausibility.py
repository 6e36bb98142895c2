"""Plausibility: agreement of an attribution with the human rationale (ERASER §4.1; ferret).

The rationale is mapped to the tokens the model read by ``harness.rationale`` (a token is in it when
its characters overlap a rationale span of its own segment by at least one character; for pairs both
segments' rationales count). Units are the attribution's removable tokens, or its words
(``granularity: word``: a word's score is the mean of its tokens', and it is in the rationale when
any of its tokens is). The scores are used as they are, highest first: positive evidence for the
explained class (the prediction by default), whatever the gold label.

Values are per example, NaN where undefined: the example has no rationale, or none of its rationale
survives truncation. The harness aggregates (mean, bootstrap interval, paired tests) over examples.
These metrics never load the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator
from sklearn.metrics import auc, precision_recall_curve

from harness import (
    Attribution,
    Granularity,
    Metric,
    MetricInput,
    MetricOutput,
    Params,
    PluginError,
    UnitRationale,
    rationale_units,
    top_count,
)

ERASER = (
    "DeYoung et al. 2020, ERASER: A Benchmark to Evaluate Rationalized NLP Models, ACL, §4.1 "
    "(token F1, IOU F1, AUPRC; reference code rationale_benchmark/metrics.py)"
)
FERRET = (
    "Attanasio et al. 2023, ferret: a Framework for Benchmarking Explainers on Transformers, EACL demos "
    "(token-F1, AUPRC; ferret/evaluators/plausibility_measures.py)"
)
GRANULARITY = (
    "unit compared with the rationale: single tokens, or whole words (a word's score is the mean of its "
    "tokens'; it is in the rationale when any of its tokens is)"
)

KMode = Literal["rationale", "count", "percent"]


class PlausibilityParams(Params):
    granularity: Granularity = Field("token", description=GRANULARITY)


class TopKParams(PlausibilityParams):
    k_mode: KMode = Field(
        "rationale",
        description=(
            "how many top-scored units form the predicted rationale: as many as the human rationale has "
            "(rationale, the ERASER-style choice), a fixed count k (count), or k % of the units (percent)"
        ),
    )
    k: float | None = Field(
        None,
        description=(
            "the count (k_mode count, an integer ≥ 1; capped at the number of units) or the percentage "
            "(k_mode percent, in (0, 100]; rounded half up, at least one unit); unset for k_mode rationale"
        ),
    )

    @model_validator(mode="after")
    def _k_matches_mode(self) -> TopKParams:
        if self.k_mode == "rationale":
            if self.k is not None:
                raise ValueError("k is used only with k_mode 'count' or 'percent'; remove it or set k_mode")
        elif self.k is None:
            raise ValueError(f"k_mode '{self.k_mode}' needs k")
        elif self.k_mode == "count" and not (self.k >= 1 and float(self.k).is_integer()):
            raise ValueError("with k_mode 'count', k must be a whole number ≥ 1")
        elif self.k_mode == "percent" and not 0 < self.k <= 100:
            raise ValueError("with k_mode 'percent', k must be a percentage in (0, 100]")
        return self

    def top_k(self, n_units: int, n_rationale: int) -> int:
        """K for an example with ``n_units`` units, ``n_rationale`` of them in the rationale."""
        if self.k_mode == "rationale":
            return n_rationale
        if self.k_mode == "count":
            return min(int(self.k), n_units)
        return top_count(self.k, n_units)


class TokenF1Params(TopKParams):
    report: Literal["f1", "precision", "recall"] = Field(
        "f1",
        description="the value stored: F1 of the top-K units against the rationale, or its precision or recall",
    )


class IouF1Params(TopKParams):
    threshold: float = Field(
        0.5,
        ge=0.5,
        le=1.0,
        description=(
            "IOU a predicted span needs with a gold span to count as a match (ERASER's default 0.5; below "
            "0.5 one gold span could match several predicted spans and recall could exceed 1)"
        ),
    )


class _Plausibility(Metric):
    """Shared loop: one value per attribution from its rationale on units, NaN without one."""

    family: ClassVar[str] = "plausibility"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    paper: ClassVar[str] = ERASER

    def rationales(self, data: MetricInput) -> list[UnitRationale | None]:
        """Each attribution's rationale on its units; ``None`` where it has none (or none survives
        truncation)."""
        result = []
        for attribution in data.attributions:
            example = data.examples.get(attribution.example_id)
            if example is None:
                raise PluginError(
                    f"plausibility: example '{attribution.example_id}' is not in the cell's examples"
                )
            rationale = rationale_units(attribution, example, self.params.granularity)
            result.append(rationale if rationale is not None and rationale.labels.any() else None)
        return result


def _selected(attribution: Attribution, rationale: UnitRationale, params: TopKParams) -> np.ndarray:
    """Boolean over units: the top-K by descending score, ties in text order (as ``Attribution.ranking``)."""
    scores = attribution.unit_scores(rationale.units)
    k = params.top_k(len(rationale.units), int(rationale.labels.sum()))
    selected = np.zeros(len(rationale.units), dtype=bool)
    selected[np.argsort(-scores, kind="stable")[:k]] = True
    return selected


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


class TokenF1(_Plausibility):
    """Token F1: precision, recall or F1 of the top-K units against the human rationale (ERASER, ferret).

    S = the K highest-scored units (ties broken by text order), G = the units in the rationale;
    P = |S ∩ G| / |S|, R = |S ∩ G| / |G|, F1 = 2PR / (P + R) (0 when P = R = 0), per example.
    K defaults to |G| (then P = R = F1). Differences: ERASER scores submitted hard rationales and
    averages per-instance P, R and F1 ("instance macro"); ferret takes K = 5 positive-scored tokens and
    scores 0 where the rationale is empty; here examples with an empty rationale are NaN.
    """

    name: ClassVar[str] = "token-f1"
    Params = TokenF1Params
    paper: ClassVar[str] = f"{ERASER}; {FERRET}"

    def compute(self, data: MetricInput) -> np.ndarray:
        values = []
        for attribution, rationale in zip(data.attributions, self.rationales(data), strict=True):
            if rationale is None:
                values.append(np.nan)
                continue
            selected = _selected(attribution, rationale, self.params)
            hits = int((selected & rationale.labels).sum())
            precision = hits / int(selected.sum())
            recall = hits / int(rationale.labels.sum())
            values.append(
                {"f1": _f1(precision, recall), "precision": precision, "recall": recall}[self.params.report]
            )
        return np.asarray(values, dtype=np.float64)


def predicted_spans(
    attribution: Attribution, units: Sequence[np.ndarray], selected: np.ndarray
) -> list[np.ndarray]:
    """Maximal runs of selected units that are consecutive in text order within one segment, as
    arrays of unit indices (special tokens are not units, so a run never crosses a pair's [SEP])."""
    segments = [attribution.segments[int(unit[0])] for unit in units]
    spans: list[list[int]] = []
    for i in np.flatnonzero(selected):
        if spans and spans[-1][-1] == i - 1 and segments[i - 1] == segments[i]:
            spans[-1].append(int(i))
        else:
            spans.append([int(i)])
    return [np.asarray(span) for span in spans]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return len(np.intersect1d(a, b)) / len(np.union1d(a, b))


class IouF1(_Plausibility):
    """IOU F1: ERASER's span-level partial-match F1 of the top-K units against the rationale spans.

    Predicted spans are the maximal contiguous runs of the K highest-scored units (ties by text order);
    gold spans are the rationale's spans, each mapped to the units it overlaps. A predicted span p is a
    true positive when max_g IOU(p, g) = |p ∩ g| / |p ∪ g| ≥ threshold (0.5); P = TP / #predicted,
    R = TP / #gold, F1 = 2PR / (P + R), per example. ERASER's macro IOU F1 averages P and R over
    instances first and takes the F1 of the averages; this stores per-example F1 so that the harness
    can aggregate and test significance per example (the mean of the stored values is not ERASER's
    number). ERASER scores submitted hard spans; here they come from the scores' top K.
    """

    name: ClassVar[str] = "iou-f1"
    Params = IouF1Params

    def compute(self, data: MetricInput) -> np.ndarray:
        values = []
        for attribution, rationale in zip(data.attributions, self.rationales(data), strict=True):
            if rationale is None:
                values.append(np.nan)
                continue
            predicted = predicted_spans(
                attribution, rationale.units, _selected(attribution, rationale, self.params)
            )
            hits = sum(
                max(_iou(span, gold) for gold in rationale.spans) >= self.params.threshold
                for span in predicted
            )
            values.append(_f1(hits / len(predicted), hits / len(rationale.spans)))
        return np.asarray(values, dtype=np.float64)


class Auprc(_Plausibility):
    """AUPRC: area under the precision-recall curve of the unit scores against the rationale.

    Per example, ``sklearn.metrics.auc(recall, precision)`` on ``precision_recall_curve(labels,
    scores)`` (trapezoids; tied scores form one threshold), as ERASER and ferret compute it; average
    precision (a step sum, ``average_precision_score``) is the common alternative, which ERASER reports
    separately. NaN where the rationale is empty or covers every unit (one class only: undefined).
    ferret sets negative scores to 0 first; here the scores are used as they are. The stored curve is
    x = recall, y = precision.
    """

    name: ClassVar[str] = "auprc"
    Params = PlausibilityParams
    paper: ClassVar[str] = f"{ERASER}; {FERRET}"

    def compute(self, data: MetricInput) -> MetricOutput:
        values, curves = [], []
        for attribution, rationale in zip(data.attributions, self.rationales(data), strict=True):
            if rationale is None or rationale.labels.all():
                values.append(np.nan)
                curves.append({"x": [], "y": []})
                continue
            scores = attribution.unit_scores(rationale.units)
            precision, recall, _ = precision_recall_curve(rationale.labels, scores)
            values.append(float(auc(recall, precision)))
            curves.append({"x": recall.tolist(), "y": precision.tolist()})
        return MetricOutput(values=np.asarray(values, dtype=np.float64), curves=curves)
