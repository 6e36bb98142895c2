"""Regression tests for numbers the harness once showed wrong (fixed in f5b5a48).

Each test runs a tiny suite (the bag-of-words model on the tiny fixture, seconds) and checks the
stored values and the report exactly, or against a computation made here from the data itself.
"""

from __future__ import annotations

import io
import json
import math
import sqlite3
import subprocess
import sys
from contextlib import closing
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import TINY_DATA, cached_value
from rich.console import Console

from harness.data import fingerprint_examples
from harness.errors import BenchError
from harness.grid import expand
from harness.registry import get_registry
from harness.report import Report, render
from harness.runner import Runner, RunOptions
from harness.stages import ATTRIBUTIONS_SCHEMA
from harness.store import Store
from harness.suite import load_suite
from plugins.datasets.jsonl import JsonlDataset

DATASET_PARAMS = {"path": str(TINY_DATA), "test_fraction": 0.25}
TINY = f"""
  - name: jsonl
    label: tiny
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    sample: 6"""
BOW = """
  - name: bow
    params: {dim: 8, max_epochs: 20}"""
RANDOM_AND_SALIENCY = """
  - name: random
  - name: saliency"""
RUNTIME = """
  - name: runtime"""


def suite_text(
    datasets: str = TINY,
    models: str = BOW,
    explainers: str = RANDOM_AND_SALIENCY,
    metrics: str = RUNTIME,
    batch_size: int = 4,
) -> str:
    return f"""name: trustworthy
version: 1
seeds: [0]
device: cpu
batch_size: {batch_size}
datasets:{datasets}
models:{models}
explainers:{explainers}
metrics:{metrics}
"""


def run_suite(path: Path, tmp_path: Path, console: Console | None = None, **options):
    loaded = load_suite(path, get_registry())
    options = {
        "results_dir": tmp_path / "results",
        "cache_dir": tmp_path / "cache",
        "progress": False,
        **options,
    }
    return Runner(loaded, RunOptions(**options), console=console).run()


def report_json(store: Store, run_id: str) -> dict:
    return json.loads(render(Report.build(store, run_id), "json"))


def table_of(report: dict, family: str) -> dict:
    [table] = [table for table in report["tables"] if table["family"] == family]
    return table


def tiny_dataset():
    """The fixture dataset as the jsonl plugin loads it, independently of any run."""
    return JsonlDataset(JsonlDataset.Params(**DATASET_PARAMS)).load()


def markdown_rows(markdown: str, label: str) -> list[str]:
    """The Markdown table rows whose first cell is ``label``."""
    return [line for line in markdown.splitlines() if line.startswith(f"| {label} |")]


def unescaped_pipes(line: str) -> int:
    return line.count("|") - line.count("\\|")


def attribution_cache_files(cache: Path) -> list[Path]:
    files = sorted((cache / "attributions").glob("**/*.json"))
    assert files, "no cached attributions"
    return files


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def interrupt(store: Store, run_id: str, **changes) -> None:
    """Make a finished run look killed mid-way: status running, its process gone."""
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute("UPDATE runs SET status='running', pid=? WHERE run_id=?", (dead_pid(), run_id))
        for column, value in changes.items():
            db.execute(f"UPDATE runs SET {column}=? WHERE run_id=?", (value, run_id))


# -- 1. datasets that differ only in their split ----------------------------------------------------


