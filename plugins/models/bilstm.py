"""The ``bilstm-attention`` model: an attention BiLSTM trained from scratch, with or without LDAV.

Zhou et al. 2016, "Attention-Based Bidirectional Long Short-Term Memory Networks for Relation
Classification" (§3): word embeddings → BiLSTM whose two directions are summed element-wise (H) →
attention α = softmax(wᵀ tanh(H)) → r = H αᵀ → h* = tanh(r) → dropout → linear → softmax. The
architecture of the LDAV paper's experiments (§4.1), which trains it from scratch with embedding,
LDAV and context size 128; with ``ldav: true`` the loss is L = L1 + L2 − L3 (``harness.ldav``) and the
classifier exposes its class vectors to the ``ldav`` explainer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from harness import (
    CLASS_VECTORS,
    LDAV_PAPER,
    WORD_MASK,
    WORD_PAD,
    WORD_UNK,
    Classifier,
    ClassVectors,
    EarlyStopping,
    Encoding,
    EpochLossTerms,
    Example,
    LDAVParams,
    Model,
    PluginError,
    TextDataset,
    build_word_vocabulary,
    default_class_vector_radius,
    derive_seed,
    encode_words,
    ldav_loss_terms,
    ldav_report,
    variant_seed_streams,
)

_WEIGHTS_FILE = "weights.safetensors"
_CONFIG_FILE = "bilstm_attention.json"
_VOCABULARY_FILE = "vocabulary.json"
_FORMAT = 1


class BiLSTMAttentionClassifier(Classifier, nn.Module):
    """Embedding → BiLSTM (directions summed) → attention pooling → tanh → dropout → linear."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        labels: Sequence[str],
        *,
        dim: int,
        hidden_size: int,
        dropout: float,
        max_length: int,
        class_vector_radius: float | None = None,
    ):
        nn.Module.__init__(self)
        self.vocabulary = list(vocabulary)
        self.index = {token: i for i, token in enumerate(self.vocabulary)}
        self.labels = tuple(labels)
        self.max_length = max_length
        self.embedding = nn.Embedding(len(self.vocabulary), dim, padding_idx=WORD_PAD)
        self.lstm = nn.LSTM(dim, hidden_size, batch_first=True, bidirectional=True)
        self.attention = nn.Linear(hidden_size, 1, bias=False)  # w of α = softmax(wᵀ tanh(H))
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, len(self.labels))
        self.ldav = (
            None if class_vector_radius is None else ClassVectors(len(self.labels), dim, class_vector_radius)
        )
        self.device = torch.device("cpu")
        self.pad_token_id, self.unk_token_id, self.mask_token_id = WORD_PAD, WORD_UNK, WORD_MASK
        self.training_report: dict = {}

    def upper_modules(self) -> list[nn.Module]:
        """Every layer above the input embeddings (what ``reinit-above-embeddings`` re-initialises)."""
        return [self.lstm, self.attention, self.output]

    def to_device(self, device: torch.device | str) -> BiLSTMAttentionClassifier:
        self.device = torch.device(device)
        return self.to(self.device)

    def torch_modules(self) -> list[nn.Module]:
        return [self]

    def encode(self, examples: Sequence[Example]) -> Encoding:
        return encode_words(examples, self.index, self.max_length, self.device)

    def input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids.to(self.device))

    def class_vectors(self) -> torch.Tensor:
        if self.ldav is None:
            return super().class_vectors()
        return self.ldav.vectors.detach()

    def logits(
        self, *, attention_mask, input_ids=None, inputs_embeds=None, token_type_ids=None
    ) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        mask = attention_mask.to(inputs_embeds.device).bool()
        # Packed, so that the backward direction starts at each row's last attended token (rows are padded
        # on the right; a row with nothing attended reads one padding position).
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            inputs_embeds, lengths, batch_first=True, enforce_sorted=False
        )
        # cuDNN's RNN has no backward pass in eval mode; explainers differentiate the eval-mode model.
        with torch.backends.cudnn.flags(enabled=not torch.is_grad_enabled()):
            outputs, _ = self.lstm(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(
            outputs, batch_first=True, total_length=inputs_embeds.shape[1]
        )
        forward, backward = outputs.chunk(2, dim=-1)
        hidden = forward + backward  # (B, L, H): Zhou et al.'s element-wise sum of the two directions
        scores = self.attention(torch.tanh(hidden)).squeeze(-1)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        alpha = torch.softmax(scores, dim=-1)
        pooled = torch.tanh(torch.einsum("bl,blh->bh", alpha, hidden))
        return self.output(self.dropout(pooled))


class BiLSTMAttentionParams(LDAVParams):
    """Parameters of ``bilstm-attention``; sizes from the LDAV paper (§4.1) unless said otherwise."""

    dim: int = Field(128, ge=1, description="embedding size (paper: 128)")
    hidden_size: int = Field(128, ge=1, description="LSTM units per direction = context size (paper: 128)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout before the output layer (Zhou et al.: 0.5)")
    max_length: int = Field(256, ge=1, description="word tokens read per example (truncation)")
    max_vocabulary: int = Field(30000, ge=10, description="keep the most frequent train words")
    min_count: int = Field(1, ge=1, description="a word seen fewer times in train is [UNK]")
    learning_rate: float = Field(
        1e-3, gt=0, description="Adam learning rate (paper: 1e-4 with batches of 256 for 250 epochs)"
    )
    batch_size: int = Field(32, ge=1, description="training batch size (paper: 256)")
    max_epochs: int = Field(40, ge=1, description="most training epochs (paper: 250)")
    patience: int = Field(
        5, ge=1, description="stop after this many epochs without a better validation accuracy (paper: 10)"
    )


class BiLSTMAttention(Model):
    """Attention BiLSTM (Zhou et al. 2016) trained from scratch; with ``ldav: true``, trained with LDAV.

    Adam and early stopping on validation accuracy (ties: lower validation loss), the best epoch's
    weights kept. The seed drives the initialisation, the data order and dropout through separate
    streams. With ``ldav: true`` the loss is L1 + L2 − L3 of the LDAV paper (eqs. 1–3, ``harness.ldav``;
    ``rho1: 0`` or ``rho2: 0`` are the ablations without L2 or L3 of its Table 8) and the model provides
    ``class-vectors``; without it, the loss is the plain cross-entropy: the control.

    Variants: ``default`` (= ``init:1``), ``init:N``, ``untrained`` (fresh weights, the vocabulary of the
    train split) and ``reinit-above-embeddings`` (the default model, trained, then its BiLSTM, attention
    and output layer drawn afresh: the embeddings and class vectors kept).
    """

    name: ClassVar[str] = "bilstm-attention"
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = f"Zhou et al. 2016, Attention-Based Bidirectional LSTM (§3); {LDAV_PAPER}"
    Params = BiLSTMAttentionParams
    variants: ClassVar[tuple[str, ...]] = ("default", "init:N", "untrained", "reinit-above-embeddings")

    params: BiLSTMAttentionParams

    @classmethod
    def provides_for(cls, params: BiLSTMAttentionParams) -> frozenset[str]:
        return frozenset({CLASS_VECTORS}) if params.ldav else frozenset()

    def build(
        self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"
    ) -> BiLSTMAttentionClassifier:
        if not dataset.train:
            raise PluginError(
                f"bilstm-attention learns its vocabulary and weights from a train split; dataset "
                f"{dataset.name!r} has none (give the model a train_on dataset)"
            )
        streams = variant_seed_streams(variant) if self.builds_variant(variant) else None
        if streams is None:
            raise PluginError(
                f"bilstm-attention has no variant {variant!r} "
                "(known: default, init:N with N >= 1, untrained, reinit-above-embeddings)"
            )
        started = time.perf_counter()
        p = self.params
        vocabulary = build_word_vocabulary(dataset.train, p.max_vocabulary, p.min_count)
        classifier = self._new_classifier(vocabulary, dataset.labels, init_seed=derive_seed(seed, streams[0]))
        if variant == "untrained":
            classifier.training_report = {"trained": False, "vocabulary": len(vocabulary), "ldav": p.ldav}
        else:
            report = _train(classifier, dataset, p, order_seed=derive_seed(seed, streams[1]))
            classifier.training_report = {
                "trained": True,
                **report,
                "vocabulary": len(vocabulary),
                "train_seconds": round(time.perf_counter() - started, 3),
            }
        if variant == "reinit-above-embeddings":
            _initialise(
                classifier.upper_modules(), torch.Generator().manual_seed(derive_seed(seed, "reinit"))
            )
            classifier.training_report["reinitialised"] = "lstm, attention, output"
        classifier.requires_grad_(False).eval()
        return classifier.to_device(device)

    def _new_classifier(
        self, vocabulary: Sequence[str], labels: Sequence[str], init_seed: int | None
    ) -> BiLSTMAttentionClassifier:
        p = self.params
        classifier = BiLSTMAttentionClassifier(
            vocabulary,
            labels,
            dim=p.dim,
            hidden_size=p.hidden_size,
            dropout=p.dropout,
            max_length=p.max_length,
        )
        if init_seed is not None:
            generator = torch.Generator().manual_seed(init_seed)
            _initialise([classifier.embedding, *classifier.upper_modules()], generator)
            if p.ldav:
                radius = p.class_vector_radius or default_class_vector_radius(
                    classifier.embedding, skip=(WORD_PAD,)
                )
                classifier.ldav = ClassVectors(len(labels), p.dim, radius, generator)
        return classifier

    def save(self, classifier: BiLSTMAttentionClassifier, directory: Path) -> None:
        directory = Path(directory)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()},
            str(directory / _WEIGHTS_FILE),
        )
        (directory / _VOCABULARY_FILE).write_text(json.dumps(classifier.vocabulary, ensure_ascii=False))
        config = {
            "format": _FORMAT,
            "labels": list(classifier.labels),
            "class_vector_radius": None if classifier.ldav is None else float(classifier.ldav.radius),
            "training_report": classifier.training_report,
        }
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    def load(self, directory: Path, dataset: TextDataset, device: torch.device) -> BiLSTMAttentionClassifier:
        directory = Path(directory)
        config = json.loads((directory / _CONFIG_FILE).read_text())
        if config.get("format") != _FORMAT:
            raise PluginError(
                f"bilstm-attention: {directory} has format {config.get('format')}, expected {_FORMAT}"
            )
        p = self.params
        classifier = BiLSTMAttentionClassifier(
            json.loads((directory / _VOCABULARY_FILE).read_text()),
            config["labels"],
            dim=p.dim,
            hidden_size=p.hidden_size,
            dropout=p.dropout,
            max_length=p.max_length,
            class_vector_radius=config["class_vector_radius"],
        )
        classifier.load_state_dict(load_file(str(directory / _WEIGHTS_FILE)))
        classifier.training_report = dict(config.get("training_report") or {})
        classifier.requires_grad_(False).eval()
        return classifier.to_device(device)


