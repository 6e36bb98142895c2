"""What every transformers-based classifier shares: a tokenizer, a torch network, the captum pattern.

``TransformersClassifier`` implements ``encode`` (through ``encode_with_tokenizer``), ``input_embeddings``
(the network's word-embedding layer), ``logits`` (ids or word embeddings in; the model adds position
and token-type embeddings itself), ``attentions`` and ``hidden_layer``. Subclasses say how the network
turns its inputs into logits.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property

import torch

from harness.classifier import Classifier, Encoding
from harness.data import Example
from harness.errors import PluginError
from harness.tokenization import encode_with_tokenizer

_TRUE = {"1", "on", "yes", "true"}
# Where a base model holds its layers: encoders (BERT, RoBERTa, ELECTRA; DistilBERT), decoders (Llama,
# Qwen2, Mistral; GPT-2).
_LAYER_LISTS = (("encoder", "layer"), ("transformer", "layer"), ("layers",), ("h",))


@contextmanager
def eager_attention(model) -> Iterator[None]:
    """Run a transformers model with its ``eager`` attention implementation, the one that can return
    attention probabilities (``sdpa`` and flash kernels never form them), then restore the original.
    Only calls inside the block are affected: the implementations agree to float tolerance, not bit for
    bit, so the normal path (logits, explainers, metrics) keeps its own."""
    original = getattr(model.config, "_attn_implementation", None)
    if original in (None, "eager"):
        yield
        return
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError, ImportError) as error:
        raise PluginError(
            f"{type(model).__name__} cannot switch to eager attention, needed for attention weights: {error}"
        ) from error
    try:
        yield
    finally:
        model.set_attn_implementation(original)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load reports (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress_bar:
            hf_logging.enable_progress_bar()


def hub_offline() -> bool:
    """Whether Hugging Face Hub access is switched off. huggingface_hub reads ``HF_HUB_OFFLINE`` once at
    import, so the environment is read again here: setting it later still counts."""
    import huggingface_hub

    from_env = any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return from_env or huggingface_hub.is_offline_mode()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over the sequence: (B, L, D), (B, L) -> (B, D)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class TransformersClassifier(Classifier):
    """A classifier made of a Hugging Face fast tokenizer and a torch network whose word embeddings
    explainers differentiate. Frozen (``requires_grad_(False)``) and in ``eval()`` mode on ``device``."""

    def __init__(
        self,
        network: torch.nn.Module,
        tokenizer,
        labels: Sequence[str],
        max_length: int,
        device: torch.device | str,
    ):
        self.network = network
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.max_length = max_length
        self.device = torch.device(device)
        self.pad_token_id = tokenizer.pad_token_id
        self.unk_token_id = tokenizer.unk_token_id
        self.mask_token_id = tokenizer.mask_token_id
        # Models without segment embeddings (RoBERTa, DistilBERT) get no token_type_ids.
        self.uses_token_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.training_report: dict = {}
        self.network.to(self.device).eval().requires_grad_(False)

    @property
    @abstractmethod
    def word_embeddings(self) -> torch.nn.Module:
        """The layer that maps input ids to word embeddings."""

    @abstractmethod
    def forward(
        self,
        *,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        """Class logits from exactly one of ``input_ids`` / ``inputs_embeds`` (already on the device)."""

    def encode(self, examples: Sequence[Example]) -> Encoding:
        encoding = encode_with_tokenizer(self.tokenizer, examples, self.max_length, self.device)
        if not self.uses_token_type_ids:
            encoding.token_type_ids = None
        return encoding

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids.to(self.device))

    def logits(
        self,
        *,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # No no_grad here: explainers differentiate through this call (w.r.t. inputs_embeds or, via
        # hooks, a layer's output). The parameters do not require grad, so without such an input no
        # autograd graph is built anyway.
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        return self.forward(
            attention_mask=attention_mask.to(self.device),
            input_ids=None if input_ids is None else input_ids.to(self.device),
            inputs_embeds=None if inputs_embeds is None else inputs_embeds.to(self.device),
            token_type_ids=(
                token_type_ids.to(self.device)
                if token_type_ids is not None and self.uses_token_type_ids
                else None
            ),
        )

    @cached_property
    def is_causal(self) -> bool:
        """Whether the transformers model attends causally, each position to itself and those before it, as
        its attention modules declare (transformers' ``is_causal``): a decoder (Llama, Qwen2, GPT-2...),
        which reads its prediction off the last real position rather than the first."""
        return any(getattr(module, "is_causal", False) is True for module in self.network.modules())

    def output_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The first position for an encoder; the last attended position for a causal decoder."""
        if not self.is_causal:
            return super().output_positions(attention_mask)
        mask = attention_mask.to(torch.long)
        return (torch.arange(mask.shape[-1], device=mask.device) * mask).argmax(-1)

    @property
    def attention_model(self) -> torch.nn.Module:
        """The transformers model whose attentions ``attentions`` returns: the network itself when it is a
        ``PreTrainedModel`` (``hf``), else the first one inside it (``minilm-head``'s encoder)."""
        from transformers import PreTrainedModel

        for module in self.network.modules():
            if isinstance(module, PreTrainedModel):
                return module
        raise PluginError(f"model {type(self).__name__} holds no transformers model to read attentions from")

    def hidden_layer(self, index: int) -> torch.nn.Module:
        """Layer ``index`` of the transformers model (``attention_model``'s base model): 0 is the
        word-embedding layer, ``k`` ≥ 1 the ``k``-th encoder layer (``encoder.layer``, as BERT, RoBERTa
        and ELECTRA hold them, or ``transformer.layer``, as DistilBERT does), whose output is the model's
        ``hidden_states[k]``; decoders hold them in ``layers`` (Llama, Qwen2, Mistral) or ``h`` (GPT-2).
        Other architectures, and indices past the last layer, raise ``PluginError``."""
        if index < 0:
            raise PluginError(f"hidden layer {index}: layers are numbered from 0 (the word embeddings)")
        if index == 0:
            return self.word_embeddings
        base = self.attention_model.base_model
        layers = None
        for path in _LAYER_LISTS:
            candidate = base
            for name in path:
                candidate = getattr(candidate, name, None)
            if isinstance(candidate, torch.nn.ModuleList):
                layers = candidate
                break
        if layers is None:
            raise PluginError(
                f"model {type(self).__name__} ({type(base).__name__}) holds its layers in none of "
                f"{', '.join('.'.join(path) for path in _LAYER_LISTS)}; only layer 0 (the word embeddings) "
                "is available"
            )
        if index > len(layers):
            raise PluginError(
                f"hidden layer {index}: model {type(self).__name__} ({type(base).__name__}) has "
                f"{len(layers)} encoder layers (0 = the word embeddings, 1..{len(layers)} = the layers)"
            )
        return layers[index - 1]

    @torch.no_grad()
    def attentions(self, encoding: Encoding) -> tuple[torch.Tensor, ...]:
        """Per-layer attention probabilities, each (B, heads, L, L), from a forward pass with the eager
        attention implementation (see ``eager_attention``); rows are queries, columns keys, and padded
        keys get zero weight."""
        model = self.attention_model
        inputs = {
            "input_ids": encoding.input_ids.to(self.device),
            "attention_mask": encoding.attention_mask.to(self.device),
        }
        if encoding.token_type_ids is not None and self.uses_token_type_ids:
            inputs["token_type_ids"] = encoding.token_type_ids.to(self.device)
        with eager_attention(model):
            attentions = model(**inputs, output_attentions=True).attentions
        if not attentions:
            raise PluginError(f"model {type(model).__name__} returned no attention weights")
        return tuple(attentions)

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.network]
