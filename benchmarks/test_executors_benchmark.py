"""The same small CPU-bound suite run by each executor, cold: what a pool of processes and Ray cost and
gain on one machine, relative to running the stages in the driver's process.

Each round runs the whole suite (``bench run`` as ``Runner.run``) from an empty cache and an empty
results folder, so it trains the models, explains and scores everything; for ``process`` and ``ray`` it
includes starting the workers (and, for Ray, starting and stopping the local instance, as ``bench run
--executor ray`` without ``--address`` does). Each executor has two workers on two CPUs. The wall-clock
ratio executor / serial is printed and stored in the benchmark's ``extra_info`` (``vs_serial``; for Ray
also ``overhead_s``, the seconds it adds to serial). No assertion on seconds: they depend on the
machine; the records must be the same (to float32 rounding: a Ray actor runs torch on one thread).

The suite: four seeds of the bag-of-words model on the tiny fixture's 18 test sentences, explained by
three explainers that need the model (gradients and perturbations) and scored by two faithfulness
metrics and runtime: 36 cells, four models, so two workers always have work. Run with ``make
benchmark`` or ``pytest benchmarks/test_executors_benchmark.py --benchmark-only``.

Measured once (2 rounds each) on the 2-CPU development VM while other jobs kept it busy (load average
5-6, so the numbers are rough): serial 10.4 s, process 19.5 s (1.9x serial), Ray 22.0 s (2.1x serial:
11.6 s of overhead) per cold run; an earlier run of the same module gave 12.1, 15.9 and 21.3 s. On one
machine and a suite this small, starting the workers (each imports torch) and, for Ray, the local
instance costs more than the second CPU gains: Ray pays off with more CPUs, GPUs or nodes than one
process can use, or stages that run for minutes.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from harness.executors import ProcessExecutor, RayExecutor, SerialExecutor
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
TINY_DATA = REPO / "tests" / "fixtures" / "tiny_sentiment.jsonl"
WORKERS = 2
ROUNDS = 2

SUITE = f"""name: executors-benchmark
version: 1
seeds: [0, 1, 2, 3]
device: cpu
batch_size: 8
datasets:
  - name: jsonl
    label: tiny
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
models:
  - name: bow
    params: {{dim: 64, max_epochs: 30}}
explainers:
  - name: saliency
    params: {{reduction: input_x_gradient}}
  - name: integrated-gradients
  - name: occlusion
metrics:
  - name: comprehensiveness
  - name: sufficiency
  - name: runtime
"""
CELLS = 4 * 3 * 3

EXECUTORS = {
    "serial": SerialExecutor,
    "process": lambda: ProcessExecutor(workers=WORKERS),
    "ray": lambda: RayExecutor(workers=WORKERS, cpus=WORKERS),
}
_seconds: dict[str, float] = {}  # executor -> mean seconds of a cold run, for the ratios
_records_of: dict[str, list] = {}  # executor -> the records of its run


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory) -> Path:
    """The suite, after an untimed serial run of one example per dataset: the modules the stages import
    on first use are then loaded in this process, as they are for the runs of every executor but the
    first serial round (workers import them anew: that is part of their cost)."""
    root = tmp_path_factory.mktemp("executors-benchmark")
    path = root / "suite.yaml"
    path.write_text(SUITE)
    options = RunOptions(results_dir=root / "results", cache_dir=root / "cache", progress=False, limit=1)
    Runner(load_suite(path, get_registry()), options).run()
    return path


def _records(store: Store, run_id: str) -> list:
    return sorted(
        (r["explainer"], r["metric"], r["seed"], r["example_id"], r["value"])
        for r in store.records(run_id)
        if r["metric"] != "runtime"
    )


def cold_run(suite_path: Path, executor: str) -> list:
    """The suite, run by ``executor`` from an empty cache and results folder; its records."""
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as root:
        options = RunOptions(
            results_dir=Path(root) / "results", cache_dir=Path(root) / "cache", progress=False
        )
        runner = Runner(load_suite(suite_path, get_registry()), options, executor=EXECUTORS[executor]())
        result = runner.run()
        assert result.cells == CELLS and not result.failed, result.failed
        return _records(Store(Path(root) / "results"), result.run_id)


def same_records(actual: list, expected: list) -> bool:
    return len(actual) == len(expected) and all(
        a[:4] == e[:4] and (a[4] == e[4] or math.isclose(a[4], e[4], rel_tol=1e-5, abs_tol=1e-6))
        for a, e in zip(actual, expected, strict=True)
    )


@pytest.mark.parametrize("executor", list(EXECUTORS))
def test_a_cold_run_of_the_suite_under_each_executor(benchmark, suite_path, executor):
    if executor == "ray":
        pytest.importorskip("ray", reason="the ray extra is not installed")
    benchmark.group = "executors: a cold run of 36 cells"
    records = benchmark.pedantic(cold_run, args=(suite_path, executor), rounds=ROUNDS, iterations=1)
    seconds = benchmark.stats.stats.mean
    _seconds[executor] = seconds
    _records_of[executor] = records
    info = {"seconds": seconds, "workers": 1 if executor == "serial" else WORKERS, "rounds": ROUNDS}
    line = f"\n{executor}: {seconds:.1f} s per cold run"
    if executor != "serial" and "serial" in _seconds:
        serial = _seconds["serial"]
        info["vs_serial"] = seconds / serial
        line += f", {seconds / serial:.2f}× serial ({seconds - serial:+.1f} s)"
        if executor == "ray":
            info["overhead_s"] = seconds - serial
        assert same_records(records, _records_of["serial"])
    benchmark.extra_info.update(info)
    print(line)
