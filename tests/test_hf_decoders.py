"""``hf`` on decoder-only classifiers (Llama, Qwen2, GPT-2) with either padding side or no pad token, and
BERT as the control: the same numbers alone and in a padded batch, from ids and from embeddings; tokens that
are the text; attention read from the position the prediction comes from; a model that would give wrong
numbers refused when a run loads it.

Each failure these tests pin down was seen on 8d91733 with the same tiny models: gradient explainers fed
``inputs_embeds`` alone, so a decoder pooled the last position (a pad for every row but the longest); left
padding made the recorded tokens the pads; attention read position 0, which in a causal model attends only
to itself; a tokenizer without a pad token was refused with no way round it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from decoder_models import DECODER_ARCHITECTURES, EVAL_TEXTS, LABELS, classifier_folder

from harness import Example, PluginError, TextDataset
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from harness.testing import load_findings
from plugins.explainers.attention import Attention
from plugins.explainers.gradient import Saliency
from plugins.explainers.occlusion import Occlusion
from plugins.models.hf import HuggingFaceClassifier, HuggingFaceModel

CPU = torch.device("cpu")
DECODER_CASES = [(architecture, "bpe", padding) for architecture in DECODER_ARCHITECTURES for padding in ("right", "left", "none")]  # fmt: skip
CASES = [*DECODER_CASES, ("llama", "wordpiece", "right"), ("bert", "wordpiece", "right")]


def _dataset() -> TextDataset:
    examples = [Example(id=f"e{i}", text=text, label=i % 2) for i, text in enumerate(EVAL_TEXTS)]
    return TextDataset(name="eval", labels=LABELS, train=[], validation=[], test=examples)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("decoder-models")


def _build(models_root: Path, case: tuple[str, str, str], **params) -> HuggingFaceClassifier:
    """A fresh ``hf`` classifier of the case's folder (tests that change it build their own)."""
    folder = classifier_folder(models_root, *case)
    model = HuggingFaceModel(HuggingFaceModel.Params(path=str(folder), **params))
    return model.build(_dataset(), seed=0, device=CPU)


_BUILT: dict[tuple, HuggingFaceClassifier] = {}


def _shared(models_root: Path, case: tuple[str, str, str]) -> HuggingFaceClassifier:
    """The case's classifier, built once for the tests that only read it."""
    if (models_root, case) not in _BUILT:
        _BUILT[models_root, case] = _build(models_root, case)
    return _BUILT[models_root, case]


def _logits(classifier, examples, *, embeddings: bool) -> torch.Tensor:
    encoding = classifier.encode(examples)
    with torch.no_grad():
        if embeddings:
            return classifier.logits(
                inputs_embeds=classifier.input_embeddings(encoding.input_ids),
                attention_mask=encoding.attention_mask,
                token_type_ids=encoding.token_type_ids,
            )
        return classifier.logits(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
        )


@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_logits_are_the_same_alone_in_a_batch_and_from_embeddings(models_root, case):
    classifier = _shared(models_root, case)
    examples = _dataset().test
    alone = torch.cat([_logits(classifier, [example], embeddings=False) for example in examples])
    batched = _logits(classifier, examples, embeddings=False)
    from_embeddings = _logits(classifier, examples, embeddings=True)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_embeddings, alone, atol=1e-5, rtol=1e-5)
    assert float((alone[:, 0] - alone[:, 1]).std()) > 1e-3  # the predictions differ between texts


