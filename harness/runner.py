"""Suite → plan → records: runs a suite with caching, resume and per-cell failure isolation.

The runner owns a run's lifecycle: it creates or resumes the run (a lock file held while it runs),
records provenance and the log file, plans the pending cells (``harness.plan``), hands the tasks to an
executor (``harness.executors``: in this process, a local pool or Ray) as their inputs are done, and is
the only writer of the results store. Work is shared along the plan: a dataset is loaded once, a model
trained (or read from the cache) once per (dataset, model, variant, seed), attributions computed once per
explanation, then each metric cell reads them; every stage (``harness.stages``) is cached by content, so
a warm re-run reads caches and writes records.
"""

from __future__ import annotations

import contextlib
import faulthandler
import heapq
import logging
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from rich.console import Console

from harness import __version__, keys
from harness.cache import Cache, default_cache_dir
from harness.datachecks import CheckedData, check_suite_data
from harness.entries import canonical_json, short_hash
from harness.executors import Executor, Outcome, make_executor
from harness.grid import Cell, expand, unavailable
from harness.inert import printable
from harness.plan import Task, build_plan, is_extra
from harness.progress import NullReporter, Reporter, RichReporter
from harness.stages import Explained, Scored, Settings, Workspace, describe, device_name, resolve_device
from harness.store import CellProvenance, Store
from harness.suite import LoadedSuite

log = logging.getLogger("bench.run")


@dataclass
class RunOptions:
    results_dir: Path = Path("results")
    cache_dir: Path | None = None
    use_cache: bool = True
    device: str | None = None  # overrides the suite's device
    limit: int | None = None  # examples per dataset
    resume: bool = True  # continue the latest interrupted run of the same suite and options
    progress: bool = True
    allow_remote_code: bool = False  # --allow-remote-code: the suite may run code downloaded with models
    executor: str = "serial"  # where stages run: serial, process or ray (harness.executors)
    workers: int | None = None  # process and ray: how many workers (default: one per CPU)
    address: str | None = None  # ray: the cluster to join (default: start a local instance)
    task_timeout: float | None = None  # process: seconds a task may run before it fails
    retry_crashed: bool = False  # --retry-crashed: run again the tasks that ended a resumed run's process


@dataclass
class RunResult:
    run_id: str
    cells: int
    computed: int
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    skipped: list[tuple[Cell, str]] = field(default_factory=list)  # cells on a device this machine lacks
    resumed: bool = False
    log: Path | None = None  # the run's log file, with the full traceback of every failed cell


def git_revision() -> str | None:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return revision.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _resume_mismatch(stored: dict, device: str, versions: dict, options: dict, inputs: dict) -> str | None:
    """Why an interrupted run cannot be continued by this one (None when it can): a run is measured on
    one device with one set of versions and options, on one content of its data and weights, never half
    on one and half on another."""
    if stored.get("device") != device:
        return f"it ran on {stored.get('device')}, this run is on {device}"
    old = stored.get("versions") or {}
    changed = sorted(
        name for name in set(old) | set(versions) if name != "plugins" and old.get(name) != versions.get(name)
    )
    plugins_old, plugins_new = old.get("plugins") or {}, versions.get("plugins") or {}
    changed += sorted(
        f"plugin {name}"
        for name in set(plugins_old) | set(plugins_new)
        if plugins_old.get(name) != plugins_new.get(name)
    )
    if changed:
        name = changed[0]
        key = name.removeprefix("plugin ")
        before, after = (
            (plugins_old.get(key), plugins_new.get(key))
            if name.startswith("plugin ")
            else (old.get(name), versions.get(name))
        )
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        return f"{name} changed from {before} to {after}{more}"
    stored_options = stored.get("options") or {}
    for option, value in options.items():
        if stored_options.get(option) != value:
            return f"option {option} was {stored_options.get(option)!r}, now {value!r}"
    return _inputs_mismatch(stored.get("inputs"), inputs)


