"""A mistake on the bench command line is one line on stderr and exit code 2, never a traceback or a
usage box: option values typer rejects, unknown options and commands, missing arguments, and a results
folder whose bench.sqlite is not a database. Ctrl-C in any command is one line too, and exit code 130."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from harness import cli

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "quickstart.yaml"


def bench_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``bench ARGS`` in this process, as ``main`` (the console script) runs it."""
    monkeypatch.setattr(sys, "argv", ["bench", *map(str, args)])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def bench(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "60"},
        cwd=cwd,
    )


def assert_one_error_line(code: int, stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr and "Usage" not in stderr and "╭" not in stderr, stderr
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


USAGE_MISTAKES = {
    "limit-zero": (("run", SUITE, "--limit", "0"), ("--limit", "0", "1", "try 'bench run --help'")),
    "limit-not-a-number": (("run", SUITE, "--limit", "abc"), ("--limit", "abc", "try 'bench run --help'")),
    "limit-without-value": (("run", SUITE, "--limit"), ("--limit", "try 'bench run --help'")),
    "unknown-device": (
        ("run", SUITE, "--device", "gpu"),
        ("--device", "gpu", "cpu", "cuda", "bench run --help"),
    ),
    "unknown-report-format": (
        ("report", "--format", "xml"),
        ("--format", "xml", "md", "bench report --help"),
    ),
    "unknown-export-format": (
        ("export", "--format", "foo"),
        ("--format", "foo", "parquet", "bench export --help"),
    ),
    "unknown-option": (("runs", "--bogus"), ("no such option", "--bogus", "try 'bench runs --help'")),
    "misspelt-option": (
        ("runs", "--result", "x"),
        ("--result", "did you mean --results?", "bench runs --help"),
    ),
    "unknown-top-level-option": (("--bogus",), ("--bogus", "try 'bench --help'")),
    "missing-suite-of-run": (("run",), ("missing argument SUITE", "try 'bench run --help'")),
    "missing-suite-of-validate": (("validate",), ("missing argument SUITE", "bench validate --help")),
    "unknown-command": (("nosuch",), ("no such command 'nosuch'", "try 'bench --help'")),
    "misspelt-command": (("repor",), ("no such command 'repor'", "report", "bench --help")),
    "extra-argument": (("runs", "extra"), ("unexpected extra argument", "extra", "bench runs --help")),
    "value-for-a-flag": (("plugins", "--json=yes"), ("--json", "bench plugins --help")),
}


@pytest.mark.parametrize("args, fragments", USAGE_MISTAKES.values(), ids=USAGE_MISTAKES.keys())
def test_a_usage_mistake_is_one_line_on_stderr_and_exit_code_2(monkeypatch, capsys, args, fragments):
    code, stdout, stderr = bench_main(monkeypatch, capsys, *args)
    assert_one_error_line(code, stderr, *fragments)
    assert stdout == ""


def test_bench_without_a_command_shows_the_help_and_one_error_line(monkeypatch, capsys):
    code, stdout, stderr = bench_main(monkeypatch, capsys)
    assert "Usage" in stdout
    assert_one_error_line(code, stderr, "missing command", "run", "report")


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("report", "--help")])
def test_help_still_exits_0(monkeypatch, capsys, args):
    code, stdout, stderr = bench_main(monkeypatch, capsys, *args)
    assert code == 0 and "Usage: bench" in stdout and stderr == ""


def test_the_console_script_prints_the_same_one_line(tmp_path):
    """End to end in a subprocess (a narrow terminal must not wrap the line either)."""
    result = bench("run", SUITE, "--limit", "0", "--out", tmp_path / "results")
    line = assert_one_error_line(result.returncode, result.stderr, "--limit", "bench run --help")
    assert line.endswith("try 'bench run --help'")
    assert not (tmp_path / "results").exists()


@pytest.fixture
def not_a_database(tmp_path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "bench.sqlite").write_text("these are my notes, not a database\n")
    return folder


