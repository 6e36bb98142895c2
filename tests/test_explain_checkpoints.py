"""An interrupted explanation resumes after its last finished batch (``harness.stages``: explained batches
are kept in the cache until the whole explanation is): hours of a mask learner's work survive a killed
process or an ended session."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from conftest import tiny_suite_text

import harness.stages as stages
from harness import Explainer
from harness.registry import PluginInfo, Registry, get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite


class Interrupted(Explainer):
    """Scores tokens by position; while ``failing``, raises on any batch after the first two, as a
    process killed there would leave it. Records every example it explains (the warm-up's included)."""

    name: ClassVar[str] = "interrupted"
    failing: ClassVar[bool] = True
    seen: ClassVar[list[str]] = []

    def explain(self, classifier, encoding, targets):
        ids = list(encoding.example_ids)
        if Interrupted.failing and len(Interrupted.seen) >= 1 + 2 * 2:  # warm-up, then two batches of 2
            raise RuntimeError("the process was killed here")
        Interrupted.seen += ids
        return torch.arange(encoding.input_ids.shape[1], dtype=torch.float32).expand(encoding.input_ids.shape)


def registry() -> Registry:
    return Registry(
        [*get_registry().all(), PluginInfo("explainer", "interrupted", Interrupted, "test", "1.0")]
    )


def run(path, results, cache):
    options = RunOptions(results_dir=results, cache_dir=cache, progress=False, resume=False)
    return Runner(load_suite(path, registry()), options).run()


def scores(store: Store, run_id: str) -> dict[str, list[float]]:
    return {row["example_id"]: row["scores"] for row in store.attributions(run_id)}


def test_an_interrupted_explanation_resumes_after_its_last_kept_batch(write_suite, tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "CHECKPOINT_AFTER_S", 0.0)  # keep every batch: these take milliseconds
    path = write_suite(
        tiny_suite_text("\n  - name: interrupted", "\n  - name: runtime").replace(
            "batch_size: 4", "batch_size: 2"
        )
    )
    monkeypatch.setattr(Interrupted, "seen", [])
    first = run(path, tmp_path / "results", tmp_path / "cache")
    assert [error for _, error in first.failed] == ["RuntimeError: the process was killed here"]
    kept = sorted((tmp_path / "cache" / stages.CHECKPOINTS).rglob("*.json"))
    assert len(kept) == 2  # batches 0 and 1 of the 6 examples

    explained_first = list(Interrupted.seen)
    monkeypatch.setattr(Interrupted, "seen", [])
    monkeypatch.setattr(Interrupted, "failing", False)
    second = run(path, tmp_path / "results", tmp_path / "cache")
    assert not second.failed
    # only the third batch is explained again (its first example once more for the warm-up)
    last_batch = [i for i in dict.fromkeys(Interrupted.seen) if i not in explained_first[1:]]
    assert len(Interrupted.seen) == 1 + 2 and len(last_batch) == 2
    assert not list((tmp_path / "cache" / stages.CHECKPOINTS).rglob("*.json"))  # the whole is cached

    monkeypatch.setattr(Interrupted, "seen", [])
    clean = run(path, tmp_path / "clean-results", tmp_path / "clean-cache")
    assert len(Interrupted.seen) == 1 + 6
    store, clean_store = Store(tmp_path / "results"), Store(tmp_path / "clean-results")
    assert scores(store, second.run_id) == scores(clean_store, clean.run_id)
    batches = {row["example_id"]: row["batch"] for row in store.attributions(second.run_id)}
    assert sorted(batches.values()) == [0, 0, 1, 1, 2, 2]


def test_a_cheap_explanation_keeps_no_batch(write_suite, tmp_path):
    path = write_suite(tiny_suite_text())
    result = Runner(
        load_suite(path, get_registry()),
        RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False),
    ).run()
    assert not result.failed
    assert not (tmp_path / "cache" / stages.CHECKPOINTS).exists()


@pytest.mark.parametrize("damage", ["not json", '{"schema": 0, "attributions": []}'])
def test_a_damaged_kept_batch_is_explained_again(write_suite, tmp_path, monkeypatch, damage):
    monkeypatch.setattr(stages, "CHECKPOINT_AFTER_S", 0.0)
    path = write_suite(
        tiny_suite_text("\n  - name: interrupted", "\n  - name: runtime").replace(
            "batch_size: 4", "batch_size: 2"
        )
    )
    monkeypatch.setattr(Interrupted, "seen", [])
    run(path, tmp_path / "results", tmp_path / "cache")
    for kept in (tmp_path / "cache" / stages.CHECKPOINTS).rglob("*.json"):
        kept.write_text(damage)
    monkeypatch.setattr(Interrupted, "seen", [])
    monkeypatch.setattr(Interrupted, "failing", False)
    assert not run(path, tmp_path / "results", tmp_path / "cache").failed
    assert len(Interrupted.seen) == 1 + 6  # every batch explained again