def test_two_entries_of_one_dataset_on_different_splits_explain_their_own_examples(write_suite, tmp_path):
    datasets = f"""
  - name: jsonl
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    sample: 6
  - name: jsonl
    params: {{path: {TINY_DATA}, test_fraction: 0.25}}
    split: validation
    sample: 6"""
    metrics = "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}"
    # saliency's default l2 norm scores every token of the mean-pooled bag of words alike: undefined for
    # comprehensiveness (NaN); input × gradient ranks its tokens
    explainers = "\n  - name: random\n  - name: saliency\n    params: {reduction: input_x_gradient}"
    result = run_suite(
        write_suite(suite_text(datasets=datasets, explainers=explainers, metrics=metrics)), tmp_path
    )
    assert not result.failed and result.cells == 4

    store = Store(tmp_path / "results")
    table = table_of(report_json(store, result.run_id), "faithfulness")
    columns = table["columns"]
    assert len(columns) == 2
    assert len({c["dataset"] for c in columns}) == 2 and len({c["dataset_id"] for c in columns}) == 2
    test_label, validation_label = (c["dataset"] for c in columns)
    assert validation_label == f"{test_label} (validation)"

    data = tiny_dataset()
    expected_ids = {
        test_label: [e.id for e in data.test[:6]],
        validation_label: [e.id for e in data.validation[:6]],
    }
    assert not set(expected_ids[test_label]) & set(expected_ids[validation_label])
    values: dict[tuple[str, str], dict[str, float]] = {}
    for record in store.records(result.run_id):
        values.setdefault((record["dataset"], record["explainer"]), {})[record["example_id"]] = record[
            "value"
        ]
    for (dataset, _), by_example in values.items():
        assert list(by_example) == expected_ids[dataset]
    for explainer in ("random", "saliency"):
        assert sorted(values[(test_label, explainer)].values()) != sorted(
            values[(validation_label, explainer)].values()
        )
    for row in table["rows"]:
        test_cell, validation_cell = row["cells"]
        assert test_cell["mean"] != validation_cell["mean"]


# -- 2. cells carry what they were computed on ------------------------------------------------------


def test_each_stored_cell_carries_its_identity_examples_fingerprint_count_and_limit(write_suite, tmp_path):
    path = write_suite(suite_text())
    result = run_suite(path, tmp_path, limit=3)
    assert not result.failed

    explained = tiny_dataset().test[:3]  # sample 6, then --limit 3
    identities = {cell.id: cell.identity for cell in expand(load_suite(path, get_registry()))}
    cells = Store(tmp_path / "results").cells(result.run_id)
    assert len(cells) == 2
    for cell in cells:
        assert cell["identity"] == identities[cell["cell_id"]]
        assert cell["identity"]["dataset"] == {
            "name": "jsonl",
            "version": cell["identity"]["dataset"]["version"],
            "params": cell["identity"]["dataset"]["params"],
            "split": "test",
            "sample": 6,
        }
        assert cell["identity"]["dataset"]["params"]["path"] == str(TINY_DATA)
        assert cell["identity"]["explainer"]["name"] == cell["explainer"]
        assert cell["identity"]["metric"]["name"] == "runtime" and cell["identity"]["seed"] == 0
        assert cell["examples_fingerprint"] == fingerprint_examples(explained)
        assert cell["n_examples"] == 3
        assert cell["example_limit"] == 3


# -- 3. runtime statistics count timed batches, not examples ---------------------------------------


def test_runtime_comparisons_pair_timed_batches_not_examples(write_suite, tmp_path):
    n, batch_size = 10, 4
    datasets = TINY.replace("sample: 6", f"sample: {n}")
    result = run_suite(write_suite(suite_text(datasets=datasets, batch_size=batch_size)), tmp_path)
    assert not result.failed
    batches = math.ceil(n / batch_size)  # 3 independent measurements per explainer

    store = Store(tmp_path / "results")
    table = table_of(report_json(store, result.run_id), "cost")
    cells = [row["cells"][0] for row in table["rows"]]
    [best] = [cell for cell in cells if cell["best"]]
    [other] = [cell for cell in cells if not cell["best"]]
    assert best["vs_best"] is None
    assert other["vs_best"]["n_pairs"] == batches
    assert all(cell["n"] == n and cell["n_units"] == batches and cell["n_undefined"] == 0 for cell in cells)
    markdown = Report.build(store, result.run_id).to_markdown()
    for label in ("random", "saliency"):
        [row] = markdown_rows(markdown, label)
        assert f"n={n}, {batches} units" in row

    # each value's unit is the explainer call that timed it
    position = {example.id: i for i, example in enumerate(tiny_dataset().test[:n])}
    records = list(store.records(result.run_id))
    assert len(records) == 2 * n
    assert all(r["unit"] == f"batch {position[r['example_id']] // batch_size}" for r in records)


