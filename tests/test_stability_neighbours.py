"""iou-stability as L2E runs it (§4.5): each explained document's neighbours come from the whole split the
sample is drawn from, and are explained too, cached like any explanation, while every other metric of
the cell is computed on the sample alone; the labels-form baseline matched to an explainer's labels."""

from __future__ import annotations

import pytest
from conftest import tiny_suite_text

from harness.errors import BenchError
from harness.grid import expand
from harness.plan import build_plan
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

IOU = """
  - name: iou-stability
    params: {similarity: lexical, k: 30}"""
COMPREHENSIVENESS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}"""


def run(write_suite, tmp_path, name: str, metrics: str, sample: int | None = 6, cache: str = "cache"):
    """Values per (explainer, metric, example) of the tiny suite (18 test documents) with ``sample``
    explained (None: all of them)."""
    text = tiny_suite_text(metrics=metrics)
    if sample != 6:
        text = text.replace("    sample: 6\n", "" if sample is None else f"    sample: {sample}\n")
    loaded = load_suite(write_suite(text, f"{name}.yaml"), get_registry())
    options = RunOptions(results_dir=tmp_path / name, cache_dir=tmp_path / cache, progress=False)
    result = Runner(loaded, options).run()
    assert not result.failed
    records = Store(tmp_path / name).records(result.run_id)
    return {(r["explainer"], r["metric"], r["example_id"]): r["value"] for r in records}


def test_neighbours_come_from_the_whole_split_not_from_the_sample(write_suite, tmp_path):
    # Explaining the first 6 test documents, each one's 3 nearest neighbours are searched among all 18
    # test documents: its value is the one it has when all 18 are explained. (Searched among the 6,
    # they are other, less similar documents.)
    sample = run(write_suite, tmp_path, "sample", IOU, sample=6)
    everything = run(write_suite, tmp_path, "all", IOU, sample=None)
    assert len(sample) == 2 * 6 and len(everything) == 2 * 18
    assert sample == pytest.approx({key: everything[key] for key in sample})


def test_neighbours_are_explained_once_and_read_back_from_the_cache(write_suite, tmp_path):
    run(write_suite, tmp_path, "first", IOU)
    entries = sorted(p.name for p in (tmp_path / "cache" / "attributions").iterdir())
    assert len(entries) == 2 * 2  # per explainer: the sample, and the neighbours beside it
    second = run(write_suite, tmp_path, "second", IOU)
    assert sorted(p.name for p in (tmp_path / "cache" / "attributions").iterdir()) == entries
    assert second == pytest.approx(run(write_suite, tmp_path, "cold", IOU, cache="other"))


def test_other_metrics_of_the_cell_are_computed_on_the_sample_alone(write_suite, tmp_path):
    alone = run(write_suite, tmp_path, "alone", COMPREHENSIVENESS)
    beside = run(write_suite, tmp_path, "beside", COMPREHENSIVENESS + IOU)
    assert {key: value for key, value in beside.items() if key[1] == "comprehensiveness"} == alone
    assert len({key[2] for key in beside}) == 6  # the store holds the sample's examples only


def is_extra(task) -> bool:
    """An explain task of extra examples (``harness.plan.is_extra``, written out so that this file runs on
    the code before them)."""
    return task.stage == "explain" and bool((task.selection or {}).get("extra"))


def plan_of(write_suite, metrics: str):
    loaded = load_suite(write_suite(tiny_suite_text(metrics=metrics)), get_registry())
    return build_plan(loaded, expand(loaded))


def test_only_the_metric_declaring_neighbours_reads_the_explanation_of_the_extra_examples(write_suite):
    plan = plan_of(write_suite, COMPREHENSIVENESS + IOU + IOU.replace("lexical", "semantic"))
    extra = [task for task in plan.stage("explain") if is_extra(task)]
    assert len(extra) == 2  # one per explainer, for both similarities' neighbours
    assert extra[0].selection["extra"] == [
        {"neighbours": 3, "similarity": "lexical"},
        {"neighbours": 3, "similarity": "semantic"},
    ]
    for task in plan.stage("score"):
        reads_extra = any(is_extra(plan.task(needed)) for needed in task.inputs)
        assert reads_extra == ("iou-stability" in task.label)
        assert len(plan.explanations(task)) == 1


def test_pool_sample_keeps_the_old_search_among_the_explained_sample(write_suite):
    plan = plan_of(write_suite, IOU.replace("k: 30", "k: 30, pool: sample"))
    assert not [task for task in plan.stage("explain") if is_extra(task)]


def test_match_reads_the_matched_explainer_and_its_neighbours_and_keeps_its_own_cell(write_suite):
    plan = plan_of(write_suite, IOU.replace("k: 30", "form: labels, match: saliency"))
    scores = plan.stage("score")
    assert len(scores) == 2  # random matched to saliency, and saliency itself
    by_explainer = {("random" if "random" in task.label else "saliency"): task for task in scores}
    random_reads = by_explainer["random"].inputs
    assert len(plan.explanations(by_explainer["random"])) == 2  # random's sample and saliency's
    assert len(plan.extras(by_explainer["random"])) == 2  # and both explainers' neighbours
    assert len(plan.explanations(by_explainer["saliency"])) == 1
    assert len(plan.extras(by_explainer["saliency"])) == 1
    assert len(random_reads) == 4


def test_match_naming_no_explainer_of_the_suite_is_an_error(write_suite):
    with pytest.raises(BenchError, match="match 'lime' is not the label of an explainer"):
        plan_of(write_suite, IOU.replace("k: 30", "form: labels, match: lime"))


def test_a_random_cell_matched_to_saliency_has_saliencys_label_counts(write_suite, tmp_path):
    # the matched random cell is a permutation of saliency's labels: its value differs from random's
    # own h labels, and saliency's own matched cell is its unmatched value
    metrics = IOU.replace("k: 30", "form: labels") + IOU.replace("k: 30", "form: labels, match: saliency")
    text = tiny_suite_text(metrics=metrics)
    loaded = load_suite(write_suite(text), get_registry())
    result = Runner(
        loaded, RunOptions(results_dir=tmp_path / "r", cache_dir=tmp_path / "c", progress=False)
    ).run()
    assert not result.failed
    values: dict[tuple, list[float]] = {}
    for r in Store(tmp_path / "r").records(result.run_id):
        values.setdefault((r["explainer"], r["metric_params"].get("match") is not None), []).append(
            r["value"]
        )
    assert values[("saliency", True)] == pytest.approx(values[("saliency", False)])
    assert values[("random", True)] != pytest.approx(values[("random", False)])
