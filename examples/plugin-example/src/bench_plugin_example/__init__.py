"""Example third-party plugins for bench.

bench imports this module through the ``bench.plugins`` entry point declared in ``pyproject.toml``
and calls the hooks below (their names and signatures are in ``harness.hookspecs``). Each hook
returns plugin classes, not instances: the harness instantiates them once per grid cell with that
cell's parameters.
"""

from harness import hookimpl

from .explainers import TokenLength
from .metrics import AttributionEntropy


@hookimpl
def bench_explainers() -> list[type]:
    return [TokenLength]


@hookimpl
def bench_metrics() -> list[type]:
    return [AttributionEntropy]


__all__ = ["AttributionEntropy", "TokenLength", "bench_explainers", "bench_metrics"]
