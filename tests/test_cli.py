"""The bench command line, end to end on a tiny suite (subprocesses, as a user runs it)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import subprocess_pythonpath, tiny_suite_text

from harness.store import RECORD_FIELDS


def bench(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, example_plugin_target):
    """One run of a tiny suite that also uses the installed example plugin's explainer and metric."""
    root = tmp_path_factory.mktemp("cli")
    # On a bag of words every token's embedding gradient is the same vector (the mean's weight), so
    # saliency's default L2 norm is equal on every token: undefined by design. input×gradient differs.
    explainers = "\n  - name: random\n  - name: saliency\n    label: saliency\n    params: {reduction: input_x_gradient}\n  - name: token-length"
    metrics = "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}\n  - name: runtime\n  - name: attribution-entropy"
    suite = root / "tiny.yaml"
    suite.write_text(tiny_suite_text(explainers=explainers, metrics=metrics))
    env = {"PYTHONPATH": subprocess_pythonpath(example_plugin_target), "BENCH_CACHE_DIR": str(root / "cache")}
    result = bench("run", suite, "--out", root / "results", env=env, cwd=root)
    return root, env, result


def test_run_prints_the_report_and_exits_0(finished_run):
    _, _, result = finished_run
    assert result.returncode == 0, result.stderr
    for family in ("faithfulness", "cost", "complexity"):
        assert family in result.stdout
    assert "token-length" in result.stdout and "★" in result.stdout
    assert "test accuracy" in result.stdout
    assert "9 of 9 cells done" in result.stderr


