"""The HTML report's figures, drawn with matplotlib as inline SVG (no file, no network): mean removal
curves per explainer (from the store's curves), each cost column as horizontal interval bars on a log
scale, each randomization metric as bars grouped by model variant (both from a report document's family
tables, so they show exactly the numbers the tables show).

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's: no backend is switched, no global
figure is left open. User strings reach matplotlib as plain text (``$`` would start
mathtext) and leave it escaped in the SVG; the SVG's ids are prefixed so that many figures can share
one page.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from markupsafe import Markup
from matplotlib import ticker
from matplotlib.figure import Figure

from harness.entries import canonical_json, model_label
from harness.inert import html_text
from harness.report.document import Table

STYLE = {
    "svg.fonttype": "none",  # text stays text: searchable, small, escaped by the SVG writer
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 72,
}
WIDTH = 4.6  # inches
LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Plot:
    """One figure: its title and caption (plain text, escaped by the page) and the SVG itself."""

    title: str
    svg: Markup
    caption: str = ""
    kind: str = ""  # curves, intervals, grouped


def colours(names: Iterable[str]) -> dict[str, str]:
    """One stable colour per name (explainer labels), in order of first appearance."""
    cycle = matplotlib.colormaps["tab10"].colors
    result: dict[str, str] = {}
    for name in names:
        if name not in result:
            result[name] = matplotlib.colors.to_hex(cycle[len(result) % len(cycle)])
    return result


def plain(text: str) -> str:
    """A user string as matplotlib text: literal, never mathtext, its acting and invisible characters
    escaped as on the page (``harness.inert.html_text``: the SVG keeps text as text)."""
    return html_text(str(text)).replace("$", r"\$")


# -- removal curves ------------------------------------------------------------------------------------


def removal_curves(
    curves: Iterable[dict], cells: Sequence[dict], describe=lambda metric: ""
) -> dict[str, list[Plot]]:
    """Mean curve per explainer for each (dataset, model, variant, seed, metric), by the metric's family.

    ``curves``: ``Queries.curves`` rows; ``cells``: ``Queries.cells`` rows (labels and families);
    ``describe(metric name)``: a sentence on what the metric measures (the caption). Each explainer's
    line is the mean over its examples at each x, for every series a curve stores besides ``x`` (``y``,
    or e.g. ``morf`` and ``lerf``, one line style each). Curves whose x differ between examples (e.g.
    precision-recall curves) have no mean curve and are not drawn.
    """
    labels = {}
    for cell in cells:
        key = _curve_key(cell, json.loads(cell["explainer_params"]), json.loads(cell["metric_params"]))
        labels[key] = cell
    groups: dict[tuple, dict[str, MeanCurve]] = defaultdict(lambda: defaultdict(MeanCurve))
    families: dict[tuple, str] = {}
    titles: dict[tuple, str] = {}
    for row in curves:  # streamed: only the running sums are kept
        cell = labels.get(_curve_key(row, row["explainer_params"], row["metric_params"]))
        explainer = cell["explainer_label"] if cell else row["explainer"]
        metric = cell["metric_label"] if cell else row["metric"]
        group = (row["dataset"], row["model"], row["variant"], row["seed"], row["metric"], metric)
        groups[group][explainer].add(row["curve"])
        families[group] = cell["family"] if cell else "curves"
        model = model_label(row["model"], row["variant"])
        titles[group] = f"{row['dataset']} · {model} · seed {row['seed']} · {metric}"
    palette = colours(cell["explainer_label"] for cell in cells)
    result: dict[str, list[Plot]] = defaultdict(list)
    for group, by_explainer in groups.items():
        drawable = {explainer: mean for explainer, mean in by_explainer.items() if mean.defined}
        if not drawable:
            continue
        n = "/".join(map(str, sorted({mean.count for mean in drawable.values()})))
        parts = [
            describe(group[4]),
            f"Each line: an explainer's stored curve, averaged over its {n} examples at each x.",
        ]
        means = {explainer: (mean.x, mean.means()) for explainer, mean in drawable.items()}
        svg_text = _curves_svg(means, palette, f"{group}")
        result[families[group]].append(
            Plot(titles[group], svg_text, " ".join(p for p in parts if p), "curves")
        )
    return dict(result)


def _curve_key(row: dict, explainer_params, metric_params) -> tuple:
    return (
        row["dataset"], row["model"], row["variant"], row["explainer"], canonical_json(explainer_params),
        row["metric"], canonical_json(metric_params), row["seed"],
    )  # fmt: skip


class MeanCurve:
    """The running mean of one explainer's curves, series by series (``y``, or e.g. ``morf`` and
    ``lerf``), NaN and None left out; undefined once two curves disagree on x (no mean curve then)."""

    def __init__(self) -> None:
        self.x: np.ndarray | None = None
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.count = 0
        self.consistent = True

    @property
    def defined(self) -> bool:
        return self.consistent and self.x is not None and len(self.x) > 0 and bool(self.sums)

    def add(self, curve) -> None:
        if not self.consistent:
            return
        try:
            x = np.asarray(curve["x"], dtype=float)
        except (KeyError, TypeError, ValueError):
            self.consistent = False
            return
        if self.x is None:
            self.x = x
        elif x.shape != self.x.shape or not np.allclose(x, self.x, equal_nan=True):
            self.consistent = False
            return
        self.count += 1
        for name, values in curve.items():
            if name == "x" or not isinstance(values, list) or len(values) != len(x):
                continue
            try:
                y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
            except (TypeError, ValueError):
                continue
            defined = np.isfinite(y)
            self.sums[name] = self.sums.get(name, np.zeros(len(x))) + np.where(defined, y, 0.0)
            self.counts[name] = self.counts.get(name, np.zeros(len(x))) + defined

    def means(self) -> dict[str, np.ndarray]:
        """The mean of each series at each x; NaN (a gap in the line) where no curve has a value."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {name: self.sums[name] / self.counts[name] for name in self.sums}


