"""Data refused before compute: every dataset a suite reads is loaded and checked before anything else.

Bad data found by a stage fails cells after models were trained for them; found here it is one line
naming the file, the line and the field, and exit code 2, with nothing computed. ``check_suite_data``
loads each dataset source of a suite once (the evaluated datasets and every model's ``train_on``), runs
the checks every dataset gets (``dataset_problems``: class names, a test split, ids unique across
splits, labels in range, texts, pairs, rationale spans, text storable as UTF-8) and the plugin's own
(``Dataset.check``), then the checks across entries: the split each entry explains is not empty, a model
trained on another dataset has the classes of the dataset it is evaluated on, and a model trained by the
harness sees at least two classes. The runner calls it before it creates or resumes a run; ``bench
validate`` calls it too. The conformance kit (``harness.testing.dataset_findings``) runs the same
``dataset_problems``.

Ids must be unique across a dataset's splits, not only within one: an id names one example in records,
reports and ``bench show``, and an id in two splits is usually the same example in train and test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.data import Example, TextDataset
from harness.errors import BenchError, PluginError
from harness.inert import without_format_characters
from harness.plugin import Dataset

if TYPE_CHECKING:
    from harness.entries import PluginEntry
    from harness.suite import LoadedSuite

SPLITS = ("train", "validation", "test")

Source = tuple[str, str]  # PluginEntry.source: a dataset plugin's name and parameters


@dataclass(frozen=True)
class DataProblem:
    """One thing wrong with a dataset: the check that found it (as the conformance kit names checks)
    and one line naming where (file and line when the plugin knows them), the field and what to do."""

    check: str
    message: str


@dataclass(frozen=True)
class CheckedData:
    """What checking a suite's datasets learnt, by source (``PluginEntry.source``): every dataset's
    fingerprint, and the first ``keep`` datasets themselves in the order the run needs them, for its
    workspace to start with rather than load them again."""

    fingerprints: dict[Source, str]
    datasets: dict[Source, TextDataset]


def check_suite_data(loaded: LoadedSuite, keep: int = 0) -> CheckedData:
    """Load and check every dataset ``loaded`` reads; raise ``BenchError`` with the first problem."""
    from harness.grid import expand

    # (dataset entry, model entry) -> the model's variants evaluated on it, in grid order
    pairs: dict[tuple[PluginEntry, PluginEntry], set[str]] = {}
    for cell in expand(loaded):
        for evaluated in (cell, cell.reference):
            if evaluated is not None:
                pairs.setdefault((evaluated.dataset, evaluated.model), set()).add(evaluated.variant)
    sources: dict[Source, PluginEntry] = {}  # the entry each source is first read through, in run order
    for dataset, model in pairs:
        for entry in (dataset, model.train_on):
            if entry is not None:
                sources.setdefault(entry.source, entry)
    for entry in [*loaded.entries["datasets"], *(m.train_on for m in loaded.entries["models"] if m.train_on)]:
        sources.setdefault(entry.source, entry)

    fingerprints: dict[Source, str] = {}
    facts: dict[Source, _Facts] = {}
    kept: dict[Source, TextDataset] = {}
    for source, entry in sources.items():
        data = _load(entry)
        problems = dataset_problems(entry.cls(entry.params), data)
        if problems:
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise BenchError(f"dataset '{entry.label}': {problems[0].message}{more}")
        fingerprints[source] = data.fingerprint
        facts[source] = _Facts(
            tuple(data.labels),
            {name: len(data.split(name)) for name in SPLITS},
            len({example.label for example in data.train}),
        )
        if len(kept) < keep:
            kept[source] = data

    for entry in loaded.entries["datasets"]:
        split = entry.spec.split
        if not facts[entry.source].sizes[split]:
            raise BenchError(
                f"dataset '{entry.label}': its {split} split, the one it explains, is empty; choose "
                "another split or change the split fractions"
            )
    for (dataset, model), variants in pairs.items():
        _check_training(dataset, model, variants, facts)
    return CheckedData(fingerprints, kept)


@dataclass(frozen=True)
class _Facts:
    labels: tuple[str, ...]
    sizes: dict[str, int]
    train_classes: int


def _load(entry: PluginEntry) -> TextDataset:
    """The entry's data, or ``BenchError`` naming the entry and why it cannot be read."""
    try:
        data = entry.cls(entry.params).load()
    except (BenchError, PluginError) as error:
        raise BenchError(f"dataset '{entry.label}': {error}") from error
    except Exception as error:  # noqa: BLE001 - any failure to load is this dataset's, named in one line
        text = " ".join(str(error).split())
        raise BenchError(
            f"dataset '{entry.label}': plugin '{entry.name}' failed to load it ({type(error).__name__}: "
            f"{text}); fix its data or parameters, or report it to the plugin's author"
        ) from error
    if not isinstance(data, TextDataset):
        raise BenchError(
            f"dataset '{entry.label}': plugin '{entry.name}' returned {type(data).__name__}, not a "
            "TextDataset; report it to the plugin's author"
        )
    return data


