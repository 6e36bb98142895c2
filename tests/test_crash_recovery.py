"""Crashes that do not repeat, and causes named right: a plugin that takes the serial driver down (a
segfault, an exit) fails its own cells on the next run instead of crashing it again, and until then the
run is listed as crashed, not running; Ctrl-C says so and marks the run interrupted; a results folder
that cannot be written is named for why."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import make_distribution, subprocess_pythonpath, tiny_suite_text
from crash_plugins import registry_with_crash_plugins
from test_cli_errors import assert_one_error_line, bench_main

from harness import executors
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Database, Store
from harness.suite import load_suite

TESTS = Path(__file__).resolve().parent
METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: runtime"""


def crash_site(root: Path, *names: str) -> Path:
    """A distribution registering the explainers of ``crash_plugins`` named ``names`` (class names)."""
    imports = ", ".join(names)
    source = (
        f'from crash_plugins import {imports}\nfrom harness import hookimpl\nBENCH_API_VERSION = "1.0"\n\n'
        f"@hookimpl\ndef bench_explainers():\n    return [{imports}]\n"
    )
    return make_distribution(root / "site", "crash-plugin", {"crash_mod": source}, {"crash": "crash_mod"})


def bench_in_subprocess(tmp_path: Path, site: Path, *args: str, env: dict | None = None):
    path = tmp_path / "suite.yaml"
    command = [sys.executable, "-m", "harness.cli", "run", str(path), "--out", str(tmp_path / "results")]
    command += ["--cache-dir", str(tmp_path / "cache"), *args]
    environment = {**os.environ, "PYTHONPATH": subprocess_pythonpath(site, TESTS), **(env or {})}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)


def cell_errors(store: Store, run_id: str) -> dict[tuple[str, str], str | None]:
    return {(c["explainer"], c["metric"]): c["error"] for c in store.cells(run_id)}


# -- a native crash under the serial executor ----------------------------------------------------------
def test_a_segfault_under_serial_is_logged_and_fails_its_cells_on_the_next_run_which_goes_on(tmp_path):
    site = crash_site(tmp_path, "SegfaultExplainer")
    (tmp_path / "suite.yaml").write_text(tiny_suite_text("\n  - name: random\n  - name: segfaults", METRICS))
    store = Store(tmp_path / "results")

    crashed = bench_in_subprocess(tmp_path, site)
    assert crashed.returncode == -signal.SIGSEGV, crashed.stderr
    [run] = store.runs()
    assert run["status"] == "crashed" and run["done"] == 2  # random's cells, before the crash
    log = store.log_path(run["run_id"]).read_text()
    started = log.rindex("task started: explain")
    assert "(explainer 'segfaults')" in log[started:].splitlines()[0]
    assert "Fatal Python error: Segmentation fault" in log[started:]

    resumed = bench_in_subprocess(tmp_path, site)
    assert resumed.returncode == 1, resumed.stderr  # failed cells, no crash
    assert f"resuming run {run['run_id']}" in resumed.stderr
    assert "crashed the process last time: segfault in explainer 'segfaults'" in resumed.stderr
    [run] = store.runs()
    assert run["status"] == "complete-with-failures" and (run["done"], run["failed"]) == (2, 2)
    errors = cell_errors(store, run["run_id"])
    assert errors[("random", "runtime")] is None
    reason = errors[("segfaults", "comprehensiveness")]
    assert reason.startswith("crashed the process last time: segfault in explainer 'segfaults'")
    assert "--retry-crashed" in reason and errors[("segfaults", "runtime")] == reason


def test_a_run_left_running_by_a_dead_process_is_listed_crashed_and_its_row_left_as_written(
    write_suite, tmp_path, monkeypatch, capsys
):
    path = write_suite(tiny_suite_text("\n  - name: random", "\n  - name: runtime"))
    results = tmp_path / "results"
    options = RunOptions(results_dir=results, cache_dir=tmp_path / "cache", progress=False)
    run_id = Runner(load_suite(path, get_registry()), options).run().run_id
    store = Store(results)
    with closing(sqlite3.connect(store.path)) as db, db:  # as a process killed before it finished leaves it
        db.execute("UPDATE runs SET status='running', finished_at=NULL WHERE run_id=?", (run_id,))

    code, stdout, _ = bench_main(monkeypatch, capsys, "runs", "--results", results)
    assert code == 0 and "crashed" in stdout and "running" not in stdout, stdout
    assert store.run(run_id)["status"] == "crashed"
    with store.run_lock(run_id):  # a live process holds the run's lock: it is running
        code, stdout, _ = bench_main(monkeypatch, capsys, "runs", "--results", results)
        assert code == 0 and "running" in stdout and "crashed" not in stdout, stdout
    with closing(sqlite3.connect(store.path)) as db:  # listing it wrote nothing
        assert db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchall() == [("running",)]


