"""The perturbation engine shared by every removal-based metric and every perturbation explainer.

Metrics describe perturbations as boolean masks (which token positions of which attribution to
remove); the engine builds every perturbed input of a whole cell and runs them through the model in
batched forward passes, longest first so that padding is minimal, and returns the full class
probabilities. No metric runs its own forward loop.

One meaning of undefined: an attribution with no removable unit (an empty text, or only special
tokens) has nothing to remove or keep, so every removal metric is undefined on it. The engine gives it
NaN rows (and runs nothing for it); every value computed from them is NaN.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.special import logsumexp

from harness.attribution import Attribution, Granularity, Order
from harness.classifier import Classifier, Encoding
from harness.errors import PluginError
from harness.forward import forward_service
from harness.plugin import ExplainerParams, Metric, MetricInput, MetricOutput
from harness.seeds import example_rng

Masking = Literal["mask", "unk", "pad", "delete", "auto"]
MASKING_DOC = (
    "how a removed token is removed: replaced by the tokenizer's mask, unk or pad token (attention kept), "
    "or deleted from the sequence; auto: the mask token, else the unk token, else deleted (byte-level BPE "
    "tokenizers, as most LLMs ship, have neither)"
)
GRANULARITY_DOC = "unit of removal: single tokens, or whole words (all their sub-tokens; a word's score is the mean of its tokens')"
TOKEN_MASKINGS = ("mask", "unk", "pad")  # the maskings that put a token of the tokenizer in place


def resolve_masking(classifier: Classifier, masking: Masking) -> Masking:
    """The masking ``auto`` stands for with this classifier's tokenizer (others as they are)."""
    if masking != "auto":
        return masking
    if classifier.mask_token_id is not None:
        return "mask"
    if classifier.unk_token_id is not None:
        return "unk"
    return "delete"


def replacement_id(classifier: Classifier, masking: Masking) -> int | None:
    """The token id that stands in for a removed token (``None`` for deletion)."""
    masking = resolve_masking(classifier, masking)
    if masking == "delete":
        return None
    token_id = {
        "mask": classifier.mask_token_id,
        "unk": classifier.unk_token_id,
        "pad": classifier.pad_token_id,
    }[masking]
    if token_id is None:
        raise PluginError(
            f"masking '{masking}' is not available: the model's tokenizer has no {masking} token; set "
            "masking: auto (or another masking it has)"
        )
    return int(token_id)


def top_count(percent: float, n_units: int, rounding: Literal["half-up", "up"] = "half-up") -> int:
    """How many of ``n_units`` "the top ``percent`` %" is: 0 for 0 % or no units, else k·n/100 rounded,
    at most n, and

    - ``"half-up"`` (ERASER's bins, agreement@k, plausibility's and stability's k): rounded half up, at
      least one, so that small bins of short texts still remove something;
    - ``"up"`` (Zafar et al. 2021, App. D): rounded up, so a 17-token sentence has 5 tokens in its top
      25 %, which rounding half up would make 4. A product that is exact is not pushed up."""
    if percent <= 0 or n_units <= 0:
        return 0
    exact = percent * n_units / 100.0
    if rounding == "up":
        count = math.ceil(exact - 1e-9)
    elif rounding == "half-up":
        count = max(int(np.floor(exact + 0.5)), 1)
    else:
        raise ValueError(f"rounding must be 'half-up' or 'up', not {rounding!r}")
    return min(count, n_units)


def _perturbed_rows(attribution: Attribution, remove: np.ndarray, replacement: int | None):
    """One perturbed input per row of ``remove`` (boolean, S × L over token positions)."""
    ids = np.asarray(attribution.input_ids, dtype=np.int64)
    types = (
        None if attribution.token_type_ids is None else np.asarray(attribution.token_type_ids, dtype=np.int64)
    )
    if replacement is not None:
        rows = np.where(remove, replacement, ids[None, :])
        return list(rows), None if types is None else [types] * len(rows)
    return [ids[~row] for row in remove], None if types is None else [types[~row] for row in remove]


