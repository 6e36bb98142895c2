"""Where the stages of a plan run: in the driver's process, in a local pool of processes, or on Ray.

An executor is handed tasks whose inputs are done, each with its inputs' artefacts, and hands back
outcomes, one at a time, in the order they finish. It knows nothing of cells, the store or the
terminal: the driver (``harness.runner``) decides what is ready, records outcomes and fails the
dependents of a failed task.

- ``serial`` (the default): one task at a time in the driver's process, with the run's reporter, so the
  terminal shows each step of each explanation.
- ``process``: a pool of local worker processes (``pebble``). A task that kills its worker (a segfault
  in a native library, the kernel's out-of-memory killer, ``os._exit``) or runs past ``task_timeout``
  fails, with the reason; the pool replaces the worker and the run goes on. Each worker runs torch on
  its share of the CPUs, and ends when the driver does (even killed in the middle of a task).
- ``ray``: one Ray actor per worker, on a Ray cluster (``address``) or a local Ray instance started for
  the run (whose workers get the driver's ``sys.path``, so plugins import there as here). Tasks of one
  model go to one actor, so each model is loaded by one worker; an actor that dies fails only the task it
  was running and is replaced by a new one, which runs the tasks queued for it. With a CUDA device, each
  actor asks Ray for its share of a GPU (and Ray runs its torch on one thread per CPU it asked for).
  Artefacts travel through Ray's object store; models, fits and attributions through the cache, which
  must be a path every node sees.

Every executor runs the same stage functions (``harness.stages.run_task``) in a ``Workspace`` built from
the same ``Settings``, so they give the same records, timings aside: every worker runs torch with the
driver's number of threads (``Settings.threads``), since float sums over another number of threads differ
in their last bits, enough to change a trained model's bytes (and the draws of ``random``, which hashes
them). Values read from the model rows workers share (``harness.forward``) agree to float32 rounding, not
to the last bit: which worker computes a row first, in a pass of which size, depends on timing. Workers
therefore oversubscribe the CPUs of a machine they share; they buy isolation and scale across machines,
not speed on one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from harness.errors import BenchError
from harness.plan import Task
from harness.progress import Reporter
from harness.stages import Settings, Workspace, describe, run_task

log = logging.getLogger("bench.run")

EXECUTORS = ("serial", "process", "ray")


@dataclass(frozen=True)
class Outcome:
    """What became of a task: its artefact, or a one-line ``error`` (with ``details``, e.g. the
    traceback, for the run's log)."""

    task: Task
    artefact: Any = None
    error: str | None = None
    details: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def execute(task: Task, inputs: dict[str, Any], workspace: Workspace) -> Outcome:
    """Run one task, turning an exception into a failed outcome (what every executor's worker does)."""
    try:
        return Outcome(task, run_task(task, inputs, workspace))
    except Exception as error:  # noqa: BLE001 - a plugin's failure is its task's outcome, whatever it is
        return Outcome(task, error=describe(error), details=traceback.format_exc())


class Executor(Protocol):
    """Runs tasks. ``capacity``: how many tasks the driver may have submitted and not yet collected.
    An executor that runs tasks in the driver's process says so with ``in_process = True``."""

    name: str
    capacity: int

    def start(self, settings: Settings, reporter: Reporter) -> None:
        """Get workers ready to run stages under ``settings``."""

    def submit(self, task: Task, inputs: dict[str, Any], group: str | None = None) -> None:
        """Run ``task`` with its inputs' artefacts (by task id). Tasks of one ``group`` (one model) are
        better run by one worker."""

    def next_done(self) -> Outcome:
        """The next task to finish (blocks until one does)."""

    def close(self) -> None:
        """Stop the workers (also after an error)."""


class SerialExecutor:
    """Tasks one after the other, in this process: a task that crashes it (a segfault in a native
    library) ends the run, so the driver records each task before it runs (``in_process``)."""

    name = "serial"
    capacity = 1
    in_process = True

    def __init__(self) -> None:
        self._workspace: Workspace | None = None
        self._queue: deque[tuple[Task, dict]] = deque()

    def start(self, settings: Settings, reporter: Reporter) -> None:
        self._workspace = Workspace(settings, reporter)

    def submit(self, task: Task, inputs: dict[str, Any], group: str | None = None) -> None:
        self._queue.append((task, inputs))

    def next_done(self) -> Outcome:
        task, inputs = self._queue.popleft()
        return execute(task, inputs, self._workspace)

    def close(self) -> None:
        self._workspace = None


# -- a local pool of processes ---------------------------------------------------------------------------
_WORKSPACE: Workspace | None = None  # a pool worker's workspace, made once by ``_start_worker``


def _start_worker(settings: Settings) -> None:
    global _WORKSPACE
    logging.getLogger("bench").handlers.clear()  # the driver writes the run's log, not its workers
    _exit_with_parent()
    _WORKSPACE = Workspace(settings)


def _exit_with_parent(every: float = 0.5) -> None:
    """End this worker when the driver that started it is gone (killed with SIGKILL, say). A worker
    between tasks notices anyway (its pipe closes); one in the middle of a task would run it to the end,
    holding memory, a GPU and the cache, after its run is over."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="bench-exit-with-parent", daemon=True).start()


def _run_in_worker(task: Task, inputs: dict[str, Any]) -> Outcome:
    return execute(task, inputs, _WORKSPACE)


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (killed: out of memory, or by hand)" if name == "SIGKILL" else ""
        return f"its worker process died of {name}{why}"
    return f"its worker process died (exit code {exitcode})"


class ProcessExecutor:
    """A pool of ``workers`` local processes (``spawn``ed, so nothing of the driver's state is shared
    but the settings)."""

    name = "process"

    def __init__(self, workers: int | None = None, task_timeout: float | None = None):
        self.workers = workers or max(1, min(os.cpu_count() or 1, 4))
        self.capacity = 2 * self.workers  # one running and one waiting per worker
        self.task_timeout = task_timeout
        self._pool = None
        self._done: queue.Queue[Outcome] = queue.Queue()

    def start(self, settings: Settings, reporter: Reporter) -> None:
        from pebble import ProcessPool

        self._pool = ProcessPool(
            max_workers=self.workers,
            initializer=_start_worker,
            initargs=(settings,),
            context=multiprocessing.get_context("spawn"),
        )

    def submit(self, task: Task, inputs: dict[str, Any], group: str | None = None) -> None:
        future = self._pool.schedule(_run_in_worker, args=(task, inputs), timeout=self.task_timeout)
        future.add_done_callback(self._collect(task))

    def _collect(self, task: Task) -> Callable[[Future], None]:
        from pebble import ProcessExpired

        def collect(future: Future) -> None:
            try:
                outcome = future.result()
            except TimeoutError:
                outcome = Outcome(task, error=f"it ran past the task timeout of {self.task_timeout:g} s")
            except ProcessExpired as error:
                outcome = Outcome(task, error=_exit_reason(error.exitcode))
            except BrokenProcessPool as error:  # the pool is done for: every later task fails alike
                reason = (
                    f"the process pool broke ({error or 'no reason given'}): a worker died outside any "
                    "task, e.g. on starting, when a plugin does not import in a fresh process (see stderr)"
                )
                outcome = Outcome(task, error=reason, details=traceback.format_exc())
            except Exception as error:  # noqa: BLE001 - e.g. an artefact that cannot be pickled
                outcome = Outcome(task, error=describe(error), details=traceback.format_exc())
            self._done.put(outcome)

        return collect

    def next_done(self) -> Outcome:
        return self._done.get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join()
            self._pool = None


# -- Ray -------------------------------------------------------------------------------------------------
def local_runtime_env() -> dict[str, Any]:
    """The runtime environment of a local Ray instance's workers: the driver's ``sys.path`` as their
    ``PYTHONPATH``. Workers unpickle the suite, and with it each plugin class by its module path; Ray
    gives them only the driver's script folder and working directory, so a plugin found on the driver's
    ``PYTHONPATH`` or on a path added at run time would not import there. (On a cluster, ``--address``,
    the nodes' own environment must provide the plugins: the driver's paths mean nothing there.)"""
    paths = (os.path.abspath(path or os.curdir) for path in sys.path)
    existing = dict.fromkeys(path for path in paths if os.path.isdir(path))  # in order, once each
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(existing)}}


class _RayWorker:
    """A Ray actor: one workspace, kept across the tasks it runs (so a model is loaded once)."""

    def __init__(self, settings: Settings):
        logging.getLogger("bench").handlers.clear()
        self.workspace = Workspace(settings)

    def run(self, task: Task, inputs: dict[str, Any]) -> Outcome:
        return execute(task, inputs, self.workspace)


def _wants_gpu(settings: Settings) -> bool:
    """Whether a stage of the run may use CUDA: the run's device or a model entry's own is not ``cpu``
    (an actor that asks Ray for no GPU sees none, so a model naming ``cuda`` would fail there)."""
    models = settings.loaded.entries.get("models", ())
    return any(device not in (None, "cpu") for device in (settings.device, *(m.device for m in models)))


def _actor_failure(error) -> str:
    """Why a task failed with its actor (a ``ray.exceptions.RayActorError``), in one line."""
    if error.actor_init_failed:  # e.g. a plugin the worker cannot import: every task would fail alike
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return f"its Ray worker could not start: {lines[-1] if lines else 'no reason given'}"
    return "its Ray worker died"


RAY_CONNECT_TIMEOUT_S = 15.0  # how long --address may take to accept a connection


def _check_reachable(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail in one line, within ``timeout``, when nothing accepts connections at ``--address``
    (``HOST:PORT`` or ``ray://HOST:PORT``): ``ray.init`` would retry in silence for minutes. ``auto`` and
    other forms Ray resolves itself are left to it."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except TimeoutError:
        raise BenchError(
            f"--address {address}: no Ray cluster answered within {timeout:g} s; check the address (the head "
            "node's HOST:6379) and that the cluster is up"
        ) from None
    except OSError as error:
        raise BenchError(
            f"--address {address}: cannot reach a Ray cluster ({error.strerror or error}); check the address "
            "(the head node's HOST:6379) and that the cluster is up"
        ) from None


def _is_authentication(error: BaseException) -> bool:
    """Whether Ray's connection error is a refused authentication (as some versions report it)."""
    text = str(error).lower()
    return any(word in text for word in ("unauthenticated", "authentication", "auth token"))


def _authentication_failure(address: str | None, error: BaseException) -> str:
    """A cluster that answered and refused this driver (token authentication): not one out of reach."""
    message = getattr(error, "message", None) or str(error)  # Ray's str() appends a paragraph of help
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return (
        f"--address {address}: the Ray cluster refused this driver's authentication "
        f"({lines[0] if lines else 'no reason given'}); run with RAY_AUTH_MODE=token and the cluster's token "
        "in RAY_AUTH_TOKEN (or the file RAY_AUTH_TOKEN_PATH names)"
    )


class RayExecutor:
    """Ray actors, one task at a time each; a model's tasks stay on the actor that first got one."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, cpus: int | None = None):
        self.address = address
        self.workers = workers
        self.cpus = cpus  # of the local instance started when there is no address
        self.capacity = 1
        self._ray = None
        self._started_ray = False
        self._actors: list = []
        self._queues: list[deque] = []
        self._running: dict[Any, tuple[Task, int]] = {}  # object ref -> (task, actor index)
        self._busy: list[bool] = []
        self._groups: dict[str, int] = {}
        self._actor_class = None
        self._settings_ref = None
        self._gpu_share = 0.0

    def start(self, settings: Settings, reporter: Reporter) -> None:
        try:
            import ray
        except ImportError:
            raise BenchError(
                "--executor ray: Ray is not installed; pip install 'xai-bench-harness[ray]'"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                options["num_cpus"] = self.cpus or os.cpu_count() or 1
                options["runtime_env"] = local_runtime_env()
            if self.address is not None:
                _check_reachable(self.address)
            authentication = getattr(ray.exceptions, "AuthenticationError", ())
            try:
                ray.init(address=self.address, **options)
            except authentication as error:
                raise BenchError(_authentication_failure(self.address, error)) from None
            except ConnectionError as error:
                if _is_authentication(error):
                    raise BenchError(_authentication_failure(self.address, error)) from None
                raise BenchError(f"--address {self.address}: cannot reach a Ray cluster ({error})") from None
            self._started_ray = True
        resources = ray.cluster_resources()
        n = self.workers or max(1, int(resources.get("CPU", 1)))
        gpus = resources.get("GPU", 0)
        if gpus and _wants_gpu(settings):
            self._gpu_share = min(1.0, gpus / n)
        # An actor that dies is replaced by the driver (``_replace``), not restarted by Ray: Ray fails a
        # task submitted while it restarts an actor, so a restart would fail the next tasks too.
        self._actor_class = ray.remote(max_restarts=0, max_task_retries=0)(_RayWorker)
        self._settings_ref = ray.put(settings)
        self._actors = [self._new_actor() for _ in range(n)]
        self._queues = [deque() for _ in range(n)]
        self._busy = [False] * n
        self.capacity = 2 * n

    def _new_actor(self):
        return self._actor_class.options(num_cpus=1, num_gpus=self._gpu_share).remote(self._settings_ref)

    def _replace(self, index: int) -> None:
        """A new actor in place of one that died (or cannot be reached): the tasks queued for it, and
        its group's later tasks, go to the new one, which Ray starts before running them."""
        self._ray.kill(self._actors[index], no_restart=True)
        self._actors[index] = self._new_actor()

    def _actor_for(self, group: str | None) -> int:
        if group is not None and group in self._groups:
            return self._groups[group]
        load = [len(q) + busy for q, busy in zip(self._queues, self._busy, strict=True)]
        index = load.index(min(load))
        if group is not None:
            self._groups[group] = index
        return index

    def submit(self, task: Task, inputs: dict[str, Any], group: str | None = None) -> None:
        index = self._actor_for(group)
        self._queues[index].append((task, inputs))
        self._dispatch(index)

    def _dispatch(self, index: int) -> None:
        if self._busy[index] or not self._queues[index]:
            return
        task, inputs = self._queues[index].popleft()
        reference = self._actors[index].run.remote(task, inputs)
        self._running[reference] = (task, index)
        self._busy[index] = True

    def next_done(self) -> Outcome:
        ray = self._ray
        (reference,), _ = ray.wait(list(self._running), num_returns=1)
        task, index = self._running.pop(reference)
        self._busy[index] = False
        try:
            outcome = ray.get(reference)
        except ray.exceptions.RayActorError as error:
            outcome = Outcome(task, error=_actor_failure(error), details=str(error))
            self._replace(index)
        except ray.exceptions.RayError as error:
            outcome = Outcome(task, error=f"Ray: {describe(error)}", details=str(error))
        self._dispatch(index)
        return outcome

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
        self._ray = None


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    address: str | None = None,
    task_timeout: float | None = None,
) -> Executor:
    """The executor ``bench run --executor NAME`` asks for. An option another executor would honour is an
    error, never silently ignored (``RunOptions`` reaches here without the command line's checks)."""
    if address is not None and name != "ray":
        raise BenchError("--address: only --executor ray joins a cluster; add --executor ray")
    if task_timeout is not None and name != "process":
        raise BenchError("--task-timeout: only --executor process enforces it; add --executor process")
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(workers, task_timeout)
    if name == "ray":
        return RayExecutor(address, workers)
    raise BenchError(f"--executor: unknown executor '{name}'; choose {', '.join(EXECUTORS)}")
