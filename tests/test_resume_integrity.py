"""Resume only onto the same data, and cache entries that prove their content: a run interrupted before
its data (or the weights a model starts from) changed is not continued on the new data, and a cache entry
altered after it was written is rebuilt, never used."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from conftest import TINY_DATA, tiny_suite_text
from pydantic import Field
from rich.console import Console
from safetensors.torch import load_file, save_file

import harness.cache as cache_module
from harness import executors
from harness.cache import Cache, files_fingerprint
from harness.registry import PluginInfo, Registry, get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.models.bow import BagOfWords, BagOfWordsParams

METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: runtime"""
EXPLAINERS = "\n  - name: random\n  - name: saliency"


class FolderBowParams(BagOfWordsParams):
    folder: str = Field(description="a folder whose *.bin files stand for the weights the model starts from")


class FolderBow(BagOfWords):
    """``bow`` whose weights identity is a local folder's content, as ``hf`` on a checkpoint folder."""

    name: ClassVar[str] = "folder-bow"
    Params = FolderBowParams

    def weights_identity(self) -> dict:
        return {"source": "folder", **files_fingerprint(self.params.folder, ("*.bin",))}


def registry() -> Registry:
    return Registry(
        [*get_registry().all(), PluginInfo("model", "folder-bow", FolderBow, "test-plugins", "1.0")]
    )


def interrupted_then_rerun(path: Path, tmp_path: Path, monkeypatch, change) -> tuple[Store, str, str]:
    """Run the suite at ``path`` until its second explanation starts (Ctrl-C there), call ``change``,
    run it again; return the store, the second run's console output and the first run's id."""
    real = executors.execute
    explained = []

    def interrupt_the_second_explanation(task, inputs, workspace):
        if task.stage == "explain":
            explained.append(task.id)
            if len(explained) == 2:
                raise KeyboardInterrupt
        return real(task, inputs, workspace)

    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(executors, "execute", interrupt_the_second_explanation)
        with pytest.raises(KeyboardInterrupt):
            Runner(load_suite(path, registry()), options).run()
    store = Store(tmp_path / "results")
    [first] = store.runs()
    assert first["status"] == "interrupted" and first["done"] == 2
    change()
    console = io.StringIO()
    Runner(load_suite(path, registry()), options, console=Console(file=console, width=300)).run()
    return store, console.getvalue(), first["run_id"]


def fingerprints(store: Store, run_id: str) -> set[str]:
    return {cell["examples_fingerprint"] for cell in store.cells(run_id)}


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text(TINY_DATA.read_text())
    return path


def suite_on(data: Path, model: str = "name: bow\n    params: {dim: 8, max_epochs: 20}") -> str:
    return (
        tiny_suite_text(EXPLAINERS, METRICS)
        .replace(str(TINY_DATA), str(data))
        .replace("name: bow\n    params: {dim: 8, max_epochs: 20}", model)
    )


def test_a_run_is_not_resumed_onto_an_edited_dataset_file(write_suite, data, tmp_path, monkeypatch):
    path = write_suite(suite_on(data))

    def edit():
        lines = [json.loads(line) for line in data.read_text().splitlines()]
        data.write_text("".join(json.dumps({**row, "text": row["text"] + " indeed"}) + "\n" for row in lines))

    store, said, first = interrupted_then_rerun(path, tmp_path, monkeypatch, edit)
    assert f"not resuming run {first}: dataset 'tiny' changed since the run began" in said
    assert len(said.strip().splitlines()) == 1
    runs = {run["run_id"]: run for run in store.runs()}
    assert len(runs) == 2 and runs[first]["status"] == "interrupted" and runs[first]["done"] == 2
    [second] = set(runs) - {first}
    assert runs[second]["status"] == "complete" and runs[second]["done"] == 4
    assert len(fingerprints(store, second)) == 1  # every cell on the new data
    assert fingerprints(store, second) != fingerprints(store, first)


def test_a_run_is_resumed_when_its_data_is_unchanged(write_suite, data, tmp_path, monkeypatch):
    path = write_suite(suite_on(data))
    store, said, first = interrupted_then_rerun(path, tmp_path, monkeypatch, lambda: data.touch())
    assert f"resuming run {first}" in said and "not resuming" not in said
    [run] = store.runs()
    assert run["status"] == "complete" and run["done"] == 4 and len(fingerprints(store, first)) == 1


