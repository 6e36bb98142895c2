"""A report → one self-contained HTML page: the report document's sections (the same document the rich,
Markdown, CSV and JSON renderers walk) with coloured tables, the run's figures (``plots``) and token
heat-maps of a few examples. Inline CSS, no script, no external file: it opens from a USB stick.

The page elements (``page``, ``document_html``, ``table_html``) take any ``Document``, so the leaderboard
site is built from the same pieces. Every user-derived string goes through jinja2's autoescaping
(templates in ``templates/``); only ``Markup`` made here (or SVG written by matplotlib) is inserted as
HTML.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from harness.entries import canonical_json, model_label
from harness.inert import html_text
from harness.report.document import Cell, Document, Header, Section, Table, legend
from harness.report.plots import Plot, grouped_bars, interval_bars, removal_curves

if TYPE_CHECKING:
    from harness.report.analysis import Report
    from harness.store import Queries


def _inert(value: object) -> object:
    """What a template writes of a value: user text (a plain str, never ``Markup``) with its acting and
    invisible characters escaped (``harness.inert.html_text``), before autoescaping."""
    return html_text(value) if type(value) is str else value


ENV = Environment(
    loader=PackageLoader("harness.report", "templates"),
    autoescape=True,
    finalize=_inert,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

# Table cells: the better end of a column's scale is green, the worse end near white (ColorBrewer
# Greens, light half: dark text stays readable on every step). Heat-maps: ColorBrewer RdBu, red for
# negative scores, blue for positive, white at 0.
BETTER = ("#f7fcf5", "#e5f5e0", "#c7e9c0", "#a1d99b", "#74c476", "#41ab5d")
NEGATIVE = ("#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b")
POSITIVE = ("#f7f7f7", "#d1e5f0", "#92c5de", "#4393c3", "#2166ac")
GROUP_COLOURS = ("#e6550d", "#31a354", "#756bb1", "#636363", "#e7ba52", "#843c39", "#3182bd", "#de9ed6")
TONES = ("good", "bad", "warning", "error")
BEST = "bold"  # how this page marks a column's best cell, for the document's legend
PAIR_ROWS = {0: "premise", 1: "hypothesis"}  # a text pair's segments


# -- public page elements ---------------------------------------------------------------------------


def page(title: str, body: Markup | str, subtitle: str = "") -> str:
    """The page shell: ``<head>`` with the inline style sheet, the title (and a lighter subtitle), then
    ``body``. ``body`` is HTML only as ``Markup`` (``document_html``, ``table_html``...); a plain str is
    text and is escaped."""
    return ENV.get_template("page.html.j2").render(title=title, subtitle=subtitle, body=body)


def document_html(document: Document, figures: Mapping[int, Sequence[Plot]] | None = None) -> Markup:
    """Every section of ``document`` (not its heading: that is the page's title) as HTML: tables with
    their footers and timing lines, item lists, tones; the legend section says how to read the tables.
    ``figures``: plots drawn after the section of that index."""
    figures = figures or {}
    return Markup("").join(
        _section_html(section, _anchor(section, index)) + _macro("figures")(list(figures.get(index, ())))
        for index, section in enumerate(document.sections)
    )


def table_html(table: Table) -> Markup:
    """One table: headers (stacked parts), cells coloured by their column's metric (``Header.data``
    direction and range, ``Cell.data`` mean), best cells bold, marks, tones; its footer and measured
    lines under it."""
    return Markup(_macro("table")(_table_view(table)))


# -- the report ---------------------------------------------------------------------------------------


def html_report(report: Report, store: Queries, examples: int | Sequence[str] = 3) -> str:
    """The whole report of ``report``'s run as one HTML page: how to read it, the models, each family
    table followed by its figures, the example heat-maps (the first ``examples`` examples of every
    dataset × model × variant × seed, or the examples with these ids), then the document's remaining
    sections (expected orders, teacher vs student, training, notes, skipped, failures)."""
    document = report.document()
    run_id = report.run["run_id"]
    cells = store.cells(run_id)
    figures = _figures(document, store, run_id, cells)
    heatmaps = example_views(store.attributions(run_id), cells, store.models(run_id), examples)
    examples_block = (
        [Block("examples", "example attributions", Markup(_macro("examples")(heatmaps)))]
        if heatmaps.examples or heatmaps.missing
        else []
    )
    blocks: list[Block] = []
    for index, section in enumerate(document.sections):
        anchor = _anchor(section, index)
        if section.kind == "legend":  # the legend leads the page; the heat-maps take its place
            blocks += examples_block
            examples_block = []
            continue
        html = _section_html(section, anchor)
        if section.kind == "family":
            html += _macro("figures")(figures.pop(section.title, []))
        blocks.append(Block(anchor, _toc_title(section), html, section.tone))
    for family, plots in figures.items():  # curves of a family with no table (all its cells failed)
        blocks.append(Block(f"figures-{family}", f"{family} figures", Markup(_macro("figures")(plots))))
    blocks += examples_block  # a document without a legend section
    heading = document.heading
    body = ENV.get_template("report.html.j2").render(
        legend=_legend_view(document, bool(heatmaps.examples), heatmaps.groups), blocks=blocks
    )
    return page(heading.title, Markup(body), heading.state)


def heatmaps_html(
    rows: Iterable[dict], cells: Sequence[dict], models: Sequence[dict], examples: int | Sequence[str] = 3
) -> Markup:
    """The token heat-maps alone (see ``example_views``): ``rows`` from ``Queries.attributions``,
    ``cells`` and ``models`` from ``Queries.cells`` and ``Queries.models`` (explainer labels, class
    names)."""
    return Markup(_macro("examples")(example_views(rows, cells, models, examples)))


@dataclass
class Block:
    anchor: str
    title: str
    html: Markup
    tone: str | None = None


def _figures(document: Document, store: Queries, run_id: str, cells: list[dict]) -> dict[str, list[Plot]]:
    """The run's figures by family: mean removal curves; the cost tables' columns as interval bars; the
    randomization tables' metrics as bars grouped by variant. Only where the run has the data."""
    figures: dict[str, list[Plot]] = {}
    descriptions = {cell["metric"]: cell.get("metric_description") or "" for cell in cells}
    for family, plots in removal_curves(store.curves(run_id), cells, descriptions.get).items():
        figures.setdefault(family, []).extend(plots)
    for section in document.of_kind("family"):
        draw = {"cost": interval_bars, "randomization": grouped_bars}.get(section.title)
        for table in section.tables if draw else ():
            figures.setdefault(section.title, []).extend(draw(table))
    return {family: plots for family, plots in figures.items() if plots}