def _check_training(
    dataset: PluginEntry, model: PluginEntry, variants: set[str], facts: dict[Source, _Facts]
) -> None:
    """A model evaluated on ``dataset`` predicts its classes, and a model the harness trains (in a
    variant other than ``untrained``) sees two classes or more in its train split."""
    training = model.train_on or dataset
    trained, evaluated = facts[training.source], facts[dataset.source]
    if model.train_on is not None and trained.labels != evaluated.labels:
        raise BenchError(
            f"model '{model.label}' is trained on dataset '{training.label}' with classes "
            f"{list(trained.labels)}, but is evaluated on dataset '{dataset.label}' with classes "
            f"{list(evaluated.labels)}; train it on a dataset with the same classes in the same order"
        )
    if model.cls.trainable and variants != {"untrained"} and trained.train_classes < 2:
        held = (
            "is empty"
            if not trained.sizes["train"]
            else f"holds one class only ({trained.sizes['train']} examples)"
        )
        raise BenchError(
            f"model '{model.label}' is trained on the train split of dataset '{training.label}', which "
            f"{held}; lower its test_fraction, give it a train file with two classes or more, or give "
            "the model a train_on dataset"
        )


def dataset_problems(plugin: Dataset, dataset: TextDataset) -> list[DataProblem]:
    """Everything wrong with ``dataset`` as loaded by ``plugin``: the checks every dataset gets, then
    the plugin's own (``Dataset.check``). Each problem names where through ``Dataset.locate``."""

    def where(split: str | None = None, example: Example | None = None) -> str:
        try:
            place = plugin.locate(dataset, split, example)
        except Exception:  # noqa: BLE001 - a plugin that cannot say where still gets its problems named
            place = None
        if not isinstance(place, str) or not place.strip():
            place = Dataset.locate(plugin, dataset, split, example)
        return " ".join(place.split())

    problems = _class_problems(dataset, where)
    if not problems:
        problems = _example_problems(dataset, where)
    if not problems:
        problems = _encoding_problems(dataset, where)
    try:
        own = plugin.check(dataset)
    except Exception as error:  # noqa: BLE001 - a failing check is a finding about the plugin
        own = [f"{where()}: the plugin's own check failed ({type(error).__name__}: {error})"]
    problems += [DataProblem("check", " ".join(str(message).split())) for message in own or ()]
    return problems


def _class_problems(dataset: TextDataset, where) -> list[DataProblem]:
    labels = dataset.labels
    if not isinstance(labels, tuple | list) or not all(isinstance(name, str) and name for name in labels):
        return [DataProblem("labels", f"{where()}: class names {labels!r}; name every class with a string")]
    problems = []
    if len(labels) < 2:
        problems.append(
            DataProblem(
                "labels",
                f"{where()}: one class only ({', '.join(map(repr, labels)) or 'none'}); a classifier needs "
                "two or more: add examples of another class",
            )
        )
    elif len(set(labels)) < len(labels):
        twice = next(name for name in labels if labels.count(name) > 1)
        problems.append(
            DataProblem("labels", f"{where()}: class name {twice!r} names two classes; name each class once")
        )
    if not dataset.test:
        problems.append(
            DataProblem(
                "splits",
                f"{where('test')}: the test split is empty; it is what the harness explains and scores: "
                "give the dataset test examples",
            )
        )
    return problems


