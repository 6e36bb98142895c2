"""Fixtures shared across the test suite."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import WORD_SPECIALS as SPECIALS
from harness import Attribution, Example, MetricInput, MetricOutput, TextDataset
from plugins.models.bow import BagOfWordsClassifier

REPO = Path(__file__).resolve().parents[1]

# The forward-pass service's kernels, fixed for the tests (and the ``bench`` processes they start):
# otherwise each process would time PyTorch's and oneDNN's kernels and keep the faster
# (``harness.forward.choose_kernels``), and two processes of one test could choose differently when the
# two are close, their rows differing by float32 rounding. The choice itself is tested with measured
# times stubbed (tests/test_forward_service.py).
os.environ.setdefault("BENCH_FORWARD_KERNELS", "torch")


def subprocess_pythonpath(*folders) -> str:
    """PYTHONPATH for a ``bench`` subprocess: ``folders`` first (an installed test plugin, the tests),
    then this checkout, so that a test run from a clone or a git worktree runs its own harness and
    plugins in its subprocesses too, not those of the environment's editable install."""
    return os.pathsep.join([*map(str, folders), str(REPO)])


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
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target


FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_DATA = FIXTURES / "tiny_sentiment.jsonl"
SHARED_DATA = REPO.parent / "shared" / "data"


def cached_value(path: Path):
    """The value of a JSON cache entry as a harness of any version wrote it: since entries carry a digest
    (``{"bench-cache-digest": ..., "value": ...}``) the value is inside; before, the file was the value.
    A test that edits an entry by hand writes the edited value back bare, as an earlier version of the
    harness wrote it (read unchecked), not as a tampered entry, which the digest refuses."""
    import json

    data = json.loads(path.read_text())
    return data["value"] if isinstance(data, dict) and "bench-cache-digest" in data else data


def make_distribution(
    root: Path, name: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "1.0"
) -> Path:
    """Write an installed-looking distribution into ``root``: modules plus a ``.dist-info`` whose
    ``entry_points.txt`` registers them under ``bench.plugins``. Put ``root`` on ``sys.path`` (or
    ``PYTHONPATH``) and entry-point discovery finds it exactly as it finds a pip-installed package."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[bench.plugins]\n{lines}\n")
    return root


def tiny_suite_text(explainers: str = "", metrics: str = "", extra: str = "") -> str:
    """A suite on the tiny fixture dataset and the bag-of-words model: runs in seconds."""
    explainers = (
        explainers
        or """
  - name: random
  - name: saliency
    params: {reduction: input_x_gradient}"""
    )
    metrics = (
        metrics
        or """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: sufficiency
    params: {bins: [10, 50]}
  - name: runtime"""
    )
    return f"""name: tiny
version: 1
seeds: [0]
device: cpu
batch_size: 4
{extra}
datasets:
  - name: jsonl
    label: tiny
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    sample: 6
models:
  - name: bow
    params: {{dim: 8, max_epochs: 20}}
explainers:{explainers}
metrics:{metrics}
"""


@pytest.fixture
def write_suite(tmp_path: Path):
    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """Rediscover plugins after a test put distributions on sys.path, and restore afterwards."""
    import harness.registry as registry_module

    monkeypatch.setattr(registry_module, "_registry", None)

    def discover():
        registry_module._registry = None
        return registry_module.get_registry()

    return discover


# -- the toy model -------------------------------------------------------------------------------------
# A bag-of-words classifier with hand-set weights: each word has a one-dimensional embedding e(w),
# logits = (−m, m) with m the mean embedding of the attended tokens, so p(positive) = σ(2m).
# [PAD] and [MASK] embed to 0, [UNK] to −1. Metric tests compute their expectations from that formula.
# The model computes in float32, so values are compared to 1e-6.
EMBEDDING = {"good": 2.0, "bad": -2.0, "the": 0.0}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def hand_bow(embedding: dict[str, float] = EMBEDDING) -> BagOfWordsClassifier:
    """The toy model with one-dimensional embeddings ``embedding`` (and [UNK] = −1, [PAD] = [MASK] = 0)."""
    vocabulary = [*SPECIALS, *embedding]
    model = BagOfWordsClassifier(vocabulary, ("negative", "positive"), dim=1)
    with torch.no_grad():
        model.embedding.weight.zero_()
        for word, value in embedding.items():
            model.embedding.weight[vocabulary.index(word), 0] = value
        model.embedding.weight[vocabulary.index("[UNK]"), 0] = -1.0  # so that unk differs from mask
        model.linear.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.linear.bias.zero_()
    return model.eval().requires_grad_(False)


@pytest.fixture
def classifier() -> BagOfWordsClassifier:
    return hand_bow()


def attribution(
    classifier, text: str, scores: list[float], seconds: float = 0.0, target: int = 1
) -> Attribution:
    encoding = classifier.encode([Example("x", text, 1)])
    length = len(encoding.tokens[0])
    return Attribution(
        example_id=text,
        target=target,
        predicted=target,
        probability=0.0,
        input_ids=encoding.input_ids[0, :length].tolist(),
        token_type_ids=None,
        tokens=encoding.tokens[0],
        offsets=encoding.offsets[0],
        word_ids=encoding.word_ids[0],
        segments=encoding.segments[0],
        scores=scores,
        seconds=seconds,
    )


def logits_of(classifier, examples) -> torch.Tensor:
    """A classifier's logits for ``examples``, without gradients."""
    encoding = classifier.encode(examples)
    with torch.no_grad():
        return classifier.logits(
            input_ids=encoding.input_ids,
            attention_mask=encoding.attention_mask,
            token_type_ids=encoding.token_type_ids,
        )


def values_of(metric, data: MetricInput) -> np.ndarray:
    output = metric.compute(data)
    return np.asarray(output.values if isinstance(output, MetricOutput) else output)


def metric_input(classifier, attributions) -> MetricInput:
    dataset = TextDataset("toy", ("negative", "positive"), (), (), ())
    return MetricInput(attributions, {}, dataset, load_classifier=lambda: classifier, batch_size=3)
