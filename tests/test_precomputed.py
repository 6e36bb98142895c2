"""The ``precomputed`` explainer: attributions made elsewhere, read from JSONL and aligned to the model's
tokens through character offsets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_DATA, hand_bow, tiny_suite_text

from harness import Encoding, Example, PluginError, TextDataset, keys
from harness.cli import export
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.explainers.precomputed import Precomputed, PrecomputedParams

METRICS = """
  - name: comprehensiveness
    params: {bins: [10, 50]}
  - name: sufficiency
    params: {bins: [10, 50]}
  - name: runtime"""


def run(root: Path, explainers: str, metrics: str = METRICS, cache: Path | None = None):
    """Run the tiny suite (jsonl fixture, bow) with these explainers; results under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    suite = root / "suite.yaml"
    suite.write_text(tiny_suite_text(explainers=explainers, metrics=metrics))
    options = RunOptions(results_dir=root / "results", cache_dir=cache or root / "cache", progress=False)
    return Runner(load_suite(suite, get_registry()), options).run()


def values(root: Path, run_id: str) -> dict[tuple, float | None]:
    """Each record's value by (what explained it, metric, example)."""
    return {
        (r["explainer_params"].get("explainer", r["explainer"]), r["metric"], r["example_id"]): r["value"]
        for r in Store(root / "results").records(run_id)
    }


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[Path, str, Path]:
    """A run of saliency and random on the tiny suite, and its ``bench export --attributions`` file."""
    root = tmp_path_factory.mktemp("original")
    explainers = """
  - name: saliency
    params: {reduction: input_x_gradient}
  - name: random"""
    result = run(root, explainers)
    assert not result.failed
    exported = root / "attributions.jsonl"
    export(result.run_id, results=root / "results", attributions=True, output=exported)
    return root, result.run_id, exported


def precomputed(path: Path, **params) -> str:
    settings = ", ".join(
        f"{key}: {json.dumps(value)}" for key, value in {"path": str(path), **params}.items()
    )
    return f"\n  - name: precomputed\n    params: {{{settings}}}"


# -- unit level: a fitted explainer on hand-made encodings ---------------------------------------------------
def fitted(tmp_path: Path, rows: list[dict], examples: list[Example], **params) -> Precomputed:
    path = write_rows(tmp_path / "rows.jsonl", rows)
    explainer = Precomputed(PrecomputedParams(path=str(path), **params))
    explainer.fit(hand_bow(), TextDataset("toy", ("negative", "positive"), (), (), tuple(examples)))
    return explainer


def encoding(examples: list[Example], tokens, offsets, segments) -> Encoding:
    """A one-example encoding with the given tokenisation (ids are irrelevant to precomputed)."""
    length = len(tokens)
    return Encoding(
        input_ids=torch.zeros((1, length), dtype=torch.long),
        attention_mask=torch.ones((1, length), dtype=torch.long),
        token_type_ids=None,
        tokens=[list(tokens)],
        offsets=[[tuple(o) for o in offsets]],
        word_ids=[[None if s < 0 else i for i, s in enumerate(segments)]],
        segments=[list(segments)],
        example_ids=[examples[0].id],
    )


def scores_of(explainer: Precomputed, batch: Encoding, target: int = 1) -> list[float]:
    return explainer.explain(hand_bow(), batch, torch.tensor([target])).scores[0].tolist()


def bow_encoding(example: Example) -> Encoding:
    batch = hand_bow().encode([example])
    batch.example_ids = [example.id]
    return batch


# "unhappy day off": WordPiece-like tokens [CLS] un ##happy day off, and two overlapping spans.
UNHAPPY = Example("u1", "unhappy day off", 1)
UNHAPPY_TOKENS = (
    ["[CLS]", "un", "##happy", "day", "off"],
    [(0, 0), (0, 2), (2, 7), (8, 11), (12, 15)],
    [-1, 0, 0, 0, 0],
)
UNHAPPY_SPANS = [[0, 7, 1.4], [4, 11, 0.7]]


def test_copy_gives_each_token_the_overlap_weighted_mean_of_its_spans(tmp_path):
    explainer = fitted(tmp_path, [{"id": "u1", "spans": UNHAPPY_SPANS}], [UNHAPPY], align="copy")
    # un: only [0, 7); ##happy: 5 characters of [0, 7) and 3 of [4, 11); day: only [4, 11); off: none
    expected = [0.0, 1.4, (5 * 1.4 + 3 * 0.7) / 8, 0.7, 0.0]
    assert scores_of(explainer, encoding([UNHAPPY], *UNHAPPY_TOKENS)) == pytest.approx(expected, abs=1e-12)


