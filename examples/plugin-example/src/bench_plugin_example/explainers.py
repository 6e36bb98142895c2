"""A deliberately naive explainer, for benchmarks to beat."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from harness import Classifier, Encoding, Explainer, ExplainerParams


class TokenLengthParams(ExplainerParams):
    normalize: bool = Field(
        False, description="divide each example's scores by its longest token's length (scores in [0, 1])"
    )


class TokenLength(Explainer):
    """Token-length heuristic: scores each token by the number of characters it covers.

    A baseline that never looks at the model: its score for a token is ``end - start`` of the token's
    character span (``Encoding.offsets``); special tokens score 0. Because it is independent of the
    model's parameters and of the target class, it fails the model-randomization sanity check of
    Adebayo et al. 2018, "Sanity checks for saliency maps" (NeurIPS), and it has no reason to do
    well on removal-based faithfulness metrics such as ERASER comprehensiveness (DeYoung et al. 2020,
    "ERASER: A benchmark to evaluate rationalized NLP models", ACL). A benchmark that cannot tell it
    apart from a real explainer is not measuring faithfulness.
    """

    name: ClassVar[str] = "token-length"
    Params = TokenLengthParams
    version: ClassVar[str] = "1"  # bump whenever scores would change: it is part of every cache key
    paper: ClassVar[str] = "Adebayo et al. 2018, Sanity checks for saliency maps"

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        # Only the tokenisation is needed; positions past an example's tokens are padding and stay 0.
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float32)
        for row, (offsets, segments) in enumerate(zip(encoding.offsets, encoding.segments, strict=True)):
            lengths = torch.tensor(
                [
                    float(end - start) if segment >= 0 else 0.0
                    for (start, end), segment in zip(offsets, segments, strict=True)
                ],
                dtype=torch.float32,
            )
            if self.params.normalize and lengths.numel() and lengths.max() > 0:
                lengths = lengths / lengths.max()
            scores[row, : lengths.numel()] = lengths
        return scores.to(encoding.input_ids.device)