# -- sections and tables -------------------------------------------------------------------------------


def _anchor(section: Section, index: int) -> str:
    return f"{section.kind}-{index}"


def _toc_title(section: Section) -> str:
    if section.kind == "models":
        return "models"
    return section.title or section.lead.split(":")[0] or section.kind


def _better(t: float) -> str:
    return ramp(BETTER, t)


def _section_html(section: Section, anchor: str) -> Markup:
    view = {
        "kind": section.kind,
        "anchor": anchor,
        "title": section.title,
        "note": section.note,
        "lead": section.lead,
        "lines": section.items,
        "tone": section.tone if section.tone in TONES else None,
        "tables": [_table_view(table) for table in section.tables],
        "legend": legend(BEST) if section.kind == "legend" else "",
    }
    return Markup(_macro("section")(view))


def _macro(name: str):
    return getattr(ENV.get_template("elements.html.j2").module, name)


@dataclass
class CellView:
    text: str
    tag: str = "td"
    classes: str = ""
    style: str = ""
    position: float | None = None  # where the mean sits on the better scale: 0 worst, 1 best
    title: str = ""


def _table_view(table: Table) -> dict:
    columns = [_column_scale(table, index, header) for index, header in enumerate(table.headers)]
    rows = []
    for row in table.rows:
        rows.append(
            [
                _cell_view(cell, header, scale)
                for cell, header, scale in zip(row, table.headers, columns, strict=False)
            ]
        )
    headers = [
        {"parts": header.parts, "numeric": header.numeric, "title": _direction_title(header)}
        for header in table.headers
    ]
    return {"headers": headers, "rows": rows, "footer": table.footer, "measured": table.measured}


