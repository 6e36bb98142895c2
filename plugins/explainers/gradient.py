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

Output = Literal["logit", "probability"]
OUTPUT_DOC = "the differentiated output of the target class: its logit, or its softmax probability"


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


class SaliencyParams(ExplainerParams):
    reduction: Literal["l2", "input_x_gradient"] = Field(
        "l2",
        description="l2: L2 norm of the gradient over the embedding dimension (Simonyan et al. 2014); "
        "input_x_gradient: sum over the embedding dimension of embedding × gradient (Shrikumar et al. 2017)",
    )
    output: Output = Field("logit", description=OUTPUT_DOC)


class Saliency(Explainer):
    """Vanilla gradient of the target output w.r.t. the input word embeddings, reduced per token.

    Simonyan et al. 2014 (saliency maps); for text, the L2 reduction follows Li et al. 2016 and the
    input×gradient reduction Shrikumar et al. 2017 / Denil et al. 2014.
    """

    name: ClassVar[str] = "saliency"
    Params = SaliencyParams
    paper: ClassVar[str] = "Simonyan et al. 2014; Li et al. 2016; Shrikumar et al. 2017"

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        embeddings, extra = embedded_inputs(classifier, encoding)
        forward = forward_function(classifier, self.params.output)
        if self.params.reduction == "l2":
            gradients = CaptumSaliency(forward).attribute(
                embeddings, target=targets, additional_forward_args=extra, abs=False
            )
            return gradients.norm(dim=-1)
        products = InputXGradient(forward).attribute(
            embeddings, target=targets, additional_forward_args=extra
        )
        return products.sum(dim=-1)


class IntegratedGradientsParams(ExplainerParams):
    n_steps: int = Field(50, ge=2, description="steps of the Riemann/Gauss-Legendre path integral")
    baseline: Literal["pad", "unk", "mask", "zero"] = Field(
        "pad",
        description="reference input: every real token replaced by the pad, unk or mask token's embedding, "
        "or by the zero vector (special tokens are kept)",
    )
    output: Output = Field("logit", description=OUTPUT_DOC)
    internal_batch_size: int = Field(256, ge=1, description="rows per forward pass when expanding steps")


class IntegratedGradients(Explainer):
    """Integrated gradients on the input word embeddings, summed over the embedding dimension.

    Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks.
    """

    name: ClassVar[str] = "integrated-gradients"
    Params = IntegratedGradientsParams
    paper: ClassVar[str] = "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks"

    def baseline_embeddings(self, classifier: Classifier, encoding: Encoding) -> torch.Tensor:
        real = ~encoding.special_mask.to(encoding.input_ids.device)
        if self.params.baseline == "zero":
            embeddings = classifier.input_embeddings(encoding.input_ids).detach()
            return embeddings * (~real).unsqueeze(-1)
        token_id = {
            "pad": classifier.pad_token_id,
            "unk": classifier.unk_token_id,
            "mask": classifier.mask_token_id,
        }[self.params.baseline]
        if token_id is None:
            raise PluginError(
                f"baseline '{self.params.baseline}' is not available: the tokenizer has no such token"
            )
        ids = torch.where(real, torch.full_like(encoding.input_ids, token_id), encoding.input_ids)
        return classifier.input_embeddings(ids).detach()

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        embeddings, extra = embedded_inputs(classifier, encoding)
        attributions = CaptumIntegratedGradients(forward_function(classifier, self.params.output)).attribute(
            embeddings,
            baselines=self.baseline_embeddings(classifier, encoding),
            target=targets,
            additional_forward_args=extra,
            n_steps=self.params.n_steps,
            internal_batch_size=self.params.internal_batch_size,
        )
        return attributions.sum(dim=-1)
