"""Executors (harness.executors): the driver's process, a local pool of processes and Ray give the same
records; a worker that dies or hangs fails only the cells that needed its task, and the run goes on; a
driver killed with SIGKILL takes its pool's workers with it and its run resumes.

Every run here computes from an empty cache of its own, unless a test says otherwise: a run reading
another's cache would prove less. Runtime values and timings are the only things allowed to differ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
from conftest import make_distribution, subprocess_pythonpath, tiny_suite_text
from crash_plugins import GATE_ENV, GateExplainer, registry_with_crash_plugins

from harness import cli
from harness.errors import BenchError
from harness.executors import ProcessExecutor, RayExecutor, _wants_gpu, local_runtime_env
from harness.registry import PluginInfo, Registry, get_registry
from harness.runner import Runner, RunOptions, RunResult
from harness.stages import Settings
from harness.store import Store
from harness.store.compare import comparable, differences
from harness.suite import load_suite

TESTS = Path(__file__).resolve().parent
RAY_MISSING = "the ray extra is not installed (pip install 'xai-bench-harness[ray]')"

# Two explainers that need the model (a gradient and perturbations), a student distilling one of them
# (a fit, and a metric comparing the student with its teacher) and the random floor.
EXPLAINERS = """
  - name: random
  - name: saliency
    params: {reduction: input_x_gradient}
  - name: occlusion
  - name: l2e
    params:
      teacher: {name: occlusion}
      train_documents: 30
      validation_documents: 8
      max_epochs: 3
      d_model: 16
      blocks: 1
      heads: 2"""
METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: teacher-agreement
  - name: runtime"""
CELLS = 4 * 2 + 1  # comprehensiveness and runtime for each explainer, teacher-agreement for the student

# Crashing explainers before the random one: the worker that dies is replaced (or restarted) and runs it.
CRASH_METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: runtime"""


def crash_suite(*names: str) -> str:
    return tiny_suite_text("".join(f"\n  - name: {name}" for name in names), CRASH_METRICS)


def run(path: Path, root: Path, executor=None, registry=None, **options) -> tuple[Store, RunResult]:
    """Run the suite at ``path`` with results and cache under ``root``; ``executor``: an executor object,
    or a name (with ``workers=2``)."""
    loaded = load_suite(path, registry or get_registry())
    if isinstance(executor, str):
        options = {"executor": executor, "workers": 2, **options}
        executor = None
    options = {"results_dir": root / "results", "cache_dir": root / "cache", "progress": False, **options}
    result = Runner(loaded, RunOptions(**options), executor=executor).run()
    return Store(root / "results"), result


# Models, fits and cells must be equal: workers run torch with the driver's number of threads
# (Settings.threads), so they train exactly what it would, to the last bit (with their share of the CPUs, a
# learned explainer's float32 scores differed at 1e-8, and a trained model's bytes, which `random` hashes).
# Records and attributions read the model rows the workers share (harness.forward): which task computes a
# row first, in which pass beside which other rows, depends on which worker asks first, and a float32 pass's
# values depend on its size in their last bits (torch.nn.Linear on one row rounds otherwise than on several:
# 3e-8 here). Measured: a comprehensiveness value 5e-8 apart, 2 runs in 11 under load. So they are equal up
# to float32 rounding, which 1e-6 bounds.
TOLERANCE = {"records": 1e-6, "attributions": 1e-6}


def assert_same_run(actual: dict[str, list], expected: dict[str, list]) -> None:
    found = differences(actual, expected, TOLERANCE)
    assert not found, "\n".join(found)


def errors(store: Store, run_id: str) -> dict[tuple[str, str], str | None]:
    """(explainer, metric) -> the cell's error (None: done)."""
    cells = store.cells(run_id)
    assert all(c["status"] in ("done", "failed") for c in cells)
    return {(c["explainer"], c["metric"]): c["error"] if c["status"] == "failed" else None for c in cells}


def cache_files(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file() and ".locks" not in path.parts
    }


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "suite.yaml"
    path.write_text(tiny_suite_text(EXPLAINERS, METRICS))
    return path


@pytest.fixture(scope="module")
def serial_run(suite_path, tmp_path_factory):
    """The suite run in this process, from an empty cache: what every executor must reproduce."""
    root = tmp_path_factory.mktemp("serial")
    store, result = run(suite_path, root)
    assert result.cells == CELLS and not result.failed
    expected = comparable(store, result.run_id)
    assert len(expected["records"]) == (4 + 1) * 6 and len(expected["attributions"]) == 4 * 6
    assert len(expected["fits"]) == 1  # the student's
    return root, expected


# -- the same records ----------------------------------------------------------------------------------
def test_a_process_pool_gives_the_records_of_a_serial_run(suite_path, serial_run, tmp_path):
    store, result = run(suite_path, tmp_path, "process")
    assert result.cells == CELLS and not result.failed
    assert_same_run(comparable(store, result.run_id), serial_run[1])


