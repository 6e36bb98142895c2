"""The conformance kit (``harness.testing``): every built-in plugin passes it, and each of its checks
catches a plugin broken in just that way."""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from conftest import TINY_DATA
from pydantic import ConfigDict
from test_prompted import save_tiny_causal_lm
from torch import nn

from harness import (
    Classifier,
    Dataset,
    Encoding,
    Example,
    Explainer,
    ExplainerParams,
    Metric,
    MetricInput,
    MetricOutput,
    Model,
    Params,
    PluginError,
    TextDataset,
)
from harness.explaining import explain_batch
from harness.registry import get_registry
from harness.testing import (
    ConformanceError,
    KitClassifier,
    check_explainer,
    check_metric,
    dataset_findings,
    explainer_findings,
    kit_dataset,
    metric_findings,
    model_findings,
)

# -- every built-in passes ------------------------------------------------------------------------------


class FixedWidthMLP(KitClassifier):
    """The kit's classifier with a flattened fixed-width MLP head instead of attention pooling: every input
    is padded to 40 positions, so captum's LRP has a rule for every layer between the embeddings and the
    logits (LRP refuses models that pool over tokens)."""

    WIDTH = 40

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.mlp = nn.Sequential(
            nn.Linear(self.WIDTH * 4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)
        )
        with torch.no_grad():
            for parameter in self.mlp.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)

    def encode(self, examples):
        encoding = super().encode(examples)
        extra = self.WIDTH - encoding.input_ids.shape[1]
        encoding.input_ids = nn.functional.pad(encoding.input_ids, (0, extra), value=0)
        encoding.attention_mask = nn.functional.pad(encoding.attention_mask, (0, extra), value=0)
        return encoding

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        embeddings = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        return self.mlp(embeddings.flatten(1))


def built_classifier(model: str, params: dict | None = None) -> Classifier:
    cls = get_registry().get("model", model).cls
    return cls(cls.Params.model_validate(params or {})).build(
        kit_dataset(), seed=0, device=torch.device("cpu")
    )


def tiny_bert_folder(tmp_path: Path) -> str:
    from test_models import save_tiny_bert

    save_tiny_bert(tmp_path)
    return str(tmp_path)


def precomputed_file(tmp_path: Path) -> str:
    """Scores for every kit example, one span per word (its length), as another tool would write them."""
    rows = []
    for pairs in (False, True):
        for example in kit_dataset(pairs).test:
            spans = [[s, e, float(e - s)] for s, e in _words(example.text)]
            row = {"id": example.id, "text": example.text, "spans": spans}
            if example.text_pair is not None:
                row |= {
                    "text_pair": example.text_pair,
                    "spans_pair": [[s, e, 1.0] for s, e in _words(example.text_pair)],
                }
            rows.append(row)
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _words(text: str) -> list[tuple[int, int]]:
    import re

    return [match.span() for match in re.finditer(r"\S+", text)]


