"""What the ``prompted-lm`` model (``plugins.models.hf.PromptedLM``) is made of: its parameters, the prompt
template, and the classifier that reads each class off a causal language model's next-token probabilities of
its label words (verbalizers). Private to ``hf.py``, whose loading the plugin shares."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import Field

from harness import (
    Encoding,
    Example,
    Params,
    PluginError,
    TextDataset,
    TransformersClassifier,
    quiet_transformers,
)

DEFAULT_TEMPLATE = "Review: {text}\nSentiment:"
DEFAULT_VERBALIZERS = {"negative": [" negative"], "positive": [" positive"]}
_FIELDS = ("text", "text_pair")
_PAIR_JOIN = "\n"  # between a pair's two texts when the template names only {text} (see PromptTemplate)


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template cut at its placeholders: ``literals[i]`` is the template's text before the
    ``i``-th field and ``literals[-1]`` the text after the last (one more literal than fields)."""

    literals: tuple[str, ...]
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> PromptTemplate:
        """The template's literals and fields: ``{text}`` once, then optionally ``{text_pair}`` once with
        something other than spaces between them; ``{{`` and ``}}`` stand for braces. Anything else raises
        a one-line ``PluginError``."""
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as error:
            raise PluginError(
                f"prompted-lm: template {template!r} is not a valid format string: {error}"
            ) from error
        literals, fields = [""], []
        for literal, field, spec, conversion in parts:
            literals[-1] += literal
            if field is None:
                continue
            if field not in _FIELDS or spec or conversion:
                raise PluginError(
                    f"prompted-lm: template {template!r} has the placeholder {{{field}"
                    f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; it may hold "
                    "only {text} and {text_pair} (write {{ and }} for literal braces)"
                )
            if field in fields:
                raise PluginError(f"prompted-lm: template {template!r} has {{{field}}} twice")
            fields.append(field)
            literals.append("")
        if "text" not in fields:
            raise PluginError(f"prompted-lm: template {template!r} has no {{text}} placeholder")
        if fields[0] != "text":
            raise PluginError(f"prompted-lm: template {template!r} puts {{text_pair}} before {{text}}")
        if len(fields) == 2 and not literals[1].rstrip(" "):
            raise PluginError(
                f"prompted-lm: template {template!r} must separate {{text}} from {{text_pair}} by more than "
                "spaces (e.g. a line break), or the two texts' tokens could not be told apart"
            )
        if not "".join(literals).strip():
            raise PluginError(
                f"prompted-lm: template {template!r} has no text of its own: the prediction would be read "
                "off a token of the example, which removal can delete"
            )
        return cls(tuple(literals), tuple(fields))

    @property
    def has_pair(self) -> bool:
        return "text_pair" in self.fields

    def with_pair(self) -> PromptTemplate:
        """The template a text pair is read through: itself when it names ``{text_pair}``; else ``{text}``
        stands for the first text, a line break and the second."""
        if self.has_pair:
            return self
        return PromptTemplate((self.literals[0], _PAIR_JOIN, *self.literals[1:]), ("text", "text_pair"))


@dataclass(frozen=True)
class _TokenisedTemplate:
    """A template as token ids: ``spaces[i]``, the spaces ending the literal before field ``i``, are
    tokenised with that field's text; ``pieces[i]``, the ids of literal ``i`` without them."""

    fields: tuple[str, ...]
    spaces: tuple[str, ...]
    pieces: tuple[tuple[int, ...], ...]

    @property
    def length(self) -> int:
        return sum(len(piece) for piece in self.pieces)


