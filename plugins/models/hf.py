"""The ``hf`` model: any Hugging Face sequence classifier, from a local folder or the Hub, used as is; and
``prompted-lm``: a causal language model prompted to classify (``_hf_prompt.py``), loaded the same way."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field

from harness import (
    TOKENIZER_PATTERNS,
    WEIGHT_PATTERNS,
    BenchError,
    Model,
    Params,
    PluginError,
    TextDataset,
    TransformersClassifier,
    files_fingerprint,
    hub_offline,
    quiet_transformers,
)
from plugins.models._hf_prompt import (
    PromptedClassifier,
    PromptedParams,
    PromptTemplate,
    check_distinct_verbalizers,
    check_verbalizer_labels,
    verbalizer_token_ids,
)

_CONFIG_FILE = "hf_model.json"
_GENERIC_LABEL = re.compile(r"LABEL_\d+")
# Hub ids are "name" or "owner/name"; anything else that is not an existing folder is a missing path.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_HUB_TIMEOUT_S = 10.0  # resolving a revision online: a slow or absent network fails fast

log = logging.getLogger("bench.models.hf")


class HuggingFaceClassifier(TransformersClassifier):
    """An ``AutoModelForSequenceClassification`` with its tokenizer, ready for explanation."""

    @property
    def word_embeddings(self) -> torch.nn.Module:
        return self.network.get_input_embeddings()

    def forward(
        self,
        *,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        """The network's logits, from ids or word embeddings alike.

        A decoder's ``*ForSequenceClassification`` finds the position it pools (the last one that is not
        padding) from ``input_ids``; given ``inputs_embeds`` alone it pools the last position, a pad for
        every row shorter than the batch (transformers only warns). So the network always gets ids: stand-in
        ids that hold the padding id exactly where the attention mask is 0 (the real ids elsewhere, or a
        non-padding id when only embeddings are given), with the word-embedding layer's output replaced by
        the embeddings (a forward hook): the pooled position is the last attended one, from ids and from
        embeddings, and an encoder computes exactly what it computes from its ids."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        inputs = {
            "input_ids": self._stand_in_ids(attention_mask, input_ids),
            "attention_mask": attention_mask,
        }
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hook = self.word_embeddings.register_forward_hook(lambda module, args, output: inputs_embeds)
        try:
            return self.network(**inputs).logits
        finally:
            hook.remove()

    def _stand_in_ids(self, attention_mask: torch.Tensor, input_ids: torch.Tensor | None) -> torch.Tensor:
        """Ids that tell the network where the padding is (see ``forward``): ``pad_id`` where the mask is 0,
        elsewhere the real id, or ``other_id`` where there is none or it is the padding id (an attended pad:
        a token removed by ``masking: pad``, or an eos that doubles as pad)."""
        pad_id = _text_config(self.network.config).pad_token_id
        pad_id = self.pad_token_id if pad_id is None else pad_id
        other_id = 1 if pad_id == 0 else 0
        attended = attention_mask.bool()
        ids = torch.full_like(attention_mask, other_id, dtype=torch.long) if input_ids is None else input_ids
        ids = torch.where(attended & (ids == pad_id), other_id, ids)
        return torch.where(attended, ids, pad_id)


class HuggingFaceParams(Params):
    """Parameters of ``hf``."""

    path: str = Field(description="A local folder (save_pretrained layout) or a Hugging Face Hub model id.")
    revision: str | None = Field(
        None, description="Hub revision (branch, tag or commit); pin it for results."
    )
    max_length: int = Field(
        256, ge=8, description="Tokens per input after truncation (capped at the tokenizer's maximum)."
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint; off unless the suite says so."
    )
    pad_token: str | None = Field(
        None,
        description="The token batches are padded with: by default the tokenizer's own, or its eos token when "
        "it has none (most LLM tokenizers; said in the run's log). Padding is attention-masked and on the "
        "right, so it never reaches a prediction; it is what masking: pad puts in place of a removed token.",
    )


