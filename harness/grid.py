"""Suite → grid: expand a validated suite into cells.

A cell is (dataset, model, model variant, explainer with params, metric with params, seed). Cells that
share everything but the metric share one attribution computation (an "explanation" of the grid).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.entries import PluginEntry, short_hash
from harness.plugin import canonical_variant
from harness.suite import LoadedSuite


@dataclass(frozen=True)
class Cell:
    dataset: PluginEntry
    model: PluginEntry
    variant: str
    explainer: PluginEntry
    metric: PluginEntry
    seed: int

    @property
    def explanation(self) -> tuple:
        """The cells that share attributions: everything but the metric."""
        return (self.dataset, self.model, self.variant, self.explainer, self.seed)

    @property
    def identity(self) -> dict:
        """Everything that determines the cell's values (the examples and ``--limit`` aside, which the
        store records next to it): comparable across runs."""
        return {
            "dataset": self.dataset.identity,
            "model": self.model.identity,
            "variant": self.variant,
            "explainer": self.explainer.identity,
            "metric": self.metric.identity,
            "seed": self.seed,
        }

    @property
    def id(self) -> str:
        return short_hash(self.identity)

    @property
    def reference(self) -> Cell | None:
        """For a metric comparing two cells: the cell whose attributions it compares with. Comparing
        variants: same dataset, model, explainer and seed on the reference variant. Comparing with the
        teacher: same dataset, model, variant and seed, explained by the teacher."""
        if self.metric.cls.compares == "variant":
            return replace(self, variant=canonical_variant(self.metric.params.reference))
        if self.metric.cls.compares == "teacher" and self.explainer.teacher is not None:
            return replace(self, explainer=self.explainer.teacher)
        return None

    @property
    def in_grid(self) -> bool:
        """False for comparisons that mean nothing: a variant with itself, a teacher-less explainer
        with its teacher."""
        if self.metric.cls.compares == "teacher":
            return self.explainer.teacher is not None
        return self.reference != self

    def describe(self) -> str:
        variant = "" if self.variant == "default" else f"[{self.variant}]"
        return (
            f"{self.dataset.label} × {self.model.label}{variant} × {self.explainer.label} × "
            f"{self.metric.label} × seed {self.seed}"
        )


def expand(loaded: LoadedSuite) -> list[Cell]:
    """The cells of a suite, ordered so that work sharing a dataset, a model and an explainer is
    adjacent (each is loaded, trained or computed once). A metric comparing variants gets no cell on
    its own reference variant (the comparison with itself is trivially perfect), nor a metric comparing
    with the teacher on an explainer that has none."""
    entries = loaded.entries
    cells = []
    for dataset in entries["datasets"]:
        for model in entries["models"]:
            for seed in loaded.suite.seeds:
                for variant in model.variants:
                    for explainer in entries["explainers"]:
                        for metric in entries["metrics"]:
                            cell = Cell(dataset, model, variant, explainer, metric, seed)
                            if cell.in_grid:
                                cells.append(cell)
    return cells
