"""A suite file is bounded before it is built and read as it is written: an alias bomb, a document
nested thousands deep, a huge or UTF-16 file, a duplicated key, a version YAML would read as a float,
seeds out of range or repeated, a boolean where a number is meant, and a suite of no cells are each one line naming the file, exit code 2,
in seconds. The suites in suites/ keep their hashes, so runs started before still resume."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import tiny_suite_text
from test_cli_errors import assert_one_error_line, bench_main

from harness.registry import get_registry
from harness.suite import MAX_DEPTH, MAX_SUITE_BYTES, load_suite

REPO = Path(__file__).resolve().parents[1]

# The canonical hash of every suite of suites/ (and of each of its profiles) as it was before these
# bounds: a run started on one of them must still find and resume its run. A suite changed on purpose (a
# new version: pairs.yaml 3) gets its new hash here.
SUITE_HASHES = {
    ("decoders.yaml", None): "2cb01415b79fdc52b7033a794bcad62b6f993e41db2bd8fd4f4f092dcd3383a5",
    ("decoders.yaml", "full"): "0e3a16ace9f219aaaa6ef5a403c729377811c71e5833405734e81ff946a850f5",
    ("disagreement.yaml", None): "104b822afaae98fd3272c4c764ac8524c3afb0df9fcc48e2dc549ccd4a4b3130",
    ("faithfulness.yaml", None): "112fdd724355d050ef437cdcff334b4ba5650cac00c5775261c404b09cd99f70",
    ("l2e.yaml", None): "b10c220b58ddfe31bf35f49e36f0222f23f668ad4c2fc3ea565fa990c1862783",
    ("l2e.yaml", "full"): "2dc33e91b9e78c53ced0b05942d3d0dcb7ab32354600024d7b046c23f64fa523",
    ("ldav.yaml", None): "0ab64a0931caad9ba0083945a67e425ba17884d8666549b6775d9b53e8a255ec",
    ("ldav.yaml", "full"): "8f1523f4e727a86ba272623df8eb65c24ad8e4b2d4882f1f1218836e1e780447",
    ("ldav.yaml", "transformer"): "d6d4d76178524694b5d8af38c3736d683cf41b608b86c95ce2456626d82b431e",
    ("pairs.yaml", None): "fe21acc3625315d1981f43f40ce7bfd19afd1c658143fee246cee367d95b71a2",
    ("pairs.yaml", "full"): "0c2449295d6ec4214647f6ca3156496ebd9f2091c0c8aed5870f39f4768b3fed",
    ("plausibility.yaml", None): "29e21698f648ff74a98114b89f232e7f240fc8cafa3010bb33d7bb53d41e75fa",
    ("quickstart.yaml", None): "ebda905f6518d6974b29abfce0213dcfb5772a6dd0c39d4fdf44124c240c4ca5",
    ("randomization.yaml", None): "61ddd9731d129efd940d14d96d9aa8446b62232cd3c8bb19a6fa3640568c5983",
    ("randomization.yaml", "full"): "0bff5c82462e0a640e21c1ec5017a73f3141289429669737b5b2574d804e390a",
    ("runtime.yaml", None): "adc784a41f4ffaa1185cc50917f4d4a8452cfdab68864a56e86c882525a4c48e",
    ("stability.yaml", None): "ef39c476002dc2db778e61b6a2e04222d775436d58513f0f4de7fc8c9999fc69",
    ("stability.yaml", "full"): "c81298ba5e31227d57a83e372ad6a6641d13642c67089ba302cbe26b73b4ce25",
}


def validate(monkeypatch, capsys, path: Path) -> tuple[int, str, float]:
    """``bench validate PATH``: its exit code, its stderr and how long it took."""
    started = time.perf_counter()
    code, _, stderr = bench_main(monkeypatch, capsys, "validate", path)
    return code, stderr, time.perf_counter() - started


@pytest.mark.parametrize(("suite", "profile"), sorted(SUITE_HASHES, key=str))
def test_the_suites_keep_their_hashes_so_their_runs_resume(suite, profile):
    loaded = load_suite(REPO / "suites" / suite, get_registry(), profile)
    assert loaded.hash == SUITE_HASHES[suite, profile]


def test_every_suite_of_the_repository_is_hashed_here():
    assert {path.name for path in (REPO / "suites").glob("*.yaml")} == {suite for suite, _ in SUITE_HASHES}


# -- bounded before it is built -----------------------------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    """Billion laughs: each level a list of ten aliases of the level below (10**levels values)."""
    lines = ['      l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        below = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"      l{level}: &l{level} [{below}]")
    return "\n".join(lines)


def test_an_alias_bomb_in_precomputed_where_is_one_line_in_seconds(
    monkeypatch, capsys, write_suite, tmp_path
):
    attributions = tmp_path / "a.jsonl"
    attributions.write_text("")
    explainer = f"""
  - name: precomputed
    params:
      path: {attributions}
      where:
{alias_bomb()}"""
    path = write_suite(tiny_suite_text(explainers=explainer, metrics="\n  - name: runtime"))
    code, stderr, seconds = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, str(path), "aliases", "100,000 values")
    assert seconds < 10


@pytest.mark.parametrize("style", ["flow", "block"])
def test_a_document_nested_thousands_deep_is_one_line_in_seconds(monkeypatch, capsys, write_suite, style):
    depth = 5000
    if style == "flow":
        text = tiny_suite_text() + "description: " + "[" * depth + "]" * depth + "\n"
    else:
        text = tiny_suite_text() + "profiles:\n  " + "- " * depth + "x\n"  # compact nested sequences
    path = write_suite(text)
    code, stderr, seconds = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, str(path), f"deeper than {MAX_DEPTH} levels")
    assert seconds < 10


def test_aliases_nesting_deep_values_in_deep_places_count_at_their_depth(monkeypatch, capsys, write_suite):
    half = MAX_DEPTH // 2 + 1
    nested = "[" * half + "x" + "]" * half
    path = write_suite(
        tiny_suite_text() + f"x-deep: &deep {nested}\nx-deeper: {'[' * half}*deep{']' * half}\n"
    )
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, f"{path}:", f"deeper than {MAX_DEPTH} levels (aliases expanded)")


def test_a_utf16_suite_is_named_as_such(monkeypatch, capsys, write_suite, tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_text(tiny_suite_text(), encoding="utf-16")
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, str(path), "UTF-16", "save it as UTF-8")


def test_a_suite_that_is_not_utf8_names_its_line(monkeypatch, capsys, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(
        tiny_suite_text().replace("name: tiny", "name: tiny\ndescription: caf\xe9").encode("latin-1")
    )
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, f"{path}:2:", "not UTF-8")


def test_a_file_larger_than_any_suite_is_refused_unread(monkeypatch, capsys, tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(tiny_suite_text() + "#" * MAX_SUITE_BYTES)
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, str(path), "larger than 1 MiB")


# -- read as it is written ------------------------------------------------------------------------------


def test_a_key_given_twice_is_refused_with_both_lines(monkeypatch, capsys, write_suite):
    path = write_suite(tiny_suite_text().replace("batch_size: 4", "batch_size: 4\nbatch_size: 8"))
    lines = path.read_text().splitlines()
    first, second = (index + 1 for index, line in enumerate(lines) if line.startswith("batch_size"))
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(
        code, stderr, f"{path}:{second}: batch_size: the key 'batch_size' is given twice", f"line {first}"
    )


def test_a_key_given_twice_in_a_nested_flow_mapping_is_refused(monkeypatch, capsys, write_suite):
    path = write_suite(tiny_suite_text().replace("{dim: 8, max_epochs: 20}", "{dim: 8, dim: 16}"))
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, "models[0].params.dim: the key 'dim' is given twice")


def test_an_anchor_merged_into_a_mapping_may_have_keys_overridden(write_suite):
    text = tiny_suite_text().replace(
        "  - name: bow\n    params: {dim: 8, max_epochs: 20}",
        "  - name: bow\n    params: &bow {dim: 8, max_epochs: 20}\n"
        "  - name: bow\n    label: wider\n    params: {<<: *bow, dim: 16}",
    )
    loaded = load_suite(write_suite(text), get_registry())
    assert [model.params_dict["dim"] for model in loaded.entries["models"]] == [8, 16]


def test_a_version_with_a_point_must_be_quoted(monkeypatch, capsys, write_suite):
    path = write_suite(tiny_suite_text().replace("version: 1", "version: 1.10"))
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, f"{path}:2: version:", "the number 1.1", "quote it as written")


@pytest.mark.parametrize(("written", "read"), [("2", "2"), ('"1.10"', "1.10"), ("'2.0'", "2.0")])
def test_a_version_is_an_integer_or_a_string(write_suite, written, read):
    path = write_suite(tiny_suite_text().replace("version: 1", f"version: {written}"))
    assert load_suite(path, get_registry()).suite.version == read


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**23)])
def test_a_seed_out_of_range_is_refused_before_a_run_starts(monkeypatch, capsys, write_suite, tmp_path, seed):
    path = write_suite(tiny_suite_text().replace("seeds: [0]", f"seeds: [0, {seed}]"))
    results = tmp_path / "results"
    code, _, stderr = bench_main(monkeypatch, capsys, "run", path, "--out", results, "--cache-dir", tmp_path)
    assert_one_error_line(code, stderr, f"{path}:3: seeds[1]:", seed)
    code, stdout, _ = bench_main(monkeypatch, capsys, "runs", "--results", results)
    assert code == 0 and "tiny" not in stdout  # no run was recorded, so none is left "running"


def test_the_largest_seed_numpy_takes_is_accepted(write_suite):
    path = write_suite(tiny_suite_text().replace("seeds: [0]", f"seeds: [0, {2**32 - 1}]"))
    assert load_suite(path, get_registry()).suite.seeds == [0, 2**32 - 1]


@pytest.mark.parametrize("seeds", ["seeds: [0, 0]", "seeds: [3, 1, 3]"])
def test_a_seed_listed_twice_is_refused(monkeypatch, capsys, write_suite, seeds):
    path = write_suite(tiny_suite_text().replace("seeds: [0]", seeds))
    code, stderr, _ = validate(monkeypatch, capsys, path)
    repeated = seeds.split("[")[1].split(",")[0]
    assert_one_error_line(code, stderr, f"{path}:3: seeds:", f"seed {repeated} is listed twice")


CLAIM_WITH_MARGIN = """
claims:
  - paper: A paper
    source: Table 1
    claim: saliency is as comprehensive as random
    metric: comprehensiveness
    above: {explainer: saliency}
    below: {explainer: random}
    reproduced_if: within
    margin: 0.1"""

# A YAML boolean where a number is meant: Python counts True and False as the integers 1 and 0, so
# pydantic would read ``seeds: [true]`` as seed 1. Each is (text replaced, its replacement, the key).
BOOLEANS_FOR_NUMBERS = {
    "seeds-true": ("seeds: [0]", "seeds: [true]", "seeds[0]"),
    "seeds-false": ("seeds: [0]", "seeds: [0, false]", "seeds[1]"),
    "seed": ("seeds: [0]", "seed: true", "seed"),
    "batch_size": ("batch_size: 4", "batch_size: true", "batch_size"),
    "sample": ("sample: 6", "sample: true", "datasets[0].sample"),
    "version": ("version: 1", "version: true", "version"),
    "split_seed": (
        "test_fraction: 0.25}",
        "test_fraction: 0.25, split_seed: false}",
        "datasets[0].params.split_seed",
    ),
    "margin": ("margin: 0.1", "margin: true", "claims[0].margin"),
}


@pytest.mark.parametrize("case", sorted(BOOLEANS_FOR_NUMBERS))
def test_a_boolean_where_a_number_is_meant_is_refused(monkeypatch, capsys, write_suite, case):
    old, new, key = BOOLEANS_FOR_NUMBERS[case]
    text = tiny_suite_text() + CLAIM_WITH_MARGIN
    assert old in text
    path = write_suite(text.replace(old, new))
    line = next(index + 1 for index, written in enumerate(path.read_text().splitlines()) if new in written)
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, f"{path}:{line}: {key}:", "as a boolean")


# A plugin parameter written as another kind than it means: pydantic's lax mode would read YAML's true as
# the number 1, the text "20" as 20, 1 as true, and PyYAML reads 1e-3 (an exponent without a dot) as
# text. Each is (text replaced, its replacement, the key, what the message says).
PARAMETERS_READ_AS_ANOTHER_KIND = {
    "int-true": ("dim: 8", "dim: true", "models[0].params.dim", "as a boolean"),
    "int-text": ("max_epochs: 20", 'max_epochs: "20"', "models[0].params.max_epochs", "'20' is text"),
    "float-exponent": (
        "max_epochs: 20}",
        "max_epochs: 20, learning_rate: 5e-2}",
        "models[0].params.learning_rate",
        "write 0.05 or 5.0e-2",
    ),
    "list-item-true": (
        "bins: [10, 50]}",
        "bins: [true, 50]}",
        "metrics[0].params.bins",
        "item 0: YAML reads",
    ),
    "list-item-text": ("bins: [10, 50]}", 'bins: [10, "50"]}', "metrics[0].params.bins", "item 1: '50' is"),
    "bool-number": (
        "- name: runtime",
        "- name: iou-stability\n    params: {stop_words: 1}",
        "metrics[2].params.stop_words",
        "1 is not a boolean",
    ),
    "bool-text": (
        "- name: runtime",
        "- name: iou-stability\n    params: {stop_words: 'true'}",
        "metrics[2].params.stop_words",
        "'true' is not a boolean",
    ),
}


@pytest.mark.parametrize("case", sorted(PARAMETERS_READ_AS_ANOTHER_KIND))
def test_a_plugin_parameter_written_as_another_kind_is_refused(monkeypatch, capsys, write_suite, case):
    old, new, key, message = PARAMETERS_READ_AS_ANOTHER_KIND[case]
    text = tiny_suite_text()
    assert old in text
    path = write_suite(text.replace(old, new, 1))
    line = next(
        index + 1
        for index, written in enumerate(path.read_text().splitlines())
        if new.split("\n")[-1].strip() in written
    )
    code, stderr, _ = validate(monkeypatch, capsys, path)
    assert_one_error_line(code, stderr, f"{path}:{line}: {key}:", message)


def test_plugin_parameters_written_as_meant_are_read_as_written(write_suite):
    """The check refuses only a change of kind: an integer where a float is meant, a float with a dot
    and an exponent, a literal's own text, and true for a boolean are taken as before."""
    text = tiny_suite_text().replace("max_epochs: 20}", "max_epochs: 20, learning_rate: 5.0e-2}")
    text = text.replace("- name: runtime", "- name: iou-stability\n    params: {stop_words: true}")
    loaded = load_suite(write_suite(text), get_registry())
    model = loaded.entries["models"][0].params
    assert (model.dim, model.max_epochs, model.learning_rate) == (8, 20, 0.05)
    assert [entry.params.bins for entry in loaded.entries["metrics"][:1]] == [(10, 50)]
    assert loaded.entries["metrics"][2].params.stop_words is True


# -- a suite of no cells ----------------------------------------------------------------------------------


STUDENT_OF_ATTENTION = "\n  - name: l2e\n    label: student\n    params: {teacher: {name: attention}}"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_suite_whose_every_cell_is_left_out_is_refused(monkeypatch, capsys, write_suite, tmp_path, command):
    path = write_suite(tiny_suite_text(explainers=STUDENT_OF_ATTENTION, metrics="\n  - name: runtime"))
    args = ("--out", tmp_path / "results", "--cache-dir", tmp_path / "cache") if command == "run" else ()
    code, _, stderr = bench_main(monkeypatch, capsys, command, path, *args)
    assert_one_error_line(
        code, stderr, f"{path}: the suite has no cells to run", "left out by its requirements", "attentions"
    )
    assert not (tmp_path / "cache").exists()