class PromptedClassifier(TransformersClassifier):
    """A causal language model with a prompt template and verbalizers, ready for explanation: the
    prompt is the input, its template tokens special (segment -1), and the class logits are the
    verbalizers' next-token log-probabilities after the prompt (see ``PromptedLM``)."""

    def __init__(
        self,
        network: torch.nn.Module,
        tokenizer,
        labels: Sequence[str],
        max_length: int,
        device: torch.device | str,
        *,
        template: PromptTemplate,
        verbalizer_ids: Sequence[Sequence[int]],
    ):
        super().__init__(network, tokenizer, labels, max_length, device)
        self.uses_token_type_ids = False  # decoders have no segment embeddings; the template marks the texts
        self.pad_token_id = _pad_id(tokenizer)
        self.template = template
        self.leading_ids = _leading_special_ids(tokenizer)
        self._tokenised = {template.has_pair: self._tokenise_template(template)}
        width = max(len(ids) for ids in verbalizer_ids)
        ids = torch.zeros(len(verbalizer_ids), width, dtype=torch.long)
        valid = torch.zeros(len(verbalizer_ids), width, dtype=torch.bool)
        for k, words in enumerate(verbalizer_ids):
            ids[k, : len(words)] = torch.tensor(list(words), dtype=torch.long)
            valid[k, : len(words)] = True
        self.verbalizer_ids, self.verbalizer_valid = ids.to(self.device), valid.to(self.device)

    @property
    def word_embeddings(self) -> torch.nn.Module:
        return self.network.get_input_embeddings()

    @property
    def attention_model(self) -> torch.nn.Module:
        """The decoder under the language-model head: its attentions need no vocabulary-wide logits."""
        return self.network.base_model

    def output_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last attended position of each row: where the next token, the verbalizer, is predicted."""
        mask = attention_mask.to(torch.long)
        return (torch.arange(mask.shape[-1], device=mask.device) * (mask != 0)).amax(-1)

    def forward(
        self,
        *,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        """Per class, the log-sum-exp of its verbalizers' next-token log-probabilities at the last attended
        position. The language-model head reads that position only (a forward pre-hook picks it from the
        hidden states), so no vocabulary-wide logits are formed for the other positions."""
        positions = self.output_positions(attention_mask)
        rows = torch.arange(len(positions), device=positions.device)

        def read_output_position(module, args):
            return (args[0][rows, positions].unsqueeze(1), *args[1:])

        head = self.network.get_output_embeddings()
        hook = None if head is None else head.register_forward_pre_hook(read_output_position)
        try:
            logits = self.network(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                use_cache=False,
            ).logits
        finally:
            if hook is not None:
                hook.remove()
        # (B, 1, V) through the hook; (B, L, V) from a model that bypasses its output embeddings
        next_token = logits[:, 0] if logits.shape[1] == 1 else logits[rows, positions]
        log_probabilities = torch.log_softmax(next_token.float(), dim=-1)
        ids, valid = self.verbalizer_ids.to(next_token.device), self.verbalizer_valid.to(next_token.device)
        words = log_probabilities[:, ids].masked_fill(~valid, float("-inf"))
        return torch.logsumexp(words, dim=-1)

    def encode(self, examples: Sequence[Example]) -> Encoding:
        """The prompt of each example (see ``PromptedLM``), padded on the right with ``pad_token_id``."""
        has_pairs = [example.text_pair is not None for example in examples]
        tokenised = [self._template_for(pair) for pair in has_pairs]
        strings = [
            template.spaces[i] + getattr(example, field)
            for example, template in zip(examples, tokenised, strict=True)
            for i, field in enumerate(template.fields)
        ]
        with quiet_transformers():  # no warning about texts longer than the model: they are truncated below
            batch = self.tokenizer(strings, add_special_tokens=False, return_offsets_mapping=True)
        rows, index = [], 0
        for template in tokenised:
            texts = [
                _text_tokens(batch, index + i, strings[index + i], len(template.spaces[i]))
                for i in range(len(template.fields))
            ]
            index += len(template.fields)
            rows.append(self._prompt_row(template, texts))
        width = max(len(row[0]) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for r, (ids, *_) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[r, : len(ids)] = 1
        return Encoding(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            token_type_ids=None,
            tokens=[row[1] for row in rows],
            offsets=[row[2] for row in rows],
            word_ids=[row[3] for row in rows],
            segments=[row[4] for row in rows],
        )

    def _template_for(self, pair: bool) -> _TokenisedTemplate:
        if pair not in self._tokenised:
            if not pair:
                raise PluginError(
                    "prompted-lm: an example without text_pair met a template with {text_pair}: "
                    "the template is for text pairs"
                )
            self._tokenised[pair] = self._tokenise_template(self.template.with_pair())
        return self._tokenised[pair]

    def _tokenise_template(self, template: PromptTemplate) -> _TokenisedTemplate:
        """The template's ids; raises ``PluginError`` when it leaves the texts less than a token each."""
        spaces, pieces = [], []
        for i, literal in enumerate(template.literals):
            if i < len(template.fields):  # spaces before a text go with it: ' word' is one token
                kept = literal.rstrip(" ")
                spaces.append(literal[len(kept) :])
                literal = kept
            pieces.append(
                tuple(self.tokenizer(literal, add_special_tokens=False)["input_ids"]) if literal else ()
            )
        tokenised = _TokenisedTemplate(template.fields, tuple(spaces), tuple(pieces))
        room = self.max_length - len(self.leading_ids) - tokenised.length
        if room < len(template.fields):
            raise PluginError(
                f"prompted-lm: the template takes {self.max_length - room} of max_length {self.max_length} "
                "tokens, leaving the text less than one; raise max_length or shorten the template"
            )
        return tokenised

    def _prompt_row(self, template: _TokenisedTemplate, texts: list[list[tuple]]) -> tuple[list, ...]:
        """(ids, tokens, offsets, word ids, segments) of one prompt: the leading special tokens, then each
        literal's tokens and each text's (truncated, longest first, to what ``max_length`` leaves them)."""
        room = self.max_length - len(self.leading_ids) - template.length
        lengths = _longest_first([len(text) for text in texts], room)
        ids, tokens, offsets, words, segments = [], [], [], [], []

        def add_template(piece: Sequence[int]) -> None:
            ids.extend(piece)
            tokens.extend(self.tokenizer.convert_ids_to_tokens(list(piece)))
            offsets.extend([(0, 0)] * len(piece))
            words.extend([None] * len(piece))
            segments.extend([-1] * len(piece))

        add_template(self.leading_ids)
        word_index: dict[tuple[int, int], int] = {}
        for i, (field, text) in enumerate(zip(template.fields, texts, strict=True)):
            add_template(template.pieces[i])
            for position, (token_id, token, span, word) in enumerate(text[: lengths[i]]):
                ids.append(token_id)
                tokens.append(token)
                if span is None:  # only whitespace: nothing of the text to remove or score
                    offsets.append((0, 0))
                    words.append(None)
                    segments.append(-1)
                    continue
                offsets.append(span)
                key = (i, position if word is None else word)
                words.append(word_index.setdefault(key, len(word_index)))
                segments.append(_FIELDS.index(field))
        add_template(template.pieces[-1])
        return ids, tokens, offsets, words, segments


