"""The per-sample information bottleneck of ``iba`` (Schulz et al. 2020, §3.1-3.2): the restricted
activations, their information capacity in closed form, and the forward hook that puts the bottleneck in
a hidden layer."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from harness import PluginError

NATS_PER_BIT = math.log(2.0)


def restricted(
    hidden: torch.Tensor,
    lam: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Z = λ ⊙ h + (1 − λ) ⊙ ε with ε = μ + σ ⊙ ``noise`` (``noise`` standard normal): the paper's Eq. 2,
    ε ~ N(μ, σ²) per dimension. ``lam`` broadcasts against ``hidden``; λ = 1 leaves h as it is."""
    return lam * hidden + (1.0 - lam) * (mean + std * noise)


def capacity(alpha: torch.Tensor, normalised: torch.Tensor) -> torch.Tensor:
    """Per feature, KL(P(Z|h) ‖ N(μ, σ²)) in nats, with λ = sigmoid(``alpha``) and ``normalised`` =
    (h − μ) / σ.

    Z|h ~ N(λh + (1 − λ)μ, (1 − λ)²σ²), so in units of σ around μ it is N(λ·n, (1 − λ)²) against N(0, 1):
    KL = −log(1 − λ) + ((1 − λ)² + λ²n²) / 2 − 1/2. log(1 − λ) is log sigmoid(−α), exact where λ
    rounds to 1 (α ≳ 17 in float32)."""
    lam = torch.sigmoid(alpha)
    log_keep_noise = torch.nn.functional.logsigmoid(-alpha)  # log(1 − λ)
    return -log_keep_noise + ((1.0 - lam) ** 2 + (lam * normalised) ** 2) / 2.0 - 0.5


def _hidden_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise PluginError(
        f"the hidden layer returned {type(output).__name__}, not a tensor or a tuple starting with one"
    )


def _with_hidden(output, hidden: torch.Tensor):
    if isinstance(output, torch.Tensor):
        return hidden
    return type(output)([hidden, *output[1:]]) if isinstance(output, list) else (hidden, *output[1:])


@contextmanager
def replaced_output(
    module: torch.nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Within the block, ``module``'s hidden state h (its output, or its output's first element, as
    transformers layers return either) is replaced by ``transform(h)``; the hook is removed on leaving,
    also when the block raises."""

    def hook(_module, _inputs, output):
        hidden = _hidden_of(output)
        replacement = transform(hidden)
        if replacement.shape != hidden.shape:
            raise PluginError(
                f"the bottleneck gave shape {tuple(replacement.shape)} for a hidden state of shape "
                f"{tuple(hidden.shape)}"
            )
        return _with_hidden(output, replacement)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
