"""Hostile text from a suite or a dataset is inert in every output that is not HTML (the HTML page's
own tests are in test_html_report.py): the terminal shows control characters escaped, Markdown shows
``<script>`` and ``|`` as text when a CommonMark renderer renders it, JSON writes them as ``\\uXXXX``
escapes (the same strings once parsed), and a CSV cell a spreadsheet would run as a formula starts with
an apostrophe, while numbers stay numbers."""

from __future__ import annotations

import csv
import io
import json
import warnings
from contextlib import redirect_stderr, redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_DATA
from markdown_it import MarkdownIt
from rich.console import Console
from test_cli_errors import bench_main

from harness.inert import csv_cell, json_text, printable
from harness.progress import RichReporter
from harness.report import Report, render
from harness.report.leaderboard import Leaderboard
from harness.report.site import render_leaderboard
from harness.store import Store

# Hostile pieces: a terminal title and a clear-screen escape sequence, a bidirectional override,
# raw HTML, a table-cell separator, spreadsheet formulas.
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
OVERRIDE = "\u202e"
CSI = "\x9b"  # the C1 control that starts an escape sequence on its own ("\x1b[" in one character)
ZERO_WIDTH = "\u200b"  # shows as nothing: "random\u200b" would read as "random"
SCRIPT = "<script>alert(1)</script>"
FORMULA = "=cmd|' /C calc'!A0"
HYPERLINK = '=HYPERLINK("http://example.invalid","click")'
INVISIBLE = ("\x1b", "\x07", "\u202e", "\x9b", "\u200b")

EXPLAINER_LABEL = f"{FORMULA} {SCRIPT} r{CLEAR}and{OVERRIDE}om{ZERO_WIDTH}"
DATASET_LABEL = f"tiny{TITLE}{CSI}31m<img src=x onerror=alert(2)>"
VERSION = f"1{CLEAR}"


def yaml_quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(text)


def hostile_data(path: Path) -> Path:
    """The tiny dataset with formulas and escape sequences in its ids and texts."""
    rows = [json.loads(line) for line in TINY_DATA.read_text().splitlines()]
    for index, row in enumerate(rows):
        row["id"] = f"{HYPERLINK}{CLEAR}{index}" if index % 2 else f"@{index}{TITLE}"
        row["text"] = f"{FORMULA} {row['text']}"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def hostile_suite(folder: Path) -> Path:
    path = folder / "hostile.yaml"
    path.write_text(
        f"""name: hostile
version: {yaml_quoted(VERSION)}
seeds: [0]
device: cpu
batch_size: 4
datasets:
  - name: jsonl
    label: {yaml_quoted(DATASET_LABEL)}
    params: {{path: {hostile_data(folder / "data.jsonl")}, test_fraction: 0.25}}
    sample: 4
models:
  - name: bow
    params: {{dim: 8, max_epochs: 5}}
explainers:
  - name: random
    label: {yaml_quoted(EXPLAINER_LABEL)}
  - name: saliency
    params: {{reduction: input_x_gradient}}  # l2 scores every token of a bag of words alike (undefined)
metrics:
  - name: comprehensiveness
    params: {{bins: [10, 50]}}
  - name: log-odds  # negative means: CSV must keep them numbers
  - name: runtime
"""
    )
    return path


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> tuple[Path, str, str, str]:
    """``bench run`` of the hostile suite: its results folder, its stdout and stderr, and its run id."""
    from harness import cli

    folder = tmp_path_factory.mktemp("hostile")
    suite = hostile_suite(folder)
    stdout, stderr = io.StringIO(), io.StringIO()
    showwarning = warnings.showwarning  # main() replaces it
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
            cli.main(
                ["run", str(suite), "--out", str(folder / "results"), "--cache-dir", str(folder / "cache")]
            )
    finally:
        warnings.showwarning = showwarning
    assert exited.value.code == 0, stderr.getvalue()
    [run] = Store(folder / "results").runs()
    return folder / "results", stdout.getvalue(), stderr.getvalue(), run["run_id"]


def assert_inert_in_a_terminal(text: str) -> None:
    for character in INVISIBLE:
        assert character not in text, repr(text)


# -- the terminal -------------------------------------------------------------------------------------------


def test_printable_escapes_control_characters_and_keeps_the_rest():
    assert (
        printable(f"a{CLEAR}b{TITLE}c{OVERRIDE}d\ne\tf\x9bg")
        == "a\\x1b[2Jb\\x1b]0;pwned\\x07c\\u202ed\\ne\\tf\\x9bg"
    )
    assert printable("init:2 · [bold]x[/] ★ é ↑") == "init:2 · [bold]x[/] ★ é ↑"