def _inputs_mismatch(old: dict | None, new: dict) -> str | None:
    """What changed in the data a run computes on (None: nothing): cells computed on the old data and on
    the new must never share a run, whose tables would mix them."""
    if old is None:
        return "it recorded no fingerprints of its data (an earlier version of bench), so a change cannot be ruled out"
    for key, now in new["datasets"].items():
        before = old.get("datasets", {}).get(key)
        if before is None or before["fingerprint"] != now["fingerprint"]:
            was = "absent" if before is None else _short(before["fingerprint"])
            return (
                f"dataset '{now['label']}' changed since the run began (content {was}, now "
                f"{_short(now['fingerprint'])})"
            )
    for key, now in new["models"].items():
        before = old.get("models", {}).get(key)
        if before is None or before["weights"] != now["weights"]:
            was = "absent" if before is None else short_hash(before["weights"])
            return (
                f"the weights model '{now['label']}' starts from changed since the run began (identity "
                f"{was}, now {short_hash(now['weights'])})"
            )
    return None


def _short(fingerprint: str) -> str:
    """A fingerprint as a line shows it: a sha256's first 12 digits, or why the data was unreadable."""
    return fingerprint if fingerprint.startswith("unreadable") else fingerprint[:12]


class Runner:
    def __init__(
        self,
        loaded: LoadedSuite,
        options: RunOptions,
        console: Console | None = None,
        reporter: Reporter | None = None,
        executor: Executor | None = None,
    ):
        """``reporter`` hears of the run's progress; by default bars on ``console`` (``RichReporter``),
        or nothing when ``options.progress`` is off. ``executor`` runs the stages; by default the one
        ``options`` names."""
        self.loaded = loaded
        self.suite = loaded.suite
        self.options = options
        self.console = console or Console(stderr=True)
        if reporter is None:
            reporter = RichReporter(self.console) if options.progress else NullReporter()
        self.reporter = reporter
        loaded.check_remote_code(options.allow_remote_code)
        self.executor = executor or make_executor(
            options.executor,
            workers=options.workers,
            address=options.address,
            task_timeout=options.task_timeout,
        )
        self.store = Store(options.results_dir)
        self.cache = Cache(options.cache_dir or default_cache_dir(), read=options.use_cache)
        self.device = resolve_device(options.device or self.suite.device)
        self.device_name = device_name(self.device)
        self.libraries = keys.environment()["libraries"]
        # With the cache off, entries written since then are this run's (the file system's clock).
        self.started = self.cache.now()
        self.checked: CheckedData | None = None  # the suite's datasets, checked when the run starts

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run the suite's pending cells. Ctrl-C marks the run ``interrupted`` (a re-run resumes it) and
        raises ``KeyboardInterrupt`` on."""
        cells = expand(self.loaded)
        # bad data is refused (BenchError) before a run is created or anything computed; a workspace in
        # this process (serial) starts with the datasets loaded for the check
        keep = Workspace.DATASETS_KEPT if self.executor.name == "serial" else 0
        self.checked = check_suite_data(self.loaded, keep=keep)
        run_id, resumed, lock = self._start_run()
        handler = self._log_to_file(run_id)
        restore_faulthandler = self._log_native_crashes(handler)
        try:
            crashed, attempts = self._crashed_last_time(run_id) if resumed else ({}, {})
            done = self.store.done_cells(run_id)
            pending = [cell for cell in cells if cell.id not in done]
            if resumed:
                self.console.print(
                    f"[bold]resuming run {run_id}[/]: {len(cells) - len(pending)} of {len(cells)} "
                    "cells already done or skipped"
                )
            skipped = self._skip_unavailable(run_id, pending)
            pending = [cell for cell in pending if cell.id not in skipped]
            result = RunResult(
                run_id,
                len(cells),
                len(pending),
                resumed=resumed,
                log=self.store.log_path(run_id),
                skipped=list(skipped.values()),
            )
            _Drive(self, run_id, pending, result, crashed, attempts).run()
            self.store.finish_run(run_id, "complete-with-failures" if result.failed else "complete")
            return result
        except KeyboardInterrupt:
            log.warning("run %s interrupted by the user; re-run to resume", run_id)
            self.store.finish_run(run_id, "interrupted")
            raise
        finally:
            restore_faulthandler()
            logging.getLogger("bench").removeHandler(handler)
            handler.close()
            lock.release()

    def _log_native_crashes(self, handler: logging.FileHandler) -> Callable[[], None]:
        """Under an executor that runs tasks in this process, a native crash in a plugin (a segfault in
        a C extension, an abort) takes the run with it, with no Python exception to catch: have
        ``faulthandler`` write the crash and the Python stack to the run's log, after the line naming the
        task that was running (``_Drive._submit``), and the next run fail that task rather than crash
        again (``_crashed_last_time``). Returns what puts ``faulthandler`` back as it was."""
        if not getattr(self.executor, "in_process", False):
            return lambda: None
        was_enabled = faulthandler.is_enabled()
        faulthandler.enable(file=handler.stream)

        def restore() -> None:
            faulthandler.disable()
            if was_enabled:  # as Python's -X faulthandler (or pytest) had it: on the standard error
                with contextlib.suppress(AttributeError, OSError, ValueError):  # no standard error
                    faulthandler.enable(file=sys.__stderr__)

        return restore

    def _crashed_last_time(self, run_id: str) -> tuple[dict[str, str], dict[str, int]]:
        """The tasks of a resumed run not to run again (task id -> why their cells fail), and how many
        times the process died while running a task that is run again.

        A task in flight when the run's process ended (``RunWriter.set_in_flight``) took the process
        with it when ``faulthandler`` wrote a fatal error to the log after it started (a segfault, an
        abort): it fails now, with that cause. With no such line the process may have been killed from
        outside (kill -9, the machine going down), so the task runs again, once: a process that dies a
        second time while running it (the out-of-memory killer, a plugin calling ``exit``) fails it too.
        ``--retry-crashed`` runs every such task again."""
        stored = self.store.run(run_id)
        crashed: dict[str, str] = {} if self.options.retry_crashed else dict(stored["crashed"])
        in_flight = stored["in_flight"]
        attempts: dict[str, int] = {}
        if in_flight is not None and not self.options.retry_crashed:
            fatal = _fatal_error(self.store.log_path(run_id), in_flight.get("log_offset", 0))
            plugin = in_flight["plugin"]
            if fatal is not None:
                reason = f"crashed the process last time: {fatal} in {plugin}"
            elif in_flight.get("attempt", 1) >= 2:
                reason = (
                    f"the process ended twice while {plugin} ran it (killed from outside, out of memory, "
                    "or the plugin exited)"
                )
            else:
                reason = None
                attempts[in_flight["task"]] = in_flight.get("attempt", 1)
            if reason is not None:
                crashed[in_flight["task"]] = f"{reason}; re-run with --retry-crashed to try it again"
                self.console.print(
                    f"run {run_id}: task {printable(in_flight['label'])} {printable(reason)}; failing its cells "
                    "(--retry-crashed runs it again)",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
                log.error("task %s (%s) %s; failing its cells", in_flight["task"], in_flight["label"], reason)
        self.store.set_crashed(run_id, crashed)
        return crashed, attempts

    def _skip_unavailable(self, run_id: str, pending: Sequence[Cell]) -> dict[str, tuple[Cell, str]]:
        """Cells whose device this machine lacks, recorded as skipped with the reason (not failed: the
        suite is right, the machine lacks the device), by id."""
        cuda = torch.cuda.is_available()
        skipped = {}
        for cell in pending:
            reason = unavailable(cell, cuda)
            if reason is not None:
                self.store.skip_cell(
                    run_id, cell, reason, CellProvenance(cell.identity, limit=self.options.limit)
                )
                log.warning("cell skipped: %s: %s", cell.describe(), reason)
                skipped[cell.id] = (cell, reason)
        return skipped

    def settings(self) -> Settings:
        """What the stages of this run share, in whichever process they run."""
        return Settings(
            loaded=self.loaded,
            cache_dir=str(self.cache.root),
            use_cache=self.options.use_cache,
            device=self.options.device or self.suite.device,
            limit=self.options.limit,
            written_since=None if self.options.use_cache else self.started,
            threads=torch.get_num_threads(),  # the driver's: workers compute exactly what it would
            datasets=self.checked.datasets if self.checked is not None else {},
        )

    def _versions(self) -> dict:
        """Python, the harness, its code paths, the numeric libraries, every plugin package and every
        plugin class version the suite uses: a resumed run must match all of them."""
        versions = {
            "bench": __version__,
            "python": ".".join(map(str, sys.version_info[:3])),
            **self.libraries,
            "code": keys.CODE_VERSIONS,
        }
        plugins = {}
        for section in self.loaded.entries.values():
            for entry in section:
                versions[entry.package] = entry.package_version
                for plugin in (entry, entry.teacher, entry.train_on):
                    if plugin is not None:
                        plugins[f"{plugin.kind}:{plugin.name}"] = plugin.cls.version
        versions["plugins"] = dict(sorted(plugins.items()))
        return versions

    def _start_run(self) -> tuple[str, bool, FileLock]:
        """The run to work on, resumed or new, with its lock held by this process."""
        options = {
            "limit": self.options.limit,
            "use_cache": self.options.use_cache,
            "cache_dir": str(self.cache.root),
            "device": self.options.device,
            "profile": self.suite.profile,
            "batch_size": self.suite.batch_size,
            # Where the stages ran: workers competing for the CPUs change timings, so a run is
            # resumed only on the same executor with as many workers.
            "executor": self.executor.name,
            "workers": getattr(self.executor, "workers", None),
        }
        versions = self._versions()
        inputs = self._inputs()
        if self.options.resume:
            candidate = self.store.resumable_run(self.loaded.hash)
            if candidate:
                stored = self.store.run(candidate)
                lock = self.store.run_lock(candidate)
                reason = _resume_mismatch(stored, self.device_name, versions, options, inputs)
                if reason is None:
                    try:
                        lock.acquire(timeout=0)
                    except Timeout:
                        reason = "another process is running it"
                if reason is None:
                    self.store.claim_run(candidate, self.device_name)
                    return candidate, True, lock
                self.console.print(
                    f"not resuming run {candidate}: {printable(reason)}; starting a new run",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,  # one line, however narrow the terminal
                )
                log.warning("not resuming run %s: %s", candidate, reason)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{self.suite.name}-{secrets.token_hex(3)}"
        lock = self.store.run_lock(run_id)
        lock.acquire(timeout=0)
        self.store.create_run(
            run_id,
            self.suite,
            self.loaded.hash,
            self.loaded.path,
            self.loaded.text,
            self.device_name,
            git_revision(),
            versions,
            options,
            inputs,
        )
        return run_id, False, lock

    def _inputs(self) -> dict:
        """What the run computes on beyond the suite's text, which a resume must find unchanged: each
        dataset source's content fingerprint (``TextDataset.fingerprint``; a suite names a file, whose
        content may change between two runs of it) and each model's weights identity
        (``Model.weights_identity``, e.g. a local checkpoint folder's content). Data that cannot be read
        is recorded with the reason (its cells then fail with it)."""
        datasets: dict[str, dict] = {}
        for entry in self.loaded.entries["datasets"] + [
            model.train_on for model in self.loaded.entries["models"] if model.train_on is not None
        ]:
            key = f"{entry.name} {entry.params_json}"
            if key not in datasets:
                if self.checked is not None and entry.source in self.checked.fingerprints:
                    fingerprint = self.checked.fingerprints[entry.source]  # loaded once, by the data checks
                else:
                    try:
                        fingerprint = entry.cls(entry.params).load().fingerprint
                    except Exception as error:  # noqa: BLE001 - its load task fails the cells, with the reason
                        fingerprint = f"unreadable: {describe(error)}"
                datasets[key] = {"label": entry.label, "fingerprint": fingerprint}
        models: dict[str, dict] = {}
        for entry in self.loaded.entries["models"]:
            key = canonical_json(entry.identity)
            if key not in models:
                try:
                    weights = entry.cls(entry.params).weights_identity()
                except Exception as error:  # noqa: BLE001 - its build task fails the cells, with the reason
                    weights = {"unidentified": describe(error)}
                models[key] = {"label": entry.label, "weights": weights}
        return {"datasets": datasets, "models": models}

    def _log_to_file(self, run_id: str) -> logging.Handler:
        path = self.store.log_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("bench")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        return handler


# How faulthandler names the fatal errors it reports, and how a cell's error names them.
_FATAL_ERROR = re.compile(r"^Fatal Python error: (.+?)\s*$", re.MULTILINE)
_FATAL_NAMES = {"Segmentation fault": "segfault"}


def _fatal_error(log_path: Path, offset: int) -> str | None:
    """The fatal error ``faulthandler`` wrote to the run's log after ``offset`` (where the log ended
    when the task in flight started), e.g. ``segfault``; None when it wrote none."""
    try:
        with log_path.open("rb") as file:
            file.seek(offset)
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    found = _FATAL_ERROR.findall(text)
    if not found:
        return None
    return _FATAL_NAMES.get(found[-1], found[-1].lower())


def _task_plugin(task: Task) -> str:
    """The plugin whose code a task runs, as a cell's error names it."""
    if task.stage in ("explain", "fit-explainer"):
        return f"explainer '{task.explainer['name']}'"
    if task.stage == "score":
        return f"metric '{task.metric['name']}'"
    if task.stage == "build-model":
        return f"model '{task.model['name']}'"
    if task.stage == "load-dataset":
        return f"dataset '{task.dataset['name']}'"
    return f"the removal metrics' perturbations of {task.label}"