@pytest.mark.parametrize("case", DECODER_CASES, ids="-".join)
def test_the_model_is_what_transformers_computes_for_each_text_alone(models_root, case):
    from transformers import AutoModelForSequenceClassification

    classifier = _shared(models_root, case)
    network = AutoModelForSequenceClassification.from_pretrained(classifier_folder(models_root, *case)).eval()
    for example in _dataset().test:
        ids = classifier.tokenizer(example.text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected = network(input_ids=ids).logits
        torch.testing.assert_close(
            _logits(classifier, [example], embeddings=True), expected, atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_tokens_and_offsets_are_the_texts_whatever_the_padding_side(models_root, case):
    classifier = _shared(models_root, case)
    examples = _dataset().test
    encoding = classifier.encode(examples)
    pad = classifier.tokenizer.pad_token
    for row, example in enumerate(examples):
        alone = classifier.encode([example])
        assert encoding.tokens[row] == alone.tokens[0]
        length = len(encoding.tokens[row])
        assert encoding.attention_mask[row, :length].all() and not encoding.attention_mask[row, length:].any()
        words = [example.text[start:end] for (start, end), segment in zip(encoding.offsets[row], encoding.segments[row], strict=True) if segment >= 0]  # fmt: skip
        assert "".join(words).replace(" ", "") == example.text.replace(" ", "")  # the whole text, in order
        assert pad not in [
            t for t, s in zip(encoding.tokens[row], encoding.segments[row], strict=True) if s >= 0
        ]


@pytest.mark.parametrize("case", CASES, ids="-".join)
def test_the_load_checks_pass(models_root, case):
    classifier = _shared(models_root, case)
    assert load_findings(classifier, _dataset().test[:4]) == []


def test_offsets_that_keep_the_leading_space_pass_too(models_root):
    # GPT-2's, Llama 3's and Qwen2's own tokenizer.json files do not trim offsets: " good" spans its space.
    folder = classifier_folder(models_root, "gpt2", "bpe", "left", trim_offsets=False)
    classifier = HuggingFaceModel(HuggingFaceModel.Params(path=str(folder))).build(
        _dataset(), seed=0, device=CPU
    )
    encoding = classifier.encode(_dataset().test[2:3])
    assert any(_dataset().test[2].text[start:end].startswith(" ") for start, end in encoding.offsets[0])
    assert load_findings(classifier, _dataset().test) == []


def _rows(scores: torch.Tensor, encoding) -> list[np.ndarray]:
    return [scores[row, : len(tokens)].detach().numpy() for row, tokens in enumerate(encoding.tokens)]


@pytest.mark.parametrize("case", [("gpt2", "bpe", "right"), ("llama", "bpe", "left"), ("qwen2", "bpe", "none")], ids="-".join)  # fmt: skip
@pytest.mark.parametrize(
    "explainer",
    [
        Saliency(Saliency.Params(reduction="input_x_gradient")),
        Occlusion(Occlusion.Params(masking="delete")),
        Attention(),
    ],
    ids=["saliency", "occlusion", "attention"],
)
def test_explanations_are_the_same_at_batch_size_one_and_eight(models_root, case, explainer):
    classifier = _shared(models_root, case)
    examples = _dataset().test
    encoding = classifier.encode(examples)
    targets = classifier.log_probabilities(encoding).argmax(-1)
    batched = _rows(explainer.explain(classifier, encoding, targets), encoding)
    for row, example in enumerate(examples):
        alone_encoding = classifier.encode([example])
        alone = _rows(explainer.explain(classifier, alone_encoding, targets[row : row + 1]), alone_encoding)[
            0
        ]
        np.testing.assert_allclose(batched[row], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", [("gpt2", "bpe", "left"), ("llama", "bpe", "right")], ids="-".join)
def test_attention_reads_the_last_token_of_a_causal_model(models_root, case):
    classifier = _shared(models_root, case)
    examples = _dataset().test
    encoding = classifier.encode(examples)
    attentions = classifier.attentions(encoding)
    scores = Attention().explain(classifier, encoding, torch.zeros(len(examples), dtype=torch.long))
    for row, tokens in enumerate(encoding.tokens):
        last = len(tokens) - 1
        expected = attentions[-1][row].mean(0)[last]
        torch.testing.assert_close(scores[row], expected.float())
        assert float(scores[row, : len(tokens)].max()) < 1.0  # not the first position's one-hot row
    assert (classifier.output_positions(encoding.attention_mask) == encoding.attention_mask.sum(-1) - 1).all()


def test_an_encoder_reads_attention_from_its_first_token(models_root):
    classifier = _shared(models_root, ("bert", "wordpiece", "right"))
    encoding = classifier.encode(_dataset().test)
    assert not classifier.is_causal
    assert (classifier.output_positions(encoding.attention_mask) == 0).all()


def test_a_tokenizer_without_pad_pads_with_eos_and_says_so(models_root, caplog):
    with caplog.at_level(logging.INFO, logger="bench"):
        classifier = _build(models_root, ("gpt2", "bpe", "none"))
    assert classifier.tokenizer.pad_token == classifier.tokenizer.eos_token
    assert classifier.network.config.pad_token_id == classifier.tokenizer.eos_token_id
    assert "eos token" in caplog.text


def test_pad_token_names_the_padding_token_and_an_unknown_one_is_refused(models_root):
    token = _shared(models_root, ("llama", "bpe", "none")).tokenizer.convert_ids_to_tokens(5)
    classifier = _build(models_root, ("llama", "bpe", "none"), pad_token=token)
    assert classifier.tokenizer.pad_token_id == 5
    torch.testing.assert_close(
        _logits(classifier, _dataset().test, embeddings=True),
        torch.cat([_logits(classifier, [e], embeddings=False) for e in _dataset().test]),
        atol=1e-5,
        rtol=1e-5,
    )
    with pytest.raises(PluginError, match="pad_token 'no-such-token' is not in the vocabulary"):
        _build(models_root, ("llama", "bpe", "none"), pad_token="no-such-token")


class EmbeddingsAloneClassifier(HuggingFaceClassifier):
    """What ``hf`` did before: embeddings go in without ids, so a decoder pools its last position."""

    def forward(self, *, attention_mask, input_ids, inputs_embeds, token_type_ids):
        inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
        return self.network(**inputs).logits


def test_the_load_checks_catch_a_decoder_fed_embeddings_alone(models_root):
    classifier = _build(models_root, ("gpt2", "bpe", "right"))
    classifier.__class__ = EmbeddingsAloneClassifier
    findings = load_findings(classifier, _dataset().test[:4])
    assert [finding.check for finding in findings] == ["embeddings"]


SUITE = """name: decoders-test
version: 1
seeds: [0]
device: cpu
batch_size: {batch_size}
datasets:
  - name: jsonl
    label: eval
    params: {{path: {data}, test_fraction: 1.0, validation_fraction: 0.0}}
models:
  - name: hf
    label: {label}
    params: {{path: {folder}}}
explainers:
  - name: saliency
    params: {{reduction: input_x_gradient}}
  - name: occlusion
    params: {{masking: delete}}
metrics:
  - name: comprehensiveness
    params: {{masking: delete}}
  - name: sufficiency
    params: {{masking: delete}}
"""


def _write_data(folder: Path) -> Path:
    """The evaluation texts as a folder of one file, all of it the test split (``hf`` trains nothing)."""
    folder.mkdir(exist_ok=True)
    rows = [{"id": f"e{i}", "text": text, "label": i % 2, "label_name": LABELS[i % 2]} for i, text in enumerate(EVAL_TEXTS)]  # fmt: skip
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def _run_suite(tmp_path: Path, folder: Path, batch_size: int, label: str = "decoder", cache: str = "cache"):
    suite = tmp_path / f"suite-{batch_size}.yaml"
    data = _write_data(tmp_path / "eval")
    suite.write_text(SUITE.format(batch_size=batch_size, data=data, folder=folder, label=label))
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / cache, progress=False)
    result = Runner(load_suite(suite, get_registry()), options).run()
    return Store(tmp_path / "results"), result


def test_a_run_gives_the_same_metric_values_at_batch_size_one_and_eight(models_root, tmp_path):
    folder = classifier_folder(models_root, "gpt2", "bpe", "left")
    values = {}
    for batch_size in (1, 8):
        store, result = _run_suite(tmp_path, folder, batch_size)
        assert not result.failed
        values[batch_size] = {
            (r["explainer"], r["metric"], r["example_id"]): r["value"] for r in store.records(result.run_id)
        }
    assert values[1].keys() == values[8].keys() and len(values[1]) == 2 * 2 * len(EVAL_TEXTS)
    for key, value in values[1].items():
        assert value == pytest.approx(values[8][key], abs=1e-5), key


def test_a_model_that_is_not_trainable_is_loaded_once_per_run(models_root, tmp_path, monkeypatch):
    # hf trains nothing, so its model is not cached: every task that needed it used to load it again
    # (the build-model task and each explain task: three loads here, seven in a six-explainer suite).
    loads = []
    build = HuggingFaceModel.build
    monkeypatch.setattr(
        HuggingFaceModel, "build", lambda self, *a, **k: loads.append(1) or build(self, *a, **k)
    )
    _, result = _run_suite(tmp_path, classifier_folder(models_root, "gpt2", "bpe", "left"), 8)
    assert not result.failed and len(loads) == 1


def test_a_model_failing_its_load_check_fails_its_cells_with_the_checks_name(
    models_root, tmp_path, monkeypatch
):
    original = HuggingFaceModel.build

    def build(self, *args, **kwargs):
        classifier = original(self, *args, **kwargs)
        classifier.__class__ = EmbeddingsAloneClassifier
        return classifier

    monkeypatch.setattr(HuggingFaceModel, "build", build)
    store, result = _run_suite(
        tmp_path, classifier_folder(models_root, "gpt2", "bpe", "right"), 8, cache="broken"
    )
    assert len(result.failed) == 4  # 2 explainers × 2 metrics
    assert not list(store.records(result.run_id))
    assert all("fails the load check 'embeddings'" in message for _, message in result.failed)


@pytest.mark.parametrize(("case", "expected"), [(("gpt2", "bpe", "right"), "delete"), (("bert", "wordpiece", "right"), "mask")])  # fmt: skip
def test_masking_auto_is_the_mask_token_else_unk_else_deletion(models_root, case, expected):
    from harness.perturb import resolve_masking

    classifier = _shared(models_root, case)
    assert resolve_masking(classifier, "auto") == expected
    encoding = classifier.encode(_dataset().test)
    targets = classifier.log_probabilities(encoding).argmax(-1)
    auto = Occlusion(Occlusion.Params(masking="auto")).explain(classifier, encoding, targets)
    named = Occlusion(Occlusion.Params(masking=expected)).explain(classifier, encoding, targets)
    torch.testing.assert_close(auto, named)


def test_a_masking_the_tokenizer_lacks_is_refused_before_the_run(models_root, tmp_path):
    from harness.errors import BenchError

    folder = classifier_folder(models_root, "gpt2", "bpe", "left")
    data = _write_data(tmp_path / "eval")
    text = SUITE.format(batch_size=8, data=data, folder=folder, label="gpt2")
    suite = tmp_path / "suite.yaml"
    suite.write_text(text.replace("params: {masking: delete}\nmetrics:", "params: {masking: mask}\nmetrics:"))
    with pytest.raises(BenchError, match=r"suite.yaml:\d+: .*masking 'mask' of occlusion.* is not available with model 'gpt2': its tokenizer has no mask token; set masking: auto"):  # fmt: skip
        load_suite(suite, get_registry())
    suite.write_text(text.replace("  - name: comprehensiveness\n    params: {masking: delete}", "  - name: delta-log-odds"))  # fmt: skip
    with pytest.raises(BenchError, match="masking 'mask' of delta-log-odds.* is not available"):
        load_suite(suite, get_registry())  # its default, mask, too
    suite.write_text(text.replace("params: {masking: delete}\nmetrics:", "params: {masking: auto}\nmetrics:"))
    load_suite(suite, get_registry())


@pytest.mark.parametrize("case", [("llama", "bpe", "right"), ("gpt2", "bpe", "right"), ("bert", "wordpiece", "right")], ids="-".join)  # fmt: skip
def test_hidden_layer_k_outputs_the_models_hidden_state_k(models_root, case):
    classifier = _shared(models_root, case)
    encoding = classifier.encode(_dataset().test)
    seen = []
    hook = classifier.hidden_layer(1).register_forward_hook(
        lambda module, args, output: seen.append(output[0] if isinstance(output, tuple) else output)
    )
    try:
        with torch.no_grad():
            states = classifier.network(
                input_ids=encoding.input_ids,
                attention_mask=encoding.attention_mask,
                output_hidden_states=True,
            ).hidden_states
    finally:
        hook.remove()
    torch.testing.assert_close(seen[0], states[1])
    assert classifier.hidden_layer(0) is classifier.word_embeddings
    with pytest.raises(PluginError, match="has 2 encoder layers"):
        classifier.hidden_layer(3)
