"""Explanations with more than one score per token: word groups, group scores and named extras, stored
and exported with the attributions (``harness.Explanation``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import cached_value, make_distribution, subprocess_pythonpath, tiny_suite_text

from harness.attribution import Attribution
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

PAD_EXTRA = -1000.0  # what the explainer below writes at padding: never stored

GROUPING_EXPLAINER = f'''
import torch
from harness import Explainer, ExplainerParams, Explanation, hookimpl
BENCH_API_VERSION = "1.0"

class GroupingParams(ExplainerParams):
    wrong_groups: bool = False

class Grouping(Explainer):
    """Scores a token by its position and groups tokens by its parity (group 0 even, 1 odd; padding in
    none), with importance 0.25 and 0.75 (two NaN columns of padding); extras: twice the score, and the
    position ({PAD_EXTRA} at padding)."""
    name = "grouping"
    Params = GroupingParams
    def explain(self, classifier, encoding, targets):
        shape = encoding.input_ids.shape
        position = torch.arange(shape[1], dtype=torch.float32).expand(shape)
        padding = encoding.attention_mask == 0
        groups = (torch.arange(shape[1]) % 2).expand(shape).masked_fill(padding, -1)
        group_scores = torch.tensor([0.25, 0.75, float("nan"), float("nan")]).expand(shape[0], 4)
        if self.params.wrong_groups:
            groups = groups[:, :-1]
        extras = {{"double": 2 * position, "position": position.masked_fill(padding, {PAD_EXTRA})}}
        return Explanation(position, groups=groups, group_scores=group_scores, extras=extras)

@hookimpl
def bench_explainers():
    return [Grouping]
'''


@pytest.fixture
def grouping_plugin(tmp_path, monkeypatch, fresh_registry):
    make_distribution(
        tmp_path / "site", "grouping-plugin", {"grouping_mod": GROUPING_EXPLAINER}, {"grp": "grouping_mod"}
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fresh_registry()


def run(write_suite, tmp_path, explainers: str = "\n  - name: grouping"):
    suite = write_suite(tiny_suite_text(explainers=explainers, metrics="\n  - name: runtime"))
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    return Runner(load_suite(suite, get_registry()), options).run()


def expected_per_token(attribution: dict) -> dict:
    """What the grouping explainer gives each of an example's tokens."""
    positions = range(len(attribution["tokens"]))
    return {
        "groups": [position % 2 for position in positions],
        "extras": {"double": [2.0 * p for p in positions], "position": [float(p) for p in positions]},
    }


def test_groups_group_scores_and_extras_are_stored_per_token_with_padding_dropped(
    grouping_plugin, write_suite, tmp_path
):
    result = run(write_suite, tmp_path)
    assert not result.failed
    attributions = list(Store(tmp_path / "results").attributions(result.run_id))
    assert len(attributions) == 6
    by_batch: dict[int, list[int]] = {}
    for attribution in attributions:
        by_batch.setdefault(attribution["batch"], []).append(len(attribution["tokens"]))
        expected = expected_per_token(attribution)
        assert attribution["groups"] == expected["groups"]
        assert attribution["extras"] == expected["extras"]
        assert attribution["group_scores"] == [0.25, 0.75]
        assert attribution["schema"] == 3
    assert any(len(set(lengths)) > 1 for lengths in by_batch.values())  # some examples were padded


