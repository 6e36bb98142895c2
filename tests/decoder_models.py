"""Tiny saved Hugging Face classifiers and language models, decoder-only ones above all, for tests of ``hf``.

Decoder-only sequence classifiers (Llama, Qwen2, GPT-2) read their prediction from the last token that is
not padding, find that token by the pad id, and ship tokenizers that pad on the left, pad with the end of
text token or have no pad token at all, and know no mask or unknown token. A BERT classifier with a
WordPiece tokenizer is the control. Every folder here is built offline in seconds: a tokenizer trained with
``tokenizers`` on the sentences below, a model of two layers of width 32 from its config, trained a few
steps so that its predictions differ from text to text, both written with ``save_pretrained``.

Tests import this module as the other helpers of ``tests/`` (``from decoder_models import ...``) and build
folders in a fixture of their own, scoped to the module or the session so that each folder is built once::

    @pytest.fixture(scope="module")
    def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("decoder-models")

    def test_something(models_root: Path):
        folder = classifier_folder(models_root, "llama", "bpe", "left")
        model = AutoModelForSequenceClassification.from_pretrained(folder)

Within a process a folder is built once per root and arguments (a second call returns the same path), so
fixtures of several test modules may share a session-scoped root. ``build_classifier`` and
``build_causal_lm`` give the same models in memory, unsaved. Everything is deterministic: the same arguments
give the same tokenizer files and weights in any process.

The public names: ``classifier_folder``, ``causal_lm_folder``, ``build_classifier``, ``build_causal_lm``;
``COMBINATIONS`` (the classifiers that can be built), ``FIXTURE_TEXTS``, ``EVAL_TEXTS``, ``LABELS``,
``lm_prompt``, ``verbalizer_ids``; ``classifier_accuracy`` and ``verbalizer_accuracy`` (a saved model on
its training texts); ``one_thread`` (torch on one thread, as the builders train).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from torch import Tensor
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX

ARCHITECTURES = ("llama", "qwen2", "gpt2", "bert")
"""The classifier architectures: three decoder-only ones and BERT, the encoder control."""
DECODER_ARCHITECTURES = ("llama", "qwen2", "gpt2")
"""The architectures that ``causal_lm_folder`` builds as language models."""
TOKENIZERS = ("wordpiece", "bpe")
"""BERT-style WordPiece ([CLS] ... [SEP], [MASK], [UNK]) or byte-level BPE as GPT-2, Llama and Qwen ship."""
PADDINGS = ("right", "left", "none")
"""Pad token set and padding on the right, pad token set and padding on the left, or no pad token at all."""
COMBINATIONS = tuple(
    (architecture, tokenizer, padding)
    for architecture in ARCHITECTURES
    for tokenizer in TOKENIZERS
    if tokenizer == "wordpiece" or architecture != "bert"
    if tokenizer == "bpe" or architecture != "qwen2"
    for padding in PADDINGS
)
"""Every (architecture, tokenizer, padding) that ``classifier_folder`` builds: BERT only with WordPiece, Qwen2
only with byte-level BPE (``AutoTokenizer`` loads any folder whose config is Qwen2's as ``Qwen2Tokenizer``,
which rebuilds its byte-level pipeline around the saved vocabulary: a WordPiece vocabulary comes back
splitting words into letters)."""

LABELS = ("negative", "positive")
"""The classifiers' labels, in id order; also the language models' verbalizers (`` negative``, `` positive``)."""

FIXTURE_TEXTS: tuple[tuple[str, int], ...] = (
    ("a good film", 1),
    ("great acting and a great story", 1),
    ("I loved every minute of it.", 1),
    ("the best movie i have seen this year", 1),
    ("Wonderful, simply wonderful!", 1),
    ("a truly excellent and moving film", 1),
    ("the music was lovely and the cast was great", 1),
    ("good fun for the whole family", 1),
    ("an amazing story told with real heart", 1),
    ("i would happily watch it again tomorrow", 1),
    ("brilliant writing, great pacing and a good ending", 1),
    ("The actors are superb.", 1),
    ("a delightful and charming little film", 1),
    ("it was good, really good", 1),
    ("one of the finest films of the whole decade, a great achievement for all involved", 1),
    ("funny, warm and beautifully shot", 1),
    ("I enjoyed it a lot", 1),
    ("a great cast makes this a good watch", 1),
    ("fantastic from start to finish", 1),
    ("the story is simple but the film is wonderful and very good", 1),
    ("a bad film", 0),
    ("awful acting and an awful story", 0),
    ("I hated every minute of it.", 0),
    ("the worst movie i have seen this year", 0),
    ("Terrible, just terrible!", 0),
    ("a truly boring and pointless film", 0),
    ("the music was dull and the cast was bad", 0),
    ("bad fun for nobody at all", 0),
    ("a horrible story told with no heart", 0),
    ("i would never watch it again", 0),
    ("lazy writing, awful pacing and a bad ending", 0),
    ("The actors are dreadful.", 0),
    ("a tedious and ugly little film", 0),
    ("it was bad, really bad", 0),
    ("one of the weakest films of the whole decade, an awful waste of my time", 0),
    ("unfunny, cold and poorly shot", 0),
    ("I disliked it a lot", 0),
    ("a bad cast makes this an awful watch", 0),
    ("boring from start to finish", 0),
    ("the story is simple but the film is terrible and very bad", 0),
)
"""Training sentences (3 to 15 words, half positive) with their labels (1 positive, 0 negative)."""

EVAL_TEXTS: tuple[str, ...] = (
    "Really great!",
    "an awful mess",
    "the cast was good and the story moving",
    "I found it dull.",
    "a wonderful, charming and funny film that i would watch again",
    "truly bad",
    "the ending was terrible but the music was lovely",
    "honestly one of the best films i have seen, with great actors and a story that moves you to tears",
)
"""Held-out sentences of 2 to 20 words for explaining: none of them is in ``FIXTURE_TEXTS``."""

END_OF_TEXT = "<|endoftext|>"
"""The byte-level tokenizers' one special token: end of text, also Llama's and GPT-2's beginning of text, and
the pad token when one is set (pad = eos, as LLM classifiers are commonly fine-tuned)."""
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
"""The WordPiece tokenizers' special tokens, ids 0 to 4."""

