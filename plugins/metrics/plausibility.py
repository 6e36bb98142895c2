"""Plausibility: agreement of an attribution with the human rationale (ERASER §4.1; ferret).

The rationale is mapped to the tokens the model read by ``harness.rationale`` (a token is in it when
its characters overlap a rationale span of its own segment by at least one character). Units are the
attribution's removable tokens, or its words (``granularity: word``: a word's score is the mean of its
tokens', and it is in the rationale when any of its tokens is). The scores are used as they are,
highest first: positive evidence for the explained class (the prediction by default), whatever the
gold label.

Text pairs: ``text: both`` (the default) scores the pair as one sequence, the units of both texts
against the rationales of both (``rationale`` on the premise, ``rationale_pair`` on the hypothesis).
``text: premise`` or ``text: hypothesis`` scores one text alone: only that text's units are ranked,
selected and compared, only its rationale counts, and the other text's tokens play no part at all
(not even in K or in the ranks). A single text is its own premise and has no hypothesis.

Values are per example, NaN where undefined, with a note counting the examples and saying why: the
example has no rationale; the scored text has no human highlight (e-SNLI's annotators highlight no
premise word in neutral pairs, so ``text: premise`` is NaN for every neutral pair, not 0: a premise
without a highlight has no words to find); the scored text is absent (a single text's hypothesis); or
none of the highlight survives truncation. The harness aggregates (mean, bootstrap interval, paired
tests) over the defined examples. These metrics never load the model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from sklearn.metrics import auc, precision_recall_curve

from harness import (
    Attribution,
    Example,
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
Text = Literal["both", "premise", "hypothesis"]

RATIONALES = "rationales"  # a capability: the dataset's test examples carry human rationales (jsonl provides it)

SCORED_SEGMENTS: dict[str, tuple[int, ...]] = {"both": (0, 1), "premise": (0,), "hypothesis": (1,)}


class PlausibilityParams(Params):
    granularity: Granularity = Field("token", description=GRANULARITY)
    text: Text = Field(
        "both",
        description=(
            "which text of a pair is scored: both (one sequence: the units of both texts against both "
            "rationales), premise or hypothesis (that text's units against its own rationale, the other "
            "text ignored; NaN with a note where that text has no human highlight, e.g. e-SNLI's neutral "
            "premises); a single text is its own premise"
        ),
    )

    @model_serializer(mode="wrap")
    def _without_default_text(self, handler: SerializerFunctionWrapHandler) -> dict:
        """No ``text`` key when both texts are scored (what every entry did before the parameter
        existed), so that the identities and cache keys of those entries stay as they were."""
        data = handler(self)
        if data.get("text") == "both":
            data.pop("text")
        return data


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


@dataclass(frozen=True)
class _Undefined:
    """Why an example has no value (counted in the cell's notes)."""

    why: str


class _Plausibility(Metric):
    """Shared loop: one value per attribution from its rationale on the scored text's units, NaN
    without one, and a note per reason counting the NaN examples."""

    family: ClassVar[str] = "plausibility"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    paper: ClassVar[str] = ERASER

    def rationales(self, data: MetricInput) -> list[UnitRationale | _Undefined]:
        """Each attribution's rationale on the units of the scored text(s), or why it has none."""
        result = []
        for attribution in data.attributions:
            example = data.examples.get(attribution.example_id)
            if example is None:
                raise PluginError(
                    f"plausibility: example '{attribution.example_id}' is not in the cell's examples"
                )
            result.append(self._rationale(attribution, example))
        return result

    def _rationale(self, attribution: Attribution, example: Example) -> UnitRationale | _Undefined:
        text = self.params.text
        if text == "hypothesis" and example.text_pair is None:
            return _Undefined("a single text has no hypothesis to score")
        rationale = rationale_units(attribution, example, self.params.granularity)
        if rationale is None:
            return _Undefined("the example has no human rationale")
        if text != "both":
            rationale = on_segments(attribution, rationale, SCORED_SEGMENTS[text])
        if rationale.labels.any():
            return rationale
        scored = SCORED_SEGMENTS[text]
        given = [(example.rationale, example.rationale_pair)[segment] for segment in scored]
        if not any(end > start for spans in given for start, end in spans or ()):
            where = "the rationale" if text == "both" else f"the {text}"
            return _Undefined(f"{where} has no human highlight")
        return _Undefined(
            "no highlighted word survives truncation (it lies beyond the tokens the model read)"
        )

    def output(
        self,
        values: Sequence[float],
        undefined: Sequence[_Undefined],
        curves: Sequence[dict[str, list[float]]] | None = None,
    ) -> MetricOutput:
        """The values with one note per reason for NaN: ``"3 of 32 examples undefined: why"``."""
        counts = Counter(reason.why for reason in undefined)
        notes = [f"{count} of {len(values)} examples undefined: {why}" for why, count in counts.items()]
        return MetricOutput(values=np.asarray(values, dtype=np.float64), curves=curves, notes=notes)


def on_segments(
    attribution: Attribution, rationale: UnitRationale, segments: tuple[int, ...]
) -> UnitRationale:
    """The rationale restricted to the units of the given segments (0 premise, 1 hypothesis): the other
    units leave it, with the spans over them (a span lies in one segment: its own text's tokens)."""
    token_segments = np.asarray(attribution.segments)
    keep = np.asarray(
        [i for i, unit in enumerate(rationale.units) if token_segments[unit[0]] in segments], dtype=np.int64
    )
    renumbered = np.full(len(rationale.units), -1, dtype=np.int64)
    renumbered[keep] = np.arange(len(keep))
    spans = [renumbered[span] for span in rationale.spans if (renumbered[span] >= 0).all()]
    return UnitRationale(units=[rationale.units[i] for i in keep], labels=rationale.labels[keep], spans=spans)


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
    requires: ClassVar[frozenset[str]] = frozenset({RATIONALES})
    Params = TokenF1Params
    paper: ClassVar[str] = f"{ERASER}; {FERRET}"

    def compute(self, data: MetricInput) -> MetricOutput:
        values, undefined = [], []
        for attribution, rationale in zip(data.attributions, self.rationales(data), strict=True):
            if isinstance(rationale, _Undefined):
                values.append(np.nan)
                undefined.append(rationale)
                continue
            selected = _selected(attribution, rationale, self.params)
            hits = int((selected & rationale.labels).sum())
            precision = hits / int(selected.sum())
            recall = hits / int(rationale.labels.sum())
            values.append(
                {"f1": _f1(precision, recall), "precision": precision, "recall": recall}[self.params.report]
            )
        return self.output(values, undefined)


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
    requires: ClassVar[frozenset[str]] = frozenset({RATIONALES})
    Params = IouF1Params

    def compute(self, data: MetricInput) -> MetricOutput:
        values, undefined = [], []
        for attribution, rationale in zip(data.attributions, self.rationales(data), strict=True):
            if isinstance(rationale, _Undefined):
                values.append(np.nan)
                undefined.append(rationale)
                continue
            predicted = predicted_spans(
                attribution, rationale.units, _selected(attribution, rationale, self.params)
            )
            hits = sum(
                max(_iou(span, gold) for gold in rationale.spans) >= self.params.threshold
                for span in predicted
            )
            values.append(_f1(hits / len(predicted), hits / len(rationale.spans)))
        return self.output(values, undefined)


class Auprc(_Plausibility):
    """AUPRC: area under the precision-recall curve of the unit scores against the rationale.

    Per example, ``sklearn.metrics.auc(recall, precision)`` on ``precision_recall_curve(labels,
    scores)`` (trapezoids; tied scores form one threshold), as ERASER and ferret compute it; average
    precision (a step sum, ``average_precision_score``) is the common alternative, which ERASER reports
    separately. NaN where the rationale is empty or covers every unit scored (one class only: undefined).
    ferret sets negative scores to 0 first; here the scores are used as they are. The stored curve is
    x = recall, y = precision.
    """

    name: ClassVar[str] = "auprc"
    requires: ClassVar[frozenset[str]] = frozenset({RATIONALES})
    Params = PlausibilityParams
    paper: ClassVar[str] = f"{ERASER}; {FERRET}"

    def compute(self, data: MetricInput) -> MetricOutput:
        values, curves, undefined = [], [], []
        for attribution, rationale in zip(data.attributions, self.rationales(data), strict=True):
            if isinstance(rationale, UnitRationale) and rationale.labels.all():
                rationale = _Undefined("the highlight covers every unit scored (one class only)")
            if isinstance(rationale, _Undefined):
                values.append(np.nan)
                curves.append({"x": [], "y": []})
                undefined.append(rationale)
                continue
            scores = attribution.unit_scores(rationale.units)
            precision, recall, _ = precision_recall_curve(rationale.labels, scores)
            values.append(float(auc(recall, precision)))
            curves.append({"x": recall.tolist(), "y": precision.tolist()})
        return self.output(values, undefined, curves)
