"""Explainers that take their worker down, for the executor tests (tests/test_executors.py).

They live in a module of their own, not in a test, because a worker process (a pool's or a Ray actor)
unpickles the suite and with it each plugin class *by module path*: ``crash_plugins`` must be importable
there, which it is while ``tests/`` is on the driver's ``sys.path`` (pytest puts it there) and the
executor hands that path to its workers (``spawn`` does; a local Ray instance started by
``RayExecutor`` does through its runtime environment).

``registry_with_crash_plugins`` adds them to the discovered plugins without installing a distribution.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path
from typing import ClassVar

import torch

from harness import Explainer
from harness.registry import PluginInfo, Registry, get_registry

GATE_ENV = "BENCH_TEST_GATE"  # a folder: the gate explainer waits in it (see GateExplainer)


def _positions(encoding) -> torch.Tensor:
    return -torch.arange(encoding.input_ids.shape[1], dtype=torch.float32).expand(encoding.input_ids.shape)


class ExitingExplainer(Explainer):
    """Ends its process with ``os._exit(3)`` (as a native library calling ``exit`` would): no exception,
    no clean-up, just a dead process."""

    name: ClassVar[str] = "exits"

    def explain(self, classifier, encoding, targets):
        os._exit(3)


class SegfaultExplainer(Explainer):
    """Reads address 0 through ``ctypes``: a segmentation fault, as a bug in a native library gives, which
    no ``except`` catches."""

    name: ClassVar[str] = "segfaults"

    def explain(self, classifier, encoding, targets):
        ctypes.string_at(0)


class SigkillExplainer(Explainer):
    """Kills its own process with SIGKILL (as the kernel's out-of-memory killer would)."""

    name: ClassVar[str] = "sigkills"

    def explain(self, classifier, encoding, targets):
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached: SIGKILL cannot be caught


class SleepyExplainer(Explainer):
    """Sleeps a minute per call: a hung task."""

    name: ClassVar[str] = "sleeps"

    def explain(self, classifier, encoding, targets):
        time.sleep(60)
        return _positions(encoding)


class GateExplainer(Explainer):
    """Position scores, once the gate is open: when the folder named by ``$BENCH_TEST_GATE`` exists, it
    writes its process id to ``waiting`` there and waits (up to two minutes) for a file ``open``; without
    the variable it does not wait. A test kills the driver while a worker waits here."""

    name: ClassVar[str] = "gate"

    def explain(self, classifier, encoding, targets):
        gate = Path(os.environ.get(GATE_ENV, "/nonexistent"))
        if gate.is_dir() and not (gate / "open").exists():
            (gate / "waiting").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not (gate / "open").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return _positions(encoding)


CRASH_PLUGINS = (ExitingExplainer, SegfaultExplainer, SigkillExplainer, SleepyExplainer, GateExplainer)


def registry_with_crash_plugins() -> Registry:
    """The installed plugins and this module's explainers."""
    infos = [PluginInfo("explainer", cls.name, cls, "crash-plugins", "1.0") for cls in CRASH_PLUGINS]
    return Registry([*get_registry().all(), *infos])
