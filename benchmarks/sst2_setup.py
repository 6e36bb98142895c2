"""What the model benchmarks share: the SST-2 sentences they time and the model they time them on.

Train (64) and validation (32) sentences from SST-2's train split and the first ``n_test`` sentences of
its dev split, read from ../shared/data; when that is absent, the test fixture's sentences (so that a
benchmark still runs, on less realistic text). The model is minilm-head: the embedded 6-layer MiniLM
encoder with a head trained briefly (2 epochs) on the 64 train sentences, on CPU, seed 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from harness import Attribution, Classifier, Example, Explainer, PluginError, TextDataset
from harness.explaining import explain_batch
from plugins.models.minilm_head import MiniLMHead

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"
TINY_DATA = REPO / "tests" / "fixtures" / "tiny_sentiment.jsonl"


def read_examples(path: Path) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [Example(row["id"], row["text"], row["label"]) for row in rows]


def sst2_dataset(n_test: int) -> TextDataset:
    """SST-2 train (64), validation (32) and the first ``n_test`` dev sentences as the test split."""
    if (SST2 / "train.jsonl").exists() and (SST2 / "dev.jsonl").exists():
        train = read_examples(SST2 / "train.jsonl")
        train, validation, test = train[:64], train[64:96], read_examples(SST2 / "dev.jsonl")[:n_test]
    else:
        examples = read_examples(TINY_DATA)
        test, rest = examples[:n_test], examples[n_test:]
        train, validation = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    return TextDataset("bench", ("negative", "positive"), tuple(train), tuple(validation), tuple(test))


def minilm_head(dataset: TextDataset) -> Classifier:
    """minilm-head trained briefly on ``dataset``'s train split (seed 0, CPU)."""
    return MiniLMHead(MiniLMHead.Params(max_epochs=2)).build(dataset, seed=0, device=torch.device("cpu"))


def explain_test_split(
    classifier: Classifier, dataset: TextDataset, explainer: Explainer, batch_size: int
) -> list[Attribution]:
    """``explainer``'s attributions of the test split, in batches of ``batch_size``, through the loop a
    run explains with (``harness.explaining``: targets, word scores, checks)."""
    test, attributions = list(dataset.test), []
    for start in range(0, len(test), batch_size):
        explained = explain_batch(explainer, classifier, test[start : start + batch_size], explainer.params)
        if explained.problems:
            raise PluginError(f"explainer '{explainer.name}' returned {explained.problems[0][1]}")
        attributions += explained.attributions(batch=start // batch_size)
    return attributions