def _direction_title(header: Header) -> str:
    data = header.data or {}
    direction = data.get("direction")
    if direction not in ("higher", "lower"):
        return ""
    low, high = _range(data)
    bounds = f"; range [{_bound(low, '−∞')}, {_bound(high, '∞')}]" if "range" in data else ""
    return f"{direction} is better{bounds}"


def _bound(value, infinite: str) -> str:
    return infinite if value is None else f"{value:g}"


def _range(data: Mapping) -> tuple[float | None, float | None]:
    """A column's declared [low, high], None for an unbounded or missing end."""
    bounds = data.get("range") or (None, None)
    try:
        low, high = bounds
    except (TypeError, ValueError):
        return None, None
    return (low if _finite(low) else None), (high if _finite(high) else None)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Scale:
    """How a column's means map to the better scale: [low, high] and which end is better."""

    low: float
    high: float
    direction: str
    observed: bool  # the column's observed min..max, not the metric's declared range


def _column_scale(table: Table, index: int, header: Header) -> Scale | None:
    data = header.data or {}
    direction = data.get("direction")
    if header.names_rows or direction not in ("higher", "lower"):
        return None
    low, high = _range(data)
    if low is not None and high is not None and high > low:
        return Scale(low, high, direction, observed=False)
    means = [m for m in (_mean(row[index]) for row in table.rows if index < len(row)) if m is not None]
    if len(means) < 2 or max(means) == min(means):
        return None  # nothing to compare: no colour says more than a colour would
    return Scale(min(means), max(means), direction, observed=True)


def _mean(cell: Cell) -> float | None:
    mean = (cell.data or {}).get("mean")
    return mean if _finite(mean) else None


def position(mean: float, low: float, high: float, direction: str) -> float:
    """Where ``mean`` sits between ``low`` and ``high`` on the better scale: 1 at the better end (the
    high end when higher is better, the low end when lower is), 0 at the worse; clipped to [0, 1]."""
    t = min(1.0, max(0.0, (mean - low) / (high - low)))
    return t if direction == "higher" else 1.0 - t


def _cell_view(cell: Cell, header: Header, scale: Scale | None) -> CellView:
    classes = ["num"] if header.numeric else []
    if cell.best:
        classes.append("best")
    if cell.tone in TONES:
        classes.append(f"tone-{cell.tone}")
    if header.names_rows:
        return CellView(cell.marked, "th", " ".join(classes))
    mean = _mean(cell)
    if scale is None or mean is None:
        if cell.text.startswith("—"):
            classes.append("missing")
        return CellView(cell.marked, classes=" ".join(classes))
    t = position(mean, scale.low, scale.high, scale.direction)
    background = ramp(BETTER, t)
    where = "the column's observed min–max" if scale.observed else "the metric's range"
    title = f"{t:.0%} of the way to the better end of {where}"
    return CellView(
        cell.marked, classes=" ".join([*classes, "scaled"]),
        style=f"background:{background};color:{text_colour(background)}", position=round(t, 4), title=title,
    )  # fmt: skip


# -- colours ------------------------------------------------------------------------------------------


def ramp(stops: Sequence[str], t: float) -> str:
    """The colour at ``t`` ∈ [0, 1] along ``stops`` (hex), linearly interpolated in sRGB."""
    t = min(1.0, max(0.0, t)) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    a, b = _rgb(stops[i]), _rgb(stops[i + 1])
    f = t - i
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


def diverging(score: float, scale: float) -> str:
    """A score's colour on the heat-map scale: white at 0, red (negative) or blue (positive) at ±scale."""
    if scale <= 0:
        return POSITIVE[0]
    return ramp(POSITIVE if score >= 0 else NEGATIVE, abs(score) / scale)


