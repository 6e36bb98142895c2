"""The HTML report: one self-contained page built from the report document (tables coloured by each
metric's direction and range), the run's figures and token heat-maps of a few examples. Tested on one
small stored run (the bag-of-words model on two tiny datasets: single texts, one of them holding
``<script>alert(1)</script>``, and text pairs; an explainer labelled with the same string), and on
hand-made tables and attribution rows for what a small run does not have."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from conftest import TINY_DATA

from harness.registry import get_registry
from harness.report import Cell, Header, Report, Section, Table
from harness.report.document import Document, Heading
from harness.report.html import document_html, heatmaps_html, html_report, page, position, table_html
from harness.report.plots import grouped_bars, interval_bars, removal_curves
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite

SCRIPT = "<script>alert(1)</script>"
EXAMPLES = 2


# -- the small run ---------------------------------------------------------------------------------------


def small_run(root: Path) -> tuple[Report, Store, str]:
    """A run of three explainers (one labelled ``SCRIPT``) on two tiny datasets: single sentences with
    ``SCRIPT`` in a test text, and sentence pairs; bag-of-words model, ERASER metrics and runtime."""
    rows = [json.loads(line) for line in TINY_DATA.read_text().splitlines() if line.strip()]
    single, pairs = root / "single", root / "pairs"
    for folder in (single, pairs):
        folder.mkdir(parents=True)
    _jsonl(single / "train.jsonl", rows[8:])
    _jsonl(single / "test.jsonl", [{**rows[0], "id": "xss", "text": f"{SCRIPT} was great ."}, *rows[1:4]])
    as_pairs = [
        {
            "id": r["id"],
            "text_a": r["text"],
            "text_b": "i agree .",
            "label": r["label"],
            "label_name": r["label_name"],
        }
        for r in rows
    ]
    _jsonl(pairs / "train.jsonl", as_pairs[8:])
    _jsonl(pairs / "test.jsonl", as_pairs[:3])
    suite = root / "suite.yaml"
    suite.write_text(f"""name: html
version: 1
seeds: [0]
device: cpu
batch_size: 4
datasets:
  - name: jsonl
    label: single
    params: {{path: {single}}}
  - name: jsonl
    label: pairs
    params: {{path: {pairs}}}
models:
  - name: bow
    params: {{dim: 8, max_epochs: 10}}
explainers:
  - name: random
    label: "{SCRIPT}"
  - name: saliency
  - name: occlusion
metrics:
  - name: comprehensiveness
    params: {{bins: [10, 50]}}
  - name: sufficiency
    params: {{bins: [10, 50]}}
  - name: runtime
