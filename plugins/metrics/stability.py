"""Stability: do similar documents get similar explanations? (L2E §4.4, Eq. 1; §4.5; App. C; Table 5)

For each explained document x, its neighbours N(x) are the most similar *other* documents of the whole
split the cell's sample is drawn from (L2E §4.5: "the top-3 similar documents in the test set"), by one
of L2E's two document similarities (App. C): semantic (cosine of sentence embeddings) or lexical (n-gram
overlap). The metric declares them (``IouStability.extra_examples``); the harness explains them with the
cell's explainer, cached like any explanation, and no other metric sees them. The explanation of x is a
set of words per label, v_ℓ^x, as lower-cased strings, so that the same word in two documents matches;
Eq. 1 then averages, over the neighbours, the label-wise intersection over union:

    IoU(x, N(x)) = 1/|N(x)| · Σ_{x' ∈ N(x)} Σ_{ℓ ≠ neutral} |v_ℓ^x ∩ v_ℓ^x'| / Σ_{ℓ ≠ neutral} |v_ℓ^x ∪ v_ℓ^x'|

Neighbour search computes only the anchors' rows (anchors × split): one embedding pass of the split
(cached in-process by content; the harness caches the neighbours found) or one sparse product per
n-gram order. The semantic encoder is independent of the explained model, so the neighbours are the same
for every model and explainer. The metric never loads the explained model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from harness import (
    Attribution,
    Example,
    Granularity,
    Metric,
    MetricInput,
    Order,
    Params,
    PluginError,
    load_minilm_encoder,
    load_minilm_tokenizer,
    mean_pool,
    top_count,
)

L2E = (
    "Situ et al. 2021, Learning to Explain: Generating Stable Explanations Fast (L2E), ACL, "
    "§4.4 Eq. 1 (IoU stability), App. C (document similarity)"
)

Similarity = Literal["semantic", "lexical"]
Pool = Literal["split", "sample"]
Document = str | tuple[str, str]
"""A single text, or a (text, text_pair) pair."""

Explanation = dict[int, frozenset[str]]
"""The words (lower-cased strings) an explanation gives each non-neutral label."""

_WORD = re.compile(r"\w+|[^\w\s]")
_MAX_NGRAM = 4
_EMBED_MAX_LENGTH = 256
_EMBED_BATCH_SIZE = 32
_RANKING_LABEL = 1  # the ranking form's single label: "in the top K %"


# -- document similarity -------------------------------------------------------------------------------


def _segments(document: Document) -> tuple[str, ...]:
    return (document,) if isinstance(document, str) else tuple(document)


def _ngrams(document: Document, n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams of the lower-cased document; for a pair, the union over its two texts
    (no n-gram runs from the text into the text_pair)."""
    grams: set[tuple[str, ...]] = set()
    for text in _segments(document):
        words = _WORD.findall(text.lower())
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return grams


def _lexical_matrix(documents: Sequence[Document]) -> np.ndarray:
    """Pairwise lexical similarities (N × N): ``_lexical_rows`` with every document an anchor."""
    return _lexical_rows(tuple(documents), tuple(range(len(documents))))


def lexical_similarity(a: Document, b: Document) -> float:
    """L2E's lexical similarity (App. C): Σ_{n=1..4} |G_n(a) ∩ G_n(b)| / |G_n(a) ∪ G_n(b)|, in [0, 4].

    G_n is the *set* of word n-grams of the lower-cased text, words being ``\\w+`` runs and single
    punctuation marks (regex ``\\w+|[^\\w\\s]``); an order n with an empty union contributes 0. For a
    pair, G_n is the union of both texts' n-grams.
    """
    return float(_lexical_matrix([a, b])[0, 1])


def _semantic_matrix(documents: Sequence[Document]) -> np.ndarray:
    """Pairwise cosine similarities (N × N) of the documents' all-MiniLM-L6-v2 embeddings."""
    embeddings = semantic_embeddings(documents)
    unit = embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
    return unit @ unit.T