def test_a_run_is_not_resumed_once_the_weights_its_model_starts_from_changed(
    write_suite, data, tmp_path, monkeypatch
):
    weights = tmp_path / "checkpoint"
    weights.mkdir()
    (weights / "model.bin").write_bytes(b"first weights")
    model = f"name: folder-bow\n    params: {{dim: 8, max_epochs: 20, folder: {weights}}}"
    path = write_suite(suite_on(data, model))
    store, said, first = interrupted_then_rerun(
        path, tmp_path, monkeypatch, lambda: (weights / "model.bin").write_bytes(b"other weights")
    )
    assert f"not resuming run {first}: the weights model 'folder-bow" in said
    assert "starts from changed since the run began" in said
    assert len(store.runs()) == 2


def test_a_run_recorded_without_data_fingerprints_is_not_resumed(write_suite, data, tmp_path, monkeypatch):
    """A run left by an earlier version recorded no fingerprints: whether its data changed is unknown."""
    path = write_suite(suite_on(data))

    def forget():
        import sqlite3

        with sqlite3.connect(tmp_path / "results" / "bench.sqlite") as db:
            db.execute("UPDATE runs SET inputs=NULL")

    store, said, first = interrupted_then_rerun(path, tmp_path, monkeypatch, forget)
    assert f"not resuming run {first}: it recorded no fingerprints of its data" in said
    assert len(store.runs()) == 2


# -- verified cache entries ------------------------------------------------------------------------------
def test_a_json_entry_altered_after_it_was_written_is_logged_removed_and_never_used(tmp_path, caplog):
    cache = Cache(tmp_path)
    key = "ab" + "0" * 62
    cache.put_json("metric-values", key, {"values": [0.25, 0.5]})
    path = tmp_path / "metric-values" / "ab" / f"{key}.json"  # where entries always were: keys unchanged
    path.write_text(path.read_text().replace("0.25", "0.95"))  # still well-formed JSON
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.get_json("metric-values", key) is None
    [warning] = caplog.records
    assert (
        "does not match the digest written with it" in warning.getMessage()
        and str(path) in warning.getMessage()
    )
    assert not path.exists()
    cache.put_json("metric-values", key, {"values": [0.25, 0.5]})
    assert cache.get_json("metric-values", key) == {"values": [0.25, 0.5]}


def test_a_folder_entry_altered_after_it_was_written_is_removed_and_rebuilt_not_kept(tmp_path, caplog):
    cache = Cache(tmp_path)
    key = "cd" + "0" * 62
    written = []

    def write(folder: Path) -> None:
        written.append(folder)
        (folder / "weights.txt").write_text("good")

    entry = cache.put_directory("models", key, write)
    assert cache.get_directory("models", key) == entry
    (entry / "weights.txt").write_text("evil")
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.get_directory("models", key) is None
    assert "does not match the digest" in caplog.text
    rebuilt = cache.put_directory("models", key, write)
    assert len(written) == 2 and (rebuilt / "weights.txt").read_text() == "good"
    # a writer finding an altered entry in place (another process altered it meanwhile) replaces it
    (rebuilt / "weights.txt").write_text("evil")
    assert (cache.put_directory("models", key, write) / "weights.txt").read_text() == "good"


def test_entries_written_before_digests_are_read_as_they_are(tmp_path):
    """A user's cache from an earlier version stays valid: no digest, no check, same keys."""
    key = "ef" + "0" * 62
    (tmp_path / "accuracy" / "ef").mkdir(parents=True)
    (tmp_path / "accuracy" / "ef" / f"{key}.json").write_text(json.dumps({"test_accuracy": 0.75}))
    folder = tmp_path / "models" / "ef" / key
    folder.mkdir(parents=True)
    (folder / "weights.txt").write_text("old")
    cache = Cache(tmp_path)
    assert cache.get_json("accuracy", key) == {"test_accuracy": 0.75}
    assert cache.get_directory("models", key) == folder
    assert cache.put_directory("models", key, lambda path: None) == folder  # kept, not rebuilt
    assert not (folder / cache_module.DIGEST_FILE).exists()


def test_json_entries_swapped_between_keys_are_logged_removed_and_never_served(tmp_path, caplog):
    """Each entry's digest binds its kind and key: a valid entry copied over another key's file is refused
    as an altered one is."""
    cache = Cache(tmp_path)
    first, second = "a1" + "0" * 62, "a1" + "1" * 62
    cache.put_json("metric-values", first, {"values": [0.25]})
    cache.put_json("metric-values", second, {"values": [0.75]})
    paths = [tmp_path / "metric-values" / "a1" / f"{key}.json" for key in (first, second)]
    texts = [path.read_text() for path in paths]
    paths[0].write_text(texts[1])
    paths[1].write_text(texts[0])
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.get_json("metric-values", first) is None
        assert cache.get_json("metric-values", second) is None
    assert len(caplog.records) == 2 and all("another key" in r.getMessage() for r in caplog.records)
    assert not any(path.exists() for path in paths)
    # an entry copied under the same key of another kind is refused too
    cache.put_json("accuracy", first, {"values": [0.25]})
    (tmp_path / "fit-reports" / "a1").mkdir(parents=True)
    (tmp_path / "fit-reports" / "a1" / f"{first}.json").write_text(
        (tmp_path / "accuracy" / "a1" / f"{first}.json").read_text()
    )
    assert cache.get_json("fit-reports", first) is None


