"""Attributions computed by another tool, read from a file and aligned to the model's tokens."""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from harness import Classifier, Encoding, Example, Explainer, ExplainerParams, Explanation, PluginError

# Row fields that say where a row of ``bench export --attributions`` comes from: what ``explainer`` and
# ``where`` select by, and what an ambiguity is explained with.
SELECTORS = ("explainer", "explainer_params", "dataset", "model", "variant", "seed", "run_id")

# Special tokens skipped when tokens are located in the text (they have no characters).
SPECIAL_TOKEN = re.compile(
    r"^(\[[A-Z_]+\]|<\|[^|<>\s]+\|>|</?s>|<(pad|unk|mask|cls|sep|bos|eos|eod)>)$", re.IGNORECASE
)
# Markers of sub-word vocabularies: WordPiece continuation, SentencePiece and byte-level BPE word starts.
PIECE_PREFIXES = ("##", "▁", "Ġ", "Ċ")
PIECE_SUFFIX = "</w>"  # end of word in BPE vocabularies of the original BPE paper (CLIP, XLM)

Span = tuple[int, int, float]


class PrecomputedParams(ExplainerParams):
    """Where the file is, how its spans meet the model's tokens, and which rows to read."""

    path: str = Field(
        description="the JSONL file of attributions; a relative path resolves against the current "
        "working directory"
    )
    align: Literal["copy", "split"] = Field(
        "copy",
        description="copy: a token gets the mean of the scores of the spans it overlaps, weighted by "
        "overlapped characters (a word's score on each of its sub-tokens); split: a span's score is "
        "divided among the tokens it overlaps in proportion to overlapped characters (sums kept)",
    )
    explainer: str | None = Field(
        None,
        description="keep only rows whose `explainer` field is this name (a file of `bench export "
        "--attributions` holding several explainers)",
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="keep only rows whose fields equal these values, e.g. {seed: 0, model: bow}; a "
        "mapping matches a row's mapping on its own keys, e.g. {explainer_params: {reduction: l2}}",
    )

    @field_validator("path")
    @classmethod
    def _file_exists(cls, path: str) -> str:
        resolved = _resolve(path)
        if not resolved.is_file():
            raise ValueError(
                f"no file of precomputed attributions at {resolved} (a relative path resolves against "
                "the current working directory)"
            )
        return path