def test_retry_crashed_runs_a_crashed_task_again(tmp_path):
    site = crash_site(tmp_path, "SegfaultExplainer")
    (tmp_path / "suite.yaml").write_text(tiny_suite_text("\n  - name: segfaults", METRICS))
    assert bench_in_subprocess(tmp_path, site).returncode == -signal.SIGSEGV
    again = bench_in_subprocess(tmp_path, site, "--retry-crashed")
    assert again.returncode == -signal.SIGSEGV, again.stderr  # it ran, and crashed again
    assert "resuming run" in again.stderr
    failed = bench_in_subprocess(tmp_path, site)
    assert failed.returncode == 1 and "segfault in explainer 'segfaults'" in failed.stderr, failed.stderr


def test_a_task_that_ends_the_process_without_a_crash_report_is_retried_once_then_failed(tmp_path):
    # os._exit leaves no trace, like a kill from outside: the task gets a second chance, not a third.
    site = crash_site(tmp_path, "ExitingExplainer")
    (tmp_path / "suite.yaml").write_text(tiny_suite_text("\n  - name: random\n  - name: exits", METRICS))
    assert bench_in_subprocess(tmp_path, site).returncode == 3
    retried = bench_in_subprocess(tmp_path, site)
    assert retried.returncode == 3 and "resuming run" in retried.stderr, retried.stderr
    failed = bench_in_subprocess(tmp_path, site)
    assert failed.returncode == 1, failed.stderr
    store = Store(tmp_path / "results")
    [run] = store.runs()
    assert run["status"] == "complete-with-failures" and (run["done"], run["failed"]) == (2, 2)
    reason = cell_errors(store, run["run_id"])[("exits", "runtime")]
    assert reason.startswith("the process ended twice while explainer 'exits' ran it")


# -- Ctrl-C -----------------------------------------------------------------------------------------------
def test_ctrl_c_says_interrupted_marks_the_run_and_a_rerun_resumes_it(tmp_path):
    site = crash_site(tmp_path, "GateExplainer")
    (tmp_path / "suite.yaml").write_text(tiny_suite_text("\n  - name: random\n  - name: gate", METRICS))
    gate = tmp_path / "gate"
    gate.mkdir()
    command = [sys.executable, "-m", "harness.cli", "run", str(tmp_path / "suite.yaml")]
    command += ["--out", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath(site, TESTS), "BENCH_TEST_GATE": str(gate)}
    driver = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell starts a background job with Ctrl-C ignored, and Python then installs no handler for
        # it: the driver gets Ctrl-C's default, whoever started the tests.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 600
        while not (gate / "waiting").exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.poll() is None, driver.communicate()
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        (gate / "open").touch()
        driver.kill()
    assert driver.returncode == 130
    assert "interrupted; re-run to resume" in stderr
    [run] = Store(tmp_path / "results").runs()
    assert run["status"] == "interrupted" and run["done"] == 2
    listing = subprocess.run(
        [sys.executable, "-m", "harness.cli", "runs", "--results", str(tmp_path / "results")],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
    )
    assert "interrupted" in listing.stdout, listing.stdout

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run {run['run_id']}" in resumed.stderr
    [run] = Store(tmp_path / "results").runs()
    assert run["status"] == "complete" and run["done"] == 4


def test_a_keyboard_interrupt_in_the_runner_marks_the_run_interrupted(write_suite, tmp_path, monkeypatch):
    path = write_suite(tiny_suite_text("\n  - name: random", METRICS))

    def interrupt(task, inputs, workspace):
        if task.stage == "explain":
            raise KeyboardInterrupt
        return real(task, inputs, workspace)

    real = executors.execute
    monkeypatch.setattr(executors, "execute", interrupt)
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(KeyboardInterrupt):
        Runner(load_suite(path, registry_with_crash_plugins()), options).run()
    [run] = Store(tmp_path / "results").runs()
    assert run["status"] == "interrupted"
    assert Store(tmp_path / "results").run(run["run_id"])["in_flight"] is None