Words = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class PromptedParams(Params):
    """Parameters of ``prompted-lm``."""

    path: str = Field(
        description="A local folder (save_pretrained layout) or a Hugging Face Hub id of a causal language "
        "model."
    )
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit); pin it for results."
    )
    template: str = Field(
        DEFAULT_TEMPLATE,
        description="The prompt: {text} where the example's text goes and, for a dataset of text pairs, "
        "{text_pair} where its second text goes ({{ and }} are literal braces). End it where the label word "
        "follows, without a trailing space: the verbalizers carry it.",
    )
    verbalizers: dict[str, Words] = Field(
        default_factory=lambda: {label: list(words) for label, words in DEFAULT_VERBALIZERS.items()},
        description="Per label name (every label of the dataset and no other), the words that say it, each "
        "one token of the tokenizer, written as it follows the template (' positive', with its space); a "
        "class's probability is the next-token probability of its words, renormalised over all the words.",
    )
    max_length: int = Field(
        256,
        ge=8,
        description="Tokens per prompt, the template's included (capped at the tokenizer's and the model's "
        "maximum); truncation cuts the texts, never the template.",
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint; off unless the suite says so."
    )


def check_verbalizer_labels(verbalizers: Mapping[str, Sequence[str]], dataset: TextDataset) -> None:
    """Verbalizers name exactly the dataset's labels."""
    missing = [label for label in dataset.labels if label not in verbalizers]
    unknown = [label for label in verbalizers if label not in dataset.labels]
    if missing or unknown:
        problems = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise PluginError(
            f"prompted-lm: verbalizers must name exactly the labels of dataset {dataset.name!r} "
            f"{list(dataset.labels)}: {'; '.join(problems)}"
        )