# -- 4. timings measured elsewhere are never presented as fresh -------------------------------------


def test_cached_timings_from_another_host_are_marked_and_say_where_they_were_measured(write_suite, tmp_path):
    path = write_suite(suite_text())
    first = run_suite(path, tmp_path)
    store = Store(tmp_path / "results")
    first_markdown = Report.build(store, first.run_id).to_markdown()
    assert all("‡" not in markdown_rows(first_markdown, label)[0] for label in ("random", "saliency"))

    measured_at = set()
    for file in attribution_cache_files(tmp_path / "cache"):
        entry = cached_value(file)
        measured_at.add(entry["timing"]["measured_at"])
        entry["timing"]["host"] = "elsewhere"
        file.write_text(json.dumps(entry))

    second = run_suite(path, tmp_path, resume=False)
    assert second.run_id != first.run_id and not second.failed
    report = Report.build(store, second.run_id)
    markdown = report.to_markdown()
    for label in ("random", "saliency"):
        [row] = markdown_rows(markdown, label)
        assert row.rstrip(" |*").endswith(" ‡")
    where = f"- ‡ timings measured on host elsewhere, device cpu, {min(measured_at)} to {max(measured_at)} ("
    assert [line for line in markdown.splitlines() if "timings measured" in line] == [
        where + "another host or device than this run's: not comparable with its other timings)"
    ]
    timings = table_of(json.loads(render(report, "json")), "cost")["timings"]
    assert {entry["explainer"] for entry in timings} == {"random", "saliency"}
    measured = [timing for entry in timings for timing in entry["measured"]]
    assert {(t["host"], t["device"]) for t in measured} == {("elsewhere", "cpu")}
    assert {t["measured_at"] for t in measured} == measured_at


# -- 5. an outdated cache entry is recomputed -------------------------------------------------------


def test_an_outdated_cached_attributions_entry_is_recomputed_and_logged_not_a_failed_cell(
    write_suite, tmp_path
):
    metrics = "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}"
    path = write_suite(suite_text(explainers="\n  - name: saliency", metrics=metrics))
    first = run_suite(path, tmp_path)
    [file] = attribution_cache_files(tmp_path / "cache")
    file.write_text(json.dumps([{"example_id": "ex000", "field_from_an_old_version": 1}]))

    second = run_suite(path, tmp_path, resume=False)
    assert second.run_id != first.run_id
    assert not second.failed and second.computed == 1
    store = Store(tmp_path / "results")
    assert [c["status"] for c in store.cells(second.run_id)] == ["done"]
    log = store.log_path(second.run_id).read_text()
    assert f"cached attributions {file.stem} are unreadable or outdated" in log and "recomputing" in log

    def values(run_id):
        return [(r["example_id"], r["value"]) for r in store.records(run_id)]

    assert values(second.run_id) == values(first.run_id)
    assert cached_value(file)["schema"] == ATTRIBUTIONS_SCHEMA  # rewritten in the current format


# -- 6. resume only what this run would compute alike -----------------------------------------------


def test_an_interrupted_run_is_resumed_only_when_versions_match(write_suite, tmp_path):
    path = write_suite(suite_text())
    first = run_suite(path, tmp_path)
    store = Store(tmp_path / "results")
    versions = store.run(first.run_id)["versions"]
    interrupt(store, first.run_id, versions=json.dumps({**versions, "numpy": "0.0"}))

    output = io.StringIO()
    second = run_suite(path, tmp_path, console=Console(file=output, width=300))
    assert second.resumed is False and second.run_id != first.run_id
    assert (
        f"not resuming run {first.run_id}: numpy changed from 0.0 to {version('numpy')}; starting a new run"
        in output.getvalue()
    )

    interrupt(store, second.run_id)  # nothing changed: continue it
    output = io.StringIO()
    third = run_suite(path, tmp_path, console=Console(file=output, width=300))
    assert third.resumed is True and third.run_id == second.run_id
    assert "not resuming" not in output.getvalue()
    assert f"resuming run {second.run_id}" in output.getvalue()


