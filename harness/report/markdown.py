"""A report document → Markdown (GitHub-flavoured tables). Every text comes from the document and is
escaped here: a ``|`` would end a table cell."""

from __future__ import annotations

from harness.report.document import Cell, Document, Section, Table, legend


def markdown(document: Document) -> str:
    lines = [f"# {_escaped(document.heading.title)}"]
    for section in document.sections:
        lines += _section(section)
    return "\n".join(lines) + "\n"


def _section(section: Section) -> list[str]:
    if section.kind == "legend":
        return ["", legend("**bold**")]
    lines = [""]
    if section.title:
        title = f"{section.title} {section.note}" if section.note else section.title
        lines += [f"## {_escaped(title)}", ""]
    if section.lead:
        lines.append(_escaped(section.lead))
    for table in section.tables:
        lines += _table(table)
    return lines + [f"- {_escaped(item)}" for item in section.items]


def _table(table: Table) -> list[str]:
    lines = [_row([header.text for header in table.headers]), "|" + "---|" * len(table.headers)]
    lines += [_row([_cell(cell) for cell in row]) for row in table.rows]
    lines += ["", *map(_escaped, table.footer)]
    return lines + [f"- {_escaped(line)}" for line in table.measured]


def _cell(cell: Cell) -> str:
    return f"**{cell.marked}**" if cell.best else cell.marked


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_escaped(cell) for cell in cells) + " |"


def _escaped(text: str) -> str:
    """A user-derived string inside Markdown: a ``|`` would end a table cell."""
    return str(text).replace("|", "\\|")