def test_bench_export_attributions_carries_groups_group_scores_extras_and_schema(
    grouping_plugin, write_suite, tmp_path
):
    result = run(write_suite, tmp_path)
    exported = subprocess.run(
        [sys.executable, "-m", "harness.cli", "export", result.run_id, "--results", str(tmp_path / "results"),
         "--attributions"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": subprocess_pythonpath(tmp_path / "site")},
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 6
    for row in rows:
        expected = expected_per_token(row)
        assert (row["groups"], row["extras"]) == (expected["groups"], expected["extras"])
        assert row["group_scores"] == [0.25, 0.75] and row["schema"] == 3


def test_a_wrongly_shaped_group_tensor_fails_only_that_explainers_cells_with_a_one_line_error(
    grouping_plugin, write_suite, tmp_path
):
    explainers = (
        "\n  - name: random\n  - name: grouping\n  - name: grouping\n    params: {wrong_groups: true}"
    )
    result = run(write_suite, tmp_path, explainers)
    assert len(result.failed) == 1
    [(cell, error)] = result.failed
    assert cell.explainer.params.wrong_groups
    shape = r"explainer 'grouping' returned groups of shape \(4, (\d+)\), expected \(4, (\d+)\) \(batch × tokens\)"
    match = re.fullmatch(shape, error)
    assert match and int(match[1]) == int(match[2]) - 1
    assert "\n" not in error
    cells = Store(tmp_path / "results").cells(result.run_id)
    assert sum(c["status"] == "done" for c in cells) == 2


def test_an_attribution_of_the_previous_schema_loads_without_groups_or_extras():
    previous = {
        "example_id": "a", "target": 1, "predicted": 1, "probability": 0.9, "input_ids": [5, 6],
        "token_type_ids": None, "tokens": ["good", "film"], "offsets": [[0, 4], [5, 9]],
        "word_ids": [0, 1], "segments": [0, 0], "scores": [0.5, -0.5], "seconds": 0.01,
        "log_probabilities": [-2.3, -0.1], "labels": None, "batch": 0,
    }  # fmt: skip
    attribution = Attribution.from_dict(previous)
    assert (attribution.groups, attribution.group_scores, attribution.extras) == (None, None, None)
    assert attribution.schema == 2 and attribution.offsets == [(0, 4), (5, 9)]
    assert Attribution.from_dict(attribution.to_dict()) == attribution


def test_cached_attributions_of_the_previous_schema_are_recomputed_and_the_run_logs_it(
    grouping_plugin, write_suite, tmp_path
):
    first = run(write_suite, tmp_path)
    [path] = (tmp_path / "cache" / "attributions").rglob("*.json")
    entry = cached_value(path)
    entry["schema"] = 2
    for attribution in entry["attributions"]:
        for field in ("groups", "group_scores", "extras", "schema"):
            del attribution[field]
    path.write_text(json.dumps(entry))
    second = run(write_suite, tmp_path)
    assert second.run_id != first.run_id and not second.failed
    log = Store(tmp_path / "results").log_path(second.run_id).read_text()
    assert "unreadable or outdated (schema 2, expected 3); recomputing" in log
    attributions = list(Store(tmp_path / "results").attributions(second.run_id))
    assert all(a["groups"] == expected_per_token(a)["groups"] and a["schema"] == 3 for a in attributions)
    assert cached_value(path)["schema"] == 3


def test_an_explanation_names_what_is_wrong_with_its_shapes():
    import torch

    from harness import Explanation, LabelledScores

    scores, groups = torch.zeros(2, 3), torch.tensor([[0, 1, -1], [0, 0, -1]])
    problems = {
        "group_scores without groups": Explanation(scores, group_scores=torch.zeros(2, 2)),
        "groups of dtype torch.float32, expected integers": Explanation(scores, groups=groups.float()),
        "group id -2, expected ≥ 0 (or -1: no group)": Explanation(scores, groups=groups - 1),
        "group_scores of shape (2, 1) for group ids up to 1, expected (2, ≥ 2) (batch × groups)": Explanation(
            scores, groups=groups, group_scores=torch.zeros(2, 1)
        ),
        "extras['second'] of shape (2, 2), expected (2, 3) (batch × tokens)": Explanation(
            scores, extras={"second": torch.zeros(2, 2)}
        ),
        "labels of shape (3,), expected (2, 3) (batch × tokens)": LabelledScores(scores, torch.zeros(3)),
    }
    for problem, explanation in problems.items():
        assert explanation.problem((2, 3)) == problem
    assert Explanation(scores, groups=groups, group_scores=torch.zeros(2, 2)).problem((2, 3)) is None
