"""Text pairs through the shipped transformer models and every removal metric: removal never touches a
special token ([CLS], either [SEP]), word units never span the two texts, and the siamese pair model
reads a pair whose words were deleted as the two texts that are left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import Example, MetricInput, RemovalMetric, TextDataset, evaluate
from harness.registry import Registry
from harness.testing import kit_attributions
from plugins.models.minilm_head import MiniLMHead

CPU = torch.device("cpu")
PAIRS = (
    Example("p0", "A man is playing an electric guitar on stage.", 0, text_pair="A man plays a banjo."),
    Example("p1", "Unbelievably, the stock market rallied today.", 1, text_pair="Stocks rose sharply."),
    Example("p2", "Two dogs run.", 0, text_pair="Some animals are running outside in the snowy park."),
)
DATASET = TextDataset(name="pairs", labels=("no", "yes"), train=(), validation=(), test=PAIRS, is_pair=True)


@pytest.fixture(scope="module", params=["cross", "siamese"])
def classifier(request):
    plugin = MiniLMHead(MiniLMHead.Params(pair_encoding=request.param, max_length=64))
    return plugin.build(DATASET, seed=0, device=CPU, variant="untrained")


def _removal_metrics() -> list[type[RemovalMetric]]:
    registry = Registry.discover()
    metrics = [registry.get("metric", name).cls for name in registry.names("metric")]
    return [m for m in metrics if issubclass(m, RemovalMetric)]


def test_every_builtin_removal_metric_is_checked():
    names = {metric.name for metric in _removal_metrics()}
    assert {"aopc", "post-hoc-accuracy", "morf-lerf", "comprehensiveness", "sufficiency"} <= names


@pytest.mark.parametrize("order", ["oracle", "anti-oracle", "random"])
def test_no_removal_metric_ever_removes_a_special_token_of_a_pair(classifier, order):
    attributions = kit_attributions(classifier, PAIRS, order=order)
    data = MetricInput(attributions, {e.id: e for e in PAIRS}, DATASET, lambda: classifier)
    checked = 0
    for metric in _removal_metrics():
        if metric.compares is not None:  # teacher-agreement compares two cells; same removals as others
            continue
        for attribution, masks in zip(attributions, metric().removals(data), strict=True):
            specials = np.asarray(attribution.segments) < 0
            assert specials.sum() == 3  # [CLS], the [SEP] after text a, the [SEP] after text b
            assert not masks[:, specials].any(), metric.name
            checked += 1
    assert checked > 0


def test_word_units_of_a_pair_never_span_the_two_texts(classifier):
    for attribution in kit_attributions(classifier, PAIRS):
        segments = np.asarray(attribution.segments)
        units = attribution.units("word")
        assert all(len(set(segments[unit])) == 1 for unit in units)
        assert {int(segments[unit[0]]) for unit in units} == {0, 1}
        covered = np.sort(np.concatenate(units))
        assert covered.tolist() == np.flatnonzero(segments >= 0).tolist()


def test_deleting_a_texts_words_leaves_both_separators_and_the_other_text(classifier):
    """With every word of text b deleted, the engine's pass reads '[CLS] a [SEP] [SEP]' with text a's
    token types: the same log-probabilities as that sequence given to the model directly."""
    (attribution,) = kit_attributions(classifier, PAIRS[:1])
    segments = np.asarray(attribution.segments)
    remove = (segments == 1)[None, :]
    (log_p,) = evaluate(classifier, [attribution], [remove], masking="delete", batch_size=8)
    ids = [i for i, s in zip(attribution.input_ids, segments, strict=True) if s != 1]
    types = [t for t, s in zip(attribution.token_type_ids, segments, strict=True) if s != 1]
    assert classifier.tokenizer.convert_ids_to_tokens(ids).count("[SEP]") == 2
    with torch.no_grad():
        logits = classifier.logits(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            token_type_ids=torch.tensor([types]),
        )
    expected = torch.log_softmax(logits.double(), dim=-1).numpy()
    np.testing.assert_allclose(log_p[0], expected[0], atol=1e-5)


def test_iba_explains_a_siamese_pair_model_at_the_word_embeddings_and_says_why_not_above():
    """The siamese model runs each encoder layer once per text: iba at a hidden layer fails with a line
    saying so, from fit on (its cells fail, not the run); at layer 0 it explains both texts."""
    from harness import PluginError
    from plugins.explainers.iba import IBA

    classifier = MiniLMHead(MiniLMHead.Params(pair_encoding="siamese", max_length=64)).build(
        DATASET, seed=0, device=CPU, variant="untrained"
    )
    dataset = TextDataset(
        name="pairs", labels=("no", "yes"), train=PAIRS, validation=(), test=PAIRS, is_pair=True
    )
    encoding = classifier.encode(PAIRS)
    targets = classifier.log_probabilities(encoding).argmax(-1)
    above = IBA(IBA.Params(layer=2, steps=1, samples=1))
    with pytest.raises(PluginError, match="runs 2 times in one forward pass.*use layer: 0"):
        above.fit(classifier, dataset)  # estimating the layer's statistics already finds out
    embeddings = IBA(IBA.Params(layer=0, steps=2, samples=2))
    embeddings.fit(classifier, dataset)
    scores = embeddings.explain(classifier, encoding, targets).scores
    segments = torch.tensor([row + [-1] * (scores.shape[1] - len(row)) for row in encoding.segments])
    for segment in (0, 1):
        assert ((scores > 0) & (segments == segment)).any(dim=1).all()


@pytest.mark.skipif(
    not all(
        (Path(__file__).resolve().parents[2] / "shared" / "data" / name).is_dir()
        for name in ("mrpc", "snli", "esnli")
    ),
    reason="../shared/data is absent (the shared datasets sit beside the repo)",
)
@pytest.mark.parametrize("profile", [[], ["--profile", "full"]], ids=["default", "full"])
def test_the_pairs_suite_pairs_every_explainer_with_both_datasets_and_models(profile):
    """Both datasets provide pairs, so the siamese model (which requires them) and gmask apply everywhere;
    the only cells left out are the plausibility metrics on MRPC, which has no human rationales."""
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", "suites/pairs.yaml", *profile],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "valid — 324 cells (2 datasets × 2 model variants × 9 explainer configs × 12 metric" in result.stdout
    )
    left_out = [line.strip() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(left_out) == 12 and all(
        line.startswith("9 left out: metric ")
        and "requires 'rationales', which neither dataset 'mrpc'" in line
        for line in left_out
    ), left_out