# What a built-in needs beyond its defaults to be exercised here: parameters, and for explainers that
# support only some models, a classifier they support.
PARAMS = {
    ("dataset", "jsonl"): lambda tmp: {"path": str(TINY_DATA), "test_fraction": 0.25},
    ("model", "hf"): lambda tmp: {"path": tiny_bert_folder(tmp)},
    ("model", "prompted-lm"): lambda tmp: {"path": str(save_tiny_causal_lm(tmp))},
    ("model", "bow"): lambda tmp: {"dim": 8, "max_epochs": 5},
    ("model", "bilstm-attention"): lambda tmp: {"dim": 8, "hidden_size": 8, "max_epochs": 3, "ldav": True},
    ("explainer", "l2e"): lambda tmp: {
        "teacher": {"name": "occlusion"},
        "max_epochs": 2,
        "d_model": 16,
        "blocks": 1,
        "heads": 2,
    },  # fmt: skip
    ("explainer", "precomputed"): lambda tmp: {"path": precomputed_file(tmp)},
    ("explainer", "kernel-shap"): lambda tmp: {"samples": 64},
    ("explainer", "lime"): lambda tmp: {"samples": 64},
    ("explainer", "partition-shap"): lambda tmp: {"max_evals": 40},
    ("explainer", "l2x"): lambda tmp: {"max_epochs": 2, "selector_hidden": 16, "approximator_hidden": 16},
    ("explainer", "iba"): lambda tmp: {"layer": 0},  # the kit's classifier has no hidden layers
    ("explainer", "imask"): lambda tmp: {"steps": 4, "samples": 4},
    ("explainer", "gmask"): lambda tmp: {"steps": 4, "samples": 4, "imask_steps": 3, "imask_samples": 4},
    ("model", "minilm-head"): lambda tmp: {"max_epochs": 2, "max_length": 32},
}
CLASSIFIERS = {
    "deeplift": lambda: built_classifier("bow", {"dim": 8, "max_epochs": 5}),
    "deeplift-shap": lambda: built_classifier("bow", {"dim": 8, "max_epochs": 5}),
    "lrp": FixedWidthMLP,
    "ldav": lambda: built_classifier(
        "bilstm-attention", {"dim": 8, "hidden_size": 8, "max_epochs": 3, "ldav": True}
    ),
    "partition-shap": lambda: built_classifier("minilm-head", {"max_epochs": 2, "max_length": 32}),
}
NEEDS = {
    ("dataset", "hf"): ("datasets", "the hf dataset reads through the `datasets` package (the hub extra)"),
}


def builtins() -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        infos = get_registry().all()
    return [
        pytest.param(info, id=f"{info.kind}-{info.name}")
        for info in infos
        if info.package == "xai-bench-harness"
    ]


@pytest.mark.parametrize("info", builtins())
def test_every_built_in_passes_the_conformance_kit(info, tmp_path):
    key = (info.kind, info.name)
    if key in NEEDS:
        pytest.importorskip(NEEDS[key][0], reason=NEEDS[key][1])
    params = PARAMS.get(key, lambda tmp: None)(tmp_path)
    if info.kind == "explainer":
        classifier = CLASSIFIERS.get(info.name, lambda: None)()
        findings = explainer_findings(info.cls, params, classifier=classifier)
    else:
        findings = {"dataset": dataset_findings, "model": model_findings, "metric": metric_findings}[
            info.kind
        ](info.cls, params)
    assert not findings, "\n".join(map(str, findings))


# -- each check catches its violation -------------------------------------------------------------------


def only(findings, check: str) -> None:
    """The findings are exactly one kind of violation: the one the broken plugin was built to show."""
    assert findings, f"the kit missed the '{check}' violation"
    assert {finding.check for finding in findings} == {check}, "\n".join(map(str, findings))


class Uniform(Explainer):
    """Scores every token by its position: a plugin that follows every contract."""

    name: ClassVar[str] = "kit-uniform"

    def explain(self, classifier, encoding, targets):
        return torch.arange(encoding.input_ids.shape[1], dtype=torch.float32).expand(encoding.input_ids.shape)


def test_a_conforming_explainer_has_no_findings():
    assert explainer_findings(Uniform) == []
    check_explainer(Uniform)


def test_explainer_that_modifies_the_model_it_is_handed():
    class Negating(Uniform):
        def explain(self, classifier, encoding, targets):
            with torch.no_grad():
                for parameter in classifier.torch_modules()[0].parameters():
                    parameter.mul_(-1.0)
            return super().explain(classifier, encoding, targets)

    only(explainer_findings(Negating), "model-unchanged")


def test_explainer_metadata_without_a_name():
    class Nameless(Uniform):
        name = ""

    only(explainer_findings(Nameless), "metadata")


def test_explainer_declaring_a_baseline_the_boards_do_not_know():
    class Floor(Uniform):
        baseline = "floor"

    only(explainer_findings(Floor), "metadata")
    assert "baseline must be None (a method) or 'chance'" in explainer_findings(Floor)[0].message

    class Chance(Uniform):
        baseline = "chance"

    assert explainer_findings(Chance) == []


def test_explainer_params_that_accept_unknown_keys():
    class Loose(ExplainerParams):
        model_config = ConfigDict(extra="allow", frozen=True)

    class LooseExplainer(Uniform):
        Params = Loose

    only(explainer_findings(LooseExplainer), "params")


