"""The tiny saved models of ``decoder_models``: each loads with the Auto classes as it was built, with the
padding, special tokens and character offsets it declares, and has learned enough to be worth explaining."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from decoder_models import (
    COMBINATIONS,
    DECODER_ARCHITECTURES,
    END_OF_TEXT,
    EVAL_TEXTS,
    FIXTURE_TEXTS,
    LABELS,
    build_causal_lm,
    build_classifier,
    causal_lm_folder,
    classifier_accuracy,
    classifier_folder,
    lm_prompt,
    one_thread,
    verbalizer_accuracy,
    verbalizer_ids,
)
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

BYTE_LEVEL = [combination for combination in COMBINATIONS if combination[1] == "bpe"]
WORD = re.compile(r"\S+")


@pytest.fixture(scope="module", autouse=True)
def _tiny_models_on_one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("decoder-models")


def _one_at_a_time_logits(model, tokenizer, texts) -> torch.Tensor:
    """A classifier's logits for each text run alone (no padding: a tokenizer without a pad token can run it),
    or a language model's for the token after each text."""
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits
            rows.append(logits if logits.dim() == 2 else logits[:, -1])
    return torch.cat(rows)


def _encodings(tokenizer, texts) -> list[dict]:
    return [tokenizer(text, return_offsets_mapping=True).data for text in texts]


def test_fixture_texts_are_balanced_sentences_of_3_to_15_words():
    lengths = [len(WORD.findall(text)) for text, _ in FIXTURE_TEXTS]
    assert min(lengths) == 3 and max(lengths) == 15
    assert sorted(label for _, label in FIXTURE_TEXTS) == [0] * 20 + [1] * 20


def test_eval_texts_are_8_held_out_sentences_of_2_to_20_words():
    assert len(EVAL_TEXTS) == 8
    lengths = [len(re.findall(r"\w+", text)) for text in EVAL_TEXTS]
    assert min(lengths) == 2 and max(lengths) == 20
    assert not set(EVAL_TEXTS) & {text for text, _ in FIXTURE_TEXTS}


def test_combinations_pair_bert_only_with_wordpiece_and_qwen2_only_with_bpe():
    assert len(COMBINATIONS) == 18
    assert {tokenizer for architecture, tokenizer, _ in COMBINATIONS if architecture == "bert"} == {
        "wordpiece"
    }
    assert {tokenizer for architecture, tokenizer, _ in COMBINATIONS if architecture == "qwen2"} == {"bpe"}


@pytest.mark.parametrize("combination", COMBINATIONS, ids="-".join)
def test_classifier_folder_loads_with_the_auto_classes_as_built(models_root, combination):
    architecture, tokenizer_kind, padding = combination
    built_model, built_tokenizer = build_classifier(*combination)
    folder = classifier_folder(models_root, *combination)
    assert folder == models_root / "-".join(combination)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(model) is type(built_model)
    assert model.config.model_type == architecture
    assert tokenizer.is_fast
    assert tokenizer.padding_side == ("left" if padding == "left" else "right")
    pad_token = {"none": None, "wordpiece": "[PAD]", "bpe": END_OF_TEXT}[
        "none" if padding == "none" else tokenizer_kind
    ]
    assert tokenizer.pad_token == pad_token
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.id2label == dict(enumerate(LABELS))
    texts = list(EVAL_TEXTS) + [text for text, _ in FIXTURE_TEXTS]
    assert _encodings(tokenizer, texts) == _encodings(built_tokenizer, texts)
    torch.testing.assert_close(
        _one_at_a_time_logits(model, tokenizer, EVAL_TEXTS),
        _one_at_a_time_logits(built_model, built_tokenizer, EVAL_TEXTS),
    )


@pytest.mark.parametrize("combination", COMBINATIONS, ids="-".join)
def test_classifier_fits_its_training_texts_and_tells_held_out_texts_apart(models_root, combination):
    folder = classifier_folder(models_root, *combination)
    assert classifier_accuracy(folder) >= 0.9  # 0.95 to 1 at seed 0
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    margins = _one_at_a_time_logits(model, tokenizer, EVAL_TEXTS).diff(dim=-1).squeeze(-1)
    assert margins.std() > 1.0  # logit margins spread over the held-out texts, not one prediction for all
    assert (margins > 0).any() and (margins < 0).any()