def _curves_svg(means: dict, palette: dict[str, str], salt: str) -> Markup:
    def draw(axes) -> None:
        names = sorted({name for _, series in means.values() for name in series}, key=_series_order)
        for explainer, (x, series) in means.items():
            for name, y in series.items():
                style = LINE_STYLES[names.index(name) % len(LINE_STYLES)]
                label = explainer if name == "y" else f"{explainer} · {name}"
                axes.plot(
                    x, y, style, marker="o", markersize=2.5, linewidth=1.2, color=palette.get(explainer),
                    label=plain(label),
                )  # fmt: skip
        axes.set_xlabel("x (as the metric stores it)")
        axes.set_ylabel("mean over examples")
        axes.grid(alpha=0.3, linewidth=0.5)
        axes.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))

    return drawn(2.8, draw, salt)


def _series_order(name: str) -> tuple:
    return (name != "y", name)


# -- interval bars (cost) ------------------------------------------------------------------------------


def interval_bars(table: Table) -> list[Plot]:
    """One figure per column of a family table: a horizontal bar per explainer at its mean, with its
    bootstrap interval, on a log scale when every mean is positive (run times span decades)."""
    palette = colours(row[0].text for row in table.rows)
    plots = []
    for index, header in enumerate(table.headers):
        if header.names_rows or not header.data:
            continue
        bars = [(row[0].text, row[index].data) for row in table.rows if _has_mean(row[index].data)]
        if not bars:
            continue

        def draw(axes, bars=bars, header=header) -> None:
            means = np.array([data["mean"] for _, data in bars], dtype=float)
            log = bool((means > 0).all())
            positions = np.arange(len(bars))[::-1]
            colour = [palette[label] for label, _ in bars]
            axes.barh(positions, means, height=0.6, color=colour, alpha=0.85, log=log)
            low, high = _error_bars([data for _, data in bars], means)
            axes.errorbar(means, positions, xerr=[low, high], fmt="none", ecolor="#333", capsize=2, lw=0.8)
            axes.set_yticks(positions, [plain(label) for label, _ in bars])
            axes.set_xlabel(plain(f"{header.parts[-1]} (mean, 95 % bootstrap interval)"))
            if log:
                axes.set_xscale("log")
                # a label at each power of ten, and at 2 and 5 × 10^k on a short axis: no more
                left, right = axes.get_xlim()
                subs = (1.0, 2.0, 5.0) if math.log10(right / left) < 2 else (1.0,)
                axes.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
                axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
                axes.xaxis.set_minor_formatter(ticker.NullFormatter())
            axes.grid(axis="x", alpha=0.3, linewidth=0.5)

        svg_text = drawn(0.9 + 0.28 * len(bars), draw, f"bars-{header.text}")
        plots.append(Plot(header.text, svg_text, "", "intervals"))
    return plots


