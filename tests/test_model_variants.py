"""minilm-head's variants (Zafar et al. 2021, Sec. 2.1): default = init:1 (Init#1), init:N (Init#2...),
untrained (Untrained)."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TINY_DATA, logits_of

from harness import PluginError, TextDataset
from harness.minilm import _pristine_encoder
from harness.seeds import derive_seed
from plugins.datasets.jsonl import JsonlDataset
from plugins.models.minilm_head import MiniLMHead

CPU = torch.device("cpu")
SEED = 7
PARAMS = {"hidden_size": 16, "max_epochs": 2}


def plugin(**params) -> MiniLMHead:
    return MiniLMHead(MiniLMHead.Params(**{**PARAMS, **params}))


def build(dataset: TextDataset, variant: str, seed: int = SEED, **params):
    return plugin(**params).build(dataset, seed=seed, device=CPU, variant=variant)


def head_state(classifier) -> dict[str, torch.Tensor]:
    return classifier.network.head.state_dict()


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture(scope="module")
def dataset() -> TextDataset:
    return JsonlDataset(
        JsonlDataset.Params(path=str(TINY_DATA), test_fraction=0.25, validation_fraction=0.2)
    ).load()


@pytest.fixture(scope="module")
def variants(dataset) -> dict[str, object]:
    return {variant: build(dataset, variant) for variant in ("default", "init:1", "init:2", "untrained")}


@pytest.mark.slow
def test_variants_share_the_pristine_encoder_and_differ_in_the_head(variants):
    pristine = _pristine_encoder().state_dict()
    compared = ("init:1", "init:2", "untrained")
    for variant in compared:
        assert same_tensors(variants[variant].network.encoder.state_dict(), pristine), variant
    for i, first in enumerate(compared):
        for second in compared[i + 1 :]:
            heads = head_state(variants[first]), head_state(variants[second])
            assert not torch.equal(heads[0]["fc1.weight"], heads[1]["fc1.weight"]), (first, second)
            assert not torch.equal(heads[0]["fc2.weight"], heads[1]["fc2.weight"]), (first, second)


@pytest.mark.slow
def test_default_and_init_1_are_the_same_model(variants, dataset):
    default, init_1 = variants["default"], variants["init:1"]
    assert same_tensors(head_state(default), head_state(init_1))
    assert torch.equal(logits_of(default, dataset.test), logits_of(init_1, dataset.test))
    assert default.training_report["trained"] is True and init_1.training_report["trained"] is True


@pytest.mark.slow
def test_init_2_is_trained_like_init_1(variants, dataset):
    report = variants["init:2"].training_report
    assert report["trained"] is True
    assert 1 <= report["epochs_run"] <= PARAMS["max_epochs"]
    assert report["n_train"] == len(dataset.train)


@pytest.mark.slow
def test_untrained_is_a_fresh_he_initialised_head_not_trained(variants, dataset):
    untrained = variants["untrained"]
    report = untrained.training_report
    assert report["trained"] is False and report["epochs_run"] == 0 and report["n_train"] == 0
    fresh = plugin()._new_classifier(dataset.labels, CPU, init_seed=derive_seed(SEED, "init:untrained"))
    assert same_tensors(head_state(untrained), head_state(fresh))
    network = untrained.network
    assert not network.training and not any(p.requires_grad for p in network.parameters())


@pytest.mark.slow
def test_untrained_needs_no_train_split(variants, dataset):
    empty = TextDataset("eval-only", dataset.labels, (), (), dataset.test)
    untrained = build(empty, "untrained")
    assert same_tensors(head_state(untrained), head_state(variants["untrained"]))
    assert torch.equal(logits_of(untrained, empty.test), logits_of(variants["untrained"], empty.test))


@pytest.mark.slow
def test_untrained_keeps_unfrozen_layers_pretrained(dataset):
    untrained = build(dataset, "untrained", unfreeze_layers=2)
    assert same_tensors(untrained.network.encoder.state_dict(), _pristine_encoder().state_dict())
    assert untrained.training_report["unfreeze_layers"] == 2


@pytest.mark.parametrize("variant", ["init:0", "init:x", "init:01", "shuffled", "Untrained"])
def test_unknown_variant_is_a_plugin_error_naming_it(dataset, variant):
    with pytest.raises(PluginError, match=re.escape(repr(variant))) as raised:
        build(dataset, variant)
    assert "\n" not in str(raised.value)
    assert "init:N" in str(raised.value) and "untrained" in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["untrained", "init:2"])
def test_save_then_load_gives_identical_logits(variants, dataset, tmp_path, variant):
    classifier = variants[variant]
    plugin().save(classifier, tmp_path)
    loaded = plugin().load(tmp_path, dataset, CPU)
    examples = dataset.test[:3]
    assert torch.equal(logits_of(loaded, examples), logits_of(classifier, examples))
    assert loaded.training_report == classifier.training_report


@pytest.mark.slow
def test_default_keeps_its_original_seed_streams(variants, dataset):
    # Cached default models stay valid: the head is initialised from "init" and trained with "order".
    head = plugin()
    expected = head._new_classifier(dataset.labels, CPU, init_seed=derive_seed(SEED, "init"))
    head._train(expected, dataset, order_seed=derive_seed(SEED, "order"))
    assert same_tensors(head_state(variants["default"]), head_state(expected))
