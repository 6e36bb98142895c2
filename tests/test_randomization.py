"""Randomization tests (Zafar et al. 2021): Jaccard@K%, model variants in the grid, expected orders."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DATA, metric_input, values_of
from statsmodels.stats.multitest import multipletests

from harness import Attribution, MetricInput, PluginError, TextDataset, load_minilm_tokenizer, top_count
from harness.errors import BenchError
from harness.expectations import check_expectations
from harness.grid import expand
from harness.registry import get_registry
from harness.report import Report, render
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import Expectation, load_suite
from plugins.metrics.randomization import Jaccard, JaccardParams

# -- Jaccard@K% against the paper's App. D examples -------------------------------------------------


def minilm_attribution(
    text: str, ranked: list[str], predicted: int = 1, example_id: str = "x"
) -> Attribution:
    """An attribution over the MiniLM tokens of ``text`` whose ranking starts with the tokens
    ``ranked`` (first occurrence of each), in that order; every other token scores 0."""
    encoding = load_minilm_tokenizer()(text, return_offsets_mapping=True)
    tokens = load_minilm_tokenizer().convert_ids_to_tokens(encoding["input_ids"])
    n = len(tokens)
    scores = [0.0] * n
    for rank, token in enumerate(ranked):
        scores[tokens.index(token)] = float(len(ranked) - rank)
    return Attribution(
        example_id=example_id,
        target=predicted,
        predicted=predicted,
        probability=0.9,
        input_ids=encoding["input_ids"],
        token_type_ids=None,
        tokens=tokens,
        offsets=[tuple(span) for span in encoding["offset_mapping"]],
        word_ids=encoding.word_ids(),
        segments=[-1] + [0] * (n - 2) + [-1],
        scores=scores,
        seconds=0.0,
    )


def jaccard_of(first: list[Attribution], second: list[Attribution], **params) -> np.ndarray:
    dataset = TextDataset("d", ("negative", "positive"), (), (), ())

    def unused():
        raise AssertionError("jaccard must not load the model")

    data = MetricInput(first, {}, dataset, load_classifier=unused)
    data.reference = MetricInput(second, {}, dataset, load_classifier=unused)
    return values_of(Jaccard(JaccardParams(**params)), data)


EXAMPLE_1 = (
    "at heart the movie is a deftly wrought suspense yarn whose richer shadings work as coloring "
    "rather than substance"
)
EXAMPLE_2 = "an infectious cultural fable with a tasty balance of family drama and frenetic comedy"


def test_jaccard_reproduces_the_papers_appendix_d_example_1():
    # 22 tokens, top 25 % = ⌈5.5⌉ = 6 each; the sets share {at, yarn}: 2 of 10 distinct tokens.
    init1 = minilm_attribution(EXAMPLE_1, ["substance", "rather", "at", "yarn", "coloring", "movie"])
    init2 = minilm_attribution(EXAMPLE_1, ["heart", "##tly", "suspense", "at", "yarn", "def"])
    assert jaccard_of([init2], [init1], k=25) == pytest.approx([0.2])


def test_jaccard_reproduces_the_papers_appendix_d_example_2_same_set_different_order():
    init1 = minilm_attribution(EXAMPLE_2, ["fable", "infectious", "cultural", "balance", "an"])
    init2 = minilm_attribution(EXAMPLE_2, ["cultural", "balance", "infectious", "fable", "an"])
    assert jaccard_of([init2], [init1], k=25) == pytest.approx([1.0])


def test_top_k_percent_is_rounded_up_as_in_the_papers_examples():
    # App. D lists 5 tokens for the 17-token example 2 and 6 for the 22-token example 1.
    assert top_count(25, 17, rounding="up") == 5
    assert top_count(25, 22, rounding="up") == 6
    assert top_count(25, 31, rounding="up") == 8
    assert top_count(10, 20, rounding="up") == 2  # exact products are not pushed up
    assert top_count(100, 7, rounding="up") == 7


def test_jaccard_at_10_percent_counts_by_hand():
    # 22 tokens, top 10 % = ⌈2.2⌉ = 3: {substance, rather, at} vs {at, rather, heart}: 2 / 4.
    init1 = minilm_attribution(EXAMPLE_1, ["substance", "rather", "at"])
    init2 = minilm_attribution(EXAMPLE_1, ["at", "rather", "heart"])
    assert jaccard_of([init2], [init1], k=10) == pytest.approx([0.5])


def test_jaccard_ties_are_broken_by_text_order():
    # All scores equal: both rankings are text order, so the sets coincide.
    flat = minilm_attribution(EXAMPLE_2, [])
    assert jaccard_of([flat], [flat], k=25) == pytest.approx([1.0])


def test_jaccard_is_undefined_where_the_variants_predict_different_classes():
    init1 = minilm_attribution(EXAMPLE_2, ["fable"], predicted=1)
    untrained = minilm_attribution(EXAMPLE_2, ["fable"], predicted=0)
    assert math.isnan(jaccard_of([untrained], [init1])[0])


def test_jaccard_pairs_examples_by_id_not_by_position():
    a1 = minilm_attribution(EXAMPLE_1, ["at"], example_id="a")
    b1 = minilm_attribution(EXAMPLE_2, ["an"], example_id="b")
    a2 = minilm_attribution(EXAMPLE_1, ["at"], example_id="a")
    b2 = minilm_attribution(EXAMPLE_2, ["an"], example_id="b")
    assert jaccard_of([a2, b2], [b1, a1], k=5) == pytest.approx([1.0, 1.0])


def test_jaccard_without_a_reference_is_a_plugin_error(classifier):
    with pytest.raises(PluginError, match="reference"):
        Jaccard().compute(metric_input(classifier, []))


# -- expected orders ------------------------------------------------------------------------------------


def rows(variant: str, explainer: str, values: list[float], metric: str = "jaccard") -> list[dict]:
    return [
        {
            "dataset": "d",
            "model": "m",
            "variant": variant,
            "explainer": explainer,
            "explainer_label": explainer,
            "metric": metric,
            "metric_label": metric + "(k=25)",
            "seed": 0,
            "example_id": f"e{i}",
            "value": value,
            "unit": f"e{i}",
            "dataset_id": "d",
            "model_id": "m",
            "explainer_id": explainer,
            "metric_id": metric + "(k=25)",
        }
        for i, value in enumerate(values)
    ]


def test_expected_order_is_a_one_sided_wilcoxon_with_holm_over_all_verdicts():
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    above = [0.9, 0.8, 0.85, 0.7, 0.95, 0.6, 0.75, 0.9]
    below = [0.5, 0.6, 0.4, 0.72, 0.3, 0.6, 0.2, 0.45]  # one tie (0.6 vs 0.6) and one reversal
    flat = [0.5] * 8
    records = (
        rows("init:2", "saliency", above)
        + rows("untrained", "saliency", below)
        + rows("init:2", "random", flat)
        + rows("untrained", "random", flat)
    )
    expectation = Expectation(metric="jaccard", above={"variant": "init:2"}, below={"variant": "untrained"})
    verdicts = {v.explainer: v for v in check_expectations([expectation], records)}
    assert set(verdicts) == {"saliency", "random"}

    differences = np.array(above) - np.array(below)
    expected_p = wilcoxon(differences[differences != 0], alternative="greater").pvalue
    saliency = verdicts["saliency"]
    assert saliency.comparison.n_pairs == 8  # pairs; the test itself drops the zero difference
    assert saliency.comparison.p_value == pytest.approx(expected_p)
    # random: every difference is zero → p = 1; Holm over the two comparisons.
    assert verdicts["random"].comparison.p_value == 1.0
    _, adjusted, _, _ = multipletests([expected_p, 1.0], method="holm")
    assert saliency.comparison.p_adjusted == pytest.approx(adjusted[0])
    assert saliency.outcome == "holds" and verdicts["random"].outcome == "not shown"


def test_explainer_expectations_compare_every_other_explainer_with_the_named_one():
    records = (
        rows("init:1", "random", [0.9, 0.8, 0.7, 0.95, 0.85, 0.9], metric="switching-point")
        + rows("init:1", "saliency", [0.1, 0.2, 0.3, 0.1, 0.2, 0.1], metric="switching-point")
        + rows("init:1", "lime", [0.95, 0.9, 0.8, 0.99, 0.9, 0.95], metric="switching-point")
    )
    # Switching point: lower is better, so a faithful explainer is *below* random.
    expectation = Expectation(
        metric="switching-point", above={"explainer": "random"}, below={"explainer": "*"}
    )
    verdicts = {v.below: v for v in check_expectations([expectation], records)}
    assert set(verdicts) == {"saliency", "lime"}
    assert verdicts["saliency"].above == "random" and verdicts["saliency"].variant == "init:1"
    assert verdicts["saliency"].comparison.p_value == pytest.approx(1 / 64)  # all 6 differences positive
    assert verdicts["lime"].outcome == "not shown (reversed on average)"


def test_an_expectation_names_one_axis_on_both_sides():
    with pytest.raises(ValueError, match="same axis"):
        Expectation(metric="jaccard", above={"variant": "init:2"}, below={"explainer": "random"})
    with pytest.raises(ValueError, match="at most one"):
        Expectation(metric="jaccard", above={"explainer": "*"}, below={"explainer": "*"})
    assert Expectation(
        metric="j", above={"variant": {"init": 2}}, below={"variant": "untrained"}
    ).above_value == ("init:2")


# -- the grid: variants, references, suite validation ----------------------------------------------------


def randomization_suite(tmp_path, *, variants="[init:1, init:2, untrained]", metrics=None, expectations=None):
    metrics = (
        metrics
        or """
  - name: jaccard
    params: {k: 25}
  - name: switching-point"""
    )
    expectations = (
        expectations
        or """