def semantic_embeddings(documents: Sequence[Document]) -> np.ndarray:
    """Document embeddings (N × 384): the attention-masked mean of all-MiniLM-L6-v2's last hidden states,
    pairs encoded as pairs, truncated to 256 tokens.

    L2E sums BERT's token vectors; the cosine of a sum equals the cosine of the mean, so only the encoder
    differs. The embedded MiniLM (the one ``minilm-head`` uses, nothing downloaded) is deliberately not
    the explained model, so that neighbours do not depend on it. It runs on the CPU, where results are
    reproducible across machines; texts are batched by length (single texts and pairs apart, as a
    tokenizer call takes one kind).
    """
    tokenizer, encoder = load_minilm_tokenizer(), load_minilm_encoder().to("cpu")
    result = np.zeros((len(documents), encoder.config.hidden_size), dtype=np.float64)
    singles = [i for i, document in enumerate(documents) if isinstance(document, str)]
    pairs = [i for i, document in enumerate(documents) if not isinstance(document, str)]
    with torch.inference_mode():
        for group in (singles, pairs):
            ordered = sorted(group, key=lambda i: sum(map(len, _segments(documents[i]))))
            for start in range(0, len(ordered), _EMBED_BATCH_SIZE):
                rows = ordered[start : start + _EMBED_BATCH_SIZE]
                columns = [
                    list(column) for column in zip(*(_segments(documents[i]) for i in rows), strict=True)
                ]
                batch = tokenizer(
                    *columns,
                    truncation=True,
                    max_length=_EMBED_MAX_LENGTH,
                    padding=True,
                    return_tensors="pt",
                )
                hidden = encoder(**batch).last_hidden_state
                result[rows] = mean_pool(hidden, batch["attention_mask"]).double().numpy()
    return result


def similarity_matrix(documents: Sequence[Document], similarity: Similarity) -> np.ndarray:
    """Pairwise document similarities (N × N, symmetric): ``semantic`` (cosine of MiniLM embeddings,
    see ``semantic_embeddings``) or ``lexical`` (see ``lexical_similarity``)."""
    return {"semantic": _semantic_matrix, "lexical": _lexical_matrix}[similarity](documents)


def nearest_in_pool(
    pool: Sequence[Document], anchors: Sequence[int], similarity: Similarity, count: int
) -> list[list[int]]:
    """For each anchor (an index into ``pool``), the indices of its ``count`` most similar *other*
    documents of ``pool``, most similar first, ties broken by index; fewer when there are fewer others.

    Only the anchors' rows of the similarity matrix are computed (anchors × pool), so a pool of a whole
    test split costs one embedding pass (cached in-process by content) or one sparse product per n-gram
    order, never a pool × pool matrix.
    """
    if not anchors:
        return []
    rows = {"semantic": _semantic_rows, "lexical": _lexical_rows}[similarity](tuple(pool), tuple(anchors))
    result = []
    for anchor, row in zip(anchors, rows, strict=True):
        order = np.argsort(-row, kind="stable")
        result.append([int(j) for j in order[: count + 1] if j != anchor][:count])
    return result


def _semantic_rows(pool: tuple[Document, ...], anchors: tuple[int, ...]) -> np.ndarray:
    unit = _unit_embeddings(pool)
    return unit[list(anchors)] @ unit.T


@lru_cache(maxsize=8)
def _unit_embeddings(pool: tuple[Document, ...]) -> np.ndarray:
    embeddings = semantic_embeddings(pool)
    return embeddings / np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)


def _lexical_rows(pool: tuple[Document, ...], anchors: tuple[int, ...]) -> np.ndarray:
    """Lexical similarities of the anchors with every pool document (anchors × pool), each n-gram
    order as one sparse product: for binary document × n-gram matrices, X Xᵀ counts shared n-grams and
    the union is |a| + |b| − |a ∩ b|; only the anchors' rows are multiplied."""
    total = np.zeros((len(anchors), len(pool)), dtype=np.float64)
    for n in range(1, _MAX_NGRAM + 1):
        sets = [_ngrams(document, n) for document in pool]
        vocabulary: dict[tuple[str, ...], int] = {}
        rows, columns = [], []
        for row, grams in enumerate(sets):
            for gram in grams:
                rows.append(row)
                columns.append(vocabulary.setdefault(gram, len(vocabulary)))
        matrix = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(pool), max(len(vocabulary), 1)))
        intersection = (matrix[list(anchors)] @ matrix.T).toarray()
        sizes = np.array([len(grams) for grams in sets], dtype=np.float64)
        union = sizes[list(anchors), None] + sizes[None, :] - intersection
        total += np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)
    return total


def nearest_neighbours(documents: Sequence[Document], similarity: Similarity, count: int) -> list[list[int]]:
    """For each document, the indices of its ``count`` most similar *other* documents, most similar
    first, ties broken by index; fewer when there are fewer others. Cached in-process by content."""
    return [list(row) for row in _nearest_neighbours(tuple(documents), similarity, count)]


