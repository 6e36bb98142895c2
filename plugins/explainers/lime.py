"""LIME on the model's own tokens: a locally weighted linear surrogate fitted on random token removals."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from harness import (
    Classifier,
    Encoding,
    Explainer,
    PerturbationParams,
    centred_model,
    engine_inputs,
    example_seed,
    presence_function,
    removable_positions,
)

# What lime's own text sampler puts where a feature is removed; never a feature's name (those are numbers).
_REMOVED = "_"


class LimeParams(PerturbationParams):
    backend: Literal["lime", "captum"] = Field(
        "lime",
        description="lime: the lime package's LimeTextExplainer (draws how many tokens to remove uniformly, "
        "then which); captum: captum.attr.Lime (keeps each token with probability ½). Both fit a weighted "
        "ridge surrogate with the same kernel on the same features",
    )
    samples: int = Field(
        500,
        ge=2,
        description="perturbed inputs per example, each one forward pass: the runtime is proportional to it "
        "(minilm-head, 128 tokens, 2 CPU cores: about 11 s per example at 500)",
    )
    kernel_width: float = Field(
        0.25,
        gt=0,
        description="width σ of the sample weight exp(−d²/2σ²), d the cosine distance between the sample's "
        "kept/removed vector and the full input's (lime's default: 25 on 100·d, the same kernel)",
    )
    alpha: float = Field(1.0, ge=0, description="L2 penalty of the ridge surrogate (lime's default: 1)")


class Lime(Explainer):
    """LIME: the weights of a linear surrogate of the target output, fitted on random removals of tokens.

    One interpretable feature per real token the model read (truncation included; special tokens are never
    removed and score 0), so that the weights map back to token positions exactly. Removed tokens are
    replaced (``masking``) in the model's ids and every perturbed input runs through the shared
    perturbation engine; nothing is re-tokenised. Samples are seeded per example.
    Ribeiro, Singh & Guestrin 2016, "Why Should I Trust You?": Explaining the Predictions of Any Classifier.
    """

    name: ClassVar[str] = "lime"
    Params = LimeParams
    paper: ClassVar[str] = (
        'Ribeiro, Singh & Guestrin 2016, "Why Should I Trust You?": Explaining the Predictions of Any Classifier'
    )

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        params = self.params
        fit = lime_package_weights if params.backend == "lime" else captum_lime_weights
        scores = torch.zeros(encoding.input_ids.shape, dtype=torch.float64)
        for row, item in enumerate(engine_inputs(encoding)):
            positions = removable_positions(encoding, row)
            if len(positions) == 0:
                continue
            forward = presence_function(
                classifier,
                item,
                positions,
                int(targets[row]),
                masking=params.masking,
                output=params.output,
                batch_size=params.batch_size,
            )
            weights = fit(forward, len(positions), params, example_seed(self.seed, encoding, row))
            scores[row, torch.from_numpy(positions)] = torch.from_numpy(weights)
        return scores.to(classifier.device)


def lime_package_weights(
    forward: Callable[[np.ndarray], np.ndarray], n: int, params: LimeParams, seed: int
) -> np.ndarray:
    """``LimeTextExplainer`` over n features that are the model's tokens, named by their rank ("0 1 2 …",
    ``bow=False``): lime removes features by position, and the kept/removed vector of each sample is read
    back from its string exactly, whatever the tokens' text."""
    from lime.lime_text import LimeTextExplainer
    from sklearn.linear_model import Ridge

    def classifier_fn(texts: list[str]) -> np.ndarray:
        present = np.array([[word != _REMOVED for word in text.split(" ")] for text in texts])
        return forward(present)[:, None]

    explainer = LimeTextExplainer(
        kernel_width=100 * params.kernel_width,  # lime measures distances as 100 × cosine distance
        split_expression=str.split,
        bow=False,
        mask_string=_REMOVED,
        feature_selection="none",
        random_state=seed,
    )
    explanation = explainer.explain_instance(
        " ".join(str(feature) for feature in range(n)),
        classifier_fn,
        labels=(0,),
        num_features=n,
        num_samples=params.samples,
        model_regressor=Ridge(alpha=params.alpha),
    )
    weights = np.zeros(n)
    for feature, weight in explanation.local_exp[0]:
        weights[feature] = weight
    return weights


def captum_lime_weights(
    forward: Callable[[np.ndarray], np.ndarray], n: int, params: LimeParams, seed: int
) -> np.ndarray:
    """captum ``Lime`` on the kept/removed vector of the n tokens (feature i = token i), ridge surrogate;
    all samples go to the engine in one call."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime as CaptumLime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    model = centred_model(forward, n)
    method = CaptumLime(
        model,
        interpretable_model=SkLearnRidge(alpha=params.alpha),
        similarity_func=get_exp_kernel_similarity_function("cosine", params.kernel_width),
    )
    with torch.random.fork_rng(devices=[]):  # captum samples from torch's global generator
        torch.manual_seed(seed)
        weights = method.attribute(
            torch.ones(1, n),
            baselines=torch.zeros(1, n),
            feature_mask=torch.arange(n)[None],
            n_samples=params.samples,
            perturbations_per_eval=params.samples,
        )
    return weights.detach().to(torch.float64).numpy()[0]
