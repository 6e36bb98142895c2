"""A dataset plugin: labelled texts (or text pairs) from a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from harness import BenchError, Dataset, SplitParams, TextDataset, example_from_row, split_three, subsample


class CsvParams(SplitParams):  # test_fraction, validation_fraction, split_seed, max_train: the harness's
    path: str = Field(description="the CSV file: a header row, then one example per row")
    text_column: str = Field("text", description="column holding the text (the premise of a pair)")
    text_pair_column: str | None = Field(None, description="column holding the second text of a pair")
    label_column: str = Field("label", description="column holding the class name")
    id_column: str = Field("id", description="column holding a unique id; without it, ids are row numbers")


class CsvDataset(Dataset):
    """Labelled texts or text pairs from a CSV file, split into train/validation/test by stratified
    fractions of its rows.

    Class names are read from ``label_column`` and numbered in sorted order, so the label ids never
    depend on the order of the rows. The splits come from ``harness.split_three`` (stratified by label,
    seeded by ``split_seed``), as the built-in ``jsonl`` dataset's do.
    """

    name: ClassVar[str] = "csv"
    Params = CsvParams
    version: ClassVar[str] = "1"

    @classmethod
    def provides_for(cls, params: CsvParams) -> frozenset[str]:
        """Text pairs when a second text column is named: pair-only explainers and metrics apply then."""
        return frozenset({"pairs"}) if params.text_pair_column else frozenset()

    def load(self) -> TextDataset:
        p = self.params
        path = Path(p.path).expanduser()
        if not path.is_file():
            raise BenchError(f"csv dataset: no file at {path}; give params.path the CSV file")
        with path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
        missing = {p.text_column, p.label_column, p.text_pair_column} - {
            None,
            *(rows[0] if rows else {}),
        }
        if not rows or missing:
            raise BenchError(f"csv dataset: {path} has no rows or lacks the column(s) {sorted(missing)}")
        labels = tuple(sorted({row[p.label_column] for row in rows}))
        examples = [
            example_from_row(
                row,
                example_id=row.get(p.id_column) or f"row{number}",
                label=labels.index(row[p.label_column]),
                where=f"{path}, row {number}",
                text_field=p.text_column,
                text_pair_field=p.text_pair_column,
            )
            for number, row in enumerate(rows, start=1)
        ]
        train, validation, test = split_three(examples, p.test_fraction, p.validation_fraction, p.split_seed)
        train = subsample(train, p.max_train, p.split_seed)  # a stratified cap, for quick suites
        return TextDataset(
            name=path.stem,
            labels=labels,
            train=train,
            validation=validation,
            test=test,
            is_pair=p.text_pair_column is not None,
        )
