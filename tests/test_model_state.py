"""A plugin that modifies the model it was handed fails its own cell, and no other cell's numbers or cache
entries change: the harness checks the model's state after every plugin call (``harness.modelstate``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch
from conftest import tiny_suite_text

from harness import Explainer, ExplainerParams, Metric, MetricInput
from harness.modelstate import ModelState
from harness.registry import PluginInfo, Registry, get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.models.bow import BagOfWordsClassifier


class PositionsParams(ExplainerParams):
    mode: str = "none"  # what it does to the model first: none, negate, data, vocabulary, undone


class Positions(Explainer):
    """Scores each token by minus its position (the same for every mode), after doing ``mode`` to the
    model."""

    name: ClassVar[str] = "positions"
    Params = PositionsParams

    def explain(self, classifier, encoding, targets):
        mode = self.params.mode
        with torch.no_grad():
            for parameter in classifier.torch_modules()[0].parameters():
                if mode == "negate":
                    parameter.mul_(-1.0)
                elif mode == "data":
                    parameter.data = -parameter.data
        if mode == "vocabulary":
            for token in list(classifier.index)[:50]:
                classifier.index[token] = 0
        if mode == "undone":  # changes the vocabulary in its first call and puts it back in its second
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 1:
                self.saved = dict(classifier.index)
                for token in list(classifier.index)[:50]:
                    classifier.index[token] = 0
            elif self.calls == 2:
                classifier.index.update(self.saved)
        length = encoding.input_ids.shape[1]
        return -torch.arange(length, dtype=torch.float32).expand(encoding.input_ids.shape).clone()


class Zeroing(Metric):
    """Zeroes the classifier's weights, then says 0.5 for every example."""

    name: ClassVar[str] = "zeroing"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def compute(self, data: MetricInput) -> list[float]:
        with torch.no_grad():
            for module in data.classifier.torch_modules():
                for parameter in module.parameters():
                    parameter.zero_()
        return [0.5] * len(data.attributions)


def registry() -> Registry:
    return Registry(
        [
            *get_registry().all(),
            PluginInfo("explainer", "positions", Positions, "test-plugins", "1.0"),
            PluginInfo("metric", "zeroing", Zeroing, "test-plugins", "1.0"),
        ]
    )


