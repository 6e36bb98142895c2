"""What every perturbation explainer shares: the model's tokens as the engine's inputs, the explained
output, per-example seeds.

Perturbation explainers never run their own forward loop: every perturbed input goes, as a boolean
removal mask over the model's token positions, through ``harness.perturb.evaluate``, the engine the
removal metrics use. A removed token is therefore removed exactly as the metrics remove it (mask, unk
or pad token, or deletion), nothing is re-tokenised and truncation cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field
from scipy.special import logsumexp

from harness import Attribution, Classifier, Encoding, ExplainerParams
from harness.perturb import MASKING_DOC, Masking, evaluate
from plugins.explainers.random import example_rng

Output = Literal["probability", "log-odds"]
OUTPUT_DOC = (
    "the explained output of the target class: its softmax probability, or its log-odds "
    "log p − log(1 − p) (for two classes, the logit margin; not saturated where p ≈ 1)"
)
BATCH_SIZE_DOC = "perturbed inputs per forward pass of the perturbation engine (speed only, not results)"


def engine_inputs(encoding: Encoding) -> list[Attribution]:
    """Each row of ``encoding`` as an input of ``harness.perturb.evaluate`` (which reads only the ids
    and token types; the scores are placeholders)."""
    inputs = []
    for row, tokens in enumerate(encoding.tokens):
        length = len(tokens)
        types = encoding.token_type_ids
        inputs.append(
            Attribution(
                example_id=encoding.example_ids[row] if encoding.example_ids else str(row),
                target=0,
                predicted=0,
                probability=0.0,
                input_ids=encoding.input_ids[row, :length].tolist(),
                token_type_ids=None if types is None else types[row, :length].tolist(),
                tokens=list(tokens),
                offsets=list(encoding.offsets[row]),
                word_ids=list(encoding.word_ids[row]),
                segments=list(encoding.segments[row]),
                scores=[0.0] * length,
                seconds=0.0,
            )
        )
    return inputs


def removable_positions(encoding: Encoding, row: int) -> np.ndarray:
    """Token positions of a row that may be removed: every real token, never a special token."""
    return np.flatnonzero(np.asarray(encoding.segments[row], dtype=np.int64) >= 0)


def example_seed(seed: int, encoding: Encoding, row: int) -> int:
    """A 31-bit seed that depends on the explainer's seed and the example only (its id, or its token
    ids when the encoding carries no ids), never on the batch it is explained in."""
    if encoding.example_ids:
        key = encoding.example_ids[row]
    else:
        key = ",".join(map(str, encoding.input_ids[row, : len(encoding.tokens[row])].tolist()))
    return int(example_rng(seed, key).integers(2**31 - 1))


def explained_output(log_probabilities: np.ndarray, output: Output) -> np.ndarray:
    """The engine's class log-probabilities (N × K) as the explained output of every class: the
    probability, or the log-odds log p_k − log Σ_{j≠k} p_j, computed in log space so that it stays exact
    for saturated models (p within 1e-16 of one)."""
    if output == "probability":
        return np.exp(log_probabilities)
    classes = log_probabilities.shape[1]
    others = np.stack(
        [logsumexp(log_probabilities[:, np.arange(classes) != k], axis=1) for k in range(classes)], axis=1
    )
    return log_probabilities - others


def presence_function(
    classifier: Classifier,
    item: Attribution,
    positions: np.ndarray,
    target: int,
    *,
    masking: Masking,
    output: Output,
    batch_size: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """The model as a function of which tokens are present, for surrogate explainers (LIME, Kernel
    SHAP): rows of a (S × n) matrix over ``positions`` (1 kept, 0 removed) → the target's output (S,),
    all S inputs through the perturbation engine at once."""

    def forward(present: np.ndarray) -> np.ndarray:
        present = np.asarray(present, dtype=np.float64).reshape(-1, len(positions))
        remove = np.zeros((len(present), len(item.input_ids)), dtype=bool)
        remove[:, positions] = present < 0.5
        log_probabilities = evaluate(classifier, [item], [remove], masking=masking, batch_size=batch_size)[0]
        return explained_output(log_probabilities, output)[:, target]

    return forward


class PerturbationParams(ExplainerParams):
    """What every perturbation explainer takes: how a token is removed, what output is explained, and
    how many perturbed inputs go through the engine per forward pass."""

    masking: Masking = Field("mask", description=MASKING_DOC)
    output: Output = Field("probability", description=OUTPUT_DOC)
    batch_size: int = Field(128, ge=1, description=BATCH_SIZE_DOC)