def test_explainer_params_that_do_not_validate():
    only(explainer_findings(Uniform, {"target": "the best one"}), "params")


def test_explainer_that_fails_to_fit():
    class Unfit(Uniform):
        def fit(self, classifier, dataset, context=None):
            raise RuntimeError("no")

    only(explainer_findings(Unfit), "fit")


def test_explainer_that_raises():
    class Raises(Uniform):
        def explain(self, classifier, encoding, targets):
            raise KeyError("a bug")

    only(explainer_findings(Raises), "explain")


def test_explainer_may_decline_pairs_with_a_plugin_error():
    class SinglesOnly(Uniform):
        def explain(self, classifier, encoding, targets):
            if 1 in encoding.segments[0]:
                raise PluginError("single texts only")
            return super().explain(classifier, encoding, targets)

    assert explainer_findings(SinglesOnly) == []


def test_explainer_with_the_wrong_shape():
    class Short(Uniform):
        def explain(self, classifier, encoding, targets):
            return super().explain(classifier, encoding, targets)[:, :-1]

    only(explainer_findings(Short), "shape")


def test_explainer_with_non_finite_scores():
    class Infinite(Uniform):
        def explain(self, classifier, encoding, targets):
            scores = super().explain(classifier, encoding, targets).clone()
            scores[:, 1] = float("nan")
            return scores

    only(explainer_findings(Infinite), "finite")


def test_explainer_that_removes_a_special_token():
    class RemovesSeparators(Uniform):
        def explain(self, classifier, encoding, targets):
            ids = encoding.input_ids.clone()
            ids[ids == 4] = classifier.mask_token_id  # the kit's [SEP]
            classifier.logits(input_ids=ids, attention_mask=encoding.attention_mask)
            return super().explain(classifier, encoding, targets)

    only(explainer_findings(RemovesSeparators), "specials-kept")


def test_explainer_that_depends_on_the_batch():
    class BatchBound(Uniform):
        def explain(self, classifier, encoding, targets):
            return super().explain(classifier, encoding, targets) * len(encoding)

    only(explainer_findings(BatchBound), "batch-independent")


def test_explainer_that_ignores_its_seed():
    class Unseeded(Uniform):
        def __init__(self, params=None, seed=0):
            super().__init__(params, seed)
            self.offset = random.random()  # drawn per instance, whatever the seed: the violation under test

        def explain(self, classifier, encoding, targets):
            return super().explain(classifier, encoding, targets) + self.offset

    only(explainer_findings(Unseeded), "deterministic")


def test_check_explainer_raises_listing_every_violation():
    class Broken(Uniform):
        def explain(self, classifier, encoding, targets):
            scores = super().explain(classifier, encoding, targets).clone()
            scores[:, 1] = float("inf")
            return scores * len(encoding)

    with pytest.raises(ConformanceError) as error:
        check_explainer(Broken)
    assert {f.check for f in error.value.findings} == {"finite", "batch-independent"}
    assert "explainer 'kit-uniform' violates 2 contract(s):\n  [finite] non-finite scores" in str(error.value)


def test_a_word_level_explainer_is_checked_on_the_word_scores_a_run_stores():
    """The kit explains through the runner's loop (harness.explaining), word scores included: token scores
    of 3e38 are finite, but a word of two pieces sums them to inf in float32, which the runner refuses (it
    fails the explanation's cells). The kit used to check the token scores and find nothing."""

    class Huge(Uniform):
        def explain(self, classifier, encoding, targets):
            return torch.full(encoding.input_ids.shape, 3e38)

    assert explainer_findings(Huge) == []  # token scores: finite
    findings = explainer_findings(Huge, {"granularity": "word"})
    only(findings, "finite")
    assert findings[0].message.startswith("non-finite scores on real tokens of ['")
    assert explainer_findings(Huge, {"granularity": "word", "word_reduction": "max"}) == []