@pytest.mark.parametrize("combination", [c for c in COMBINATIONS if c[2] != "none"], ids="-".join)
def test_the_saved_tokenizer_pads_with_its_declared_token_on_its_declared_side(models_root, combination):
    tokenizer = AutoTokenizer.from_pretrained(classifier_folder(models_root, *combination))
    batch = tokenizer(["a good film", EVAL_TEXTS[-1]], padding=True)
    (short, _), (short_mask, long_mask) = batch["input_ids"], batch["attention_mask"]
    padding = len(short) - sum(short_mask)
    assert padding > 0 and all(long_mask)
    padded = range(padding) if combination[2] == "left" else range(len(short) - padding, len(short))
    assert [i for i, read in enumerate(short_mask) if not read] == list(padded)
    assert {short[i] for i in padded} == {tokenizer.pad_token_id}


@pytest.mark.parametrize("combination", BYTE_LEVEL, ids="-".join)
def test_byte_level_tokenizers_know_no_unknown_or_mask_token(models_root, combination):
    tokenizer = AutoTokenizer.from_pretrained(classifier_folder(models_root, *combination))
    assert tokenizer.unk_token is None and tokenizer.mask_token is None
    assert tokenizer.eos_token == END_OF_TEXT
    assert tokenizer.bos_token == (None if combination[0] == "qwen2" else END_OF_TEXT)
    assert 300 <= len(tokenizer) <= 500


def test_llama_puts_its_beginning_of_text_token_first_and_the_others_none(models_root):
    for architecture in ("llama", "qwen2", "gpt2"):
        tokenizer = AutoTokenizer.from_pretrained(
            classifier_folder(models_root, architecture, "bpe", "right")
        )
        first = tokenizer.convert_ids_to_tokens(tokenizer("a good film")["input_ids"])[0]
        assert (first == END_OF_TEXT) == (architecture == "llama")


def test_wordpiece_tokenizers_frame_the_text_with_cls_and_sep_and_know_unk_and_mask(models_root):
    tokenizer = AutoTokenizer.from_pretrained(classifier_folder(models_root, "llama", "wordpiece", "left"))
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("A good film")["input_ids"])
    assert tokens == ["[CLS]", "a", "good", "film", "[SEP]"]
    assert (tokenizer.unk_token, tokenizer.mask_token) == ("[UNK]", "[MASK]")
    assert tokenizer.convert_ids_to_tokens(tokenizer("good ☃")["input_ids"])[-2] == "[UNK]"


def _words_of_tokens(text: str, encoding: dict) -> list[str]:
    """The text's words (runs of non-space) put together from the character spans of the tokens, in order:
    each token's span lies inside one word, and a word is the union of its tokens' spans."""
    words = {match.start(): match for match in WORD.finditer(text)}
    pieces: dict[int, list[tuple[int, int]]] = {}
    for start, end in encoding["offset_mapping"]:
        if start == end:  # a special token
            continue
        word = next(match for match in words.values() if match.start() <= start and end <= match.end())
        pieces.setdefault(word.start(), []).append((start, end))
    return [text[spans[0][0] : spans[-1][1]] for _, spans in sorted(pieces.items())]


@pytest.mark.parametrize("combination", BYTE_LEVEL, ids="-".join)
def test_byte_level_offsets_map_tokens_back_onto_the_words_of_the_text(models_root, combination):
    tokenizer = AutoTokenizer.from_pretrained(classifier_folder(models_root, *combination))
    for text in EVAL_TEXTS:
        encoding = tokenizer(text, return_offsets_mapping=True)
        spans = [span for span in encoding["offset_mapping"] if span[0] != span[1]]
        assert all(" " not in text[start:end] for start, end in spans)
        assert [start for start, _ in spans] == sorted(start for start, _ in spans)
        assert _words_of_tokens(text, encoding) == WORD.findall(text)


