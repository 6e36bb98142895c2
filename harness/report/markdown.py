"""A report document → Markdown (GitHub-flavoured tables). Every text comes from the document and is
escaped here, so that a CommonMark renderer shows it as the text it is: a ``|`` would end a table cell,
a ``<script>`` or ``<img onerror=…>`` in a label would be raw HTML on a site that renders the file, a
``[x](javascript:…)`` a link, a line break a new block."""

from __future__ import annotations

import re

from harness.inert import printable
from harness.report.document import Cell, Document, Section, Table, legend

# Inline markup a text could start: backslash (first, so that a text cannot undo the escapes), code,
# emphasis, strikethrough, table cells; raw HTML, autolinks and comments (``<`` before a letter, ``/``,
# ``!`` or ``?``); entity references (``&`` before a name or ``#``); links and images, which need ``](``,
# ``][`` or a ``]:`` definition; ``_`` where it can open or close emphasis (not inside a word:
# ``max_epochs`` stays as it is).
_INLINE = re.compile(r"[\\`*~|]|<(?=[A-Za-z/!?])|&(?=[A-Za-z#])|\](?=[(\[:])|(?<![^\W_])_|_(?![^\W_])")
# Block markup at the start of a line: headings, block quotes, list items, thematic breaks.
_BLOCK_START = re.compile(r"^(\s*)(#|>|[-+](?=\s|$)|\d+(?=[.)](\s|$))|=)")


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
        lines.append(_line(section.lead))
    for table in section.tables:
        lines += _table(table)
    return lines + [f"- {_line(item)}" for item in section.items]


def _table(table: Table) -> list[str]:
    lines = [_row([_escaped(header.text) for header in table.headers]), "|" + "---|" * len(table.headers)]
    lines += [_row([_cell(cell) for cell in row]) for row in table.rows]
    lines += ["", *map(_line, table.footer)]
    return lines + [f"- {_line(line)}" for line in table.measured]


def _cell(cell: Cell) -> str:
    return f"**{_escaped(cell.marked)}**" if cell.best else _escaped(cell.marked)


def _row(cells: list[str]) -> str:
    """A table row of cells already escaped."""
    return "| " + " | ".join(cells) + " |"


def _escaped(text: str) -> str:
    """A document text inside a Markdown line, shown as it is: its control characters escaped as the
    terminal shows them (one line, no escape sequences), every character that could start inline markup
    backslash-escaped (CommonMark: any ASCII punctuation may be)."""
    return _INLINE.sub(lambda match: "\\" + match.group(), printable(text))


def _line(text: str) -> str:
    """A document text that starts a line (or a list item): escaped, and its first character escaped
    too where it would start a heading, a block quote, a list or a thematic break."""
    escaped = _escaped(text)
    start = _BLOCK_START.match(escaped)
    if start is None:
        return escaped
    indent, marker = start.group(1), start.group(2)
    if marker.isdigit():  # "1." / "1)" : the delimiter after the digits is what makes the list item
        end = start.end()
        return escaped[:end] + "\\" + escaped[end:]
    return f"{indent}\\{escaped[len(indent) :]}"
