"""Build, offline, the two decoder-only models that suites/decoders.yaml explains: a Llama sequence classifier
and a Llama language model prompted to classify, both trained here on SST-2's sentence-level train split.

Why: the faithfulness protocol has so far run on encoders (MiniLM, BERT's WordPiece, a [CLS] to pool, a
[MASK] to remove with). Decoder-only LLMs differ in every one of these: a byte-level BPE tokenizer with no
padding, mask or unknown token that pads on the left, a prediction read from the last token, and, for a
prompted model, a template around the text and label words as the next token. No model can be downloaded
here, so both are built from scratch, small enough to train on a CPU in minutes, shaped as the LLMs on the
Hub ship (Llama architecture with grouped-query attention, ``<|endoftext|>`` as beginning and end of text).

What it writes (``save_pretrained``, model and tokenizer) under ``--out`` (``results/decoder-models``):

- one byte-level BPE tokenizer (``tokenizers``; about 4,000 entries), trained on the train sentences and on
  the labelled prompts so that `` negative`` and `` positive`` are one token each; ``<|endoftext|>`` is its
  only special token, put before every text as Llama's tokenizer puts its beginning-of-text token; no
  padding, mask or unknown token, ``padding_side`` left, character offsets that keep a token's leading
  space, as GPT-2's and Llama 3's ``tokenizer.json`` have them;
- ``llama-sst2-classifier``: a ``LlamaForSequenceClassification`` (width 128, 2 layers, 4 heads sharing
  2 key-value heads, MLP 256, 128 positions) with labels ``{0: negative, 1: positive}`` as the data file
  names them, trained with cross-entropy on the train sentences; its config has no padding id (the
  tokenizer has no padding token), as a Llama checkpoint ships;
- ``llama-sst2-lm``: a ``LlamaForCausalLM`` of the same shape, trained as a language model (next-token
  loss on every token, the label word's counted once more: see ``train_language_model``) on ``"Review: <sentence>\\nSentiment: <label>"``, so that with the prompt
  ``"Review: {text}\\nSentiment:"`` its next token is the label word (the ``prompted-lm`` plugin's default
  template and verbalizers).

It prints the accuracy of each on the dev split (``sentences_dev.jsonl``): the classifier's prediction,
and the prompted model's choice between the two label words. A folder that exists is kept unless
``--force``. Everything follows from ``--seed``: the tokenizer's training is deterministic, and the
weights' initialisation and the order of the training batches come from the seed.

How long: 5.5 minutes (peak memory 0.75 GB) with the defaults (2 epochs of each model on one torch
thread; --threads to change it), measured on 2 CPU cores shared with two other benchmark runs: the
tokenizer a few seconds, the classifier 70 s (dev accuracy 77.3 %), the language model 250 s (its prompted
dev accuracy 78.2 %; an epoch costs twice the classifier's: longer rows, and a 4,000-way output at every
position). Run it from the repository root::

    python examples/decoders/build_models.py            # or: make decoders (then runs the suite)
    python examples/decoders/build_models.py --out /tmp/models --epochs 1 --force
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("results/decoder-models")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sst2" / "sentences_train.jsonl"
DEFAULT_DEV = REPO.parent / "shared" / "data" / "sst2" / "sentences_dev.jsonl"
CLASSIFIER_FOLDER = "llama-sst2-classifier"
LANGUAGE_MODEL_FOLDER = "llama-sst2-lm"
END_OF_TEXT = "<|endoftext|>"
"""The tokenizer's one special token: beginning and end of text, as GPT-2's; batches pad with it."""
TEMPLATE = "Review: {text}\nSentiment:"
"""The prompt the language model learns to complete with a label word (prompted-lm's default template)."""


@dataclass(frozen=True)
class LabelledText:
    """One sentence of the data and its label id."""

    text: str
    label: int


@dataclass(frozen=True)
class Shape:
    """The size of both networks and of the tokenizer's vocabulary."""

    vocab_size: int = 4000
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    key_value_heads: int = 2  # grouped-query attention, as Llama 2/3 and Qwen2 ship
    intermediate_size: int = 256
    max_positions: int = 128


@dataclass(frozen=True)
class Training:
    """How each network is trained: AdamW, linear warm-up over the first tenth then linear decay."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    answer_weight: float = 1.0  # the language model's: see train_language_model
    threads: int = 1  # the machine's cores are usually shared with other runs


# -- data -----------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> tuple[list[LabelledText], tuple[str, ...]]:
    """The rows of a jsonl file of the shared/data format (``text``, ``label``, ``label_name``) and the label
    names in id order, read from the rows' ``label_name``; raises ``ValueError`` when a label id has two
    names, or when the ids are not 0..K-1."""
    examples, names = [], {}
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            label, name = int(row["label"]), str(row.get("label_name", row["label"]))
            if names.setdefault(label, name) != name:
                raise ValueError(f"{path}:{number}: label {label} is named {name!r} and {names[label]!r}")
            examples.append(LabelledText(row["text"], label))
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: label ids {sorted(names)} are not 0..{len(names) - 1}")
    return examples, tuple(names[i] for i in range(len(names)))


def prompt(text: str) -> str:
    """The language model's prompt for a sentence: its next token should be the label word."""
    return TEMPLATE.format(text=text)


def verbalizer(label_name: str) -> str:
    """The word that says a label after the prompt, with its leading space (one token)."""
    return f" {label_name}"


# -- tokenizer ------------------------------------------------------------------------------------------


def train_tokenizer(
    examples: Sequence[LabelledText], labels: Sequence[str], vocab_size: int, max_length: int
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer as GPT-2's and Llama 3's: trained on the sentences and their labelled
    prompts (which makes each label word, seen in every prompt, one token), ``<|endoftext|>`` its only
    special token (beginning and end of text; put before every text), no padding, mask or unknown token,
    padding on the left. Raises ``ValueError`` if a label word is not one token."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [example.text for example in examples]
    corpus += [f"{prompt(example.text)}{verbalizer(labels[example.label])}" for example in examples]
    backend.train_from_iterator(corpus, trainer)
    beginning = processors.TemplateProcessing(
        single=f"{END_OF_TEXT} $A",
        pair=f"{END_OF_TEXT} $A {END_OF_TEXT}:1 $B:1",
        special_tokens=[(END_OF_TEXT, backend.token_to_id(END_OF_TEXT))],
    )
    # offsets keep a token's leading space (" good" spans " good"), as the Hub's byte-level tokenizers do
    backend.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), beginning])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        padding_side="left",
        model_max_length=max_length,
    )
    verbalizer_ids(tokenizer, labels)  # raises unless each label word is one token
    return tokenizer


