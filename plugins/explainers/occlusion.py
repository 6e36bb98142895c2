"""Leave-one-out occlusion, on the shared perturbation engine (see ``_perturbation``)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from harness import (
    Classifier,
    Encoding,
    Explainer,
    PerturbationParams,
    engine_inputs,
    evaluate,
    explained_output,
    removable_positions,
)


class Occlusion(Explainer):
    """Leave-one-out occlusion: a token's score is the drop of the target output when it alone is removed.

    score(i) = f(x) − f(x without token i), with f the target's probability (or log-odds) and the token
    removed by the mask, unk or pad token or deleted (``masking``). One forward pass per real token
    (minilm-head, 128 tokens, 2 CPU cores: about 2.7 s per example); all of a batch's perturbed inputs
    run through the shared perturbation engine together.
    Li, Monroe & Jurafsky 2016, "Understanding Neural Networks through Representation Erasure"
    (word erasure; their score is this difference for the log-likelihood, here unnormalised).
    """

    name: ClassVar[str] = "occlusion"
    Params = PerturbationParams
    paper: ClassVar[str] = (
        "Li, Monroe & Jurafsky 2016, Understanding Neural Networks through Representation Erasure"
    )

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        params = self.params
        inputs = engine_inputs(encoding)
        removals, positions = [], []
        for row, item in enumerate(inputs):
            row_positions = removable_positions(encoding, row)
            remove = np.zeros((1 + len(row_positions), len(item.input_ids)), dtype=bool)
            remove[1 + np.arange(len(row_positions)), row_positions] = True  # row 0: the full input
            removals.append(remove)
            positions.append(row_positions)
        log_probabilities = evaluate(
            classifier, inputs, removals, masking=params.masking, batch_size=params.batch_size
        )
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
        for row, matrix in enumerate(log_probabilities):
            values = explained_output(matrix, params.output)[:, int(targets[row])]
            scores[row, torch.from_numpy(positions[row])] = torch.from_numpy(values[0] - values[1:])
        return scores.to(classifier.device)
