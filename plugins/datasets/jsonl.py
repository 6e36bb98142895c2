"""Local JSONL datasets in the format of ``shared/data``: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from harness import (
    BenchError,
    Dataset,
    Example,
    SplitParams,
    TextDataset,
    example_from_row,
    label_names,
    split_three,
    subsample,
)

SPLITS = ("train", "validation", "test")

# File names recognised in a folder, per split, in order of preference.
RATIONALES = "rationales"  # the capability the plausibility metrics require
RATIONALE_FIELDS = ("rationale", "rationale_a", "rationale_b")

AUTO_NAMES = {
    "train": ("train.jsonl",),
    "validation": ("validation.jsonl", "val.jsonl"),
    "test": ("test.jsonl", "dev.jsonl"),
}


class JsonlDataset(Dataset):
    """Local JSONL files: single texts or text pairs, labels, optional rationales (the shared/data format).

    ``path`` is a folder or one ``.jsonl`` file. A single file, or a folder holding one ``.jsonl`` file
    whatever its name, is split three ways, stratified by label (``test_fraction`` and
    ``validation_fraction`` of it; ``test_fraction: 1.0`` keeps everything for evaluation). In a folder
    of several files, ``train.jsonl`` is the train split, ``validation.jsonl`` / ``val.jsonl`` the
    validation split and ``test.jsonl`` the test split, or ``dev.jsonl`` when there is no ``test.jsonl``
    (with both, ``dev.jsonl`` is the validation split); the ``train`` / ``validation`` / ``test``
    parameters name other files (and are needed when no file has one of those names). A split without
    a file is carved from the train file, stratified, by the same fractions.

    Rows: ``id`` (str; ``<file stem>-<line>`` when absent), ``text`` or ``text_a`` + ``text_b`` (a pair:
    premise, hypothesis), ``label`` (int, 0..K-1), ``label_name`` (optional), and optional human
    rationales ``rationale`` (or ``rationale_a`` / ``rationale_b`` for pairs) as ``[start, end)``
    character spans. Other fields are ignored.
    """

    name = "jsonl"

    class Params(SplitParams):
        """Where the files are, which file is which split, and how missing splits are carved."""

        path: str = Field(
            description="a folder of .jsonl files or one .jsonl file; a relative path resolves against the "
            "current working directory"
        )
        train: str | None = Field(
            None,
            description="file holding the train split, relative to the folder (a subfolder may be named: "
            "snli/test_full.jsonl)",
        )
        validation: str | None = Field(
            None, description="file holding the validation split, relative to the folder"
        )
        test: str | None = Field(
            None,
            description="file holding the test split, relative to the folder (esnli/dev.jsonl: evaluate a "
            "model trained on one file on another)",
        )

    @classmethod
    def provides_for(cls, params: JsonlDataset.Params) -> frozenset[str]:
        """``pairs`` when the rows are text pairs, ``rationales`` when the test examples carry human
        rationales: read from the first row of the first file and of the file the test split comes from
        (``load`` checks that every row is of one kind). Nothing when the files cannot be read: loading
        them then reports why."""
        try:
            files = cls(params)._choose_files(_resolve(params.path))
            first = _first_row(next(iter(files.values())))
            test = _first_row(files.get("test", files.get("train", next(iter(files.values())))))
        except (BenchError, OSError, ValueError):
            return frozenset()
        provided = set()
        if _is_pair(first):
            provided.add("pairs")
        if any(field in test for field in RATIONALE_FIELDS):
            provided.add(RATIONALES)
        return frozenset(provided)

    def load(self) -> TextDataset:
        params = self.params
        path = _resolve(params.path)
        files = self._choose_files(path)
        reader = _Reader()
        loaded = {split: reader.read(file) for split, file in files.items()}
        labels = label_names(reader.names, str(path))

        train = loaded.get("train", ())
        validation = loaded.get("validation", ())
        test = loaded.get("test", ())
        if "train" in files and ("validation" not in files or "test" not in files):
            train, carved_validation, carved_test = split_three(
                train,
                0.0 if "test" in files else params.test_fraction,
                0.0 if "validation" in files else params.validation_fraction,
                params.split_seed,
            )
            validation = validation if "validation" in files else carved_validation
            test = test if "test" in files else carved_test

        if not test:
            raise BenchError(
                f"jsonl dataset {path}: the test split is empty; raise test_fraction or name a test file"
            )
        return TextDataset(
            name=path.stem if path.is_file() else path.name,
            labels=labels,
            train=subsample(train, params.max_train, params.split_seed),
            validation=tuple(validation),
            test=tuple(test),
            is_pair=bool(reader.is_pair),
            # where each example was read, for messages about it (``locate``)
            extra={"files": {split: str(file) for split, file in files.items()}, "rows": reader.ids},
        )

    def locate(self, dataset: TextDataset, split: str | None = None, example: Example | None = None) -> str:
        """The file and line an example was read from; the file a split was read (or carved) from."""
        rows, files = dataset.extra.get("rows", {}), dataset.extra.get("files", {})
        if example is not None and example.id in rows:
            return rows[example.id]
        if split in files:
            return files[split]
        if split is not None and "train" in files:
            return f"{files['train']} (its {split} split)"
        if len(set(files.values())) == 1:
            return next(iter(files.values()))
        if files:  # the folder of the split files
            return str(Path(next(iter(files.values()))).parent)
        return super().locate(dataset, split, example)

    def _choose_files(self, path: Path) -> dict[str, Path]:
        """Split -> file. A lone file counts as the train file, from which the other splits are carved."""
        named = {split: getattr(self.params, split) for split in SPLITS if getattr(self.params, split)}
        if not path.exists():
            raise BenchError(
                f"jsonl dataset: no file or folder {path} (relative paths resolve against {Path.cwd()}); "
                "fix the path"
            )
        if path.is_file():
            if named:
                raise BenchError(
                    f"jsonl dataset {path}: train/validation/test name files inside a folder; "
                    "set path to the folder or drop them"
                )
            return {"train": path}

        files: dict[str, Path] = {}
        for split, file_name in named.items():
            file = _existing(path, file_name)
            if file is None:
                nearby = sorted(
                    str(file.relative_to(path)) for file in (*path.glob("*.jsonl"), *path.glob("*/*.jsonl"))
                )
                raise BenchError(
                    f"jsonl dataset {path}: no file '{file_name}' for the {split} split; "
                    f".jsonl files there: {', '.join(nearby) or 'none'}"
                )
            files[split] = file
        if named:
            return _distinct(files, path)

        found = sorted(file.name for file in path.glob("*.jsonl") if file.is_file())
        if not found:
            raise BenchError(f"jsonl dataset {path}: the folder has no .jsonl files; fix the path")
        listing = ", ".join(found)
        if len(found) == 1:
            # One file, whatever its name (ag_news/test.jsonl, mrpc/dev.jsonl): split it three ways.
            return {"train": path / found[0]}

        for split, names in AUTO_NAMES.items():
            for file_name in names:
                if file_name in found:
                    files[split] = path / file_name
                    break
        if "test.jsonl" in found and "dev.jsonl" in found and "validation" not in files:
            files["validation"] = path / "dev.jsonl"
        if files:
            return files
        raise BenchError(
            f"jsonl dataset {path}: cannot tell which file is which split (found: {listing}); "
            "name them with the train / validation / test parameters"
        )


def _resolve(path: str) -> Path:
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else Path.cwd() / resolved


def _is_pair(row: dict[str, Any]) -> bool:
    return isinstance(row, dict) and ("text_a" in row or "text_b" in row)


def _first_row(file: Path) -> dict[str, Any]:
    with file.open(encoding="utf-8") as lines:
        row = json.loads(next((line for line in lines if line.strip()), "{}"), object_pairs_hook=_unique_keys)
    return row if isinstance(row, dict) else {}


def _existing(folder: Path, file_name: str) -> Path | None:
    for candidate in (folder / file_name, folder / f"{file_name}.jsonl"):
        if candidate.is_file():
            return candidate
    return None


def _distinct(files: dict[str, Path], folder: Path) -> dict[str, Path]:
    by_file: dict[Path, str] = {}
    for split, file in files.items():
        if file in by_file:
            raise BenchError(
                f"jsonl dataset {folder}: {file.name} is named for both the {by_file[file]} and the {split} "
                "split; name one file per split"
            )
        by_file[file] = split
    return files


class _Reader:
    """Reads files into examples, keeping label names, ids and the text kind consistent across files."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.ids: dict[str, str] = {}
        self.is_pair: bool | None = None

    def read(self, file: Path) -> tuple[Example, ...]:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise BenchError(
                f"{file}: not UTF-8 ({error.reason} at byte {error.start}); save it as UTF-8"
            ) from None
        examples = []
        for number, line in enumerate(lines, start=1):
            if line.strip():
                examples.append(self._example(_parse(line, f"{file}:{number}"), file, number))
        if not examples:
            raise BenchError(f"{file}: no rows; add one JSON object per line or drop the file")
        return tuple(examples)

    def _example(self, row: dict[str, Any], file: Path, number: int) -> Example:
        where = f"{file}:{number}"
        is_pair = _is_pair(row)
        if self.is_pair is None:
            self.is_pair = is_pair
        elif is_pair != self.is_pair:
            kinds = {False: "single-text", True: "text-pair"}
            raise BenchError(
                f"{where}: a {kinds[is_pair]} row in a {kinds[self.is_pair]} dataset; use one kind of row "
                "('text', or 'text_a' + 'text_b') in all files"
            )
        label = self._label(row, where)
        example_id = row.get("id", f"{file.stem}-{number}")
        if not isinstance(example_id, str | int) or isinstance(example_id, bool):
            raise BenchError(f"{where}: 'id' must be a string; fix the row")
        example_id = str(example_id)
        if example_id in self.ids:
            raise BenchError(
                f"{where}: id '{example_id}' already used at {self.ids[example_id]}; make ids unique"
            )
        self.ids[example_id] = where
        if is_pair:
            return example_from_row(
                row,
                example_id=example_id,
                label=label,
                where=where,
                text_field="text_a",
                text_pair_field="text_b",
            )
        return example_from_row(row, example_id=example_id, label=label, where=where)

    def _label(self, row: dict[str, Any], where: str) -> int:
        if "label" not in row:
            raise BenchError(f"{where}: missing field 'label'; add it to the row")
        label = row["label"]
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise BenchError(f"{where}: 'label' must be an integer id 0..K-1, not {label!r}; fix the row")
        name = row.get("label_name")
        if name is None:
            self.names.setdefault(label, str(label))
            return label
        if not isinstance(name, str):
            raise BenchError(f"{where}: 'label_name' must be a string, not {name!r}; fix the row")
        known = self.names.get(label)
        if known is not None and known != name and known != str(label):
            raise BenchError(
                f"{where}: label {label} is named '{name}' here but '{known}' earlier; use one name per label"
            )
        other = next((other for other, other_name in self.names.items() if other_name == name), label)
        if other != label:
            raise BenchError(
                f"{where}: label name '{name}' is label {label} here but {other} earlier; use one id per name"
            )
        self.names[label] = name
        return label


class _RepeatedKey(ValueError):
    """A JSON object giving one key twice."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object from its key-value pairs (``object_pairs_hook``), refusing a key given twice: JSON
    parsers keep the last one, and whoever wrote the row may have meant either."""
    row: dict[str, Any] = {}
    for key, value in pairs:
        if key in row:
            raise _RepeatedKey(key)
        row[key] = value
    return row


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise BenchError(
            f"{where}: not valid JSON ({error.msg}, column {error.colno}); fix or remove the line"
        ) from None
    except _RepeatedKey as repeated:
        raise BenchError(
            f"{where}: key {repeated.key!r} appears twice in the row (which one counts is unclear); keep one"
        ) from None
    if not isinstance(row, dict):
        raise BenchError(f"{where}: a JSON {type(row).__name__}, not an object; write one object per line")
    return row
