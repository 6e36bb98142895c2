"""A report document → a rich console: tables with the best cell of each column in bold green with a
★, outcomes coloured by their news. User strings are ``Text``, never markup, and their control
characters are shown escaped (``harness.inert.printable``): a label or an example id cannot move the
cursor, recolour or retitle the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from harness.inert import printable
from harness.report.document import Cell, Document, Section, Table, legend

STYLES = {"good": "green", "bad": "yellow", "warning": "yellow", "error": "red"}
BEST = "★"


def print_document(document: Document, console: Console) -> None:
    heading = document.heading
    console.print(
        Text.assemble(
            (printable(heading.suite), "bold"),
            f" (version {printable(heading.version)}) — run {printable(heading.run_id)} ",
            (printable(heading.state), "dim"),
        )
    )
    for section in document.sections:
        _print_section(console, section)


def _print_section(console: Console, section: Section) -> None:
    def say(line: str, style: str | None = None) -> None:
        console.print(printable(line), style=style, highlight=False, markup=False)

    if section.kind == "legend":
        say(legend(BEST), "dim")
        return
    style = STYLES.get(section.tone)
    for table in section.tables:
        console.print(_table(section.title, table))
        for line in (*table.footer, *table.measured):
            say(line, "dim")
    if section.title and not section.tables:
        note = f" {printable(section.note)}" if section.note else ""
        console.print(Text.assemble((printable(section.title), "bold"), note))
    if section.lead:
        say("", style)
        say(section.lead, style)
    # items: indented under a heading, bulleted under a lead sentence, bare otherwise (the models)
    prefix = "  " if section.title else "- " if section.lead else ""
    for item in section.items:
        say(prefix + item, style)


def _table(title: str, table: Table) -> RichTable:
    rich_table = RichTable(title=Text(printable(title), style="bold"), title_justify="left")
    for header in table.headers:
        # Folded, never cut: a long label must not lose its variant or parameters to an ellipsis.
        rich_table.add_column(
            Text("\n".join(map(printable, header.parts))),
            justify="right" if header.numeric else "left",
            style="bold" if header.names_rows else None,
            overflow="fold",
        )
    for row in table.rows:
        rich_table.add_row(*map(_cell, row))
    return rich_table


def _cell(cell: Cell) -> Text:
    if cell.best:
        return Text(f"{printable(cell.marked)} {BEST}", style="bold green")
    return Text(printable(cell.marked), style=STYLES.get(cell.tone, ""))
