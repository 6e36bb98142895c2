"""Suite validation: typed objects, one-line errors with file, line and a suggestion."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import tiny_suite_text

from harness.errors import BenchError
from harness.grid import expand
from harness.registry import get_registry
from harness.suite import load_suite


def load(path):
    return load_suite(path, get_registry())


def error_of(path) -> str:
    with pytest.raises(BenchError) as error:
        load(path)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_valid_suite_loads_into_typed_objects(write_suite):
    loaded = load(write_suite(tiny_suite_text()))
    assert loaded.suite.name == "tiny" and loaded.suite.version == "1"
    assert loaded.suite.seeds == [0] and loaded.suite.device == "cpu"
    assert [e.name for e in loaded.entries["explainers"]] == ["random", "saliency"]
    assert loaded.entries["explainers"][1].params.reduction == "input_x_gradient"


def test_unknown_plugin_name_names_file_line_path_and_suggestion(write_suite):
    text = tiny_suite_text().replace("name: saliency", "name: saliancy")
    path = write_suite(text)
    line = text.splitlines().index("  - name: saliancy") + 1
    assert error_of(path) == (
        f"{path}:{line}: explainers[1].name: unknown explainer 'saliancy'; did you mean 'saliency'?"
    )


def test_unknown_suite_key_suggests_the_closest(write_suite):
    text = tiny_suite_text().replace("seeds: [0]", "seedz: [0]")
    path = write_suite(text)
    assert error_of(path) == f"{path}:3: seedz: unknown key 'seedz'; did you mean 'seeds'?"


def test_unknown_key_inside_a_dataset_entry_suggests_the_closest(write_suite):
    text = tiny_suite_text().replace("    sample: 6", "    sampel: 6")
    message = error_of(write_suite(text))
    assert "datasets[0].sampel: unknown key 'sampel'; did you mean 'sample'?" in message


def test_unknown_plugin_parameter_suggests_the_closest(write_suite):
    text = tiny_suite_text().replace("reduction: input_x_gradient", "reductin: input_x_gradient")
    message = error_of(write_suite(text))
    assert "explainers[1].params.reductin: unknown key 'reductin'; did you mean 'reduction'?" in message


def test_wrong_type_names_the_field_and_the_value(write_suite):
    text = tiny_suite_text().replace("batch_size: 4", "batch_size: many")
    path = write_suite(text)
    line = text.splitlines().index("batch_size: many") + 1
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: batch_size: ") and "'many'" in message


def test_invalid_plugin_parameter_value_is_reported_with_its_line(write_suite):
    text = tiny_suite_text().replace("reduction: input_x_gradient", "reduction: cubic")
    path = write_suite(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "reduction: cubic" in row)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: explainers[1].params.reduction: ") and "'cubic'" in message


def test_malformed_yaml_is_one_line_with_its_line_number(write_suite):
    path = write_suite("name: x\nversion: 1\ndatasets: [unclosed\n")
    message = error_of(path)
    assert message.startswith(f"{path}:") and "malformed YAML" in message


def test_missing_required_section(write_suite):
    text = "\n".join(line for line in tiny_suite_text().splitlines() if not line.startswith("version"))
    assert "version: required key is missing" in error_of(write_suite(text))


def test_missing_file_is_a_one_line_error(tmp_path):
    assert "cannot read the suite file" in error_of(tmp_path / "nope.yaml")


def test_grid_params_expand_to_the_cartesian_product(write_suite):
    explainers = """
  - name: integrated-gradients
    params: {output: probability, grid: {n_steps: [5, 10, 20], baseline: [pad, zero]}}"""
    loaded = load(write_suite(tiny_suite_text(explainers=explainers)))
    entries = loaded.entries["explainers"]
    combos = {(e.params.n_steps, e.params.baseline) for e in entries}
    assert combos == {(n, b) for n in (5, 10, 20) for b in ("pad", "zero")}
    assert all(e.params.output == "probability" for e in entries)
    assert entries[0].label == "integrated-gradients(baseline=pad, n_steps=5, output=probability)"
    cells = expand(loaded)
    assert len(cells) == 1 * 1 * 6 * 3 * 1
    assert len({cell.id for cell in cells}) == len(cells)


def test_seeds_multiply_cells_and_seed_is_an_alias(write_suite):
    loaded = load(write_suite(tiny_suite_text().replace("seeds: [0]", "seeds: [0, 1, 2]")))
    assert len(expand(loaded)) == 3 * 2 * 3
    loaded = load(write_suite(tiny_suite_text().replace("seeds: [0]", "seed: 7"), name="alias.yaml"))
    assert loaded.suite.seeds == [7]


def test_grid_entries_must_be_lists(write_suite):
    explainers = """
  - name: integrated-gradients
    params: {grid: {n_steps: 5}}"""
    assert "params.grid.n_steps: each grid entry must be a non-empty list" in error_of(
        write_suite(tiny_suite_text(explainers=explainers))
    )


def test_validate_command_exits_2_with_one_line_and_no_traceback(write_suite):
    path = write_suite(tiny_suite_text().replace("name: random", "name: randon"))
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert "did you mean 'random'?" in result.stderr and "Traceback" not in result.stderr


def test_validate_command_counts_the_cells(write_suite):
    path = write_suite(tiny_suite_text())
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "valid — 6 cells" in result.stdout


def test_a_metric_parameter_naming_an_explainer_is_checked_with_its_line(tmp_path):
    metrics = """
  - name: iou-stability
    params: {form: labels, pool: sample, grid: {match: [saliency, salency]}}"""
    path = tmp_path / "suite.yaml"
    path.write_text(tiny_suite_text(metrics=metrics))
    with pytest.raises(BenchError) as error:
        load_suite(path, get_registry())
    message = str(error.value)
    assert message.startswith(f"{path}:")
    assert "metrics[0].params.grid.match: match 'salency' is not the label of an explainer" in message
    assert message.endswith("(its explainers: random, saliency(reduction=input_x_gradient))")