def test_a_word_level_explainer_s_attributions_hold_the_mean_of_each_word_s_pieces():
    """What the runner stores and the kit checks (harness.explaining): Uniform scores a token by its
    position, so with ``word_reduction: mean`` each piece of a word holds the mean of its pieces' positions."""
    dataset = kit_dataset()
    classifier = KitClassifier(dataset)
    examples = list(dataset.test[:4])
    params = Uniform.Params(granularity="word", word_reduction="mean")
    explained = explain_batch(Uniform(params), classifier, examples, params)
    for row, attribution in enumerate(explained.attributions()):
        words: dict[int, list[float]] = {}
        for position, word in enumerate(explained.encoding.word_ids[row]):
            if word is not None:
                words.setdefault(word, []).append(float(position))
        expected = [
            sum(words[word]) / len(words[word]) if word is not None else float(position)
            for position, word in enumerate(explained.encoding.word_ids[row])
        ]
        assert attribution.scores == pytest.approx(expected), attribution.example_id
    assert any(len(positions) > 1 for positions in words.values())  # the kit's data has words in pieces


# Models: the kit's classifier as a model plugin, then broken one way at a time.


class KitModel(Model):
    """The kit's classifier as a model plugin."""

    name: ClassVar[str] = "kit-model"
    trainable: ClassVar[bool] = False
    classifier: ClassVar[type[KitClassifier]] = KitClassifier

    def build(self, dataset, *, seed, device, variant="default"):
        return self.classifier(dataset)


def model_with(**overrides) -> type[KitModel]:
    """KitModel whose classifier overrides the given methods."""
    classifier = type("BrokenClassifier", (KitClassifier,), overrides)
    return type("BrokenModel", (KitModel,), {"classifier": classifier})


def edit_encoding(edit):
    def encode(self, examples):
        encoding = KitClassifier.encode(self, examples)
        edit(encoding)
        return encoding

    return encode


def test_a_conforming_model_has_no_findings():
    assert model_findings(KitModel) == []


def test_model_whose_build_returns_no_classifier():
    class NoClassifier(KitModel):
        def build(self, dataset, *, seed, device, variant="default"):
            return object()

    only(model_findings(NoClassifier), "build")


def test_model_with_a_class_count_other_than_the_dataset():
    def three(self, dataset):
        KitClassifier.__init__(self, dataset)
        self.labels, self.linear = ("a", "b", "c"), nn.Linear(4, 3)

    only(model_findings(model_with(__init__=three)), "labels")


def test_model_whose_encoding_lists_disagree_in_length():
    only(model_findings(model_with(encode=edit_encoding(lambda e: e.tokens[0].pop()))), "alignment")


def test_model_giving_a_special_token_a_word():
    def word_on_cls(encoding):
        encoding.word_ids[0][0] = 99

    only(model_findings(model_with(encode=edit_encoding(word_on_cls))), "specials")


def test_model_with_offsets_outside_the_text():
    def far(encoding):
        encoding.offsets[0][1] = (500, 505)

    only(model_findings(model_with(encode=edit_encoding(far))), "offsets")


def test_model_with_a_segment_other_than_its_text():
    def odd_segment(encoding):
        encoding.segments[0][1] = 2

    only(model_findings(model_with(encode=edit_encoding(odd_segment))), "segments")


def test_model_sharing_a_word_id_across_the_two_texts_of_a_pair():
    def shared(encoding):
        for row, segments in enumerate(encoding.segments):
            if 1 in segments:
                encoding.word_ids[row][segments.index(1)] = encoding.word_ids[row][1]

    only(model_findings(model_with(encode=edit_encoding(shared))), "word-ids")


def test_model_encoding_a_pair_without_a_separator():
    def no_separator(encoding):
        for row, segments in enumerate(encoding.segments):
            if 1 in segments:
                boundary = segments.index(1) - 1  # the [SEP] before the second text becomes a token of it
                segments[boundary], encoding.word_ids[row][boundary] = 0, 98
                encoding.offsets[row][boundary] = encoding.offsets[row][boundary - 1]

    only(model_findings(model_with(encode=edit_encoding(no_separator))), "pairs")


def test_model_whose_logits_are_not_finite():
    def nan_logits(self, **kwargs):
        return KitClassifier.logits(self, **kwargs) * float("nan")

    only(model_findings(model_with(logits=nan_logits)), "logits")


def test_model_whose_embeddings_path_differs_from_its_ids_path():
    def shifted(self, input_ids):
        return self.embedding(input_ids) + 1.0

    only(model_findings(model_with(input_embeddings=shifted)), "embeddings")


