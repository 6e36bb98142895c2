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
from conftest import subprocess_pythonpath

from harness import Attribution, BenchError, Encoding, Example, MetricInput, Params, TextDataset
from harness.testing import kit_dataset

EXAMPLE_SRC = Path(__file__).resolve().parents[1] / "examples" / "plugin-example" / "src"
sys.path.insert(0, str(EXAMPLE_SRC))  # unit tests import the source tree; discovery uses an install

from bench_plugin_example import AttributionEntropy, CsvDataset, HashedLinear, TokenLength  # noqa: E402


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
    env = {**os.environ, "PYTHONPATH": subprocess_pythonpath(example_plugin_target)}
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
    assert set(rows) == {
        ("dataset", "csv"),
        ("model", "hashed-linear"),
        ("explainer", "token-length"),
        ("metric", "attribution-entropy"),
    }
    assert all(row["version"] == "0.1.0" and row["api_version"] == "1.0" for row in rows.values())
    assert rows[("explainer", "token-length")]["description"] == (
        "Token-length heuristic: scores each token by the number of characters it covers."
    )
    assert rows[("metric", "attribution-entropy")]["description"] == (
        "Attribution entropy (Bhatt et al. 2020 complexity): lower means fewer tokens carry the score."
    )


# -- the dataset and the model ------------------------------------------------------------------------

REVIEWS = EXAMPLE_SRC.parent / "data" / "reviews.csv"


def test_csv_numbers_class_names_in_sorted_order_and_splits_stratified():
    data = CsvDataset(CsvDataset.Params(path=str(REVIEWS), test_fraction=0.25)).load()
    assert data.labels == ("negative", "positive")
    # 72 rows: test ⌈0.25 · 72⌉ = 18; validation (0.1 of the whole) ⌈54 · 0.1 / 0.75⌉ = ⌈7.2⌉ = 8; train 46.
    assert (len(data.train), len(data.validation), len(data.test)) == (46, 8, 18)
    first = next(e for e in (*data.train, *data.validation, *data.test) if e.id == "ex000")
    assert (first.text, first.label) == ("the film was great .", 1)
    assert not data.is_pair


def test_csv_with_a_second_text_column_holds_pairs_and_provides_them(tmp_path):
    path = tmp_path / "pairs.csv"
    rows = [
        f"a{i},it rains,the ground is {'wet' if i % 2 else 'dry'},{'yes' if i % 2 else 'no'}"
        for i in range(10)
    ]
    path.write_text("id,premise,hypothesis,entailed\n" + "\n".join(rows) + "\n")
    params = CsvDataset.Params(
        path=str(path),
        text_column="premise",
        text_pair_column="hypothesis",
        label_column="entailed",
        id_column="id",
    )
    data = CsvDataset(params).load()
    assert data.is_pair and CsvDataset.provides_for(params) == {"pairs"}
    assert {e.text_pair for e in data.test} <= {"the ground is wet", "the ground is dry"}


def test_csv_missing_file_or_column_is_a_one_line_error(tmp_path):
    with pytest.raises(BenchError, match="no file at"):
        CsvDataset(CsvDataset.Params(path=str(tmp_path / "none.csv"))).load()
    with pytest.raises(BenchError, match=r"lacks the column\(s\) \['label'\]"):
        (tmp_path / "x.csv").write_text("text,stars\ngood,5\n")
        CsvDataset(CsvDataset.Params(path=str(tmp_path / "x.csv"))).load()


def test_hashed_linear_keeps_the_two_texts_of_a_pair_apart():
    classifier = HashedLinear().build(kit_dataset(), seed=0, device=torch.device("cpu"))
    encoding = classifier.encode([Example("p", "It rains.", 0, text_pair="Wet ground")])
    assert encoding.tokens == [["it", "rains", ".", "[SEP]", "wet", "ground"]]
    assert encoding.segments == [[0, 0, 0, -1, 1, 1]]
    assert encoding.word_ids == [[0, 1, 2, None, 3, 4]]
    assert encoding.offsets == [[(0, 2), (3, 8), (8, 9), (0, 0), (0, 3), (4, 10)]]


def test_hashed_linear_learns_the_deciding_word():
    classifier = HashedLinear().build(kit_dataset(), seed=0, device=torch.device("cpu"))
    test = kit_dataset().test
    predicted = classifier.log_probabilities(classifier.encode(test)).argmax(-1).tolist()
    assert predicted == [example.label for example in test]


# -- the package as its author ships it: installed, its own conformance tests, every plugin in a suite --


def test_the_installed_package_passes_its_own_conformance_tests(example_plugin_target: Path):
    tests = example_plugin_target.parent / "source" / "tests"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": subprocess_pythonpath(example_plugin_target)},
        cwd=tests,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


SUITE = """name: example-plugins
version: 1
seeds: [0]
device: cpu
batch_size: 8
datasets:
  - name: csv
    params: {{path: {path}, test_fraction: 0.25}}
    sample: 8
models:
  - name: hashed-linear
explainers:
  - name: token-length
  - name: saliency
    params: {{reduction: input_x_gradient}}
metrics:
  - name: attribution-entropy
  - name: comprehensiveness
    params: {{bins: [10, 50]}}
"""


def test_every_plugin_of_the_installed_package_runs_in_a_suite(example_plugin_target: Path, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(path=example_plugin_target.parent / "source" / "data" / "reviews.csv"))
    env = {
        **os.environ,
        "PYTHONPATH": subprocess_pythonpath(example_plugin_target),
        "BENCH_CACHE_DIR": str(tmp_path / "cache"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert "4 of 4 cells done" in run.stderr
    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", "latest", "--results", str(tmp_path / "results"),
         "--format", "json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    tables = json.loads(report.stdout)["tables"]
    explainers = {row["explainer"] for table in tables for row in table["rows"]}
    assert explainers == {"token-length", "saliency(reduction=input_x_gradient)"}
    metrics = {column["metric"] for table in tables for column in table["columns"]}
    assert {"attribution-entropy", "comprehensiveness(bins=[10,50])"} <= metrics