MAX_ROWS = 4096  # perturbed inputs materialised at once, whatever the cell's size (bounded memory)


def evaluate(
    classifier: Classifier,
    attributions: Sequence[Attribution],
    removals: Sequence[np.ndarray],
    *,
    masking: Masking,
    batch_size: int,
    max_rows: int = MAX_ROWS,
    share: bool = True,
) -> list[np.ndarray]:
    """Class log-probabilities of perturbed inputs (log space keeps log-odds exact for confident models).

    ``removals[i]`` is a boolean matrix S_i × L_i: row s removes those positions of attribution i (an
    all-False row is the unperturbed input). The rows of consecutive attributions go through the model
    together in batched passes, longest first, in chunks of at most ``max_rows`` perturbed inputs (an
    attribution's rows are never split), so memory stays bounded however large the cell (switching
    point and leave-one-out need L rows of L tokens per example). Returns one S_i × K log-probability
    matrix per attribution; all NaN for an attribution with no removable unit (see the module
    docstring), which runs nothing.
    """
    request = Perturbations(attributions, removals, masking)
    return evaluate_together(classifier, [request], batch_size=batch_size, max_rows=max_rows, share=share)[0]


@dataclass(frozen=True)
class Perturbations:
    """What one metric (or explainer) asks the engine for: per attribution, a boolean matrix of token
    positions to remove (one row per perturbed input), removed by ``masking``."""

    attributions: Sequence[Attribution]
    removals: Sequence[np.ndarray]
    masking: Masking


def evaluate_together(
    classifier: Classifier,
    requests: Sequence[Perturbations],
    *,
    batch_size: int,
    max_rows: int = MAX_ROWS,
    share: bool = True,
) -> list[list[np.ndarray]]:
    """``evaluate`` of several requests on the same attributions (every removal metric of one
    explanation) planned together: the perturbed inputs of an attribution for every request go through
    the forward-pass service in the same chunk, so each distinct one is computed once and the passes
    are filled across metrics before any forward pass. Returns, per request, what ``evaluate`` returns."""
    for request in requests:
        if len(request.removals) != len(request.attributions):
            raise ValueError(
                f"{len(request.removals)} removal matrices for {len(request.attributions)} attributions"
            )
    n_classes = len(classifier.labels)
    results: list[list[np.ndarray | None]] = [[None] * len(r.attributions) for r in requests]
    replacements = [replacement_id(classifier, request.masking) for request in requests]
    with_types = all(a.token_type_ids is not None for r in requests for a in r.attributions)
    sequences: list[np.ndarray] = []
    type_sequences: list[np.ndarray] | None = [] if with_types else None
    # (request, attribution, start, count, known, inverse) of the rows gathered since the last flush
    pending: list[tuple[int, int, int, int, bool, np.ndarray]] = []

    def flush() -> None:
        log_probabilities = (
            forward_service(classifier).log_probabilities(sequences, type_sequences, batch_size, share=share)
            if sequences
            else None
        )
        for r, index, start, count, known, inverse in pending:
            computed = log_probabilities[start : start + count] if count else np.zeros((0, n_classes))
            if known:
                stored = np.asarray(requests[r].attributions[index].log_probabilities)[None, :]
                computed = np.vstack([stored, computed])
            results[r][index] = computed[inverse]
        sequences.clear()
        if type_sequences is not None:
            type_sequences.clear()
        pending.clear()

    # Attribution by attribution, every request's rows of it together (one chunk). Identical
    # perturbations of one input (e.g. bins that round to the same count) run once, and the unperturbed
    # input reuses the log-probabilities stored with the attribution when it has them.
    for index in range(max((len(r.attributions) for r in requests), default=0)):
        gathered = []
        for r, request in enumerate(requests):
            if index >= len(request.attributions):
                continue
            attribution, remove = request.attributions[index], request.removals[index]
            if not len(attribution.removable):
                results[r][index] = np.full((len(remove), n_classes), np.nan)
                continue
            unique, inverse = np.unique(remove, axis=0, return_inverse=True)
            known = attribution.log_probabilities is not None and not unique[0].any()
            gathered.append((r, attribution, unique[1:] if known else unique, known, inverse.reshape(-1)))
        size = sum(len(to_run) for _, _, to_run, _, _ in gathered)
        if sequences and len(sequences) + size > max_rows:
            flush()
        for r, attribution, to_run, known, inverse in gathered:
            rows, type_rows = _perturbed_rows(attribution, to_run, replacements[r])
            pending.append((r, index, len(sequences), len(rows), known, inverse))
            sequences.extend(rows)
            if type_sequences is not None:
                type_sequences.extend(type_rows)
    flush()
    return results


