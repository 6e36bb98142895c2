"""Plugin discovery through the bench.plugins entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import make_distribution, subprocess_pythonpath

from harness.errors import BenchError
from harness.registry import PluginLoadWarning, Registry

EXPLAINER_MODULE = """
import torch
from harness import Explainer, hookimpl
BENCH_API_VERSION = "1.0"

class {cls}(Explainer):
    \"\"\"A test explainer.\"\"\"
    name = "{name}"
    def explain(self, classifier, encoding, targets):
        return torch.zeros(encoding.input_ids.shape)

@hookimpl
def bench_explainers():
    return [{cls}]
"""


def test_builtins_are_discovered_through_the_entry_point_group():
    registry = Registry.discover()
    builtin = {(info.kind, info.name) for info in registry.all() if info.package == "xai-bench-harness"}
    assert {
        ("explainer", "random"),
        ("explainer", "saliency"),
        ("explainer", "integrated-gradients"),
    } <= builtin
    assert {("model", "minilm-head"), ("model", "hf"), ("model", "bow")} <= builtin
    assert {("dataset", "bbc-news"), ("dataset", "jsonl"), ("dataset", "hf")} <= builtin
    assert {("metric", "comprehensiveness"), ("metric", "sufficiency"), ("metric", "runtime")} <= builtin
    assert registry.load_errors == []


def test_two_plugins_with_one_name_is_an_error_naming_both_packages(tmp_path, monkeypatch):
    make_distribution(
        tmp_path / "a",
        "alpha-plugins",
        {"alpha_mod": EXPLAINER_MODULE.format(cls="A", name="twin")},
        {"alpha": "alpha_mod"},
    )
    make_distribution(
        tmp_path / "b",
        "beta-plugins",
        {"beta_mod": EXPLAINER_MODULE.format(cls="B", name="twin")},
        {"beta": "beta_mod"},
    )
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(BenchError) as error:
        Registry.discover()
    message = str(error.value)
    assert "'twin'" in message and "alpha-plugins" in message and "beta-plugins" in message


def test_a_plugin_that_fails_to_import_warns_and_the_rest_still_loads(tmp_path, monkeypatch):
    make_distribution(
        tmp_path,
        "broken-plugins",
        {"broken_mod": "import does_not_exist_anywhere\n"},
        {"broken": "broken_mod"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match="'broken'.*'broken-plugins'.*does_not_exist_anywhere"):
        registry = Registry.discover()
    assert "saliency" in registry.names("explainer")
    assert len(registry.load_errors) == 1


def test_a_hook_returning_something_else_than_a_plugin_class_is_reported(tmp_path, monkeypatch):
    source = 'from harness import hookimpl\nBENCH_API_VERSION = "1.0"\n\n@hookimpl\ndef bench_metrics():\n    return [42]\n'
    make_distribution(tmp_path, "odd-plugins", {"odd_mod": source}, {"odd": "odd_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match="odd-plugins.*not a harness.Metric subclass"):
        registry = Registry.discover()
    assert "comprehensiveness" in registry.names("metric")


def test_unknown_plugin_name_suggests_the_closest():
    with pytest.raises(BenchError, match="unknown explainer 'saliancy'; did you mean 'saliency'"):
        Registry.discover().get("explainer", "saliancy")


def test_bench_plugins_lists_the_installed_example_plugin(example_plugin_target):
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath(example_plugin_target)}
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    plugins = json.loads(result.stdout)["plugins"]
    rows = {(p["kind"], p["name"]): p for p in plugins}
    assert rows[("explainer", "token-length")]["package"] == "bench-plugin-example"
    assert rows[("metric", "attribution-entropy")]["version"] == "0.1.0"
    kinds = [p["kind"] for p in plugins]
    assert kinds.count("explainer") >= 4 and kinds.count("model") >= 2
    assert kinds.count("dataset") >= 3 and kinds.count("metric") >= 4


def test_a_metric_without_direction_is_reported_and_skipped(tmp_path, monkeypatch):
    source = '''
from harness import Metric, hookimpl
BENCH_API_VERSION = "1.0"

class Vague(Metric):
    """No direction."""
    name = "vague"
    family = "faithfulness"
    range = (0.0, 1.0)
    def compute(self, data):
        return []

@hookimpl
def bench_metrics():
    return [Vague]
'''
    make_distribution(tmp_path, "vague-plugins", {"vague_mod": source}, {"vague": "vague_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match="vague-plugins.*direction 'higher' or 'lower'"):
        registry = Registry.discover()
    assert "vague" not in registry.names("metric")


def test_a_metric_declaring_a_range_that_is_not_numbers_is_refused_by_name_and_the_rest_loads(
    tmp_path, monkeypatch
):
    source = '''
from harness import Metric, hookimpl
BENCH_API_VERSION = "1.0"

class Lettered(Metric):
    """A range of letters."""
    name = "lettered"
    family = "faithfulness"
    direction = "higher"
    range = ("a", "b")
    def compute(self, data):
        return []

class Bounded(Lettered):
    """The same metric with a range of numbers."""
    name = "bounded"
    range = (0, float("inf"))

@hookimpl
def bench_metrics():
    return [Lettered, Bounded]
'''
    make_distribution(tmp_path, "letter-plugins", {"letter_mod": source}, {"letter": "letter_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(
        PluginLoadWarning, match=r"letter-plugins.*'lettered' must declare range as \(low, high\)"
    ):
        registry = Registry.discover()
    assert "lettered" not in registry.names("metric")
    assert "bounded" in registry.names("metric")
    assert any("lettered" in error for error in map(str, registry.load_errors))