def test_a_warm_process_pool_reads_the_cache_a_serial_run_wrote(suite_path, serial_run, tmp_path):
    root, expected = serial_run
    cache = root / "cache"
    before = cache_files(cache)
    store, result = run(suite_path, tmp_path, "process", cache_dir=cache, workers=1)
    assert not result.failed
    assert_same_run(comparable(store, result.run_id), expected)
    assert cache_files(cache) == before  # nothing recomputed: nothing written


# -- a worker that dies or hangs -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def process_crashes(tmp_path_factory):
    """One run on the process pool of the random explainer after three that exit, kill themselves with
    SIGKILL and hang past the task timeout (20 s: a task's time includes its worker's start, importing
    torch and loading the model, which takes several seconds on a loaded 2-core machine)."""
    root = tmp_path_factory.mktemp("process-crashes")
    path = root / "suite.yaml"
    path.write_text(crash_suite("exits", "sigkills", "sleeps", "random"))
    store, result = run(
        path, root, ProcessExecutor(workers=2, task_timeout=20), registry=registry_with_crash_plugins()
    )
    return store, result


def test_a_worker_that_exits_fails_only_the_cells_of_its_task(process_crashes):
    store, result = process_crashes
    cells = errors(store, result.run_id)
    reason = "its worker process died (exit code 3)"
    assert cells[("exits", "comprehensiveness")] == cells[("exits", "runtime")] == reason


def test_a_worker_killed_with_sigkill_fails_only_the_cells_of_its_task(process_crashes):
    store, result = process_crashes
    cells = errors(store, result.run_id)
    reason = "its worker process died of SIGKILL (killed: out of memory, or by hand)"
    assert cells[("sigkills", "comprehensiveness")] == cells[("sigkills", "runtime")] == reason


def test_a_task_past_the_timeout_fails_its_cells(process_crashes):
    store, result = process_crashes
    cells = errors(store, result.run_id)
    reason = "it ran past the task timeout of 20 s"
    assert cells[("sleeps", "comprehensiveness")] == cells[("sleeps", "runtime")] == reason


def test_the_pool_replaces_dead_workers_and_the_run_completes(process_crashes):
    store, result = process_crashes
    cells = errors(store, result.run_id)
    assert cells[("random", "comprehensiveness")] is None and cells[("random", "runtime")] is None
    assert len(result.failed) == 6 and result.cells == 8
    assert store.run(result.run_id)["status"] == "complete-with-failures"


def test_a_plugin_a_fresh_worker_cannot_import_fails_the_cells_with_the_reason(tmp_path, monkeypatch):
    # A module the driver holds (in sys.modules) but no file provides: the spawned workers cannot unpickle
    # the suite, die on starting, and the pool breaks; the run must end, saying so, not wait for ever.
    ghost = types.ModuleType("ghost_plugins")
    ghost.Ghost = type("Ghost", (GateExplainer,), {"name": "ghost", "__module__": "ghost_plugins"})
    monkeypatch.setitem(sys.modules, "ghost_plugins", ghost)
    info = PluginInfo("explainer", "ghost", ghost.Ghost, "ghost-plugins", "1.0")
    path = tmp_path / "suite.yaml"
    path.write_text(crash_suite("random", "ghost"))
    store, result = run(path, tmp_path, ProcessExecutor(workers=1), Registry([*get_registry().all(), info]))
    reasons = set(errors(store, result.run_id).values())
    assert len(reasons) == 1 and reasons.pop().startswith("the process pool broke (All workers expired)")


# -- Ray ---------------------------------------------------------------------------------------------------
# One run (Ray starts in seconds): the suite above after two explainers that kill their actor. A model's
# tasks go to one actor, so every cell but the crashing ones runs on an actor that replaced a dead one.
# The crashing plugins import on the workers only through the driver's sys.path, which the local
# instance RayExecutor starts hands them (local_runtime_env).
@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    assert not ray.is_initialized(), "Ray is already running: the test would not start its own"
    root = tmp_path_factory.mktemp("ray")
    path = root / "suite.yaml"
    path.write_text(tiny_suite_text("\n  - name: exits\n  - name: sigkills" + EXPLAINERS, METRICS))
    try:
        store, result = run(
            path, root, RayExecutor(workers=2, cpus=2), registry=registry_with_crash_plugins()
        )
        left_running = ray.is_initialized()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return store, result, left_running


@pytest.mark.ray
def test_ray_gives_the_records_of_a_serial_run(ray_run, serial_run):
    store, result, _ = ray_run
    assert_same_run(comparable(store, result.run_id, without={"exits", "sigkills"}), serial_run[1])


@pytest.mark.ray
def test_a_ray_actor_that_dies_fails_only_its_task_and_is_replaced(ray_run):
    store, result, _ = ray_run
    cells = errors(store, result.run_id)
    assert {cell: error for cell, error in cells.items() if error} == {
        ("exits", "comprehensiveness"): "its Ray worker died",
        ("exits", "runtime"): "its Ray worker died",
        ("sigkills", "comprehensiveness"): "its Ray worker died",
        ("sigkills", "runtime"): "its Ray worker died",
    }
    assert len(cells) == CELLS + 4 and store.run(result.run_id)["status"] == "complete-with-failures"


