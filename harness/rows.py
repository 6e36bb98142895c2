"""Report rows (``Store.report_rows``) → per-cell samples and display labels: the one grouping that
tables, expected orders and teacher–student pairings share."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable

from harness.stats import Sample

# The parts of a cell that have an identity (``<part>_id``) and the row field holding its label.
LABEL_FIELDS = {
    "dataset": "dataset",
    "model": "model",
    "explainer": "explainer_label",
    "metric": "metric_label",
}


def cell_key(row: dict) -> tuple[str, str, str, str, str]:
    """A cell as reports group it, by identity: (dataset, model, variant, explainer, metric)."""
    return (row["dataset_id"], row["model_id"], row["variant"], row["explainer_id"], row["metric_id"])


def samples_by(
    rows: Iterable[dict], key: Callable[[dict], Hashable] = cell_key, field: str = "value"
) -> dict[Hashable, Sample]:
    """The rows' values (``field``; NULL → undefined) grouped by ``key``, each record keyed by
    (seed, example id) with its unit."""
    values: dict[Hashable, dict] = defaultdict(dict)
    units: dict[Hashable, dict] = defaultdict(dict)
    for row in rows:
        group, record = key(row), (row["seed"], row["example_id"])
        values[group][record] = row[field]
        units[group][record] = row["unit"]
    return {group: Sample.of(values[group], units[group]) for group in values}


def labels_by_id(rows: Iterable[dict]) -> dict[str, str]:
    """Every dataset, model, explainer and metric identity of the rows → its display label."""
    return {row[f"{part}_id"]: row[field] for row in rows for part, field in LABEL_FIELDS.items()}