EMBEDDING_INIT = (
    0.05  # embeddings start uniform in ±0.05: Keras's default (the paper's models are TensorFlow)
)


def _initialise(modules: Sequence[nn.Module], generator: torch.Generator) -> None:
    """Seeded initialisation: embeddings uniform in ±0.05 (Keras's ``Embedding`` default; the LDAV paper's
    models are TensorFlow, App. A), padding row zero; every other weight uniform in ±1/√fan_in (torch's
    default for LSTM and Linear), biases likewise for the LSTM, zero for the output layer. The reference
    implementation (housamkhalifa/ldav) draws its embeddings and class vectors uniform in ±1 and has no
    dropout before the output layer (its ``h_drop`` is ``h_star``); we keep ±0.05 for the reason below.

    Not torch's N(0, 1) for the embeddings: eq. 4 measures distances between raw embeddings, and with
    unit-variance random vectors and a few thousand training texts the random start dominates what
    training adds. Measured on SST-2 (1,800 training sentences, 60 test sentences): N(0, 1) gives LDAV a
    switching point of 0.64 against random's 0.68 and 68 % validation accuracy; ±0.05 gives 0.27 against
    0.71, and 76.5 %."""
    with torch.no_grad():
        for module in modules:
            if isinstance(module, nn.Embedding):
                module.weight.uniform_(-EMBEDDING_INIT, EMBEDDING_INIT, generator=generator)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LSTM):
                bound = 1.0 / module.hidden_size**0.5
                for parameter in module.parameters():
                    parameter.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.in_features**0.5
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()