def test_split_divides_each_span_among_its_tokens_by_overlapped_characters(tmp_path):
    explainer = fitted(tmp_path, [{"id": "u1", "spans": UNHAPPY_SPANS}], [UNHAPPY], align="split")
    # [0, 7) = 1.4 over un (2 characters) and ##happy (5); [4, 11) = 0.7 over ##happy (3) and day (3)
    expected = [0.0, 1.4 * 2 / 7, 1.4 * 5 / 7 + 0.7 * 3 / 6, 0.7 * 3 / 6, 0.0]
    scores = scores_of(explainer, encoding([UNHAPPY], *UNHAPPY_TOKENS))
    assert scores == pytest.approx(expected, abs=1e-12)
    assert sum(scores) == pytest.approx(1.4 + 0.7, abs=1e-12)


@pytest.mark.parametrize("align", ["copy", "split"])
def test_spans_that_are_the_models_tokens_give_the_files_scores_bit_for_bit(tmp_path, align):
    example = Example("t", "The film, alas, was great.", 1)
    batch = bow_encoding(example)
    given = [0.1 * (i + 1) / 3 for i in range(len(batch.tokens[0]))]  # not exact in binary
    spans = [[start, end, score] for (start, end), score in zip(batch.offsets[0], given, strict=True)]
    explainer = fitted(tmp_path, [{"id": "t", "spans": spans}], [example], align=align)
    assert scores_of(explainer, batch) == given


# The model (bow) reads "The unhappy  Café-goers." as: the, unhappy, café, -, goers, . ; another tool's
# tokens differ in case, accents, spacing and pieces, and carry their vocabulary's markers and specials.
CAFE = Example("c", "The unhappy  Café-goers.", 1)


@pytest.mark.parametrize(
    ("tokens", "scores", "copy", "split"),
    [
        (
            ["[CLS]", "the", "un", "##happy", "cafe", "-", "goers", ".", "[SEP]"],
            [9, 1, 2, 3, 4, 5, 6, 7, 9],
            # unhappy = un (2 characters) + ##happy (5): weighted mean (2·2 + 3·5)/7, or the sum 2 + 3
            [1, 19 / 7, 4, 5, 6, 7],
            [1, 5, 4, 5, 6, 7],
        ),
        (
            ["<s>", "▁The", "▁un", "happy", "▁Café", "-", "go", "ers", ".", "</s>"],
            [9, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            # goers = go (2) + ers (3): (2·6 + 3·7)/5, or 6 + 7
            [1, 19 / 7, 4, 5, 33 / 5, 8],
            [1, 5, 4, 5, 13, 8],
        ),
    ],
    ids=["wordpiece", "sentencepiece"],
)
def test_tokens_without_offsets_are_found_in_the_text_in_order(tmp_path, tokens, scores, copy, split):
    batch = bow_encoding(CAFE)
    assert batch.tokens[0] == ["the", "unhappy", "café", "-", "goers", "."]
    row = {"id": "c", "tokens": tokens, "scores": scores}
    for align, expected in (("copy", copy), ("split", split)):
        explainer = fitted(tmp_path, [row], [CAFE], align=align)
        assert scores_of(explainer, batch) == pytest.approx(expected, abs=1e-12), align


def test_a_token_not_in_the_text_names_the_example_and_asks_for_offsets(tmp_path):
    example = Example("c", "a good film", 1)
    explainer = fitted(
        tmp_path, [{"id": "c", "tokens": ["a", "bad", "film"], "scores": [1, 2, 3]}], [example]
    )
    with pytest.raises(PluginError, match=r"example 'c': token 1 'bad' is not found.*offsets"):
        scores_of(explainer, bow_encoding(example))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "p", "text": "a good film!", "spans": []}, r"example 'p': the file's text differs"),
        ({"id": "p", "text_pair": "yes", "spans": []}, r"example 'p': the file's text_pair differs"),
        (
            {"id": "p", "target": 0, "spans": []},
            r"example 'p': the file explains class 0 but this cell explains class 1",
        ),
        ({"id": "p", "target": "negative", "spans": []}, r"example 'p': the file explains class 'negative'"),
        (
            {"id": "p", "spans": [[5, 12, 1.0]]},
            r"example 'p': spans item \[5, 12, \.\.\.\] falls outside its text of 11",
        ),
        (
            {"id": "p", "spans_pair": [[0, 1, 1.0]]},
            r"example 'p' is a single text but its row has spans_pair",
        ),
        ({"id": "p", "spans": [[0, 1]]}, r"example 'p': spans item \[0, 1\] is not \[start, end, score\]"),
        ({"id": "p", "seconds": -1, "spans": []}, r"example 'p': seconds must be a number"),
        ({"id": "p"}, r"example 'p': its row has neither spans nor tokens and scores"),
    ],
    ids=[
        "text",
        "text-pair",
        "target",
        "target-name",
        "outside",
        "pair-of-single",
        "not-a-span",
        "seconds",
        "empty",
    ],
)
def test_a_row_that_does_not_fit_its_example_is_an_error_naming_the_example(tmp_path, row, message):
    example = Example("p", "a good film", 1)
    explainer = fitted(tmp_path, [row], [example])
    with pytest.raises(PluginError, match=message):
        scores_of(explainer, bow_encoding(example), target=1)


