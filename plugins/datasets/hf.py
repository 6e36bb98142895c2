"""Datasets from the Hugging Face hub, for users who are online (needs the ``hub`` extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from harness import (
    BenchError,
    Dataset,
    Example,
    SubsetParams,
    TextDataset,
    example_from_row,
    label_names,
    stratified_take,
    subsample,
)

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


class HuggingFaceDataset(Dataset):
    """A text-classification dataset from the Hugging Face hub (needs network and the hub extra).

    Loaded with ``datasets.load_dataset(path, config, revision=revision)``; pin ``revision`` for
    reproducible suites. Label names come from the label column's ``ClassLabel`` feature when it has
    one, else from the label values (integer ids 0..K-1, or strings in sorted order). When the dataset
    has no ``validation_split``, the validation split is carved from train, stratified by label. Offline,
    or for local files, use the ``jsonl`` dataset.
    """

    name = "hf"

    class Params(SubsetParams):
        """Which hub dataset, which columns and which splits."""

        path: str = Field(description="hub name of the dataset, e.g. 'ag_news' or 'nyu-mll/glue'")
        config: str | None = Field(None, description="configuration (subset) name, e.g. 'sst2' for glue")
        text_field: str = Field("text", description="column holding the text (the premise for pairs)")
        text_pair_field: str | None = Field(
            None,
            description="column holding the second text of a pair (the hypothesis); none for single texts",
        )
        label_field: str = Field("label", description="column holding the label")
        train_split: str = Field("train", description="split used for training")
        validation_split: str | None = Field(
            "validation",
            description="split used for validation; when none or absent, carved from train "
            "(validation_fraction, stratified)",
        )
        test_split: str = Field("test", description="split used for evaluation; it must be labelled")
        revision: str | None = Field(None, description="git revision (commit, tag or branch) of the dataset")

    @classmethod
    def provides_for(cls, params: HuggingFaceDataset.Params) -> frozenset[str]:
        """``pairs`` when ``text_pair_field`` names the second text of each example."""
        return frozenset({"pairs"}) if params.text_pair_field is not None else frozenset()

    def load(self) -> TextDataset:
        params = self.params
        try:
            import datasets
        except ImportError:
            raise BenchError(
                "the hf dataset needs the 'datasets' package; pip install 'xai-bench-harness[hub]' "
                "(or use the 'jsonl' dataset for local files)"
            ) from None
        try:
            loaded = datasets.load_dataset(params.path, params.config, revision=params.revision)
        except Exception as error:
            message = _load_error_message(params.path, error)
            if message is None:
                raise
            raise BenchError(message) from error

        available = list(loaded)
        for role in ("train_split", "test_split"):
            if getattr(params, role) not in loaded:
                raise BenchError(
                    f"hf dataset '{params.path}' has no split '{getattr(params, role)}'; "
                    f"set {role} to one of: {', '.join(available)}"
                )
        splits = {"train": params.train_split, "test": params.test_split}
        if params.validation_split is not None and params.validation_split in loaded:
            splits["validation"] = params.validation_split

        columns = [params.text_field, params.label_field]
        if params.text_pair_field is not None:
            columns.append(params.text_pair_field)
        for split in splits.values():
            missing = [column for column in columns if column not in loaded[split].column_names]
            if missing:
                raise BenchError(
                    f"hf dataset '{params.path}' split '{split}' has no column '{missing[0]}'; set the field "
                    f"parameters to some of: {', '.join(loaded[split].column_names)}"
                )

        labels, to_id = _labels(loaded, splits, params)
        examples = {role: self._examples(loaded[split], split, to_id) for role, split in splits.items()}
        train = examples["train"]
        validation = examples.get("validation")
        if validation is None:
            train, validation = stratified_take(train, params.validation_fraction, params.split_seed)
        return TextDataset(
            name=params.path if params.config is None else f"{params.path}/{params.config}",
            labels=labels,
            train=subsample(train, params.max_train, params.split_seed),
            validation=validation,
            test=examples["test"],
            is_pair=params.text_pair_field is not None,
            extra={
                "path": params.path,
                "config": params.config,
                "revision": params.revision,
                "splits": splits,
            },
        )

    def locate(self, dataset: TextDataset, split: str | None = None, example: Example | None = None) -> str:
        """The hub split and row an example was read from (its id is ``<split>-<row>``)."""
        place = f"hf dataset '{dataset.extra.get('path', dataset.name)}'"
        if example is not None:
            hub_split, _, row = example.id.rpartition("-")
            if hub_split and row.isdigit():
                return f"{place} split '{hub_split}' row {row}"
        hub_splits = dataset.extra.get("splits", {})
        if split in hub_splits:
            return f"{place} split '{hub_splits[split]}'"
        if split is not None and "train" in hub_splits:
            return f"{place} split '{hub_splits['train']}' (its {split} part)"
        return place

    def _examples(self, split_data: Any, split: str, to_id: Mapping[Any, int]) -> tuple[Example, ...]:
        params = self.params
        texts = list(split_data[params.text_field])
        pairs = list(split_data[params.text_pair_field]) if params.text_pair_field is not None else None
        examples = []
        for index, (text, value) in enumerate(zip(texts, split_data[params.label_field], strict=True)):
            where = f"hf dataset '{params.path}' split '{split}' row {index}"
            if value not in to_id:
                raise BenchError(
                    f"{where}: label {value!r} is not a class (unlabelled rows?); choose a labelled split"
                )
            row = {params.text_field: text}
            if pairs is not None:
                row[params.text_pair_field] = pairs[index]
            examples.append(
                example_from_row(
                    row,
                    example_id=f"{split}-{index}",
                    label=to_id[value],
                    where=where,
                    text_field=params.text_field,
                    text_pair_field=params.text_pair_field,
                )
            )
        return tuple(examples)


def _labels(
    loaded: Mapping[str, Any], splits: Mapping[str, str], params: HuggingFaceDataset.Params
) -> tuple[tuple[str, ...], dict[Any, int]]:
    """Label names and the map from label values to ids."""
    feature = loaded[splits["train"]].features.get(params.label_field)
    names = getattr(feature, "names", None)  # a ClassLabel feature
    if names:
        return tuple(names), {index: index for index in range(len(names))}
    values: set[Any] = set()
    for split in splits.values():
        values.update(loaded[split][params.label_field])
    if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        # Negative ids mark unlabelled rows (GLUE test splits use -1); they stay out of the classes.
        ids = {value for value in values if value >= 0}
        return label_names({i: str(i) for i in ids}, f"hf dataset '{params.path}'"), {i: i for i in ids}
    if all(isinstance(value, str) for value in values):
        ordered = sorted(values)
        return tuple(ordered), {value: index for index, value in enumerate(ordered)}
    raise BenchError(
        f"hf dataset '{params.path}': column '{params.label_field}' holds neither integer ids nor strings; "
        "set label_field to the label column"
    )


def _load_error_message(path: str, error: BaseException) -> str | None:
    """One line for a failed ``load_dataset``, or None for an error that is not the user's to fix."""
    offline = [name for name in OFFLINE_VARIABLES if os.environ.get(name, "").upper() in TRUE_VALUES]
    if offline or _is_connection_error(error):
        why = f" ({' and '.join(offline)} set)" if offline else ""
        return (
            f"hf dataset '{path}' could not be downloaded because this machine is offline{why}; "
            "use the 'jsonl' dataset with local files instead"
        )
    if isinstance(error, FileNotFoundError):
        return f"hf dataset '{path}' was not found on the hub; check path, config and revision"
    if isinstance(error, ValueError):
        return f"hf dataset '{path}': {_first_line(error)}; check config and revision"
    return None


def _is_connection_error(error: BaseException) -> bool:
    """True when ``error`` or anything in its chain is a network failure (requests, httpx or builtin)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        names = [cls.__name__ for cls in type(current).__mro__]
        if isinstance(current, ConnectionError | TimeoutError) or any(
            word in name for name in names for word in ("Connect", "Timeout", "Offline")
        ):
            return True
        pending.extend([current.__cause__, current.__context__])
    return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
