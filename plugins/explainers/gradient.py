"""Gradient explainers on the input word embeddings, computed with captum."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from captum.attr import (
    InputXGradient,
)
from captum.attr import (
    IntegratedGradients as CaptumIntegratedGradients,
)
from captum.attr import (
    Saliency as CaptumSaliency,
)
from pydantic import Field

from harness import Classifier, Encoding, Explainer, ExplainerParams, PluginError
from plugins.explainers.random import example_rng

Output = Literal["logit", "probability"]
OUTPUT_DOC = "the differentiated output of the target class: its logit, or its softmax probability"
Reduction = Literal["l2", "input_x_gradient", "sum"]
REDUCTION_DOC = (
    "how a token's score is made from its embedding's gradient: l2 = L2 norm of the gradient (Simonyan et "
    "al. 2014; Li et al. 2016); input_x_gradient = sum over the embedding dimension of embedding × gradient "
    "(Shrikumar et al. 2017); sum = plain sum of the gradient over the embedding dimension"
)
Baseline = Literal["pad", "unk", "mask", "zero"]
BASELINE_DOC = (
    "reference input: every real token replaced by the pad, unk or mask token's embedding, or by the zero "
    "vector (special tokens and padding are kept)"
)
TOKENS_PER_PASS = 4096
"""Tokens (rows × the batch's padded length) per forward/backward pass when an explainer's
``internal_batch_size`` is not set. Autograd keeps every layer's activations of a pass until its backward:
through MiniLM's 6 layers about 125 KB per token, so a pass of 4,096 tokens holds about 0.5 GB, for short
and long texts alike (a fixed number of rows would hold 4 times as much at 256 tokens as at 64). Larger
passes are no faster on a CPU: on 2 cores, forward and backward through minilm-head took as long per row
in passes of 4,096 tokens as in passes of 8,192 to 16,384 (passes of 2,048 tokens: 15 % longer)."""
INTERNAL_BATCH_DOC = (
    f"rows per forward/backward pass; null: as many as hold {TOKENS_PER_PASS} tokens at the batch's padded "
    "length (bounded memory whatever the text length)"
)


def rows_per_pass(internal_batch_size: int | None, length: int) -> int:
    """Rows per forward/backward pass: ``internal_batch_size``, or as many rows of ``length`` tokens as
    ``TOKENS_PER_PASS`` holds (at least one)."""
    if internal_batch_size is not None:
        return internal_batch_size
    return max(1, TOKENS_PER_PASS // max(length, 1))


def forward_function(classifier: Classifier, output: Output):
    """captum's forward: word embeddings in, the chosen output per class out."""

    def forward(inputs_embeds, attention_mask, token_type_ids=None):
        logits = classifier.logits(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return logits if output == "logit" else torch.softmax(logits, dim=-1)

    return forward


def embedded_inputs(classifier: Classifier, encoding: Encoding) -> tuple[torch.Tensor, tuple]:
    embeddings = classifier.input_embeddings(encoding.input_ids).detach().requires_grad_(True)
    return embeddings, (encoding.attention_mask, encoding.token_type_ids)


def baseline_embeddings(classifier: Classifier, encoding: Encoding, baseline: Baseline) -> torch.Tensor:
    """Reference word embeddings: every real token replaced by the ``baseline`` token's embedding (or the
    zero vector); special tokens and padding keep their own embeddings."""
    real = ~encoding.special_mask.to(encoding.input_ids.device)
    if baseline == "zero":
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        return embeddings * (~real).unsqueeze(-1)
    token_id = {
        "pad": classifier.pad_token_id,
        "unk": classifier.unk_token_id,
        "mask": classifier.mask_token_id,
    }[baseline]
    if token_id is None:
        raise PluginError(f"baseline '{baseline}' is not available: the tokenizer has no such token")
    ids = torch.where(real, torch.full_like(encoding.input_ids, token_id), encoding.input_ids)
    return classifier.input_embeddings(ids).detach()


def example_generators(seed: int, encoding: Encoding) -> list[torch.Generator]:
    """One CPU torch generator per example, seeded from the explainer's seed and the example alone (its id,
    or its token ids where the encoding carries no ids), so that noise never depends on the batch."""
    generators = []
    for row, tokens in enumerate(encoding.tokens):
        if len(encoding.example_ids) == len(encoding.tokens):
            key = encoding.example_ids[row]
        else:
            key = " ".join(map(str, encoding.input_ids[row, : len(tokens)].tolist()))
        generators.append(torch.Generator().manual_seed(int(example_rng(seed, key).integers(2**63))))
    return generators


def real_token_scale(embeddings: torch.Tensor, encoding: Encoding) -> torch.Tensor:
    """Per example, the standard deviation of its real (non-special) tokens' word embeddings, all tokens
    and dimensions pooled (B,): the unit in which noise levels are given."""
    real = ~encoding.special_mask.to(embeddings.device)
    scales = []
    for row in range(len(embeddings)):
        values = embeddings[row][real[row]]
        if values.numel() == 0:  # no real token: fall back to everything the model reads
            values = embeddings[row, : len(encoding.tokens[row])]
        scales.append(values.float().std(correction=0) if values.numel() else values.new_zeros(()))
    return torch.stack(scales).to(embeddings.dtype)


def example_noise(
    generators: list[torch.Generator],
    encoding: Encoding,
    embeddings: torch.Tensor,
    samples: int,
    stdev: torch.Tensor,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gaussian noise (B, samples, L, D) with per-example standard deviation ``stdev`` (B,), drawn on the
    CPU from each example's own generator over its own length only (padding gets none), so an example gets
    the same noise alone and in any batch, on any device. ``positions`` (B, L) limits where noise goes."""
    batch, length, dim = embeddings.shape
    noise = torch.zeros(batch, samples, length, dim)
    for row, generator in enumerate(generators):
        tokens = len(encoding.tokens[row])
        noise[row, :, :tokens] = torch.randn(samples, tokens, dim, generator=generator) * float(stdev[row])
    noise = noise.to(embeddings.device, embeddings.dtype)
    if positions is not None:
        noise = noise * positions[:, None, :, None].to(noise.dtype)
    return noise


def token_gradient_scores(
    classifier: Classifier,
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    extra: tuple,
    reduction: Reduction,
    output: Output,
) -> torch.Tensor:
    """Per-token gradient scores (B, L) of the target output at ``embeddings`` (which require grad)."""
    forward = forward_function(classifier, output)
    if reduction == "input_x_gradient":
        products = InputXGradient(forward).attribute(
            embeddings, target=targets, additional_forward_args=extra
        )
        return products.sum(dim=-1)
    gradients = CaptumSaliency(forward).attribute(
        embeddings, target=targets, additional_forward_args=extra, abs=False
    )
    return gradients.norm(dim=-1) if reduction == "l2" else gradients.sum(dim=-1)


class SaliencyParams(ExplainerParams):
    reduction: Reduction = Field("l2", description=REDUCTION_DOC)
    output: Output = Field("logit", description=OUTPUT_DOC)


class Saliency(Explainer):
    """Vanilla gradient of the target output w.r.t. the input word embeddings, reduced per token.

    Simonyan et al. 2014 (saliency maps); for text, the L2 reduction follows Li et al. 2016, the
    input×gradient reduction Shrikumar et al. 2017 / Denil et al. 2014; ``sum`` is the plain, signed sum
    of the gradient over the embedding dimension.
    """

    name: ClassVar[str] = "saliency"
    Params = SaliencyParams
    paper: ClassVar[str] = "Simonyan et al. 2014; Li et al. 2016; Shrikumar et al. 2017"

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        embeddings, extra = embedded_inputs(classifier, encoding)
        return token_gradient_scores(
            classifier, embeddings, targets, extra, self.params.reduction, self.params.output
        ).detach()


class SmoothGradParams(ExplainerParams):
    reduction: Reduction = Field(
        "l2", description=REDUCTION_DOC + "; each noisy copy is reduced, then averaged"
    )
    samples: int = Field(20, ge=1, description="noisy copies of each input averaged (Smilkov et al.: n)")
    noise: float = Field(
        0.1,
        ge=0,
        description="standard deviation of the Gaussian noise added to the word embeddings, relative to "
        "the embedding scale: stdev = noise × the standard deviation of the example's real-token "
        "embeddings (tokens and dimensions pooled); 0 gives saliency",
    )
    output: Output = Field("logit", description=OUTPUT_DOC)
    internal_batch_size: int | None = Field(
        None, ge=1, description="noisy rows (examples × samples): " + INTERNAL_BATCH_DOC
    )


class SmoothGrad(Explainer):
    """SmoothGrad: saliency averaged over noisy copies of the input word embeddings.

    Smilkov et al. 2017, SmoothGrad: removing noise by adding noise. Each example's word embeddings get
    ``samples`` draws of Gaussian noise (every token it reads, special ones included; never padding), the
    chosen saliency ``reduction`` is computed on each noisy copy with captum (``Saliency`` /
    ``InputXGradient``) and the token scores are averaged: the paper's mean of sensitivity maps, as
    captum's ``NoiseTunnel(nt_type="smoothgrad")`` computes it.

    The noise level is relative, as in the paper (σ over the input's range): its standard deviation is
    ``noise`` × the standard deviation of the example's real-token embeddings. captum's default (stdev 1.0)
    is about 18 times the scale of MiniLM's word embeddings (std ≈ 0.056) and would drown the input.

    Not ``NoiseTunnel`` itself: it draws one noise tensor for the whole batch from the global RNG with one
    stdev, so an example's scores would depend on the rest of its batch. Here each example's noise comes
    from a generator seeded from ``self.seed`` and the example alone (its scale, too, is its own), so
    results are the same alone, in any batch, and in any batch order.
    """

    name: ClassVar[str] = "smoothgrad"
    Params = SmoothGradParams
    paper: ClassVar[str] = "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise"

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        p = self.params
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        batch, length, dim = embeddings.shape
        stdev = p.noise * real_token_scale(embeddings, encoding)
        noise = example_noise(example_generators(self.seed, encoding), encoding, embeddings, p.samples, stdev)
        noisy = (embeddings[:, None] + noise).reshape(batch * p.samples, length, dim)
        rows = [
            None if tensor is None else tensor.repeat_interleave(p.samples, dim=0)
            for tensor in (encoding.attention_mask, encoding.token_type_ids, targets)
        ]
        scores = []
        rows_per_chunk = rows_per_pass(p.internal_batch_size, length)
        for start in range(0, len(noisy), rows_per_chunk):
            chunk = slice(start, start + rows_per_chunk)
            extra = tuple(None if tensor is None else tensor[chunk] for tensor in rows[:2])
            part = noisy[chunk].clone().requires_grad_(True)
            scores.append(
                token_gradient_scores(classifier, part, rows[2][chunk], extra, p.reduction, p.output).detach()
            )
        return torch.cat(scores).view(batch, p.samples, length).mean(dim=1)


class IntegratedGradientsParams(ExplainerParams):
    n_steps: int = Field(50, ge=2, description="steps of the Riemann/Gauss-Legendre path integral")
    baseline: Baseline = Field("pad", description=BASELINE_DOC)
    output: Output = Field("logit", description=OUTPUT_DOC)
    internal_batch_size: int | None = Field(
        None, ge=1, description="rows (examples × steps of the path): " + INTERNAL_BATCH_DOC
    )


class IntegratedGradients(Explainer):
    """Integrated gradients on the input word embeddings, summed over the embedding dimension.

    Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks.
    """

    name: ClassVar[str] = "integrated-gradients"
    Params = IntegratedGradientsParams
    paper: ClassVar[str] = "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks"

    def baseline_embeddings(self, classifier: Classifier, encoding: Encoding) -> torch.Tensor:
        return baseline_embeddings(classifier, encoding, self.params.baseline)

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        """captum splits the path's steps over passes, never the examples (a pass holds at least one step
        of every example it is given): examples go to captum in groups of at most one pass's rows, so
        that no pass exceeds ``rows_per_pass`` rows. Each example's integral is its own, whatever its
        group."""
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        baselines = self.baseline_embeddings(classifier, encoding)
        method = CaptumIntegratedGradients(forward_function(classifier, self.params.output))
        rows = rows_per_pass(self.params.internal_batch_size, embeddings.shape[1])
        parts = []
        for group in torch.arange(len(embeddings), device=embeddings.device).split(rows):
            parts.append(
                method.attribute(
                    embeddings[group],
                    baselines=baselines[group],
                    target=targets[group],
                    additional_forward_args=tuple(
                        None if tensor is None else tensor[group]
                        for tensor in (encoding.attention_mask, encoding.token_type_ids)
                    ),
                    n_steps=self.params.n_steps,
                    internal_batch_size=rows,
                ).detach()
            )
        return torch.cat(parts).sum(dim=-1)