def _train(
    classifier: BiLSTMAttentionClassifier, dataset: TextDataset, p: BiLSTMAttentionParams, *, order_seed: int
) -> dict:
    train = classifier.encode(dataset.train)
    labels = torch.tensor([e.label for e in dataset.train])
    validation = classifier.encode(dataset.validation) if dataset.validation else None
    validation_labels = torch.tensor([e.label for e in dataset.validation]) if dataset.validation else None
    classifier.requires_grad_(True)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=p.learning_rate)
    order = torch.Generator().manual_seed(order_seed)
    stopping = EarlyStopping(p.patience)
    epoch, stopped = 0, False
    terms: dict[str, float] | None = None
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator
        torch.manual_seed(order_seed)
        for epoch in range(1, p.max_epochs + 1):
            classifier.train()
            epoch_terms = EpochLossTerms()
            for rows in torch.randperm(len(labels), generator=order).split(p.batch_size):
                width = int(train.attention_mask[rows].sum(1).max())
                ids, mask = train.input_ids[rows, :width], train.attention_mask[rows, :width]
                embeddings = classifier.embedding(ids)
                logits = classifier.logits(inputs_embeds=embeddings, attention_mask=mask)
                if classifier.ldav is None:
                    loss = nn.functional.cross_entropy(logits, labels[rows])
                else:
                    l1, l2, l3 = ldav_loss_terms(
                        logits,
                        labels[rows],
                        embeddings,
                        mask,
                        classifier.ldav.vectors,
                        rho1=p.rho1,
                        rho2=p.rho2,
                    )
                    loss = l1 + l2 - l3
                    epoch_terms.add(l1, l2, l3)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if classifier.ldav is not None:
                    classifier.ldav.project()
            terms = epoch_terms.means() or terms
            classifier.eval()
            if validation is None:
                continue
            with torch.no_grad():
                logits = classifier.logits(
                    input_ids=validation.input_ids, attention_mask=validation.attention_mask
                )
            accuracy = float((logits.argmax(-1) == validation_labels).float().mean())
            loss = float(nn.functional.cross_entropy(logits, validation_labels))
            if stopping.update(epoch, accuracy, loss, classifier.state_dict()):
                stopped = True
                break
    if stopping.best_state is not None:
        classifier.load_state_dict(stopping.best_state)
    report = {**stopping.report(epoch, stopped), "ldav": p.ldav}
    if classifier.ldav is not None:
        report.update(ldav_report(classifier.ldav, p, terms))
    return report