""")
    options = RunOptions(results_dir=root / "results", cache_dir=root / "cache", progress=False)
    result = Runner(load_suite(suite, get_registry()), options).run()
    assert not result.failed
    store = Store(root / "results")
    return Report.build(store, result.run_id), store, result.run_id


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def scored_tokens(store: Store, run_id: str) -> dict[tuple[str, str], int]:
    """(dataset, example id) → how many tokens all its explainers scored (real tokens, finite scores)."""
    counts: dict[tuple[str, str], int] = {}
    for row in store.attributions(run_id):
        n = sum(s >= 0 for s in row["segments"])
        counts[(row["dataset"], row["example_id"])] = counts.get((row["dataset"], row["example_id"]), 0) + n
    return counts


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return small_run(tmp_path_factory.mktemp("html-report"))


@pytest.fixture(scope="module")
def html(run) -> str:
    report, store, _ = run
    return html_report(report, store, examples=EXAMPLES)


# -- a small HTML reader ---------------------------------------------------------------------------------


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None = None):
        self.tag, self.attrs, self.parent, self.children, self.parts = tag, attrs, parent, [], []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        return "".join(part if isinstance(part, str) else part.text for part in self.parts)

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes):
                found.append(child)
            found += child.all(tag, cls)
        return found


class Tree(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "col", "path", "use", "rect", "stop"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("#root", {})
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        self.node.parts.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        self.node.parts.append(node)

    def handle_endtag(self, tag):
        node = self.node
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.node = node.parent

    def handle_data(self, data):
        self.node.parts.append(data)


def tree(text: str) -> Node:
    return Tree(text).root


# -- the page --------------------------------------------------------------------------------------------


def test_the_page_is_one_file_that_needs_nothing_from_a_network(html):
    assert html.startswith("<!DOCTYPE html>")
    assert "<style>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"<link\b", html, re.IGNORECASE)
    assert not re.search(r"<script\b", html, re.IGNORECASE)
    assert "url(http" not in html and "@import" not in html
    addresses = re.findall(r"""[\w:-]*=["']https?://[^"']*""", html)
    assert {address.split("=")[0] for address in addresses} <= {"xmlns", "xmlns:xlink"}  # names, not loads


def test_a_script_in_a_label_and_in_a_dataset_text_stays_text(html):
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script" not in html.lower()
    page_tree = tree(html)
    row_names = [th.text for table in page_tree.all("table", "report-table") for th in table.all("th")]
    assert SCRIPT in row_names  # the explainer's label, in the family tables
    heat_names = [th.text.split("max |s|")[0].strip() for th in page_tree.all("table", "heat")[0].all("th")]
    assert SCRIPT in heat_names
    [example] = [t for t in page_tree.all("table", "heat") if t.attrs["data-example"] == "xss"]
    tokens = [span.text for span in example.all("span", "tok")]
    assert {"<", "script", ">", "/"} <= set(tokens)  # the text's tokens, shown as themselves
    assert f">{escaped}<" in html or escaped in html
    for svg in re.findall(r"<svg.*?</svg>", html, re.DOTALL):
        assert "<script" not in svg


def test_each_family_table_has_one_row_per_explainer_and_one_column_per_dataset_and_metric(run, html):
    report, _, _ = run
    tables = {
        section.attrs["id"]: section.all("table", "report-table")[0]
        for section in tree(html).all("section", "kind-family")
    }
    assert len(tables) == len(report.tables) == 2
    for table in tables.values():
        rows = table.all("tbody")[0].all("tr")
        assert [row.all("th")[0].text for row in rows] == [SCRIPT, "saliency", "occlusion"]
    faithfulness = next(t for t in tables.values() if "comprehensiveness" in t.text)
    assert len(faithfulness.all("thead")[0].all("th")) == 1 + 2 * 2  # explainer + 2 datasets × 2 metrics


def test_the_heat_maps_show_the_first_examples_with_one_coloured_token_per_scored_token(run, html):
    _, store, run_id = run
    counts = scored_tokens(store, run_id)
    heat = tree(html).all("table", "heat")
    assert len(heat) == 2 * EXAMPLES  # each dataset's first examples, bag-of-words default variant
    for table in heat:
        dataset = "pairs" if table.all("td", "segment-name") else "single"
        tokens = table.all("span", "tok")
        assert len(tokens) == counts[(dataset, table.attrs["data-example"])]
        assert all("background:#" in span.attrs["style"] for span in tokens)
        assert len(table.all("th")) == 3  # one per explainer


def test_a_text_pair_shows_a_premise_and_a_hypothesis_row_per_explainer(html):
    [pair] = [t for t in tree(html).all("table", "heat") if t.all("td", "segment-name")][:1]
    assert [td.text for td in pair.all("td", "segment-name")] == ["premise", "hypothesis"] * 3
    hypotheses = [row for row in pair.all("tr") if row.all("td", "segment-name")[0].text == "hypothesis"]
    assert all(row.all("td", "tokens")[0].text.strip().startswith("i agree") for row in hypotheses)
    assert "[SEP]" in [span.text for span in pair.all("span", "special")]


def test_the_heat_maps_give_gold_and_predicted_class_names(html):
    meta = tree(html).all("p", "example-meta")[0].text
    assert re.search(r"gold: (positive|negative|not stored)", meta)
    assert re.search(r"predicted: (positive|negative), p = 0\.\d{3}", meta)


def test_removal_curves_and_runtime_bars_are_drawn_when_the_run_has_them(html):
    figures = tree(html).all("figure", "plot")
    kinds = [fig.classes[1] for fig in figures]
    assert kinds.count("plot-curves") == 2 * 2  # 2 datasets × (comprehensiveness, sufficiency)
    assert kinds.count("plot-intervals") == 2  # runtime, per dataset
    assert "plot-grouped" not in kinds  # no randomization table
    assert all(fig.all("svg") for fig in figures)
    assert len(set(re.findall(r'\bid="([^"]+)"', html))) == len(re.findall(r'\bid="([^"]+)"', html))


def test_a_curve_caption_says_what_the_run_stored_of_its_metric_not_what_the_registry_says_today(run):
    """The page of a stored run reads the metric's description from the run (cells.metric_description),
    never from today's plugin registry: a plugin since changed or uninstalled cannot change the page."""
    report, store, run_id = run
    stored = {cell["metric"]: cell["metric_description"] for cell in store.cells(run_id)}
    assert stored["comprehensiveness"] == get_registry().get("metric", "comprehensiveness").description
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute(
            "UPDATE cells SET metric_description = 'As the run was told.' WHERE run_id = ? AND metric = ?",
            (run_id, "comprehensiveness"),
        )
    try:
        captions = [fig.text for fig in tree(html_report(report, store, examples=0)).all("figure", "plot")]
    finally:
        with closing(sqlite3.connect(store.path)) as db, db:
            db.execute(
                "UPDATE cells SET metric_description = ? WHERE run_id = ? AND metric = ?",
                (stored["comprehensiveness"], run_id, "comprehensiveness"),
            )
    assert sum("As the run was told." in caption for caption in captions) == 2  # one curve per dataset


def test_every_figure_is_closed(run):
    report, store, _ = run
    html_report(report, store, examples=0)
    assert plt.get_fignums() == []


def test_given_example_ids_are_shown_and_unknown_ones_said(run):
    report, store, _ = run
    page_tree = tree(html_report(report, store, examples=["xss", "nope"]))
    assert [t.attrs["data-example"] for t in page_tree.all("table", "heat")] == ["xss"]
    assert "nope" in page_tree.all("section", "kind-examples")[0].text


def test_without_examples_the_page_has_no_heat_map(run):
    report, store, _ = run
    assert "kind-examples" not in html_report(report, store, examples=0)


# -- tables ----------------------------------------------------------------------------------------------


def column(direction: str, value_range=None) -> Header:
    data = {"dataset": "d", "model": "m", "variant": "default", "metric": "x", "direction": direction}
    if value_range is not None:
        data["range"] = value_range
    return Header(("d · m", "x"), numeric=True, data=data)


def cell(mean: float, **flags) -> Cell:
    return Cell(f"{mean}", data={"mean": mean, "ci_low": mean, "ci_high": mean, "n": 3}, **flags)


def positions(table: Table) -> dict[str, float]:
    rows = tree(table_html(table)).all("tbody")[0].all("tr")
    return {row.all("th")[0].text: float(row.all("td")[0].attrs["data-better"]) for row in rows}


def test_a_better_mean_gets_the_better_end_of_the_scale_and_lower_is_better_reverses_it():
    assert position(0.9, 0.0, 1.0, "higher") == pytest.approx(0.9)
    assert position(0.9, 0.0, 1.0, "lower") == pytest.approx(0.1)
    names = Header(("explainer",), names_rows=True)
    for direction, better in (("higher", "b"), ("lower", "a")):
        for value_range in (None, [0.0, 1.0], [0.0, None], [float("-inf"), float("inf")]):
            table = Table(
                [names, column(direction, value_range)], [[Cell("a"), cell(0.2)], [Cell("b"), cell(0.6)]]
            )
            scale = positions(table)
            assert scale[better] > scale[{"a": "b", "b": "a"}[better]], (direction, value_range)


def test_a_finite_range_places_means_on_it_and_an_open_one_on_the_observed_means():
    names = Header(("explainer",), names_rows=True)
    rows = [[Cell("a"), cell(0.2)], [Cell("b"), cell(0.6)]]
    assert positions(Table([names, column("higher", [0.0, 1.0])], rows)) == {"a": 0.2, "b": 0.6}
    assert positions(Table([names, column("higher", [0.0, None])], rows)) == {"a": 0.0, "b": 1.0}


def test_the_better_end_is_darker_and_text_stays_readable():
    names = Header(("explainer",), names_rows=True)
    html = table_html(
        Table([names, column("higher", [0, 1])], [[Cell("a"), cell(0.0)], [Cell("b"), cell(1.0)]])
    )
    worse, better = re.findall(r"background:(#[0-9a-f]{6});color:(#[0-9a-f]+)", html)
    assert sum(int(better[0][i : i + 2], 16) for i in (1, 3, 5)) < sum(
        int(worse[0][i : i + 2], 16) for i in (1, 3, 5)
    )
    assert worse[1] == better[1] == "#111"


def test_best_marks_tones_footers_skipped_and_missing_cells():
    names = Header(("explainer",), names_rows=True)
    table = Table(
        [names, column("higher"), Header(("verdict",))],
        [
            [Cell("a"), cell(0.7, best=True), Cell("holds", tone="good")],
            [Cell("b"), cell(0.1, significant=True, timed_elsewhere=True), Cell("reversed", tone="bad")],
            [Cell("c"), Cell("skipped", tone="warning"), Cell("—")],
            [Cell("d"), Cell("—"), Cell("failed", tone="error")],
        ],
        footer=["† a test <b>"],
        measured=["‡ timings measured elsewhere"],
    )
    rows = tree(table_html(table)).all("tbody")[0].all("tr")
    a, b, c, d = ([td for td in row.all("td")] for row in rows)
    assert "best" in a[0].classes and "tone-good" in a[1].classes
    assert b[0].text == "0.1 † ‡" and "tone-bad" in b[1].classes
    assert c[0].text == "skipped" and "tone-warning" in c[0].classes and "data-better" not in c[0].attrs
    assert d[0].text == "—" and "missing" in d[0].classes and "data-better" not in d[0].attrs
    assert "tone-error" in d[1].classes
    html = table_html(table)
    assert "† a test &lt;b&gt;" in html and "‡ timings measured elsewhere" in html


def test_any_document_renders_with_its_items_tones_and_legend():
    table = Table([Header(("explainer",), names_rows=True), column("lower")], [[Cell(SCRIPT), cell(1.0)]])
    document = Document(
        Heading("board", "1", "r", "complete", "cpu"),
        [
            Section("family", "faithfulness", tables=[table]),
            Section("notes", "notes on cells", items=[f"a note {SCRIPT}"], tone="warning"),
            Section("legend"),
            Section("failures", lead="1 cell(s) failed:", items=["x: boom"], tone="error"),
        ],
    )
    html = page("board <1>", document_html(document), subtitle="sub")
    sections = tree(html).all("section")
    assert [s.classes[1] for s in sections] == ["kind-family", "kind-notes", "kind-legend", "kind-failures"]
    assert "tone-box-warning" in sections[1].classes and "tone-box-error" in sections[3].classes
    assert "bold" in sections[2].text  # the document's legend, with this page's mark for the best
    assert "<script" not in html and "board &lt;1&gt;" in html


def test_a_plain_string_body_is_text():
    assert "&lt;b&gt;hi&lt;/b&gt;" in page("t", "<b>hi</b>")


# -- heat-maps from hand-made rows ----------------------------------------------------------------------


def attribution_row(tokens, scores, segments=None, **fields) -> dict:
    segments = segments or [-1 if t.startswith("[") else 0 for t in tokens]
    word_ids, word = [], -1
    for token, segment in zip(tokens, segments, strict=True):
        if segment < 0:
            word_ids.append(None)
            continue
        word += not token.startswith("##")
        word_ids.append(word)
    return {
        "dataset": "d", "model": "m", "variant": "default", "explainer": "e", "explainer_params": {},
        "seed": 0, "example_id": "x1", "tokens": tokens, "scores": scores, "segments": segments,
        "word_ids": word_ids, "target": 1, "predicted": 1, "probability": 0.8, "log_probabilities": None,
        **fields,
    }  # fmt: skip


def test_word_pieces_join_their_word_and_special_tokens_are_dimmed_and_uncoloured():
    row = attribution_row(["[CLS]", "play", "##ing", "well", "[SEP]"], [9.0, 0.5, -0.25, 0.1, 9.0])
    html = heatmaps_html([row], [], [])
    [tokens] = tree(html).all("td", "tokens")
    assert [span.text for span in tokens.all("span", "tok")] == ["play", "ing", "well"]
    assert [span.text for span in tokens.all("span", "special")] == ["[CLS]", "[SEP]"]
    assert "play</span><span" in html  # no space inside a word
    assert "scale <b>−0.5</b>" in html  # special tokens' scores do not set the scale


def test_an_example_without_gold_label_or_class_names_says_so():
    html = heatmaps_html(
        [attribution_row(["good"], [1.0])],
        [],
        [{"dataset": "d", "model": "m", "variant": "default", "seed": 0}],
    )
    meta = tree(html).all("p", "example-meta")[0].text
    assert "gold: not stored" in meta and "predicted: class 1, p = 0.800" in meta


def test_class_names_and_gold_label_are_used_when_stored():
    model = {"dataset": "d", "model": "m", "variant": "default", "seed": 0, "labels": ["neg", "pos"]}
    row = attribution_row(["good"], [1.0], gold_label=0, log_probabilities=[-0.2, -1.7])
    meta = tree(heatmaps_html([row], [], [model])).all("p", "example-meta")[0].text
    assert "gold: neg" in meta and "predicted: pos, p = 0.183" in meta and "wrong" in meta


def test_one_scale_is_shared_by_every_explainer_of_an_example():
    rows = [
        attribution_row(["a", "b"], [0.5, -0.5]),
        {**attribution_row(["a", "b"], [2.0, 0.0]), "explainer": "f"},
    ]
    html = heatmaps_html(rows, [], [])
    assert "scale <b>−2</b>" in html
    styles = [span.attrs["style"] for span in tree(html).all("span", "tok")]
    assert styles[0] != styles[1] and styles[3].startswith("background:#f7f7f7")


def test_explainer_labels_come_from_the_cells():
    cells = [
        {"dataset": "d", "model": "m", "variant": "default", "explainer": "e", "explainer_params": "{}",
         "explainer_label": f"e {SCRIPT}"}
    ]  # fmt: skip
    html = heatmaps_html([attribution_row(["a"], [1.0])], cells, [])
    assert "e &lt;script&gt;" in html and "<script" not in html


def test_groups_are_marked_per_token_and_explained_in_the_legend(run):
    row = attribution_row(["a", "b", "c"], [1.0, 0.5, -1.0], groups=[0, -1, 0], group_scores=[0.7])
    html = heatmaps_html([row], [], [])
    grouped = tree(html).all("span", "grouped")
    assert [span.text for span in grouped] == ["a0", "c0"]
    assert "importance 0.7" in grouped[0].attrs["title"]

    report, store, _ = run

    class WithGroups:
        def __getattr__(self, name):
            return getattr(store, name)

        def attributions(self, run_id):
            for row in store.attributions(run_id):
                yield {**row, "groups": [i % 2 for i in range(len(row["tokens"]))]}

    page_html = html_report(report, WithGroups(), examples=1)
    assert "token groups" in tree(page_html).all("section", "how-to-read")[0].text


# Characters that act or show as nothing: a bidirectional override, a zero-width space, the C1 control
# that starts an escape sequence, an escape sequence.
INVISIBLE_LABEL = "r\u202eand\u200bom\x9b\x1b[2J"


def test_a_label_s_invisible_and_acting_characters_are_shown_as_escapes_on_the_page():
    """As in the terminal and in Markdown: "ran\u202edom" must not show reordered, nor "random\u200b" as
    "random"; newlines and tabs stay the page's to lay out."""
    names = Header(("explainer",), names_rows=True)
    table = Table(
        [names, column("higher")], [[Cell(INVISIBLE_LABEL), cell(0.5)], [Cell("a\tb\nc"), cell(0.1)]]
    )
    html = page("run r\u202e1", table_html(table))
    for character in ("\u202e", "\u200b", "\x9b", "\x1b"):
        assert character not in html
    assert "r\\u202eand\\u200bom\\x9b\\x1b[2J" in html and "run r\\u202e1" in html
    assert "a\tb\nc" in html


# -- figures ---------------------------------------------------------------------------------------------


def test_matplotlib_escapes_a_label_and_a_dollar_is_no_mathtext():
    names = Header(("explainer",), names_rows=True)
    table = Table(
        [names, column("lower")], [[Cell(SCRIPT), cell(0.01)], [Cell("costs $5 $\\oops$"), cell(0.1)]]
    )
    [plot] = interval_bars(table)
    assert "<script" not in plot.svg and "&lt;script&gt;" in plot.svg
    assert plt.get_fignums() == []


def test_a_figure_shows_a_label_s_invisible_and_acting_characters_as_escapes():
    names = Header(("explainer",), names_rows=True)
    [plot] = interval_bars(
        Table([names, column("lower")], [[Cell(INVISIBLE_LABEL), cell(0.01)], [Cell("b"), cell(0.1)]])
    )
    for character in ("\u202e", "\u200b", "\x9b", "\x1b"):
        assert character not in plot.svg
    assert "\\u202e" in plot.svg


def test_randomization_bars_group_a_models_variants():
    names = Header(("explainer",), names_rows=True)
    headers = [names]
    for variant in ("init:2", "untrained"):
        header = column("higher", [0, 1])
        headers.append(
            Header(header.parts, True, data={**header.data, "variant": variant, "metric": "jaccard"})
        )
    table = Table(headers, [[Cell("random"), cell(0.2), cell(0.1)], [Cell("saliency"), cell(0.7), Cell("—")]])
    [plot] = grouped_bars(table)
    assert plot.title == "d · m · jaccard" and "variant untrained" in plot.svg


def test_curves_are_averaged_per_explainer_and_curves_without_a_shared_x_are_not_drawn():
    base = {
        "dataset": "d", "model": "m", "variant": "default", "explainer": "e", "explainer_params": {},
        "metric": "c", "metric_params": {}, "seed": 0,
    }  # fmt: skip
    curves = [
        {**base, "example_id": "1", "curve": {"x": [0, 50], "morf": [1, 0.5], "lerf": [1, 0.9]}},
        {**base, "example_id": "2", "curve": {"x": [0, 50], "morf": [1, 0.3], "lerf": [1, 0.7]}},
        {**base, "metric": "pr", "example_id": "1", "curve": {"x": [0, 1], "y": [1, 0]}},
        {**base, "metric": "pr", "example_id": "2", "curve": {"x": [0, 0.5, 1], "y": [1, 1, 0]}},
        {**base, "metric": "gaps", "example_id": "1", "curve": {"x": [0, 1], "y": [1, None]}},
        {**base, "metric": "gaps", "example_id": "2", "curve": {"x": [0, 1], "y": [float("nan"), None]}},
    ]
    plots = removal_curves(curves, [])
    assert list(plots) == ["curves"]
    morf_lerf, gaps = plots["curves"]
    assert "e · morf" in morf_lerf.svg and "e · lerf" in morf_lerf.svg and "2 examples" in morf_lerf.caption
    assert gaps.title.endswith("· gaps")  # undefined values are left out of the mean, not drawn as 0
    assert removal_curves([], []) == {}
