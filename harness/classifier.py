"""The model as explainers and metrics see it: encode texts, embed ids, return logits.

Every model plugin returns a ``Classifier``. Explainers call ``input_embeddings`` and ``logits`` (the
captum pattern: word embeddings in, logits out, attention mask alongside); metrics call ``logits`` on
perturbed ids. Tokenisation happens once, in ``encode``: the tokens, character offsets and word ids it
returns travel with every attribution, so masking, rationale matching and display agree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from harness.data import Example


@dataclass
class Encoding:
    """A padded batch of encoded examples.

    Per example (unpadded, one entry per real token): ``tokens``, ``offsets`` (character ``[start,
    end)`` in the segment's own text), ``word_ids`` (unique across both segments of a pair, ``None`` for
    special tokens) and ``segments`` (0 = ``text``, 1 = ``text_pair``, -1 = special token such as
    [CLS]/[SEP], which no metric ever removes).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    tokens: list[list[str]]
    offsets: list[list[tuple[int, int]]]
    word_ids: list[list[int | None]]
    segments: list[list[int]]
    example_ids: list[str] = field(
        default_factory=list
    )  # set by the runner; lets explainers seed per example

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> Encoding:
        return Encoding(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            None if self.token_type_ids is None else self.token_type_ids.to(device),
            self.tokens,
            self.offsets,
            self.word_ids,
            self.segments,
            self.example_ids,
        )

    @property
    def special_mask(self) -> torch.Tensor:
        """True where a position is a special token or padding: never attributed, never removed."""
        mask = torch.ones_like(self.input_ids, dtype=torch.bool)
        for row, segments in enumerate(self.segments):
            mask[row, : len(segments)] = torch.tensor([s < 0 for s in segments])
        return mask


class Classifier(ABC):
    """A trained text classifier, ready for explanation (``eval()`` mode, on its device)."""

    labels: tuple[str, ...]
    device: torch.device
    pad_token_id: int
    unk_token_id: int | None = None
    mask_token_id: int | None = None

    @abstractmethod
    def encode(self, examples: Sequence[Example]) -> Encoding:
        """Tokenise (with truncation) and pad a batch, on ``self.device``."""

    @abstractmethod
    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings of ``input_ids`` (B, L, D): what gradient explainers differentiate."""

    @abstractmethod
    def logits(
        self,
        *,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits (B, K) from ids or from word embeddings (exactly one of the two)."""

    def output_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The position each row's prediction is read from (B,), for explainers that read one row of a
        per-position quantity (``attention``): the first position ([CLS], <s>) by default, as encoders pool
        it. A causal decoder, whose first position attends only to itself, reads the last attended
        position instead, and its classifier overrides this."""
        return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)

    def attentions(self, encoding: Encoding) -> tuple[torch.Tensor, ...]:
        """Per-layer attention probabilities, each (B, heads, L, L), for attention explainers.
        Models without attention raise ``PluginError`` (the cell fails with that message)."""
        from harness.errors import PluginError

        raise PluginError(f"model {type(self).__name__} exposes no attention weights")

    def class_vectors(self) -> torch.Tensor:
        """The learned class vectors (K, D) in the input-embedding space of a model trained with LDAV
        (``harness.ldav``), for the ``ldav`` explainer. Models without them raise ``PluginError``."""
        from harness.errors import PluginError

        raise PluginError(f"model {type(self).__name__} has no learned class vectors (train it with ldav)")

    def hidden_layer(self, index: int) -> torch.nn.Module:
        """The module whose forward output is the hidden state (B, L, D) after encoder layer ``index``
        (or whose output's first element is), for explainers that read or replace it with a forward hook
        (``iba``). ``index`` 0 is the word-embedding layer: its output is what ``input_embeddings``
        returns, before any position or segment embedding is added. Models that do not expose their
        layers raise ``PluginError`` (the cell fails with that message)."""
        from harness.errors import PluginError

        raise PluginError(
            f"model {type(self).__name__} exposes no hidden layers (only its input embeddings, layer 0)"
        )

    def torch_modules(self) -> list[torch.nn.Module]:
        """The modules whose parameters the model owns (for device moves and ``eval()``)."""
        return []

    @torch.no_grad()
    def log_probabilities(self, encoding: Encoding) -> torch.Tensor:
        """Class log-probabilities (B, K) in float64, exact in log space for confident predictions."""
        logits = self.logits(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
        )
        return torch.log_softmax(logits.double(), dim=-1)
