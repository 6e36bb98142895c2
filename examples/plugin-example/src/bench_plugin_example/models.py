"""A model plugin: a small PyTorch classifier over its own tokenizer."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from harness import Classifier, Encoding, Example, Model, Params, PluginError, TextDataset, derive_seed

WORD = re.compile(r"\w+|[^\w\s]")
PAD, MASK, SEP = 0, 1, 2  # reserved ids; hashed words take the rest


def words(text: str) -> list[tuple[str, tuple[int, int]]]:
    """Lower-cased words and punctuation marks with their character spans in ``text``."""
    return [(match.group().lower(), match.span()) for match in WORD.finditer(text)]


class HashedLinearClassifier(Classifier, torch.nn.Module):
    """logits = W · (mean of the attended tokens' embeddings) + b; a word's id is a hash of the word, so
    there is no vocabulary to store and no unknown word.

    The contract every model keeps (``harness.Encoding``): one entry per token in ``tokens``, ``offsets``
    (character spans in the token's own text), ``word_ids`` (unique across both texts of a pair) and
    ``segments`` (0: first text, 1: second text, -1: special token), so that removal metrics never
    remove the [SEP] between the two texts of a pair and rationales and heat-maps keep the texts apart.
    """

    def __init__(self, labels: Sequence[str], buckets: int, dim: int, max_length: int):
        torch.nn.Module.__init__(self)
        self.labels = tuple(labels)
        self.buckets, self.max_length = buckets, max_length
        self.embedding = torch.nn.Embedding(buckets + 3, dim, padding_idx=PAD)
        self.linear = torch.nn.Linear(dim, len(self.labels))
        self.device = torch.device("cpu")
        self.pad_token_id, self.mask_token_id, self.unk_token_id = PAD, MASK, None  # no unknown words

    def token_id(self, word: str) -> int:
        return 3 + zlib.crc32(word.encode()) % self.buckets  # crc32: the same id in every process

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self]

    def encode(self, examples: Sequence[Example]) -> Encoding:
        rows = []
        for example in examples:
            first = words(example.text)
            row = [(word, span, 0, number) for number, (word, span) in enumerate(first)]
            if example.text_pair is not None:
                row.append(("[SEP]", (0, 0), -1, None))
                row += [(w, span, 1, len(first) + n) for n, (w, span) in enumerate(words(example.text_pair))]
            rows.append(row[: self.max_length])
        width = max(1, *(len(row) for row in rows))
        input_ids = torch.full((len(rows), width), PAD, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for r, row in enumerate(rows):
            ids = [SEP if segment < 0 else self.token_id(word) for word, _, segment, _ in row]
            input_ids[r, : len(row)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[r, : len(row)] = 1
        return Encoding(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            token_type_ids=None,
            tokens=[[word for word, *_ in row] for row in rows],
            offsets=[[span for _, span, _, _ in row] for row in rows],
            word_ids=[[word_id for *_, word_id in row] for row in rows],
            segments=[[segment for _, _, segment, _ in row] for row in rows],
        )

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids)

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        weights = attention_mask.unsqueeze(-1).to(inputs_embeds.dtype)  # padding never counts
        return self.linear((inputs_embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0))


class HashedLinearParams(Params):
    buckets: int = Field(4096, ge=8, description="hash buckets for words (collisions share an embedding)")
    dim: int = Field(16, ge=1, description="embedding size")
    max_length: int = Field(256, ge=2, description="tokens read per example (truncation)")
    epochs: int = Field(30, ge=1, description="full-batch training epochs (Adam)")
    learning_rate: float = Field(0.05, gt=0, description="Adam learning rate")


class HashedLinear(Model):
    """Hashed bag-of-words linear classifier (mean word embedding → linear), trained in a second.

    Words are hashed into ``buckets`` embeddings (the hashing trick, Weinberger et al. 2009), so the
    model needs no vocabulary; trained full-batch with Adam for ``epochs`` epochs on the train split.
    """

    name: ClassVar[str] = "hashed-linear"
    Params = HashedLinearParams
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = "Weinberger et al. 2009, Feature hashing for large scale multitask learning"
    trainable: ClassVar[bool] = True

    def _network(self, labels: Sequence[str]) -> HashedLinearClassifier:
        p = self.params
        return HashedLinearClassifier(labels, p.buckets, p.dim, p.max_length)

    def build(self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"):
        if variant != "default":
            raise PluginError(f"hashed-linear has no variant '{variant}'")
        if not dataset.train:
            raise PluginError("hashed-linear learns from a train split; this dataset has none")
        # Every random draw comes from the seed: the same seed gives the same model.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "hashed-linear init"))
            classifier = self._network(dataset.labels)
        encoding = classifier.encode(dataset.train)
        labels = torch.tensor([example.label for example in dataset.train])
        optimizer = torch.optim.Adam(classifier.parameters(), lr=self.params.learning_rate)
        classifier.train()
        for _ in range(self.params.epochs):
            optimizer.zero_grad()
            logits = classifier.logits(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
            torch.nn.functional.cross_entropy(logits, labels).backward()
            optimizer.step()
        classifier.eval().requires_grad_(False)
        classifier.device = torch.device(device)
        return classifier.to(device)

    # The harness caches a trained model through save and load (keyed by the data, parameters and seed).
    def save(self, classifier: HashedLinearClassifier, directory: Path) -> None:
        save_file(classifier.state_dict(), str(directory / "weights.safetensors"))
        (directory / "labels.json").write_text(json.dumps(list(classifier.labels)))

    def load(self, directory: Path, dataset: TextDataset, device: torch.device) -> HashedLinearClassifier:
        classifier = self._network(json.loads((directory / "labels.json").read_text()))
        classifier.load_state_dict(load_file(str(directory / "weights.safetensors")))
        classifier.eval().requires_grad_(False)
        classifier.device = torch.device(device)
        return classifier.to(device)
