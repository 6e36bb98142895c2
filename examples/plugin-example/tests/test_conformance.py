"""The plugin author's own tests: every plugin of the package passes bench's conformance kit.

Run them with ``pytest`` from the package folder, bench installed. The kit exercises each plugin as the
harness will (on its own tiny classifier and data for explainers and metrics) and fails listing every
contract a plugin breaks; see ``harness.testing``.
"""

from pathlib import Path

import pytest
from bench_plugin_example import AttributionEntropy, CsvDataset, HashedLinear, TokenLength

from harness.testing import check_dataset, check_explainer, check_metric, check_model

DATA = Path(__file__).resolve().parents[1] / "data" / "reviews.csv"


def test_csv_dataset_conforms():
    check_dataset(CsvDataset, {"path": str(DATA)})


def test_hashed_linear_conforms():
    check_model(HashedLinear, {"epochs": 10})


@pytest.mark.parametrize("params", [{}, {"normalize": True}])
def test_token_length_conforms(params):
    check_explainer(TokenLength, params)


def test_attribution_entropy_conforms():
    check_metric(AttributionEntropy)