@pytest.mark.ray
def test_the_local_ray_instance_is_shut_down_after_the_run(ray_run):
    assert ray_run[2] is False


def test_a_local_ray_instance_hands_its_workers_the_driver_s_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = local_runtime_env()["env_vars"]["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == str(tmp_path) and str(TESTS) in paths


@pytest.mark.parametrize(
    ("suite_device", "model_device", "wanted"),
    [("cpu", None, False), ("cpu", "cpu", False), ("cpu", "cuda", True), ("auto", None, True)],
)
def test_ray_actors_ask_for_a_gpu_share_when_the_run_or_a_model_entry_may_use_cuda(
    suite_device, model_device, wanted, write_suite
):
    text = tiny_suite_text().replace("device: cpu", f"device: {suite_device}")
    if model_device is not None:
        text = text.replace("  - name: bow\n", f"  - name: bow\n    device: {model_device}\n")
    loaded = load_suite(write_suite(text), get_registry())
    settings = Settings(loaded, cache_dir="unused", use_cache=True, device=loaded.suite.device, limit=None)
    assert _wants_gpu(settings) is wanted


@pytest.mark.parametrize(
    ("executor", "option", "fragment"),
    [
        ("serial", {"address": "auto"}, "--address: only --executor ray"),
        ("process", {"address": "auto"}, "--address: only --executor ray"),
        ("serial", {"task_timeout": 10}, "--task-timeout: only --executor process"),
        ("ray", {"task_timeout": 10}, "--task-timeout: only --executor process"),
    ],
)
def test_run_options_another_executor_would_honour_are_an_error(
    executor, option, fragment, write_suite, tmp_path
):
    loaded = load_suite(write_suite(tiny_suite_text()), get_registry())
    options = RunOptions(results_dir=tmp_path / "results", progress=False, executor=executor, **option)
    with pytest.raises(BenchError, match=fragment):
        Runner(loaded, options)


# -- the driver killed -----------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_a_driver_killed_mid_way_takes_its_workers_along_and_its_run_resumes(tmp_path):
    # bench run on the pool; the gate explainer holds a worker until the test has killed the driver.
    site = make_distribution(
        tmp_path / "site",
        "gate-plugin",
        {"gate_mod": "from crash_plugins import GateExplainer\nfrom harness import hookimpl\nBENCH_API_VERSION = \"1.0\"\n\n"
         "@hookimpl\ndef bench_explainers():\n    return [GateExplainer]\n"},
        {"gate": "gate_mod"},
    )  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(crash_suite("random", "gate"))
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath(site, TESTS), GATE_ENV: str(gate)}
    results = tmp_path / "results"
    command = [sys.executable, "-m", "harness.cli", "run", str(path), "--out", str(results)]
    command += ["--cache-dir", str(tmp_path / "cache"), "--executor", "process", "--workers", "2"]
    store = Store(results)

    try:
        with open(tmp_path / "killed.log", "w") as log:
            driver = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            try:
                _wait_for(lambda: (gate / "waiting").exists() or driver.poll() is not None, 120, "the gate")
                assert driver.poll() is None, (tmp_path / "killed.log").read_text()
                _wait_for(lambda: store.runs() and store.runs()[0]["done"] == 2, 60, "random's cells")
                worker = int((gate / "waiting").read_text())
                driver.send_signal(signal.SIGKILL)
                assert driver.wait(10) == -signal.SIGKILL
            finally:
                driver.kill()
        _wait_for(lambda: not _alive(worker), 10, f"worker {worker} to end with its driver")
        [interrupted] = store.runs()
        assert interrupted["status"] == "crashed" and interrupted["done"] == 2
    finally:
        (gate / "open").touch()  # a worker left waiting (the test failed) ends at once

    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {interrupted['run_id']}" in resumed.stderr
    [run_] = store.runs()
    assert run_["status"] == "complete" and run_["done"] == 4
    # As a run never interrupted (in this process, where the gate does not wait) stores it.
    clean, result = run(path, tmp_path / "clean", registry=registry_with_crash_plugins())
    assert_same_run(comparable(store, run_["run_id"]), comparable(clean, result.run_id))


# -- the command line --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (("--address", "auto"), "--address: only --executor ray joins a cluster"),
        (("--executor", "process", "--address", "auto"), "--address: only --executor ray joins a cluster"),
        (("--task-timeout", "10"), "--task-timeout: only --executor process enforces it"),
        (
            ("--executor", "ray", "--task-timeout", "10"),
            "--task-timeout: only --executor process enforces it",
        ),
    ],
    ids=["address-serial", "address-process", "timeout-serial", "timeout-ray"],
)
def test_an_option_of_another_executor_is_a_one_line_error(
    options, fragment, write_suite, tmp_path, monkeypatch, capsys
):
    path = write_suite(tiny_suite_text())
    arguments = ["bench", "run", str(path), "--out", str(tmp_path / "results"), *options]
    monkeypatch.setattr(sys, "argv", arguments)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it
    with pytest.raises(SystemExit) as exited:
        cli.main()
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exited.value.code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], stderr
    assert not (tmp_path / "results" / "bench.sqlite").exists() or not Store(tmp_path / "results").runs()
