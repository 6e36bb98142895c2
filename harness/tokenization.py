"""Encoding with a Hugging Face fast tokenizer, shared by every transformer-based model plugin."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.classifier import Encoding
from harness.data import Example


def encode_with_tokenizer(
    tokenizer, examples: Sequence[Example], max_length: int, device: torch.device | str = "cpu"
) -> Encoding:
    """Tokenise single texts or text pairs with truncation to ``max_length`` and padding to the
    longest in the batch, keeping tokens, character offsets, word ids and segments per example."""
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
