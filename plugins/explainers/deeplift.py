"""Propagation explainers on the input word embeddings: DeepLIFT, DeepLIFT-SHAP and LRP, with captum.

captum computes them as modified backward passes whose rules hang on ``nn.Module`` objects of known
types. A layer type without a rule, or an operation written in the model's code rather than as a module,
is silently back-propagated as a plain gradient, and the result is then neither DeepLIFT nor LRP. So
before answering these explainers check the model. Where the result would not be the method, they raise
``PluginError`` and say why; they never return scores under the wrong name.

What this gives on the models we ship (captum 0.9):

- ``bow`` (embedding mean → Linear): DeepLIFT and DeepLIFT-SHAP are exact. The model is linear in its
  embeddings, so DeepLIFT is (x − x̄)·∇f. LRP is refused: the mean pooling happens in the model's code, and
  captum would spread each pooled dimension's relevance evenly over the tokens.
- ``minilm-head`` / ``hf`` (BERT-style encoders): all three are refused. GELU, LayerNorm and the attention
  softmax and products have no DeepLIFT rule in captum, and captum runs DeepLIFT anyway without a
  warning about them. Its scores then miss f(x) − f(x̄) by as much as the difference itself. LRP has no
  rule for LayerNorm, GELU or embeddings.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from captum.attr import LRP as CaptumLRP
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from captum.attr._utils.lrp_rules import EpsilonRule
from pydantic import Field
from torch import nn

from harness import (
    BASELINE_DOC,
    Baseline,
    Classifier,
    Encoding,
    Explainer,
    ExplainerParams,
    PluginError,
    baseline_embeddings,
    example_generators,
    example_noise,
    real_token_scale,
)

# Leaf modules that are affine in their input in eval mode, or constant with respect to the word
# embeddings (position and token-type tables): DeepLIFT's linear rule is their gradient.
_AFFINE = (
    nn.Linear,
    nn.Embedding,
    nn.Dropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
# captum's Softmax rule subtracts a mean over the whole gradient tensor, which mixes the examples of a
# batch (and each example with its reference), so it is not accepted as a DeepLIFT rule here.
_DEEPLIFT_RULES = tuple(kind for kind in SUPPORTED_NON_LINEAR if kind is not nn.Softmax)
_LRP_RULES = (*SUPPORTED_LAYERS_WITH_RULES, *SUPPORTED_NON_LINEAR_LAYERS)
_LRP_WEIGHTED = tuple(SUPPORTED_LAYERS_WITH_RULES)

# A DeepLIFT result must satisfy summation-to-delta: Σ scores = f(x) − f(x̄). The check allows for
# float32 rounding: |gap| ≤ 1e-3 · (|f(x)| + |f(x̄)|) + 1e-4.
_COMPLETENESS_RTOL = 1e-3
_COMPLETENESS_ATOL = 1e-4


class EmbeddingsToLogits(nn.Module):
    """captum's view of a classifier: word embeddings in, logits out, with the attention mask (and token
    types) as additional forward arguments. ``layers`` are registered as children so that captum finds
    them and hangs its rules on them. The classifier itself is held as a plain callable, so it is never
    registered twice."""

    def __init__(self, classifier: Classifier, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.classifier_logits = classifier.logits

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.classifier_logits(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids
        )


@dataclass
class _Call:
    module: nn.Module
    input: torch.Tensor | None
    output: torch.Tensor | None


@dataclass
class _Trace:
    """The leaf modules one forward pass from word embeddings ran, in order."""

    embeddings: torch.Tensor
    logits: torch.Tensor
    calls: list[_Call]

    @property
    def modules(self) -> list[nn.Module]:
        unique: dict[int, nn.Module] = {}
        for call in self.calls:
            unique.setdefault(id(call.module), call.module)
        return list(unique.values())

    def types_without(self, allowed: tuple[type, ...]) -> list[str]:
        return sorted({type(module).__name__ for module in self.modules if not isinstance(module, allowed)})

    def repeated(self, kinds: tuple[type, ...]) -> list[str]:
        counts: dict[int, int] = {}
        for call in self.calls:
            if isinstance(call.module, kinds):
                counts[id(call.module)] = counts.get(id(call.module), 0) + 1
        return sorted(
            {type(m).__name__ for m in self.modules if counts.get(id(m), 0) > 1 and isinstance(m, kinds)}
        )


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def trace_leaf_modules(classifier: Classifier, encoding: Encoding) -> _Trace:
    """Run the classifier once from word embeddings (first example only) and record every leaf module of
    ``classifier.torch_modules()`` that ran, with its input and output tensors."""
    leaves: dict[int, nn.Module] = {}
    for root in classifier.torch_modules():
        for module in root.modules():
            if next(module.children(), None) is None:
                leaves.setdefault(id(module), module)
    calls: list[_Call] = []

    def record(module, inputs, output):
        calls.append(_Call(module, _first_tensor(inputs), _first_tensor(output)))

    with torch.no_grad():
        embeddings = classifier.input_embeddings(encoding.input_ids[:1]).detach()
        handles = [module.register_forward_hook(record) for module in leaves.values()]
        try:
            logits = classifier.logits(
                inputs_embeds=embeddings,
                attention_mask=encoding.attention_mask[:1],
                token_type_ids=None if encoding.token_type_ids is None else encoding.token_type_ids[:1],
            )
        finally:
            for handle in handles:
                handle.remove()
    return _Trace(embeddings, logits, calls)


def _same_storage(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether ``a`` is ``b`` or a reshaped view of it (same data, same number of elements)."""
    return a is not None and b is not None and a.data_ptr() == b.data_ptr() and a.numel() == b.numel()