def test_printable_and_json_text_escape_the_format_characters_that_show_as_nothing():
    # zero-width space, non-joiner, joiner, word joiner, byte order mark, soft hyphen, a tag character
    invisible = "\u200b\u200c\u200d\u2060\ufeff\u00ad\U000e0041"
    assert printable(f"random{invisible}") == "random\\u200b\\u200c\\u200d\\u2060\\ufeff\\xad\\U000e0041"
    text = json_text({"label": f"random{invisible}"})
    assert not set(invisible) & set(text)
    assert json.loads(text) == {"label": f"random{invisible}"}


def test_bench_run_prints_hostile_labels_escaped(hostile_run):
    _, stdout, stderr, _ = hostile_run
    assert_inert_in_a_terminal(stdout + stderr)
    shown = " ".join(stdout.split())  # rich folds long labels over lines
    assert "\\x1b[2J" in shown and "\\u202eom\\u200b" in shown


def test_bench_report_and_runs_print_hostile_labels_and_versions_escaped(hostile_run, monkeypatch, capsys):
    results, _, _, _ = hostile_run
    code, stdout, stderr = bench_main(monkeypatch, capsys, "report", "--results", results)
    assert code == 0, stderr
    assert_inert_in_a_terminal(stdout + stderr)
    assert "\\x1b]0;pwned\\x07" in " ".join(stdout.split())
    code, stdout, stderr = bench_main(monkeypatch, capsys, "runs", "--results", results)
    assert code == 0, stderr
    assert_inert_in_a_terminal(stdout + stderr)
    assert "1\\x1b[2J" in stdout


def test_an_error_line_quoting_hostile_text_is_escaped(monkeypatch, capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        hostile_suite(tmp_path).read_text().replace("name: saliency", f"name: {yaml_quoted(TITLE)}")
    )
    code, _, stderr = bench_main(monkeypatch, capsys, "validate", path)
    assert code == 2
    assert_inert_in_a_terminal(stderr)
    assert "\\x1b]0;pwned\\x07" in stderr and len(stderr.strip().splitlines()) == 1


def test_progress_lines_show_hostile_descriptions_escaped():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    reporter = RichReporter(console)
    reporter.start_run(2)
    reporter.start_explanation(f"{DATASET_LABEL} · bow · {EXPLAINER_LABEL}")
    reporter.step(description=f"{EXPLAINER_LABEL} · comprehensiveness", done=1, total=2)
    reporter.close()
    written = buffer.getvalue()
    assert TITLE not in written and CLEAR not in written and OVERRIDE not in written
    assert "\\x1b[2J" in written


# -- JSON ---------------------------------------------------------------------------------------------------


def test_json_text_escapes_what_a_terminal_would_act_on_and_keeps_the_data():
    data = {"label": f"a{CSI}b{OVERRIDE}c\x85d\u2066e\x7ff\u2028g{CLEAR}", "é ★ ↑": ["init:2"]}
    text = json_text(data, indent=2)
    assert_inert_in_a_terminal(text)
    for raw in ("\x85", "\u2066", "\x7f", "\u2028"):
        assert raw not in text
    assert "\\u009b" in text and "\\u202e" in text and "\\u0085" in text
    assert '"é ★ ↑"' in text  # other text is written as it is
    assert json.loads(text) == data


def strings(value) -> set[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, dict):
        return set(value) | {s for item in value.values() for s in strings(item)}
    if isinstance(value, list):
        return {s for item in value for s in strings(item)}
    return {value} if isinstance(value, str) else set()


@pytest.mark.parametrize(
    "command", [("report", "--format", "json"), ("leaderboard", "--format", "json"), ("export",)]
)
def test_json_outputs_escape_hostile_labels_and_parse_back_to_them(hostile_run, monkeypatch, capsys, command):
    results, _, _, _ = hostile_run
    code, stdout, stderr = bench_main(monkeypatch, capsys, *command, "--results", results)
    assert code == 0, stderr
    assert_inert_in_a_terminal(stdout)
    assert "\\u009b" in stdout
    documents = stdout.strip("\n").split("\n") if command[0] == "export" else [stdout]  # JSON lines
    parsed = {s for document in documents for s in strings(json.loads(document))}
    assert DATASET_LABEL in parsed
    if command[0] != "export":  # records name the explainer by its name, not its label
        assert "\\u202e" in stdout and EXPLAINER_LABEL in parsed


# -- Markdown -----------------------------------------------------------------------------------------------

COMMONMARK = MarkdownIt("commonmark").enable("table")
COMMONMARK.validateLink = lambda url: True  # as a renderer that trusts links does (javascript: included)


