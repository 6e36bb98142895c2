"""The driver runs the plan: every task once, after its inputs, with bounded memory (artefacts dropped
once no pending task reads them, at most ``Workspace.MODELS_KEPT`` models loaded per process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import tiny_suite_text

from harness import stages
from harness.executors import SerialExecutor
from harness.grid import expand
from harness.plan import build_plan
from harness.registry import get_registry
from harness.runner import Runner, RunOptions, _Drive
from harness.stages import Workspace
from harness.suite import load_suite

THREE_SEEDS = tiny_suite_text().replace("seeds: [0]", "seeds: [0, 1, 2]")  # three models, one per seed


class Recording(SerialExecutor):
    """The serial executor, noting each task it runs and what its workspace holds."""

    def __init__(self):
        super().__init__()
        self.ran: list[str] = []
        self.models_loaded: list[int] = []

    def next_done(self):
        outcome = super().next_done()
        self.ran.append(outcome.task.id)
        self.models_loaded.append(len(self._workspace._classifiers))
        return outcome


def run(tmp_path: Path, text: str, executor=None, **options):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    loaded = load_suite(path, get_registry())
    options = {"results_dir": tmp_path / "results", "cache_dir": tmp_path / "cache", "progress": False, **options}
    runner = Runner(loaded, RunOptions(**options), executor=executor)
    return loaded, runner, runner.run()


def test_every_task_runs_once_after_its_inputs(tmp_path):
    executor = Recording()
    loaded, _, result = run(tmp_path, THREE_SEEDS, executor)
    assert not result.failed, result.failed
    plan = build_plan(loaded, expand(loaded))
    assert sorted(executor.ran) == sorted(task.id for task in plan)
    position = {task_id: index for index, task_id in enumerate(executor.ran)}
    for task in plan:
        assert all(position[needed] < position[task.id] for needed in task.inputs), task.label


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The keys of the models read back from the cache (``Workspace._load``), as they are read."""
    keys: list[str] = []
    original = Workspace._load

    def counting(self, handle):
        keys.append(handle.key)
        return original(self, handle)

    monkeypatch.setattr(Workspace, "_load", counting)
    return keys


def test_a_process_keeps_at_most_two_models_loaded(tmp_path, loads):
    executor = Recording()
    _, _, result = run(tmp_path, THREE_SEEDS, executor)
    assert not result.failed, result.failed
    assert max(executor.models_loaded) == Workspace.MODELS_KEPT == 2
    # Built by their build-model task and kept: the three models are never read back from the cache.
    assert loads == []


def test_a_warm_run_loads_no_model(tmp_path, loads):
    run(tmp_path, THREE_SEEDS)
    assert loads == []  # the cold run built its models and kept them
    _, _, result = run(tmp_path, THREE_SEEDS, resume=False)
    assert not result.failed
    assert loads == []  # everything cached: attributions and values are read, no model is loaded


def test_the_driver_drops_artefacts_no_pending_task_reads(tmp_path, monkeypatch):
    alive = []
    finish = _Drive._finish

    def watching(self, outcome):
        ready = finish(self, outcome)
        alive.append(len(self.artefacts))
        return ready

    monkeypatch.setattr(_Drive, "_finish", watching)
    loaded, _, result = run(tmp_path, THREE_SEEDS)
    assert not result.failed
    plan = build_plan(loaded, expand(loaded))
    # The dataset's load, a model, one explanation and its planned perturbations at a time, not the
    # artefacts of all 34 tasks.
    assert len(plan) == 1 + 3 + 6 + 6 + 18
    assert max(alive) <= 4, alive
    assert alive[-1] == 0


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(stages._TRIM is None, reason="not glibc: there is no malloc_trim to call")
def test_release_memory_hands_freed_heap_back_to_the_system():
    blocks = [bytearray(64 * 1024) for _ in range(2048)]  # 128 MiB in small blocks, on the heap
    keeper = bytearray(64 * 1024)  # above them: the heap's top cannot shrink past it on free
    del blocks
    before = resident_bytes()
    stages.release_memory()
    assert before - resident_bytes() > 64 * 2**20
    del keeper