def test_the_text_and_target_may_be_stated_when_they_match(tmp_path):
    example = Example("p", "a good film", 1)
    row = {"id": "p", "text": "a good film", "target": "positive", "spans": [[2, 6, 3.0]]}
    assert scores_of(fitted(tmp_path, [row], [example]), bow_encoding(example)) == [0.0, 3.0, 0.0]


def test_pair_spans_land_on_the_second_texts_tokens_only_never_on_separators(tmp_path):
    example = Example("q", "good film", 1, text_pair="good plot")
    batch = bow_encoding(example)
    assert batch.segments[0] == [0, 0, -1, 1, 1] and batch.offsets[0][2] == (0, 0)
    # [0, 4) of text_pair: 'good' of the pair, not 'good' of the text at the same offsets; [0, 0) spans
    # (what an export writes at special tokens) meet no separator
    row = {"id": "q", "spans": [[5, 9, 1.0], [0, 0, 7.0]], "spans_pair": [[0, 4, 2.0], [0, 0, 7.0]]}
    assert scores_of(fitted(tmp_path, [row], [example]), batch) == [0.0, 1.0, 0.0, 2.0, 0.0]


def test_pair_tokens_without_segments_switch_to_the_second_text_after_the_first_separator(tmp_path):
    example = Example("q", "good film", 1, text_pair="good plot")
    row = {
        "id": "q",
        "tokens": ["[CLS]", "good", "film", "[SEP]", "good", "plot", "[SEP]"],
        "scores": [9, 1, 2, 9, 3, 4, 9],
    }
    assert scores_of(fitted(tmp_path, [row], [example]), bow_encoding(example)) == [1.0, 2.0, 0.0, 3.0, 4.0]


def test_several_rows_for_one_example_ask_which_explainer(tmp_path):
    example = Example("p", "a good film", 1)
    rows = [{"example_id": "p", "explainer": name, "tokens": ["a"], "offsets": [[0, 1]], "segments": [0], "scores": [s]}
            for name, s in (("saliency", 1.0), ("random", 2.0))]  # fmt: skip
    with pytest.raises(
        PluginError,
        match=r"example 'p' has 2 rows .* differ in explainer: .*`explainer: NAME` \(random, saliency\)",
    ):
        scores_of(fitted(tmp_path, rows, [example]), bow_encoding(example))
    assert scores_of(fitted(tmp_path, rows, [example], explainer="random"), bow_encoding(example))[0] == 2.0
    with pytest.raises(
        PluginError,
        match=r"no row of .* has \{\"explainer\": \"lime\"\}; the file has explainer: \"random\", \"saliency\"",
    ):
        fitted(tmp_path, rows, [example], explainer="lime")


def test_of_several_rows_for_one_id_the_one_stating_the_examples_text_is_read(tmp_path):
    example = Example("p", "a good film", 1)
    rows = [
        {"id": "p", "text": "another dataset's text", "spans": [[0, 1, 5.0]]},
        {"id": "p", "text": "a good film", "spans": [[0, 1, 1.0]]},
    ]
    assert scores_of(fitted(tmp_path, rows, [example]), bow_encoding(example))[0] == 1.0
    with pytest.raises(PluginError, match=r"example 'p': the file's text differs"):
        scores_of(fitted(tmp_path, rows[:1] * 2, [example]), bow_encoding(example))


