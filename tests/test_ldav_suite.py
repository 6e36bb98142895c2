"""suites/ldav.yaml runs LDAV as the paper (§4.1) and its reference implementation run it, and states the
paper's findings as claims: read from the suite file itself, so that a change of protocol is a change
here too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "ldav.yaml"


@pytest.fixture(scope="module")
def suite() -> dict:
    return yaml.safe_load(SUITE.read_text(encoding="utf-8"))


def by_label(entries: list[dict]) -> dict[str, dict]:
    return {entry.get("label", entry["name"]): entry for entry in entries}


def test_five_seeds_as_the_paper_averages_five_runs(suite):
    assert suite["seeds"] == [0, 1, 2, 3, 4]


def test_the_bilstm_arm_is_ag_news_trained_on_the_full_file(suite):
    [dataset] = suite["datasets"]
    assert dataset["label"] == "ag-news"
    assert dataset["params"]["train"] == "test_full.jsonl"  # 7,600 rows, not the 2,000 of test.jsonl
    assert dataset["sample"] >= 150  # Table 4's 0.07-0.11 margins detectable (the suite's comment)


def test_every_bilstm_trains_unk_and_reads_the_papers_ag_news_length(suite):
    bilstms = [m for m in suite["models"] if m["name"] == "bilstm-attention"]
    assert {m["label"] for m in bilstms} == {
        "bilstm",
        "bilstm-ldav",
        "bilstm-ldav-no-l2",
        "bilstm-ldav-no-l3",
    }
    for model in bilstms:
        assert model["params"]["min_count"] == 2, model["label"]
        assert model["params"]["max_length"] == 20, model["label"]  # Table 1, AG News length


def test_the_transformer_arm_is_fine_tuned_end_to_end_and_judged_as_table_6(suite):
    profile = suite["profiles"]["transformer"]
    models = by_label(profile["models"])
    for label in ("minilm", "minilm-ldav"):
        params = models[label]["params"]
        assert params["unfreeze_layers"] == 6 and params["train_embeddings"], label  # every layer
    assert models["minilm-ldav"]["params"]["ldav"] is True
    bins = [m["params"]["bins"] for m in profile["metrics"] if m["name"] == "comprehensiveness"]
    assert bins == [[1, 5, 10, 20, 50]]
    [table6] = [c for c in profile["claims"] if c["source"].startswith("Table 6")]
    assert (table6["above"], table6["below"]) == ({"explainer": "ldav"}, {"explainer": "random"})
    assert table6["paper_value"] == {"above": 0.036, "below": 0.021}


def test_table_4_claims_carry_the_papers_numbers_as_printed(suite):
    table4 = {
        c["above"]["explainer"]: c["paper_value"]
        for c in suite["claims"]
        if c["source"].startswith("Table 4") and "untestable" not in c
    }
    assert table4 == {
        "integrated-gradients": {"above": 0.13, "below": 0.12},
        "kernel-shap": {"above": 0.13, "below": 0.12},
        "occlusion": {"above": 0.19, "below": 0.12},
        "lime": {"above": 0.21, "below": 0.12},
        "input×gradient": {"above": 0.23, "below": 0.12},
        "plain saliency": {"above": 0.72, "below": 0.12},
    }
    for claim in suite["claims"]:
        if claim["source"].startswith("Table 4") and "untestable" not in claim:
            assert claim["where"] == {"dataset": "ag-news", "model": "bilstm-ldav", "variant": "default"}
            assert claim["below"] == {"explainer": "ldav"}


def test_every_explainer_a_claim_names_is_one_entry(suite):
    """A claim names an explainer by name or label; "saliency" would be both input×gradient's name and
    plain saliency's, and the claim would be judged on each."""
    names = [e["name"] for e in suite["explainers"]] + [e.get("label") for e in suite["explainers"]]
    for claim in suite["claims"]:
        for side in ("above", "below"):
            if "explainer" in claim.get(side, {}):
                assert names.count(claim[side]["explainer"]) == 1, claim["source"]


def test_the_ablations_of_table_8_are_claims_on_the_ldav_explanation(suite):
    ablations = {c["above"]["model"]: c for c in suite["claims"] if c["source"].startswith("Table 8")}
    assert set(ablations) == {"bilstm-ldav-no-l2", "bilstm-ldav-no-l3"}
    assert ablations["bilstm-ldav-no-l2"]["paper_value"] == {"above": 0.63, "below": 0.23}
    assert ablations["bilstm-ldav-no-l3"]["paper_value"] == {"above": 0.66, "below": 0.23}


AG_NEWS = REPO.parent / "shared" / "data" / "ag_news"


@pytest.mark.parametrize("profile", [[], ["--profile", "transformer"], ["--profile", "full"]])
def test_the_suite_and_its_profiles_validate(profile):
    """With its data where ../shared/data holds it; without (a clone alone), every check but the data's."""
    data = [] if AG_NEWS.is_dir() else ["--no-data"]
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", "suites/ldav.yaml", *profile, *data],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
