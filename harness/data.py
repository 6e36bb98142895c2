"""Examples and datasets: what a dataset plugin returns."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

Span = tuple[int, int]


@dataclass(frozen=True)
class Example:
    """One labelled input: a single text, or a text pair (``text`` = premise, ``text_pair`` = hypothesis).

    ``rationale`` / ``rationale_pair`` are human rationales as ``[start, end)`` character spans over
    ``text`` / ``text_pair``; ``None`` when the dataset has none.
    """

    id: str
    text: str
    label: int
    text_pair: str | None = None
    rationale: tuple[Span, ...] | None = None
    rationale_pair: tuple[Span, ...] | None = None

    def content(self) -> list:
        """Everything that determines results computed on this example, for fingerprints."""
        return [self.id, self.text, self.text_pair, self.label, self.rationale, self.rationale_pair]


@dataclass(frozen=True)
class TextDataset:
    """A classification dataset with fixed splits. ``train`` and ``validation`` may be empty for
    evaluation-only data (a model trained elsewhere is then needed)."""

    name: str
    labels: tuple[str, ...]
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    is_pair: bool = False
    extra: dict = field(default_factory=dict, compare=False)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the full content (labels and every split), so any change to the data
        changes every cache key derived from it."""
        digest = hashlib.sha256()
        digest.update(json.dumps(list(self.labels)).encode())
        for split in ("train", "validation", "test"):
            digest.update(split.encode())
            for example in getattr(self, split):
                digest.update(json.dumps(example.content(), ensure_ascii=False).encode())
        return digest.hexdigest()

    def split(self, name: str) -> tuple[Example, ...]:
        return getattr(self, name)


def fingerprint_examples(examples) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.content(), ensure_ascii=False).encode())
    return digest.hexdigest()