def test_a_missing_file_is_an_error_at_suite_validation_naming_it(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(tiny_suite_text(explainers=precomputed(tmp_path / "nowhere.jsonl"), metrics=METRICS))
    with pytest.raises(
        Exception,
        match=r"explainers\[0\]\.params\.path: no file of precomputed attributions at .*nowhere\.jsonl",
    ):
        load_suite(suite, get_registry())


# -- through the runner -------------------------------------------------------------------------------------
def test_exported_attributions_evaluated_again_give_every_metric_value_exactly(original, tmp_path):
    root, run_id, exported = original
    result = run(
        tmp_path, precomputed(exported, explainer="saliency") + precomputed(exported, explainer="random")
    )
    assert result.cells == 6 and not result.failed
    before, after = values(root, run_id), values(tmp_path, result.run_id)
    assert set(before) == set(after) and len(before) == 2 * 3 * 6
    for key, value in before.items():
        assert after[key] == pytest.approx(value, abs=1e-9, rel=0), key
    # the attributions themselves, bit for bit
    original_scores = {
        (a["explainer"], a["example_id"]): a["scores"] for a in Store(root / "results").attributions(run_id)
    }
    evaluated = {
        (a["explainer_params"]["explainer"], a["example_id"]): a["scores"]
        for a in Store(tmp_path / "results").attributions(result.run_id)
    }
    assert evaluated == original_scores


def test_an_example_missing_from_the_file_fails_its_cells_naming_it_and_the_run_goes_on(original, tmp_path):
    _, _, exported = original
    rows = [row for row in read_rows(exported) if row["explainer"] == "saliency"]
    missing = rows[2]["example_id"]
    partial = write_rows(tmp_path / "partial.jsonl", [row for row in rows if row["example_id"] != missing])
    result = run(tmp_path, precomputed(partial) + precomputed(exported, explainer="saliency"))
    assert result.cells == 6 and len(result.failed) == 3
    for cell, error in result.failed:
        assert cell.explainer.params.path == str(partial)
        assert error.startswith(f"example '{missing}' has no attributions in {partial}")
    assert sum(c["status"] == "done" for c in Store(tmp_path / "results").cells(result.run_id)) == 3


def test_a_target_other_than_the_cells_fails_naming_the_example(original, tmp_path):
    _, _, exported = original
    rows = [row for row in read_rows(exported) if row["explainer"] == "saliency"]
    rows[0]["target"] = 1 - rows[0]["target"]
    result = run(tmp_path, precomputed(write_rows(tmp_path / "t.jsonl", rows)), metrics="\n  - name: runtime")
    [(_, error)] = result.failed
    assert error.startswith(f"example '{rows[0]['example_id']}': the file explains class {rows[0]['target']}")


def test_runtime_is_the_files_stated_seconds_or_undefined_with_a_note(original, tmp_path):
    _, _, exported = original
    rows = [row for row in read_rows(exported) if row["explainer"] == "saliency"]
    stated = {row["example_id"]: 0.25 * (i + 1) for i, row in enumerate(rows)}
    for row in rows:
        row["seconds"] = stated[row["example_id"]]
    timed = write_rows(tmp_path / "timed.jsonl", rows)
    unknown = write_rows(
        tmp_path / "unknown.jsonl", [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    )
    result = run(tmp_path, precomputed(timed) + precomputed(unknown), metrics="\n  - name: runtime")
    assert not result.failed
    store = Store(tmp_path / "results")
    by_file: dict[str, dict] = {}
    for record in store.records(result.run_id):
        by_file.setdefault(record["explainer_params"]["path"], {})[record["example_id"]] = record["value"]
    assert by_file[str(timed)] == stated
    assert list(by_file[str(unknown)].values()) == [None] * 6  # NaN: undefined
    notes = {json.loads(c["explainer_params"])["path"]: c["notes"] for c in store.cells(result.run_id)}
    assert notes[str(timed)] == []
    assert notes[str(unknown)] == [
        "6 of 6 examples have no runtime: their explainer states no cost for them "
        "(e.g. precomputed attributions whose file gives no seconds)"
    ]


def test_an_edited_file_is_explained_again_never_read_from_the_cache(original, tmp_path):
    _, _, exported = original
    rows = [row for row in read_rows(exported) if row["explainer"] == "saliency"]
    path = write_rows(tmp_path / "edited.jsonl", rows)
    cache = tmp_path / "cache"
    first = run(tmp_path / "first", precomputed(path), metrics="\n  - name: runtime", cache=cache)
    for row in rows:
        row["scores"] = [score + 1.0 for score in row["scores"]]
    write_rows(path, rows)
    second = run(tmp_path / "second", precomputed(path), metrics="\n  - name: runtime", cache=cache)
    assert not first.failed and not second.failed
    stored = {
        a["example_id"]: a["scores"]
        for a in Store(tmp_path / "second" / "results").attributions(second.run_id)
    }
    assert stored == {row["example_id"]: row["scores"] for row in rows}


def test_the_files_content_is_part_of_the_attributions_key_and_other_keys_are_unchanged(tmp_path):
    path = write_rows(tmp_path / "a.jsonl", [{"id": "x", "spans": [[0, 1, 1.0]]}])
    params = PrecomputedParams(path=str(path))
    before = Precomputed.inputs_identity(params)
    write_rows(path, [{"id": "x", "spans": [[0, 1, 2.0]]}])
    after = Precomputed.inputs_identity(params)
    assert before != after

    def key(inputs):
        return keys.key(
            keys.attributions_parts("m", {"name": "precomputed"}, 0, "test", "e", 4, "cpu", inputs)
        )

    assert key(before) != key(after)
    assert key(None) == keys.key(
        keys.attributions_parts("m", {"name": "precomputed"}, 0, "test", "e", 4, "cpu")
    )
    from plugins.explainers.gradient import Saliency

    assert Saliency.inputs_identity(Saliency.Params()) is None


def test_tokens_of_a_double_space_and_accents_keep_their_offsets(tmp_path):
    """Located tokens cover the original characters: 'Café' found as 'cafe' covers its four characters."""
    example = Example("c", "x  Café", 1)
    row = {"id": "c", "tokens": ["x", "cafe"], "scores": [1.0, 2.0]}
    batch = bow_encoding(example)
    assert batch.offsets[0] == [(0, 1), (3, 7)]
    assert scores_of(fitted(tmp_path, [row], [example], align="split"), batch) == [1.0, 2.0]


def test_explaining_needs_the_batchs_example_ids(tmp_path):
    example = Example("c", "x", 1)
    batch = bow_encoding(example)
    batch.example_ids = []
    with pytest.raises(PluginError, match="example ids"):
        scores_of(fitted(tmp_path, [{"id": "c", "spans": []}], [example]), batch)


def test_rows_of_an_export_read_with_nan_seconds_are_unknown_runtime(tmp_path):
    example = Example("c", "x", 1)
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"example_id": "c", "tokens": ["x"], "offsets": [[0, 1]], "segments": [0], "scores": [1.0], "seconds": NaN}\n'
    )
    explainer = Precomputed(PrecomputedParams(path=str(path)))
    explainer.fit(hand_bow(), TextDataset("toy", ("negative", "positive"), (), (), (example,)))
    explanation = explainer.explain(hand_bow(), bow_encoding(example), torch.tensor([1]))
    assert math.isnan(float(explanation.seconds[0])) and explanation.scores[0].tolist() == [1.0]


