"""Independent random streams from one suite seed; part of the plugin API (``from harness import ...``)."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed per random stream (head initialisation, data order, a student's
    initialisation...), so that one can change without the others."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def example_rng(seed: int, example_id: str, *streams: int) -> np.random.Generator:
    """A generator that depends on the seed, the example and ``streams`` only, never on batch
    composition."""
    digest = int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, *streams])
