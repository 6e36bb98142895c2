"""IBA: the per-sample information bottleneck for attribution (Schulz et al. 2020), in a hidden layer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field, NonNegativeInt, PositiveInt

from harness import (
    INTERNAL_BATCH_DOC,
    Classifier,
    Encoding,
    Explainer,
    ExplainerParams,
    Explanation,
    FitContext,
    PluginError,
    TextDataset,
    aggregate_words,
    example_generators,
    rows_per_pass,
)
from plugins.explainers._iba_bottleneck import NATS_PER_BIT, capacity, replaced_output, restricted

PAPER = (
    "Schulz, Sixt, Tombari & Landgraf 2020, Restricting the Flow: Information Bottlenecks for Attribution "
    "(ICLR), §3.1-3.2 (Per-Sample Bottleneck); as a baseline for text pairs in Chen et al. 2021 (GMASK), §4"
)
MIN_STD_FRACTION = 0.01
"""σ of a dimension is floored at this fraction of the layer's mean σ (a dimension that hardly varies in
the estimation data would otherwise turn any deviation at test time into a huge normalised value)."""
_STATISTICS_FILE = "statistics.pt"
_REPORT_FILE = "report.json"


class IBAParams(ExplainerParams):
    layer: NonNegativeInt = Field(
        2,
        description="where the bottleneck sits: 0 = the input word embeddings (every model: the "
        "restricted embeddings go in through inputs_embeds), k >= 1 = the output of encoder layer k "
        "(models whose classifier implements hidden_layer: transformers encoders); default 2 of "
        "MiniLM-L6's 6 layers (see the docstring)",
    )
    beta: float = Field(
        10.0,
        ge=0,
        description="weight of the information loss, the mean over the example's restricted features of "
        "their capacity in nats (the paper: β = 10/k on the sum over k features, the same thing)",
    )
    steps: PositiveInt = Field(10, description="Adam steps per example (the paper: 10)")
    samples: PositiveInt = Field(
        10, description="noise samples per step, the CE averaged over them (the paper's batch: 10)"
    )
    learning_rate: float = Field(1.0, gt=0, description="Adam learning rate on α (the paper: 1)")
    initial_alpha: float = Field(
        5.0, description="initial α of every feature, λ = sigmoid(α) ≈ 0.993: almost no noise (the paper: 5)"
    )
    estimation_documents: PositiveInt = Field(
        1000,
        description="μ and σ per dimension are estimated on the real tokens of the first N train documents",
    )
    internal_batch_size: PositiveInt | None = Field(
        None, description="rows (examples × noise samples): " + INTERNAL_BATCH_DOC
    )


class IBA(Explainer):
    """Per-sample information bottleneck: a token's score is the information (bits) it passes through a layer.

    The Per-Sample Bottleneck of Schulz et al. 2020. At a hidden layer with activations h (L × D per
    example) the model reads Z = λ ⊙ h + (1 − λ) ⊙ ε instead, ε ~ N(μ, σ²) with μ, σ the per-dimension
    mean and standard deviation of that layer's activations on the real tokens ([CLS]/[SEP] and padding
    left out) of the first ``estimation_documents`` train documents, estimated once in ``fit`` and cached.
    λ = sigmoid(α), one α per token and dimension, starts at sigmoid(``initial_alpha``) and is optimised
    for the example alone with Adam (``steps`` steps, ``learning_rate``) on

        CE(target, f(Z)) + β · L_I,    L_I = mean over restricted features of KL(P(Z|h) ‖ N(μ, σ²)),

    the CE averaged over ``samples`` noise draws per step. Z|h ~ N(λh + (1 − λ)μ, (1 − λ)²σ²), so with
    n = (h − μ)/σ the KL of a feature is −log(1 − λ) + ((1 − λ)² + λ²n²)/2 − 1/2 nats (closed form, as in
    the paper). A token's score is its information capacity at the optimised λ: the KL summed over its
    dimensions, in bits (the paper's unit); a word's score is the sum over its sub-tokens (capacity is
    additive: the bits that flow through the word), carried by each of them. ``extras["token_bits"]``
    holds the per-token capacities.

    Special tokens and padding are never restricted (λ fixed at 1, no noise, no KL term) and score 0.
    Noise is drawn from ``self.seed`` and the example alone, and each example's loss is its own (Adam
    updates every α from its own gradient), so an example's scores are the same alone and in any batch.

    Defaults: the paper's (10 steps of Adam at learning rate 1, 10 noise samples per step, α₀ = 5,
    β = 10/k on the summed KL, i.e. 10 on the mean), so 100 noisy rows forward and backward per example:
    1.5-2.5 s per text pair of about 18 tokens with minilm-head at layer 2 on 2 shared CPU cores.
    ``layer`` 0 restricts the word embeddings (through ``inputs_embeds``), which any classifier
    supports; ``layer`` k ≥ 1 puts the bottleneck after encoder layer k with a forward hook on
    ``Classifier.hidden_layer(k)`` (removed after each call, also on errors). The GMASK paper (Chen et
    al. 2021), which uses IBA as a baseline on BERT, does not say which layer; Schulz et al. put it in
    the middle of their CNNs, Jiang et al. 2020 (IBA for BERT) after layer 9 of 12. On MiniLM-L6 with
    a trained minilm-head sentiment head, masking IBA's top 3 words ([MASK]) of 16 hand-written pairs
    lowered the predicted class's probability by 0.39 at layer 2, 0.35 at layer 3, 0.27 at layer 4 and
    0.39 at layer 1 (random words: 0.09), so the default is 2: deeper layers have mixed the tokens through
    attention, and what flows through a position says less about the word there.

    Deviations from the paper: no Gaussian smoothing of λ (the paper smooths image masks spatially; tokens
    have no such neighbourhood); the score is read at the final λ (the reference code reads the capacity
    of the last forward pass, one Adam step earlier); μ and σ are per dimension, pooled over token
    positions (the paper's are per feature-map entry, which positions of variable-length texts do not
    have); σ is floored at 1 % of the layer's mean σ (the reference code: 0.01 absolute, for CNN
    activations); the information loss averages over the example's real tokens only.
    """

    name: ClassVar[str] = "iba"
    Params = IBAParams
    paper: ClassVar[str] = PAPER

    params: IBAParams

    def __init__(self, params: IBAParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.statistics: tuple[torch.Tensor, torch.Tensor] | None = None
        self.report: dict = {}

    # -- fitting: μ and σ of the layer --------------------------------------------------------------------
    def fit(self, classifier: Classifier, dataset: TextDataset, context: FitContext | None = None) -> None:
        module = self._module(classifier)  # an unsupported layer fails here, before any work
        batch_size = context.batch_size if context is not None else 32
        if context is None:
            self.report, self.statistics = self._estimate(classifier, module, dataset, batch_size)
            return

        def write(directory: Path) -> None:
            report, (mean, std) = self._estimate(classifier, module, dataset, batch_size, context.progress)
            torch.save({"mean": mean.cpu(), "std": std.cpu()}, directory / _STATISTICS_FILE)
            (directory / _REPORT_FILE).write_text(json.dumps(report), encoding="utf-8")

        def read(directory: Path) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
            state = torch.load(directory / _STATISTICS_FILE, map_location="cpu", weights_only=True)
            report = json.loads((directory / _REPORT_FILE).read_text(encoding="utf-8"))
            return report, (state["mean"], state["std"])

        self.report, self.statistics = context.cached(write, read)

    def fit_report(self) -> dict:
        return self.report

    def _module(self, classifier: Classifier) -> torch.nn.Module | None:
        """The hooked layer, or None for layer 0 (the word embeddings go in through ``inputs_embeds``)."""
        if self.params.layer == 0:
            return None
        try:
            return classifier.hidden_layer(self.params.layer)
        except PluginError as error:
            raise PluginError(
                f"iba at layer {self.params.layer}: {error}; layer 0 works with every model"
            ) from error

    def _estimate(
        self,
        classifier: Classifier,
        module: torch.nn.Module | None,
        dataset: TextDataset,
        batch_size: int,
        progress: Callable[[str, int, int], None] = lambda description, done, total: None,
    ) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
        start = time.perf_counter()
        documents = list(dataset.train[: self.params.estimation_documents])
        if not documents:
            raise PluginError(f"iba estimates μ and σ on train documents; dataset '{dataset.name}' has none")
        total = squares = None
        count = 0
        for first in range(0, len(documents), batch_size):
            progress(f"estimating μ and σ at layer {self.params.layer}", first, len(documents))
            encoding = classifier.encode(documents[first : first + batch_size])
            hidden = _hidden_states(classifier, encoding, module)
            values = hidden[~encoding.special_mask.to(hidden.device)].double()
            if total is None:
                total, squares = values.new_zeros(values.shape[-1]), values.new_zeros(values.shape[-1])
            total, squares, count = total + values.sum(0), squares + (values**2).sum(0), count + len(values)
        if count == 0:
            raise PluginError("iba found no real token in the estimation documents")
        mean = total / count
        std = (squares / count - mean**2).clamp(min=0).sqrt()
        std = std.clamp(min=max(MIN_STD_FRACTION * float(std.mean()), 1e-12))
        report = {
            "documents": len(documents),
            "tokens": count,
            "layer": self.params.layer,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return report, (mean.float(), std.float())

    # -- explaining ---------------------------------------------------------------------------------------
    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> Explanation:
        if self.statistics is None:
            raise PluginError("iba explains only after fit (which estimates the layer's μ and σ)")
        p = self.params
        module = self._module(classifier)
        hidden = _hidden_states(classifier, encoding, module)
        device = hidden.device
        mean, std = (tensor.to(device, hidden.dtype) for tensor in self.statistics)
        if hidden.shape[-1] != mean.shape[0]:
            raise PluginError(
                f"iba: layer {p.layer} has {hidden.shape[-1]} dimensions but μ and σ were estimated for "
                f"{mean.shape[0]}"
            )
        batch, length, dim = hidden.shape
        real = ~encoding.special_mask.to(device)
        targets = targets.to(device)
        generators = example_generators(self.seed, encoding)
        rows = rows_per_pass(p.internal_batch_size, length)
        bits = torch.zeros(batch, length)
        for group in torch.arange(batch).split(max(1, rows // p.samples)):
            noise = torch.zeros(len(group), p.steps, p.samples, length, dim)
            for index, row in enumerate(group.tolist()):
                tokens = len(encoding.tokens[row])
                noise[index, :, :, :tokens] = torch.randn(
                    p.steps, p.samples, tokens, dim, generator=generators[row]
                )
            bits[group] = self._bottleneck(
                classifier, encoding, module, group.to(device), hidden[group.to(device)],
                noise.to(device, hidden.dtype), real, targets, mean, std, min(p.samples, rows),
            ).cpu()  # fmt: skip
        # A word's score is the sum of its tokens' bits (summed in float64); specials and padding hold 0 bits.
        words = aggregate_words(bits.double(), encoding, "sum").to(bits.dtype)
        return Explanation(words.to(device), extras={"token_bits": bits.to(device)})

    def _bottleneck(
        self,
        classifier: Classifier,
        encoding: Encoding,
        module: torch.nn.Module | None,
        group: torch.Tensor,
        hidden: torch.Tensor,
        noise: torch.Tensor,
        real: torch.Tensor,
        targets: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        """Optimise λ for a group of examples (each on its own loss) and return their token capacities
        in bits (G, L). Each step's noise samples go through the model ``chunk`` at a time, their
        gradients summed, so that no pass holds more rows than ``internal_batch_size``."""
        p = self.params
        keep = real[group].unsqueeze(-1)  # (G, L, 1): restricted positions
        normalised = (hidden - mean) / std
        features = (keep.sum((1, 2)) * hidden.shape[-1]).clamp(min=1)
        alpha = torch.full_like(hidden, p.initial_alpha).requires_grad_(True)
        optimizer = torch.optim.Adam([alpha], lr=p.learning_rate)
        inputs = [
            None if tensor is None else tensor.to(hidden.device)[group]
            for tensor in (encoding.input_ids, encoding.attention_mask, encoding.token_type_ids, targets)
        ]
        for step in range(p.steps):
            optimizer.zero_grad()
            information = (capacity(alpha, normalised) * keep).sum((1, 2)) / features
            (p.beta * information.sum()).backward()
            for first in range(0, p.samples, chunk):
                count = min(chunk, p.samples - first)
                lam = torch.where(keep, torch.sigmoid(alpha), torch.ones_like(alpha))
                lam = lam.repeat_interleave(count, dim=0)
                epsilon = noise[:, step, first : first + count].flatten(0, 1)
                ids, mask, types, target = (
                    None if tensor is None else tensor.repeat_interleave(count, dim=0) for tensor in inputs
                )
                if module is None:
                    logits = classifier.logits(
                        inputs_embeds=restricted(
                            hidden.repeat_interleave(count, dim=0), lam, mean, std, epsilon
                        ),
                        attention_mask=mask,
                        token_type_ids=types,
                    )
                else:
                    bottleneck = partial(restricted, lam=lam, mean=mean, std=std, noise=epsilon)
                    with replaced_output(module, bottleneck):
                        logits = classifier.logits(input_ids=ids, attention_mask=mask, token_type_ids=types)
                loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum") / p.samples
                loss.backward()
            optimizer.step()
        with torch.no_grad():
            return (capacity(alpha, normalised) * keep).sum(-1) / NATS_PER_BIT


def _hidden_states(
    classifier: Classifier, encoding: Encoding, module: torch.nn.Module | None
) -> torch.Tensor:
    """The (B, L, D) activations where the bottleneck sits, without gradient: the word embeddings
    (layer 0) or ``module``'s output in a forward pass of the encoded batch."""
    with torch.no_grad():
        if module is None:
            return classifier.input_embeddings(encoding.input_ids).detach()
        seen: list[torch.Tensor] = []

        def capture(hidden: torch.Tensor) -> torch.Tensor:
            seen.append(hidden.detach())
            return hidden

        with replaced_output(module, capture):
            classifier.logits(
                input_ids=encoding.input_ids,
                attention_mask=encoding.attention_mask,
                token_type_ids=encoding.token_type_ids,
            )
    if len(seen) > 1:
        raise PluginError(
            f"iba: hidden layer {module.__class__.__name__} runs {len(seen)} times in one forward pass (a "
            "model that encodes the two texts of a pair apart, e.g. minilm-head with pair_encoding: siamese), "
            "so a token has no single hidden state to restrict there; use layer: 0 (the word embeddings)"
        )
    if len(seen) != 1 or seen[0].shape[:2] != encoding.input_ids.shape:
        raise PluginError(
            "iba: the hidden layer ran "
            f"{len(seen)} time(s) in one forward pass{'' if not seen else f' with shape {tuple(seen[0].shape)}'}; "
            f"expected once, with (batch, tokens, dim) = {tuple(encoding.input_ids.shape)} × dim"
        )
    return seen[0]
