"""Every hook of the harness, one per plugin kind.

A plugin is a module (or object) registered under the ``bench.plugins`` entry-point group that
implements one or more of these hooks, each returning a list of plugin classes::

    from harness import hookimpl

    @hookimpl
    def bench_explainers():
        return [MyExplainer]

The built-ins in ``plugins/`` are registered through the same group in ``pyproject.toml``.
"""

from __future__ import annotations

import pluggy

PROJECT = "bench"
ENTRY_POINT_GROUP = "bench.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def bench_datasets() -> list[type]:
    """Return the ``harness.Dataset`` subclasses this plugin provides."""


@hookspec
def bench_models() -> list[type]:
    """Return the ``harness.Model`` subclasses this plugin provides."""


@hookspec
def bench_explainers() -> list[type]:
    """Return the ``harness.Explainer`` subclasses this plugin provides."""


@hookspec
def bench_metrics() -> list[type]:
    """Return the ``harness.Metric`` subclasses this plugin provides."""


HOOK_FOR_KIND = {
    "dataset": "bench_datasets",
    "model": "bench_models",
    "explainer": "bench_explainers",
    "metric": "bench_metrics",
}
