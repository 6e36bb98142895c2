"""Example third-party plugins for bench.

bench imports this module through the ``bench.plugins`` entry point declared in ``pyproject.toml``
and calls the hooks below (their names and signatures are in ``harness.hookspecs``). Each hook
returns plugin classes, not instances: the harness instantiates them once per grid cell with that
cell's parameters.
"""

from harness import hookimpl

from .datasets import CsvDataset
from .explainers import TokenLength
from .metrics import AttributionEntropy
from .models import HashedLinear

# The version of the plugin API (``harness.API_VERSION``) these plugins are written for. bench refuses
# the package, naming it, if it provides another major version or an older minor one.
BENCH_API_VERSION = "1.0"


@hookimpl
def bench_datasets() -> list[type]:
    return [CsvDataset]


@hookimpl
def bench_models() -> list[type]:
    return [HashedLinear]


@hookimpl
def bench_explainers() -> list[type]:
    return [TokenLength]


@hookimpl
def bench_metrics() -> list[type]:
    return [AttributionEntropy]


__all__ = [
    "AttributionEntropy",
    "CsvDataset",
    "HashedLinear",
    "TokenLength",
    "bench_datasets",
    "bench_explainers",
    "bench_metrics",
    "bench_models",
]