class Precomputed(Explainer):
    """Attributions made by another tool (captum, shap, ferret, bench export), read from JSONL.

    Attributions computed elsewhere (captum, shap, ferret, inseq, Thermostat, an earlier run's ``bench
    export --attributions``) are read from a JSONL file and aligned to the model's tokens through
    character offsets.

    One JSON object per line: ``id`` (or ``example_id``), the example's id in the dataset, and either

    - ``spans``: ``[[start, end, score], ...]``, character spans ``[start, end)`` over ``text`` (and, for
      text pairs, ``spans_pair`` over ``text_pair``); spans may overlap and need not cover the text; or
    - ``tokens`` and ``scores`` (one score per token), with optional ``offsets`` (``[start, end)`` per
      token, in its own segment's text) and ``segments`` (0: ``text``, 1: ``text_pair``, -1: special), as
      ``bench export --attributions`` writes them. Without ``offsets`` the tokens are found in the text
      in order (case and accents ignored), WordPiece ``##``, SentencePiece ``▁`` and byte-level BPE ``Ġ``
      markers removed, special tokens ([CLS], [SEP], [UNK], <s>, </s>, <pad>, ...) skipped; without
      ``segments`` a pair's tokens after the first special token that follows a real one are
      ``text_pair``'s.

    Optional fields: ``text`` / ``text_pair`` (must equal the dataset example's texts exactly),
    ``target`` (the class explained, an index or a class name: must be the class the cell explains),
    ``seconds`` (the tool's cost of explaining the example: what ``runtime`` reports; without it runtime
    is undefined, never the time to read the file). Other fields are ignored. A file of ``bench export
    --attributions`` is read as it is; when it holds several explainers, runs, models or seeds, the
    ``explainer`` and ``where`` parameters select one.

    Each real token of the model gets a score from the spans of its segment that overlap its characters
    (``align``): ``copy`` (the default) gives it the overlap-weighted mean of their scores, so every
    sub-token of a word scored as a whole gets the word's score, whatever the model's tokenizer, and a
    word's unit score (the mean of its tokens') is the file's; ``split`` divides each span's score among
    the tokens it overlaps in proportion to overlapped characters, so sums are kept (completeness of
    integrated gradients or SHAP values) but a word's tokens share its score. A token no span covers gets
    0. When the spans are the model's tokens, both give the file's scores exactly.

    Of several rows for one id, the one whose stated texts are the example's is read (another dataset's
    rows state other texts). An example missing from the file, whose texts differ, whose spans fall
    outside its text, whose target is another class, or with several rows still, fails the cell, naming
    the example. The file's content is part of the
    attributions' cache key (``inputs_identity``): editing it recomputes them.
    """

    name: ClassVar[str] = "precomputed"
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = ""
    Params = PrecomputedParams

    def __init__(self, params=None, seed: int = 0):
        super().__init__(params, seed)
        self._rows: dict[str, list[dict]] = {}
        self._examples: dict[str, Example] = {}

    @classmethod
    def inputs_identity(cls, params: PrecomputedParams) -> dict:
        return {"sha256": _file_sha256(_resolve(params.path))}

    def fit(self, classifier: Classifier, dataset, context=None) -> None:
        """Read the file's rows (those selected) by example id, and the dataset's examples by id."""
        self._rows = _select(_read_rows(_resolve(self.params.path)), self.params)
        self._examples = {}
        for split in ("test", "validation", "train"):  # an id in several splits: the test split's
            for example in dataset.split(split):
                self._examples.setdefault(example.id, example)

    def explain(self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor) -> Explanation:
        if len(encoding.example_ids) != len(encoding):
            raise PluginError("precomputed needs the batch's example ids (the runner sets them)")
        scores = torch.zeros(tuple(encoding.input_ids.shape), dtype=torch.float64)
        seconds = torch.full((len(encoding),), math.nan, dtype=torch.float64)
        for row, example_id in enumerate(encoding.example_ids):
            example = self._examples.get(example_id)
            if example is None:
                raise PluginError(f"example '{example_id}' is not in the dataset precomputed was fitted on")
            record = self._record(example)
            _check_texts(record, example)
            _check_target(record, int(targets[row]), classifier, self.params.target)
            spans = _spans(record, example)
            values = align(encoding.offsets[row], encoding.segments[row], spans, self.params.align)
            scores[row, : len(values)] = torch.from_numpy(values)
            seconds[row] = _seconds(record)
        return Explanation(scores, seconds=seconds)

    def _record(self, example: Example) -> dict:
        """The example's row; of several, the one whose stated texts are the example's (rows of another
        dataset sharing its id state other texts), else an error saying how to choose."""
        example_id = example.id
        rows = self._rows.get(example_id)
        path = self.params.path
        if rows and len(rows) > 1:
            rows = [row for row in rows if _texts_match(row, example)] or rows[:1]  # none: say why
        if not rows:
            raise PluginError(
                f"example '{example_id}' has no attributions in {path}: add a row with \"id\": "
                f'"{example_id}", or evaluate only the examples the file explains (sample, --limit)'
            )
        if len(rows) > 1:
            differ = [
                field
                for field in SELECTORS
                if len({json.dumps(r.get(field), sort_keys=True) for r in rows}) > 1
            ]
            if "explainer" in differ:
                choose = (
                    "choose one with the parameter `explainer: NAME` ("
                    + ", ".join(sorted({str(r.get("explainer")) for r in rows}))
                    + ")"
                )
            elif differ:
                choose = "choose one with the parameter `where: {" + differ[0] + ": ...}`"
            else:
                choose = "keep one row per example"
            which = f", which differ in {', '.join(differ)}" if differ else ""
            raise PluginError(f"example '{example_id}' has {len(rows)} rows in {path}{which}: {choose}")
        return rows[0]


# -- the file ----------------------------------------------------------------------------------------------
def _resolve(path: str) -> Path:
    return Path(path).expanduser().resolve()


def _file_sha256(path: Path) -> str:
    """The file's content hash, read anew each time (a stamp of size and modification time would miss
    an edit that keeps the size within the file system's clock tick)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise PluginError(
            f"cannot read the precomputed attributions {path}: {error.strerror or error}"
        ) from None
    return digest.hexdigest()


def _read_rows(path: Path) -> list[dict]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PluginError(f"cannot read the precomputed attributions {path}: {error}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise PluginError(f"{path}:{number}: not a JSON object ({error})") from None
        if not isinstance(row, dict):
            raise PluginError(f"{path}:{number}: not a JSON object")
        example_id = row.get("id", row.get("example_id"))
        if example_id is None:
            raise PluginError(f'{path}:{number}: no "id" (the example\'s id in the dataset)')
        row["id"] = str(example_id)
        rows.append(row)
    return rows


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in wanted.items())
    return value == wanted


def _select(rows: list[dict], params: PrecomputedParams) -> dict[str, list[dict]]:
    """The rows the parameters keep, by example id."""
    wanted = dict(params.where)
    if params.explainer is not None:
        wanted["explainer"] = params.explainer
    kept = [row for row in rows if all(_matches(row.get(k), v) for k, v in wanted.items())]
    if rows and not kept:
        found = {
            key: sorted({json.dumps(row.get(key), sort_keys=True) for row in rows})[:5] for key in wanted
        }
        raise PluginError(
            f"no row of {params.path} has {json.dumps(wanted, sort_keys=True)}; the file has "
            + "; ".join(f"{key}: {', '.join(values)}" for key, values in found.items())
        )
    by_id: dict[str, list[dict]] = {}
    for row in kept:
        by_id.setdefault(row["id"], []).append(row)
    return by_id


# -- checks ------------------------------------------------------------------------------------------------
def _texts_match(record: dict, example: Example) -> bool:
    """Whether the texts the row states (if any) are the example's."""
    texts = {"text": example.text, "text_pair": example.text_pair}
    return all(record.get(field, text) == text for field, text in texts.items())