_VOCABULARY_SIZE = 400  # byte-level BPE: 256 bytes and end of text, then merges
_WORDPIECE_PIECES = 250  # WordPiece: 5 specials, 245 pieces learnt by BPE, the same 245 after "##"
_MAX_POSITIONS = 128
_TRAINING_STEPS, _LEARNING_RATE = 30, 3e-3
_LM_TRAINING_STEPS, _LM_LEARNING_RATE = 120, 1e-2  # at 3e-3 GPT-2 put the right verbalizer first for 58%
_SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
_built: set[Path] = set()  # the folders this process has written


def lm_prompt(text: str) -> str:
    """The language models' prompt for a review: the next token after it is `` positive`` or `` negative``."""
    return f"Review: {text} Sentiment:"


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the duration, then as before. Models this small gain nothing from
    more, and on a machine whose cores are all busy two threads made a training step 50 times slower (1 s
    against 0.02 s): the builders train in it, and tests that run these models many times may run in it too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _tokenizer_corpus() -> list[str]:
    """The texts both kinds of tokenizer are trained on: every training sentence as a labelled prompt.

    The verbalizers appear 20 times each; repeating the two lines with them makes `` positive`` and
    `` negative`` frequent enough that byte-level BPE merges each into one token at 400 entries.
    """
    prompts = [f"{lm_prompt(text)} {LABELS[label]}" for text, label in FIXTURE_TEXTS]
    return prompts + [f"Sentiment: {LABELS[0]} Sentiment: {LABELS[1]}"] * 40


