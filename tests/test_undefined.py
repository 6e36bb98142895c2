"""One meaning of undefined: an example with no removable unit (an empty text, or only special tokens)
is NaN in every removal metric, whatever the other examples of its cell, and the others keep their
values. The rule lives in the shared perturbation engine (``harness.perturb``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import attribution, metric_input, values_of

from harness import Attribution, Example
from harness.perturb import evaluate
from plugins.metrics.eraser import Comprehensiveness, Sufficiency
from plugins.metrics.faithfulness import (
    AOPC,
    DeltaLogOdds,
    LogOdds,
    LooCorrelation,
    MatchedDeltaLogOdds,
    MorfLerf,
    PostHocAccuracy,
    PredictionAgreement,
    SwitchingPoint,
    TeacherAgreement,
    UnchangedPredictions,
)

REMOVAL_METRICS = [
    Comprehensiveness,
    Sufficiency,
    AOPC,
    DeltaLogOdds,
    MatchedDeltaLogOdds,
    PostHocAccuracy,
    PredictionAgreement,
    TeacherAgreement,
    LogOdds,
    UnchangedPredictions,
    SwitchingPoint,
    LooCorrelation,
    MorfLerf,
]


def without_removable_units(classifier, kind: str) -> Attribution:
    """An attribution with nothing to remove: an empty text, or a text pair of two empty texts (the toy
    tokenizer's input is then its [SEP] alone, a special token, scored high so that a metric that
    removed it would show)."""
    if kind == "empty text":
        return attribution(classifier, "", [])
    encoding = classifier.encode([Example("x", "", 1, text_pair="")])
    assert encoding.tokens[0] == ["[SEP]"] and encoding.segments[0] == [-1]
    return Attribution(
        example_id="[SEP]",
        target=1,
        predicted=1,
        probability=0.5,
        input_ids=encoding.input_ids[0, :1].tolist(),
        token_type_ids=None,
        tokens=encoding.tokens[0],
        offsets=encoding.offsets[0],
        word_ids=encoding.word_ids[0],
        segments=encoding.segments[0],
        scores=[99.0],
        seconds=0.0,
    )


@pytest.mark.parametrize("kind", ["empty text", "only special tokens"])
@pytest.mark.parametrize("metric_cls", REMOVAL_METRICS, ids=lambda cls: cls.name)
def test_an_example_without_removable_units_is_nan_in_every_removal_metric(classifier, metric_cls, kind):
    # "the good good bad" has units of both signs, so every metric (delta-log-odds' default select:
    # positive included) is defined on it; a student explaining like its teacher has a teacher to compare
    normal = attribution(classifier, "the good good bad", [0.1, 0.9, 0.8, -0.5])
    cell = [normal, without_removable_units(classifier, kind)]
    data = metric_input(classifier, cell)
    data.reference = metric_input(classifier, cell)
    values = values_of(metric_cls(), data)
    assert np.isfinite(values[0]) and np.isnan(values[1])


def test_the_engine_gives_nan_rows_and_runs_nothing_for_an_example_without_removable_units(classifier):
    empty = attribution(classifier, "", [])
    normal = attribution(classifier, "good", [1.0])
    calls = []
    forward = classifier.logits

    def counting(**inputs):
        calls.append(inputs["input_ids"].shape[0])
        return forward(**inputs)

    classifier.logits = counting
    removals = [np.zeros((3, 0), dtype=bool), np.array([[False], [True]])]
    empty_rows, normal_rows = evaluate(classifier, [empty, normal], removals, masking="delete", batch_size=8)
    assert empty_rows.shape == (3, 2) and np.isnan(empty_rows).all()
    assert np.isfinite(normal_rows).all()
    assert sum(calls) == 2  # the normal example's two rows only (two lengths: one pass each)