@pytest.mark.parametrize(
    "args",
    [("runs", "--results"), ("report", "latest", "--results"), ("export", "latest", "--results")],
    ids=["runs", "report", "export"],
)
def test_a_results_folder_whose_database_is_not_a_database_is_one_line(not_a_database, args):
    result = bench(*args, not_a_database)
    assert_one_error_line(result.returncode, result.stderr, str(not_a_database / "bench.sqlite"))
    assert (not_a_database / "bench.sqlite").read_text().startswith("these are my notes")


def test_main_turns_any_sqlite_database_error_into_one_line_naming_the_file(
    monkeypatch, capsys, not_a_database
):
    """Whatever the store raises, ``main`` names the database and says what to do."""
    from harness.store import Store

    def broken(self, *args, **kwargs):
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(Store, "runs", broken)
    code, _, stderr = bench_main(monkeypatch, capsys, "runs", "--results", not_a_database)
    line = assert_one_error_line(
        code, stderr, str(not_a_database / "bench.sqlite"), "file is not a database", "--results"
    )
    assert "bench run" in line


def test_a_results_path_that_is_a_file_is_one_line(tmp_path):
    """``--out`` naming a file where a folder is needed: one line naming it, nothing computed."""
    existing = tmp_path / "notes.txt"
    existing.write_text("notes\n")
    result = bench("run", SUITE, "--out", existing, "--limit", "1", "--cache-dir", tmp_path / "cache")
    assert_one_error_line(result.returncode, result.stderr, str(existing))
    assert existing.read_text() == "notes\n"


def test_a_suite_with_remote_code_is_refused_by_run_without_the_flag_and_named_by_validate(
    monkeypatch, capsys, tmp_path
):
    suite = tmp_path / "remote.yaml"
    suite.write_text(
        SUITE.read_text().replace(
            "  - name: minilm-head\n    params: {max_length: 128}",
            f"  - name: hf\n    params: {{path: {tmp_path / 'no-such-model'}, trust_remote_code: true}}",
        )
    )
    assert "trust_remote_code" in suite.read_text()
    code, out, err = bench_main(monkeypatch, capsys, "validate", suite, "--no-data")  # the suite alone
    assert code == 0 and "valid" in out
    assert f"warning: {suite}:" in err and "bench run needs --allow-remote-code" in err
    code, _, err = bench_main(monkeypatch, capsys, "run", suite, "--out", tmp_path / "results")
    assert_one_error_line(code, err, str(suite), "trust_remote_code", "--allow-remote-code")
    assert not (tmp_path / "results" / "bench.sqlite").exists()  # refused before anything ran


# What each command is doing when Ctrl-C stops it (a KeyboardInterrupt raised there), and the line it says.
INTERRUPTED = {
    "plugins": (("plugins",), "harness.cli._registry", "interrupted"),
    "validate": (("validate", SUITE), "harness.suite.load_suite", "interrupted"),
    "report": (("report", "--results", "{tmp}"), "harness.cli._store", "interrupted"),
    "runs": (("runs", "--results", "{tmp}"), "harness.cli._store", "interrupted"),
    "export": (("export", "--results", "{tmp}"), "harness.cli._store", "interrupted"),
    "leaderboard": (
        ("leaderboard", "--results", "{tmp}"),
        "harness.report.leaderboard.Leaderboard.build",
        "interrupted",
    ),
    "run": (("run", SUITE, "--out", "{tmp}"), "harness.cli._store", "interrupted; re-run to resume"),
}


@pytest.mark.parametrize("command", sorted(INTERRUPTED))
def test_ctrl_c_in_any_command_is_one_line_and_exit_code_130(monkeypatch, capsys, tmp_path, command):
    args, step, said = INTERRUPTED[command]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(step, interrupted)
    code, _, stderr = bench_main(monkeypatch, capsys, *(str(arg).format(tmp=tmp_path) for arg in args))
    assert code == 130
    assert [line for line in stderr.splitlines() if line.strip()] == [said], stderr
