"""Encoding shared by model plugins: with a Hugging Face fast tokenizer (transformer models), or by
lower-cased regex word tokens over a vocabulary learned from the train split (models trained from
scratch: ``bow``, ``bilstm-attention``)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch

from harness.classifier import Encoding
from harness.data import Example


def encode_with_tokenizer(
    tokenizer, examples: Sequence[Example], max_length: int, device: torch.device | str = "cpu"
) -> Encoding:
    """Tokenise single texts or text pairs with truncation to ``max_length`` and padding to the
    longest in the batch, keeping tokens, character offsets, word ids and segments per example.

    Padding is always on the right, whatever the tokenizer's ``padding_side`` (many LLM tokenizers ship
    with ``left``): an ``Encoding`` holds each example's real tokens first, and only right padding keeps a
    causal model's positions what they are for the example alone (position ids count from the first
    token), so that its predictions do not depend on the batch."""
    texts = [example.text for example in examples]
    pairs = [example.text_pair for example in examples]
    has_pairs = any(pair is not None for pair in pairs)
    if has_pairs and any(pair is None for pair in pairs):
        raise ValueError("a batch mixes single texts and text pairs")
    batch = tokenizer(
        texts,
        pairs if has_pairs else None,
        truncation=True,
        max_length=max_length,
        padding=True,
        padding_side="right",
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    tokens, offsets, word_ids, segments = [], [], [], []
    for row in range(len(examples)):
        length = int(batch["attention_mask"][row].sum())
        sequence_ids = batch.sequence_ids(row)[:length]
        raw_word_ids = batch.word_ids(row)[:length]
        # Word ids restart in the second segment of a pair; shift them so that they stay unique.
        first_segment_words = [w for w, s in zip(raw_word_ids, sequence_ids, strict=True) if s == 0]
        shift = (max(first_segment_words) + 1) if first_segment_words else 0
        row_segments = [-1 if s is None else int(s) for s in sequence_ids]
        row_words = [
            None if s < 0 or w is None else (w + shift if s == 1 else w)
            for w, s in zip(raw_word_ids, row_segments, strict=True)
        ]
        tokens.append(batch.tokens(row)[:length])
        offsets.append([tuple(map(int, span)) for span in batch["offset_mapping"][row][:length].tolist()])
        word_ids.append(row_words)
        segments.append(row_segments)
    token_type_ids = batch.get("token_type_ids")
    return Encoding(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        token_type_ids=None if token_type_ids is None else token_type_ids.to(device),
        tokens=tokens,
        offsets=offsets,
        word_ids=word_ids,
        segments=segments,
    )


# -- word tokens (models trained from scratch) ----------------------------------------------------------

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
WORD_SPECIALS = ("[PAD]", "[UNK]", "[MASK]", "[SEP]")  # ids 0, 1, 2, 3 of every word vocabulary
WORD_PAD, WORD_UNK, WORD_MASK, WORD_SEP = range(4)


def word_tokens(text: str, segment: int):
    """Lower-cased regex word tokens with their character spans."""
    for match in WORD_PATTERN.finditer(text):
        yield match.group().lower(), (match.start(), match.end()), segment


def build_word_vocabulary(examples: Sequence[Example], max_size: int, min_count: int) -> list[str]:
    """The special tokens, then the train split's words by frequency (at most ``max_size``, each seen at
    least ``min_count`` times)."""
    counts = Counter(
        token
        for example in examples
        for text in (example.text, example.text_pair or "")
        for token, _, _ in word_tokens(text, 0)
    )
    return list(WORD_SPECIALS) + [
        token for token, count in counts.most_common(max_size) if count >= min_count
    ]


def encode_words(
    examples: Sequence[Example], index: dict[str, int], max_length: int, device: torch.device
) -> Encoding:
    """Word-token encoding of a batch (a pair's texts joined by [SEP], segment -1), padded on the right;
    unknown words are [UNK]."""
    rows = []
    for example in examples:
        pieces = list(word_tokens(example.text, 0))
        if example.text_pair is not None:
            pieces += [(WORD_SPECIALS[WORD_SEP], (0, 0), -1), *word_tokens(example.text_pair, 1)]
        rows.append(pieces[:max_length])
    width = max((len(row) for row in rows), default=0)
    input_ids = torch.full((len(rows), max(width, 1)), WORD_PAD, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = torch.tensor([index.get(t, WORD_UNK) for t, _, _ in row], dtype=torch.long)
        attention_mask[r, : len(row)] = 1
    word_ids = [[None if s < 0 else i for i, (_, _, s) in enumerate(row)] for row in rows]
    return Encoding(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        token_type_ids=None,
        tokens=[[t for t, _, _ in row] for row in rows],
        offsets=[[o for _, o, _ in row] for row in rows],
        word_ids=word_ids,
        segments=[[s for _, _, s in row] for row in rows],
    )
