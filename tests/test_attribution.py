"""Attributions: word aggregation and units stay aligned with the tokens the model read."""

from __future__ import annotations

import pytest
import torch

from harness import Encoding
from harness.attribution import aggregate_words


def encoding() -> Encoding:
    # [CLS] un ##like ##ly day [SEP] [PAD]: word 0 has three sub-tokens, word 1 one
    return Encoding(
        input_ids=torch.tensor([[101, 4895, 10359, 2135, 2154, 102, 0]]),
        attention_mask=torch.tensor([[1, 1, 1, 1, 1, 1, 0]]),
        token_type_ids=None,
        tokens=[["[CLS]", "un", "##like", "##ly", "day", "[SEP]"]],
        offsets=[[(0, 0), (0, 2), (2, 6), (6, 8), (9, 12), (0, 0)]],
        word_ids=[[None, 0, 0, 0, 1, None]],
        segments=[[-1, 0, 0, 0, 0, -1]],
    )


SCORES = torch.tensor([[9.0, 1.0, -2.0, 4.0, 0.5, 9.0, 0.0]])


@pytest.mark.parametrize(("reduction", "word_score"), [("sum", 3.0), ("mean", 1.0), ("max", 4.0)])
def test_word_scores_replace_every_sub_token_score(reduction, word_score):
    result = aggregate_words(SCORES, encoding(), reduction)
    assert result[0, 1:4].tolist() == [word_score] * 3
    assert result[0, 4].item() == 0.5  # a one-token word keeps its score
    assert result[0, 0].item() == 9.0 and result[0, 5].item() == 9.0  # special tokens untouched
    assert result.shape == SCORES.shape
