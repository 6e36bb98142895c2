"""The ``prompted-lm`` model: a causal language model with a prompt template and verbalizers, on a tiny random
Llama built offline (a byte-level BPE tokenizer trained here, with a beginning-of-sequence token, no padding
token and left padding, as language-model tokenizers ship)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from harness import Example, PluginError, TextDataset, evaluate
from harness.attribution import attributions_from_batch
from harness.testing import check_model, kit_dataset
from plugins.explainers.occlusion import Occlusion
from plugins.models.hf import PromptedLM

CPU = torch.device("cpu")
BOS, EOS = "<s>", "</s>"
TEMPLATE = "Review: {text}\nSentiment:"
PAIR_TEMPLATE = "Premise: {text}\nHypothesis: {text_pair}\nAnswer:"
VERBALIZERS = {"negative": [" negative", " bad"], "positive": [" positive", " good"]}
TEXTS = (
    "a good film",
    "The actors are dreadful, and the plot is worse.",
    "bad",
    "it was good, really good: I would watch it again with the whole family",
)


def save_tiny_causal_lm(directory: Path) -> Path:
    """A random 2-layer Llama language model (width 32) and its tokenizer, written to ``directory`` with
    save_pretrained, in a second or so: a byte-level BPE tokenizer trained on a few prompts (`` negative``
    and `` positive``, the default verbalizers, one token each), with a beginning-of-sequence token, no
    padding token and padding on the left, as language-model tokenizers ship."""
    corpus = [f"Review: {text}\nSentiment: positive negative good bad" for text in TEXTS] * 20
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    beginning = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, backend.token_to_id(BOS))]
    )
    backend.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=True), beginning])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=EOS, padding_side="left", model_max_length=128
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_causal_lm(tmp_path_factory.mktemp("prompted-llama"))


def sentiment(examples: tuple[Example, ...], pair: bool = False) -> TextDataset:
    return TextDataset(
        name="sentiment-pairs" if pair else "sentiment",
        labels=("negative", "positive"),
        train=examples,
        validation=examples,
        test=examples,
        is_pair=pair,
    )


SINGLE = sentiment(tuple(Example(f"s{i}", text, i % 2) for i, text in enumerate(TEXTS)))
PAIRS = sentiment(
    tuple(Example(f"p{i}", text, i % 2, text_pair=TEXTS[-1 - i]) for i, text in enumerate(TEXTS)), pair=True
)


def build(folder: Path, dataset: TextDataset = SINGLE, **params):
    params = {"path": str(folder), "template": TEMPLATE, "verbalizers": VERBALIZERS} | params
    return PromptedLM(PromptedLM.Params(**params)).build(dataset, seed=0, device=CPU)


def test_probabilities_are_the_next_token_distribution_renormalised_over_the_verbalizers(folder):
    classifier = build(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    words = [tokenizer.convert_tokens_to_ids(f"Ġ{w}") for w in ("negative", "bad", "positive", "good")]
    encoding = classifier.encode(SINGLE.test)
    probabilities = classifier.log_probabilities(encoding).exp()
    for row, text in enumerate(TEXTS):
        prompt = tokenizer(TEMPLATE.format(text=text), return_tensors="pt")
        # the prompt is what the whole template, filled in, tokenises to (BOS first, " word" kept whole)
        assert encoding.input_ids[row, : len(encoding.tokens[row])].tolist() == prompt.input_ids[0].tolist()
        with torch.no_grad():
            next_token = torch.softmax(model(**prompt).logits[0, -1].double(), dim=-1)[words]
        by_class = torch.stack([next_token[:2].sum(), next_token[2:].sum()])
        torch.testing.assert_close(probabilities[row], by_class / by_class.sum(), rtol=0, atol=1e-6)


def test_a_prompt_is_predicted_alike_alone_in_a_padded_batch_and_from_word_embeddings(folder):
    classifier = build(folder)
    encoding = classifier.encode(SINGLE.test)
    assert encoding.attention_mask[:, 0].all()  # padded on the right, whatever the tokenizer's padding side
    assert classifier.pad_token_id == AutoTokenizer.from_pretrained(folder).eos_token_id  # no pad token
    lengths = encoding.attention_mask.sum(-1)
    assert classifier.output_positions(encoding.attention_mask).tolist() == (lengths - 1).tolist()
    batched = classifier.log_probabilities(encoding)
    for row, example in enumerate(SINGLE.test):
        alone = classifier.log_probabilities(classifier.encode([example]))[0]
        torch.testing.assert_close(alone, batched[row], rtol=0, atol=1e-5)
    with torch.no_grad():
        from_ids = classifier.logits(input_ids=encoding.input_ids, attention_mask=encoding.attention_mask)
        from_embeddings = classifier.logits(
            inputs_embeds=classifier.input_embeddings(encoding.input_ids),
            attention_mask=encoding.attention_mask,
        )
    torch.testing.assert_close(from_embeddings, from_ids, rtol=0, atol=1e-5)


def test_the_template_is_special_and_the_text_tokens_point_into_the_text(folder):
    classifier = build(folder)
    tokenizer = classifier.tokenizer
    encoding = classifier.encode(SINGLE.test)
    head = tokenizer("Review:")["input_ids"]  # BOS, then the template's first piece
    tail = tokenizer("\nSentiment:", add_special_tokens=False)["input_ids"]
    for row, text in enumerate(TEXTS):
        ids = encoding.input_ids[row, : len(encoding.tokens[row])].tolist()
        segments = encoding.segments[row]
        assert ids[: len(head)] == head and ids[-len(tail) :] == tail
        assert segments[: len(head)] == [-1] * len(head) and segments[-len(tail) :] == [-1] * len(tail)
        assert all(encoding.word_ids[row][p] is None for p, s in enumerate(segments) if s < 0)
        inside = range(len(head), len(ids) - len(tail))
        real = [p for p, s in enumerate(segments) if s >= 0]
        assert real and set(real) <= set(inside) and {segments[p] for p in real} == {0}
        # the text's tokens of whitespace only (a lone space before a character the vocabulary has no
        # " x" for) hold no word: special too
        assert all(tokenizer.decode([ids[p]]).isspace() for p in set(inside) - set(real))
        for position in real:
            start, end = encoding.offsets[row][position]
            assert tokenizer.decode([ids[position]]).strip() == text[start:end]
        words = [encoding.word_ids[row][p] for p in real]
        assert words == sorted(words)  # unique and in order: a word's tokens are contiguous


def test_occlusion_scores_and_removes_only_the_texts_tokens(folder):
    classifier = build(folder)
    encoding = classifier.encode(SINGLE.test)
    encoding.example_ids = [example.id for example in SINGLE.test]
    seen = []
    logits = classifier.logits

    def recording(**inputs):
        seen.extend(
            ids[mask.bool()].tolist()
            for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)
        )
        return logits(**inputs)

    classifier.logits = recording
    targets = torch.ones(len(TEXTS), dtype=torch.long)
    scores = Occlusion(Occlusion.Params(masking="delete")).explain(classifier, encoding, targets)
    special = encoding.special_mask
    assert (scores[special] == 0).all() and (scores[~special] != 0).any()
    head = classifier.tokenizer("Review:")["input_ids"]
    tail = classifier.tokenizer("\nSentiment:", add_special_tokens=False)["input_ids"]
    assert len(seen) > len(TEXTS)  # the full prompts and the ones with a token left out
    assert all(ids[: len(head)] == head and ids[-len(tail) :] == tail for ids in seen)
    # the metrics' removal rests on the same segments: the template is never a unit
    attributions = attributions_from_batch(
        encoding.example_ids, encoding, scores, targets, classifier.log_probabilities(encoding), 0.0
    )
    for attribution in attributions:
        units = np.concatenate(attribution.units("word"))
        assert sorted(units.tolist()) == [p for p, s in enumerate(attribution.segments) if s >= 0]
        every_unit = np.zeros((1, len(attribution.input_ids)), dtype=bool)
        every_unit[0, units] = True
        (left,) = evaluate(classifier, [attribution], [every_unit], masking="delete", batch_size=4)
        assert np.isfinite(left).all()  # every text token deleted: the template alone still predicts


def test_conforms_to_the_model_kit(folder):
    # the kit's labels are negative / positive, as the default verbalizers'; its pairs go through the
    # single-text template as the first text, a line break and the second
    check_model(PromptedLM, {"path": str(folder), "template": TEMPLATE})
    check_model(PromptedLM, {"path": str(folder), "template": PAIR_TEMPLATE}, dataset=kit_dataset(pairs=True))


def test_a_pair_template_encodes_both_texts_with_their_own_offsets(folder):
    classifier = build(folder, PAIRS, template=PAIR_TEMPLATE)
    encoding = classifier.encode(PAIRS.test)
    for row, example in enumerate(PAIRS.test):
        segments = encoding.segments[row]
        real = [s for s in segments if s >= 0]
        assert real == sorted(real) and set(real) == {0, 1}
        between = segments[segments.index(0) : segments.index(1)]
        assert between[-1] == -1  # "\nHypothesis:" separates the texts
        for position, segment in enumerate(segments):
            if segment >= 0:
                start, end = encoding.offsets[row][position]
                text = example.text if segment == 0 else example.text_pair
                token = classifier.tokenizer.decode([int(encoding.input_ids[row, position])])
                assert token.strip() == text[start:end]
    probabilities = classifier.log_probabilities(encoding).exp()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(len(TEXTS), dtype=torch.float64))


def test_truncation_cuts_the_text_never_the_template(folder):
    classifier = build(folder, max_length=16)
    (long,) = [example for example in SINGLE.test if len(example.text) > 60]
    encoding = classifier.encode([long])
    tail = classifier.tokenizer("\nSentiment:", add_special_tokens=False)["input_ids"]
    assert encoding.input_ids.shape[1] == 16
    assert encoding.input_ids[0, -len(tail) :].tolist() == tail
    real = [p for p, s in enumerate(encoding.segments[0]) if s >= 0]
    assert long.text.startswith(long.text[: encoding.offsets[0][real[-1]][1]])
    assert encoding.offsets[0][real[0]] == (0, 2)  # "it": the text keeps its beginning


@pytest.mark.parametrize(
    ("params", "dataset", "says"),
    [
        ({"verbalizers": {"negative": [" negative"]}}, SINGLE, "missing ['positive']"),
        ({"verbalizers": VERBALIZERS | {"neutral": [" neutral"]}}, SINGLE, "unknown ['neutral']"),
        ({"verbalizers": {"negative": [" xylophone"], "positive": [" good"]}}, SINGLE, "' xylophone'"),
        ({"verbalizers": {"negative": [" good"], "positive": [" good"]}}, SINGLE, "each token may say"),
        ({"template": "Review: {review}\nSentiment:"}, SINGLE, "{review}"),
        ({"template": "Sentiment:"}, SINGLE, "no {text}"),
        ({"template": "{text}"}, SINGLE, "no text of its own"),
        ({"template": "Review: {text"}, SINGLE, "not a valid format string"),
        ({"template": "{text} {text_pair}\nAnswer:"}, PAIRS, "separate"),
        ({"template": PAIR_TEMPLATE}, SINGLE, "single texts"),
        ({"template": TEMPLATE}, PAIRS, "has no {text_pair}"),
        ({"template": "A long instruction. " * 8 + TEMPLATE, "max_length": 12}, SINGLE, "max_length"),
    ],
)
def test_a_bad_template_or_verbalizer_is_refused_in_one_line(folder, params, dataset, says):
    with pytest.raises(PluginError) as error:
        build(folder, dataset, **params)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_attentions_come_from_the_decoder_for_every_position(folder):
    classifier = build(folder)
    encoding = classifier.encode(SINGLE.test)
    attentions = classifier.attentions(encoding)
    batch, length = encoding.input_ids.shape
    assert len(attentions) == 2 and attentions[0].shape == (batch, 2, length, length)
    last = classifier.output_positions(encoding.attention_mask)
    rows = attentions[-1][torch.arange(batch), :, last]  # what the prediction's position attends to
    torch.testing.assert_close(rows.sum(-1), torch.ones(batch, 2))