def test_a_folder_entry_moved_to_another_key_is_removed_and_rebuilt(tmp_path, caplog):
    cache = Cache(tmp_path)
    first, second = "b2" + "0" * 62, "b2" + "1" * 62
    entry = cache.put_directory("models", first, lambda folder: (folder / "weights.txt").write_text("first"))
    shutil.copytree(entry, tmp_path / "models" / "b2" / second)
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.get_directory("models", second) is None
    assert "another key" in caplog.text and not (tmp_path / "models" / "b2" / second).exists()
    assert cache.get_directory("models", first) == entry  # the original stays valid


def test_entries_with_a_digest_of_their_content_only_are_still_read(tmp_path, caplog):
    """Entries written before the digest bound the key (a sha256 of the value's text alone, or of a
    folder's files) are read, and still checked against their content."""
    key = "c3" + "0" * 62
    value_text = json.dumps({"values": [0.25, 0.5]})
    digest = hashlib.sha256(value_text.encode()).hexdigest()
    path = tmp_path / "metric-values" / "c3" / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"bench-cache-digest": "{digest}", "value": {value_text}}}')
    folder = tmp_path / "models" / "c3" / key
    folder.mkdir(parents=True)
    (folder / "weights.txt").write_text("old")
    (folder / cache_module.DIGEST_FILE).write_text(json.dumps({"sha256": cache_module._tree_digest(folder)}))
    cache = Cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.get_json("metric-values", key) == {"values": [0.25, 0.5]}
        assert cache.get_directory("models", key) == folder
        assert cache.put_directory("models", key, lambda path: None) == folder  # kept, not rebuilt
    assert not caplog.records
    path.write_text(path.read_text().replace("0.25", "0.95"))
    assert cache.get_json("metric-values", key) is None and not path.exists()


def test_a_run_after_two_cells_cached_values_were_swapped_records_the_right_values(write_suite, tmp_path):
    path = write_suite(
        tiny_suite_text(EXPLAINERS, "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}")
    )
    cache = tmp_path / "cache"
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=cache, progress=False, resume=False)
    store = Store(tmp_path / "results")
    first = Runner(load_suite(path, get_registry()), options).run()
    entries = sorted((cache / "metric-values").rglob("*.json"))
    assert len(entries) == 2
    texts = [entry.read_text() for entry in entries]
    entries[0].write_text(texts[1])
    entries[1].write_text(texts[0])

    second = Runner(load_suite(path, get_registry()), options).run()
    assert not second.failed
    assert store.log_path(second.run_id).read_text().count("copied from another key") == 2
    measured = {
        run: sorted((r["explainer"], r["example_id"], r["value"]) for r in store.records(run))
        for run in (first.run_id, second.run_id)
    }
    assert len(measured[first.run_id]) == 2 * 6 and measured[first.run_id] == measured[second.run_id]
    assert len({value for _, _, value in measured[second.run_id]}) > 1


def test_a_cached_model_with_negated_weights_is_rebuilt_and_the_records_do_not_change(write_suite, tmp_path):
    path = write_suite(tiny_suite_text(EXPLAINERS, METRICS))
    cache = tmp_path / "cache"
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=cache, progress=False, resume=False)
    store = Store(tmp_path / "results")
    first = Runner(load_suite(path, get_registry()), options).run()
    [weights] = (cache / "models").rglob("weights.safetensors")
    trained = load_file(str(weights))
    save_file({name: -tensor for name, tensor in trained.items()}, str(weights))
    for derived in ("attributions", "metric-values", "accuracy"):  # what the model computed: computed again
        for entry in (cache / derived).rglob("*.json"):
            entry.unlink()
    for rows in cache.glob("forward-rows.sqlite*"):
        rows.unlink()

    second = Runner(load_suite(path, get_registry()), options).run()
    assert not second.failed
    assert "does not match the digest written with it" in store.log_path(second.run_id).read_text()
    measured = {
        run: [(r["explainer"], r["metric"], r["example_id"], r["value"]) for r in store.records(run)
              if r["metric"] != "runtime"]  # timings differ from run to run
        for run in (first.run_id, second.run_id)
    }  # fmt: skip
    assert len(measured[first.run_id]) == 2 * 6 and measured[first.run_id] == measured[second.run_id]
    rebuilt = load_file(str(weights))
    assert rebuilt.keys() == trained.keys() and all(torch.equal(rebuilt[k], trained[k]) for k in trained)
