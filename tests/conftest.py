"""Fixtures shared across the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "plugin-example"


@pytest.fixture(scope="session")
def example_plugin_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``examples/plugin-example`` pip-installed as a third party would install it
    (``--target``, so the project's virtualenv is untouched); put it on ``PYTHONPATH`` to use it.

    Offline: ``--no-build-isolation`` builds with the virtualenv's setuptools and ``--no-deps`` skips
    ``xai-bench-harness``, which the test interpreter already has. The source is copied first so the
    build leaves no ``build/`` or ``*.egg-info`` in the repository.
    """
    root = tmp_path_factory.mktemp("example-plugin")
    source = root / "source"
    target = root / "site"
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(EXAMPLE_PLUGIN, source, ignore=skip)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target
