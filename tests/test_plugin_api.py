"""The declared plugin API: everything a plugin needs comes from ``harness``, the built-ins included, and
discovery checks the API version a package declares."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import make_distribution, subprocess_pythonpath

import harness
from harness.errors import BenchError
from harness.registry import PluginLoadWarning, Registry, api_problem

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SOURCE = REPO / "examples" / "plugin-example" / "src"
# Each tree of plugin code, with the folder its modules are imported from.
PLUGIN_TREES = {REPO / "plugins": REPO, EXAMPLE_SOURCE / "bench_plugin_example": EXAMPLE_SOURCE}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, lazy ones inside functions included; relative imports
    resolved against the file's package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(_tree_root(path)).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((node.lineno, module))
    return found


def _tree_root(path: Path) -> Path:
    return next(base for tree, base in PLUGIN_TREES.items() if tree in path.parents)


def plugin_files() -> list[Path]:
    return sorted(file for root in PLUGIN_TREES for file in root.rglob("*.py"))


def allowed(importer: Path, module: str) -> bool:
    """A plugin module may import the harness's public API (``harness``, nothing under it), its own
    package's ``__init__``-registered modules (only from that ``__init__``), and private helpers of its
    own (``plugins/explainers/_l2e_student.py`` belongs to ``l2e.py``). Anything else of the project is
    private to someone else."""
    if module == "harness":
        return True
    if module.startswith("harness."):
        return False
    own_package = ".".join(importer.relative_to(_tree_root(importer)).with_suffix("").parts[:-1])
    top = own_package.split(".")[0]
    if module.split(".")[0] != top:
        return True  # the standard library or a third-party package
    if not module.startswith(own_package + "."):
        return False  # another package of the project (e.g. a metric importing a model's module)
    target = module[len(own_package) + 1 :].split(".")[0]
    if importer.name == "__init__.py":
        return True  # a package registering its own plugin modules
    return target.startswith(f"_{importer.stem}") or target == importer.stem


@pytest.mark.parametrize("path", plugin_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_plugins_import_only_the_public_api_and_their_own_modules(path):
    wrong = [f"line {line}: {module}" for line, module in imported_modules(path) if not allowed(path, module)]
    assert not wrong, f"{path.relative_to(REPO)} imports private modules: {wrong}"


def test_the_rule_catches_private_and_foreign_imports():
    explainer = REPO / "plugins" / "explainers" / "lime.py"
    assert not allowed(explainer, "harness.perturb")
    assert not allowed(explainer, "plugins.models.minilm_head")
    assert not allowed(explainer, "plugins.explainers.random")
    assert allowed(explainer, "harness") and allowed(explainer, "numpy")
    assert allowed(REPO / "plugins" / "explainers" / "l2e.py", "plugins.explainers._l2e_student")
    assert allowed(REPO / "plugins" / "explainers" / "__init__.py", "plugins.explainers.lime")


def test_every_exported_name_exists_and_is_listed_once():
    assert len(harness.__all__) == len(set(harness.__all__))
    missing = [name for name in harness.__all__ if not hasattr(harness, name)]
    assert not missing
    namespace: dict = {}
    exec("from harness import *", namespace)  # noqa: S102 - the star import authors may write
    assert set(harness.__all__) <= set(namespace)


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ("1.0", None),
        (harness.API_VERSION, None),
        ("1.9", "upgrade xai-bench-harness"),
        ("2.0", "upgrade xai-bench-harness"),
        ("0.3", "install a version of the plugin written for API 1.x"),
        ("one", "not a version like '1.0'"),
        (1.0, "not a version like '1.0'"),
    ],
)
def test_api_versions_are_compatible_within_a_major_version_up_to_the_harness_minor(declared, problem):
    found = api_problem(declared, provided="1.2") if declared != "1.9" else api_problem(declared, "1.2")
    if declared in ("1.0", harness.API_VERSION):
        assert found is None
    else:
        assert problem in found


PLUGIN_SOURCE = '''
import torch
from harness import Explainer, hookimpl
{declaration}

class Newer(Explainer):
    """An explainer from the future."""
    name = "from-the-future"
    def explain(self, classifier, encoding, targets):
        return torch.zeros(encoding.input_ids.shape)

@hookimpl
def bench_explainers():
    return [Newer]
'''


def test_a_package_written_for_another_major_api_is_refused_with_one_line_naming_it(tmp_path, monkeypatch):
    source = PLUGIN_SOURCE.format(declaration='BENCH_API_VERSION = "2.0"')
    make_distribution(tmp_path, "future-plugins", {"future_mod": source}, {"future": "future_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning) as caught:
        registry = Registry.discover()
    (message,) = [str(w.message) for w in caught if "future" in str(w.message)]
    assert "\n" not in message
    assert "'future-plugins'" in message and "2.0" in message and harness.API_VERSION in message
    assert "from-the-future" not in registry.names("explainer")
    assert "saliency" in registry.names("explainer")  # the others load
    with pytest.raises(BenchError, match="explainer 'from-the-future' cannot be used: .*'future-plugins'"):
        registry.get("explainer", "from-the-future")


def test_a_package_declaring_no_api_version_loads_with_a_warning_asking_it_to(tmp_path, monkeypatch):
    make_distribution(
        tmp_path, "quiet-plugins", {"quiet_mod": PLUGIN_SOURCE.format(declaration="")}, {"quiet": "quiet_mod"}
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match="'quiet-plugins' declares no BENCH_API_VERSION"):
        registry = Registry.discover()
    assert registry.get("explainer", "from-the-future").api_version is None


def test_the_built_ins_declare_the_current_api():
    registry = Registry.discover()
    builtins = [info for info in registry.all() if info.package == "xai-bench-harness"]
    assert builtins and {info.api_version for info in builtins} == {harness.API_VERSION}


def test_a_suite_naming_a_refused_plugin_fails_with_the_refusal_and_exit_code_2(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import tiny_suite_text

    source = PLUGIN_SOURCE.format(declaration='BENCH_API_VERSION = "2.0"')
    make_distribution(tmp_path / "site", "future-plugins", {"future_mod": source}, {"future": "future_mod"})
    suite = tmp_path / "suite.yaml"
    suite.write_text(tiny_suite_text(explainers="\n  - name: from-the-future"))
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(suite)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": subprocess_pythonpath(tmp_path / "site")},
        timeout=120,
    )
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "explainer 'from-the-future' cannot be used" in error[0] and "plugin API 2.0" in error[0]