expectations:
  - metric: jaccard
    above: {variant: "init:2"}
    below: {variant: untrained}
  - metric: switching-point
    above: {explainer: random}
    below: {explainer: "*"}"""
    )
    path = tmp_path / "randomization.yaml"
    path.write_text(f"""name: tiny-randomization
version: 1
device: cpu
batch_size: 8
datasets:
  - name: jsonl
    label: tiny
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    sample: 10
models:
  - name: minilm-head
    params: {{hidden_size: 16, max_epochs: 3}}
    variants: {variants}
explainers:
  - name: random
  - name: saliency
metrics:{metrics}
{expectations}
""")
    return path


def test_a_metric_comparing_variants_gets_no_cell_on_its_own_reference(tmp_path):
    loaded = load_suite(randomization_suite(tmp_path), get_registry())
    cells = expand(loaded)
    jaccard = [cell for cell in cells if cell.metric.name == "jaccard"]
    assert sorted({cell.variant for cell in jaccard}) == ["init:2", "untrained"]
    assert all(cell.reference.variant == "default" for cell in jaccard)  # init:1 is the default model
    assert len([cell for cell in cells if cell.metric.name == "switching-point"]) == 3 * 2


def test_default_and_init_1_are_one_model_with_no_self_comparison_cell(tmp_path):
    suite = randomization_suite(tmp_path, variants="[default, init:2]", expectations="expectations: []")
    loaded = load_suite(suite, get_registry())
    [model] = loaded.entries["models"]
    assert model.variants == ("default", "init:2")
    jaccard = [cell for cell in expand(loaded) if cell.metric.name == "jaccard"]  # reference: init:1
    assert {cell.variant for cell in jaccard} == {"init:2"}  # no cell compares default with init:1
    with pytest.raises(BenchError, match="'default' and 'init:1' are the same model"):
        load_suite(
            randomization_suite(tmp_path, variants="[default, init:1]", expectations="expectations: []"),
            get_registry(),
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": "[init:1, shuffled]"}, "variants[1]: String should match pattern"),
        ({"variants": "[init:2, init:2]"}, "variant 'init:2' is listed twice"),
        (
            {"metrics": "\n  - name: jaccard\n    params: {reference: init:0}"},
            "metrics[0].params.reference: String should match pattern",
        ),
        (
            {
                "expectations": "expectations:\n  - metric: jacard\n    above: {variant: init:2}\n    below: {variant: untrained}"
            },
            "the suite has no metric 'jacard'; did you mean 'jaccard'?",
        ),
        (
            {
                "expectations": "expectations:\n  - metric: jaccard\n    above: {variant: init:3}\n    below: {variant: untrained}"
            },
            "expectations[0].above.variant: the suite has no variant 'init:3'",
        ),
    ],
)
def test_bad_variants_references_and_expectations_are_one_line_errors(tmp_path, change, message):
    with pytest.raises(BenchError) as error:
        load_suite(randomization_suite(tmp_path, **change), get_registry())
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_model_without_variants_rejects_them_at_load_time(tmp_path):
    path = randomization_suite(tmp_path)
    path.write_text(
        path.read_text().replace(
            "name: minilm-head\n    params: {hidden_size: 16, max_epochs: 3}",
            "name: bow\n    params: {dim: 8}",
        )
    )
    with pytest.raises(
        BenchError,
        match=r"models\[0\].variants\[1\]: model 'bow' has no variant 'init:2' \(it builds: default\)",
    ):
        load_suite(path, get_registry())


@pytest.fixture(scope="module")
def randomization_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("randomization")
    loaded = load_suite(randomization_suite(tmp_path), get_registry())
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(loaded, options).run()
    return Store(tmp_path / "results"), result


def test_the_randomization_grid_runs_and_jaccard_uses_the_reference_variants_attributions(randomization_run):
    store, result = randomization_run
    assert not result.failed
    assert result.cells == 2 * 2 + 3 * 2  # jaccard on init:2 and untrained, switching-point on all three
    fields = set(Attribution.__dataclass_fields__)
    stored = {
        (row["variant"], row["explainer"], row["example_id"]): Attribution.from_dict(
            {key: value for key, value in row.items() if key in fields}
        )
        for row in store.attributions(result.run_id)
    }
    records = [r for r in store.records(result.run_id) if r["metric"] == "jaccard"]
    assert len(records) == 2 * 2 * 10
    for record in records:
        mine = stored[(record["variant"], record["explainer"], record["example_id"])]
        reference = stored[("default", record["explainer"], record["example_id"])]
        if mine.predicted != reference.predicted:
            assert record["value"] is None
            continue
        expected = jaccard_of([mine], [reference], k=25)[0]
        assert record["value"] == pytest.approx(expected)


def test_the_report_shows_shared_predictions_and_expected_order_verdicts(randomization_run):
    store, result = randomization_run
    report = Report.build(store, result.run_id)
    shared = {model["variant"]: model["shared_predictions"] for model in report.models}
    assert shared["default"] is None
    assert shared["init:2"]["with"] == "default" and 0 <= shared["untrained"]["fraction"] <= 1
    data = json.loads(render(report, "json"))
    verdicts = data["expectations"]["verdicts"]
    jaccard = [v for v in verdicts if v["expectation"] == "jaccard: variant init:2 above untrained"]
    assert sorted(v["explainer"] for v in jaccard) == ["random", "saliency"]
    switching = [v for v in verdicts if v["expectation"] == "switching-point: explainer random above *"]
    assert sorted(v["variant"] for v in switching) == ["default", "init:2", "untrained"]
    assert all(v["above"] == "random" and v["below"] == "saliency" for v in switching)
    tested = [v["comparison"] for v in verdicts if v["comparison"]["p_value"] is not None]
    assert len(tested) == len(verdicts) == 2 + 3  # jaccard: 2 explainers; switching point: 3 variants
    holm_adjusted = multipletests([c["p_value"] for c in tested], method="holm")[1]
    assert [c["p_adjusted"] for c in tested] == pytest.approx(list(holm_adjusted))
    markdown = render(report, "md")
    assert "## expected orders" in markdown and "one-sided" in markdown
    assert "shares" in markdown and "of test predictions with default" in markdown


def test_a_run_keeps_its_expectations_when_its_suite_no_longer_reads(randomization_run, tmp_path):
    """A run stores its expectations as it read them: a suite text that today's schema refuses (a key
    renamed since, say) still gets its verdicts. The report used to parse the text and judge nothing."""
    store, result = randomization_run
    shutil.copytree(store.results_dir, tmp_path / "results")
    copy = Store(tmp_path / "results")
    with closing(sqlite3.connect(copy.path)) as db, db:
        db.execute("UPDATE runs SET suite_text = ? WHERE run_id = ?", ("name: [unclosed", result.run_id))
    verdicts = Report.build(copy, result.run_id).verdicts
    assert len(verdicts) == len(Report.build(store, result.run_id).verdicts) == 2 + 3


def test_a_run_stored_before_runs_kept_expectations_reads_its_suite_or_warns(tmp_path, caplog):
    from harness.report import stored_expectations

    old = {"run_id": "r", "options": {}, "expectations": None}
    text = randomization_suite(tmp_path).read_text()
    assert [e.metric for e in stored_expectations({**old, "suite_text": text})] == [
        "jaccard",
        "switching-point",
    ]
    assert stored_expectations({**old, "suite_text": "name: old\nversion: 1\nunknown_key: 1\n"}) == []
    assert stored_expectations({**old, "suite_text": "name: [unclosed"}) == []
    assert "run r: its suite" in caplog.text and "no expectations judged" in caplog.text


# -- the shipped suite runs Zafar et al.'s protocol --------------------------------------------------

SUITE = Path(__file__).resolve().parents[1] / "suites" / "randomization.yaml"
# Jaccard@25 % (in %) of Tables 3 (Init#1 vs Init#2) and 4 (Init#1 vs Untrained), encoders BT, RB, dBT, dRB.
TABLE_3 = {
    "fpb": {"VN": [65, 52, 77, 67], "SG": [53, 66, 70, 62], "IG": [46, 35, 68, 51], "SHP": [57, 55, 64, 55]},
    "sst2": {"VN": [63, 53, 73, 63], "SG": [68, 63, 70, 66], "IG": [53, 37, 71, 50], "SHP": [63, 65, 66, 62]},
}
TABLE_4 = {
    "fpb": {"VN": [65, 60, 75, 71], "SG": [47, 70, 67, 61], "IG": [41, 40, 55, 49], "SHP": [25, 30, 19, 29]},
    "sst2": {"VN": [69, 63, 73, 69], "SG": [74, 72, 70, 75], "IG": [49, 45, 60, 49], "SHP": [23, 22, 14, 33]},
}
OURS = {"VN": "saliency", "SG": "smoothgrad", "IG": "integrated-gradients", "SHP": "kernel-shap"}


def shipped(profile: str | None = None):
    loaded = load_suite(SUITE, get_registry(), profile=profile)
    return loaded, {entry.label: entry for entry in loaded.entries["explainers"]}


def test_the_shipped_suite_runs_the_explainers_as_zafar_et_al():
    # §2.2 and App. B.2: L2-norm reduction for every gradient method, SmoothGrad 10 copies, IG 50 steps
    # from the unk embedding, KernelSHAP dropping tokens to unk; RND.
    _, explainers = shipped()
    assert explainers["saliency"].params_dict["reduction"] == "l2"
    assert {k: explainers["smoothgrad"].params_dict[k] for k in ("reduction", "samples")} == {
        "reduction": "l2",
        "samples": 10,
    }
    ig = explainers["integrated-gradients"].params_dict
    assert (ig["reduction"], ig["baseline"], ig["n_steps"]) == ("l2", "unk", 50)
    assert explainers["kernel-shap"].params_dict["masking"] == "unk"
    assert explainers["random"].name == "random"
    assert explainers["integrated-gradients-sum"].params_dict["reduction"] == "sum"  # Table 8's reduction


def test_the_shipped_suite_uses_the_papers_k_data_and_sizes():
    loaded, _ = shipped()
    ks = sorted(e.params_dict["k"] for e in loaded.entries["metrics"] if e.name == "jaccard")
    assert ks == [10.0, 25.0]
    datasets = {entry.label: entry for entry in loaded.entries["datasets"]}
    sst2 = datasets["sst2"].params_dict
    assert (sst2["train"], sst2["validation"], sst2["test"]) == (
        "sentences_train.jsonl",
        "sentences_dev.jsonl",
        "sentences_test.jsonl",
    )
    fpb = datasets["fpb"].params_dict
    assert (fpb["test_fraction"], fpb["validation_fraction"]) == (0.2, 0.08)  # 80/20, 10 % of train
    full, explainers = shipped("full")
    samples = {entry.label: entry.spec.sample for entry in full.entries["datasets"]}
    assert samples == {"sst2": 1000, "fpb": None}  # 1,000 test sentences; FPB's test split has 453
    assert explainers["kernel-shap"].params_dict["samples"] == 2100  # 2L + 2^11 at L ≈ 25 tokens


@pytest.mark.parametrize("dataset", ["sst2", "fpb"])
@pytest.mark.parametrize("method", ["VN", "SG", "IG", "SHP"])
def test_the_shipped_suite_claims_zafar_et_al_s_margin_with_the_tables_means(dataset, method):
    loaded, _ = shipped()
    [claim] = [
        c
        for c in loaded.suite.claims
        if c.metric == "jaccard"
        and c.params == {"k": 25}
        and c.where == {"dataset": dataset, "explainer": OURS[method]}
    ]
    assert (claim.above, claim.below) == ({"variant": "init:2"}, {"variant": "untrained"})
    assert claim.reproduced_if == ("beyond" if method == "SHP" else "within")
    assert claim.margin == pytest.approx(0.10)  # 10 points of the paper's 0-100 scale; jaccard is [0, 1]
    assert Jaccard.range == (0.0, 1.0)
    assert claim.paper_value["above"] == pytest.approx(np.mean(TABLE_3[dataset][method]) / 100)
    assert claim.paper_value["below"] == pytest.approx(np.mean(TABLE_4[dataset][method]) / 100)


@pytest.mark.parametrize(
    ("percent", "n_units", "half_up", "up"),
    [
        (25, 17, 4, 5),
        (25, 22, 6, 6),
        (10, 20, 2, 2),
        (1, 30, 1, 1),
        (50, 5, 3, 3),
        (0, 9, 0, 0),
        (30, 0, 0, 0),
    ],
)
def test_one_top_count_with_its_rounding_rule_as_a_parameter(percent, n_units, half_up, up):
    """k·n/100: 17·25 % = 4.25 → 4 half up, 5 up (App. D); 30·1 % = 0.3 → 1 (at least one) either way;
    5·50 % = 2.5 → 3; nothing in the top 0 % or of no units."""
    assert top_count(percent, n_units) == half_up
    assert top_count(percent, n_units, rounding="up") == up