def _check_texts(record: dict, example: Example) -> None:
    for field, text in (("text", example.text), ("text_pair", example.text_pair)):
        if field in record and record[field] != text:
            raise PluginError(
                f"example '{example.id}': the file's {field} differs from the dataset's "
                f"({_preview(record[field])} vs {_preview(text)}): the attributions explain another text"
            )


def _preview(text: Any) -> str:
    if not isinstance(text, str):
        return json.dumps(text)
    return json.dumps(text if len(text) <= 40 else text[:37] + "...", ensure_ascii=False)


def _check_target(record: dict, target: int, classifier: Classifier, requested) -> None:
    stated = record.get("target")
    if stated is None:
        return
    labels = list(classifier.labels)
    if isinstance(stated, str) and stated in labels:
        stated = labels.index(stated)
    if stated != target:
        explained = "the model's prediction" if requested == "predicted" else "the `target` parameter"
        raise PluginError(
            f"example '{record['id']}': the file explains class {record['target']!r} but this cell "
            f"explains class {target} ({labels[target]}, {explained}): use the model the file was "
            "computed with, or set `target` to the file's class"
        )


def _seconds(record: dict) -> float:
    seconds = record.get("seconds")
    if seconds is None:
        return math.nan
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise PluginError(f"example '{record['id']}': seconds must be a number ≥ 0, not {seconds!r}")
    return float(seconds)


# -- spans -------------------------------------------------------------------------------------------------
def _spans(record: dict, example: Example) -> dict[int, list[Span]]:
    """The record's scores as character spans per segment (0: text, 1: text_pair)."""
    texts = {0: example.text, 1: example.text_pair}
    if "spans" in record or "spans_pair" in record:
        spans = {0: record.get("spans") or [], 1: record.get("spans_pair") or []}
    elif "tokens" in record and "scores" in record:
        spans = _token_spans(record, example)
    else:
        raise PluginError(
            f"example '{example.id}': its row has neither spans nor tokens and scores (see the "
            "README's section on precomputed for the format)"
        )
    checked: dict[int, list[Span]] = {}
    for segment, items in spans.items():
        field = "spans" if segment == 0 else "spans_pair"
        if items and texts[segment] is None:
            raise PluginError(f"example '{example.id}' is a single text but its row has {field}")
        checked[segment] = []
        length = len(texts[segment] or "")
        for item in items:
            if not (
                isinstance(item, list | tuple)
                and len(item) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) for v in item[:2])
                and isinstance(item[2], int | float)
                and not isinstance(item[2], bool)
            ):
                raise PluginError(
                    f"example '{example.id}': {field} item {item!r} is not [start, end, score] "
                    "(character offsets and a number)"
                )
            start, end, score = item
            if not 0 <= start <= end <= length:
                raise PluginError(
                    f"example '{example.id}': {field} item [{start}, {end}, ...] falls outside its "
                    f"{'text' if segment == 0 else 'text_pair'} of {length} characters: the file was "
                    "made for another text"
                )
            if not math.isfinite(score):
                raise PluginError(f"example '{example.id}': {field} item {item!r} has a non-finite score")
            checked[segment].append((start, end, float(score)))
    return checked