class _Drive:
    """One run's plan, executed: submits each task once its inputs are done, records what comes back in
    the store (the driver is the store's only writer), fails the dependents of a failed task, and drops
    each artefact once no pending task needs it."""

    def __init__(
        self,
        runner: Runner,
        run_id: str,
        pending: Sequence[Cell],
        result: RunResult,
        crashed: dict[str, str] | None = None,
        attempts: dict[str, int] | None = None,
    ):
        """``crashed``: tasks not to run (task id -> why their cells fail: they ended the process of an
        earlier attempt at the run); ``attempts``: how many times the process died running a task."""
        self.runner = runner
        self.crashed = crashed or {}
        self.attempts = attempts or {}
        # A task run in this process can take it down: it is recorded before it runs (``_submit``).
        self.in_process = getattr(runner.executor, "in_process", False)
        self.store = runner.store
        self.reporter = runner.reporter
        self.executor = runner.executor
        self.run_id = run_id
        self.result = result
        self.limit = runner.options.limit
        self.plan = build_plan(runner.loaded, pending, self.limit)
        self.cells = {cell.id: cell for cell in pending}
        self.explained_cells: dict[str, Cell] = {}  # explain task -> the cell whose explanation it is
        for task in self.plan.stage("score"):
            cell = self.cells[task.cell]
            explanation, *reference = self.plan.explanations(task)
            self.explained_cells.setdefault(explanation, cell)
            if reference:
                self.explained_cells.setdefault(reference[0], cell.reference)
        self.artefacts: dict[str, object] = {}
        self.failed: dict[str, str] = {}  # task id -> why
        self.waiting = {task.id: len(task.inputs) for task in self.plan}
        self.readers = {task.id: len(self.plan.dependents(task.id)) for task in self.plan}
        self.order = {task.id: index for index, task in enumerate(self.plan)}
        self.groups: dict[str, str | None] = {}
        self.recorded_models: set[tuple] = set()
        self.showing: str | None = None  # the explanation the reporter shows (one executor slot)

    def run(self) -> None:
        ready = [(self.order[task.id], task.id) for task in self.plan if not task.inputs]
        heapq.heapify(ready)
        in_flight = 0
        self.reporter.start_run(len(self.cells))
        try:
            for task_id, reason in self.crashed.items():
                if task_id in self.order and task_id not in self.failed:
                    task = self.plan.task(task_id)
                    log.error("%s not run: %s", task.label or task.id, reason)
                    self._fail(task, reason)
                    self._release(task)
            ready = [entry for entry in ready if entry[1] not in self.failed]
            self.executor.start(self.runner.settings(), self.reporter)
            while ready or in_flight:
                while ready and in_flight < self.executor.capacity:
                    _, task_id = heapq.heappop(ready)
                    self._submit(self.plan.task(task_id))
                    in_flight += 1
                outcome = self.executor.next_done()
                in_flight -= 1
                for task in self._finish(outcome):
                    heapq.heappush(ready, (self.order[task.id], task.id))
                if self.in_process:
                    self.store.set_in_flight(self.run_id, None)
            if self.showing is not None:
                self.reporter.end_explanation()
        finally:
            self.executor.close()
            self.reporter.close()

    # -- submitting --------------------------------------------------------------------------------
    def _submit(self, task: Task) -> None:
        inputs = {needed: self.artefacts[needed] for needed in task.inputs}
        if task.stage == "fit-explainer":
            # A fit's steps are shown as steps of the explanation it serves.
            task = replace(task, label=self.plan.dependents(task.id)[0].label)
        if self.executor.capacity == 1:
            self._show(task)
        if self.in_process:
            self._record_in_flight(task)
        self.executor.submit(task, inputs, self._group(task))

    def _record_in_flight(self, task: Task) -> None:
        """Before a task runs in this process: a line in the run's log naming it (a native crash's
        report from ``faulthandler`` follows it there) and, committed to the store, the task itself, with
        where the log ended, for the next run (``Runner._crashed_last_time``)."""
        plugin = _task_plugin(task)
        log.info("task started: %s %s (%s)", task.stage, task.label or task.id, plugin)
        log_path = self.store.log_path(self.run_id)
        offset = log_path.stat().st_size if log_path.exists() else 0
        record = {
            "task": task.id,
            "stage": task.stage,
            "label": task.label or task.id,
            "plugin": plugin,
            "attempt": self.attempts.get(task.id, 0) + 1,
            "log_offset": offset,
        }
        self.store.set_in_flight(self.run_id, record)

    def _show(self, task: Task) -> None:
        """Tell the reporter which explanation the task belongs to (when tasks run one at a time)."""
        if task.stage in ("fit-explainer", "explain"):
            explanation = task.label
        elif task.stage in ("perturb", "score"):
            explanation = self.plan.task(task.inputs[0]).label
        else:
            return
        if explanation != self.showing:
            if self.showing is not None:
                self.reporter.end_explanation()
            self.reporter.start_explanation(explanation)
            self.showing = explanation
        if task.stage == "score":
            self.reporter.step(description=f"{explanation} · {self.cells[task.cell].metric.label}")
        elif task.stage == "perturb":
            self.reporter.step(description=f"{explanation} · perturbations of {len(task.cells)} metrics")

    def _group(self, task: Task) -> str | None:
        """Tasks of one model (its identity, variant and seed) are one group; a score or perturb task
        belongs to its explanation's."""
        if task.id not in self.groups:
            if task.stage in ("perturb", "score"):
                group = self._group(self.plan.task(task.inputs[0]))
            elif task.model is not None:
                group = short_hash([task.model, task.variant, task.seed])
            else:
                group = None
            self.groups[task.id] = group
        return self.groups[task.id]

    # -- outcomes ----------------------------------------------------------------------------------
    def _finish(self, outcome: Outcome) -> list[Task]:
        """Record the outcome; the tasks it made ready."""
        task = outcome.task
        if outcome.failed:
            log.error("%s failed: %s\n%s", task.label or task.id, outcome.error, outcome.details or "")
            self._fail(task, outcome.error)
            ready = []
        else:
            self.artefacts[task.id] = outcome.artefact
            self._record(task, outcome.artefact)
            ready = [d for d in self.plan.dependents(task.id) if self._input_done(d)]
        self._release(task)
        return ready

    def _input_done(self, task: Task) -> bool:
        self.waiting[task.id] -= 1
        return self.waiting[task.id] == 0 and task.id not in self.failed

    def _release(self, task: Task) -> None:
        """The task is over: its inputs have one reader less, and go when they have none."""
        for needed in task.inputs:
            self.readers[needed] -= 1
            if self.readers[needed] == 0:
                self.artefacts.pop(needed, None)
        if self.readers[task.id] == 0:
            self.artefacts.pop(task.id, None)

    def _record(self, task: Task, artefact) -> None:
        if is_extra(task):
            # extra examples (e.g. neighbours) are inputs of the metrics that declared them, cached with
            # the attributions; the store keeps the explained sample's
            log.info("%s: %d extra examples explained", task.label, artefact.n_examples)
        elif task.stage == "explain":
            self._record_explanation(task, artefact)
        elif task.stage == "score":
            cell = self.cells[task.cell]
            explained, reference = self._explanations(task, self.artefacts.__getitem__)
            scored: Scored = artefact
            self.store.record_cell(
                self.run_id,
                cell,
                scored.example_ids,
                scored.values,
                scored.seconds,
                curves=scored.curves,
                units=scored.units,
                reference_values=scored.reference_values,
                notes=scored.notes,
                provenance=self._provenance(cell, explained, reference),
            )
            self.reporter.cell_done()

    def _record_explanation(self, task: Task, explained: Explained) -> None:
        """The model's facts (once per dataset entry), the attributions and the explainer's fit."""
        cell = self.explained_cells[task.id]
        model = (cell.dataset, cell.model, cell.variant, cell.seed)
        if model not in self.recorded_models:
            self.recorded_models.add(model)
            facts = explained.model
            self.store.record_model(
                self.run_id, cell.dataset, cell.model, cell.variant, cell.seed, facts["key"],
                facts["test_accuracy"], facts["n_test"], facts["training"], facts["test_predictions"],
                facts.get("labels"),
            )  # fmt: skip
        self.store.record_attributions(self.run_id, cell, explained.attributions, explained.gold_labels)
        if explained.fit_report or cell.explainer.teacher is not None:
            self.store.record_fit(self.run_id, cell, explained.fit_report)

    def _fail(self, task: Task, error: str) -> None:
        """The task failed: so do the cells it scores and every task that needs it, with its reason."""
        self.failed[task.id] = error
        if task.stage == "score":
            cell = self.cells[task.cell]
            explained, reference = self._explanations(task, self.artefacts.get)
            self.store.fail_cell(self.run_id, cell, error, self._provenance(cell, explained, reference))
            self.result.failed.append((cell, error))
            log.error("cell failed: %s: %s", cell.describe(), error)
            self.reporter.cell_done()
            return
        for dependent in self.plan.dependents(task.id):
            if dependent.id in self.failed:
                continue
            reason = error
            if is_extra(task):
                reason = f"extra examples ({task.label}): {error}"
            elif dependent.stage == "score" and task.stage == "explain" and dependent.inputs[0] != task.id:
                reference = self.cells[dependent.cell].reference
                reason = f"{_reference_name(self.cells[dependent.cell], reference)}: {error}"
            self._fail(dependent, reason)
            self._release(dependent)

    def _explanations(self, task: Task, artefact) -> tuple[Explained | None, Explained | None]:
        """A score task's explanation and reference (None when it has none), through ``artefact``."""
        explanation, *reference = self.plan.explanations(task)
        return artefact(explanation), artefact(reference[0]) if reference else None

    def _provenance(
        self, cell: Cell, explained: Explained | None, reference: Explained | None
    ) -> CellProvenance:
        """What the store keeps with a cell so that two runs can be compared cell by cell; its timings
        are the cell's attributions' and, for a metric comparing two cells (speed-up), the reference's."""
        return CellProvenance(
            identity=cell.identity,
            examples=None if explained is None else explained.fingerprint,
            n_examples=None if explained is None else explained.n_examples,
            limit=self.limit,
            timings=[e.timing for e in (explained, reference) if e is not None and e.timing] or None,
        )


def _reference_name(cell: Cell, reference: Cell) -> str:
    """How a failed cell names the reference it could not read."""
    if reference.variant != cell.variant:
        return f"reference variant '{reference.variant}'"
    if reference.explainer != cell.explainer:
        role = "reference explainer" if cell.metric.cls.compares == "explainer" else "teacher"
        return f"{role} '{reference.explainer.label}'"
    return f"reference '{reference.describe()}'"


def summary_line(result: RunResult) -> str:
    failed, skipped = len(result.failed), len(result.skipped)
    text = f"run {result.run_id}: {result.cells - failed - skipped} of {result.cells} cells done"
    if skipped:
        text += f", {skipped} skipped (a device this machine lacks; see the report)"
    if failed:
        log = result.log or f"results/logs/{result.run_id}.log"
        text += f", {failed} failed (see the report and {log})"
    return text + "."
