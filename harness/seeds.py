"""Independent random streams from one suite seed."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed per random stream (head initialisation, data order, a student's
    initialisation...), so that one can change without the others."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
