"""The floor every table needs."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import torch

from harness import Classifier, Encoding, Explainer, example_rng


def model_fingerprint(classifier: Classifier) -> int:
    """A 63-bit digest of a classifier's parameters (names, shapes and values)."""
    digest = hashlib.sha256()
    module = classifier if isinstance(classifier, torch.nn.Module) else getattr(classifier, "network", None)
    if module is None:
        return 0
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


class RandomExplainer(Explainer):
    """Uniform random scores in [0, 1): the baseline any explainer must beat.

    Used as the control in the randomization-tests paper (Zafar et al. 2021) and most benchmarks. The
    scores depend on the seed, the example and the model's weights, so two models (e.g. Init#1 and
    Init#2) get independent draws and their Jaccard overlap is the chance level, not a trivial 1.
    """

    name: ClassVar[str] = "random"
    version: ClassVar[str] = "2"
    baseline: ClassVar[str] = "chance"

    def __init__(self, params=None, seed: int = 0):
        super().__init__(params, seed)
        self.model_stream = 0

    def fit(self, classifier: Classifier, dataset, context=None) -> None:
        self.model_stream = model_fingerprint(classifier)

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
        for row, example_id in enumerate(encoding.example_ids):
            length = len(encoding.tokens[row])
            scores[row, :length] = torch.from_numpy(
                example_rng(self.seed, example_id, self.model_stream).random(length)
            )
        return scores
