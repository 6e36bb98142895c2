"""Requirements and capabilities: a cell applies when everything its plugins require is provided by its
dataset or its model; the grid leaves out the others, and ``bench validate`` counts and names them."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_DATA, make_distribution, tiny_suite_text
from test_cli_errors import bench_main

from harness.grid import expand, left_out
from harness.registry import PluginLoadWarning, Registry, get_registry
from harness.suite import load_suite
from plugins.datasets.hf import HuggingFaceDataset

TINY_BOW = "\n  - name: bow\n    params: {dim: 8, max_epochs: 20}"
BOW = "\n  - name: bow\n    label: bow\n    params: {dim: 8, max_epochs: 20}"


def suite(
    explainers: str, metrics: str = "\n  - name: runtime", models: str = BOW, datasets: str = ""
) -> str:
    """The tiny suite (dataset 'tiny') with these entries; ``datasets`` are added after 'tiny'."""
    text = tiny_suite_text(explainers=explainers, metrics=metrics).replace(TINY_BOW, models)
    return text.replace("    sample: 6", "    sample: 6" + datasets)


ATTENTION_ON_BOW = (
    "explainer 'attention' requires 'attentions', which neither dataset 'tiny' nor model 'bow' provides"
)

# A third-party package: a model with learned class vectors, an explainer that reads them, and a metric
# that needs text pairs. None of them is ever run here: the grid decides from the declarations alone.
THIRD_PARTY = '''
import torch
from harness import Explainer, Metric, Model, hookimpl
BENCH_API_VERSION = "1.0"

class VectorModel(Model):
    """A model whose classifier has one learned vector per class."""
    name = "vector-model"
    provides = frozenset({"class-vectors"})
    def build(self, dataset, *, seed, device, variant="default"):
        raise NotImplementedError

class VectorExplainer(Explainer):
    """Scores tokens against the predicted class's vector."""
    name = "vector-explainer"
    requires = {"class-vectors"}
    def explain(self, classifier, encoding, targets):
        return torch.zeros(encoding.input_ids.shape)

class PairMetric(Metric):
    """Share of the attribution on the second text of each pair."""
    name = "pair-share"
    family = "plausibility"
    direction = "higher"
    range = (0.0, 1.0)
    requires = frozenset({"pairs"})
    def compute(self, data):
        return [0.0 for _ in data.attributions]

@hookimpl
def bench_models():
    return [VectorModel]

@hookimpl
def bench_explainers():
    return [VectorExplainer]

@hookimpl
def bench_metrics():
    return [PairMetric]