REMOVAL = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: sufficiency
    params: {bins: [10, 50]}"""
CONTROLS = """
  - name: positions
    label: control
  - name: saliency"""


def run(write_suite, tmp_path: Path, name: str, explainers: str, metrics: str = REMOVAL):
    """Run a suite of ``explainers`` and ``metrics`` on the tiny data and bow; its results folder and
    cache are its own (``name``). Returns the store, the run and the cache folder."""
    path = write_suite(tiny_suite_text(explainers, metrics), f"{name}.yaml")
    cache = tmp_path / f"cache-{name}"
    options = RunOptions(results_dir=tmp_path / f"results-{name}", cache_dir=cache, progress=False)
    result = Runner(load_suite(path, registry()), options).run()
    return Store(tmp_path / f"results-{name}"), result, cache


def values(store: Store, run_id: str) -> dict[tuple, float | None]:
    """Every stored value of a run, by explainer label, metric and example."""
    labels = {cell["cell_id"]: cell["explainer_label"] for cell in store.cells(run_id)}
    return {
        (labels[row["cell_id"]], row["metric"], row["example_id"]): row["value"]
        for row in store.report_rows(run_id)
    }


@pytest.mark.parametrize(
    "mode, change",
    [
        ("negate", "its parameter embedding.weight was changed in place"),
        ("data", "the data of its parameter embedding.weight was replaced"),
        ("vocabulary", "its attribute 'index' changed"),
        # the warm-up call changes it and the timed call undoes it: caught after the warm-up (it was not)
        ("undone", "its attribute 'index' changed"),
    ],
)
def test_an_explainer_that_modifies_the_model_fails_its_cell_and_changes_no_other(
    write_suite, tmp_path, mode, change
):
    clean_store, clean, _ = run(write_suite, tmp_path, "clean", CONTROLS)
    mutating = f"\n  - name: positions\n    label: mutating\n    params: {{mode: {mode}}}"
    store, result, cache = run(write_suite, tmp_path, "mutated", mutating + CONTROLS)

    failed = {cell.explainer.label: error for cell, error in result.failed}
    assert set(failed) == {"mutating"}, failed
    assert f"explainer 'positions' modified the model it was handed: {change}" in failed["mutating"]
    assert values(store, result.run_id) == values(clean_store, clean.run_id)
    # nothing the mutating explainer computed is cached: the controls' attributions and values only
    assert len(list((cache / "attributions").rglob("*.json"))) == 2
    assert len(list((cache / "metric-values").rglob("*.json"))) == 4

    again_store, again, _ = run(write_suite, tmp_path, "mutated", mutating + CONTROLS)
    assert {cell.explainer.label for cell, _ in again.failed} == {"mutating"}
    assert values(again_store, again.run_id) == values(clean_store, clean.run_id)


def test_a_metric_that_modifies_the_model_fails_its_cell_and_changes_no_other(write_suite, tmp_path):
    clean_store, clean, _ = run(write_suite, tmp_path, "clean", CONTROLS)
    metrics = REMOVAL.replace("  - name: sufficiency", "  - name: zeroing\n  - name: sufficiency")
    store, result, cache = run(write_suite, tmp_path, "mutated", CONTROLS, metrics)

    failed = {(cell.explainer.label, cell.metric.label): error for cell, error in result.failed}
    assert set(failed) <= {("control", "zeroing"), ("saliency", "zeroing")} and failed, failed
    assert all("metric 'zeroing' modified the model it was handed" in error for error in failed.values())
    assert values(store, result.run_id) == values(clean_store, clean.run_id) | {
        key: 0.5 for key in values(store, result.run_id) if key[1] == "zeroing"
    }
    assert len(list((cache / "metric-values").rglob("*.json"))) == 4 + 2 - len(failed)


def test_the_models_state_is_unchanged_by_explaining_and_changed_by_in_place_edits():
    classifier = BagOfWordsClassifier(["[PAD]", "[UNK]", "[MASK]", "good", "bad"], ["neg", "pos"], dim=4)
    classifier.requires_grad_(False).eval()
    state = ModelState.of(classifier)
    classifier.logits(input_ids=torch.tensor([[3, 4]]), attention_mask=torch.ones(1, 2))
    assert state.change(classifier) is None
    classifier.cached_after_loading = True  # an attribute set later (a cached property) is no change
    assert state.change(classifier) is None
    with torch.no_grad():  # changed and put back, as captum's LRP does: no change
        classifier.linear.weight.mul_(-1.0)
        classifier.linear.weight.mul_(-1.0)
    assert state.change(classifier) is None
    classifier.linear.bias.add_(1.0)
    assert state.change(classifier) == "its parameter linear.bias was changed in place"
    assert state.weights_changed(classifier)


def test_calling_a_fast_tokenizer_with_other_truncation_or_padding_is_no_change_but_adding_a_token_is():
    """A fast tokenizer's call sets its backend's truncation and padding for itself (lime and kernel-shap
    call it with their own): that decides nothing a later call gives, so it is no change of the model.
    Its vocabulary, added tokens and normaliser are."""
    from harness.minilm import load_minilm_tokenizer
    from harness.modelstate import _tokenizer_digest

    tokenizer = load_minilm_tokenizer()
    before = _tokenizer_digest(tokenizer)
    tokenizer(["a short text"], truncation=True, max_length=3)
    tokenizer(["a short text"], padding="max_length", max_length=12)
    assert _tokenizer_digest(tokenizer) == before
    tokenizer.add_tokens(["zzzqqq"])
    assert _tokenizer_digest(tokenizer) != before
    other = load_minilm_tokenizer()
    before = _tokenizer_digest(other)
    other.backend_tokenizer.normalizer = None
    assert _tokenizer_digest(other) != before