@contextmanager
def _quiet_captum() -> Iterator[None]:
    """captum warns on every DeepLIFT call that it sets hooks (and removes them): expected, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        yield


def _rows(tensor: torch.Tensor | None, chunk: slice) -> torch.Tensor | None:
    return None if tensor is None else tensor[chunk]


class DeepLiftParams(ExplainerParams):
    baseline: Baseline = Field("pad", description=BASELINE_DOC)
    internal_batch_size: int = Field(
        64, ge=1, description="examples per DeepLIFT pass (each pass runs them and their references)"
    )


class DeepLift(Explainer):
    """DeepLIFT (rescale rule) of the target logit on the input word embeddings, summed per token.

    Shrikumar et al. 2017, Learning Important Features Through Propagating Activation Differences. Each
    token's score is Σ_d (x − x̄)_d · m_d. The multipliers m come from captum's ``DeepLift``, and the
    reference x̄ is the sequence with every real token replaced by the ``baseline`` token (special tokens
    kept), as for integrated gradients. The scores sum to f(x) − f(x̄) (summation-to-delta), and every
    batch is checked for that.

    The target's logit is explained, not its probability: captum's softmax rule mixes the examples of a
    batch. Models with layers that captum has no DeepLIFT rule for (GELU, LayerNorm, attention: every
    transformer) raise ``PluginError``, because captum would back-propagate their gradients instead and
    call the result DeepLIFT. See the module docstring.
    """

    name: ClassVar[str] = "deeplift"
    Params = DeepLiftParams
    paper: ClassVar[str] = (
        "Shrikumar et al. 2017, Learning Important Features Through Propagating Activation Differences"
    )

    def check_model(self, classifier: Classifier, encoding: Encoding) -> None:
        """Raise ``PluginError`` where captum's DeepLIFT would not compute DeepLIFT for this model."""
        trace = trace_leaf_modules(classifier, encoding)
        missing = trace.types_without((*_AFFINE, *_DEEPLIFT_RULES))
        if missing:
            raise PluginError(
                f"{self.name} is not supported for this model: captum has no DeepLIFT rule for "
                f"{', '.join(missing)} and would back-propagate their plain gradients instead, so the "
                f"scores would not be DeepLIFT (captum's rules cover {_names(_DEEPLIFT_RULES)})"
            )
        repeated = trace.repeated(_DEEPLIFT_RULES)
        if repeated:
            raise PluginError(
                f"{self.name} is not supported for this model: the non-linear module(s) {', '.join(repeated)} "
                "run more than once per forward pass, which captum's DeepLIFT cannot handle"
            )

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        self.check_model(classifier, encoding)
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        references = baseline_embeddings(classifier, encoding, self.params.baseline)
        return self.deeplift(
            classifier,
            embeddings,
            references,
            targets,
            encoding.attention_mask,
            encoding.token_type_ids,
            self.params.internal_batch_size,
        )

    def deeplift(
        self,
        classifier: Classifier,
        embeddings: torch.Tensor,
        references: torch.Tensor,
        targets: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        rows_per_pass: int,
    ) -> torch.Tensor:
        """Token scores (N, L) of DeepLIFT of each row against its own reference, checked for
        summation-to-delta."""
        model = EmbeddingsToLogits(classifier, classifier.torch_modules())
        scores = []
        for start in range(0, len(embeddings), rows_per_pass):
            chunk = slice(start, start + rows_per_pass)
            extra = (attention_mask[chunk], _rows(token_type_ids, chunk))
            inputs, baselines = embeddings[chunk].clone().requires_grad_(True), references[chunk]
            with _quiet_captum():
                attributions = CaptumDeepLift(model).attribute(
                    inputs, baselines=baselines, target=targets[chunk], additional_forward_args=extra
                )
            self._check_completeness(model, inputs.detach(), baselines, targets[chunk], extra, attributions)
            scores.append(attributions.detach().sum(dim=-1))
        return torch.cat(scores)

    def _check_completeness(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        baselines: torch.Tensor,
        targets: torch.Tensor,
        extra: tuple,
        attributions: torch.Tensor,
    ) -> None:
        """DeepLIFT's scores sum to f(x) − f(x̄). If they do not, some non-linear operation in the model's
        code (not a module captum could see) was treated as linear, so the scores are not DeepLIFT."""
        with torch.no_grad():
            both = model(
                torch.cat([inputs, baselines]),
                *(None if tensor is None else torch.cat([tensor, tensor]) for tensor in extra),
            )
        rows = torch.arange(len(inputs), device=both.device)
        output = both[: len(inputs)][rows, targets]
        reference = both[len(inputs) :][rows, targets]
        gap = (attributions.detach().sum(dim=(1, 2)) - (output - reference)).abs()
        allowed = _COMPLETENESS_RTOL * (output.abs() + reference.abs()) + _COMPLETENESS_ATOL
        if (gap > allowed).any():
            worst = int((gap - allowed).argmax())
            raise PluginError(
                f"{self.name} is not supported for this model: its scores do not sum to "
                f"f(x) − f(baseline) (off by {float(gap[worst]):.3g} where the difference is "
                f"{float(output[worst] - reference[worst]):.3g}); the model has non-linear operations "
                "outside the modules captum has DeepLIFT rules for, which captum treats as linear"
            )