class RemovalMetric(Metric):
    """A metric on the model's outputs for perturbed copies of each explained input: every removal
    metric (comprehensiveness, AOPC, switching point, leave-one-out ...).

    It declares which copies (``removals``: per attribution, a boolean matrix of token positions to
    remove, one row per copy, removed as its ``masking`` parameter says) apart from what it makes of the
    model's class log-probabilities on them (``reduce``); ``compute`` is the two joined through the
    perturbation engine. Declared apart, the perturbations of every removal metric scoring one
    explanation are planned together by the runner (``evaluate_together``, the ``perturb`` stage of the
    plan): each distinct perturbed input is computed once, in full passes, before any metric reduces.

    What it removes follows from how the explanation ranks units (``ranks_units``): an example whose
    explanation scores every token alike is undefined (NaN, with a note), not scored as the text's order.
    """

    ranks_units: ClassVar[bool] = True

    @property
    def masking(self) -> Masking:
        """How a removed token is removed: the metric's ``masking`` parameter."""
        return self.params.masking

    @abstractmethod
    def removals(self, data: MetricInput) -> list[np.ndarray]:
        """Per attribution of ``data``, the boolean removal matrix (S_i × L_i) of its perturbed copies."""

    @abstractmethod
    def reduce(
        self, data: MetricInput, log_probabilities: list[np.ndarray]
    ) -> Sequence[float] | MetricOutput:
        """The metric's values from the class log-probabilities (S_i × K) of the copies ``removals``
        declared, in the same order (NaN rows for an attribution with no removable unit)."""

    def perturbations(self, data: MetricInput) -> Perturbations:
        return Perturbations(data.attributions, self.removals(data), self.masking)

    def compute(self, data: MetricInput) -> Sequence[float] | MetricOutput:
        (log_probabilities,) = evaluate_together(
            data.classifier, [self.perturbations(data)], batch_size=data.batch_size
        )
        return self.reduce(data, log_probabilities)


def with_unperturbed(attribution: Attribution, masks: np.ndarray) -> np.ndarray:
    """Prepend the unperturbed input (an all-False row) to removal masks."""
    return np.vstack([np.zeros((1, len(attribution.input_ids)), dtype=bool), masks])


def top_unit_masks(
    attribution: Attribution,
    counts: Sequence[int],
    *,
    keep: bool = False,
    granularity: Granularity = "token",
    order: Order = "descending",
) -> np.ndarray:
    """Boolean removal masks (len(counts) × L): row j removes the top ``counts[j]`` units of the
    ranking (``keep=False``) or every real token except them (``keep=True``)."""
    ranking = attribution.ranking(granularity, order)
    masks = np.zeros((len(counts), len(attribution.input_ids)), dtype=bool)
    everything = np.concatenate(ranking) if ranking else np.zeros(0, dtype=int)
    for row, count in enumerate(counts):
        top = np.concatenate(ranking[:count]) if count > 0 and ranking else np.zeros(0, dtype=int)
        if keep:
            masks[row, everything] = True
            masks[row, top] = False
        else:
            masks[row, top] = True
    return masks


def removal_masks(
    attribution: Attribution, percents: Sequence[float], *, keep: bool, granularity: Granularity = "token"
) -> np.ndarray:
    """The unperturbed input, then for each k in ``percents`` the input with its top-k % units (by
    descending score) removed (``keep=False``) or with only them kept (``keep=True``): (1 + len(percents))
    × L boolean removal masks."""
    n_units = len(attribution.units(granularity))
    counts = [top_count(percent, n_units) for percent in percents]
    return with_unperturbed(
        attribution, top_unit_masks(attribution, counts, keep=keep, granularity=granularity)
    )