def test_a_run_whose_lock_another_process_holds_is_not_resumed(write_suite, tmp_path):
    path = write_suite(suite_text())
    first = run_suite(path, tmp_path)
    store = Store(tmp_path / "results")
    interrupt(store, first.run_id)
    holder = subprocess.Popen(  # another bench process still running the first run
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
         "print('locked', flush=True); time.sleep(60)", str(store.run_lock(first.run_id).lock_file)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        output = io.StringIO()
        second = run_suite(path, tmp_path, console=Console(file=output, width=300))
        assert second.resumed is False and second.run_id != first.run_id
        assert f"not resuming run {first.run_id}: another process is running it" in output.getvalue()
    finally:
        holder.kill()
        holder.wait()
    third = run_suite(path, tmp_path)  # its process is gone (killed): the lock is free, the run resumes
    assert third.resumed is True and third.run_id == first.run_id


# -- 7. undefined values are counted ---------------------------------------------------------------


def test_undefined_values_are_counted_next_to_n(write_suite, tmp_path):
    metrics = "\n  - name: delta-log-odds\n    params: {select: negative, granularity: token}"
    explainers = "\n  - name: random\n  - name: saliency\n    params: {reduction: input_x_gradient}"
    result = run_suite(write_suite(suite_text(explainers=explainers, metrics=metrics)), tmp_path)
    assert not result.failed
    store = Store(tmp_path / "results")

    # A document without a negatively scored real token has nothing to mask: undefined.
    undefined: dict[str, int] = {}
    for row in store.attributions(result.run_id):
        negative = any(s < 0 for s, seg in zip(row["scores"], row["segments"], strict=True) if seg >= 0)
        undefined[row["explainer"]] = undefined.get(row["explainer"], 0) + (not negative)
    assert undefined["random"] == 6  # random scores lie in [0, 1)

    table = table_of(report_json(store, result.run_id), "faithfulness")
    by_label = {row["explainer"]: row["cells"][0] for row in table["rows"]}
    markdown = Report.build(store, result.run_id).to_markdown()
    for label, name in (("random", "random"), ("saliency(reduction=input_x_gradient)", "saliency")):
        cell = by_label[label]
        assert cell["n_undefined"] == undefined[name] and cell["n"] == 6 - undefined[name]
        [row] = markdown_rows(markdown, label)
        counted = f" ({undefined[name]} undefined)" if undefined[name] else ""
        assert row.rstrip(" |*").endswith(f"n={6 - undefined[name]}{counted}")
    assert by_label["random"]["mean"] is None
    assert "— n=0 (6 undefined)" in markdown_rows(markdown, "random")[0]


def test_a_cell_with_some_undefined_values_shows_how_many_next_to_n(write_suite, tmp_path):
    metrics = "\n  - name: delta-log-odds\n    params: {select: negative}"
    values = [0.5, float("nan"), -0.25, float("nan"), 1.0, 0.75]
    store, _ = stored_one_cell_run(write_suite, tmp_path, metrics, values)

    report = Report.build(store, "run")
    [row] = table_of(json.loads(render(report, "json")), "faithfulness")["rows"]
    [summary] = row["cells"]
    assert (summary["n"], summary["n_undefined"], summary["mean"]) == (4, 2, 0.5)
    [line] = markdown_rows(report.to_markdown(), "random")
    assert line.endswith(" n=4 (2 undefined) |")


def stored_one_cell_run(write_suite, tmp_path, metrics: str, values: list[float]) -> tuple[Store, str]:
    """A store holding run "run" of one finished cell (random × the one metric of ``metrics``) whose six
    values are recorded directly, for examples ex0 … ex5; its cell id."""
    loaded = load_suite(
        write_suite(suite_text(explainers="\n  - name: random", metrics=metrics)), get_registry()
    )
    [cell] = expand(loaded)
    store = Store(tmp_path / "results")
    store.create_run("run", loaded.suite, loaded.hash, loaded.path, loaded.text, "cpu", None, {}, {})
    store.record_cell("run", cell, [f"ex{i}" for i in range(len(values))], values, 0.0)
    return store, cell.id


def stored_comprehensiveness_run(write_suite, tmp_path) -> tuple[Store, str]:
    """A store holding one finished comprehensiveness cell (declared range [-1, 1]), recorded directly."""
    metrics = "\n  - name: comprehensiveness\n    params: {bins: [10, 50]}"
    return stored_one_cell_run(write_suite, tmp_path, metrics, [0.5, float("nan"), -0.25, 0.1, 1.0, 0.75])


def bench_report(monkeypatch, capsys, store: Store) -> tuple[int, str, str]:
    """``bench report --results <store> --format md`` in this process, as the console script runs it."""
    from harness import cli

    monkeypatch.setattr(
        sys, "argv", ["bench", "report", "--results", str(store.results_dir), "--format", "md"]
    )
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "stored, why",
    [("abc", "not a number"), (99.0, "outside the metric's declared range"), (math.inf, "not finite")],
    ids=["text", "out-of-range", "inf"],
)
def test_a_report_refuses_a_stored_value_the_harness_never_records(
    write_suite, tmp_path, monkeypatch, capsys, stored, why
):
    """A value changed in the results store after the run (text, outside the cell's stored range, or
    infinite) is never shown, as a mean, a best or an undefined count: the report is one error naming the
    run, the cell, the example and the value, and what to do, with exit code 2."""
    store, cell_id = stored_comprehensiveness_run(write_suite, tmp_path)
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute("UPDATE records SET value=? WHERE example_id='ex3'", (stored,))

    code, out, err = bench_report(monkeypatch, capsys, store)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in ("run run", f"cell {cell_id}", "'ex3'", repr(stored), why, "--new-run"):
        assert fragment in lines[0], lines[0]
    assert "0.1" not in out and "99" not in out
    with pytest.raises(BenchError, match=why):
        Report.build(store, "run")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_refuses_what_a_report_refuses_and_exports_the_rest(
    write_suite, tmp_path, monkeypatch, capsys, fmt
):
    """``bench export`` reads the records a report reads: a value the harness never records (here 99.0 in
    a cell whose range is [-1, 1]) is the same one-line error, exit code 2, and nothing is written."""
    from harness import cli

    store, cell_id = stored_comprehensiveness_run(write_suite, tmp_path)
    argv = ["bench", "export", "run", "--results", str(store.results_dir), "--format", fmt]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code in (0, None) and "0.1" in capsys.readouterr().out
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute("UPDATE records SET value=99.0 WHERE example_id='ex3'")
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exited.value.code == 2 and len(lines) == 1 and f"cell {cell_id}" in lines[0], captured.err
    assert "99" not in captured.out


