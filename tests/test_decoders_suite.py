"""suites/decoders.yaml and the script that builds its models (examples/decoders/build_models.py): the
models come out shaped as LLMs ship (byte-level BPE without padding, mask or unknown token, padding on the
left; labels in the data's order; one token per label word), the build is deterministic and keeps what
exists, and the suite, pointed at tiny models built by the same functions from the fixture sentences,
loads and runs end to end without a failed cell. Nothing here reads ../shared/data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import TINY_DATA
from transformers import AutoConfig, AutoTokenizer

from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "decoders.yaml"
SCRIPT = REPO / "examples" / "decoders" / "build_models.py"
SUITE_DATA = "path: ../shared/data/sst2"
SUITE_MODELS = "results/decoder-models"


def _script() -> ModuleType:
    """The build script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


build_models = _script()
TINY_SHAPE = build_models.Shape(
    vocab_size=400, hidden_size=32, layers=1, heads=2, key_value_heads=1, intermediate_size=64
)
TINY_TRAINING = build_models.Training(epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 72 fixture sentences as SST-2's sentence files: 48 train, 12 dev, 12 test."""
    folder = tmp_path_factory.mktemp("sst2")
    rows = TINY_DATA.read_text(encoding="utf-8").splitlines()
    for split, part in (("train", rows[:48]), ("dev", rows[48:60]), ("test", rows[60:])):
        (folder / f"sentences_{split}.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
    return folder


def _build(out: Path, data: Path, **options) -> dict[str, dict]:
    return build_models.build(
        out,
        data / "sentences_train.jsonl",
        data / "sentences_dev.jsonl",
        shape=TINY_SHAPE,
        training=TINY_TRAINING,
        **options,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    out = tmp_path_factory.mktemp("decoder-models")
    _build(out, data)
    return out


def _suite_copy(tmp_path: Path, data: Path, models: Path) -> Path:
    """suites/decoders.yaml with its data and model folders replaced by the tiny ones."""
    text = SUITE.read_text(encoding="utf-8")
    assert text.count(SUITE_DATA) == 1 and text.count(f"path: {SUITE_MODELS}/") == 2
    path = tmp_path / "decoders.yaml"
    path.write_text(
        text.replace(SUITE_DATA, f"path: {data}").replace(SUITE_MODELS, str(models)), encoding="utf-8"
    )
    return path


# -- the build script -----------------------------------------------------------------------------------


def test_the_tokenizer_has_no_padding_mask_or_unknown_token_and_pads_on_the_left(models):
    for folder in (build_models.CLASSIFIER_FOLDER, build_models.LANGUAGE_MODEL_FOLDER):
        tokenizer = AutoTokenizer.from_pretrained(models / folder)
        assert (tokenizer.pad_token, tokenizer.mask_token, tokenizer.unk_token) == (None, None, None)
        assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
        assert tokenizer.padding_side == "left"
        assert tokenizer("a film")["input_ids"][0] == tokenizer.bos_token_id, folder


def test_each_label_word_is_one_token_of_the_language_models_tokenizer(models):
    tokenizer = AutoTokenizer.from_pretrained(models / build_models.LANGUAGE_MODEL_FOLDER)
    for word in (" negative", " positive"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1, word


def test_the_classifier_names_its_labels_in_the_datas_order_and_has_no_padding_id(models):
    config = AutoConfig.from_pretrained(models / build_models.CLASSIFIER_FOLDER)
    assert config.architectures == ["LlamaForSequenceClassification"]
    assert config.id2label == {0: "negative", 1: "positive"}
    assert config.pad_token_id is None


def test_label_names_come_from_the_data_and_a_label_with_two_names_is_refused(tmp_path):
    rows = [{"text": "good", "label": 1, "label_name": "positive"}, {"text": "bad", "label": 0, "label_name": "negative"}]  # fmt: skip
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert build_models.read_jsonl(path)[1] == ("negative", "positive")
    rows.append({"text": "fine", "label": 1, "label_name": "good"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match="label 1 is named 'good' and 'positive'"):
        build_models.read_jsonl(path)


def test_the_build_is_the_same_from_the_same_seed(tmp_path, data, models):
    _build(tmp_path, data)
    for folder in (build_models.CLASSIFIER_FOLDER, build_models.LANGUAGE_MODEL_FOLDER):
        assert (tmp_path / folder / "tokenizer.json").read_bytes() == (
            models / folder / "tokenizer.json"
        ).read_bytes()
        again = (tmp_path / folder / "model.safetensors").read_bytes()
        assert again == (models / folder / "model.safetensors").read_bytes(), folder


def test_a_folder_that_exists_is_kept_unless_forced(tmp_path, data):
    kept = tmp_path / build_models.CLASSIFIER_FOLDER
    kept.mkdir()
    results = _build(tmp_path, data)
    assert not results[build_models.CLASSIFIER_FOLDER]["built"] and not any(kept.iterdir())
    assert results[build_models.LANGUAGE_MODEL_FOLDER]["built"]
    forced = _build(tmp_path, data, force=True)
    assert forced[build_models.CLASSIFIER_FOLDER]["built"] and (kept / "config.json").is_file()
    assert 0.0 <= forced[build_models.CLASSIFIER_FOLDER]["dev_accuracy"] <= 1.0


# -- the suite ------------------------------------------------------------------------------------------


def test_the_suite_loads_and_removes_by_deletion_wherever_it_removes_tokens(tmp_path, data, models):
    loaded = load_suite(_suite_copy(tmp_path, data, models), get_registry())
    assert [entry.name for entry in loaded.entries["models"]] == ["hf", "prompted-lm"]
    removing = [
        entry
        for section in ("explainers", "metrics")
        for entry in loaded.entries[section]
        if "masking" in type(entry.params).model_fields
    ]
    assert {entry.name for entry in removing} >= {"occlusion", "lime", "delta-log-odds", "switching-point"}
    for entry in removing:  # defaults included: mask, unk and pad would put a token in the text's place
        assert entry.params.masking in ("auto", "delete"), entry.label


def test_the_whole_suite_runs_on_tiny_models_without_a_failed_cell(tmp_path, data, models):
    loaded = load_suite(_suite_copy(tmp_path, data, models), get_registry())
    options = RunOptions(
        results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", limit=3, progress=False
    )
    result = Runner(loaded, options).run()
    assert result.failed == [], result.failed
    records = list(Store(tmp_path / "results").records(result.run_id))
    cells = {
        (record["model"], record["explainer"], json.dumps(record["explainer_params"]), record["metric"])
        for record in records
    }
    explainers = len(loaded.entries["explainers"])
    assert len(cells) == len(loaded.entries["models"]) * explainers * len(loaded.entries["metrics"])
    assert len(records) == 3 * len(cells)
