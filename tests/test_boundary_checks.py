"""Outputs checked at the boundary, inputs handed out as copies (``harness.boundary``): a plugin that
changes what it was handed changes nothing another plugin or the store sees; a value a check could have
refused (out of range, infinite, a negative cost) fails its cell naming the plugin and is never stored; an
explanation that scores every token alike is undefined for removal metrics, with a note. The conformance
kit finds each of these in a plugin before a run does.

The misbehaving plugins are third-party plugins added to the registry (as ``crash_plugins`` adds its
explainers); the suites run on the serial executor, where every stage shares one process and its objects.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from conftest import tiny_suite_text
from test_conformance import TopShare, Uniform, only

from harness import Attribution, Explainer, Explanation, Metric, MetricInput, MetricOutput
from harness.boundary import (
    RANGE_TOLERANCE,
    attribution_problem,
    attributions_copy,
    encoding_copy,
    is_degenerate,
    undefined_where_degenerate,
    values_problem,
)
from harness.registry import PluginInfo, Registry, get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from harness.testing import KitClassifier, explainer_findings, kit_attributions, kit_dataset, metric_findings


def _positions(encoding) -> torch.Tensor:
    """Earlier tokens first: a plain, well-behaved ranking."""
    return -torch.arange(encoding.input_ids.shape[1], dtype=torch.float32).expand(encoding.input_ids.shape)


class Positions(Explainer):
    """Earlier tokens score higher."""

    name: ClassVar[str] = "positions"

    def explain(self, classifier, encoding, targets):
        return _positions(encoding).clone()


class MaskingInPlace(Explainer):
    """Positions, after masking every token of the input it was handed in place and flipping its targets
    (what an occlusion loop that forgets to restore would leave behind)."""

    name: ClassVar[str] = "masks-in-place"

    def explain(self, classifier, encoding, targets):
        scores = _positions(encoding).clone()
        encoding.input_ids[:, 1:] = classifier.pad_token_id
        encoding.tokens[0][1] = "changed"
        targets.copy_(1 - targets)
        return scores


class NumpyScores(Explainer):
    """Positions as a numpy array, not a tensor."""

    name: ClassVar[str] = "numpy-scores"

    def explain(self, classifier, encoding, targets):
        return _positions(encoding).numpy()


class Constant(Explainer):
    """Every token scores 0: an explanation that ranks nothing."""

    name: ClassVar[str] = "constant"

    def explain(self, classifier, encoding, targets):
        return torch.zeros(encoding.input_ids.shape)


class AlternatingSigns(Explainer):
    """+1, −1, +1, … on every token: equal in |score| everywhere, so it ranks nothing by |score|."""

    name: ClassVar[str] = "alternating-signs"

    def explain(self, classifier, encoding, targets):
        signs = 1.0 - 2.0 * (torch.arange(encoding.input_ids.shape[1]) % 2).float()
        return signs.expand(encoding.input_ids.shape).clone()


class Labelled(Explainer):
    """Positions, labelling every token ``label`` and putting all of them in group 0 scored
    ``group_score`` (class attributes each test sets)."""

    name: ClassVar[str] = "labelled"
    label: ClassVar[object] = 1
    group_score: ClassVar[float] = 0.5

    def explain(self, classifier, encoding, targets):
        shape = encoding.input_ids.shape
        return Explanation(
            _positions(encoding).clone(),
            labels=torch.full(shape, self.label),
            groups=torch.zeros(shape, dtype=torch.long),
            group_scores=torch.full((shape[0], 1), self.group_score),
        )


class StatedSeconds(Explainer):
    """Positions, with the cost ``seconds`` (a class attribute each test sets) stated for every example."""

    name: ClassVar[str] = "stated-seconds"
    seconds: ClassVar[float] = 0.0

    def explain(self, classifier, encoding, targets):
        stated = torch.full((len(encoding),), self.seconds, dtype=torch.float64)
        return Explanation(_positions(encoding).clone(), seconds=stated)


class ReversesScores(Metric):
    """Reverses the scores (and ids) of the attributions it is handed in place; its own value is 0."""

    name: ClassVar[str] = "reverses-scores"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def compute(self, data: MetricInput):
        for attribution in [*data.attributions, *(data.reference.attributions if data.reference else ())]:
            attribution.scores.reverse()
            attribution.input_ids[1:] = [0] * (len(attribution.input_ids) - 1)
        return [0.0] * len(data.attributions)


class Constantly(Metric):
    """Returns ``value`` (a class attribute each test sets) for every example; declared range [0, 1]."""

    name: ClassVar[str] = "constantly"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    value: ClassVar[object] = 0.5

    def compute(self, data: MetricInput):
        return MetricOutput([self.value] * len(data.attributions), notes=["a note"])


class Curving(Metric):
    """Value 0.5 for every example, each with the curve ``curve`` (a class attribute each test sets)."""

    name: ClassVar[str] = "curving"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    curve: ClassVar[object] = {"x": [0, 1], "y": [0.5, 0.25]}

    def compute(self, data: MetricInput):
        n = len(data.attributions)
        return MetricOutput([0.5] * n, curves=[self.curve] * n, notes=["a note"])


BOUNDARY_PLUGINS = (
    Positions,
    MaskingInPlace,
    NumpyScores,
    Constant,
    AlternatingSigns,
    Labelled,
    StatedSeconds,
    ReversesScores,
    Constantly,
    Curving,
)


def registry() -> Registry:
    infos = [PluginInfo(cls.kind, cls.name, cls, "boundary-tests", "1.0") for cls in BOUNDARY_PLUGINS]
    return Registry([*get_registry().all(), *infos])


def run(tmp_path: Path, explainers: str, metrics: str, folder: str = "run"):
    path = tmp_path / f"{folder}.yaml"
    path.write_text(tiny_suite_text(explainers, metrics))
    loaded = load_suite(path, registry())
    root = tmp_path / folder
    options = RunOptions(results_dir=root / "results", cache_dir=root / "cache", progress=False)
    result = Runner(loaded, options).run()
    return Store(root / "results"), result


def entries(*names: str) -> str:
    return "".join(f"\n  - name: {name}" for name in names)


def values(store: Store, run_id: str, explainer: str, metric: str) -> dict[str, float]:
    return {
        record["example_id"]: record["value"]
        for record in store.records(run_id)
        if record["explainer"] == explainer and record["metric"] == metric
    }


def failures(result) -> dict[tuple[str, str], str]:
    return {(cell.explainer.name, cell.metric.name): error for cell, error in result.failed}


COMPREHENSIVENESS = "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}"


# -- inputs handed out as copies -------------------------------------------------------------------------


def test_a_metric_changing_the_attributions_it_is_handed_changes_no_later_metric_nor_the_store(tmp_path):
    clean_store, clean = run(tmp_path, entries("saliency"), COMPREHENSIVENESS, "clean")
    store, result = run(tmp_path, entries("saliency"), entries("reverses-scores") + COMPREHENSIVENESS)
    assert not result.failed, result.failed
    expected = values(clean_store, clean.run_id, "saliency", "comprehensiveness")
    assert values(store, result.run_id, "saliency", "comprehensiveness") == expected
    stored = {a["example_id"]: (a["scores"], a["input_ids"]) for a in store.attributions(result.run_id)}
    assert stored == {
        a["example_id"]: (a["scores"], a["input_ids"]) for a in clean_store.attributions(clean.run_id)
    }


def test_an_explainer_changing_its_encoding_in_place_has_the_ids_the_model_read_stored(tmp_path):
    store, result = run(tmp_path, entries("positions", "masks-in-place"), COMPREHENSIVENESS)
    assert not result.failed, result.failed
    stored: dict[str, dict] = {}
    for attribution in store.attributions(result.run_id):
        stored.setdefault(attribution["explainer"], {})[attribution["example_id"]] = attribution
    clean, masking = stored["positions"], stored["masks-in-place"]
    assert clean.keys() == masking.keys()
    for example_id, attribution in clean.items():
        for field in ("input_ids", "tokens", "target", "scores"):
            assert masking[example_id][field] == attribution[field], (example_id, field)
    # the same scores on the same input: removal metrics score the same input, with the same values
    assert values(store, result.run_id, "masks-in-place", "comprehensiveness") == values(
        store, result.run_id, "positions", "comprehensiveness"
    )


def test_copies_share_nothing_a_plugin_can_change():
    classifier = KitClassifier()
    encoding = classifier.encode(kit_dataset().test[:2])
    encoding.example_ids = ["a", "b"]
    handed = encoding_copy(encoding)
    handed.input_ids[0, 0] = 99
    handed.tokens[0].append("x")
    handed.offsets[1][0] = (7, 7)
    handed.example_ids[0] = "z"
    assert int(encoding.input_ids[0, 0]) != 99 and encoding.tokens[0][-1] != "x"
    assert encoding.offsets[1][0] != (7, 7) and encoding.example_ids == ["a", "b"]
    [original] = kit_attributions(classifier, kit_dataset().test[:1])
    original.extras = {"other": [1.0] * len(original.scores)}
    [copy] = attributions_copy([original])
    assert copy == original
    copy.scores[0] = 99.0
    copy.extras["other"][0] = 99.0
    copy.log_probabilities[0] = 0.0
    assert (
        original.scores[0] != 99.0
        and original.extras["other"][0] == 1.0
        and original.log_probabilities[0] != 0.0
    )


# -- outputs checked -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [3.0, -0.5, math.inf, -math.inf, "high"], ids=str)
def test_a_metric_value_outside_its_range_or_infinite_fails_its_cell_naming_the_metric(
    tmp_path, monkeypatch, value
):
    monkeypatch.setattr(Constantly, "value", value)
    store, result = run(tmp_path, entries("random"), entries("constantly", "runtime"))
    assert list(failures(result)) == [("random", "constantly")]
    assert "metric 'constantly' returned" in failures(result)[("random", "constantly")]
    assert values(store, result.run_id, "random", "constantly") == {}
    assert len(values(store, result.run_id, "random", "runtime")) == 6
    [cell] = [c for c in store.cells(result.run_id) if c["metric"] == "constantly"]
    assert cell["status"] == "failed" and "metric 'constantly' returned" in cell["error"]


@pytest.mark.parametrize("value", ["0.5", b"0.5", "nan"], ids=repr)
def test_a_metric_value_given_as_text_fails_its_cell_naming_the_metric(tmp_path, monkeypatch, value):
    monkeypatch.setattr(Constantly, "value", value)
    store, result = run(tmp_path, entries("random"), entries("constantly", "runtime"))
    assert failures(result) == {
        ("random", "constantly"): f"metric 'constantly' returned values that are not numbers ({value!r} is "
        f"{type(value).__name__}, expected a number)"
    }
    assert values(store, result.run_id, "random", "constantly") == {}
    assert len(values(store, result.run_id, "random", "runtime")) == 6


@pytest.mark.parametrize("value", [np.float32(0.5), np.int64(1), np.bool_(True), True, 0], ids=repr)
def test_a_metric_value_of_any_python_or_numpy_number_is_stored_as_a_float(tmp_path, monkeypatch, value):
    monkeypatch.setattr(Constantly, "value", value)
    store, result = run(tmp_path, entries("random"), entries("constantly"))
    assert not result.failed, result.failed
    assert set(values(store, result.run_id, "random", "constantly").values()) == {float(value)}


@pytest.mark.parametrize("value", [1.0 + RANGE_TOLERANCE / 2, -RANGE_TOLERANCE / 2, math.nan], ids=str)
def test_a_value_at_the_edge_of_its_range_within_rounding_or_undefined_is_stored_as_it_is(
    tmp_path, monkeypatch, value
):
    monkeypatch.setattr(Constantly, "value", value)
    store, result = run(tmp_path, entries("random"), entries("constantly"))
    assert not result.failed, result.failed
    stored = list(values(store, result.run_id, "random", "constantly").values())
    assert len(stored) == 6
    assert all(v == value or (math.isnan(value) and (v is None or math.isnan(v))) for v in stored)


def test_values_problem_names_the_example_and_the_range():
    ids = ["a", "b", "c"]
    assert values_problem(Constantly, [0.0, 1.0, math.nan], ids) is None
    assert (
        values_problem(Constantly, [0.5, 1.5, 0.5], ids)
        == "value 1.5 for example 'b', outside its declared range [0.0, 1.0]"
    )
    assert "must be finite" in values_problem(Constantly, [math.inf, 0.5, 0.5], ids)


@pytest.mark.parametrize(
    ("curve", "problem"),
    [
        ({"x": [0, math.inf], "y": [0.5, 0.5]}, "'x' holds inf"),
        ({"x": [0, 1], "y": ["a", math.nan]}, "'y' holds 'a'"),
        ({"x": [0, 1], "y": [b"0.5", 0.5]}, "'y' holds b'0.5'"),
        ({"x": [0, 1], "y": [-math.inf, 0.5]}, "'y' holds -inf"),
        ({"x": [0, 1], "y": [np.float32(0.5), 0.5]}, "'y' holds np.float32(0.5)"),
        ({"x": 0.5}, "'x' → float, expected a name and a list of numbers"),
        ([[0, 1], [0.5, 0.5]], "of type list, expected a dict of named lists of numbers"),
    ],
    ids=["inf", "text", "bytes", "minus-inf", "numpy-float32", "not-a-list", "not-a-dict"],
)
def test_a_curve_holding_anything_but_finite_numbers_or_nan_fails_its_cell_naming_the_metric(
    tmp_path, monkeypatch, curve, problem
):
    monkeypatch.setattr(Curving, "curve", curve)
    store, result = run(tmp_path, entries("random"), entries("curving", "runtime"))
    assert list(failures(result)) == [("random", "curving")]
    error = failures(result)[("random", "curving")]
    assert error.startswith("metric 'curving' returned a curve for example ") and problem in error, error
    assert values(store, result.run_id, "random", "curving") == {}
    assert not [c for c in store.curves(result.run_id) if c["metric"] == "curving"]
    assert len(values(store, result.run_id, "random", "runtime")) == 6


def test_a_curve_of_finite_numbers_with_nan_where_undefined_is_stored(tmp_path, monkeypatch):
    monkeypatch.setattr(Curving, "curve", {"x": [0, 1, 2], "y": [np.float64(0.5), math.nan, True]})
    store, result = run(tmp_path, entries("random"), entries("curving"))
    assert not result.failed, result.failed
    curves = [c["curve"] for c in store.curves(result.run_id)]
    assert len(curves) == 6 and curves[0]["x"] == [0, 1, 2] and math.isnan(curves[0]["y"][1])


@pytest.mark.parametrize("seconds", [-0.25, math.inf, -math.inf])
def test_a_negative_or_infinite_stated_cost_fails_the_explainers_cells(tmp_path, monkeypatch, seconds):
    monkeypatch.setattr(StatedSeconds, "seconds", seconds)
    store, result = run(tmp_path, entries("stated-seconds", "random"), entries("runtime"))
    assert list(failures(result)) == [("stated-seconds", "runtime")]
    assert failures(result)[("stated-seconds", "runtime")].startswith(
        f"explainer 'stated-seconds' returned seconds {seconds!r}"
    )
    assert values(store, result.run_id, "stated-seconds", "runtime") == {}
    assert len(values(store, result.run_id, "random", "runtime")) == 6


def test_a_stated_cost_of_zero_or_unknown_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(StatedSeconds, "seconds", 0.0)
    store, result = run(tmp_path, entries("stated-seconds"), entries("runtime"))
    assert not result.failed, result.failed
    assert set(values(store, result.run_id, "stated-seconds", "runtime").values()) == {0.0}


def test_scores_that_are_not_a_tensor_fail_the_cell_naming_the_explainer(tmp_path):
    _, result = run(tmp_path, entries("numpy-scores"), entries("runtime"))
    assert failures(result) == {
        (
            "numpy-scores",
            "runtime",
        ): "explainer 'numpy-scores' returned scores of type ndarray, expected a torch.Tensor"
    }


@pytest.mark.parametrize(
    ("label", "group_score", "problem"),
    [
        (math.nan, 0.5, "labels of dtype torch.float32, expected integers in -2..2"),
        (99, 0.5, "label 99, expected one of (-2, -1, 0, 1, 2) (0: neutral)"),
        (2, math.inf, "non-finite group_scores (inf), expected finite numbers"),
    ],
    ids=["nan-labels", "label-99", "inf-group-score"],
)
def test_labels_outside_the_label_values_or_infinite_group_scores_fail_the_explainers_cells(
    tmp_path, monkeypatch, label, group_score, problem
):
    monkeypatch.setattr(Labelled, "label", label)
    monkeypatch.setattr(Labelled, "group_score", group_score)
    store, result = run(tmp_path, entries("labelled", "random"), entries("runtime"))
    assert failures(result) == {("labelled", "runtime"): f"explainer 'labelled' returned {problem}"}
    assert values(store, result.run_id, "labelled", "runtime") == {}
    assert not [a for a in store.attributions(result.run_id) if a["explainer"] == "labelled"]
    assert len(values(store, result.run_id, "random", "runtime")) == 6


def test_labels_among_the_label_values_and_group_scores_padded_by_trailing_nan_only_pass():
    shape = (2, 3)
    labels = torch.tensor([[-2, -1, 0], [1, 2, 0]])
    groups = torch.tensor([[0, 1, -1], [0, 0, -1]])
    padded = torch.tensor([[0.5, -1.0], [0.25, math.nan]])
    assert (
        Explanation(torch.zeros(shape), labels=labels, groups=groups, group_scores=padded).problem(shape)
        is None
    )
    inner_nan = torch.tensor([[math.nan, 1.0], [0.25, math.nan]])
    assert Explanation(torch.zeros(shape), groups=groups, group_scores=inner_nan).problem(shape) == (
        "group_scores with NaN before a number, expected NaN only as a row's trailing padding"
    )


def test_a_cached_attribution_with_labels_outside_the_label_values_or_infinite_group_scores_is_refused():
    attribution = attribution_with([1.0, 2.0], [0, 0])
    assert attribution_problem(attribution) is None
    assert attribution_problem(replace(attribution, labels=[0, -9223372036854775808])) == (
        "labels outside (-2, -1, 0, 1, 2)"
    )
    assert attribution_problem(
        replace(attribution, labels=[0, 2], groups=[0, 0], group_scores=[math.inf])
    ) == ("non-finite group_scores")


# -- degenerate explanations -----------------------------------------------------------------------------


def test_an_explanation_scoring_every_token_alike_is_undefined_for_removal_metrics_with_a_note(tmp_path):
    store, result = run(tmp_path, entries("constant", "random"), COMPREHENSIVENESS + entries("runtime"))
    assert not result.failed, result.failed
    constant = values(store, result.run_id, "constant", "comprehensiveness")
    assert len(constant) == 6 and all(v is None or math.isnan(v) for v in constant.values())
    assert all(math.isfinite(v) for v in values(store, result.run_id, "random", "comprehensiveness").values())
    assert all(math.isfinite(v) for v in values(store, result.run_id, "constant", "runtime").values())
    notes = {(c["explainer"], c["metric"]): c["notes"] for c in store.cells(result.run_id)}
    [note] = [n for n in notes[("constant", "comprehensiveness")] if "equal on every token" in n]
    assert note.startswith("6 of 6 examples")
    assert not any("equal on every token" in n for n in notes[("random", "comprehensiveness")])
    assert not any("equal on every token" in n for n in notes[("constant", "runtime")])


def test_scores_equal_in_magnitude_are_undefined_for_metrics_ranking_by_magnitude_only(tmp_path):
    by_magnitude = (
        "\n  - name: delta-log-odds\n    params: {select: absolute}"
        "\n  - name: prediction-agreement\n    params: {order: absolute}"
    )
    by_score = "\n  - name: prediction-agreement\n    params: {order: signed}"
    store, result = run(tmp_path, entries("alternating-signs"), by_magnitude + by_score)
    assert not result.failed, result.failed
    cells = store.cells(result.run_id)
    assert len(cells) == 3
    for cell in cells:
        params = json.loads(cell["metric_params"])
        stored = [
            r["value"]
            for r in store.records(result.run_id)
            if (r["metric"], r["metric_params"]) == (cell["metric"], params)
        ]
        absolute = '"absolute"' in cell["metric_params"]
        assert len(stored) == 6
        assert all((v is None or math.isnan(v)) == absolute for v in stored), (cell["metric_params"], stored)
        flagged = [note for note in cell["notes"] if "equal in |score| on every token" in note]
        assert len(flagged) == absolute, (cell["metric_params"], cell["notes"])


def attribution_with(scores: list[float], segments: list[int], example_id: str = "x") -> Attribution:
    n = len(scores)
    return Attribution(
        example_id,
        0,
        0,
        0.5,
        list(range(n)),
        None,
        ["t"] * n,
        [(0, 0)] * n,
        [None] * n,
        segments,
        scores,
        0.0,
    )


def test_degenerate_means_every_real_token_alike_with_two_or_more_of_them():
    assert is_degenerate(attribution_with([9.0, 0.0, 0.0, -9.0], [-1, 0, 0, -1]))  # specials do not count
    assert is_degenerate(attribution_with([0.3, 0.3, 0.3], [0, 0, 1]))
    assert not is_degenerate(attribution_with([0.3, 0.3, 0.30001], [0, 0, 1]))
    assert not is_degenerate(attribution_with([5.0, 1.0, 5.0], [-1, 0, -1]))  # one real token: no ranking
    assert not is_degenerate(attribution_with([], []))


def test_degenerate_by_magnitude_means_every_real_token_alike_in_absolute_value():
    alternating = attribution_with([5.0, 1.0, -1.0, 1.0, -1.0, 5.0], [-1, 0, 0, 1, 1, -1])
    assert is_degenerate(alternating, "absolute")
    assert not is_degenerate(alternating, "signed") and not is_degenerate(alternating)
    assert not is_degenerate(attribution_with([1.0, -2.0], [0, 0]), "absolute")


def test_a_degenerate_reference_makes_its_example_undefined_too():
    cell = [attribution_with([1.0, 2.0], [0, 0], "a"), attribution_with([1.0, 2.0], [0, 0], "b")]
    reference = [attribution_with([1.0, 2.0], [0, 0], "a"), attribution_with([0.0, 0.0], [0, 0], "b")]
    values_, note = undefined_where_degenerate([0.1, 0.2], cell, reference)
    assert values_[0] == 0.1 and math.isnan(values_[1])
    assert note.startswith("1 of 2 examples")
    assert undefined_where_degenerate([0.1, 0.2], cell) == ([0.1, 0.2], None)


# -- the conformance kit finds each -------------------------------------------------------------------


def test_kit_finds_an_explainer_changing_the_encoding_it_is_handed():
    class ChangesIds(Uniform):
        def explain(self, classifier, encoding, targets):
            scores = super().explain(classifier, encoding, targets).clone()
            encoding.input_ids[:, 1] = classifier.unk_token_id
            return scores

    only(explainer_findings(ChangesIds), "read-only")


def test_kit_finds_an_explainer_changing_its_targets():
    class ChangesTargets(Uniform):
        def explain(self, classifier, encoding, targets):
            targets.zero_()
            return super().explain(classifier, encoding, targets)

    [finding] = explainer_findings(ChangesTargets)
    assert finding.check == "read-only" and "targets" in finding.message


@pytest.mark.parametrize("seconds", [-1.0, math.inf])
def test_kit_finds_an_explainer_stating_a_negative_or_infinite_cost(seconds):
    class Costly(Uniform):
        def explain(self, classifier, encoding, targets):
            stated = torch.full((len(encoding),), seconds, dtype=torch.float64)
            return Explanation(super().explain(classifier, encoding, targets), seconds=stated)

    only(explainer_findings(Costly), "seconds")


def test_kit_accepts_an_explainer_stating_an_unknown_cost():
    class Unknown(Uniform):
        def explain(self, classifier, encoding, targets):
            stated = torch.full((len(encoding),), math.nan, dtype=torch.float64)
            return Explanation(super().explain(classifier, encoding, targets), seconds=stated)

    assert explainer_findings(Unknown) == []


def test_kit_finds_an_explainer_returning_an_array_not_a_tensor():
    class Array(Uniform):
        def explain(self, classifier, encoding, targets):
            return super().explain(classifier, encoding, targets).numpy()

    only(explainer_findings(Array), "shape")


def test_kit_finds_a_metric_changing_the_attributions_it_is_handed():
    class SortsScores(TopShare):
        def compute(self, data):
            output = super().compute(data)
            for attribution in data.attributions:
                attribution.scores.sort()
            return output

    only(metric_findings(SortsScores), "read-only")


def test_kit_finds_a_comparing_metric_changing_its_reference():
    class ChangesReference(TopShare):
        compares = "teacher"

        def compute(self, data):
            data.reference.attributions[0].scores[0] = 123.0
            return super().compute(data)

    only(metric_findings(ChangesReference), "read-only")


def test_kit_finds_a_metric_with_infinite_values():
    class Infinite(TopShare):
        def compute(self, data):
            return MetricOutput([math.inf] * len(data.attributions), notes=["why"])

    only(metric_findings(Infinite), "values")


# -- cost of the copies -----------------------------------------------------------------------------------


def test_copying_a_large_cells_attributions_costs_little_beside_scoring_them():
    """1000 examples of 512 tokens with extras: copying is pointer copies, well under a second even on a
    loaded machine (a deep copy of each float would take tens of seconds)."""
    n = 512
    one = attribution_with(list(np.linspace(0, 1, n)), [0] * n)
    one.extras = {"other": list(np.linspace(1, 0, n))}
    one.log_probabilities = [-0.1, -2.3]
    attributions = [one] * 1000
    started = time.perf_counter()
    copies = attributions_copy(attributions)
    assert time.perf_counter() - started < 2.0
    assert copies[0] == one and copies[0].scores is not one.scores
