"""What gradient explainers share: the model as captum's forward (word embeddings in), reference
inputs, per-example noise drawn independently of the batch, and bounded-memory passes. Part of the plugin
API (``from harness import ...``); the built-in gradient explainers (``saliency``, ``smoothgrad``,
``integrated-gradients``, ``deeplift``, ``lrp``) are written with it."""

from __future__ import annotations

from typing import Literal

import torch

from harness.classifier import Classifier, Encoding
from harness.errors import PluginError
from harness.seeds import example_rng

GradientOutput = Literal["logit", "probability"]
GRADIENT_OUTPUT_DOC = "the differentiated output of the target class: its logit, or its softmax probability"
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


def forward_function(classifier: Classifier, output: GradientOutput):
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
    output: GradientOutput,
) -> torch.Tensor:
    """Per-token gradient scores (B, L) of the target output at ``embeddings`` (which require grad)."""
    from captum.attr import InputXGradient, Saliency  # imported on use: captum is slow to import

    forward = forward_function(classifier, output)
    if reduction == "input_x_gradient":
        products = InputXGradient(forward).attribute(
            embeddings, target=targets, additional_forward_args=extra
        )
        return products.sum(dim=-1)
    gradients = Saliency(forward).attribute(
        embeddings, target=targets, additional_forward_args=extra, abs=False
    )
    return gradients.norm(dim=-1) if reduction == "l2" else gradients.sum(dim=-1)
