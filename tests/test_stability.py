"""iou-stability (L2E Eq. 1) and the document similarities behind its neighbours (L2E App. C).

Attributions are built by hand: a text, its tokens written as WordPiece would split them ("##" marks a
continuation), one score (and optionally one label) per real token; special tokens get a huge score
so that a metric that looked at them would fail. Every expected value is computed by hand beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import values_of

from harness import Attribution, Example, MetricInput, PluginError, TextDataset
from harness.plugin import metadata_problem
from plugins.metrics import stability as stability_module
from plugins.metrics.stability import IouStability, lexical_similarity, nearest_neighbours, similarity_matrix

SPECIAL_SCORE = 99.0
CORPUS = (
    "The striker scored a late goal and the football team won the match.",
    "Stock markets fell sharply as investors sold shares amid inflation fears.",
    "Football fans cheered as the team scored a goal in the final match.",
    "Simmer the onions in butter, then add garlic and stir the sauce.",
    "Shares rallied on the stock market after investors welcomed the earnings report.",
)


def explained(
    text: str,
    pieces: str,
    scores: list[float],
    labels: list[int] | None = None,
    pair: str | None = None,
    pair_pieces: str = "",
) -> tuple[Attribution, Example]:
    """[CLS] pieces [SEP] (pair_pieces [SEP]) with offsets in each segment's own text, and its example
    (id = the text). ``scores`` and ``labels`` cover the real tokens only."""
    tokens, offsets, word_ids, segments = ["[CLS]"], [(0, 0)], [None], [-1]
    word = -1
    for segment, (segment_text, segment_pieces) in enumerate([(text, pieces), (pair, pair_pieces)]):
        if segment_text is None:
            break
        cursor = 0
        for piece in segment_pieces.split():
            surface = piece.removeprefix("##")
            if not piece.startswith("##"):
                word += 1
                cursor = segment_text.index(surface, cursor)
            tokens.append(piece)
            offsets.append((cursor, cursor + len(surface)))
            word_ids.append(word)
            segments.append(segment)
            cursor += len(surface)
        tokens.append("[SEP]")
        offsets.append((0, 0))
        word_ids.append(None)
        segments.append(-1)
    real = [i for i, s in enumerate(segments) if s >= 0]
    assert len(scores) == len(real) and (labels is None or len(labels) == len(real))
    all_scores, all_labels = [SPECIAL_SCORE] * len(tokens), [0] * len(tokens)
    for i, position in enumerate(real):
        all_scores[position] = scores[i]
        all_labels[position] = 0 if labels is None else labels[i]
    example_id = text if pair is None else f"{text} | {pair}"
    attribution = Attribution(
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
        scores=all_scores,
        seconds=0.0,
        labels=None if labels is None else all_labels,
    )
    return attribution, Example(example_id, text, 1, text_pair=pair)


def cell(*explanations: tuple[Attribution, Example]) -> MetricInput:
    """A cell of hand-built attributions; loading the model fails, since the metric never needs it."""

    def no_model():
        raise AssertionError("iou-stability must not load the model")

    return MetricInput(
        attributions=[attribution for attribution, _ in explanations],
        examples={example.id: example for _, example in explanations},
        dataset=TextDataset("toy", ("negative", "positive"), (), (), ()),
        load_classifier=no_model,
    )


def stability(**params) -> IouStability:
    return IouStability(IouStability.Params(**{"similarity": "lexical", **params}))


# -- lexical similarity --------------------------------------------------------------------------------


def test_lexical_similarity_sums_the_iou_of_ngram_sets_up_to_four_grams():
    # a = the cat sat , the cat ran .     b = the cat ran
    # G1: a {the, cat, sat, ",", ran, "."}, b {the, cat, ran}: 3 / 6
    # G2: a {the cat, cat sat, "sat ,", ", the", cat ran, "ran ."} ("the cat" twice, once in the set),
    #     b {the cat, cat ran}: 2 / 6
    # G3: a {the cat sat, "cat sat ,", "sat , the", ", the cat", the cat ran, "cat ran ."},
    #     b {the cat ran}: 1 / 6
    # G4: a has 5, b none: 0 / 5
    assert lexical_similarity("The cat sat, the cat ran.", "the cat ran") == pytest.approx(
        3 / 6 + 2 / 6 + 1 / 6
    )


def test_lexical_similarity_is_four_for_identical_texts_and_zero_for_disjoint_ones():
    assert lexical_similarity("A long enough sentence.", "a LONG enough sentence.") == pytest.approx(4.0)
    assert lexical_similarity("the cat sat", "a dog ran") == 0.0
    assert lexical_similarity("", "") == 0.0  # every union empty: each order contributes 0


def test_lexical_ngrams_of_a_pair_stay_within_each_text():
    # G1 {a, b, c}: 1; G2 {"a b"} (no "b c" across the pair): 1; G3 and G4 empty: 0
    assert lexical_similarity(("a b", "c"), ("a b", "c")) == pytest.approx(2.0)


# -- neighbours ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["lexical", "semantic"])
def test_nearest_neighbour_of_each_text_is_the_one_on_its_topic(similarity):
    nearest = nearest_neighbours(CORPUS, similarity, 1)
    assert [nearest[i] for i in (0, 1, 2, 4)] == [[2], [4], [0], [1]]  # football 0, 2; markets 1, 4
    assert nearest[3] != [3]


def test_nearest_neighbours_exclude_self_and_stop_at_the_other_documents():
    neighbours = nearest_neighbours(CORPUS, "lexical", 10)
    assert [sorted(row) for row in neighbours] == [
        [j for j in range(len(CORPUS)) if j != i] for i in range(len(CORPUS))
    ]
    assert nearest_neighbours(CORPUS[:1], "lexical", 3) == [[]]


def test_nearest_neighbours_break_ties_by_index():
    # every pair shares nothing: all similarities tie at 0
    assert nearest_neighbours(["a", "b", "c", "d"], "lexical", 2) == [[1, 2], [0, 2], [0, 1], [0, 1]]


# -- Eq. 1, ranking form -------------------------------------------------------------------------------


def test_iou_stability_declares_its_metadata():
    assert metadata_problem(IouStability) is None
    assert (IouStability.family, IouStability.direction, IouStability.range) == (
        "stability",
        "higher",
        (0, 1),
    )


@pytest.mark.parametrize(
    ("neighbours", "expected"),
    [
        # x0 ↔ x1 share "a good"; x2 shares nothing, so its neighbours tie and come in sample order.
        # Top 50 % of 3 words = 2 by |score|: x0 {good, film} (lower-cased), x1 {good, plot},
        # x2 {market, stock}. IoU(x0, x1) = |{good}| / |{good, film, plot}| = 1/3; with x2: 0.
        (1, [1 / 3, 1 / 3, 0.0]),
        (2, [(1 / 3 + 0) / 2, (1 / 3 + 0) / 2, 0.0]),
    ],
)
def test_ranking_form_averages_the_iou_of_top_words_over_neighbours(neighbours, expected):
    data = cell(
        explained("A Good film", "A Good film", [0.0, 2.0, 1.0]),
        explained("a good plot", "a good plot", [0.0, 2.0, -1.0]),
        explained("the stock market fell", "the stock market fell", [0.0, 3.0, -4.0, 1.0]),
    )
    assert values_of(stability(k=50, neighbours=neighbours), data) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("absolute", 1.0),  # {market, stock} both
        ("descending", 1 / 3),  # {stock, fell} vs {stock, rose}
    ],
)
def test_ranking_form_ranks_by_the_order_parameter(order, expected):
    data = cell(
        explained("the stock market fell", "the stock market fell", [0.0, 3.0, -4.0, 1.0]),
        explained("the stock market rose", "the stock market rose", [0.0, 3.0, -4.0, 1.0]),
    )
    assert values_of(stability(k=50, order=order), data) == pytest.approx([expected, expected])


@pytest.mark.parametrize(
    ("granularity", "expected"),
    [
        # words: x0 top 2 of 3 {amazing, film}, x1 top 1 of 2 {amazing}: 1/2
        ("word", 0.5),
        # tokens: x0 top 2 of 4 {amaz, ing}, x1 top 2 of 3 {amaz, ing}: 1
        ("token", 1.0),
    ],
)
def test_ranking_form_compares_the_text_of_words_or_tokens(granularity, expected):
    data = cell(
        explained("an amazing film", "an amaz ##ing film", [0.0, 3.0, 3.0, 1.0]),
        explained("amazing acting", "amaz ##ing acting", [2.0, 2.0, 0.0]),
    )
    values = values_of(stability(k=50, granularity=granularity), data)
    assert values == pytest.approx([expected, expected])


def test_units_of_the_second_text_of_a_pair_are_read_from_text_pair():
    # top 20 % of 5 words = 1: "runs", offsets 4..8 of text_pair in both (4..8 of text would be
    # "g do" and "g ca", which differ)
    data = cell(
        explained("a big dog", "a big dog", [0, 0, 0, 0, 5], pair="dog runs", pair_pieces="dog runs"),
        explained("a big cat", "a big cat", [0, 0, 0, 0, 5], pair="cat runs", pair_pieces="cat runs"),
    )
    assert values_of(stability(k=20), data) == pytest.approx([1.0, 1.0])


# -- Eq. 1, label-wise form ----------------------------------------------------------------------------


def labelled_pair(second_labels: tuple[int, ...] | None = (0, 2, 1)) -> MetricInput:
    # x0: v_2 {good}, v_-1 {film}; x1: v_2 {good}, v_1 {plot}; "a" is neutral in both.
    # Scores all tie, so the ranking form's top 30 % of 3 = 1 word is "a" in both.
    return cell(
        explained("a good film", "a good film", [0.0, 0.0, 0.0], labels=[0, 2, -1]),
        explained(
            "a good plot",
            "a good plot",
            [0.0, 0.0, 0.0],
            labels=None if second_labels is None else list(second_labels),
        ),
    )


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        # Σ|∩| = |{good}| = 1; Σ|∪| = v_2 1 + v_-1 1 + v_1 1 = 3 (the neutral "a" would make it 2/4)
        ("labels", 1 / 3),
        ("ranking", 1.0),  # {a} vs {a}
    ],
)
def test_label_form_sums_intersections_and_unions_over_non_neutral_labels(form, expected):
    assert values_of(stability(form=form), labelled_pair()) == pytest.approx([expected, expected])


def test_the_default_form_is_ranking_even_when_every_attribution_has_labels():
    # one definition per column: the form never depends on what the attributions carry
    assert values_of(stability(), labelled_pair()) == pytest.approx([1.0, 1.0])
    assert values_of(stability(), labelled_pair(None)) == pytest.approx([1.0, 1.0])


def test_there_is_no_automatic_form():
    with pytest.raises(ValueError, match="form"):
        IouStability.Params(form="auto")


def test_label_form_discretises_the_scores_of_an_explainer_without_labels():
    # L2E's h per document, thresholds at the means of its positive and of its negative scores:
    # x0 "a good film" [0.5, 1.5, -1.0]: positive mean 1.0 → good high positive (2), a low positive (1);
    #    negative mean -1.0 → film high negative (-2).
    # x1 "a good plot" [0.0, 3.0, 1.0]: positive mean 2.0 → good 2, plot 1; a is exactly 0, neutral.
    # Σ|∩| = |{good}| = 1; Σ|∪| = v_2 1 + v_1 |{a, plot}| 2 + v_-2 1 = 4.
    data = cell(
        explained("a good film", "a good film", [0.5, 1.5, -1.0]),
        explained("a good plot", "a good plot", [0.0, 3.0, 1.0]),
    )
    assert values_of(stability(form="labels"), data) == pytest.approx([0.25, 0.25])
    assert data.attributions[0].discretised_labels() == [0, 1, 2, -2, 0]  # [CLS] and [SEP] neutral


def test_a_words_label_is_its_first_tokens():
    # "amazing": label 2 in both (x0's "##ing" is 0, x1's is 1); x0 v_-1 {film}: 1 / 2
    data = cell(
        explained("an amazing film", "an amaz ##ing film", [0.0] * 4, labels=[0, 2, 0, -1]),
        explained("amazing acting", "amaz ##ing acting", [0.0] * 3, labels=[2, 1, 0]),
    )
    assert values_of(stability(form="labels"), data) == pytest.approx([0.5, 0.5])


# -- undefined values ----------------------------------------------------------------------------------


def test_a_single_document_has_no_neighbour_and_is_nan():
    data = cell(explained("a good film", "a good film", [0.0, 2.0, 1.0]))
    assert math.isnan(values_of(stability(similarity="semantic"), data)[0])


@pytest.mark.parametrize(
    ("neighbours", "expected"),
    [
        # x0 ↔ x1 are each other's nearest and both all neutral: their only pair is skipped, NaN.
        # x2's nearest is x0 (the others tie, sample order): {good} vs {} under label 2 = 0 / 1.
        (1, [math.nan, math.nan, 0.0]),
        # x0's second neighbour is x2: one defined pair (0) is enough; x1 likewise.
        (2, [0.0, 0.0, 0.0]),
    ],
)
def test_pairs_where_neither_explanation_selects_anything_are_skipped(neighbours, expected):
    data = cell(
        explained("a good film", "a good film", [0.0] * 3, labels=[0, 0, 0]),
        explained("a good plot", "a good plot", [0.0] * 3, labels=[0, 0, 0]),
        explained("the stock fell", "the stock fell", [0.0] * 3, labels=[0, 2, 0]),
    )
    values = values_of(stability(form="labels", neighbours=neighbours), data)
    assert values == pytest.approx(expected, nan_ok=True)
    assert values[2] == 0.0  # never all NaN


def test_an_example_missing_from_the_cell_is_a_plugin_error():
    data = cell(explained("a good film", "a good film", [0.0, 2.0, 1.0]))
    data.examples = {}
    with pytest.raises(PluginError, match="not in the cell's examples"):
        values_of(stability(), data)


# -- neighbours in a pool (the whole split) ------------------------------------------------------------


@pytest.mark.parametrize("similarity", ["lexical", "semantic"])
def test_neighbours_in_a_pool_are_the_anchors_rows_of_the_whole_similarity_matrix(similarity):
    # anchors 1 and 3 only: their rows of the pool × pool matrix, self excluded, ties by index
    matrix = similarity_matrix(CORPUS, similarity)
    expected = []
    for anchor in (1, 3):
        order = sorted((j for j in range(len(CORPUS)) if j != anchor), key=lambda j: (-matrix[anchor, j], j))
        expected.append(order[:2])
    assert stability_module.nearest_in_pool(CORPUS, [1, 3], similarity, 2) == expected


def test_extra_examples_are_each_anchors_neighbours_in_the_pool():
    pool = [Example(f"d{i}", text, 0) for i, text in enumerate(CORPUS)]
    metric = stability(neighbours=1)
    need = IouStability.extra_examples(metric.params)
    assert need == {"neighbours": 1, "similarity": "lexical"}
    # d0 (football) → d2; d1 (markets) → d4: found in the pool, not among the anchors
    assert IouStability.find_extra_examples(need, [pool[0], pool[1]], pool) == {"d0": ["d2"], "d1": ["d4"]}
    assert IouStability.extra_examples(stability(pool="sample").params) is None


def test_neighbours_given_by_the_harness_replace_a_search_among_the_cells_examples():
    # x0's neighbour among the cell's examples would be x1 ("a good"); the harness says it is x2, an
    # extra example: {good, film} vs {stock, market} = 0
    x0, x1, x2 = (
        explained("A Good film", "A Good film", [0.0, 2.0, 1.0]),
        explained("a good plot", "a good plot", [0.0, 2.0, -1.0]),
        explained("the stock market fell", "the stock market fell", [0.0, 3.0, -4.0, 1.0]),
    )
    plain = cell(x0, x1)
    assert values_of(stability(k=50, neighbours=1), plain) == pytest.approx([1 / 3, 1 / 3])
    extended = MetricInput(
        attributions=plain.attributions,
        examples={**plain.examples, x2[1].id: x2[1]},
        dataset=plain.dataset,
        load_classifier=plain.load_classifier,
        extra_attributions=[x2[0]],
        related={x0[1].id: [x2[1].id], x1[1].id: [x0[1].id]},
    )
    assert values_of(stability(k=50, neighbours=1), extended) == pytest.approx([0.0, 1 / 3])


# -- the labels-form baseline matched to an explainer's label counts (L2E §4.5 Random) ----------------


def matched_cell(reference_labels: tuple[list[int], list[int]]) -> MetricInput:
    # the cell's explainer scores only (e.g. random); the matched explainer labels
    data = cell(
        explained("the good film", "the good film", [0.9, 0.1, 0.5]),
        explained("the good plot", "the good plot", [0.7, 0.5, 0.2]),
    )
    data.reference = cell(
        explained("the good film", "the good film", [0.0] * 3, labels=reference_labels[0]),
        explained("the good plot", "the good plot", [0.0] * 3, labels=reference_labels[1]),
    )
    return data


def test_match_gives_each_document_the_matched_explainers_label_counts_by_the_cells_ranking():
    # reference x0 [0, 2, -1] (one 2, one -1), x1 [2, 0, 0] (one 2).
    # x0 ranked the .9, film .5, good .1 takes [2, 0, -1]: v_2 {the}, v_-1 {good};
    # x1 ranked the .7, good .5, plot .2 takes [2, 0, 0]: v_2 {the}.
    # Σ|∩| = 1 (the); Σ|∪| = v_2 {the} 1 + v_-1 {good} 1 = 2 → 1/2.
    data = matched_cell(([0, 2, -1], [2, 0, 0]))
    assert values_of(stability(form="labels", match="L2E"), data) == pytest.approx([0.5, 0.5])
    # unmatched, h discretises the cell's own scores: x0 mean .5 → the 2, film 2, good 1;
    # x1 mean .4667 → the 2, good 2, plot 1. Σ|∩| = {the} 1; Σ|∪| = v_2 {the, film, good} 3 + v_1
    # {good, plot} 2 = 5 → 0.2
    data.reference = None
    assert values_of(stability(form="labels"), data) == pytest.approx([0.2, 0.2])


def test_a_random_cell_matched_to_an_explainer_permutes_its_labels_within_each_document():
    reference = explained("a b c d e f", "a b c d e f", [0.0] * 6, labels=[2, 2, 1, 0, -1, -2])[0]
    counts = sorted(reference.labels[1:-1])
    seen = set()
    for seed in range(20):
        scores = np.random.default_rng(seed).random(6).tolist()
        own = explained("a b c d e f", "a b c d e f", scores)[0]
        labels = stability_module.matched_labels(own, reference, "word")
        assert sorted(labels.tolist()) == counts  # the same label counts, in another order
        seen.add(tuple(labels))
    assert len(seen) > 10  # ... and random orders


def test_match_belongs_to_the_labels_form():
    with pytest.raises(ValueError, match="form: labels"):
        IouStability.Params(match="L2E")


# -- stop words (L2E Table 5) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_words", "expected"),
    [
        # top 75 % of 4 words = 3: x0 {the, was, good}, x1 {the, plot, was}: |{the, was}| / 4
        (False, 0.5),
        # without the stop words "the" and "was" (scikit-learn's list): {good} vs {plot} = 0
        (True, 0.0),
    ],
)
def test_stop_words_leave_the_selected_words_before_the_iou(stop_words, expected):
    data = cell(
        explained("the film was good", "the film was good", [4.0, 1.0, 3.0, 2.0]),
        explained("the plot was good", "the plot was good", [4.0, 3.0, 2.0, 1.0]),
    )
    assert values_of(stability(k=75, stop_words=stop_words), data) == pytest.approx([expected, expected])


def test_stop_words_filter_the_labels_form_too():
    # x0: v_2 {the, good}, v_-1 {film}; x1: v_2 {the, good}, v_1 {plot}. Without "the":
    # Σ|∩| = 1 (good); Σ|∪| = v_2 {good} 1 + v_-1 1 + v_1 1 = 3
    data = cell(
        explained("the good film", "the good film", [0.0] * 3, labels=[2, 2, -1]),
        explained("the good plot", "the good plot", [0.0] * 3, labels=[2, 2, 1]),
    )
    assert values_of(stability(form="labels", stop_words=True), data) == pytest.approx([1 / 3, 1 / 3])
    assert values_of(stability(form="labels"), data) == pytest.approx([2 / 4, 2 / 4])


def test_iou_stability_declares_the_order_a_student_is_paired_in():
    """A ranking student (unsigned scores, the order of |w|) meets its teacher in the ranking form by
    |score|; a sequence-labelling student in the labels form (signed labels)."""
    from plugins.metrics.stability import IouStability

    def order(**params):
        return IouStability.score_order_for(IouStability.Params(**params))

    assert order(form="ranking") == "absolute"
    assert order(form="ranking", order="descending") == "signed"
    assert order(form="labels") == "signed"


def test_a_metric_declaring_an_explainer_parameter_must_have_it():
    class Misnamed(IouStability):
        explainer_reference = "matched"  # its Params call it match

    assert metadata_problem(Misnamed) == (
        "metric 'iou-stability' declares explainer_reference 'matched', which its Params do not have"
    )