def test_untrimmed_byte_level_offsets_keep_the_space_before_a_token(models_root):
    trimmed = AutoTokenizer.from_pretrained(classifier_folder(models_root, "gpt2", "bpe", "none"))
    folder = classifier_folder(models_root, "gpt2", "bpe", "none", trim_offsets=False)
    assert folder.name == "gpt2-bpe-none-untrimmed"
    untrimmed = AutoTokenizer.from_pretrained(folder)
    text = EVAL_TEXTS[2]
    trimmed_encoding = trimmed(text, return_offsets_mapping=True)
    untrimmed_encoding = untrimmed(text, return_offsets_mapping=True)
    assert untrimmed_encoding["input_ids"] == trimmed_encoding["input_ids"]
    expected = [
        (start - 1 if token.startswith("Ġ") else start, end)
        for token, (start, end) in zip(
            trimmed.convert_ids_to_tokens(trimmed_encoding["input_ids"]),
            trimmed_encoding["offset_mapping"],
            strict=True,
        )
    ]
    assert untrimmed_encoding["offset_mapping"] == expected


def test_qwen2_folders_reload_as_qwen2_tokenizer_with_the_tokens_they_declare(models_root):
    folder = classifier_folder(models_root, "qwen2", "bpe", "none")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"  # what AutoTokenizer picks for any Qwen2 config
    assert (tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token) == (None, None, None)
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in EVAL_TEXTS:
        encoding = raw.encode(text)
        assert tokenizer(text, return_offsets_mapping=True).data == {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "offset_mapping": encoding.offsets,
        }


def test_folders_are_built_once_per_process(models_root):
    folder = classifier_folder(models_root, "bert", "wordpiece", "right")
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert classifier_folder(models_root, "bert", "wordpiece", "right") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == written


def test_the_seed_names_the_folder_and_changes_the_weights_but_not_the_global_random_state(models_root):
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    folder = classifier_folder(models_root, "gpt2", "bpe", "left", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads
    assert folder.name == "gpt2-bpe-left-seed1"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    seeded = AutoModelForSequenceClassification.from_pretrained(folder)
    default = AutoModelForSequenceClassification.from_pretrained(
        classifier_folder(models_root, "gpt2", "bpe", "left")
    )
    assert not torch.allclose(
        _one_at_a_time_logits(seeded, tokenizer, EVAL_TEXTS),
        _one_at_a_time_logits(default, tokenizer, EVAL_TEXTS),
    )


def test_unbuildable_combinations_are_refused_by_name(models_root):
    with pytest.raises(ValueError, match="no classifier for"):
        classifier_folder(models_root, "bert", "bpe", "right")
    with pytest.raises(ValueError, match="no classifier for"):
        classifier_folder(models_root, "qwen2", "wordpiece", "left")
    with pytest.raises(ValueError, match="trim_offsets=False is for byte-level BPE"):
        classifier_folder(models_root, "llama", "wordpiece", "left", trim_offsets=False)
    with pytest.raises(ValueError, match="no language model for"):
        causal_lm_folder(models_root, "bert")


def test_causal_lm_folder_loads_with_the_auto_classes_as_built(models_root):
    built_model, built_tokenizer = build_causal_lm("llama")
    folder = causal_lm_folder(models_root, "llama")
    assert folder == models_root / "causal-llama-bpe"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model) is type(built_model)
    prompts = [lm_prompt(text) for text in EVAL_TEXTS]
    assert _encodings(tokenizer, prompts) == _encodings(built_tokenizer, prompts)
    torch.testing.assert_close(
        _one_at_a_time_logits(model, tokenizer, prompts),
        _one_at_a_time_logits(built_model, built_tokenizer, prompts),
    )


@pytest.mark.parametrize("architecture", DECODER_ARCHITECTURES)
def test_causal_lm_has_no_pad_token_and_one_token_verbalizers_that_it_ranks_right(models_root, architecture):
    folder = causal_lm_folder(models_root, architecture)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == architecture and config.vocab_size == len(tokenizer)
    assert tokenizer.is_fast and tokenizer.pad_token is None and config.pad_token_id is None
    assert json.loads((folder / "tokenizer_config.json").read_text())["pad_token"] is None
    negative, positive = verbalizer_ids(tokenizer)
    assert tokenizer.convert_ids_to_tokens([negative, positive]) == ["Ġnegative", "Ġpositive"]
    assert verbalizer_accuracy(folder) >= 0.85
