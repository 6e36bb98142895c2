"""Expected orders → verdicts: does the order a suite expects hold in its stored records?

Each expectation (``Suite.expectations``) becomes one comparison per group of cells that differ only
on its axis: for a variant expectation, one per (dataset, model, explainer, metric parameters); for an
explainer expectation, one per (dataset, model, variant, metric parameters) and explainer on the "*"
side; for a model expectation, one per (dataset, variant, explainer, metric parameters) and model on
the "*" side. A comparison is a one-sided Wilcoxon signed-rank test of the paired per-example differences
above − below (paired by seed and example), Holm-Bonferroni corrected over every comparison of the
run. The order holds when the corrected p-value is below α.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from harness.rows import labels_by_id, samples_by
from harness.stats import ALPHA, Comparison, holm, paired_wilcoxon
from harness.suite import Expectation

TEST = "Wilcoxon signed-rank, one-sided (above > below), paired by unit (example, or timed batch)"


@dataclass(frozen=True)
class Verdict:
    expectation: str
    dataset: str
    model: str  # the fixed model, or "" (model expectations)
    variant: str  # the fixed variant, or "" (variant expectations)
    explainer: str  # the fixed explainer, or "" (explainer expectations)
    metric: str
    above: str
    below: str
    mean_above: float | None
    mean_below: float | None
    comparison: Comparison

    @property
    def holds(self) -> bool:
        return self.comparison.significant

    @property
    def outcome(self) -> str:
        if self.comparison.p_value is None:
            return "untestable (no paired examples)"
        if self.holds:
            return "holds"
        if self.mean_above is not None and self.mean_below is not None and self.mean_above < self.mean_below:
            return "not shown (reversed on average)"
        return "not shown"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["comparison"] = self.comparison.as_dict()
        data["outcome"] = self.outcome
        return data


def check_expectations(expectations: Sequence[Expectation], records: Iterable[dict]) -> list[Verdict]:
    """Verdicts for every expectation over report rows (``Store.report_rows``). Cells are grouped by
    identity (``*_id``); verdicts show labels."""
    records = list(records)
    cells = samples_by(records)
    labels = labels_by_id(records)
    metric_names = {record["metric_id"]: record["metric"] for record in records}
    names = {record["explainer_id"]: (record["explainer"], record["explainer_label"]) for record in records}
    names.update({record["model_id"]: (record["model"],) for record in records})  # a model by its label

    pending: list[tuple[Expectation, tuple, str, str]] = []  # expectation, fixed key parts, above, below
    for expectation in expectations:
        metrics = [metric for metric, name in metric_names.items() if name == expectation.metric]
        groups: dict[tuple, set[str]] = defaultdict(set)  # everything but the axis -> values of the axis
        for dataset, model, variant, explainer, metric in cells:
            if metric not in metrics or not _where(expectation, model, variant, explainer, names):
                continue
            if expectation.axis == "variant":
                groups[(dataset, model, "", explainer, metric)].add(variant)
            elif expectation.axis == "model":
                groups[(dataset, "", variant, explainer, metric)].add(model)
            else:
                groups[(dataset, model, variant, "", metric)].add(explainer)
        for fixed, present in groups.items():
            for above, below in _pairs(expectation, present, names):
                pending.append((expectation, fixed, above, below))

    comparisons, means = [], []
    for expectation, fixed, above, below in pending:
        a, b = cells[_key(expectation, fixed, above)], cells[_key(expectation, fixed, below)]
        comparisons.append(paired_wilcoxon(a, b, alternative="greater"))
        means.append((a.mean, b.mean))
    verdicts = []
    for (expectation, fixed, above, below), comparison, (mean_above, mean_below) in zip(
        pending, holm(comparisons, ALPHA), means, strict=True
    ):
        dataset, model, variant, explainer, metric = fixed

        def label(value: str) -> str:
            return labels.get(value, value)

        axis_label = (lambda value: value) if expectation.axis == "variant" else label
        verdicts.append(
            Verdict(
                expectation.describe(),
                label(dataset),
                label(model) if model else "",
                variant,
                label(explainer) if explainer else "",
                label(metric),
                axis_label(above),
                axis_label(below),
                mean_above,
                mean_below,
                comparison,
            )  # fmt: skip
        )
    return verdicts


def _named(axis: str, identity: str, value: str, names: dict[str, tuple[str, ...]]) -> bool:
    """Whether a cell's value on an axis is the one an expectation names: a variant by its name, an
    explainer (by identity) by its name or label, a model (by identity) by its label."""
    return identity == value if axis == "variant" else value in names.get(identity, ())


def _where(expectation: Expectation, model: str, variant: str, explainer: str, names: dict) -> bool:
    """Whether a cell has the values the expectation's ``where`` fixes."""
    values = {"model": model, "variant": variant, "explainer": explainer}
    return all(_named(axis, values[axis], value, names) for axis, value in expectation.where.items())


def _pairs(
    expectation: Expectation, present: set[str], names: dict[str, tuple[str, ...]]
) -> list[tuple[str, str]]:
    """The (above, below) axis values compared within one group of cells (explainers and models by
    identity, matched by the names the expectation may give: an explainer's name or label, a model's
    label)."""

    def matching(value: str) -> list[str]:
        return sorted(identity for identity in present if _named(expectation.axis, identity, value, names))

    above, below = expectation.above_value, expectation.below_value
    if above == "*":
        lows = matching(below)
        return [(high, low) for low in lows for high in sorted(present - set(lows))]
    if below == "*":
        highs = matching(above)
        return [(high, low) for high in highs for low in sorted(present - set(highs))]
    return [(high, low) for high in matching(above) for low in matching(below) if high != low]


def _key(expectation: Expectation, fixed: tuple, value: str) -> tuple:
    dataset, model, variant, explainer, metric = fixed
    if expectation.axis == "variant":
        return (dataset, model, value, explainer, metric)
    if expectation.axis == "model":
        return (dataset, value, variant, explainer, metric)
    return (dataset, model, variant, value, metric)