# -- the README's captum snippet ------------------------------------------------------------------------------
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet(containing: str) -> str:
    """The README's python block of the precomputed section that contains ``containing``."""
    section = README.read_text().split("## Evaluating explanations made elsewhere", 1)[1].split("\n## ", 1)[0]
    [block] = [
        b.split("\n", 1)[1] for b in section.split("```")[1::2] if b.startswith("python") and containing in b
    ]
    return block


@pytest.mark.slow
def test_the_readmes_captum_snippet_writes_a_file_precomputed_reads_exactly(tmp_path, monkeypatch):
    from transformers import BertConfig, BertForSequenceClassification

    from harness import load_minilm_tokenizer

    tokenizer = load_minilm_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(tmp_path / "my-model")
    tokenizer.save_pretrained(tmp_path / "my-model")
    (tmp_path / "data.jsonl").write_text("".join(TINY_DATA.read_text().splitlines(keepends=True)[:4]))
    monkeypatch.chdir(tmp_path)
    exec(readme_snippet("LayerIntegratedGradients"), {})  # writes captum.jsonl
    written = {row["id"]: row for row in read_rows(tmp_path / "captum.jsonl")}

    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""name: captum
version: 1
seeds: [0]
device: cpu
datasets:
  - {{name: jsonl, params: {{path: data.jsonl, test_fraction: 1.0, validation_fraction: 0.0}}}}
models:
  - {{name: hf, params: {{path: my-model}}}}
explainers:{precomputed(tmp_path / "captum.jsonl")}
metrics:
  - name: runtime
""")
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    result = Runner(load_suite(suite, get_registry()), options).run()
    assert not result.failed
    stored = list(Store(tmp_path / "results").attributions(result.run_id))
    assert len(stored) == 4
    for attribution in stored:
        row = written[attribution["example_id"]]
        assert attribution["tokens"] == row["tokens"]
        real = [i for i, segment in enumerate(row["segments"]) if segment >= 0]
        assert [attribution["scores"][i] for i in real] == [row["scores"][i] for i in real]
        assert attribution["seconds"] == row["seconds"] and attribution["target"] == row["target"]
