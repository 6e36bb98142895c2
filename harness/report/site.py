"""Leaderboards and reports as files: the leaderboard's site (``index.html``, ``leaderboard.md``,
``leaderboard.json``), each carrying the leaderboard format version."""

from __future__ import annotations

from pathlib import Path

from harness.inert import json_text
from harness.report.leaderboard import LEADERBOARD_FORMAT, Leaderboard
from harness.report.markdown import markdown

FILES = {"html": "index.html", "md": "leaderboard.md", "json": "leaderboard.json"}


def render_leaderboard(board: Leaderboard, fmt: str) -> str:
    """The leaderboard as text in ``fmt``: html (one self-contained page), md (compact, for a paper's
    appendix) or json (everything, with the run and cell ids behind each number)."""
    if fmt == "json":
        return json_text(board.to_json(), indent=2) + "\n"
    if fmt == "md":
        return (
            markdown(board.document(compact=True))
            + f"\n<!-- bench leaderboard format {LEADERBOARD_FORMAT} -->\n"
        )
    if fmt == "html":
        from harness.report.html import document_html, page
        from harness.report.plots import rank_intervals

        document = board.document()
        figures = {  # each board's mean ranks as a figure, under its table (boards are the first sections)
            index: [rank_intervals(rows, f"{b.family} board: mean rank")]
            for index, b in enumerate(board.boards)
            if (rows := [(r.text, m.mean, m.low, m.high) for r in b.rows if (m := b.mean_ranks.get(r))])
        }
        return page(document.heading.title, document_html(document, figures), document.heading.state)
    raise ValueError(fmt)


def write_site(board: Leaderboard, folder: Path, formats: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = folder / FILES[fmt]
        path.write_text(render_leaderboard(board, fmt), encoding="utf-8")
        written.append(path)
    return written