def test_report_json_has_tables_with_means_intervals_and_best(finished_run):
    root, env, _ = finished_run
    result = bench("report", "latest", "--results", root / "results", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    faithfulness = next(t for t in report["tables"] if t["family"] == "faithfulness")
    assert [r["explainer"] for r in faithfulness["rows"]] == ["random", "saliency", "token-length"]
    cells = [row["cells"][0] for row in faithfulness["rows"]]
    assert all(c["n"] == 6 and c["ci_low"] <= c["mean"] <= c["ci_high"] for c in cells)
    best = max(cells, key=lambda c: c["mean"])  # comprehensiveness: higher is better
    assert best["best"] and sum(c["best"] for c in cells) == 1
    cost = next(t for t in report["tables"] if t["family"] == "cost")
    runtimes = [row["cells"][0] for row in cost["rows"]]
    assert min(runtimes, key=lambda c: c["mean"])["best"]  # runtime: lower is better
    assert report["models"][0]["test_accuracy"] is not None


def test_report_markdown_and_csv_carry_the_same_cells(finished_run):
    root, env, _ = finished_run
    markdown = bench("report", "latest", "--results", root / "results", "--format", "md", env=env).stdout
    assert "## faithfulness" in markdown and "| explainer |" in markdown and "**" in markdown
    table = list(
        csv.DictReader(
            io.StringIO(
                bench("report", "latest", "--results", root / "results", "--format", "csv", env=env).stdout
            )
        )
    )
    assert len(table) == 3 * 3  # explainers × metrics
    assert {row["family"] for row in table} == {"faithfulness", "cost", "complexity"}


def test_export_jsonl_has_exactly_the_documented_fields(finished_run):
    root, env, _ = finished_run
    result = bench("export", "latest", "--results", root / "results", env=env)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 9 * 6
    assert all(tuple(row) == RECORD_FIELDS for row in rows)
    comprehensiveness = next(r for r in rows if r["metric"] == "comprehensiveness")
    assert comprehensiveness["metric_params"] == {
        "bins": [10.0, 50.0],
        "masking": "delete",
        "granularity": "token",
    }
    assert comprehensiveness["family"] == "faithfulness" and isinstance(
        comprehensiveness["explainer_params"], dict
    )


def test_export_parquet_and_csv(finished_run, tmp_path):
    root, env, _ = finished_run
    bench(
        "export",
        "latest",
        "--results",
        root / "results",
        "--format",
        "parquet",
        "--out",
        tmp_path / "r.parquet",
        env=env,
    )
    frame = pd.read_parquet(tmp_path / "r.parquet")
    assert tuple(frame.columns) == RECORD_FIELDS and len(frame) == 54
    text = bench("export", "latest", "--results", root / "results", "--format", "csv", env=env).stdout
    assert next(csv.reader(io.StringIO(text))) == list(RECORD_FIELDS)


def test_export_attributions_carry_tokens_offsets_scores_and_target(finished_run):
    root, env, _ = finished_run
    result = bench("export", "latest", "--results", root / "results", "--attributions", env=env)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 * 6
    row = next(r for r in rows if r["explainer"] == "token-length")
    assert len(row["tokens"]) == len(row["offsets"]) == len(row["scores"]) == len(row["word_ids"])
    assert row["target"] == row["predicted"]
    # token-length scores each token by the characters its offsets cover
    assert row["scores"] == [float(end - start) for start, end in row["offsets"]]


def test_unknown_run_is_a_one_line_error(finished_run):
    root, env, _ = finished_run
    result = bench("report", "nope", "--results", root / "results", env=env)
    assert result.returncode == 2 and "run 'nope' not found" in result.stderr


def test_run_with_a_misspelt_plugin_exits_2_and_computes_nothing(tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text(tiny_suite_text().replace("name: bow", "name: bwo"))
    result = bench("run", suite, "--out", tmp_path / "results")
    assert result.returncode == 2
    assert "unknown model 'bwo'; did you mean 'bow'?" in result.stderr
    assert not (tmp_path / "results").exists()


def test_plugins_table_lists_kind_name_package_version_description():
    result = bench("plugins")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if " integrated-gradients " in line)
    assert "explainer" in line and "xai-bench-harness" in line and "Integrated gradients" in line


def test_run_with_a_failing_plugin_exits_1_and_reports_the_failed_cells(tmp_path):
    from conftest import make_distribution
    from test_runner import RAISING_EXPLAINER

    site = make_distribution(tmp_path / "site", "exploding-plugin", {"exploding_mod": RAISING_EXPLAINER},
                             {"exploding": "exploding_mod"})  # fmt: skip
    suite = tmp_path / "suite.yaml"
    suite.write_text(tiny_suite_text(explainers="\n  - name: random\n  - name: exploding"))
    result = bench("run", suite, "--out", tmp_path / "results", "--cache-dir", tmp_path / "cache",
                   env={"PYTHONPATH": subprocess_pythonpath(site)})  # fmt: skip
    assert result.returncode == 1
    assert "3 cell(s) failed" in result.stdout and "RuntimeError: boom from a plugin" in result.stdout
    assert "3 of 6 cells done, 3 failed" in result.stderr


def test_export_curves_of_curve_metrics(finished_run):
    root, env, _ = finished_run
    result = bench("export", "latest", "--results", root / "results", "--curves", env=env)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 * 6  # comprehensiveness is the only curve metric of that suite
    assert {row["metric"] for row in rows} == {"comprehensiveness"}
    curve = rows[0]["curve"]
    assert curve["x"] == [0, 10.0, 50.0] and len(curve["y"]) == 3


def test_reports_say_which_test_was_used_and_carry_the_p_values(finished_run):
    root, env, _ = finished_run
    report = json.loads(
        bench("report", "latest", "--results", root / "results", "--format", "json", env=env).stdout
    )
    faithfulness = next(t for t in report["tables"] if t["family"] == "faithfulness")
    assert faithfulness["statistics"]["test"].startswith("Wilcoxon signed-rank")
    assert faithfulness["statistics"]["comparisons"] == 2  # three explainers, one column
    others = [row["cells"][0] for row in faithfulness["rows"] if not row["cells"][0]["best"]]
    assert all(cell["vs_best"]["n_pairs"] == 6 and 0 < cell["vs_best"]["p_adjusted"] <= 1 for cell in others)
    markdown = bench("report", "latest", "--results", root / "results", "--format", "md", env=env).stdout
    assert "† significantly different from the column's best: Wilcoxon signed-rank" in markdown
    assert "Holm-Bonferroni" in markdown and "(2 comparisons)" in markdown
    table = bench("report", "latest", "--results", root / "results", env=env).stdout
    assert "Holm-Bonferroni" in table


# -- user strings print literally, never as rich markup ([bold]…[/], name[init:2]) or emoji codes (:x:) --

ODD_PLUGIN = '''
from harness import Explainer, hookimpl
BENCH_API_VERSION = "1.0"

class Odd(Explainer):
    """Scores [bold]every[/] token :x: alike."""
    name = "odd[init:2]"
    def explain(self, classifier, encoding, targets):
        raise RuntimeError("never run")

@hookimpl
def bench_explainers():
    return [Odd]
'''


def test_plugins_table_and_warnings_print_plugin_strings_literally(tmp_path):
    from conftest import make_distribution

    site = make_distribution(
        tmp_path / "site",
        "odd-plugin",
        {"odd_mod": ODD_PLUGIN, "broken_mod": "raise ImportError('broken [red]on purpose[/] :x:')"},
        {"odd": "odd_mod", "broken": "broken_mod"},
    )
    result = bench("plugins", env={"PYTHONPATH": subprocess_pythonpath(site)})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "odd-plugin" in line)
    assert "odd[init:2]" in line and "Scores [bold]every[/] token :x: alike." in line
    warning = next(line for line in result.stderr.splitlines() if "broken" in line)
    assert warning.startswith("warning: ") and "broken [red]on purpose[/] :x:" in warning


def test_validate_prints_the_suite_path_literally(tmp_path):
    suite = tmp_path / "tiny[init:2] :x:.yaml"
    suite.write_text(tiny_suite_text())
    result = bench("validate", suite)
    assert result.returncode == 0, result.stderr
    assert f"{suite}: valid" in result.stdout


def test_runs_table_and_error_lines_print_stored_strings_literally(tmp_path):
    from contextlib import closing

    from harness.store import Store

    store = Store(tmp_path / "results")
    values = {"run_id": "r1", "suite": "tiny[init:2]", "suite_version": "[bold]v1[/]", "device": ":x:",
              "status": "complete", "started_at": "2024-01-01T00:00:00+00:00"}  # fmt: skip
    with closing(store.connect()) as db, db:
        columns = db.execute("PRAGMA table_info(runs)").fetchall()
        for column in columns:  # whatever else the schema requires
            if column["notnull"] and column["dflt_value"] is None and column["name"] not in values:
                values[column["name"]] = "{}"
        db.execute(
            f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )
    result = bench("runs", "--results", store.results_dir)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if " r1 " in line)
    assert "tiny[init:2]" in line and "[bold]v1[/]" in line and ":x:" in line
    missing = bench("report", "[bold]nope:x:[/]", "--results", store.results_dir)
    assert missing.returncode == 2 and "run '[bold]nope:x:[/]' not found" in missing.stderr