def _token_spans(record: dict, example: Example) -> dict[int, list]:
    """Tokens and scores (and offsets, segments, when given) as spans per segment."""
    tokens, scores = record["tokens"], record["scores"]
    offsets, segments = record.get("offsets"), record.get("segments")
    if not isinstance(tokens, list) or not isinstance(scores, list) or len(tokens) != len(scores):
        raise PluginError(f"example '{example.id}': tokens and scores must be lists of one length")
    for name, values in (("offsets", offsets), ("segments", segments)):
        if values is not None and (not isinstance(values, list) or len(values) != len(tokens)):
            raise PluginError(f"example '{example.id}': {name} must list one value per token")
    if segments is None:
        segments = _infer_segments(tokens, example.text_pair is not None)
    spans: dict[int, list] = {0: [], 1: []}
    if offsets is not None:
        for segment, span, score in zip(segments, offsets, scores, strict=True):
            if segment in (0, 1):
                spans[segment].append([*(span if isinstance(span, list | tuple) else [span]), score])
        return spans
    texts = {0: example.text, 1: example.text_pair or ""}
    located = {segment: _Locator(text) for segment, text in texts.items()}
    for position, (token, segment, score) in enumerate(zip(tokens, segments, scores, strict=True)):
        if segment not in (0, 1) or SPECIAL_TOKEN.match(str(token)):
            continue
        span = located[segment].find(str(token))
        if span is None:
            raise PluginError(
                f"example '{example.id}': token {position} {token!r} is not found in its text after "
                f"character {located[segment].cursor}: give each token's offsets (return_offsets_mapping)"
            )
        if span[0] < span[1]:  # a bare marker (a space) covers no character
            spans[segment].append([*span, score])
    return spans


def _infer_segments(tokens: Sequence, pair: bool) -> list[int]:
    """-1 for special tokens; for a pair, 1 after the first special token that follows a real one."""
    segments, segment, seen = [], 0, False
    for token in tokens:
        if SPECIAL_TOKEN.match(str(token)):
            if pair and seen:
                segment = 1
            segments.append(-1)
        else:
            seen = True
            segments.append(segment)
    return segments


def _fold(text: str) -> list[tuple[str, int]]:
    """Each character lower-cased and stripped of accents, with the index of the one it comes from."""
    folded = []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFKD", char):
            if not unicodedata.combining(part):
                folded += [(c, index) for c in part.lower()]
    return folded


class _Locator:
    """Finds tokens in a text one after another (case and accents ignored, sub-word markers removed)."""

    def __init__(self, text: str):
        self.folded = _fold(text)
        self.text = "".join(c for c, _ in self.folded)
        self.position = 0  # in the folded text
        self.length = len(text)

    @property
    def cursor(self) -> int:
        """The character of the original text the next search starts from."""
        return self.folded[self.position][1] if self.position < len(self.folded) else self.length

    def find(self, token: str) -> tuple[int, int] | None:
        for prefix in PIECE_PREFIXES:
            token = token.removeprefix(prefix)
        token = token.removesuffix(PIECE_SUFFIX)
        needle = "".join(c for c, _ in _fold(token))
        if not needle.strip():
            return (self.cursor, self.cursor)
        needle = needle.strip()
        found = self.text.find(needle, self.position)
        if found < 0:
            return None
        self.position = found + len(needle)
        return self.folded[found][1], self.folded[self.position - 1][1] + 1


# -- alignment ---------------------------------------------------------------------------------------------
def align(
    offsets: Sequence[tuple[int, int]],
    segments: Sequence[int],
    spans: dict[int, list[Span]],
    mode: Literal["copy", "split"] = "copy",
) -> np.ndarray:
    """One score per token from character spans of the tokens' segments (special tokens: 0).

    A token and a span meet by the characters they share; a zero-width token only meets a zero-width
    span at the same place. ``copy``: a token gets the mean of its spans' scores weighted by shared
    characters; ``split``: a span's score is divided among its tokens in proportion to shared characters.
    Weights are normalised before they multiply a score, so a token that is exactly one span gets that
    span's score bit for bit.
    """
    result = np.zeros(len(offsets), dtype=np.float64)
    for segment, items in spans.items():
        positions = np.flatnonzero(np.asarray(segments, dtype=np.int64) == segment)
        if not len(positions) or not items:
            continue
        token = np.asarray([offsets[p] for p in positions], dtype=np.int64).reshape(-1, 2)
        span = np.asarray([item[:2] for item in items], dtype=np.int64).reshape(-1, 2)
        score = np.asarray([item[2] for item in items], dtype=np.float64)
        shared = np.minimum(token[:, None, 1], span[None, :, 1]) - np.maximum(
            token[:, None, 0], span[None, :, 0]
        )
        weights = np.clip(shared, 0, None).astype(np.float64)
        empty = (token[:, None, 0] == token[:, None, 1]) & (span[None, :, 0] == span[None, :, 1])
        weights[empty & (token[:, None, 0] == span[None, :, 0])] = 1.0
        # copy: each token's weights sum to 1 over its spans; split: each span's over its tokens
        totals = weights.sum(axis=1 if mode == "copy" else 0, keepdims=True)
        shares = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
        result[positions] = (shares * score[None, :]).sum(axis=1)
    return result