class HuggingFaceModel(Model):
    """Any Hugging Face sequence classifier, from a local folder or a Hub id, used as is (no training).

    Loaded with ``AutoModelForSequenceClassification`` and ``AutoTokenizer`` (a fast one: character
    offsets are needed) and used as it is: its number of labels must equal the dataset's, and where its
    config names the labels they must be in the dataset's order. Weights are loaded in float32. A Hub id
    is looked up in the local Hugging Face cache first; offline it must be there.

    Encoders and decoders alike (BERT, RoBERTa, Llama, Qwen2, GPT-2...): batches are padded on the right
    whatever the tokenizer's ``padding_side``, a tokenizer without a padding token pads with its eos token
    (``pad_token``), and the position a decoder pools is the last attended one, from ids and from
    embeddings (``HuggingFaceClassifier.forward``). The model is checked when a run first builds it
    (``check_on_load``).

    The weights' identity, part of every cache key: for a local folder a content hash of its weight,
    config and tokenizer files (and ``*.py`` with ``trust_remote_code``); for a Hub id the commit the
    revision resolves to, from the local cache first (what is loaded) and else from the Hub.
    """

    name: ClassVar[str] = "hf"
    trainable: ClassVar[bool] = False
    check_on_load: ClassVar[bool] = True
    auto_class: ClassVar[str] = "AutoModelForSequenceClassification"  # what the checkpoint is loaded as
    # 2: decoders pool the last attended position from embeddings too; padding on the right; eos as pad
    version: ClassVar[str] = "2"
    Params: ClassVar[type[Params]] = HuggingFaceParams
    provides: ClassVar[frozenset[str]] = frozenset({"attentions"})  # Classifier.attentions

    params: HuggingFaceParams

    def build(
        self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"
    ) -> HuggingFaceClassifier:
        if variant != "default":
            raise PluginError(f"hf has no variant {variant!r} (known: default)")
        model, tokenizer = self._load_pretrained()
        _check_labels(model.config, dataset, self.params.path)
        if not getattr(tokenizer, "is_fast", False):
            raise PluginError(f"hf: {self.params.path} has no fast tokenizer (needed for character offsets)")
        _use_padding(model, tokenizer, self.params.pad_token, self.params.path)
        max_length = min(self.params.max_length, tokenizer.model_max_length)
        classifier = HuggingFaceClassifier(model, tokenizer, dataset.labels, max_length, device)
        classifier.training_report = {
            "path": self.params.path,
            "revision": self.params.revision,
            "model_class": type(model).__name__,
            "trained": False,
        }
        return classifier

    def save(self, classifier: HuggingFaceClassifier, directory: Path) -> None:
        """Nothing is trained, so only the reference to the model is written."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"plugin": self.name, "version": self.version, "params": self.params.model_dump()}
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    def load(self, directory: Path, dataset: TextDataset, device: torch.device) -> HuggingFaceClassifier:
        config = json.loads((Path(directory) / _CONFIG_FILE).read_text())
        return type(self)(self.Params(**config["params"])).build(dataset, seed=0, device=device)

    def maskings(self) -> frozenset[str] | None:
        """The token maskings its tokenizer supports, read from the tokenizer alone (a local folder, or a Hub
        id already in the local cache): ``pad`` always (eos stands in), ``mask`` and ``unk`` where it has
        them. None when the tokenizer cannot be read now (building the model then says why)."""
        from transformers import AutoTokenizer

        if self.params.trust_remote_code:
            return None  # reading it could run the checkpoint's code, which only bench run may allow
        try:
            source, hub = self._source()
            kwargs = {"revision": self.params.revision, "trust_remote_code": self.params.trust_remote_code}
            if hub:
                kwargs.update(cache_dir=str(hub_cache_dir()), local_files_only=True)
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception:  # noqa: BLE001 - unreadable here: the build reports it, with its reason
            return None
        present = {"mask": tokenizer.mask_token_id, "unk": tokenizer.unk_token_id}
        return frozenset({"pad", *(name for name, token in present.items() if token is not None)})

    def weights_identity(self) -> dict:
        """``{"source": "folder", "sha256": ..., "files": n}`` for a local folder (a fingerprint of its
        weight, config and tokenizer files: overwriting the weights changes it), ``{"source": "hub",
        "commit": ...}`` for a Hub id. Raises ``PluginError`` when a Hub revision cannot be resolved."""
        p = self.params
        source, hub = self._source()
        if not hub:
            patterns = WEIGHT_PATTERNS + TOKENIZER_PATTERNS + (("*.py",) if p.trust_remote_code else ())
            return {"source": "folder", **files_fingerprint(source, patterns)}
        return {"source": "hub", "commit": _resolve_commit(self.name, p.path, p.revision)}

    def _source(self) -> tuple[str, bool]:
        """What ``from_pretrained`` is given, and whether it is a Hub id (rather than a local folder)."""
        p = self.params
        local = Path(p.path).expanduser()
        if local.is_dir():
            return str(local), False
        if _HUB_ID.fullmatch(p.path):
            return p.path, True
        raise BenchError(f"{self.name}: model folder {p.path!r} does not exist")

    def _load_pretrained(self):
        """The network (``auto_class``, float32) and its tokenizer, from the folder or the Hub (its local
        cache first)."""
        import transformers

        p = self.params
        source, hub = self._source()
        auto_class = getattr(transformers, self.auto_class)
        kwargs = {"revision": p.revision, "trust_remote_code": p.trust_remote_code}
        if hub:  # the cache weights_identity reads
            kwargs["cache_dir"] = str(hub_cache_dir())

        def load(**extra):
            with quiet_transformers():
                model = auto_class.from_pretrained(source, dtype=torch.float32, **kwargs, **extra)
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs, **extra)
            return model, tokenizer

        # ValueError: a config the auto class cannot load (a classifier given to prompted-lm, say).
        if not hub:
            try:
                return load()
            except (OSError, ValueError) as error:
                raise BenchError(
                    f"{self.name}: could not load model from {p.path!r}: {_first_line(error)}"
                ) from error
        try:  # The cache first: no network round trip when the model is already here.
            return load(local_files_only=True)
        except OSError as error:
            if hub_offline():
                raise BenchError(_offline_message(self.name, p.path)) from error
        try:
            return load()
        except (OSError, ValueError) as error:
            if _is_connection_error(error):
                raise BenchError(_offline_message(self.name, p.path)) from error
            raise BenchError(f"{self.name}: could not load model {p.path!r}: {_first_line(error)}") from error


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache folder. huggingface_hub reads the environment once at import, so it is
    read again here: ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else ``HF_HOME/hub``,
    else huggingface_hub's default."""
    from huggingface_hub import constants

    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def cached_commit(model_id: str, revision: str | None) -> str | None:
    """The commit ``revision`` (default ``main``) of a Hub model resolves to in the local cache
    (``models--owner--name/refs/<revision>``, with its ``snapshots/<commit>`` folder), or None."""
    revision = revision or "main"
    folder = hub_cache_dir() / f"models--{model_id.replace('/', '--')}"
    if _COMMIT.fullmatch(revision):
        commit = revision
    else:
        try:
            commit = (folder / "refs" / revision).read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            return None
    return commit if _COMMIT.fullmatch(commit) and (folder / "snapshots" / commit).is_dir() else None


