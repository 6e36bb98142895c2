"""Stability: do similar documents get similar explanations? (L2E §4.4, Eq. 1; App. C)

For each explained document x, its neighbours N(x) are the most similar *other* documents among the
cell's explained examples, by one of L2E's two document similarities (App. C): semantic (cosine of
sentence embeddings) or lexical (n-gram overlap). The explanation of x is a set of words per label,
v_ℓ^x, as lower-cased strings, so that the same word in two documents matches; Eq. 1 then averages,
over the neighbours, the label-wise intersection over union:

    IoU(x, N(x)) = 1/|N(x)| · Σ_{x' ∈ N(x)} Σ_{ℓ ≠ neutral} |v_ℓ^x ∩ v_ℓ^x'| / Σ_{ℓ ≠ neutral} |v_ℓ^x ∪ v_ℓ^x'|

Neighbours are computed once per sample and cached in-process: every explainer's cell on the same
sample asks for the same ones, and the semantic encoder is independent of the explained model, so the
neighbours are the same for every model and explainer. The metric never loads the explained model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.sparse import csr_matrix

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
    """Pairwise lexical similarities (N × N), each n-gram order as one sparse product: for binary
    document × n-gram matrices, X Xᵀ counts shared n-grams and the union is |a| + |b| − |a ∩ b|."""
    total = np.zeros((len(documents), len(documents)), dtype=np.float64)
    for n in range(1, _MAX_NGRAM + 1):
        sets = [_ngrams(document, n) for document in documents]
        vocabulary: dict[tuple[str, ...], int] = {}
        rows, columns = [], []
        for row, grams in enumerate(sets):
            for gram in grams:
                rows.append(row)
                columns.append(vocabulary.setdefault(gram, len(vocabulary)))
        matrix = csr_matrix(
            (np.ones(len(rows)), (rows, columns)), shape=(len(documents), max(len(vocabulary), 1))
        )
        intersection = (matrix @ matrix.T).toarray()
        sizes = np.array([len(grams) for grams in sets], dtype=np.float64)
        union = sizes[:, None] + sizes[None, :] - intersection
        total += np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)
    return total


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


def nearest_neighbours(documents: Sequence[Document], similarity: Similarity, count: int) -> list[list[int]]:
    """For each document, the indices of its ``count`` most similar *other* documents, most similar
    first, ties broken by index; fewer when there are fewer others. Cached in-process by content."""
    return [list(row) for row in _nearest_neighbours(tuple(documents), similarity, count)]


@lru_cache(maxsize=32)
def _nearest_neighbours(
    documents: tuple[Document, ...], similarity: Similarity, count: int
) -> tuple[tuple[int, ...], ...]:
    matrix = similarity_matrix(documents, similarity)
    result = []
    for i, row in enumerate(matrix):
        order = np.argsort(-row, kind="stable")
        result.append(tuple(int(j) for j in order if j != i)[:count])
    return tuple(result)


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
    neighbours: int = Field(
        3, ge=1, description="|N(x)|: the most similar other documents of the cell's sample compared with x"
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


def unit_texts(attribution: Attribution, example: Example, units: Sequence[np.ndarray]) -> list[str]:
    """Each unit as a lower-cased string: the text of its segment (``text`` or ``text_pair``) from the
    start of its first token to the end of its last token."""
    result = []
    for unit in units:
        first, last = int(unit[0]), int(unit[-1])
        text = example.text if attribution.segments[first] == 0 else example.text_pair
        result.append(text[attribution.offsets[first][0] : attribution.offsets[last][1]].lower())
    return result


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
    students. The form is a parameter, never chosen from the attributions, so that every explainer's cell
    of a column has the same definition. For each neighbour x', IoU = Σ_ℓ |v_ℓ^x ∩ v_ℓ^x'| / Σ_ℓ |v_ℓ^x ∪ v_ℓ^x'|; the value is the mean over neighbours.

    Neighbours are the ``neighbours`` most similar other documents of the cell's sample (ties by sample
    order), by semantic or lexical similarity (L2E App. C; see ``nearest_neighbours``). L2E draws them
    from the whole test set; here they come from the explained sample, so values depend on the sample
    (a larger one has closer neighbours): compare explainers on the same sample. L2E's semantic encoder is
    BERT-base; here it is the embedded all-MiniLM-L6-v2. A pair where neither explanation selects anything
    is skipped; NaN where no pair is left (or the sample has one document).
    """

    name: ClassVar[str] = "iou-stability"
    version: ClassVar[str] = "2"  # 2: no form "auto" (its default); the default form is ranking
    Params = IouStabilityParams
    paper: ClassVar[str] = L2E
    family: ClassVar[str] = "stability"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    params: IouStabilityParams

    def compute(self, data: MetricInput) -> np.ndarray:
        examples = [self._example(data, attribution) for attribution in data.attributions]
        use_labels = self.params.form == "labels"
        explanations = [
            self._explanation(attribution, example, use_labels)
            for attribution, example in zip(data.attributions, examples, strict=True)
        ]
        documents = [
            example.text if example.text_pair is None else (example.text, example.text_pair)
            for example in examples
        ]
        neighbours = nearest_neighbours(documents, self.params.similarity, self.params.neighbours)
        values = []
        for explanation, others in zip(explanations, neighbours, strict=True):
            ious = [pair_iou(explanation, explanations[j]) for j in others]
            defined = [iou for iou in ious if iou is not None]
            values.append(float(np.mean(defined)) if defined else np.nan)
        return np.asarray(values, dtype=np.float64)

    @staticmethod
    def _example(data: MetricInput, attribution: Attribution) -> Example:
        example = data.examples.get(attribution.example_id)
        if example is None:
            raise PluginError(
                f"iou-stability: example '{attribution.example_id}' is not in the cell's examples"
            )
        return example

    def _explanation(self, attribution: Attribution, example: Example, use_labels: bool) -> Explanation:
        """v_ℓ for every non-neutral label ℓ: from the discrete labels, or the top k % of the ranking."""
        granularity = self.params.granularity
        if use_labels:
            labels = attribution.labels
            if labels is None:
                labels = attribution.discretised_labels()
            units = attribution.units(granularity)
            sets: dict[int, set[str]] = {}
            for unit, text in zip(units, unit_texts(attribution, example, units), strict=True):
                label = labels[int(unit[0])]
                if label != 0:
                    sets.setdefault(label, set()).add(text)
            return {label: frozenset(texts) for label, texts in sets.items()}
        ranking = attribution.ranking(granularity, self.params.order)
        top = ranking[: top_count(self.params.k, len(ranking))]
        return {_RANKING_LABEL: frozenset(unit_texts(attribution, example, top))}