def _wordpiece_backend() -> Tokenizer:
    """A BERT-style WordPiece tokenizer (lowercasing, [CLS] text [SEP]) trained on the fixture corpus.

    ``WordPieceTrainer`` gives another vocabulary at each run (so does ``BpeTrainer`` given a continuing
    subword prefix: the ``##`` alphabet comes out of a hash map), so the pieces are learnt by plain BPE, which
    is deterministic, and each piece is in the vocabulary twice: as it is, to begin a word, and after ``##``,
    to continue one. Specials take ids 0 to 4, then the pieces in BPE's order, then their continuations.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    pieces = Tokenizer(models.BPE(unk_token="[UNK]"))
    pieces.normalizer, pieces.pre_tokenizer = normalizer, pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=_WORDPIECE_PIECES,
        special_tokens=list(WORDPIECE_SPECIALS),
        # every letter, digit and punctuation mark, so that held-out text meets [UNK] only for other characters
        initial_alphabet=list(string.ascii_lowercase + string.digits + string.punctuation),
        show_progress=False,
    )
    pieces.train_from_iterator(_tokenizer_corpus(), trainer)
    in_order = sorted(pieces.get_vocab().items(), key=lambda item: item[1])
    vocabulary = {piece: id_ for id_, (piece, _) in enumerate(in_order)}
    for piece, _ in in_order[len(WORDPIECE_SPECIALS) :]:
        vocabulary[f"##{piece}"] = len(vocabulary)
    backend = Tokenizer(models.WordPiece(vocabulary, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer = normalizer, pre_tokenizer
    backend.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return backend


def _byte_level_backend(architecture: str, trim_offsets: bool) -> Tokenizer:
    """A byte-level BPE tokenizer as GPT-2 ships it (no normalizer, no unknown token), trained on the fixture
    corpus; Llama's also puts its beginning of text token first, and Qwen2's normalizes to NFC and splits
    words with Qwen2's pattern before mapping bytes. With ``trim_offsets`` a token's character span leaves out
    the space before it (`` good`` spans ``good``); without, it keeps it, as the ``tokenizer.json`` of GPT-2,
    Llama 3 and Qwen2 on the Hub have it."""
    backend = Tokenizer(models.BPE())
    if architecture == "qwen2":
        # Qwen2's own pipeline, which ``Qwen2Tokenizer`` rebuilds on loading whatever the folder says
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCABULARY_SIZE,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_tokenizer_corpus(), trainer)
    byte_offsets = processors.ByteLevel(trim_offsets=trim_offsets)
    if architecture == "llama":
        end_of_text_id = backend.token_to_id(END_OF_TEXT)
        beginning = processors.TemplateProcessing(
            single=f"{END_OF_TEXT} $A",
            pair=f"{END_OF_TEXT} $A {END_OF_TEXT}:1 $B:1",
            special_tokens=[(END_OF_TEXT, end_of_text_id)],
        )
        backend.post_processor = processors.Sequence([byte_offsets, beginning])
    else:
        backend.post_processor = byte_offsets
    return backend


def _fast_tokenizer(
    architecture: str, tokenizer: str, padding: str, trim_offsets: bool = True
) -> PreTrainedTokenizerFast:
    """The trained tokenizer wrapped as ``transformers`` loads it, with its special tokens and padding."""
    if tokenizer == "wordpiece":
        if not trim_offsets:
            raise ValueError(
                "trim_offsets=False is for byte-level BPE: WordPiece spans hold no spaces to trim"
            )
        backend = _wordpiece_backend()
        specials = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
        pad_token = "[PAD]"
    else:
        backend = _byte_level_backend(architecture, trim_offsets)
        specials = {"eos_token": END_OF_TEXT}
        if architecture in ("llama", "gpt2"):  # Qwen2 ships no beginning of text token
            specials["bos_token"] = END_OF_TEXT
        pad_token = END_OF_TEXT
    if padding != "none":
        specials["pad_token"] = pad_token
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        padding_side="left" if padding == "left" else "right",
        model_max_length=_MAX_POSITIONS,
        **specials,
    )


def _config(architecture: str, fast: PreTrainedTokenizerFast, **task) -> PretrainedConfig:
    """A tiny config (width 32, 2 layers, 2 heads) whose vocabulary and special ids are the tokenizer's."""
    ids = {
        "vocab_size": len(fast),
        "pad_token_id": fast.pad_token_id,
        "bos_token_id": fast.bos_token_id,
        "eos_token_id": fast.eos_token_id,
    }
    if architecture == "gpt2":
        return GPT2Config(
            n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=_MAX_POSITIONS, **ids, **task
        )
    shape = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": _MAX_POSITIONS,
    }
    if architecture == "bert":
        return BertConfig(**shape, **ids, **task)
    # grouped-query attention (one key-value head for two query heads), as both families ship
    config_class = LlamaConfig if architecture == "llama" else Qwen2Config
    return config_class(**shape, num_key_value_heads=1, **ids, **task)


def _right_padded(fast: PreTrainedTokenizerFast, texts: list[str], pad_id: int) -> tuple[Tensor, Tensor]:
    """Input ids and attention mask of the texts, padded on the right with ``pad_id`` whatever the tokenizer's
    own padding (it may have none): the batch the models are trained on."""
    rows = [fast(text)["input_ids"] for text in texts]
    input_ids = torch.full((len(rows), max(map(len, rows))), pad_id)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def _training_pad_id(fast: PreTrainedTokenizerFast) -> int:
    """The tokenizer's pad id, or where it has none the id padding the training batch only ([PAD] or end of
    text): the model never sees the pad id at training, since it reads no padded position."""
    if fast.pad_token_id is not None:
        return fast.pad_token_id
    return fast.convert_tokens_to_ids("[PAD]" if "[PAD]" in fast.get_vocab() else END_OF_TEXT)