def _resolve_commit(plugin: str, model_id: str, revision: str | None) -> str:
    """The commit a Hub revision resolves to: a pinned commit as is, else from the local cache (what
    loading uses first), else from the Hub (short timeout; never when HF_HUB_OFFLINE is set)."""
    if revision is not None and _COMMIT.fullmatch(revision):
        return revision
    commit = cached_commit(model_id, revision)
    if commit is not None:
        return commit
    if hub_offline():
        raise PluginError(
            _unidentified_message(plugin, model_id, revision, "Hugging Face Hub access is off (offline)")
        )
    try:
        from huggingface_hub import HfApi

        commit = HfApi().model_info(model_id, revision=revision, timeout=_HUB_TIMEOUT_S).sha
    except Exception as error:
        if _is_connection_error(error):
            raise PluginError(
                _unidentified_message(plugin, model_id, revision, "the Hugging Face Hub cannot be reached")
            ) from error
        raise PluginError(
            f"{plugin}: could not resolve revision {revision or 'main'!r} of {model_id!r} on the Hugging Face Hub: "
            f"{_first_line(error)}"
        ) from error
    if not commit:
        raise PluginError(_unidentified_message(plugin, model_id, revision, "the Hub gave no commit"))
    return commit


def _unidentified_message(plugin: str, model_id: str, revision: str | None, why: str) -> str:
    return (
        f"{plugin}: cannot tell which weights {model_id!r} (revision {revision or 'main'!r}) are, needed for the "
        f"cache key: it is not in the local Hugging Face cache and {why}; pin 'revision' to a 40-character "
        "commit id, make the model available (download it into the cache), or give a local folder as 'path'"
    )