def verbalizer_token_ids(tokenizer, label: str, words: Sequence[str], path: str) -> list[int]:
    """The token id of each of a label's words; raises ``PluginError`` for a word that is not one token."""
    ids = []
    for word in words:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            shown = " + ".join(repr(tokenizer.decode([piece])) for piece in pieces) or "nothing"
            raise PluginError(
                f"prompted-lm: verbalizer {word!r} of label {label!r} is {len(pieces)} tokens for the "
                f"tokenizer of {path} ({shown}); each word must be one token (mind its leading space)"
            )
        ids.append(int(pieces[0]))
    return ids


def check_distinct_verbalizers(
    tokenizer, labels: Sequence[str], verbalizer_ids: Sequence[Sequence[int]]
) -> None:
    """No token says two labels, nor one label twice."""
    owner: dict[int, str] = {}
    for label, ids in zip(labels, verbalizer_ids, strict=True):
        for token_id in ids:
            if token_id in owner:
                others = "twice" if owner[token_id] == label else f"and label {owner[token_id]!r}"
                raise PluginError(
                    f"prompted-lm: the verbalizer token {tokenizer.decode([token_id])!r} is given for label "
                    f"{label!r} {others}; each token may say one label once"
                )
            owner[token_id] = label


def _text_tokens(batch, index: int, string: str, shift: int) -> list[tuple]:
    """(id, token, offsets or None, word) for each token of ``string``, item ``index`` of ``batch``:
    offsets into the example's own text (``string`` less its first ``shift`` characters, the template's
    spaces), trimmed of whitespace; None for a token of whitespace only."""
    result = []
    for token_id, token, (start, end), word in zip(
        batch["input_ids"][index],
        batch.tokens(index),
        batch["offset_mapping"][index],
        batch.word_ids(index),
        strict=True,
    ):
        while start < end and string[start].isspace():
            start += 1
        while end > start and string[end - 1].isspace():
            end -= 1
        span = (start - shift, end - shift) if start < end else None
        result.append((int(token_id), token, span, word))
    return result


def _longest_first(lengths: list[int], room: int) -> list[int]:
    """How many tokens each text keeps when together they may hold ``room``: a token at a time off the
    longest (on a tie, the later text), as transformers' ``longest_first`` truncation does."""
    lengths = list(lengths)
    while sum(lengths) > room:
        longest = max(range(len(lengths)), key=lambda i: (lengths[i], i))
        lengths[longest] -= 1
    return lengths


def _leading_special_ids(tokenizer) -> tuple[int, ...]:
    """The ids the tokenizer puts before a text (a beginning-of-sequence token, as Llama's does); what it
    would put after one (an end-of-sequence token) is left out: the prompt ends where the label is read."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return tuple(full[:start])
    return ()


def _pad_id(tokenizer) -> int:
    """The padding id: the tokenizer's, else its eos token's, else 0 (any id will do: padding is on the
    right and attention-masked, so no prediction reads it)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0
