"""A bag-of-words classifier: mean of word embeddings, then a linear layer.

Small and fast (trains in seconds on CPU), so it suits quick suites and tests; its decision is a sum
of per-token contributions, which makes faithfulness metrics easy to reason about by hand.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from harness import (
    WORD_MASK,
    WORD_PAD,
    WORD_UNK,
    Classifier,
    Encoding,
    Example,
    Model,
    Params,
    PluginError,
    TextDataset,
    build_word_vocabulary,
    encode_words,
)


class BagOfWordsClassifier(Classifier, torch.nn.Module):
    """logits = W · mean_{attended tokens} E[token] + b, over lower-cased regex word tokens
    (``harness.encode_words``)."""

    def __init__(self, vocabulary: Sequence[str], labels: Sequence[str], dim: int, max_length: int = 256):
        torch.nn.Module.__init__(self)
        self.vocabulary = list(vocabulary)
        self.index = {token: i for i, token in enumerate(self.vocabulary)}
        self.labels = tuple(labels)
        self.max_length = max_length
        self.embedding = torch.nn.Embedding(len(self.vocabulary), dim, padding_idx=WORD_PAD)
        self.linear = torch.nn.Linear(dim, len(self.labels))
        self.device = torch.device("cpu")
        self.pad_token_id, self.unk_token_id, self.mask_token_id = WORD_PAD, WORD_UNK, WORD_MASK
        self.training_report: dict = {}

    def to_device(self, device: torch.device) -> BagOfWordsClassifier:
        self.device = torch.device(device)
        return self.to(self.device)

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self]

    def encode(self, examples: Sequence[Example]) -> Encoding:
        return encode_words(examples, self.index, self.max_length, self.device)

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids)

    def logits(
        self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        weights = attention_mask.unsqueeze(-1).to(inputs_embeds.dtype)
        pooled = (inputs_embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.linear(pooled)


class BagOfWordsParams(Params):
    dim: int = Field(32, ge=1, description="embedding size")
    min_count: int = Field(1, ge=1, description="a word seen fewer times in train is [UNK]")
    max_vocabulary: int = Field(30000, ge=10, description="keep the most frequent words")
    max_length: int = Field(256, ge=1, description="tokens read per example (truncation)")
    learning_rate: float = Field(0.05, gt=0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1, description="epochs without validation improvement before stopping")


class BagOfWords(Model):
    """Bag-of-words classifier (mean word embedding → linear), trained in seconds; a fast reference model.

    Joulin et al. 2017 (fastText) without n-grams; trained with Adam and early stopping on validation.
    """

    name: ClassVar[str] = "bow"
    Params = BagOfWordsParams

    def build(self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"):
        if variant != "default":
            raise PluginError(f"bow has no variant '{variant}'")
        if not dataset.train:
            raise PluginError("bow needs a train split to learn from; this dataset has none")
        started = time.perf_counter()
        params = self.params
        vocabulary = build_word_vocabulary(dataset.train, params.max_vocabulary, params.min_count)
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        model = BagOfWordsClassifier(vocabulary, dataset.labels, params.dim, params.max_length)
        train = model.encode(dataset.train)
        train_labels = torch.tensor([e.label for e in dataset.train])
        validation = model.encode(dataset.validation) if dataset.validation else None
        optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate)
        best, best_state, best_epoch, stale = -1.0, None, 0, 0
        for epoch in range(1, params.max_epochs + 1):
            model.train()
            for batch in torch.randperm(len(train_labels), generator=generator).split(params.batch_size):
                optimizer.zero_grad()
                logits = model.logits(
                    input_ids=train.input_ids[batch], attention_mask=train.attention_mask[batch]
                )
                torch.nn.functional.cross_entropy(logits, train_labels[batch]).backward()
                optimizer.step()
            model.eval()
            if validation is None:
                best_state, best_epoch = copy.deepcopy(model.state_dict()), epoch
                continue
            with torch.no_grad():
                predictions = model.logits(
                    input_ids=validation.input_ids, attention_mask=validation.attention_mask
                )
            accuracy = (
                (predictions.argmax(-1) == torch.tensor([e.label for e in dataset.validation])).float().mean()
            )
            if accuracy > best:
                best, best_state, best_epoch, stale = (
                    float(accuracy),
                    copy.deepcopy(model.state_dict()),
                    epoch,
                    0,
                )
            else:
                stale += 1
                if stale >= params.patience:
                    break
        model.load_state_dict(best_state)
        model.requires_grad_(False)
        model.eval()
        model.training_report = {
            "epochs": epoch,
            "best_epoch": best_epoch,
            "validation_accuracy": best if best >= 0 else None,
            "train_seconds": round(time.perf_counter() - started, 3),
            "vocabulary": len(vocabulary),
        }
        return model.to_device(device)

    def save(self, classifier: BagOfWordsClassifier, directory: Path) -> None:
        save_file(
            {k: v.contiguous() for k, v in classifier.state_dict().items()},
            str(directory / "weights.safetensors"),
        )
        (directory / "vocabulary.json").write_text(json.dumps(classifier.vocabulary, ensure_ascii=False))

    def load(self, directory: Path, dataset: TextDataset, device: torch.device) -> BagOfWordsClassifier:
        vocabulary = json.loads((directory / "vocabulary.json").read_text())
        model = BagOfWordsClassifier(vocabulary, dataset.labels, self.params.dim, self.params.max_length)
        model.load_state_dict(load_file(str(directory / "weights.safetensors")))
        model.requires_grad_(False)
        model.eval()
        return model.to_device(device)
