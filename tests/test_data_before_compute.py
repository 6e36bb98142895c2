"""Bad data is refused before anything is computed: every dataset a suite reads (and every model's
``train_on``) is loaded and checked when ``bench run`` starts and by ``bench validate``; a problem is one
line naming the file, the line and the field, exit code 2, no run recorded and no model trained."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import TINY_DATA, make_distribution, tiny_suite_text
from test_cli_errors import assert_one_error_line, bench_main
from test_datasets import FakeSplit, fake_datasets

from harness import Dataset, Example, TextDataset
from harness.datachecks import dataset_problems
from harness.errors import BenchError
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.stages import Settings
from harness.store import Store
from harness.suite import load_suite
from harness.testing import dataset_findings, kit_dataset

ROWS = TINY_DATA.read_text(encoding="utf-8").splitlines()


def write_rows(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def replaced(number: int, row: str) -> list[str]:
    """The tiny dataset's rows with row ``number`` (1-based) replaced."""
    return [row if index == number else line for index, line in enumerate(ROWS, start=1)]


def missing_file(folder: Path) -> tuple[Path, list[str]]:
    return folder / "absent.jsonl", [str(folder / "absent.jsonl"), "no file or folder", "fix the path"]


def malformed_line(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(folder / "data.jsonl", replaced(3, '{"id": "x", "text": '))
    return path, [f"{path}:3:", "not valid JSON", "fix or remove the line"]


def missing_label(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(folder / "data.jsonl", replaced(2, '{"id": "x", "text": "a film"}'))
    return path, [f"{path}:2:", "missing field 'label'", "add it to the row"]


def string_label(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(
        folder / "data.jsonl", replaced(2, '{"id": "x", "text": "a film", "label": "positive"}')
    )
    return path, [f"{path}:2:", "'label' must be an integer", "'positive'"]


def not_utf8(folder: Path) -> tuple[Path, list[str]]:
    path = folder / "data.jsonl"
    path.write_bytes("\n".join(ROWS[:4]).encode() + b'\n{"id": "x", "text": "caf\xe9", "label": 0}\n')
    return path, [str(path), "not UTF-8", "save it as UTF-8"]


def one_class(folder: Path) -> tuple[Path, list[str]]:
    rows = [f'{{"id": "r{i}", "text": "words {i}", "label": 0}}' for i in range(20)]
    path = write_rows(folder / "data.jsonl", rows)
    return path, [str(path), "one class only", "add examples of another class"]


def empty_file(folder: Path) -> tuple[Path, list[str]]:
    path = folder / "data.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    return path, [str(path), "no rows"]


def duplicate_id(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(folder / "data.jsonl", replaced(5, ROWS[0]))
    return path, [f"{path}:5:", "id 'ex000' already used at", f"{path}:1", "make ids unique"]


def unpaired_surrogate(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(folder / "data.jsonl", replaced(6, r'{"id": "x", "text": "a film \ud83d", "label": 1}'))
    return path, [f"{path}:6:", "field 'text'", "unpaired surrogate \\ud83d", "fix or remove it"]


def blank_text(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(folder / "data.jsonl", replaced(4, '{"id": "x", "text": "  \\u200b  ", "label": 1}'))
    return path, [f"{path}:4:", "field 'text' is '  \\u200b  '", "give every example a text"]


def repeated_key(folder: Path) -> tuple[Path, list[str]]:
    path = write_rows(folder / "data.jsonl", replaced(2, '{"id": "a", "id": "b", "text": "x y", "label": 1}'))
    return path, [f"{path}:2:", "key 'id' appears twice in the row", "keep one"]


BAD_DATA = [
    missing_file,
    malformed_line,
    missing_label,
    string_label,
    not_utf8,
    one_class,
    empty_file,
    duplicate_id,
    unpaired_surrogate,
    blank_text,
    repeated_key,
]


def suite_on(write_suite, data: Path, **replacements: str) -> Path:
    text = tiny_suite_text().replace(str(TINY_DATA), str(data))
    for old, new in replacements.items():
        text = text.replace(old, new)
    return write_suite(text)


def assert_nothing_computed(tmp_path: Path) -> None:
    """No run recorded (the results database holds its schema alone), no log, nothing cached."""
    assert Store(tmp_path / "results").runs() == []
    assert not (tmp_path / "results" / "logs").exists() or not any((tmp_path / "results" / "logs").iterdir())
    cache = tmp_path / "cache"
    assert not cache.exists() or not [path for path in cache.rglob("*") if path.is_file()]


def run_args(suite: Path, tmp_path: Path) -> list:
    return ["run", suite, "--out", tmp_path / "results", "--cache-dir", tmp_path / "cache"]


@pytest.mark.parametrize("bad", BAD_DATA, ids=lambda bad: bad.__name__)
def test_bad_data_is_refused_by_run_in_one_line_before_anything_is_computed(
    bad, write_suite, tmp_path, monkeypatch, capsys
):
    data, fragments = bad(tmp_path)
    code, _, err = bench_main(monkeypatch, capsys, *run_args(suite_on(write_suite, data), tmp_path))
    assert_one_error_line(code, err, "dataset 'tiny'", *fragments)
    assert_nothing_computed(tmp_path)


@pytest.mark.parametrize("bad", BAD_DATA, ids=lambda bad: bad.__name__)
def test_validate_refuses_the_same_bad_data(bad, write_suite, tmp_path, monkeypatch, capsys):
    data, fragments = bad(tmp_path)
    code, out, err = bench_main(monkeypatch, capsys, "validate", suite_on(write_suite, data))
    assert_one_error_line(code, err, "dataset 'tiny'", *fragments)
    assert out == ""


def test_validate_without_data_checks_the_suite_alone(write_suite, tmp_path, monkeypatch, capsys):
    data, _ = missing_file(tmp_path)
    code, out, err = bench_main(monkeypatch, capsys, "validate", suite_on(write_suite, data), "--no-data")
    assert code == 0, err
    assert "valid — 6 cells" in out


def test_an_id_in_two_split_files_names_both_lines(write_suite, tmp_path, monkeypatch, capsys):
    """An id names one example in records, reports and ``bench show``; one in train and test is usually
    the same example on both sides of the split: an error, not a warning."""
    folder = tmp_path / "split"
    folder.mkdir()
    write_rows(folder / "train.jsonl", ROWS[:60])
    write_rows(folder / "test.jsonl", [*ROWS[60:], ROWS[7]])
    code, _, err = bench_main(monkeypatch, capsys, *run_args(suite_on(write_suite, folder), tmp_path))
    assert_one_error_line(code, err, f"{folder / 'test.jsonl'}:13:", f"{folder / 'train.jsonl'}:8", "'ex007'")
    assert_nothing_computed(tmp_path)


def test_a_model_trained_on_other_classes_is_refused_naming_both_datasets(
    write_suite, tmp_path, monkeypatch, capsys
):
    other = write_rows(
        tmp_path / "other.jsonl",
        [
            f'{{"id": "o{i}", "text": "w{i} x", "label": {i % 3}, "label_name": "c{i % 3}"}}'
            for i in range(30)
        ],
    )
    suite = write_suite(
        tiny_suite_text().replace(
            "    params: {dim: 8, max_epochs: 20}",
            f"    params: {{dim: 8}}\n    train_on: {{name: jsonl, label: three, params: {{path: {other}}}}}",
        )
    )
    code, _, err = bench_main(monkeypatch, capsys, *run_args(suite, tmp_path))
    assert_one_error_line(
        code,
        err,
        "model 'bow(dim=8) trained on three' is trained on dataset 'three' with classes ['c0', 'c1', 'c2']",
        "evaluated on dataset 'tiny' with classes ['negative', 'positive']",
        "same classes",
    )
    assert_nothing_computed(tmp_path)


def test_an_empty_explained_split_is_refused(write_suite, tmp_path, monkeypatch, capsys):
    suite = suite_on(
        write_suite,
        TINY_DATA,
        **{"test_fraction: 0.25}": "test_fraction: 0.25, validation_fraction: 0.0}\n    split: validation"},
    )
    code, _, err = bench_main(monkeypatch, capsys, *run_args(suite, tmp_path))
    assert_one_error_line(code, err, "dataset 'tiny': its validation split, the one it explains, is empty")
    assert_nothing_computed(tmp_path)


def test_a_model_trained_on_an_empty_train_split_is_refused(write_suite, tmp_path, monkeypatch, capsys):
    suite = suite_on(
        write_suite, TINY_DATA, **{"test_fraction: 0.25}": "test_fraction: 1.0, validation_fraction: 0.0}"}
    )
    code, _, err = bench_main(monkeypatch, capsys, *run_args(suite, tmp_path))
    assert_one_error_line(
        code,
        err,
        "model 'bow(dim=8, max_epochs=20)'",
        "train split of dataset 'tiny', which is empty",
        "train_on",
    )
    assert_nothing_computed(tmp_path)


# -- the plugin contract: Dataset.check and Dataset.locate ---------------------------------------------

THIRD_PARTY = '''
from typing import ClassVar

from harness import Dataset, Example, TextDataset, hookimpl

BENCH_API_VERSION = "1.0"


class Ledger(Dataset):
    """Rows of a ledger: its own check refuses an example the ledger marks as void."""

    name: ClassVar[str] = "ledger"

    def load(self):
        rows = [Example(f"e{i}", f"entry {i} good" if i % 2 else f"entry {i} bad", i % 2) for i in range(12)]
        rows[9] = Example("e9", "VOID", 1)
        return TextDataset("ledger", ("debit", "credit"), tuple(rows[:8]), (), tuple(rows[8:]))

    def check(self, dataset):
        return [
            f"{self.locate(dataset, 'test', example)}: field 'text' is VOID; strike the entry"
            for example in dataset.test if example.text == "VOID"
        ]

    def locate(self, dataset, split=None, example=None):
        return f"ledger.csv row {example.id[1:]}" if example is not None else "ledger.csv"


@hookimpl
def bench_datasets():
    return [Ledger]
'''


@pytest.fixture
def ledger_plugin(tmp_path, monkeypatch, fresh_registry):
    make_distribution(
        tmp_path / "site", "ledger-plugin", {"ledger_mod": THIRD_PARTY}, {"ledger": "ledger_mod"}
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh_registry()


def test_a_third_party_datasets_own_check_refuses_the_suite(
    ledger_plugin, write_suite, tmp_path, monkeypatch, capsys
):
    text = tiny_suite_text().replace(
        f"name: jsonl\n    label: tiny\n    params: {{path: {TINY_DATA}, test_fraction: 0.25}}",
        "name: ledger",
    )
    suite = write_suite(text)
    code, _, err = bench_main(monkeypatch, capsys, *run_args(suite, tmp_path))
    assert_one_error_line(
        code, err, "dataset 'ledger': ledger.csv row 9: field 'text' is VOID; strike the entry"
    )
    assert_nothing_computed(tmp_path)


class Located(Dataset):
    """A dataset naming where its examples come from; its data is broken by each test."""

    name: ClassVar[str] = "located"
    data: ClassVar[TextDataset] = kit_dataset()

    def load(self) -> TextDataset:
        return self.data

    def locate(self, dataset, split=None, example=None) -> str:
        return f"{split}.tsv line {example.id}" if example is not None else "the tsv files"


def with_test(**changes) -> TextDataset:
    from dataclasses import replace

    data = kit_dataset()
    return replace(data, test=(replace(data.test[0], **changes), *data.test[1:]))


def test_problems_the_harness_finds_are_named_where_the_plugin_says(monkeypatch):
    monkeypatch.setattr(Located, "data", with_test(text="   "))
    [problem] = dataset_problems(Located(), Located.data)
    assert problem.check == "texts"
    assert problem.message.startswith(f"test.tsv line {Located.data.test[0].id}: field 'text' is '   '")


def test_an_unpaired_surrogate_is_found_without_crashing_the_fingerprint(monkeypatch):
    monkeypatch.setattr(Located, "data", with_test(text="half of \ud83d a character", rationale=None))
    [problem] = dataset_problems(Located(), Located.data)
    assert problem.check == "encoding"
    assert problem.message.startswith(
        f"test.tsv line {Located.data.test[0].id}: field 'text' holds the unpaired"
    )
    assert "\\ud83d at character 8" in problem.message


def test_the_kit_runs_the_same_checks_and_the_plugins_own(monkeypatch):
    monkeypatch.setattr(Located, "data", with_test(text="half of \ud83d a character", rationale=None))
    assert {finding.check for finding in dataset_findings(Located)} == {"encoding"}

    class Picky(Located):
        def check(self, dataset):
            return ["the tsv files: column 3 is not documented; document it"]

    monkeypatch.setattr(Located, "data", kit_dataset())
    [finding] = dataset_findings(Picky)
    assert (finding.check, finding.message) == (
        "check",
        "the tsv files: column 3 is not documented; document it",
    )


def test_hf_names_the_hub_split_and_row_of_a_bad_example(monkeypatch):
    from plugins.datasets.hf import HuggingFaceDataset

    texts = [f"text {i}" for i in range(10)]
    texts[3] = ""
    fake_datasets(
        monkeypatch,
        lambda *args, **kwargs: {
            "train": FakeSplit({"text": texts, "label": [i % 2 for i in range(10)]}),
            "test": FakeSplit({"text": ["a", "b"], "label": [0, 1]}),
        },
    )
    plugin = HuggingFaceDataset(HuggingFaceDataset.Params(path="owner/reviews", validation_split=None))
    [problem] = dataset_problems(plugin, plugin.load())
    assert problem.message == (
        "hf dataset 'owner/reviews' split 'train' row 3: field 'text' is ''; give every example a text"
    )


def test_bbc_news_names_the_article_file(tmp_path):
    from plugins.datasets.bbc_news import BbcNews

    data = TextDataset(
        "bbc-news", ("sport", "tech"), (), (), (Example("tech/042", "", 1),), extra={"source": str(tmp_path)}
    )
    [problem, *_] = dataset_problems(BbcNews(), data)
    assert problem.message.startswith(f"{tmp_path / 'tech' / '042.txt'}: field 'text' is ''")


# -- cost: each dataset is loaded once by a serial run ---------------------------------------------------


def test_a_serial_run_loads_each_dataset_once(write_suite, tmp_path, monkeypatch):
    from plugins.datasets.jsonl import JsonlDataset

    loads = []
    load = JsonlDataset.load
    monkeypatch.setattr(JsonlDataset, "load", lambda self: loads.append(self.params.path) or load(self))
    suite = write_suite(tiny_suite_text(metrics="\n  - name: runtime"))
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(load_suite(suite, get_registry()), options).run()
    assert not result.failed and result.computed == 2
    assert loads == [str(TINY_DATA)]


def test_the_checked_datasets_are_not_sent_to_worker_processes(write_suite):
    loaded = load_suite(write_suite(tiny_suite_text()), get_registry())
    datasets = {("jsonl", "{}"): kit_dataset()}
    settings = Settings(
        loaded, cache_dir="unused", use_cache=True, device="cpu", limit=None, datasets=datasets
    )
    assert settings.datasets is datasets
    assert pickle.loads(pickle.dumps(settings)).datasets == {}


def test_a_dataset_plugin_that_crashes_while_loading_is_one_line(write_suite, monkeypatch):
    from harness.datachecks import check_suite_data
    from plugins.datasets.jsonl import JsonlDataset

    def crash(self):
        raise KeyError("text")

    monkeypatch.setattr(JsonlDataset, "load", crash)
    with pytest.raises(BenchError) as refused:
        check_suite_data(load_suite(write_suite(tiny_suite_text()), get_registry()))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("dataset 'tiny': plugin 'jsonl' failed to load it (KeyError: 'text')")


def test_an_untrained_variant_needs_no_train_split(write_suite, monkeypatch, capsys):
    """``untrained`` builds the architecture without training: evaluation-only data is enough for it."""
    text = tiny_suite_text(metrics="\n  - name: runtime").replace(
        "test_fraction: 0.25}", "test_fraction: 1.0, validation_fraction: 0.0}"
    )
    untrained = text.replace(
        "  - name: bow\n    params: {dim: 8, max_epochs: 20}",
        "  - name: minilm-head\n    variants: [untrained]",
    )
    code, out, err = bench_main(monkeypatch, capsys, "validate", write_suite(untrained))
    assert code == 0, err
    both = untrained.replace("variants: [untrained]", "variants: [default, untrained]")
    code, _, err = bench_main(monkeypatch, capsys, "validate", write_suite(both))
    assert_one_error_line(code, err, "model 'minilm-head' is trained on the train split of dataset 'tiny'")
