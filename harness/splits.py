"""What dataset plugins share: split parameters, stratified splitting, rows to examples (with rationale
spans checked against their text), label names. Part of the plugin API (``from harness import ...``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

from pydantic import Field, model_validator

from harness.data import Example
from harness.errors import BenchError
from harness.plugin import Params


class SubsetParams(Params):
    """Parameters of every built-in dataset: how validation is carved, the seed, a train cap."""

    validation_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="fraction of the examples held out as the validation split when the data has none "
        "(stratified by label)",
    )
    split_seed: int = Field(
        0, strict=True, description="seed of the stratified splits and of the max_train subsample"
    )  # strict: a YAML boolean (true) is not seed 1
    max_train: int | None = Field(
        None,
        ge=1,
        description="keep at most this many train examples (stratified subsample), for quick suites; "
        "none keeps all",
    )


class SplitParams(SubsetParams):
    """Parameters of a dataset that is split into train, validation and test by fractions."""

    test_fraction: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="fraction of the examples held out as the test split when the data has none "
        "(stratified by label); 1.0 puts everything in test, for evaluation-only data",
    )

    @model_validator(mode="after")
    def _fractions_fit(self) -> Self:
        if self.test_fraction + self.validation_fraction > 1.0 + 1e-9:
            raise ValueError(
                f"test_fraction ({self.test_fraction}) + validation_fraction ({self.validation_fraction}) "
                "is more than 1; lower one of them"
            )
        return self


def stratified_take(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """Split ``examples`` into (rest, taken), ``taken`` holding ``fraction`` of them, stratified by label.

    Both parts come in the shuffled order ``train_test_split`` returns, which depends only on the input
    order and ``seed``. ``fraction`` may be 0 (nothing taken, order kept) or 1 (everything taken).
    """
    examples = tuple(examples)
    # Rounded up, as train_test_split does, less a hair so that 0.2 * 100 is 20 and not 21.
    count = math.ceil(fraction * len(examples) - 1e-9)
    if count <= 0:
        return examples, ()
    if count >= len(examples):
        return (), examples
    return _split(examples, test_size=count, seed=seed)


def subsample(examples: Sequence[Example], limit: int | None, seed: int) -> tuple[Example, ...]:
    """At most ``limit`` of ``examples``, stratified by label; all of them (order kept) when they fit."""
    examples = tuple(examples)
    if limit is None or len(examples) <= limit:
        return examples
    kept, _ = _split(examples, test_size=len(examples) - limit, seed=seed)
    return kept


def split_three(
    pool: Sequence[Example], test_fraction: float, validation_fraction: float, seed: int
) -> tuple[tuple[Example, ...], tuple[Example, ...], tuple[Example, ...]]:
    """(train, validation, test) of ``pool``; both fractions are of the whole pool."""
    pool = tuple(pool)
    rest, test = stratified_take(pool, test_fraction, seed)
    remaining = 1.0 - test_fraction
    # validation_fraction is of the whole pool, so it is a larger share of what the test split left.
    share = validation_fraction / remaining if remaining > 0 else 0.0
    train, validation = stratified_take(rest, min(share, 1.0), seed)
    return train, validation, test


def _split(examples: tuple[Example, ...], test_size: int, seed: int):
    from sklearn.model_selection import train_test_split  # imported on use: sklearn is slow to import

    labels = [example.label for example in examples]
    try:
        kept, taken = train_test_split(examples, test_size=test_size, random_state=seed, stratify=labels)
    except ValueError:
        # Too few examples of some class to stratify (tiny files): an unstratified split still works.
        kept, taken = train_test_split(examples, test_size=test_size, random_state=seed)
    return tuple(kept), tuple(taken)


def parse_spans(value: Any, text: str, field: str, where: str) -> tuple[tuple[int, int], ...]:
    """``[[start, end), ...]`` character spans over ``text`` as a tuple of int pairs, checked."""
    if not isinstance(value, list):
        raise BenchError(f"{where}: '{field}' must be a list of [start, end] character spans; fix the row")
    spans = []
    for span in value:
        if (
            not isinstance(span, list | tuple)
            or len(span) != 2
            or not all(isinstance(bound, int) and not isinstance(bound, bool) for bound in span)
            or not 0 <= span[0] <= span[1] <= len(text)
        ):
            raise BenchError(
                f"{where}: '{field}' span {span!r} is not a [start, end) pair of character offsets "
                f"within the text (length {len(text)}); fix the row"
            )
        spans.append((span[0], span[1]))
    return tuple(spans)


def example_from_row(
    row: Mapping[str, Any],
    *,
    example_id: str,
    label: int,
    where: str,
    text_field: str = "text",
    text_pair_field: str | None = None,
) -> Example:
    """An ``Example`` from a dict row: the text (and pair) fields, rationales over them, the label.

    ``label`` is the label id already resolved by the caller; ``where`` names the file and line (or
    split and row) for error messages. Rationales are read from ``rationale`` (single texts) or
    ``rationale_a`` / ``rationale_b`` (pairs) when present.
    """
    text = _string(row, text_field, where)
    text_pair = _string(row, text_pair_field, where) if text_pair_field is not None else None
    if text_pair is None:
        rationale = _optional_spans(row, "rationale", text, where)
        rationale_pair = None
    else:
        rationale = _optional_spans(row, "rationale_a", text, where)
        rationale_pair = _optional_spans(row, "rationale_b", text_pair, where)
    return Example(
        id=example_id,
        text=text,
        label=label,
        text_pair=text_pair,
        rationale=rationale,
        rationale_pair=rationale_pair,
    )


def _string(row: Mapping[str, Any], field: str, where: str) -> str:
    if field not in row:
        raise BenchError(f"{where}: missing field '{field}'; add it to the row")
    value = row[field]
    if not isinstance(value, str):
        raise BenchError(
            f"{where}: field '{field}' must be a string, not {type(value).__name__}; fix the row"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # an unpaired surrogate, from a JSON escape such as "\ud800"
        raise BenchError(
            f"{where}: field '{field}' holds the unpaired surrogate \\u{ord(value[error.start]):04x} at "
            f"character {error.start}, which cannot be written as UTF-8 (a JSON escape of half a "
            "character?); fix or remove it"
        ) from None
    return value


def _optional_spans(row: Mapping[str, Any], field: str, text: str, where: str):
    value = row.get(field)
    return None if value is None else parse_spans(value, text, field, where)


def label_names(names: Mapping[int, str], source: str) -> tuple[str, ...]:
    """Label names ordered by id, checking that the ids are exactly 0..K-1."""
    ids = sorted(names)
    if ids != list(range(len(ids))):
        raise BenchError(
            f"{source}: label ids must be 0..K-1 with none missing, found {ids}; renumber the labels"
        )
    return tuple(names[i] for i in ids)
