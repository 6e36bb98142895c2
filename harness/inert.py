"""User text made inert for the outputs that are not HTML: the terminal, JSON and spreadsheets.

Labels, dataset ids, example texts, plugin descriptions and error messages quoting them come from files
a user may not have written. Shown as they are, an escape sequence in a dataset id recolours, retitles
or clears the terminal (``\\x1b]0;…``, ``\\x1b[2J``), a bidirectional override reorders what a reader
sees, and a CSV cell ``=HYPERLINK(…)`` is a formula when a spreadsheet opens the file. Each output
escapes where it writes: the terminal through ``printable``, JSON through ``json_text``, CSV through
``csv_cell``, Markdown in ``harness.report.markdown`` and HTML in ``harness.report.html`` (``html_text``
before jinja2's own escaping).
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# Characters that change how a terminal shows what follows rather than showing themselves, or show
# nothing at all: C0 and C1 controls and DEL (escape sequences, carriage return, backspace, bell: Unicode
# category Cc), line and paragraph separators (Zl, Zp), and the format characters (Cf): the bidirectional
# embeddings, overrides and isolates ("Trojan source"), and the zero-width ones (U+200B zero-width space,
# U+200D joiner, U+2060 word joiner, U+FEFF, the soft hyphen U+00AD...), with which "random\u200b" shows
# as "random", a second label a reader cannot tell from the first.
_ACTING = ("Cc", "Cf", "Zl", "Zp")
_SHORT = {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


class _Escapes(dict):
    """A ``str.translate`` table from each acting character (``_ACTING``) to an escape, built as text is
    translated (a table of every code point would cost its import a second): ``short`` where given,
    else ``\\xXX`` under U+0100 and ``\\uXXXX`` (``\\UXXXXXXXX`` beyond the BMP) above, or ``\\uXXXX``
    for every one with ``as_json``. Other characters map to themselves."""

    def __init__(self, short: dict[int, str], as_json: bool = False):
        super().__init__(short)
        self.as_json = as_json

    def __missing__(self, code: int) -> str:
        character = chr(code)
        if unicodedata.category(character) not in _ACTING:
            escape = character
        elif self.as_json:  # beyond the BMP JSON escapes a surrogate pair, as json.dumps(ensure_ascii) does
            escape = json.dumps(character)[1:-1]
        elif code < 0x100:
            escape = f"\\x{code:02x}"
        else:
            escape = f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
        self[code] = escape
        return escape


_INVISIBLE = _Escapes(_SHORT)
# HTML lays out newlines and tabs itself (as space, or as breaks where a style keeps them): only the
# characters that act or show as nothing are escaped there.
_HTML_INVISIBLE = _Escapes({ord("\n"): "\n", ord("\t"): "\t", ord("\r"): "\\r"})
# The same characters as JSON escapes them: ``json.dumps`` escapes C0 itself (what is left of C0 after it
# is structure: the newlines and spaces of ``indent``), not DEL, C1, the separators or format characters.
_JSON_INVISIBLE = _Escapes({code: chr(code) for code in range(0x20)}, as_json=True)


def printable(text: object) -> str:
    """``text`` as a terminal shows it literally: every control, separator and format character written
    as its escape (``\\x1b``, ``\\n``, ``\\u202e``, ``\\u200b``), everything else as it is."""
    return str(text).translate(_INVISIBLE)


def html_text(text: str) -> str:
    """``text`` for an HTML page (before HTML's own escaping of ``<``, ``&`` and quotes): every control,
    separator and format character written as its escape, as ``printable`` writes it (a bidirectional
    override would reorder what a reader sees, a zero-width space hide itself), except newlines and
    tabs, which a page lays out."""
    return text.translate(_HTML_INVISIBLE)


def without_format_characters(text: str) -> str:
    """``text`` without its format characters (Unicode category Cf: zero-width spaces and joiners, the
    byte order mark, bidirectional controls...), which a renderer that does not escape them (HTML, an
    editor) shows as nothing: what a reader sees of ``text``, to tell two labels or a blank text apart."""
    return "".join(character for character in text if unicodedata.category(character) != "Cf")


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