def _example_problems(dataset: TextDataset, where) -> list[DataProblem]:
    """Ids, labels, texts, pairs and rationale spans of every example: the first problem of each kind."""
    found: dict[str, DataProblem] = {}
    seen: dict[str, tuple[str, Example]] = {}
    classes = len(dataset.labels)
    for split in SPLITS:
        for example in dataset.split(split):
            # an example's first problem only: an empty text also puts its rationale outside it
            for check, message in _problems_of(example, dataset.is_pair, classes)[:1]:
                if check not in found:
                    found[check] = DataProblem(check, f"{where(split, example)}: {message}")
            if "ids" in found or not isinstance(example.id, str):
                continue
            first = seen.setdefault(example.id, (split, example))
            if first[1] is not example:
                found["ids"] = DataProblem(
                    "ids",
                    f"{where(split, example)}: field 'id' {example.id!r} is also the id of "
                    f"{where(*first)}; make ids unique across splits (records are kept by id)",
                )
    return list(found.values())


def _problems_of(example: Example, is_pair: bool, classes: int) -> list[tuple[str, str]]:
    problems = []
    if not isinstance(example.id, str) or not example.id:
        problems.append(("ids", f"field 'id' is {example.id!r}; give every example a non-empty string id"))
    label = example.label
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < classes:
        problems.append(("labels", f"field 'label' is {label!r}, not a class id 0..{classes - 1}; fix it"))
    texts = [("text", example.text)] + ([("text_pair", example.text_pair)] if is_pair else [])
    for field, text in texts:
        # Blank: nothing but whitespace and format characters (a zero-width space shows as nothing).
        if not isinstance(text, str) or not without_format_characters(text).strip():
            problems.append(("texts", f"field '{field}' is {text!r}; give every example a text"))
    if not is_pair and example.text_pair is not None:
        problems.append(("pairs", "field 'text_pair' is set in a dataset of single texts; drop it"))
    spans = [("rationale", span, example.text) for span in example.rationale or ()]
    spans += [("rationale_pair", span, example.text_pair) for span in example.rationale_pair or ()]
    for field, span, text in spans:
        length = len(text) if isinstance(text, str) else 0
        if not (isinstance(span, tuple | list) and len(span) == 2 and 0 <= span[0] < span[1] <= length):
            problems.append(
                (
                    "rationales",
                    f"field '{field}' span {span!r} is not inside its text (length {length}); fix it",
                )
            )
            break
    return problems


def _encoding_problems(dataset: TextDataset, where) -> list[DataProblem]:
    """Text that cannot be written as UTF-8 (an unpaired surrogate, from a JSON escape such as
    ``\\ud800``) can be neither fingerprinted nor stored. The fingerprint encodes every string once, so
    a dataset that passes costs nothing more here: it is computed now instead of by the run."""
    try:
        dataset.fingerprint  # noqa: B018 - computed for its check (and cached for the run)
        return []
    except UnicodeEncodeError:
        pass
    except (TypeError, ValueError) as error:  # a value JSON cannot hold (bytes, a set...)
        return [
            DataProblem("encoding", f"{where()}: its content cannot be written as JSON ({error}); fix it")
        ]
    for index, name in enumerate(dataset.labels):
        if (position := _unencodable(name)) is not None:
            return [DataProblem("encoding", f"{where()}: class {index} name {_surrogate(name, position)}")]
    for split in SPLITS:
        for example in dataset.split(split):
            for field in ("id", "text", "text_pair"):
                value = getattr(example, field)
                if isinstance(value, str) and (position := _unencodable(value)) is not None:
                    message = f"field '{field}' {_surrogate(value, position)}"
                    return [DataProblem("encoding", f"{where(split, example)}: {message}")]
    return [DataProblem("encoding", f"{where()}: its content cannot be encoded as UTF-8; fix its texts")]


def _unencodable(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def _surrogate(text: str, position: int) -> str:
    """What is wrong with a string holding an unpaired surrogate at ``position``, and what to do."""
    return (
        f"holds the unpaired surrogate \\u{ord(text[position]):04x} at character {position}, which cannot "
        "be written as UTF-8 (a JSON escape of half a character?); fix or remove it"
    )
