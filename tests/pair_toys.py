"""Toy text-pair classifiers with set weights for tests of pair explainers (``from pair_toys import ...``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness import Encoding, Example
from harness.testing import _SPECIALS as SPECIALS
from harness.testing import MASK, PAD, UNK, KitClassifier, _Recording
from harness.testing import _pieces as pieces

GUITAR_PAIR = Example(
    id="guitar-banjo",
    text="i play the electric guitar every day",
    text_pair="she owns a banjo at home",
    label=1,
)
"""Keyword A ("guitar") in text 1 and keyword B ("banjo") in text 2: class 1."""


class AndPairClassifier(KitClassifier):
    """Class 1 only when keyword A is in text 1 AND keyword B in text 2: an interaction across the pair.

    The conformance kit's tokenisation (``KitClassifier.encode``): [CLS] text [SEP] pair [SEP] in
    WordPiece-like tokens (words longer than 4 characters in pieces),
    4-dimensional word embeddings summed over the tokens read (attention mask 1), so that a token scaled by m
    adds m times its embedding. Dimension 0 of keyword A's pieces sums to 1 (a), dimension 1 of keyword B's
    to 1 (b), 0 elsewhere; dimensions 2 and 3 are seeded noise (std 0.3) for every token, special tokens
    included. Logits: class 0 → 0, class 1 → 4 (a + b) − 6 + 0.1 (d₂ − d₃): class 1 wins with both keywords
    (+2), loses with one (−2) or none (−6); the other words (distractors) move it by hundredths each.
    """

    def __init__(
        self,
        examples: Sequence[Example] = (GUITAR_PAIR,),
        keyword_a: str = "guitar",
        keyword_b: str = "banjo",
        seed: int = 0,
    ):
        torch.nn.Module.__init__(self)
        vocabulary = list(SPECIALS)
        for example in examples:
            for text in (example.text, example.text_pair or ""):
                vocabulary += [t for t, *_ in pieces(text, 0, 0) if t not in vocabulary]
        for keyword in (keyword_a, keyword_b):
            vocabulary += [t for t, *_ in pieces(keyword, 0, 0) if t not in vocabulary]
        self.vocabulary = vocabulary
        self.index = {token: i for i, token in enumerate(vocabulary)}
        self.labels = ("other", "both")
        self.device = torch.device("cpu")
        self.pad_token_id, self.unk_token_id, self.mask_token_id = PAD, UNK, MASK
        generator = torch.Generator().manual_seed(seed)
        weights = torch.zeros(len(vocabulary), 4)
        weights[:, 2:] = torch.randn(len(vocabulary), 2, generator=generator) * 0.3
        weights[PAD] = 0.0
        for dimension, keyword in enumerate((keyword_a, keyword_b)):
            keyword_pieces = [t for t, *_ in pieces(keyword, 0, 0)]
            for token in keyword_pieces:
                weights[self.index[token], dimension] = 1.0 / len(keyword_pieces)
        self.embedding = torch.nn.Embedding.from_pretrained(weights, freeze=True, padding_idx=PAD)
        self.eval()

    def encode(self, examples: Sequence[Example]) -> Encoding:
        """The kit classifier's encoding, with the example ids set (as the runner sets them)."""
        encoding = super().encode(examples)
        encoding.example_ids = [example.id for example in examples]
        return encoding

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        embeddings = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        pooled = (embeddings * attention_mask[..., None].to(embeddings.dtype)).sum(1)
        both = 4.0 * (pooled[:, 0] + pooled[:, 1]) - 6.0 + 0.1 * (pooled[:, 2] - pooled[:, 3])
        return torch.stack([torch.zeros_like(both), both], dim=-1)


class RecordingClassifier(_Recording):
    """The conformance kit's recording classifier, keeping every (inputs_embeds, attention_mask) it was
    given instead of the input ids."""

    def logits(self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None):
        if inputs_embeds is not None:
            self.seen.append((inputs_embeds.detach().clone(), attention_mask.detach().clone()))
        return self.inner.logits(
            attention_mask=attention_mask,
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            token_type_ids=token_type_ids,
        )