def test_a_report_of_stored_values_inside_their_range_is_unchanged(
    write_suite, tmp_path, monkeypatch, capsys
):
    store, _ = stored_comprehensiveness_run(write_suite, tmp_path)
    code, out, err = bench_report(monkeypatch, capsys, store)
    assert code in (0, None) and not err.strip()
    assert "n=5 (1 undefined)" in out


# -- 8. user strings are shown as written ----------------------------------------------------------


def test_rich_output_prints_labels_with_brackets_literally(write_suite, tmp_path):
    models = BOW + '\n    label: "bow[init:2]"'
    explainers = '\n  - name: random\n    label: "[bold]x[/]"\n  - name: saliency'
    result = run_suite(write_suite(suite_text(models=models, explainers=explainers)), tmp_path)
    assert not result.failed

    console = Console(record=True, width=300)
    Report.build(Store(tmp_path / "results"), result.run_id).print(console)
    text = console.export_text()
    assert "model bow[init:2] on tiny" in text
    assert "tiny · bow[init:2]" in text  # the column header
    assert "[bold]x[/]" in text  # the row


def test_a_pipe_in_a_label_is_escaped_in_markdown_so_the_row_keeps_its_columns(write_suite, tmp_path):
    explainers = '\n  - name: random\n    label: "rand|om"\n  - name: saliency'
    result = run_suite(write_suite(suite_text(explainers=explainers)), tmp_path)
    assert not result.failed

    markdown = Report.build(Store(tmp_path / "results"), result.run_id).to_markdown()
    lines = markdown.splitlines()
    [header] = [line for line in lines if line.startswith("| explainer |")]
    [row] = markdown_rows(markdown, "rand\\|om")
    [other] = markdown_rows(markdown, "saliency")
    assert unescaped_pipes(row) == unescaped_pipes(header) == unescaped_pipes(other) == 3