def test_model_that_attends_to_padding():
    def padding_counts(self, *, attention_mask, **kwargs):
        return KitClassifier.logits(self, attention_mask=torch.ones_like(attention_mask), **kwargs)

    only(model_findings(model_with(logits=padding_counts)), "batch-independent")


def test_model_whose_mask_token_is_not_in_its_vocabulary():
    def bad_mask(self, dataset):
        KitClassifier.__init__(self, dataset)
        self.mask_token_id = 10_000

    only(model_findings(model_with(__init__=bad_mask)), "removal")


def test_trainable_model_that_ignores_its_seed():
    class Unseeded(KitModel):
        trainable = True

        def build(self, dataset, *, seed, device, variant="default"):
            return KitClassifier(dataset, seed=random.randrange(10**6))

        def save(self, classifier, directory):
            torch.save(classifier, directory / "model.pt")

        def load(self, directory, dataset, device):
            return torch.load(directory / "model.pt", weights_only=False)

    only(model_findings(Unseeded), "deterministic")


def test_model_whose_load_is_not_what_it_saved():
    class Forgetful(KitModel):
        def save(self, classifier, directory):
            (directory / "nothing").write_text("")

        def load(self, directory, dataset, device):
            return KitClassifier(dataset, seed=7)

    only(model_findings(Forgetful), "save-load")


def test_model_declaring_a_variant_it_cannot_build():
    class Boastful(KitModel):
        variants = ("default", "untrained")

        def build(self, dataset, *, seed, device, variant="default"):
            if variant != "default":
                raise ValueError("no such variant")
            return KitClassifier(dataset)

    only(model_findings(Boastful), "variants")


# Datasets.


class KitData(Dataset):
    """The kit's dataset as a plugin."""

    name: ClassVar[str] = "kit-data"

    def load(self) -> TextDataset:
        return kit_dataset()


def data_with(edit) -> type[KitData]:
    class Edited(KitData):
        def load(self):
            data = kit_dataset()
            return edit(data)

    return Edited


def replace_test(data: TextDataset, **changes) -> TextDataset:
    from dataclasses import replace

    return replace(data, test=(replace(data.test[0], **changes), *data.test[1:]))


def test_a_conforming_dataset_has_no_findings():
    assert dataset_findings(KitData) == []


def test_dataset_that_fails_to_load():
    only(dataset_findings(data_with(lambda d: {}["missing"])), "load")


def test_dataset_with_one_class():
    from dataclasses import replace

    only(dataset_findings(data_with(lambda d: replace(d, labels=("only",)))), "labels")


def test_dataset_without_a_test_split():
    from dataclasses import replace

    only(dataset_findings(data_with(lambda d: replace(d, test=()))), "splits")


def test_dataset_with_an_id_in_two_splits():
    only(dataset_findings(data_with(lambda d: replace_test(d, id=d.train[0].id))), "ids")


def test_dataset_with_a_label_out_of_range():
    only(dataset_findings(data_with(lambda d: replace_test(d, label=5))), "labels")


def test_dataset_with_an_empty_text():
    only(dataset_findings(data_with(lambda d: replace_test(d, text="  "))), "texts")


def test_dataset_mixing_single_texts_and_pairs():
    only(dataset_findings(data_with(lambda d: replace_test(d, text_pair="a second text"))), "pairs")


def test_dataset_whose_pairs_capability_disagrees_with_its_examples():
    class Claims(KitData):
        provides = frozenset({"pairs"})

    only(dataset_findings(Claims), "pairs")


def test_dataset_with_a_rationale_outside_its_text():
    only(dataset_findings(data_with(lambda d: replace_test(d, rationale=((3, 400),)))), "rationales")


def test_dataset_that_shuffles_without_a_seed():
    from dataclasses import replace

    def shuffled(data):
        test = list(data.test)
        random.shuffle(test)
        return replace(data, test=tuple(test))

    only(dataset_findings(data_with(shuffled)), "deterministic")


# Metrics: the top score's share of the total, broken one way at a time.


class TopShareParams(Params):
    scale: float = 1.0