def rank_intervals(rows: Sequence[tuple[str, float, float, float]], title: str) -> Plot:
    """A leaderboard's explainers at their mean rank (a dot) with its 95 % bootstrap interval (whiskers),
    ``rows`` as (label, mean, low, high), best first and drawn at the top: overlapping whiskers are ranks
    the data cannot tell apart."""
    palette = colours(label for label, *_ in rows)

    def draw(axes) -> None:
        positions = np.arange(len(rows))[::-1]
        means = np.array([mean for _, mean, _, _ in rows], dtype=float)
        below = np.array([mean - low for _, mean, low, _ in rows], dtype=float)
        above = np.array([high - mean for _, mean, _, high in rows], dtype=float)
        axes.errorbar(means, positions, xerr=[below, above], fmt="none", ecolor="#555", capsize=3, lw=1)
        axes.scatter(means, positions, c=[palette[label] for label, *_ in rows], zorder=3, s=28)
        axes.set_yticks(positions, [plain(label) for label, *_ in rows])
        axes.set_xlabel("mean rank over the board's columns (1 = best), 95 % bootstrap interval")
        axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        axes.set_xlim(0.5, max(1.5, float(np.max(means + above)) + 0.5))
        axes.grid(axis="x", alpha=0.3, linewidth=0.5)

    return Plot(title, drawn(0.9 + 0.28 * len(rows), draw, f"ranks-{title}"), "", "ranks")


def _has_mean(data: dict | None) -> bool:
    return bool(data) and data.get("mean") is not None


def _error_bars(cells: list[dict], means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances below and above each mean to its interval's ends (0 where there is no interval)."""
    lows = np.array([np.nan if c.get("ci_low") is None else c["ci_low"] for c in cells], dtype=float)
    highs = np.array([np.nan if c.get("ci_high") is None else c["ci_high"] for c in cells], dtype=float)
    below = np.nan_to_num(np.clip(means - lows, 0, None), nan=0.0)
    above = np.nan_to_num(np.clip(highs - means, 0, None), nan=0.0)
    return below, above


# -- grouped bars (randomization) -----------------------------------------------------------------------


def grouped_bars(table: Table) -> list[Plot]:
    """One figure per (dataset, model, metric) of a family table: the model's variants side by side,
    one bar per explainer with its bootstrap interval (e.g. Jaccard@K% of Init#2 and of Untrained)."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, header in enumerate(table.headers):
        if not header.names_rows and header.data:
            groups[(header.data["dataset"], header.data["model"], header.data["metric"])].append(index)
    palette = colours(row[0].text for row in table.rows)
    plots = []
    for (dataset, model, metric), indices in groups.items():
        variants = [table.headers[i].data.get("variant", "default") for i in indices]
        rows = [row for row in table.rows if any(_has_mean(row[i].data) for i in indices)]
        if not rows:
            continue

        def draw(axes, rows=rows, indices=indices, variants=variants, metric=metric) -> None:
            width = 0.8 / len(rows)
            for k, row in enumerate(rows):
                places = [j for j, i in enumerate(indices) if _has_mean(row[i].data)]
                present = [row[indices[j]].data for j in places]
                means = np.array([data["mean"] for data in present], dtype=float)
                offsets = np.array(places, dtype=float) - 0.4 + width * (k + 0.5)
                label = row[0].text
                axes.bar(offsets, means, width=width * 0.92, color=palette[label], label=plain(label))
                low, high = _error_bars(present, means)
                axes.errorbar(
                    offsets, means, yerr=[low, high], fmt="none", ecolor="#333", capsize=1.5, lw=0.8
                )
            axes.set_xticks(range(len(variants)), [plain(f"variant {v}") for v in variants])
            axes.set_ylabel(plain(f"{metric} (mean, 95 % bootstrap interval)"))
            axes.grid(axis="y", alpha=0.3, linewidth=0.5)
            axes.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))

        title = f"{dataset} · {model} · {metric}"
        plots.append(Plot(title, drawn(2.6, draw, f"grouped-{title}"), "", "grouped"))
    return plots


def drawn(height: float, draw, salt: str) -> Markup:
    """A figure ``height`` inches high drawn by ``draw(axes)`` under the report's style, as SVG."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH, height))
        draw(figure.subplots())
        return svg(figure, salt)


# -- SVG -----------------------------------------------------------------------------------------------

_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)
_REFERENCE = re.compile(r'(\bid="|url\(#|href="#)([^")]+)')


def svg(figure, salt: str) -> Markup:
    """The figure as an inline ``<svg>`` element: no XML prologue, no date, ids prefixed by a hash of
    ``salt`` so that figures sharing a page never share an id (and the output is reproducible)."""
    buffer = io.StringIO()
    prefix = "f" + format(stable_hash(salt), "x")[:10]
    with matplotlib.rc_context({"svg.hashsalt": prefix}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = _METADATA.sub("", text[text.index("<svg") :])  # its RDF names web addresses; the page shows none
    return Markup(_REFERENCE.sub(lambda match: f"{match[1]}{prefix}-{match[2]}", text))


def stable_hash(text: str) -> int:
    """A hash that is the same in every process (``hash`` of a str is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
