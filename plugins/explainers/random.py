"""The floor every table needs."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np
import torch

from harness import Classifier, Encoding, Explainer


def example_rng(seed: int, example_id: str) -> np.random.Generator:
    """A generator that depends on the seed and the example only, never on batch composition."""
    digest = int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest])


class RandomExplainer(Explainer):
    """Uniform random scores in [0, 1): the baseline any explainer must beat.

    Used as the control in the randomization-tests paper (Zafar et al. 2021) and most benchmarks.
    """

    name: ClassVar[str] = "random"

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
        for row, example_id in enumerate(encoding.example_ids):
            length = len(encoding.tokens[row])
            scores[row, :length] = torch.from_numpy(example_rng(self.seed, example_id).random(length))
        return scores
