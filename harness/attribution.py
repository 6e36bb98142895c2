"""One explanation of one example: a score per token, with everything needed to interpret it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from harness.classifier import Encoding


@dataclass
class Attribution:
    """Scores for the tokens the model read (truncation included), aligned one-to-one with
    ``input_ids``, ``tokens``, ``offsets``, ``word_ids`` and ``segments`` (see ``Encoding``).

    ``target`` is the explained class, ``predicted`` the model's prediction on the full input and
    ``probability`` its probability of ``target``; ``seconds`` is the explainer's time for this example.
    """

    example_id: str
    target: int
    predicted: int
    probability: float
    input_ids: list[int]
    token_type_ids: list[int] | None
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    segments: list[int]
    scores: list[float]
    seconds: float

    @property
    def removable(self) -> np.ndarray:
        """Positions of real (non-special) tokens: the ones metrics may remove or keep."""
        return np.flatnonzero(np.asarray(self.segments) >= 0)

    def ranking(self) -> np.ndarray:
        """Removable positions from the highest score to the lowest; ties keep text order."""
        positions = self.removable
        scores = np.asarray(self.scores, dtype=np.float64)[positions]
        return positions[np.argsort(-scores, kind="stable")]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Attribution:
        data = dict(data)
        data["offsets"] = [tuple(span) for span in data["offsets"]]
        return cls(**data)


def attributions_from_batch(
    example_ids: Sequence[str],
    encoding: Encoding,
    scores: torch.Tensor,
    targets: torch.Tensor,
    predicted: torch.Tensor,
    probabilities: torch.Tensor,
    seconds_per_example: float,
) -> list[Attribution]:
    """Split a batch of explainer output into per-example attributions (padding dropped)."""
    scores = scores.detach().to("cpu", torch.float64)
    result = []
    for row, example_id in enumerate(example_ids):
        length = len(encoding.tokens[row])
        token_type_ids = (
            None if encoding.token_type_ids is None else encoding.token_type_ids[row, :length].tolist()
        )
        result.append(
            Attribution(
                example_id=example_id,
                target=int(targets[row]),
                predicted=int(predicted[row]),
                probability=float(probabilities[row]),
                input_ids=encoding.input_ids[row, :length].tolist(),
                token_type_ids=token_type_ids,
                tokens=list(encoding.tokens[row]),
                offsets=list(encoding.offsets[row]),
                word_ids=list(encoding.word_ids[row]),
                segments=list(encoding.segments[row]),
                scores=scores[row, :length].tolist(),
                seconds=seconds_per_example,
            )
        )
    return result