def text_colour(background: str) -> str:
    """Black or white text, whichever contrasts more with ``background`` (WCAG relative luminance)."""
    luminance = _luminance(background)
    return "#111" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "#fff"


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def _luminance(colour: str) -> float:
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = map(linear, _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# -- heat-maps ----------------------------------------------------------------------------------------


@dataclass
class TokenView:
    text: str
    kind: str  # tok (scored: one coloured element), special ([CLS], [SEP]...), unscored (no finite score)
    joined: bool  # continues the previous token's word: no space before it
    score: float | None = None
    style: str = ""
    group: int | None = None
    group_colour: str = ""
    group_score: float | None = None  # the group's importance, when the explainer gives one


@dataclass
class ExplainerView:
    label: str
    note: str  # the explained class, when it is not the predicted one
    max_abs: float
    segments: list[tuple[str, list[TokenView]]]  # (row name, tokens): one row, or two for a text pair
    groups: int  # how many groups the explainer marked


@dataclass
class ExampleView:
    anchor: str
    title: str
    example_id: str
    gold: str
    predicted: str
    correct: bool | None
    scale: float
    scale_stops: list[str]
    explainers: list[ExplainerView]


@dataclass
class HeatmapsView:
    examples: list[ExampleView] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requested ids with no attribution in the run
    groups: bool = False  # some explainer marked token groups


def example_views(
    rows: Iterable[dict],
    cells: Sequence[dict],
    models: Sequence[dict],
    examples: int | Sequence[str] = 3,
) -> HeatmapsView:
    """The heat-maps' content: for each (dataset, model, variant, seed), its first ``examples`` example
    ids in store order (or the given ids), each with every explainer's attribution, in the suite's
    explainer order. ``rows``: ``Queries.attributions`` (streamed: only the chosen examples are kept)."""
    if isinstance(examples, str):
        examples = [examples]
    wanted = None if isinstance(examples, int) else list(dict.fromkeys(examples))
    limit = examples if isinstance(examples, int) else len(wanted)
    if limit <= 0:
        return HeatmapsView()
    labels = {
        _explainer_key(cell, json.loads(cell["explainer_params"])): cell["explainer_label"] for cell in cells
    }
    order = {label: i for i, label in enumerate(dict.fromkeys(cell["explainer_label"] for cell in cells))}
    names = {(m["dataset"], m["model"], m["variant"], m["seed"]): m.get("labels") for m in models}
    chosen: dict[tuple, OrderedDict[str, list[dict]]] = OrderedDict()
    for row in rows:
        group = (row["dataset"], row["model"], row["variant"], row["seed"])
        ids = chosen.setdefault(group, OrderedDict())
        example_id = row["example_id"]
        if wanted is not None:
            if example_id not in wanted:
                continue
        elif example_id not in ids and len(ids) >= limit:
            continue
        ids.setdefault(example_id, []).append(row)
    views, found = [], set()
    for group, ids in chosen.items():
        dataset, model, variant, seed = group
        keys = ids if wanted is None else [i for i in wanted if i in ids]
        for example_id in keys:
            found.add(example_id)
            explained = sorted(
                ids[example_id],
                key=lambda row: order.get(
                    labels.get(_explainer_key(row, row["explainer_params"])), len(order)
                ),
            )
            views.append(
                _example_view(
                    f"{dataset} · {model_label(model, variant)} · seed {seed}", example_id, explained, labels,
                    names.get(group), len(views),
                )
            )  # fmt: skip
    missing = [] if wanted is None else [i for i in wanted if i not in found]
    return HeatmapsView(views, missing, any(e.groups for v in views for e in v.explainers))


def _explainer_key(row: Mapping, params) -> tuple:
    return (row["dataset"], row["model"], row["variant"], row["explainer"], canonical_json(params))


def _class_name(index: int | None, names: Sequence[str] | None) -> str:
    if index is None:
        return "?"
    if names and 0 <= index < len(names):
        return str(names[index])
    return f"class {index}"


def _example_view(
    title: str, example_id: str, rows: list[dict], labels: Mapping, names, number: int
) -> ExampleView:
    first = rows[0]
    scored = [
        abs(score)
        for row in rows
        for score, segment in zip(row["scores"], _segments(row), strict=False)
        if segment >= 0 and _finite(score)
    ]
    scale = max(scored, default=0.0)
    predicted = first.get("predicted")
    gold_index = first.get("gold_label")
    gold = "not stored" if gold_index is None else _class_name(gold_index, names)
    probability = _probability_of(first, predicted)
    predicted_text = _class_name(predicted, names) + (
        "" if probability is None else f", p = {probability:.3f}"
    )
    explainers = []
    for row in rows:
        label = labels.get(_explainer_key(row, row["explainer_params"]), row["explainer"])
        target = row.get("target")
        note = "" if target == row.get("predicted") else f"explains {_class_name(target, names)}"
        explainers.append(_explainer_view(label, note, row, scale))
    correct = None if gold_index is None or predicted is None else gold_index == predicted
    stops = [diverging(s * scale, scale) for s in (-1, -0.5, 0, 0.5, 1)]
    return ExampleView(
        f"example-{number}", title, example_id, gold, predicted_text, correct, scale, stops, explainers
    )


def _probability_of(row: Mapping, index: int | None) -> float | None:
    """The model's probability of class ``index`` on the full input: from its log-probabilities, or the
    attribution's probability when it explains that class."""
    log_probabilities = row.get("log_probabilities")
    if index is not None and log_probabilities and 0 <= index < len(log_probabilities):
        return math.exp(log_probabilities[index])
    if index is not None and row.get("target") == index and _finite(row.get("probability")):
        return row["probability"]
    return None


def _segments(row: Mapping) -> list[int]:
    segments = row.get("segments")
    return list(segments) if segments else [0] * len(row["tokens"])


def _explainer_view(label: str, note: str, row: Mapping, scale: float) -> ExplainerView:
    tokens, scores, segments = row["tokens"], row["scores"], _segments(row)
    word_ids = row.get("word_ids") or [None] * len(tokens)
    groups = row.get("groups") or [-1] * len(tokens)
    group_ids = sorted({g for g in groups if isinstance(g, int) and g >= 0})
    by_segment: dict[int, list[TokenView]] = {}
    previous: tuple | None = None  # (segment, word id) of the previous real token
    for i, token in enumerate(tokens):
        segment = segments[i] if i < len(segments) else 0
        score = scores[i] if i < len(scores) else None
        word = word_ids[i] if i < len(word_ids) else None
        # special tokens sit with the segment they close ([SEP]) or open ([CLS]: the first)
        place = segment if segment >= 0 else (previous[0] if previous else 0)
        text, continues = _display(token)
        joined = segment >= 0 and (
            continues or (word is not None and previous is not None and previous == (segment, word))
        )
        if segment < 0:
            view = TokenView(str(token), "special", False)
        elif not _finite(score):
            view = TokenView(text, "unscored", joined)
        else:
            background = diverging(score, scale)
            view = TokenView(
                text, "tok", joined, score, f"background:{background};color:{text_colour(background)}"
            )
            group = groups[i] if i < len(groups) else -1
            if isinstance(group, int) and group >= 0:
                view.group = group
                view.group_colour = GROUP_COLOURS[group_ids.index(group) % len(GROUP_COLOURS)]
                group_scores = row.get("group_scores") or []
                if group < len(group_scores) and _finite(group_scores[group]):
                    view.group_score = group_scores[group]
        if segment >= 0:
            previous = (segment, word)
        by_segment.setdefault(place, []).append(view)
    pair = len([s for s in by_segment if s in PAIR_ROWS]) > 1
    rows = [
        (PAIR_ROWS.get(s, f"segment {s}") if pair else "", views) for s, views in sorted(by_segment.items())
    ]
    own = [abs(s) for s, g in zip(scores, segments, strict=False) if g >= 0 and _finite(s)]
    return ExplainerView(label, note, max(own, default=0.0), rows, len(group_ids))


def _display(token) -> tuple[str, bool]:
    """A token as shown, and whether its text marks it as the continuation of a word (WordPiece's
    ``##``); SentencePiece's ``▁`` and byte-level BPE's ``Ġ`` mark a word's start and are dropped."""
    text = str(token)
    if text.startswith("##") and len(text) > 2:
        return text[2:], True
    if text[:1] in ("▁", "Ġ") and len(text) > 1:
        return text[1:], False
    return text, False


# -- the legend ---------------------------------------------------------------------------------------


def _legend_view(document: Document, heatmaps: bool, groups: bool) -> dict:
    sections = document.of_kind("family")
    footers = list(dict.fromkeys(line for s in sections for t in s.tables for line in t.footer))
    return {
        "cells": legend(BEST),
        "better": [ramp(BETTER, t) for t in (0, 0.25, 0.5, 0.75, 1)],
        "diverging": [diverging(s, 1.0) for s in (-1, -0.5, 0, 0.5, 1)] if heatmaps else [],
        "groups": groups,
        "tests": bool(footers),
    }


ENV.globals["better"] = _better