'''


@pytest.fixture
def third_party(tmp_path, monkeypatch) -> Registry:
    """The registry with the third-party package installed (discovered through its entry point)."""
    site = make_distribution(
        tmp_path / "site", "vector-plugins", {"vector_mod": THIRD_PARTY}, {"vector": "vector_mod"}
    )
    monkeypatch.syspath_prepend(str(site))
    return Registry.discover()


def pairs_file(folder) -> str:
    folder.mkdir()
    rows = [{"text_a": f"a man plays {i}", "text_b": f"someone plays {i}", "label": i % 2} for i in range(8)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(folder)


def described(cells) -> set[tuple[str, str, str, str]]:
    return {(c.dataset.label, c.model.label, c.explainer.label, c.metric.label) for c in cells}


def test_attention_is_left_out_on_bow_and_kept_on_minilm_head(write_suite):
    text = suite("\n  - name: attention\n  - name: random", models=BOW + "\n  - name: minilm-head")
    loaded = load_suite(write_suite(text), get_registry())
    assert described(expand(loaded)) == {
        ("tiny", "bow", "random", "runtime"),
        ("tiny", "minilm-head", "attention", "runtime"),
        ("tiny", "minilm-head", "random", "runtime"),
    }
    assert [(cell.model.label, cell.explainer.label, reason) for cell, reason in left_out(loaded)] == [
        ("bow", "attention", ATTENTION_ON_BOW)
    ]


def test_a_student_requires_what_its_teacher_requires(write_suite):
    student = "\n  - name: l2e\n    label: student\n    params: {teacher: {name: attention}}"
    loaded = load_suite(write_suite(suite(student)), get_registry())
    assert expand(loaded) == []
    [(cell, reason)] = left_out(loaded)
    assert reason == (
        "explainer 'student' requires 'attentions', which neither dataset 'tiny' nor model 'bow' provides"
    )


def test_a_third_party_requirement_is_met_only_by_a_model_that_provides_it(write_suite, third_party):
    text = suite("\n  - name: vector-explainer\n  - name: random", models=BOW + "\n  - name: vector-model")
    loaded = load_suite(write_suite(text), third_party)
    assert described(expand(loaded)) == {
        ("tiny", "bow", "random", "runtime"),
        ("tiny", "vector-model", "vector-explainer", "runtime"),
        ("tiny", "vector-model", "random", "runtime"),
    }
    [(cell, reason)] = left_out(loaded)
    assert (cell.model.label, cell.explainer.label) == ("bow", "vector-explainer")
    assert reason == (
        "explainer 'vector-explainer' requires 'class-vectors', which neither dataset 'tiny' nor model 'bow' "
        "provides"
    )


def test_a_pair_metric_is_left_out_on_single_texts_and_kept_on_pairs(write_suite, third_party, tmp_path):
    pairs = f"\n  - name: jsonl\n    label: pairs\n    params: {{path: {pairs_file(tmp_path / 'nli')}}}"
    text = suite("\n  - name: random", "\n  - name: pair-share\n  - name: runtime", datasets=pairs)
    loaded = load_suite(write_suite(text), third_party)
    assert described(expand(loaded)) == {
        ("tiny", "bow", "random", "runtime"),
        ("pairs", "bow", "random", "pair-share"),
        ("pairs", "bow", "random", "runtime"),
    }
    assert [reason for _, reason in left_out(loaded)] == [
        "metric 'pair-share' requires 'pairs', which neither dataset 'tiny' nor model 'bow' provides"
    ]


def test_datasets_say_whether_they_hold_pairs(tmp_path):
    from plugins.datasets.jsonl import JsonlDataset

    assert JsonlDataset.provides_for(JsonlDataset.Params(path=pairs_file(tmp_path / "nli"))) == {"pairs"}
    assert JsonlDataset.provides_for(JsonlDataset.Params(path=str(TINY_DATA))) == frozenset()
    glue = HuggingFaceDataset.Params(path="nyu-mll/glue", config="mrpc", text_field="sentence1")
    assert HuggingFaceDataset.provides_for(glue) == frozenset()
    assert HuggingFaceDataset.provides_for(glue.model_copy(update={"text_pair_field": "sentence2"})) == {
        "pairs"
    }


def test_validate_counts_and_names_the_left_out_cells(write_suite, monkeypatch, capsys):
    metrics = "\n  - name: comprehensiveness\n  - name: sufficiency\n  - name: runtime"
    path = write_suite(
        suite("\n  - name: attention\n  - name: random", metrics, BOW + "\n  - name: minilm-head")
    )
    code, out, err = bench_main(monkeypatch, capsys, "validate", path)
    assert code == 0, err
    summary, *reasons = out.splitlines()
    assert summary == (
        f"{path}: valid — 9 cells (1 datasets × 2 model variants × 2 explainer configs × 3 metric configs × "
        "1 seeds; 3 left out: requirements not provided, listed below)"
    )
    assert reasons == [f"  3 left out: {ATTENTION_ON_BOW}"]


def test_a_requirement_that_is_not_a_set_of_names_is_reported(tmp_path, monkeypatch):
    source = THIRD_PARTY.replace('requires = {"class-vectors"}', 'requires = "class-vectors"')
    make_distribution(tmp_path, "stringly-plugins", {"stringly_mod": source}, {"stringly": "stringly_mod"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(
        PluginLoadWarning, match="'vector-explainer'.requires must be a set of capability names"
    ):
        registry = Registry.discover()
    assert "vector-explainer" not in registry.names("explainer")


def test_plausibility_metrics_are_left_out_where_the_test_examples_have_no_rationales(write_suite, tmp_path):
    """MRPC beside e-SNLI in one suite: token-f1, iou-f1 and auprc get cells only on the dataset whose
    test rows carry rationales, and validate says why for the others."""
    folder = tmp_path / "nli"
    folder.mkdir()
    rows = [{"text_a": f"a man plays {i}", "text_b": f"someone plays {i}", "label": i % 2} for i in range(8)]
    highlighted = [{**row, "rationale_a": [[2, 5]], "rationale_b": []} for row in rows]
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in highlighted))
    datasets = (
        f"\n  - name: jsonl\n    label: highlighted\n    params: {{path: {folder}}}"
        f"\n  - name: jsonl\n    label: plain\n    params: {{path: {folder / 'train.jsonl'}}}"
    )
    metrics = "\n  - name: token-f1\n  - name: iou-f1\n  - name: auprc\n  - name: runtime"
    loaded = load_suite(write_suite(suite("\n  - name: random", metrics, datasets=datasets)), get_registry())
    assert {(c.dataset.label, c.metric.label) for c in expand(loaded)} == {
        ("highlighted", "token-f1"),
        ("highlighted", "iou-f1"),
        ("highlighted", "auprc"),
        ("highlighted", "runtime"),
        ("plain", "runtime"),
        ("tiny", "runtime"),
    }
    assert sorted(reason for _, reason in left_out(loaded)) == [
        f"metric '{name}' requires 'rationales', which neither dataset '{dataset}' nor model 'bow' provides"
        for name in ("auprc", "iou-f1", "token-f1")
        for dataset in ("plain", "tiny")
    ]


def test_a_jsonl_dataset_provides_rationales_from_the_file_its_test_split_comes_from(tmp_path):
    from plugins.datasets.jsonl import JsonlDataset

    folder = tmp_path / "data"
    (folder / "snli").mkdir(parents=True)
    (folder / "esnli").mkdir()
    plain = {"text_a": "a man sleeps", "text_b": "a person rests", "label": 0}
    (folder / "snli" / "train.jsonl").write_text(json.dumps(plain) + "\n")
    (folder / "esnli" / "dev.jsonl").write_text(json.dumps({**plain, "rationale_b": [[9, 14]]}) + "\n")
    params = JsonlDataset.Params
    assert JsonlDataset.provides_for(
        params(path=str(folder), train="snli/train.jsonl", test="esnli/dev.jsonl")
    ) == {"pairs", "rationales"}
    assert JsonlDataset.provides_for(params(path=str(folder / "snli"))) == {"pairs"}
    assert JsonlDataset.provides_for(params(path=str(folder / "esnli"))) == {"pairs", "rationales"}