class DeepLiftShapParams(ExplainerParams):
    baseline: Baseline = Field("pad", description=BASELINE_DOC + "; the centre of the reference distribution")
    baselines: int = Field(
        8,
        ge=1,
        description="references per example, drawn around the baseline; their DeepLIFT scores are averaged",
    )
    noise: float = Field(
        0.1,
        ge=0,
        description="standard deviation of the Gaussian noise added to each reference's real-token "
        "embeddings, relative to the standard deviation of the example's real-token embeddings (tokens and "
        "dimensions pooled); 0 makes every reference the baseline, i.e. deeplift",
    )
    internal_batch_size: int = Field(64, ge=1, description="rows (examples × references) per DeepLIFT pass")


class DeepLiftShap(DeepLift):
    """DeepLIFT-SHAP: DeepLIFT averaged over a distribution of references, approximating SHAP values.

    Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions (DeepSHAP), on top of
    Shrikumar et al. 2017. The paper draws references from a background set of real inputs. Text inputs
    differ in length, so here each example gets ``baselines`` references of its own: the ``baseline``
    reference (as for deeplift) plus Gaussian noise on the real-token positions. Special tokens and padding
    are left unchanged. The noise's stdev is ``noise`` × the std of the example's real-token embeddings. It
    is drawn from a generator seeded from ``self.seed`` and the example alone.

    This computes what captum's ``DeepLiftShap`` computes: the mean over references of ``DeepLift``
    against each. captum's class shares one set of references across the whole batch, and these
    references are per example, so the batch is expanded here and captum's ``DeepLift`` runs on it. The
    same model checks as deeplift apply: every transformer raises ``PluginError``.
    """

    name: ClassVar[str] = "deeplift-shap"
    Params = DeepLiftShapParams
    paper: ClassVar[str] = (
        "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions; Shrikumar et al. 2017"
    )

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        p = self.params
        self.check_model(classifier, encoding)
        embeddings = classifier.input_embeddings(encoding.input_ids).detach()
        batch, length, dim = embeddings.shape
        real = ~encoding.special_mask.to(embeddings.device)
        stdev = p.noise * real_token_scale(embeddings, encoding)
        noise = example_noise(
            example_generators(self.seed, encoding), encoding, embeddings, p.baselines, stdev, positions=real
        )
        references = baseline_embeddings(classifier, encoding, p.baseline)[:, None] + noise

        def expand(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.repeat_interleave(p.baselines, dim=0)

        scores = self.deeplift(
            classifier,
            expand(embeddings),
            references.reshape(batch * p.baselines, length, dim),
            expand(targets),
            expand(encoding.attention_mask),
            expand(encoding.token_type_ids),
            p.internal_batch_size,
        )
        return scores.view(batch, p.baselines, length).mean(dim=1)


class LRPParams(ExplainerParams):
    epsilon: float = Field(
        1e-9,
        ge=0,
        description="ε of the LRP-ε rule on every layer with weights: stabilises the division by a layer's "
        "output; larger values absorb weak or contradictory relevance (captum's default 1e-9 ≈ LRP-0)",
    )


class LRP(Explainer):
    """Layer-wise relevance propagation (LRP-ε) of the target logit to the word embeddings, per token.

    Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
    Relevance Propagation; computed with captum's ``LRP``, relevance summed over each token's embedding
    dimensions. captum propagates relevance only through
    modules with a rule: Linear, Conv2d, pooling, BatchNorm2d, addition modules, and ReLU, Tanh and
    Dropout passed through. The whole path from the word embeddings to the logits must therefore be a
    chain of such modules, or captum passes relevance through the gaps as a gradient. So models with other
    layer types (LayerNorm, GELU, attention: every transformer) raise ``PluginError``. So do models that
    combine tokens in their own code, like ``bow``'s mean pooling: captum would spread each pooled
    dimension's relevance evenly over the tokens. None of the models shipped today qualifies.
    """

    name: ClassVar[str] = "lrp"
    Params = LRPParams
    paper: ClassVar[str] = (
        "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by "
        "Layer-Wise Relevance Propagation"
    )

    def check_model(self, classifier: Classifier, encoding: Encoding) -> list[nn.Module]:
        """The modules captum's LRP would propagate through, or ``PluginError`` where the result would not
        be LRP."""
        trace = trace_leaf_modules(classifier, encoding)
        if not trace.calls:
            raise PluginError(
                f"{self.name} is not supported for this model: it exposes no torch modules for captum to "
                "attach LRP rules to"
            )
        missing = trace.types_without(_LRP_RULES)
        if missing:
            raise PluginError(
                f"{self.name} is not supported for this model: captum has no LRP rule for "
                f"{', '.join(missing)} (its rules cover {_names(_LRP_RULES)})"
            )
        repeated = trace.repeated(_LRP_RULES)
        if repeated:
            raise PluginError(
                f"{self.name} is not supported for this model: {', '.join(repeated)} run more than once "
                "per forward pass, which captum's LRP cannot handle"
            )
        previous, previous_name = trace.embeddings, "the word embeddings"
        for call in trace.calls:
            if not _same_storage(call.input, previous):
                raise PluginError(
                    f"{self.name} is not supported for this model: {previous_name} reach "
                    f"{type(call.module).__name__} through operations in the model's code (such as pooling "
                    "over tokens or residual additions) that have no LRP rule; captum would pass relevance "
                    "through them as a gradient"
                )
            previous, previous_name = call.output, f"the output of {type(call.module).__name__}"
        if not _same_storage(trace.logits, previous):
            raise PluginError(
                f"{self.name} is not supported for this model: the logits are computed from "
                f"{previous_name} by operations in the model's code that have no LRP rule"
            )
        return trace.modules

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> torch.Tensor:
        layers = self.check_model(classifier, encoding)
        # Only the modules on the path: the word-embedding table (not run, the embeddings are the input)
        # has no rule, and captum requires one on every module it is given.
        model = EmbeddingsToLogits(classifier, layers)
        weighted = [layer for layer in layers if isinstance(layer, _LRP_WEIGHTED)]
        for layer in weighted:
            layer.rule = EpsilonRule(epsilon=self.params.epsilon)
        try:
            inputs = classifier.input_embeddings(encoding.input_ids).detach().requires_grad_(True)
            relevance = CaptumLRP(model).attribute(
                inputs,
                target=targets,
                additional_forward_args=(encoding.attention_mask, encoding.token_type_ids),
            )
        finally:
            for layer in weighted:  # captum removes the rules itself, unless it failed first
                if hasattr(layer, "rule"):
                    del layer.rule
        return relevance.detach().sum(dim=-1)


def _names(kinds: tuple[type, ...]) -> str:
    return ", ".join(sorted(kind.__name__ for kind in kinds))