class TopShare(Metric):
    """How much of the positive attribution the deciding word carries (a toy faithfulness metric)."""

    name: ClassVar[str] = "kit-top-share"
    family: ClassVar[str] = "faithfulness"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    Params = TopShareParams

    def compute(self, data: MetricInput):
        values = []
        for attribution in data.attributions:
            example = data.examples[attribution.example_id]
            start, end = example.rationale[0]
            scores = np.maximum(np.asarray(attribution.scores), 0) * (np.asarray(attribution.segments) >= 0)
            inside = [s for s, (a, b), seg in zip(scores, attribution.offsets, attribution.segments, strict=True)
                      if seg == 0 and a < end and start < b]  # fmt: skip
            values.append(self.params.scale * sum(inside) / scores.sum() if scores.sum() else float("nan"))
        return MetricOutput(values, notes=["undefined where no score is positive"])


def test_a_conforming_metric_has_no_findings():
    assert metric_findings(TopShare) == []
    check_metric(TopShare)


def test_metric_that_modifies_the_model_it_is_handed():
    class Zeroing(TopShare):
        def compute(self, data):
            with torch.no_grad():
                for parameter in data.classifier.torch_modules()[0].parameters():
                    parameter.zero_()
            return super().compute(data)

    only(metric_findings(Zeroing), "model-unchanged")


def test_metric_that_raises():
    class Raises(TopShare):
        def compute(self, data):
            raise ZeroDivisionError("a bug")

    only(metric_findings(Raises), "compute")


def test_metric_without_a_direction():
    class Aimless(TopShare):
        direction = "sideways"

    only(metric_findings(Aimless), "metadata")


@pytest.mark.parametrize(
    "bounds",
    [("a", "b"), (math.nan, 1.0), (0.0, math.nan), (1.0, 0.0), (False, True), (0.0, None), [0.0, 1.0]],
    ids=str,
)
def test_metric_declaring_a_range_that_is_not_two_ordered_real_numbers(bounds):
    class Unbounded(TopShare):
        range = bounds

    only(metric_findings(Unbounded), "metadata")
    [finding] = metric_findings(Unbounded)
    assert "must declare range as (low, high)" in finding.message and repr(bounds) in finding.message


def test_metric_returning_a_value_too_few():
    class Short(TopShare):
        def compute(self, data):
            return super().compute(data).values[:-1]

    only(metric_findings(Short), "values")


def test_metric_leaving_its_declared_range():
    only(metric_findings(TopShare, {"scale": 3.0}), "range")


def test_metric_with_undefined_values_and_no_note():
    class Silent(TopShare):
        def compute(self, data):
            return [float("nan")] * len(data.attributions)

    only(metric_findings(Silent), "undefined")


@pytest.mark.parametrize("text", ["0.5", b"0.5", "nan"])
def test_metric_returning_numbers_as_text(text):
    class Texty(TopShare):
        def compute(self, data):
            return [text] * len(data.attributions)

    only(metric_findings(Texty), "values")


def test_metric_that_draws_without_a_seed():
    class Noisy(TopShare):
        def compute(self, data):
            output = super().compute(data)
            return MetricOutput([v * (0.5 + random.random() / 2) for v in output.values], notes=output.notes)

    only(metric_findings(Noisy), "deterministic")


def test_metric_declaring_the_wrong_direction():
    class Backwards(TopShare):
        direction = "lower"

    only(metric_findings(Backwards), "direction")


def test_kit_classifier_hangs_on_the_deciding_word():
    classifier = KitClassifier()
    examples = [Example("a", "the film was good .", 1), Example("b", "the film was bad .", 0)]
    predicted = classifier.log_probabilities(classifier.encode(examples)).argmax(-1).tolist()
    assert predicted == [1, 0]
    encoding: Encoding = classifier.encode([Example("c", "wonderful", 1, text_pair="yes")])
    assert encoding.tokens[0] == ["[CLS]", "wond", "##erfu", "##l", "[SEP]", "yes", "[SEP]"]
    assert encoding.word_ids[0] == [None, 0, 0, 0, None, 1, None]
    assert encoding.segments[0] == [-1, 0, 0, 0, -1, 1, -1]
