"""A run's report: its analysis (``analysis``), built once into a renderer-independent document
(``document``) that the rich (``terminal``), Markdown (``markdown``), CSV and JSON (``machine``)
renderers walk."""

from __future__ import annotations

from harness.inert import json_text
from harness.report.analysis import (
    Column,
    FamilyTable,
    Report,
    Row,
    compare_with_best,
    stored_expectations,
    with_shared_predictions,
)
from harness.report.document import Cell, Document, Header, Section, Table, build_document

__all__ = [
    "Cell",
    "Column",
    "Document",
    "FamilyTable",
    "Header",
    "Report",
    "Row",
    "Section",
    "Table",
    "build_document",
    "compare_with_best",
    "render",
    "stored_expectations",
    "with_shared_predictions",
]


def render(report: Report, fmt: str) -> str:
    """The report as text in ``fmt``: json, csv or md (the rich table prints: ``Report.print``)."""
    if fmt == "json":
        return json_text(report.to_json(), indent=2) + "\n"
    if fmt == "csv":
        return report.to_csv()
    if fmt == "md":
        return report.to_markdown()
    raise ValueError(fmt)
