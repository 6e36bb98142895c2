"""User text made inert for the outputs that are not HTML: the terminal, JSON and spreadsheets.

Labels, dataset ids, example texts, plugin descriptions and error messages quoting them come from files
a user may not have written. Shown as they are, an escape sequence in a dataset id recolours, retitles
or clears the terminal (``\\x1b]0;…``, ``\\x1b[2J``), a bidirectional override reorders what a reader
sees, and a CSV cell ``=HYPERLINK(…)`` is a formula when a spreadsheet opens the file. Each output
escapes where it writes: the terminal through ``printable``, JSON through ``json_text``, CSV through
``csv_cell``, Markdown in ``harness.report.markdown`` and HTML in ``harness.report.html``.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Characters that change how a terminal shows what follows rather than showing themselves: C0 and C1
# controls and DEL (escape sequences, carriage return, backspace, bell), line and paragraph separators,
# and the bidirectional embeddings, overrides and isolates ("Trojan source").
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C}
_INVISIBLE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *sorted(_BIDI))
}
_INVISIBLE.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})
# The same characters as JSON escapes them: ``json.dumps`` escapes C0 itself, not DEL, C1, the separators
# or the bidirectional controls.
_JSON_INVISIBLE = {code: f"\\u{code:04x}" for code in _INVISIBLE if code >= 0x20}


def printable(text: object) -> str:
    """``text`` as a terminal shows it literally: every control character written as its escape
    (``\\x1b``, ``\\n``, ``\\u202e``), everything else as it is."""
    return str(text).translate(_INVISIBLE)


def json_text(value: Any, **options: Any) -> str:
    """``value`` as JSON text (``json.dumps`` with ``options``; other characters written as they are, not
    as ASCII escapes) in which every character ``printable`` escapes is a ``\\uXXXX`` escape: JSON is data,
    so it parses back to the same strings, and it is inert when it is printed on a terminal. (These
    characters occur only inside JSON strings, where the escape means the character itself.)"""
    return json.dumps(value, ensure_ascii=False, **options).translate(_JSON_INVISIBLE)


# OWASP, CSV injection: a cell starting with one of these is read as a formula (tab and carriage
# return too, by some spreadsheets); a leading apostrophe makes it text, and spreadsheets hide it.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def csv_cell(value: object) -> object:
    """A value as a CSV cell a spreadsheet cannot run: text starting with ``=``, ``+``, ``-``, ``@``, a
    tab or a carriage return gets a leading apostrophe. Numbers, and text that is exactly a number
    (``-0.03``, ``-1e-05``), are left as they are: they are read as numbers, never as formulas."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS) or _NUMBER.fullmatch(value):
        return value
    return "'" + value