def verbalizer_ids(tokenizer: PreTrainedTokenizerFast, labels: Sequence[str]) -> list[int]:
    """The token id of each label's word, in label order; raises ``ValueError`` unless each is one token."""
    ids = []
    for label in labels:
        pieces = tokenizer(verbalizer(label), add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ValueError(
                f"the label word {verbalizer(label)!r} is {len(pieces)} tokens, not one: raise the vocabulary"
            )
        ids.append(pieces[0])
    return ids


def _batch(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask of ``texts`` (with their beginning-of-text token, truncated to the
    tokenizer's maximum), padded on the right with ``<|endoftext|>``: the network's positions count from
    each text's first token, in a batch as alone."""
    rows = tokenizer(list(texts), truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    input_ids = torch.full((len(rows), max(map(len, rows))), tokenizer.eos_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


# -- networks -------------------------------------------------------------------------------------------


def _config(tokenizer: PreTrainedTokenizerFast, shape: Shape, **task) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.key_value_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
        tie_word_embeddings=True,  # as small Llamas ship (Llama 3.2 1B): half the parameters of a tiny model
        **task,
    )


def _train(
    model: PreTrainedModel,
    rows: int,
    loss_of: Callable[[list[int]], torch.Tensor],
    training: Training,
    seed: int,
    describe: str,
) -> None:
    """Train ``model`` for ``training.epochs`` epochs over ``rows`` training rows, in batches drawn in an
    order shuffled from ``seed``; ``loss_of(batch)`` is the loss of the rows at those indices. Prints each
    epoch's mean loss; leaves ``model`` in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    total = training.epochs * math.ceil(rows / training.batch_size)
    warm_up = max(1, total // 10)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm_up, max(0.0, (total - step) / max(1, total - warm_up)))
    )
    model.train()
    for epoch in range(training.epochs):
        started, losses = time.perf_counter(), []
        order = torch.randperm(rows, generator=generator).tolist()
        for start in range(0, rows, training.batch_size):
            optimizer.zero_grad()
            loss = loss_of(order[start : start + training.batch_size])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        print(
            f"  {describe} epoch {epoch + 1}/{training.epochs}: mean loss {sum(losses) / len(losses):.4f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    model.eval()


def train_classifier(
    examples: Sequence[LabelledText],
    labels: Sequence[str],
    tokenizer: PreTrainedTokenizerFast,
    shape: Shape,
    training: Training,
    seed: int,
) -> LlamaForSequenceClassification:
    """A ``LlamaForSequenceClassification`` of ``shape`` trained from ``seed`` with cross-entropy on
    ``examples``, in eval mode, its config without a padding id (as the tokenizer has no padding token).

    Batches are padded on the right with ``<|endoftext|>``; the network reads each row's last token that is
    not padding, found by the padding id, so for training the config's padding id is ``<|endoftext|>``'s
    (which a row holds only as its first token, before the text, never as its last)."""
    config = _config(tokenizer, shape, num_labels=len(labels), id2label=dict(enumerate(labels)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
        model.config.pad_token_id = tokenizer.eos_token_id
        texts = [example.text for example in examples]
        targets = torch.tensor([example.label for example in examples])

        def loss_of(rows: list[int]) -> torch.Tensor:
            input_ids, attention_mask = _batch(tokenizer, [texts[row] for row in rows])
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            return torch.nn.functional.cross_entropy(logits, targets[rows])

        _train(model, len(texts), loss_of, training, seed, "classifier")
    model.config.pad_token_id = None
    return model


def train_language_model(
    examples: Sequence[LabelledText],
    labels: Sequence[str],
    tokenizer: PreTrainedTokenizerFast,
    shape: Shape,
    training: Training,
    seed: int,
) -> LlamaForCausalLM:
    """A ``LlamaForCausalLM`` of ``shape`` trained from ``seed`` as a language model on the labelled prompt
    of each of ``examples`` (``prompt(text) + verbalizer(label)``), in eval mode.

    The loss is next-token cross-entropy: its mean over every token of the batch but padding, plus
    ``training.answer_weight`` times its mean over the label words alone. Unweighted, the label word is one
    target of about 30 per prompt, and after one epoch (90 s on 2 busy cores) the model chose the right
    label word for 51 % of the dev sentences, chance; weighted 1 (the label words count as much as all the
    other tokens together), 78 % after two."""
    config = _config(tokenizer, shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        texts = [f"{prompt(example.text)}{verbalizer(labels[example.label])}" for example in examples]
        longest = max(len(ids) for ids in tokenizer(texts)["input_ids"])
        if longest > tokenizer.model_max_length:  # truncated, a prompt would lose its label word
            raise ValueError(
                f"a labelled prompt is {longest} tokens, more than the {tokenizer.model_max_length} positions"
            )

        def loss_of(rows: list[int]) -> torch.Tensor:
            input_ids, attention_mask = _batch(tokenizer, [texts[row] for row in rows])
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
            targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)  # no loss on padding
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            answers = losses[torch.arange(len(rows)), attention_mask.sum(-1) - 2]  # the label word's
            return losses.sum() / (targets != -100).sum() + training.answer_weight * answers.mean()

        _train(model, len(texts), loss_of, training, seed, "language model")
    return model


# -- evaluation -----------------------------------------------------------------------------------------


@torch.no_grad()
def classifier_accuracy(
    model: LlamaForSequenceClassification,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[LabelledText],
    batch_size: int = 64,
) -> float:
    """The share of ``examples`` the classifier labels right (batches padded on the right)."""
    pad_id = model.config.pad_token_id
    model.config.pad_token_id = tokenizer.eos_token_id
    try:
        right = 0
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            input_ids, attention_mask = _batch(tokenizer, [example.text for example in chunk])
            predicted = model(input_ids=input_ids, attention_mask=attention_mask).logits.argmax(-1)
            right += int((predicted == torch.tensor([example.label for example in chunk])).sum())
    finally:
        model.config.pad_token_id = pad_id
    return right / len(examples)


@torch.no_grad()
def prompted_accuracy(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[LabelledText],
    labels: Sequence[str],
    batch_size: int = 64,
) -> float:
    """The share of ``examples`` after whose prompt the language model gives its label's word a higher
    next-token logit than the other labels' words (read at the prompt's last token)."""
    words = torch.tensor(verbalizer_ids(tokenizer, labels))
    right = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        input_ids, attention_mask = _batch(tokenizer, [prompt(example.text) for example in chunk])
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        last = attention_mask.sum(-1) - 1
        chosen = logits[torch.arange(len(chunk)), last][:, words].argmax(-1)
        right += int((chosen == torch.tensor([example.label for example in chunk])).sum())
    return right / len(examples)


# -- the whole build ------------------------------------------------------------------------------------


def build(
    out: Path,
    data: Path,
    dev: Path,
    *,
    seed: int = 0,
    force: bool = False,
    shape: Shape = Shape(),
    training: Training = Training(),
) -> dict[str, dict]:
    """Train the tokenizer, then each model whose folder under ``out`` is missing (every one with
    ``force``), save it with its tokenizer, and measure its dev accuracy. Returns, per folder name, what
    was done: ``{"built": bool, "folder": str, "dev_accuracy": float | None, "seconds": float}`` (a kept
    folder is not evaluated)."""
    examples, labels = read_jsonl(data)
    dev_examples, dev_labels = read_jsonl(dev)
    if dev_labels != labels:
        raise ValueError(f"{dev} names its labels {dev_labels}, {data} {labels}")
    out = Path(out)
    builders = {
        CLASSIFIER_FOLDER: (train_classifier, classifier_accuracy),
        LANGUAGE_MODEL_FOLDER: (
            train_language_model,
            lambda model, tokenizer, rows: prompted_accuracy(model, tokenizer, rows, labels),
        ),
    }
    results: dict[str, dict] = {}
    tokenizer = None
    threads = torch.get_num_threads()
    torch.set_num_threads(training.threads)
    try:
        for name, (train, accuracy) in builders.items():
            folder = out / name
            if folder.exists() and not force:
                print(f"{folder}: exists, kept (--force rebuilds it)", flush=True)
                results[name] = {"built": False, "folder": str(folder), "dev_accuracy": None, "seconds": 0.0}
                continue
            started = time.perf_counter()
            if tokenizer is None:
                tokenizer = train_tokenizer(examples, labels, shape.vocab_size, shape.max_positions)
                print(f"tokenizer: byte-level BPE, {len(tokenizer)} entries, from {len(examples)} sentences")
            print(f"{name}: training on {len(examples)} sentences of {data}", flush=True)
            model = train(examples, labels, tokenizer, shape, training, seed)
            dev_accuracy = accuracy(model, tokenizer, dev_examples)
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            seconds = time.perf_counter() - started
            print(
                f"{folder}: saved; dev accuracy {dev_accuracy:.3f} on {len(dev_examples)} sentences "
                f"({seconds:.0f} s)",
                flush=True,
            )
            results[name] = {
                "built": True,
                "folder": str(folder),
                "dev_accuracy": dev_accuracy,
                "seconds": seconds,
            }
    finally:
        torch.set_num_threads(threads)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the folders go ({DEFAULT_OUT})")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the train sentences (jsonl)")
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV, help="the sentences accuracy is measured on")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order (0)")
    parser.add_argument("--force", action="store_true", help="rebuild folders that exist")
    defaults = Training()
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"({defaults.epochs})")
    parser.add_argument(
        "--threads", type=int, default=defaults.threads, help=f"torch threads ({defaults.threads})"
    )
    args = parser.parse_args(argv)
    for path in (args.data, args.dev):
        if not path.is_file():
            print(f"build_models: no file {path}; give --data / --dev", file=sys.stderr)
            return 2
    training = replace(defaults, epochs=args.epochs, threads=args.threads)
    started = time.perf_counter()
    results = build(args.out, args.data, args.dev, seed=args.seed, force=args.force, training=training)
    for name, result in results.items():
        accuracy = result["dev_accuracy"]
        done = "kept" if not result["built"] else f"built, dev accuracy {accuracy:.3f}"
        print(f"{name}: {done}")
    print(f"done in {math.ceil(time.perf_counter() - started)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