@lru_cache(maxsize=32)
def _nearest_neighbours(
    documents: tuple[Document, ...], similarity: Similarity, count: int
) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(row) for row in nearest_in_pool(documents, range(len(documents)), similarity, count))


def document(example: Example) -> Document:
    """What the similarities read of an example: its text, or (text, text_pair) for a pair."""
    return example.text if example.text_pair is None else (example.text, example.text_pair)


# -- the metric ----------------------------------------------------------------------------------------


class IouStabilityParams(Params):
    k: float = Field(
        30.0,
        gt=0,
        le=100,
        description=(
            "ranking form: the explanation is the top k % of the units (rounded half up, at least one; "
            "L2E footnote 5: 30 % of the words)"
        ),
    )
    similarity: Similarity = Field(
        "semantic",
        description=(
            "how neighbours are found (L2E App. C): cosine of all-MiniLM-L6-v2 mean-pooled embeddings "
            "(semantic), or Σ_{n=1..4} IoU of the word n-gram sets (lexical)"
        ),
    )
    neighbours: int = Field(3, ge=1, description="|N(x)|: the most similar other documents compared with x")
    pool: Pool = Field(
        "split",
        description=(
            "where neighbours are searched: the whole split the cell's sample is drawn from (split; L2E "
            "§4.5, 'the top-3 similar documents in the test set'; the neighbours are explained too), or "
            "only the cell's explained sample (sample; cheaper, neighbours far less similar)"
        ),
    )
    granularity: Granularity = Field(
        "word",
        description=(
            "units compared: whole words (a word's score is the mean of its tokens', its label its first "
            "token's) or single tokens; a unit is the lower-cased text its tokens cover"
        ),
    )
    order: Order = Field(
        "absolute",
        description=(
            "ranking form: which units are the top ones: largest magnitude (absolute, as L2E ranks by "
            "|weight|), highest score (descending) or lowest (ascending)"
        ),
    )
    form: Literal["ranking", "labels"] = Field(
        "ranking",
        description=(
            "the label set L of Eq. 1: the single set of the top k % units (ranking), or discrete per-token "
            "labels (labels; 0 is neutral): the explainer's, or for an explainer that only scores, its "
            "scores discretised by L2E's heuristic h as the paper does for its baselines. One form for "
            "every explainer, so that a column holds one definition"
        ),
    )
    match: str | None = Field(
        None,
        description=(
            "labels form: the label of an explainer of the suite whose label counts every cell is matched "
            "to, per document (L2E §4.5: Random selects 'the same K number of words' as the explainer it "
            "is compared with). A cell's units, ranked by its own scores (highest first), get that "
            "explainer's labels sorted from high positive to high negative: for `random`, a uniformly "
            "random permutation of the compared explainer's labels within the document. That explainer's "
            "own cell keeps its labels"
        ),
    )
    stop_words: bool = Field(
        False,
        description=(
            "drop stop words (scikit-learn's ENGLISH_STOP_WORDS, 318 words) from the selected words before "
            "the IoU, after the top k % or the labels were chosen (L2E Table 5, 'filter stopwords')"
        ),
    )

    @model_validator(mode="after")
    def _match_needs_labels(self) -> IouStabilityParams:
        if self.match is not None and self.form != "labels":
            raise ValueError("match matches label counts: it needs form: labels")
        return self


def unit_texts(attribution: Attribution, example: Example, units: Sequence[np.ndarray]) -> list[str]:
    """Each unit as a lower-cased string: the text of its segment (``text`` or ``text_pair``) from the
    start of its first token to the end of its last token."""
    result = []
    for unit in units:
        first, last = int(unit[0]), int(unit[-1])
        text = example.text if attribution.segments[first] == 0 else example.text_pair
        result.append(text[attribution.offsets[first][0] : attribution.offsets[last][1]].lower())
    return result


def unit_labels(attribution: Attribution, units: Sequence[np.ndarray]) -> np.ndarray:
    """Each unit's label (its first token's): the explainer's labels, or its scores discretised by
    L2E's heuristic h when it gives none."""
    labels = attribution.labels if attribution.labels is not None else attribution.discretised_labels()
    return np.array([labels[int(unit[0])] for unit in units], dtype=np.int64)