# -- 9. code downloaded with a model runs only when asked twice -------------------------------------


def test_a_suite_that_trusts_remote_code_needs_allow_remote_code(write_suite, tmp_path):
    models = f"""
  - name: hf
    params: {{path: {tmp_path / "no-such-model"}, trust_remote_code: true}}"""
    path = write_suite(suite_text(models=models))
    loaded = load_suite(path, get_registry())
    line = path.read_text().splitlines().index("  - name: hf") + 1
    assert loaded.remote_code == [f"{path}:{line}: models[0] ({loaded.entries['models'][0].label})"]

    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(BenchError, match="--allow-remote-code") as raised:
        Runner(loaded, options)
    assert str(raised.value).startswith(f"{path}:{line}: ")
    assert "trust_remote_code" in str(raised.value)
    assert not (tmp_path / "results").exists()
    options.allow_remote_code = True
    Runner(loaded, options)  # opting in passes the check; nothing is loaded before run()


# -- 10. labels name one entry each -----------------------------------------------------------------


def test_two_entries_sharing_a_label_are_a_one_line_error_naming_both_lines(write_suite, tmp_path):
    explainers = "\n  - name: random\n    label: same\n  - name: saliency\n    label: same"
    path = write_suite(suite_text(explainers=explainers))
    text = path.read_text().splitlines()
    first, second = (n for n, line in enumerate(text, start=1) if line == "    label: same")
    with pytest.raises(BenchError) as raised:
        load_suite(path, get_registry())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{second}: explainers[1].label: label 'same' is also the label of ")
    assert f"explainers[0] (line {first - 1})" in message


def test_labels_differing_only_in_invisible_characters_are_a_one_line_error_naming_both(write_suite):
    explainers = '\n  - name: random\n  - name: saliency\n    label: "random\\u200b"'
    path = write_suite(suite_text(explainers=explainers))
    second = path.read_text().splitlines().index('    label: "random\\u200b"') + 1
    with pytest.raises(BenchError) as raised:
        load_suite(path, get_registry())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"{path}:{second}: explainers[1].label: label 'random\\u200b' reads as the label 'random' of "
        "explainers[0] (line "
    )
    assert "differ only in invisible format characters" in message


def test_the_same_entry_listed_twice_is_a_one_line_error_naming_both_lines(write_suite, tmp_path):
    explainers = "\n  - name: saliency\n  - name: random\n  - name: saliency\n    params: {}"
    path = write_suite(suite_text(explainers=explainers))
    text = path.read_text().splitlines()
    first, second = (n for n, line in enumerate(text, start=1) if line == "  - name: saliency")
    with pytest.raises(BenchError) as raised:
        load_suite(path, get_registry())
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"{path}:{second}: explainers[2]: is the same entry as explainers[0] (line {first})"
    )


def test_dataset_entries_on_different_splits_get_distinct_default_labels(write_suite):
    datasets = f"""
  - name: jsonl
    params: {{path: {TINY_DATA}}}
  - name: jsonl
    params: {{path: {TINY_DATA}}}
    split: validation"""
    loaded = load_suite(write_suite(suite_text(datasets=datasets)), get_registry())
    labels = [entry.label for entry in loaded.entries["datasets"]]
    assert labels == [f"jsonl(path={TINY_DATA})", f"jsonl(path={TINY_DATA}) (validation)"]
    assert loaded.entries["datasets"][0] != loaded.entries["datasets"][1]
