"""The runner: records, caching, failure isolation, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import TINY_DATA, make_distribution, subprocess_pythonpath, tiny_suite_text

from harness.errors import PluginError
from harness.registry import get_registry
from harness.report import Report
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

RAISING_EXPLAINER = '''
import torch
from harness import Explainer, hookimpl
BENCH_API_VERSION = "1.0"

class Exploding(Explainer):
    """Always raises."""
    name = "exploding"
    def explain(self, classifier, encoding, targets):
        raise RuntimeError("boom from a plugin")

@hookimpl
def bench_explainers():
    return [Exploding]
'''

KILL_SWITCH_EXPLAINER = '''
import os, signal
from pathlib import Path
import torch
from harness import Explainer, hookimpl
BENCH_API_VERSION = "1.0"

class KillSwitch(Explainer):
    """Position scores; kills its own process (SIGKILL) while the marker file exists."""
    name = "kill-switch"
    def explain(self, classifier, encoding, targets):
        marker = Path(os.environ["BENCH_TEST_KILL_MARKER"])
        if marker.exists():
            marker.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        return -torch.arange(encoding.input_ids.shape[1], dtype=torch.float32).expand(encoding.input_ids.shape)

@hookimpl
def bench_explainers():
    return [KillSwitch]
'''


def run_suite(path, tmp_path, **options):
    loaded = load_suite(path, get_registry())
    options = {
        "results_dir": tmp_path / "results",
        "cache_dir": tmp_path / "cache",
        "progress": False,
        **options,
    }
    return Runner(loaded, RunOptions(**options)).run()


def deterministic_records(store: Store, run_id: str) -> list[tuple]:
    return sorted(
        (
            r["dataset"],
            r["model"],
            r["explainer"],
            str(r["explainer_params"]),
            r["metric"],
            str(r["metric_params"]),
            r["seed"],
            r["example_id"],
            r["value"],
        )
        for r in store.records(run_id)
        if r["metric"] != "runtime"
    )


def test_a_run_stores_one_record_per_example_and_cell(write_suite, tmp_path):
    result = run_suite(write_suite(tiny_suite_text()), tmp_path)
    assert result.cells == 6 and result.computed == 6 and not result.failed
    store = Store(tmp_path / "results")
    records = list(store.records(result.run_id))
    assert len(records) == 6 * 6
    assert {r["family"] for r in records} == {"faithfulness", "cost"}
    run = store.run(result.run_id)
    assert run["status"] == "complete" and run["suite"] == "tiny" and "tiny" in run["suite_text"]
    assert run["versions"]["torch"] and run["finished_at"]
    [model] = store.models(result.run_id)
    assert 0.0 <= model["test_accuracy"] <= 1.0 and model["n_test"] == 18


def test_a_run_stores_what_pages_show_class_names_gold_labels_and_metric_ranges(write_suite, tmp_path):
    import json

    result = run_suite(write_suite(tiny_suite_text()), tmp_path)
    store = Store(tmp_path / "results")
    [model] = store.models(result.run_id)
    assert model["labels"] == ["negative", "positive"]
    gold = {
        line["id"]: line["label"]
        for line in map(json.loads, TINY_DATA.read_text().splitlines())
    }
    attributions = list(store.attributions(result.run_id))
    assert attributions and all(a["gold_label"] == gold[a["example_id"]] for a in attributions)
    ranges = {cell["metric"]: cell["value_range"] for cell in store.cells(result.run_id)}
    assert ranges == {"comprehensiveness": [-1.0, 1.0], "sufficiency": [-1.0, 1.0], "runtime": [0.0, None]}
    columns = [c for table in Report.build(store, result.run_id).to_json()["tables"] for c in table["columns"]]
    assert {c["metric"].split("(")[0]: c["range"] for c in columns} == ranges  # what the page colours by


def test_each_cell_records_the_direction_its_parameters_give_and_the_report_marks_by_it(
    write_suite, tmp_path
):
    metrics = """
  - name: delta-log-odds
    params: {percent: 50, grid: {select: [positive, negative]}}"""
    explainers = """
  - name: occlusion
  - name: saliency
    params: {reduction: input_x_gradient}"""  # both signed: each has negative words to select
    result = run_suite(write_suite(tiny_suite_text(explainers, metrics)), tmp_path)
    store = Store(tmp_path / "results")
    directions = {(c["metric_label"], c["direction"]) for c in store.cells(result.run_id)}
    assert directions == {
        ("delta-log-odds(percent=50, select=positive)", "higher"),
        ("delta-log-odds(percent=50, select=negative)", "lower"),
    }
    [table] = Report.build(store, result.run_id).tables
    for column in table.columns:
        means = {row: table.cells[(row, column)].mean for row in table.rows}
        assert None not in means.values() and len(set(means.values())) == 2
        best = (max if "positive" in column.metric else min)(means, key=means.get)
        assert (best, column) in table.best


def test_a_rerun_hits_the_cache_for_models_attributions_and_metrics(write_suite, tmp_path, monkeypatch):
    path = write_suite(tiny_suite_text())
    first = run_suite(path, tmp_path)
    from plugins.explainers.gradient import Saliency
    from plugins.metrics.eraser import Comprehensiveness
    from plugins.models.bow import BagOfWords

    def forbidden(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(BagOfWords, "build", forbidden)
    monkeypatch.setattr(BagOfWords, "load", forbidden)
    monkeypatch.setattr(Saliency, "explain", forbidden)
    monkeypatch.setattr(Comprehensiveness, "compute", forbidden)
    second = run_suite(path, tmp_path)
    assert second.run_id != first.run_id and not second.failed
    store = Store(tmp_path / "results")
    first_records = deterministic_records(store, first.run_id)
    assert len(first_records) == 4 * 6  # the four non-runtime cells, one record per example each
    assert first_records == deterministic_records(store, second.run_id)


def test_no_cache_recomputes(write_suite, tmp_path, monkeypatch):
    path = write_suite(tiny_suite_text())
    run_suite(path, tmp_path)
    from plugins.explainers.gradient import Saliency

    def broken(*args, **kwargs):
        raise RuntimeError("recomputed")

    monkeypatch.setattr(Saliency, "explain", broken)
    result = run_suite(path, tmp_path, use_cache=False)
    assert {cell.explainer.name for cell, _ in result.failed} == {"saliency"}


def test_a_raising_plugin_fails_only_its_own_cells(write_suite, tmp_path, monkeypatch, fresh_registry):
    make_distribution(
        tmp_path / "site",
        "exploding-plugin",
        {"exploding_mod": RAISING_EXPLAINER},
        {"exploding": "exploding_mod"},
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh_registry()
    explainers = "\n  - name: random\n  - name: exploding\n  - name: saliency"
    result = run_suite(write_suite(tiny_suite_text(explainers=explainers)), tmp_path)
    assert len(result.failed) == 3
    assert {cell.explainer.name for cell, _ in result.failed} == {"exploding"}
    assert all(error == "RuntimeError: boom from a plugin" for _, error in result.failed)
    store = Store(tmp_path / "results")
    cells = store.cells(result.run_id)
    assert sum(c["status"] == "done" for c in cells) == 6
    assert store.run(result.run_id)["status"] == "complete-with-failures"
    log = store.log_path(result.run_id).read_text()
    assert "Traceback" in log and "boom from a plugin" in log


def test_a_failing_model_fails_its_cells_and_reports_why(write_suite, tmp_path, monkeypatch):
    from plugins.models.bow import BagOfWords

    def broken_build(self, dataset, **options):
        raise PluginError("bow: out of disk space")

    monkeypatch.setattr(BagOfWords, "build", broken_build)
    result = run_suite(write_suite(tiny_suite_text()), tmp_path, use_cache=False)
    assert len(result.failed) == 6
    assert all(error == "bow: out of disk space" for _, error in result.failed)


def test_a_run_killed_mid_way_resumes_and_matches_an_uninterrupted_run(write_suite, tmp_path):
    site = make_distribution(
        tmp_path / "site", "kill-plugin", {"kill_mod": KILL_SWITCH_EXPLAINER}, {"kill": "kill_mod"}
    )
    explainers = (
        "\n  - name: random\n  - name: saliency\n  - name: kill-switch\n  - name: integrated-gradients"
    )
    path = write_suite(tiny_suite_text(explainers=explainers))
    marker = tmp_path / "kill-now"
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath(site), "BENCH_TEST_KILL_MARKER": str(marker)}

    def bench(results, cache):
        command = [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            str(path),
            "--out",
            str(results),
            "--cache-dir",
            str(cache),
        ]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    marker.touch()
    killed = bench(tmp_path / "results", tmp_path / "cache")
    assert killed.returncode == -signal.SIGKILL
    store = Store(tmp_path / "results")
    [interrupted] = store.runs()
    assert interrupted["status"] == "crashed" and interrupted["done"] == 6  # random and saliency finished

    resumed = bench(tmp_path / "results", tmp_path / "cache")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {interrupted['run_id']}" in resumed.stderr
    [run] = store.runs()
    assert run["status"] == "complete" and run["done"] == 12

    uninterrupted = bench(tmp_path / "clean-results", tmp_path / "clean-cache")
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    clean = Store(tmp_path / "clean-results")
    [clean_run] = clean.runs()
    assert deterministic_records(store, run["run_id"]) == deterministic_records(clean, clean_run["run_id"])
    assert len(list(store.records(run["run_id"]))) == len(list(clean.records(clean_run["run_id"]))) == 12 * 6


def test_cuda_request_without_cuda_is_a_clear_error(write_suite, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    from harness.errors import BenchError

    with pytest.raises(BenchError, match="CUDA is not available"):
        run_suite(write_suite(tiny_suite_text()), tmp_path, device="cuda")


def test_a_model_can_be_trained_on_another_dataset(write_suite, tmp_path):
    from conftest import TINY_DATA

    text = tiny_suite_text().replace(
        "    params: {dim: 8, max_epochs: 20}",
        f"    params: {{dim: 8, max_epochs: 20}}\n    train_on: {{name: jsonl, label: tiny-train, params: {{path: {TINY_DATA}}}}}",
    )
    text = text.replace("test_fraction: 0.25}", "test_fraction: 1.0, validation_fraction: 0.0}")
    result = run_suite(write_suite(text), tmp_path)
    assert not result.failed
    [model] = Store(tmp_path / "results").models(result.run_id)
    assert model["model"] == "bow(dim=8, max_epochs=20) trained on tiny-train"
    assert model["n_test"] == 72  # accuracy on the evaluated dataset: all of it is its test split


def test_training_on_a_dataset_with_other_classes_is_refused_before_anything_runs(write_suite, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(
        "\n".join(
            f'{{"id": "o{i}", "text": "w{i} x", "label": {i % 3}, "label_name": "c{i % 3}"}}'
            for i in range(30)
        )
    )
    text = tiny_suite_text().replace(
        "    params: {dim: 8, max_epochs: 20}",
        f"    params: {{dim: 8}}\n    train_on: {{name: jsonl, params: {{path: {other}}}}}",
    )
    from harness.errors import BenchError

    with pytest.raises(BenchError) as refused:
        run_suite(write_suite(text), tmp_path)
    message = str(refused.value)
    assert "classes ['c0', 'c1', 'c2'], but is evaluated on dataset 'tiny' with classes " in message
    assert Store(tmp_path / "results").runs() == []  # no run, no model


def test_explainer_target_and_word_granularity_are_applied_by_the_runner(write_suite, tmp_path):
    explainers = """
  - name: saliency
    params: {target: 0}
  - name: saliency
    params: {granularity: word, word_reduction: max, reduction: l2}"""
    metrics = "\n  - name: runtime"
    result = run_suite(write_suite(tiny_suite_text(explainers=explainers, metrics=metrics)), tmp_path)
    assert not result.failed
    rows = list(Store(tmp_path / "results").attributions(result.run_id))
    fixed = [r for r in rows if r["explainer_params"]["target"] == 0]
    assert fixed and all(r["target"] == 0 for r in fixed)
    words = [r for r in rows if r["explainer_params"]["granularity"] == "word"]
    assert words and all(r["target"] == r["predicted"] for r in words)
    for row in words:  # every token of a word carries the word's score (bow: one token per word)
        by_word: dict[int, set] = {}
        for word, score in zip(row["word_ids"], row["scores"], strict=True):
            if word is not None:
                by_word.setdefault(word, set()).add(score)
        assert all(len(scores) == 1 for scores in by_word.values())


def test_a_target_class_the_model_does_not_have_fails_the_cells(write_suite, tmp_path):
    explainers = "\n  - name: random\n    params: {target: 5}"
    result = run_suite(write_suite(tiny_suite_text(explainers=explainers)), tmp_path)
    assert len(result.failed) == 3
    assert result.failed[0][1] == "target class 5 does not exist: the model has 2 classes"


LABELLING_EXPLAINER = '''
import torch
from harness import Explainer, LabelledScores, hookimpl
BENCH_API_VERSION = "1.0"

class Labelling(Explainer):
    """Labels every token 'low positive' (1) except position 1, labelled 'high positive' (2)."""
    name = "labelling"
    def explain(self, classifier, encoding, targets):
        labels = torch.ones_like(encoding.input_ids)
        labels[:, 1] = 2
        return LabelledScores(labels.float(), labels)

@hookimpl
def bench_explainers():
    return [Labelling]
'''


def test_an_explainer_may_label_tokens_and_label_wise_metrics_read_the_labels(
    write_suite, tmp_path, monkeypatch, fresh_registry
):
    make_distribution(
        tmp_path / "site",
        "labelling-plugin",
        {"labelling_mod": LABELLING_EXPLAINER},
        {"lab": "labelling_mod"},
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh_registry()
    metrics = "\n  - name: iou-stability\n    params: {form: labels, similarity: lexical, granularity: token}"
    result = run_suite(
        write_suite(tiny_suite_text(explainers="\n  - name: labelling", metrics=metrics)), tmp_path
    )
    assert not result.failed
    store = Store(tmp_path / "results")
    attributions = list(store.attributions(result.run_id))
    assert attributions and all(a["labels"][1] == 2 and set(a["labels"][2:-1]) <= {1} for a in attributions)
    values = [r["value"] for r in store.records(result.run_id)]
    # Every document has the two label sets (its first word; the rest), so no pair is empty and every
    # value is defined; the first words of the tiny texts differ, so no document is perfectly stable.
    assert len(values) == 6 and all(v is not None and 0.0 < v < 1.0 for v in values)


# The tables of the first released store (before test predictions, identities, units), as written then.
FIRST_STORE = """
CREATE TABLE models (run_id TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL,
    model_params TEXT NOT NULL, variant TEXT NOT NULL, seed INTEGER NOT NULL, cache_key TEXT NOT NULL,
    test_accuracy REAL, n_test INTEGER, training TEXT NOT NULL,
    PRIMARY KEY (run_id, dataset, model, model_params, variant, seed));