def matched_labels(attribution: Attribution, reference: Attribution, granularity: Granularity) -> np.ndarray:
    """``attribution``'s units labelled with ``reference``'s label counts: its units ranked by its own
    scores (highest first, ties in text order) take the reference's unit labels sorted from high positive
    to high negative. For uniformly random scores this is a uniformly random permutation of the
    reference's labels within the document (L2E's Random: 'the same K number of words')."""
    if attribution.input_ids != reference.input_ids:
        raise PluginError(
            f"iou-stability: match: example '{attribution.example_id}' is read as other tokens by the "
            "matched explainer"
        )
    units = attribution.units(granularity)
    wanted = np.sort(unit_labels(reference, reference.units(granularity)))[::-1]
    order = np.argsort(-attribution.unit_scores(units), kind="stable")
    labels = np.zeros(len(units), dtype=np.int64)
    labels[order] = wanted
    return labels


def pair_iou(a: Explanation, b: Explanation) -> float | None:
    """Σ_ℓ |a_ℓ ∩ b_ℓ| / Σ_ℓ |a_ℓ ∪ b_ℓ| over the (non-neutral) labels of either; ``None`` when both
    are empty (the pair says nothing about stability)."""
    labels = a.keys() | b.keys()
    empty: frozenset[str] = frozenset()
    union = sum(len(a.get(label, empty) | b.get(label, empty)) for label in labels)
    if union == 0:
        return None
    return sum(len(a.get(label, empty) & b.get(label, empty)) for label in labels) / union