def removal_curves(
    classifier: Classifier,
    attributions: Sequence[Attribution],
    percents: Sequence[float],
    *,
    keep: bool,
    masking: Masking,
    batch_size: int,
    granularity: Granularity = "token",
) -> tuple[np.ndarray, np.ndarray]:
    """For each attribution: p(target | full input) and, for each k in ``percents``, p(target | input)
    with the top-k % units (by descending score) removed (``keep=False``) or with only them kept
    (``keep=True``). Special tokens are never removed. Returns shapes (N,) and (N, len(percents)); NaN
    rows for an attribution with no removable unit."""
    removals = [
        removal_masks(attribution, percents, keep=keep, granularity=granularity)
        for attribution in attributions
    ]
    matrices = evaluate(classifier, attributions, removals, masking=masking, batch_size=batch_size)
    target = np.exp(
        [matrix[:, attribution.target] for matrix, attribution in zip(matrices, attributions, strict=True)]
    )
    return target[:, 0], target[:, 1:]


# What perturbation explainers share (LIME, Kernel SHAP, occlusion): the model's tokens as the engine's
# inputs, the explained output, per-example seeds. A perturbation explainer never runs its own forward
# loop: every perturbed input goes, as a boolean removal mask over the model's token positions, through
# ``evaluate``, the engine the removal metrics use. A removed token is therefore removed exactly as the
# metrics remove it (mask, unk or pad token, or deletion), nothing is re-tokenised and truncation cannot
# differ.

PerturbationOutput = Literal["probability", "log-odds"]
PERTURBATION_OUTPUT_DOC = (
    "the explained output of the target class: its softmax probability, or its log-odds "
    "log p − log(1 − p) (for two classes, the logit margin; not saturated where p ≈ 1)"
)
PERTURBATION_BATCH_DOC = (
    "perturbed inputs per forward pass of the perturbation engine (speed only, not results)"
)


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


def explained_output(log_probabilities: np.ndarray, output: PerturbationOutput) -> np.ndarray:
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
    output: PerturbationOutput,
    batch_size: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """The model as a function of which tokens are present, for surrogate explainers (LIME, Kernel
    SHAP): rows of a (S × n) matrix over ``positions`` (1 kept, 0 removed) → the target's output (S,),
    all S inputs through the perturbation engine at once."""

    def forward(present: np.ndarray) -> np.ndarray:
        present = np.asarray(present, dtype=np.float64).reshape(-1, len(positions))
        remove = np.zeros((len(present), len(item.input_ids)), dtype=bool)
        remove[:, positions] = present < 0.5
        # Random samples of a surrogate explainer: rarely asked for again, not worth keeping (share=False).
        log_probabilities = evaluate(
            classifier, [item], [remove], masking=masking, batch_size=batch_size, share=False
        )[0]
        return explained_output(log_probabilities, output)[:, target]

    return forward


class PerturbationParams(ExplainerParams):
    """What every perturbation explainer takes: how a token is removed, what output is explained, and
    how many perturbed inputs go through the engine per forward pass."""

    masking: Masking = Field("mask", description=MASKING_DOC)
    output: PerturbationOutput = Field("probability", description=PERTURBATION_OUTPUT_DOC)
    batch_size: int = Field(128, ge=1, description=PERTURBATION_BATCH_DOC)


def centred_model(
    forward: Callable[[np.ndarray], np.ndarray], n: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward`` as a torch function of kept/removed vectors, minus its value on the full input.

    captum fits its surrogate in float32: a probability of 1 − 1e-9 would round to 1 and every change of a
    saturated model would vanish. Subtracting the constant f(x) changes no slope (the intercept absorbs
    it) and keeps the differences in float32's range.
    """
    reference = float(forward(np.ones((1, n)))[0])

    def model(present: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(forward(present.detach().cpu().numpy()) - reference)

    return model