CREATE TABLE cells (run_id TEXT NOT NULL, cell_id TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL,
    variant TEXT NOT NULL, explainer TEXT NOT NULL, explainer_label TEXT NOT NULL,
    explainer_params TEXT NOT NULL, metric TEXT NOT NULL, metric_label TEXT NOT NULL,
    metric_params TEXT NOT NULL, family TEXT NOT NULL, direction TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL, error TEXT, seconds REAL, finished_at TEXT NOT NULL, PRIMARY KEY (run_id, cell_id));
CREATE TABLE records (run_id TEXT NOT NULL, cell_id TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL,
    variant TEXT NOT NULL, explainer TEXT NOT NULL, explainer_params TEXT NOT NULL, metric TEXT NOT NULL,
    metric_params TEXT NOT NULL, family TEXT NOT NULL, seed INTEGER NOT NULL, example_id TEXT NOT NULL,
    value REAL, PRIMARY KEY (run_id, cell_id, example_id));
"""


def test_a_store_of_the_first_release_is_migrated_in_place_and_its_rows_stay_readable(tmp_path):
    import sqlite3

    from harness.store import SCHEMA_VERSION

    (tmp_path / "results").mkdir()
    with sqlite3.connect(tmp_path / "results" / "bench.sqlite") as db:
        db.executescript(FIRST_STORE)
        db.execute("INSERT INTO models VALUES ('r', 'd', 'm', '{}', 'default', 0, 'k', 0.5, 10, '{}')")
        db.execute(
            "INSERT INTO cells VALUES ('r', 'c', 'd', 'm', 'default', 'e', 'E', '{}', 'x', 'X', '{}', 'f', "
            "'higher', 0, 'done', NULL, 1.0, 'now')"
        )
        db.execute(
            "INSERT INTO records VALUES ('r', 'c', 'd', 'm', 'default', 'e', '{}', 'x', '{}', 'f', 0, 'a', 0.25)"
        )
    store = Store(tmp_path / "results")
    [model] = store.models("r")
    assert model["test_predictions"] is None and model["test_accuracy"] == 0.5
    [row] = store.report_rows("r")  # an old run groups by its labels and each example is its own unit
    assert (row["dataset_id"], row["explainer_id"], row["metric_id"], row["unit"]) == ("d", "E", "X", "a")
    assert row["value"] == 0.25 and row["reference_value"] is None
    with sqlite3.connect(tmp_path / "results" / "bench.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