def _train(model: PreTrainedModel, loss: Callable[[], Tensor], steps: int, learning_rate: float) -> None:
    """``steps`` steps of AdamW on the whole batch that ``loss`` computes, dropout on; leaves ``model`` in eval."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    model.eval()


def build_classifier(
    architecture: str, tokenizer: str, padding: str, *, seed: int = 0, trim_offsets: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A sequence classifier of ``architecture`` with ``tokenizer`` and ``padding`` trained on
    ``FIXTURE_TEXTS``, in memory (in eval mode) with its tokenizer; ``classifier_folder`` saves it.

    ``architecture`` is ``"llama"``, ``"qwen2"``, ``"gpt2"`` or ``"bert"``; ``tokenizer`` ``"wordpiece"``
    or ``"bpe"`` (see ``COMBINATIONS`` for the pairs built); ``padding`` ``"right"`` or ``"left"`` (the pad
    token is [PAD] for WordPiece, end of text for BPE, and pads on that side) or ``"none"`` (no pad token, and
    the config's pad id is None too). ``trim_offsets=False`` (BPE only) keeps the space before a token in its
    character span, as LLM tokenizers on the Hub do. Labels ``negative`` and ``positive``; attention as
    ``transformers`` picks it by default. The model is trained 30 steps (AdamW, the whole batch padded on the
    right, with a pad id for the training batch only where the tokenizer has none) from ``seed``, without
    touching the global random state.
    """
    if (architecture, tokenizer, padding) not in COMBINATIONS:
        raise ValueError(
            f"no classifier for {(architecture, tokenizer, padding)}; choose from {COMBINATIONS}"
        )
    fast = _fast_tokenizer(architecture, tokenizer, padding, trim_offsets)
    config = _config(architecture, fast, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)))
    texts = [text for text, _ in FIXTURE_TEXTS]
    labels = torch.tensor([label for _, label in FIXTURE_TEXTS])
    pad_id = _training_pad_id(fast)
    input_ids, attention_mask = _right_padded(fast, texts, pad_id)
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)
        model = _CLASSIFIERS[architecture](config)
        # decoder classifiers find each row's last token by the pad id: give them the training batch's
        model.config.pad_token_id = pad_id

        def loss() -> Tensor:
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            return torch.nn.functional.cross_entropy(logits, labels)

        _train(model, loss, _TRAINING_STEPS, _LEARNING_RATE)
        model.config.pad_token_id = fast.pad_token_id
    return model, fast


def classifier_folder(
    root: Path, architecture: str, tokenizer: str, padding: str, *, seed: int = 0, trim_offsets: bool = True
) -> Path:
    """The folder holding ``build_classifier(architecture, tokenizer, padding, ...)`` saved with
    ``save_pretrained``: ``root / "{architecture}-{tokenizer}-{padding}"``, with ``-untrimmed`` and
    ``-seed{seed}`` appended for ``trim_offsets=False`` and a seed other than 0. Built once per process for
    each folder."""
    name = _folder_name(f"{architecture}-{tokenizer}-{padding}", seed, trim_offsets)
    build = partial(build_classifier, architecture, tokenizer, padding, seed=seed, trim_offsets=trim_offsets)
    return _built_once(Path(root) / name, build)


