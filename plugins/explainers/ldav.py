"""The ``ldav`` explainer: how close each input embedding lies to the predicted class's learned vector."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from harness import CLASS_VECTORS, LDAV_PAPER, Classifier, Encoding, Explainer, ExplainerParams, ldav_scores


class LDAVExplainerParams(ExplainerParams):
    distance: Literal["euclidean", "cosine"] = Field(
        "euclidean",
        description="α_i: Euclidean distance of x_i to z_ŷ (eq. 4, the paper's choice) or cosine distance "
        "(App. E: a switching point of 15 % against 9 % on IMDB)",
    )


class LDAV(Explainer):
    """LDAV score: −(α_i − μ)/σ, α_i the distance of token i's input embedding to the class vector the
    model learned for the explained class (eqs. 4–5); μ, σ over the input's tokens.

    Needs a model trained with LDAV (``class-vectors``: ``bilstm-attention`` or ``minilm-head`` with
    ``ldav: true``); the grid leaves it out on other models. One embedding lookup per batch: the
    explanation is read off the model, not computed by probing it. Special tokens and padding score 0.
    """

    name: ClassVar[str] = "ldav"
    Params = LDAVExplainerParams
    requires: ClassVar[frozenset[str]] = frozenset({CLASS_VECTORS})
    paper: ClassVar[str] = LDAV_PAPER

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            embeddings = classifier.input_embeddings(encoding.input_ids)
            vectors = classifier.class_vectors().to(embeddings.device)
            scored = ~encoding.special_mask.to(embeddings.device)
            scores = ldav_scores(
                embeddings, vectors, targets.to(embeddings.device), scored, distance=self.params.distance
            )
        return scores.cpu()
