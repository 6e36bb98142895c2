"""Gradient explainers on the input word embeddings, computed with captum."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from captum.attr import (
    IntegratedGradients as CaptumIntegratedGradients,
)
from pydantic import Field

from harness import (
    BASELINE_DOC,
    GRADIENT_OUTPUT_DOC,
    INTERNAL_BATCH_DOC,
    REDUCTION_DOC,
    Baseline,
    Classifier,
    Encoding,
    Explainer,
    ExplainerParams,
    GradientOutput,
    Reduction,
    baseline_embeddings,
    embedded_inputs,
    example_generators,
    example_noise,
    forward_function,
    real_token_scale,
    rows_per_pass,
    token_gradient_scores,
)


class SaliencyParams(ExplainerParams):
    reduction: Reduction = Field("l2", description=REDUCTION_DOC)
    output: GradientOutput = Field("logit", description=GRADIENT_OUTPUT_DOC)


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
    samples: int = Field(
        20,
        ge=1,
        description="noisy copies of each input averaged (Smilkov et al.: n; Zafar et al. 2021 App. B.2: 10, "
        "AllenNLP Interpret's value)",
    )
    noise: float = Field(
        0.1,
        ge=0,
        description="standard deviation of the Gaussian noise added to the word embeddings, relative to "
        "the embedding scale: stdev = noise × the standard deviation of the example's real-token "
        "embeddings (tokens and dimensions pooled); 0 gives saliency. Fixed, not tuned: Zafar et al. 2021 "
        "(App. B.2) pick σ from {0.01, 0.05, 0.1, 0.2} by lowest infidelity; their 'default 0.01' is "
        "AllenNLP Interpret's, whose σ multiplies the range max − min of the embeddings. An all-MiniLM-L6-v2 sentence's word embeddings span about 19 "
        "of their standard deviations (std ≈ 0.057, range ≈ 1.1), so noise ≈ 19 × σ: the default 0.1 is "
        "σ ≈ 0.005, below that grid, and σ = 0.01, 0.05, 0.1, 0.2 are noise ≈ 0.19, 0.97, 1.9, 3.9 (σ read "
        "as an absolute standard deviation gives nearly the same: ≈ 0.18, 0.88, 1.8, 3.5)",
    )
    output: GradientOutput = Field("logit", description=GRADIENT_OUTPUT_DOC)
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


IntegratedGradientsReduction = Literal["sum", "l2"]


class IntegratedGradientsParams(ExplainerParams):
    n_steps: int = Field(
        50,
        ge=2,
        description="steps of the Riemann/Gauss-Legendre path integral (captum's default, Zafar et al.'s)",
    )
    baseline: Baseline = Field(
        "pad", description=BASELINE_DOC + "; Zafar et al. 2021 (App. B.2) use the unk token's embedding"
    )
    reduction: IntegratedGradientsReduction = Field(
        "sum",
        description="how a token's score is made from its attribution vector (x − x') ⊙ the path-averaged "
        "gradient, one value per embedding dimension: sum = signed sum over the dimension (Sundararajan et "
        "al.: the token scores sum to f(x) − f(baseline)); l2 = its L2 norm, unsigned (Arras et al. 2016, "
        "as Zafar et al. 2021 §2.2 reduce every gradient method)",
    )
    output: GradientOutput = Field("logit", description=GRADIENT_OUTPUT_DOC)
    internal_batch_size: int | None = Field(
        None, ge=1, description="rows (examples × steps of the path): " + INTERNAL_BATCH_DOC
    )


class IntegratedGradients(Explainer):
    """Integrated gradients on the input word embeddings, reduced per token.

    Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks. Each token's attribution is a
    vector over the embedding dimension; ``reduction: sum`` adds it up (the scores then sum to the change
    of the output from the baseline), ``reduction: l2`` takes its norm, as Zafar et al. 2021 do.
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
        attributions = torch.cat(parts)
        return attributions.norm(dim=-1) if self.params.reduction == "l2" else attributions.sum(dim=-1)