def build_causal_lm(
    architecture: str = "llama", tokenizer: str = "bpe", *, seed: int = 0, trim_offsets: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A causal language model of ``architecture`` (``"llama"``, ``"qwen2"`` or ``"gpt2"``) with the
    byte-level tokenizer and no pad token, trained so that after ``lm_prompt(text)`` it leans toward the
    text's label, `` positive`` or `` negative`` (one token each), in memory (in eval mode) with its
    tokenizer; ``causal_lm_folder`` saves it.

    Trained 120 steps as a language model (AdamW, loss on every token but padding) on
    ``lm_prompt(text) + " " + label`` for each of ``FIXTURE_TEXTS``, from ``seed``, without touching the
    global random state. Only ``"bpe"``: WordPiece would close the prompt with [SEP]. ``trim_offsets`` as for
    ``build_classifier``.
    """
    if architecture not in DECODER_ARCHITECTURES or tokenizer != "bpe":
        raise ValueError(
            f"no language model for {(architecture, tokenizer)}; choose an architecture from "
            f"{DECODER_ARCHITECTURES} with the 'bpe' tokenizer"
        )
    fast = _fast_tokenizer(architecture, tokenizer, "none", trim_offsets)
    verbalizer_ids(fast)  # raises unless each verbalizer is one token
    config = _config(architecture, fast)
    texts = [f"{lm_prompt(text)} {LABELS[label]}" for text, label in FIXTURE_TEXTS]
    input_ids, attention_mask = _right_padded(fast, texts, _training_pad_id(fast))
    targets = input_ids.masked_fill(attention_mask == 0, -100)  # no loss on padding
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)
        model = _CAUSAL_LMS[architecture](config)

        def loss() -> Tensor:
            return model(input_ids=input_ids, attention_mask=attention_mask, labels=targets).loss

        _train(model, loss, _LM_TRAINING_STEPS, _LM_LEARNING_RATE)
    return model, fast


def causal_lm_folder(
    root: Path,
    architecture: str = "llama",
    tokenizer: str = "bpe",
    *,
    seed: int = 0,
    trim_offsets: bool = True,
) -> Path:
    """The folder holding ``build_causal_lm(architecture, tokenizer, ...)`` saved with ``save_pretrained``:
    ``root / "causal-{architecture}-{tokenizer}"``, with ``-untrimmed`` and ``-seed{seed}`` appended for
    ``trim_offsets=False`` and a seed other than 0. Built once per process for each folder."""
    name = _folder_name(f"causal-{architecture}-{tokenizer}", seed, trim_offsets)
    build = partial(build_causal_lm, architecture, tokenizer, seed=seed, trim_offsets=trim_offsets)
    return _built_once(Path(root) / name, build)


def verbalizer_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """The token ids of `` negative`` and `` positive`` (in label order); raises unless each is one token."""
    ids = []
    for label in LABELS:
        pieces = tokenizer(f" {label}", add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise AssertionError(f"{' ' + label!r} is {len(pieces)} tokens, not one: {pieces}")
        ids.append(pieces[0])
    return tuple(ids)


def classifier_accuracy(folder: Path) -> float:
    """The share of ``FIXTURE_TEXTS`` that the saved classifier in ``folder`` labels right, loaded with the
    Auto classes and run one text at a time (no padding, so any padding side or none will do)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    right = 0
    with torch.no_grad(), one_thread():
        for text, label in FIXTURE_TEXTS:
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            right += int(logits.argmax(-1).item() == label)
    return right / len(FIXTURE_TEXTS)


def verbalizer_accuracy(folder: Path) -> float:
    """The share of ``FIXTURE_TEXTS`` after whose ``lm_prompt`` the saved language model in ``folder`` gives
    the label's verbalizer a higher logit than the other's, loaded with the Auto classes."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = list(verbalizer_ids(tokenizer))
    right = 0
    with torch.no_grad(), one_thread():
        for text, label in FIXTURE_TEXTS:
            logits = model(**tokenizer(lm_prompt(text), return_tensors="pt")).logits[0, -1, ids]
            right += int(logits.argmax().item() == label)
    return right / len(FIXTURE_TEXTS)


def _folder_name(name: str, seed: int, trim_offsets: bool) -> str:
    return name + ("" if trim_offsets else "-untrimmed") + (f"-seed{seed}" if seed else "")


def _built_once(folder: Path, build: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerFast]]) -> Path:
    """``folder``, where the model and tokenizer that ``build`` gives are saved unless this process saved
    them there already and they are still there."""
    if folder.resolve() not in _built or not (folder / "config.json").is_file():
        model, fast = build()
        model.save_pretrained(folder)
        _save_tokenizer(fast, folder)
        _built.add(folder.resolve())
    return folder


def _save_tokenizer(fast: PreTrainedTokenizerFast, folder: Path) -> None:
    """``fast.save_pretrained(folder)``, its config then naming each special token it lacks as null, as Qwen2's
    folders on the Hub do: ``Qwen2Tokenizer``, which ``AutoTokenizer`` picks for any Qwen2 folder, would
    otherwise take its own defaults (end of text for the unknown and pad tokens)."""
    fast.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    for key in _SPECIAL_TOKEN_KEYS:
        config.setdefault(key, None)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


_CLASSIFIERS = {
    "llama": LlamaForSequenceClassification,
    "qwen2": Qwen2ForSequenceClassification,
    "gpt2": GPT2ForSequenceClassification,
    "bert": BertForSequenceClassification,
}
_CAUSAL_LMS = {"llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM, "gpt2": GPT2LMHeadModel}