# -- a results folder that cannot be written -------------------------------------------------------------
class _Refusing:
    """A SQLite connection whose every statement fails as a read-only mount, a full disk or a folder
    the user may not write fail them."""

    def __init__(self, error: Exception):
        self.error = error
        self.row_factory = None

    def execute(self, *args, **kwargs):
        raise self.error

    def close(self):
        pass


@pytest.mark.parametrize(
    ("error", "fragments"),
    [
        (sqlite3.OperationalError("attempt to write a readonly database"), ("read-only", "--out")),
        (sqlite3.OperationalError("database or disk is full"), ("disk is full", "free space")),
        (sqlite3.OperationalError("unable to open database file"), ("cannot open", "--out")),
    ],
    ids=["read-only", "disk-full", "cannot-open"],
)
def test_a_results_database_that_cannot_be_written_is_named_for_why_not_called_foreign(
    error, fragments, write_suite, tmp_path, monkeypatch, capsys
):
    path = write_suite(tiny_suite_text())
    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: _Refusing(error))
    code, _, stderr = bench_main(monkeypatch, capsys, "run", path, "--out", tmp_path / "results")
    line = assert_one_error_line(code, stderr, *fragments)
    assert "not a bench results database" not in line and "move" not in line


@pytest.mark.parametrize(
    ("number", "fragments"),
    [
        (errno.EROFS, ("read-only", "--out")),
        (errno.ENOSPC, ("disk is full", "free space")),
        (errno.EACCES, ("permission denied", "--out")),
    ],
    ids=["read-only", "disk-full", "permission-denied"],
)
def test_a_results_folder_that_cannot_be_written_is_named_for_why(
    number, fragments, write_suite, tmp_path, monkeypatch, capsys
):
    path = write_suite(tiny_suite_text())
    results = tmp_path / "results"

    def refuse(self, *args, **kwargs):  # as making the folder, or its database's journal, fails
        raise OSError(number, os.strerror(number), str(results))

    monkeypatch.setattr(Database, "connect", refuse)
    code, _, stderr = bench_main(monkeypatch, capsys, "run", path, "--out", results)
    line = assert_one_error_line(code, stderr, str(results), *fragments)
    assert "not a bench results database" not in line


# -- Ray: an address out of reach, a token refused -----------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ray_with_an_address_nothing_listens_on_is_one_line_not_a_hang(
    write_suite, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    address = f"127.0.0.1:{_closed_port()}"
    path = write_suite(tiny_suite_text())
    args = ("run", path, "--out", tmp_path / "results", "--cache-dir", tmp_path / "cache")
    started = time.monotonic()
    code, _, stderr = bench_main(monkeypatch, capsys, *args, "--executor", "ray", "--address", address)
    assert_one_error_line(code, stderr, f"--address {address}", "cannot reach a Ray cluster")
    assert time.monotonic() - started < 120  # ray.init alone retries for minutes


def test_ray_with_an_address_that_never_answers_times_out_in_one_line(
    write_suite, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    timeouts = []

    def silent(address, timeout):  # as a firewall dropping the packets does
        timeouts.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    path = write_suite(tiny_suite_text())
    args = ("run", path, "--out", tmp_path / "results", "--cache-dir", tmp_path / "cache")
    code, _, stderr = bench_main(
        monkeypatch, capsys, *args, "--executor", "ray", "--address", "10.0.0.1:6379"
    )
    assert_one_error_line(code, stderr, "--address 10.0.0.1:6379", "no Ray cluster answered within 15 s")
    assert timeouts == [executors.RAY_CONNECT_TIMEOUT_S]


def test_a_ray_token_refused_is_named_as_such_not_as_out_of_reach(write_suite, tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    with socket.socket() as listening:  # a head node that accepts connections, then refuses the token
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"

        def refuse(*args, **kwargs):
            raise ray.exceptions.AuthenticationError("Authentication failed: invalid or missing token")

        monkeypatch.setattr(ray, "init", refuse)
        path = write_suite(tiny_suite_text())
        args = ("run", path, "--out", tmp_path / "results", "--cache-dir", tmp_path / "cache")
        code, _, stderr = bench_main(monkeypatch, capsys, *args, "--executor", "ray", "--address", address)
    line = assert_one_error_line(code, stderr, f"--address {address}", "refused this driver's authentication")
    assert "invalid or missing token" in line and "RAY_AUTH_TOKEN" in line and "cannot reach" not in line