def _use_padding(model, tokenizer, pad_token: str | None, path: str) -> None:
    """Give the tokenizer its padding token (``pad_token``, else its own, else its eos token) and the
    model's config a padding id when it has none (a decoder needs one to find its pooled position)."""
    if pad_token is not None:
        if pad_token not in tokenizer.get_vocab():
            raise PluginError(
                f"hf: pad_token {pad_token!r} is not in the vocabulary of the tokenizer of {path}"
            )
        tokenizer.pad_token = pad_token
    elif tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise PluginError(
                f"hf: the tokenizer of {path} has neither a padding nor an eos token; set pad_token to one of "
                "its tokens"
            )
        tokenizer.pad_token = tokenizer.eos_token
        log.info(
            "hf: %s: the tokenizer has no padding token; padding with its eos token %r",
            path,
            tokenizer.eos_token,
        )
    config = _text_config(model.config)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id


def _text_config(config):
    """The config that holds the text model's token ids (the config itself, but for multimodal models)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _check_labels(config, dataset: TextDataset, path: str) -> None:
    if config.num_labels != len(dataset.labels):
        raise PluginError(
            f"hf: model {path} has {config.num_labels} labels, "
            f"dataset {dataset.name!r} has {len(dataset.labels)}"
        )
    names = [str((config.id2label or {}).get(i, "")) for i in range(config.num_labels)]
    if any(not name or _GENERIC_LABEL.fullmatch(name) for name in names):
        return
    model_order = [name.lower() for name in names]
    dataset_order = [label.lower() for label in dataset.labels]
    if sorted(model_order) == sorted(dataset_order) and model_order != dataset_order:
        raise PluginError(
            f"hf: model {path} orders its labels {names}, dataset {dataset.name!r} {list(dataset.labels)}"
        )


def _is_connection_error(error: BaseException) -> bool:
    """Whether a load failed for want of a network (rather than, say, an unknown model id)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if (
            "Connect" in name
            or "Timeout" in name
            or name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
        ):
            return True
        current = current.__cause__ or current.__context__
    return "couldn't connect" in str(error).lower()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _offline_message(plugin: str, model_id: str) -> str:
    return (
        f"{plugin}: could not download model {model_id!r}: this machine is offline and the model is not in the "
        "local Hugging Face cache; give a local folder as 'path' (e.g. one written by save_pretrained)"
    )