class IouStability(Metric):
    """IoU stability: agreement of a document's explanation with its nearest neighbours' (L2E Eq. 1).

    v_ℓ^x is the set of words of x with label ℓ, as lower-cased strings (a word occurring twice counts
    once). In the ranking form (the default), L is the single set "the top k % units" of
    ``Attribution.ranking`` (by |score| by default, ties in text order). In the labels form, L is the
    explainer's discrete labels (``Attribution.labels``; a word's label is its first token's) and neutral
    (0) is left out; an explainer that only scores gets its scores discretised by L2E's heuristic h
    (``Attribution.discretised_labels``), as the paper compares its baselines with sequence-labelling
    students. With ``match``, every cell's labels are matched in number to one explainer's (see
    ``matched_labels``): L2E's Random baseline. With ``stop_words``, stop words leave the selected sets
    before the IoU (Table 5). The form is a parameter, never chosen from the attributions, so that every
    explainer's cell of a column has the same definition. For each neighbour x',
    IoU = Σ_ℓ |v_ℓ^x ∩ v_ℓ^x'| / Σ_ℓ |v_ℓ^x ∪ v_ℓ^x'|; the value is the mean over neighbours.

    Neighbours are the ``neighbours`` most similar other documents (ties by order), by semantic or
    lexical similarity (L2E App. C; see ``nearest_in_pool``). With ``pool: split`` (the default, as L2E
    §4.5) they come from the whole split the cell's sample is drawn from: the metric declares them
    (``extra_examples``, ``find_extra_examples``), and the harness explains them with the cell's
    explainer, cached like any explanation, and passes their attributions
    (``MetricInput.extra_attributions``) and each example's neighbours (``MetricInput.related``). Other
    metrics of the cell never see them. With ``pool: sample``, or when the harness gives no neighbours,
    they come from the cell's own examples (values then depend on the sample size). L2E's semantic
    encoder is BERT-base; here it is the embedded all-MiniLM-L6-v2. A pair where neither explanation
    selects anything is skipped; NaN where no pair is left (or the sample has one document).
    """

    name: ClassVar[str] = "iou-stability"
    # 2: no form "auto" (its default); the default form is ranking. 3: neighbours from the whole split
    # (pool), match, stop_words
    version: ClassVar[str] = "3"
    Params = IouStabilityParams
    paper: ClassVar[str] = L2E
    family: ClassVar[str] = "stability"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    # The parameter naming an explainer (by label) whose attributions of the same examples the metric
    # reads as ``MetricInput.reference``; that explainer's own cell gets none (harness.grid).
    explainer_reference: ClassVar[str] = "match"

    params: IouStabilityParams

    @classmethod
    def score_order_for(cls, params: IouStabilityParams) -> Literal["signed", "absolute"]:
        """The order the compared units are chosen in, read by the teacher-vs-student pairing
        (``harness.distillation``): signed for the labels form (positive and negative labels) and the
        ranking form by highest or lowest score, absolute for the ranking form by |score| (L2E's
        ranking formulation). A student is paired with its teacher only in the order it learned."""
        if params.form == "ranking" and params.order == "absolute":
            return "absolute"
        return "signed"

    @classmethod
    def extra_examples(cls, params: IouStabilityParams) -> dict | None:
        """The examples beyond the cell's own that the metric needs explained, as plain data (part of the
        plan): each example's nearest neighbours in its whole split; None with ``pool: sample``."""
        if params.pool == "sample":
            return None
        return {"neighbours": params.neighbours, "similarity": params.similarity}

    @classmethod
    def find_extra_examples(
        cls, need: dict, anchors: Sequence[Example], pool: Sequence[Example]
    ) -> dict[str, list[str]]:
        """For each anchor's id, the ids of the pool examples ``need`` (``extra_examples``) asks for: its
        nearest neighbours in ``pool``, which holds the anchors."""
        index = {example.id: i for i, example in enumerate(pool)}
        missing = [example.id for example in anchors if example.id not in index]
        if missing:
            raise PluginError(f"iou-stability: example '{missing[0]}' is not in the pool it is compared in")
        found = nearest_in_pool(
            [document(example) for example in pool],
            [index[example.id] for example in anchors],
            need["similarity"],
            need["neighbours"],
        )
        return {example.id: [pool[j].id for j in row] for example, row in zip(anchors, found, strict=True)}

    def compute(self, data: MetricInput) -> np.ndarray:
        attributions = _by_id(data)
        reference = None if data.reference is None else _by_id(data.reference)
        related = getattr(data, "related", None)
        if related is None:  # the cell's own examples are the pool
            ids = [attribution.example_id for attribution in data.attributions]
            documents = [document(self._example(data, example_id)) for example_id in ids]
            found = nearest_neighbours(documents, self.params.similarity, self.params.neighbours)
            related = {ids[i]: [ids[j] for j in row] for i, row in enumerate(found)}
        explanations: dict[str, Explanation] = {}

        def explanation(example_id: str) -> Explanation:
            if example_id not in explanations:
                attribution = attributions.get(example_id)
                if attribution is None:
                    raise PluginError(f"iou-stability: example '{example_id}' has no attribution")
                other = None
                if reference is not None:
                    other = reference.get(example_id)
                    if other is None:
                        raise PluginError(
                            f"iou-stability: example '{example_id}' has no attribution of the matched "
                            "explainer"
                        )
                example = self._example(data, example_id)
                explanations[example_id] = self._explanation(attribution, example, other)
            return explanations[example_id]

        values = []
        for attribution in data.attributions:
            own = explanation(attribution.example_id)
            ious = [pair_iou(own, explanation(j)) for j in related.get(attribution.example_id, [])]
            defined = [iou for iou in ious if iou is not None]
            values.append(float(np.mean(defined)) if defined else np.nan)
        return np.asarray(values, dtype=np.float64)

    @staticmethod
    def _example(data: MetricInput, example_id: str) -> Example:
        example = data.examples.get(example_id)
        if example is None:
            raise PluginError(f"iou-stability: example '{example_id}' is not in the cell's examples")
        return example

    def _explanation(
        self, attribution: Attribution, example: Example, reference: Attribution | None
    ) -> Explanation:
        """v_ℓ for every non-neutral label ℓ: from the labels (matched in number to ``reference``'s when
        given), or the top k % of the ranking; without stop words with ``stop_words``."""
        granularity = self.params.granularity
        if self.params.form == "labels":
            units = attribution.units(granularity)
            if reference is None:
                labels = unit_labels(attribution, units)
            else:
                labels = matched_labels(attribution, reference, granularity)
            sets: dict[int, set[str]] = {}
            for label, text in zip(labels.tolist(), unit_texts(attribution, example, units), strict=True):
                if label != 0:
                    sets.setdefault(label, set()).add(text)
        else:
            ranking = attribution.ranking(granularity, self.params.order)
            top = ranking[: top_count(self.params.k, len(ranking))]
            sets = {_RANKING_LABEL: set(unit_texts(attribution, example, top))}
        if self.params.stop_words:
            sets = {label: texts - ENGLISH_STOP_WORDS for label, texts in sets.items()}
        return {label: frozenset(texts) for label, texts in sets.items()}


def _by_id(data: MetricInput) -> dict[str, Attribution]:
    """A cell's attributions by example id: its extra examples' (``MetricInput.extra_attributions``),
    then its own, which win."""
    extra = getattr(data, "extra_attributions", None) or ()
    return {attribution.example_id: attribution for attribution in [*extra, *data.attributions]}
