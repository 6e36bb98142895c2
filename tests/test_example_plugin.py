"""The example third-party plugin package (examples/plugin-example) as a specification of the
plugin API: its explainer and metric against hand-computed values, and its discovery once installed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import Attribution, Encoding, MetricInput, Params, TextDataset

EXAMPLE_SRC = Path(__file__).resolve().parents[1] / "examples" / "plugin-example" / "src"
sys.path.insert(0, str(EXAMPLE_SRC))  # unit tests import the source tree; discovery uses an install

from bench_plugin_example import AttributionEntropy, TokenLength  # noqa: E402


class NoModel:
    """Stands in for the classifier: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the plugin used the classifier ({name})")


def encoding(rows: list[list[tuple[str, tuple[int, int], int]]]) -> Encoding:
    """A padded batch from (token, offsets, segment) rows; ids are arbitrary, padding id 0."""
    width = max(len(row) for row in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.arange(1, len(row) + 1)
        attention_mask[i, : len(row)] = 1
    word = iter(range(1000))
    return Encoding(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=None,
        tokens=[[token for token, _, _ in row] for row in rows],
        offsets=[[span for _, span, _ in row] for row in rows],
        word_ids=[[None if segment < 0 else next(word) for _, _, segment in row] for row in rows],
        segments=[[segment for _, _, segment in row] for row in rows],
    )


# "hello world" (4 tokens) and the pair ("abc", "no") (6 tokens), so row 0 has two padding positions.
BATCH = [
    [("[CLS]", (0, 0), -1), ("hello", (0, 5), 0), ("world", (6, 11), 0), ("[SEP]", (0, 0), -1)],
    [
        ("[CLS]", (0, 0), -1),
        ("ab", (0, 2), 0),
        ("##c", (2, 3), 0),
        ("[SEP]", (0, 0), -1),
        ("no", (0, 2), 1),
        ("[SEP]", (0, 0), -1),
    ],
]
TARGETS = torch.tensor([1, 0])


def test_token_length_scores_each_token_by_its_character_count():
    scores = TokenLength().explain(NoModel(), encoding(BATCH), TARGETS)
    assert scores.dtype == torch.float32
    assert scores.tolist() == [[0, 5, 5, 0, 0, 0], [0, 2, 1, 0, 2, 0]]


def test_token_length_normalize_divides_by_the_longest_token_of_each_example():
    explainer = TokenLength(TokenLength.Params(normalize=True))
    scores = explainer.explain(NoModel(), encoding(BATCH), TARGETS)
    assert scores.tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 0.5, 0, 1, 0]]


def test_token_length_gives_special_tokens_zero_whatever_their_offsets():
    # Some tokenizers give special tokens a non-empty span; the segment (-1) decides, not the span.
    batch = [[("<s>", (0, 3), -1), ("hi", (0, 2), 0), ("</s>", (2, 6), -1)]]
    assert TokenLength().explain(NoModel(), encoding(batch), TARGETS[:1]).tolist() == [[0, 2, 0]]


def test_token_length_returns_scores_on_the_input_device():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = encoding(BATCH).to(device)
    scores = TokenLength().explain(NoModel(), batch, TARGETS.to(device))
    assert scores.device == batch.input_ids.device
    assert scores.shape == batch.input_ids.shape


def test_token_length_params_reject_unknown_keys():
    with pytest.raises(ValueError, match="normalise"):
        TokenLength.Params(normalise=True)
    assert issubclass(TokenLength.Params, Params)


def attribution(scores: list[float], segments: list[int]) -> Attribution:
    n = len(scores)
    return Attribution(
        example_id=f"ex{n}",
        target=1,
        predicted=1,
        probability=0.9,
        input_ids=list(range(n)),
        token_type_ids=None,
        tokens=[f"t{i}" for i in range(n)],
        offsets=[(i, i + 1) for i in range(n)],
        word_ids=[None if s < 0 else i for i, s in enumerate(segments)],
        segments=segments,
        scores=scores,
        seconds=0.0,
    )


