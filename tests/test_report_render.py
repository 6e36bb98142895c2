"""The report is built once into a document (sections of tables of cells with semantic flags) that the
rich, Markdown, CSV and JSON renderers walk. Tested on one tiny stored run: three explainers, one of
them labelled with a ``|`` and rich markup, on the bag-of-words model."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import tiny_suite_text
from rich.console import Console

from harness.registry import get_registry
from harness.report import Cell, Report, render
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

LABEL = "rand|om [bold]x[/]"
EXPLAINERS = f"""
  - name: random
    label: "{LABEL}"
  - name: saliency
  - name: occlusion"""
METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: runtime"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Report:
    tmp_path = tmp_path_factory.mktemp("report")
    path = tmp_path / "suite.yaml"
    path.write_text(tiny_suite_text(EXPLAINERS, METRICS))
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(load_suite(path, get_registry()), options).run()
    assert not result.failed
    return Report.build(Store(tmp_path / "results"), result.run_id)


def family_table(report: Report, family: str):
    [section] = [s for s in report.document().of_kind("family") if s.title == family]
    [table] = section.tables
    return table


def test_a_family_table_has_one_header_per_column_and_one_row_per_explainer(report):
    [analysis] = [t for t in report.tables if t.family == "faithfulness"]
    table = family_table(report, "faithfulness")
    assert len(table.headers) == 1 + len(analysis.columns)
    assert table.headers[0].names_rows and table.headers[1].numeric
    assert [header.data for header in table.headers[1:]] == [c.as_dict() for c in analysis.columns]
    assert [row[0].text for row in table.rows] == [LABEL, "saliency", "occlusion"]
    assert all(len(row) == len(table.headers) for row in table.rows)


def test_best_and_significant_flags_sit_on_the_cells_the_analysis_marks(report):
    for analysis in report.tables:
        table = family_table(report, analysis.family)
        for row, cells in zip(analysis.rows, table.rows, strict=True):
            for column, cell in zip(analysis.columns, cells[1:], strict=True):
                assert cell.best == ((row, column) in analysis.best)
                assert cell.significant == analysis.significant(row, column)
                assert cell.data["best"] == cell.best
    [best] = [cell for row in family_table(report, "faithfulness").rows for cell in row if cell.best]
    assert best.text.startswith(f"{best.data['mean']:.3g}")


def test_marks_follow_the_flags_not_the_text():
    assert Cell("0.5 n=6").marked == "0.5 n=6"
    assert Cell("0.5 n=6", significant=True, timed_elsewhere=True).marked == "0.5 n=6 † ‡"


def test_markdown_and_rich_show_the_same_cell_texts(report):
    markdown = report.to_markdown()
    console = Console(record=True, width=400)
    report.print(console)
    text = console.export_text()
    for table in (family_table(report, "faithfulness"), family_table(report, "cost")):
        for row in table.rows:
            for cell in row:
                assert cell.marked.replace("|", "\\|") in markdown
                assert cell.marked in text
            best = [cell for cell in row if cell.best]
            for cell in best:
                assert f"**{cell.marked.replace('|', chr(92) + '|')}**" in markdown
                assert f"{cell.marked} ★" in text


def test_a_pipe_is_escaped_in_markdown_and_markup_stays_literal_in_rich(report):
    rows = [line for line in report.to_markdown().splitlines() if line.startswith("| rand")]
    assert len(rows) == 2  # one per family table
    for row in rows:
        assert row.startswith("| rand\\|om [bold]x[/] | ")
        assert row.count("|") - row.count("\\|") == 3  # the explainer and the table's one column
    console = Console(record=True, width=400)
    report.print(console)
    assert LABEL in console.export_text()


def test_csv_and_json_read_the_same_cells_as_the_document(report):
    table = family_table(report, "faithfulness")
    document = json.loads(render(report, "json"))
    [faithfulness] = [t for t in document["tables"] if t["family"] == "faithfulness"]
    assert [row["explainer"] for row in faithfulness["rows"]] == [row[0].text for row in table.rows]
    assert [row["cells"] for row in faithfulness["rows"]] == [[c.data for c in row[1:]] for row in table.rows]
    lines = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    families = report.document().of_kind("family")
    cells = [cell for section in families for row in section.tables[0].rows for cell in row[1:]]
    assert len(lines) == sum(cell.data is not None for cell in cells)
    rows = [line for line in lines if line["family"] == "faithfulness"]
    assert [line["explainer"] for line in rows] == [row[0].text for row in table.rows]
    assert [line["best"] == "True" for line in rows] == [row[1].best for row in table.rows]