class _Elements(HTMLParser):
    """The elements and attributes of an HTML text."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]


def assert_renders_as_text(markdown: str) -> str:
    """The HTML a CommonMark renderer (raw HTML allowed, as the spec has it) makes of ``markdown``: no
    element, attribute or link comes from the hostile text, which shows as text."""
    html = COMMONMARK.render(markdown)
    elements = _Elements(html)
    assert not {"script", "img", "a"} & set(elements.tags), html
    assert elements.attributes == [], html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert_inert_in_a_terminal(markdown)
    return html


def test_report_markdown_shows_hostile_labels_as_text(hostile_run):
    results, _, _, run_id = hostile_run
    markdown = render(Report.build(Store(results), run_id), "md")
    html = assert_renders_as_text(markdown)
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "r\\x1b[2Jand\\u202eom\\u200b" in html
    lines = markdown.splitlines()
    rows = [line for line in lines if line.startswith("| =cmd\\|")]
    headers = [line for line in lines if line.startswith("| explainer |")]
    assert rows and len(rows) == len(headers)
    for row, header in zip(rows, headers, strict=True):  # every row keeps its table's columns
        assert row.count("|") - row.count("\\|") == header.count("|") - header.count("\\|")


def test_leaderboard_markdown_shows_hostile_labels_as_text(hostile_run):
    results, _, _, _ = hostile_run
    markdown = render_leaderboard(Leaderboard.build([results], (), (), False), "md")
    assert_renders_as_text(markdown)


@pytest.mark.parametrize(
    "text",
    [
        "[click](javascript:alert(1))",
        "![x](http://example.invalid/t.png)",
        "<http://example.invalid>",
        "<!-- hidden -->",
        "&lt;b&gt;",
        "**bold** _em_ `code` ~~gone~~",
        "a\nb | c",
        "a\\|b",
    ],
)
def test_markdown_escapes_every_inline_construct(text):
    from harness.report.markdown import _escaped

    html = COMMONMARK.render(_escaped(text))
    assert (
        html == f"<p>{printable(text).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</p>\n"
    )


@pytest.mark.parametrize("text", ["# heading", "> quote", "- item", "+ item", "1. first", "2) second", "==="])
def test_markdown_escapes_a_line_that_would_start_a_block(text):
    from harness.report.markdown import _line

    assert COMMONMARK.render(f"- {_line(text)}") == f"<ul>\n<li>{text.replace('>', '&gt;')}</li>\n</ul>\n"


# -- CSV ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (FORMULA, "'" + FORMULA),
        (HYPERLINK, "'" + HYPERLINK),
        ("+1+cmd", "'+1+cmd"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-0.03", "-0.03"),
        ("-1e-05", "-1e-05"),
        ("+7", "+7"),
        (-0.03, -0.03),
        (None, None),
        ("random", "random"),
    ],
)
def test_csv_cell_neutralises_formulas_and_keeps_numbers(value, cell):
    assert csv_cell(value) == cell


def assert_no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so


def test_bench_export_csv_neutralises_hostile_ids_and_keeps_negative_numbers(
    hostile_run, monkeypatch, capsys
):
    results, _, _, _ = hostile_run
    code, stdout, stderr = bench_main(monkeypatch, capsys, "export", "--results", results, "--format", "csv")
    assert code == 0, stderr
    rows = list(csv.reader(io.StringIO(stdout)))
    header, records = rows[0], rows[1:]
    assert_no_formula(records)
    ids = {record[header.index("example_id")] for record in records}
    assert any(i.startswith("'" + HYPERLINK) for i in ids) and any(i.startswith("'@") for i in ids)
    values = [float(record[header.index("value")]) for record in records if record[header.index("value")]]
    assert any(value < 0 for value in values)  # comprehensiveness of random: negative numbers, as numbers


def test_bench_export_attributions_csv_neutralises_hostile_cells(hostile_run, monkeypatch, capsys):
    results, _, _, _ = hostile_run
    args = ("export", "--results", results, "--format", "csv", "--attributions")
    code, stdout, stderr = bench_main(monkeypatch, capsys, *args)
    assert code == 0, stderr
    rows = list(csv.reader(io.StringIO(stdout)))
    assert_no_formula(rows[1:])
    assert any(cell.startswith("'" + HYPERLINK) for row in rows for cell in row)


def test_report_csv_neutralises_hostile_labels_and_keeps_negative_means(hostile_run):
    results, _, _, run_id = hostile_run
    rows = list(csv.reader(io.StringIO(render(Report.build(Store(results), run_id), "csv"))))
    header, lines = rows[0], rows[1:]
    assert_no_formula(lines)
    explainers = {line[header.index("explainer")] for line in lines}
    assert "'" + EXPLAINER_LABEL in explainers
    means = [float(line[header.index("mean")]) for line in lines if line[header.index("mean")]]
    assert any(mean < 0 for mean in means)