def entropy_of(*attributions: Attribution) -> list[float]:
    def no_model():
        raise AssertionError("attribution-entropy loaded the model")

    dataset = TextDataset(name="none", labels=("neg", "pos"), train=(), validation=(), test=())
    data = MetricInput(attributions=attributions, examples={}, dataset=dataset, load_classifier=no_model)
    return list(AttributionEntropy().compute(data))


def test_entropy_is_over_normalised_absolute_scores_of_removable_tokens_only():
    # [CLS]=9 and [SEP]=5 are special and ignored: p = [1, 1, 2] / 4 = [.25, .25, .5].
    p = [0.25, 0.25, 0.5]
    expected = -sum(q * math.log(q) for q in p)
    assert expected == pytest.approx(1.5 * math.log(2))
    assert entropy_of(attribution([9, 1, -1, 2, 5], [-1, 0, 0, 0, -1])) == [pytest.approx(expected)]


def test_entropy_of_uniform_scores_is_log_n():
    assert entropy_of(attribution([0, -3, 3, 3, -3, 0], [-1, 0, 0, 1, 1, -1])) == [pytest.approx(math.log(4))]


def test_entropy_of_one_token_holding_all_the_score_is_zero_and_zero_scores_add_nothing():
    one_hot, with_zero = entropy_of(
        attribution([0, 0, 7, 0, 0], [-1, 0, 0, 0, -1]), attribution([0, 0, 2, 2, 0], [-1, 0, 0, 0, -1])
    )
    assert one_hot == 0.0
    assert with_zero == pytest.approx(math.log(2))


def test_entropy_of_all_zero_scores_is_nan():
    [value] = entropy_of(attribution([4, 0, 0, 0, 4], [-1, 0, 0, 0, -1]))
    assert math.isnan(value)


def test_entropy_returns_one_value_per_attribution_in_order():
    values = entropy_of(attribution([0, 1, 1, 0], [-1, 0, 0, -1]), attribution([0, 1, 0], [-1, 0, -1]))
    assert values == [pytest.approx(math.log(2)), 0.0]


def test_entropy_declares_its_family_direction_and_range():
    assert AttributionEntropy.family == "complexity"
    assert AttributionEntropy.direction == "lower"
    assert AttributionEntropy.range == (0.0, float("inf"))


DISCOVER = """
import json, warnings
warnings.simplefilter("ignore")  # built-ins still being written may fail to import
from harness.registry import Registry
rows = [info.as_dict() for info in Registry.discover().all()]
import bench_plugin_example
print(json.dumps({"rows": rows, "module": bench_plugin_example.__file__}))
"""


def test_installed_example_package_is_discovered_through_the_entry_point_group(example_plugin_target: Path):
    env = {**os.environ, "PYTHONPATH": str(example_plugin_target)}
    result = subprocess.run(
        [sys.executable, "-c", DISCOVER],
        capture_output=True,
        text=True,
        env=env,
        cwd=example_plugin_target,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["module"]).resolve().is_relative_to(example_plugin_target.resolve())
    package = "bench-plugin-example"
    rows = {(row["kind"], row["name"]): row for row in found["rows"] if row["package"] == package}
    assert rows == {
        ("explainer", "token-length"): {
            "kind": "explainer",
            "name": "token-length",
            "package": package,
            "version": "0.1.0",
            "plugin_version": "1",
            "api_version": "1.0",
            "description": "Token-length heuristic: scores each token by the number of characters it covers.",
        },
        ("metric", "attribution-entropy"): {
            "kind": "metric",
            "name": "attribution-entropy",
            "package": package,
            "version": "0.1.0",
            "plugin_version": "1",
            "api_version": "1.0",
            "description": "Attribution entropy (Bhatt et al. 2020 complexity): lower means fewer tokens "
            "carry the score.",
        },
    }