class PromptedLM(HuggingFaceModel):
    """A causal language model prompted to classify (zero- or few-shot): label words as the next token.

    Used as is (no training): each class is read off the model's next-token probabilities for its label
    words (verbalizers) after the prompt.

    The prompt is ``template`` with the example's text (and second text) in place. A class's logit is
    ``log Σ_w p(w | prompt)`` over its verbalizer words ``w``, from the language model's next-token
    distribution at the prompt's last token, so the class probabilities are that distribution
    renormalised over the verbalizers: ``p(k) = Σ_{w∈V_k} p(w) / Σ_j Σ_{w∈V_j} p(w)`` (Schick & Schütze
    2021's pattern-verbalizer pairs, with several words per class; Brown et al. 2020's prompting). Every
    verbalizer word must be one token; the defaults suit a sentiment dataset labelled ``negative`` /
    ``positive``: ``"Review: {text}\\nSentiment:"`` with ``" negative"`` / ``" positive"``.

    What is attributed: the example's tokens only. The template's tokens (and a beginning-of-sequence token
    the tokenizer adds) are special tokens (segment -1, no word): never removed, masked or scored, as
    [CLS] and [SEP] are; heat-maps colour the text's tokens and show the template's dimmed. Tokens of the
    text that are only whitespace (a double space, a line break, a space the vocabulary joins to nothing
    after it) are special too: they hold no word. The text's tokens carry offsets into the example's own
    text (segment 0; the second text's, segment 1).

    Tokenisation: the template's pieces and the texts are tokenised apart and their ids joined, so no token
    straddles the template and a text. The spaces that end a piece before a text are tokenised with the
    text (``"Review: "`` then ``"good"`` gives ``"Review:"`` + ``" good"``, as the whole prompt would with
    byte-level BPE, whose words carry their leading space), and their tokens' offsets point into the text.
    A tokenizer that adds a word-start marker to every string it is given (SentencePiece's ``▁`` in
    Llama 2's) reads each piece after a text as if a space preceded it. Truncation to ``max_length`` cuts
    the texts from their end, the longest first, never the template. A template without ``{text_pair}``
    reads a pair (outside a run: ``build`` refuses a pair dataset for it) as the first text, a line break
    and the second.

    Inputs are padded on the right, whatever the tokenizer's ``padding_side``, so that position ids count
    from the prompt's first token in a batch as alone; with the tokenizer's padding token, else its eos
    token, else id 0 (most language-model tokenizers have no padding token; padding is attention-masked,
    and the id is what ``masking: pad`` puts in place of a removed token). Like most such tokenizers the
    model usually has no mask or unknown token: removal by ``mask`` (and ``unk``) is then unavailable, and
    ``delete`` or ``pad`` does it.

    Loaded as ``hf`` loads (``AutoModelForCausalLM`` and a fast tokenizer, float32, a Hub id from the
    local cache first), with the same weights identity. Attention weights come from the decoder
    (``provides: attentions``), read at the prompt's last token (``output_positions``).

    Limits: every verbalizer word is one token (a word the tokenizer splits is refused, not scored by its
    first token); the probabilities are the language model's, renormalised, not calibrated (no contextual
    calibration as in Zhao et al. 2021); few-shot demonstrations are fixed text written into the template
    (braces doubled), the same for every example, and never attributed.
    """

    name: ClassVar[str] = "prompted-lm"
    trainable: ClassVar[bool] = False
    check_on_load: ClassVar[bool] = True  # a model the plugin did not make: the run checks it (as hf's)
    auto_class: ClassVar[str] = "AutoModelForCausalLM"
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = (
        "Schick & Schütze 2021, Exploiting Cloze Questions for Few Shot Text Classification and Natural "
        "Language Inference"
    )
    Params: ClassVar[type[Params]] = PromptedParams
    provides: ClassVar[frozenset[str]] = frozenset({"attentions"})  # Classifier.attentions

    params: PromptedParams

    def build(
        self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"
    ) -> PromptedClassifier:
        if variant != "default":
            raise PluginError(f"prompted-lm has no variant {variant!r} (known: default)")
        p = self.params
        template = PromptTemplate.parse(p.template)
        if template.has_pair and not dataset.is_pair:
            raise PluginError(
                f"prompted-lm: template {p.template!r} has {{text_pair}} but dataset {dataset.name!r} holds "
                "single texts"
            )
        if dataset.is_pair and not template.has_pair:
            raise PluginError(
                f"prompted-lm: dataset {dataset.name!r} holds text pairs but template {p.template!r} has no "
                "{text_pair}"
            )
        check_verbalizer_labels(p.verbalizers, dataset)
        network, tokenizer = self._load_pretrained()
        if not getattr(tokenizer, "is_fast", False):
            raise PluginError(f"prompted-lm: {p.path} has no fast tokenizer (needed for character offsets)")
        verbalizer_ids = [
            verbalizer_token_ids(tokenizer, label, p.verbalizers[label], p.path) for label in dataset.labels
        ]
        check_distinct_verbalizers(tokenizer, dataset.labels, verbalizer_ids)
        positions = getattr(_text_config(network.config), "max_position_embeddings", None)
        max_length = min(p.max_length, tokenizer.model_max_length, positions or p.max_length)
        classifier = PromptedClassifier(
            network,
            tokenizer,
            dataset.labels,
            max_length,
            device,
            template=template,
            verbalizer_ids=verbalizer_ids,
        )
        classifier.training_report = {
            "path": p.path,
            "revision": p.revision,
            "model_class": type(network).__name__,
            "template": p.template,
            "verbalizers": {label: list(p.verbalizers[label]) for label in dataset.labels},
            "trained": False,
        }
        return classifier
