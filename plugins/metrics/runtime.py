"""The explainer's cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from harness import Attribution, Metric, MetricInput, MetricOutput


def _batch_units(attributions: Sequence[Attribution]) -> list[str] | None:
    """``"batch {b}"`` for each attribution, b the explainer call that timed it; None when any is unknown."""
    if any(a.batch is None for a in attributions):
        return None
    return [f"batch {a.batch}" for a in attributions]


class Runtime(Metric):
    """Seconds per example spent in the explainer: the time of the call that explained the example's
    batch, divided by the batch's size.

    Measured by the runner around ``Explainer.explain`` only (the forward pass that finds the predicted
    class is not counted), after an untimed warm-up call on one example; on CUDA the device is
    synchronised before reading the clock. The examples of one batch share one measurement, so each value
    carries its batch as its unit (``MetricOutput.units``, from ``Attribution.batch``): statistics count
    one timed batch as one measurement, not its examples. No units when the batch is unknown.
    """

    name: ClassVar[str] = "runtime"
    version: ClassVar[str] = "2"  # 2: one unit per timed batch
    family: ClassVar[str] = "cost"
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))

    def compute(self, data: MetricInput) -> MetricOutput:
        values = np.array([attribution.seconds for attribution in data.attributions], dtype=np.float64)
        return MetricOutput(values, units=_batch_units(data.attributions))


class SpeedUp(Metric):
    """How many times faster the explainer is than its teacher, per document: teacher seconds / student
    seconds on the same document (L2E Figures 3–6). Only for explainers that distil a teacher.

    Both times are the runner's ``runtime`` measurement (explanation only, after a warm-up); the
    student's training is a separate, one-off cost, shown in the report's explainer-training section.
    Like ``runtime``, each value's unit is the student's timed batch; when the teacher's batches group the
    documents differently, batches linked through a shared document are one unit (named by the first).
    """

    name: ClassVar[str] = "speed-up"
    version: ClassVar[str] = "2"  # 2: one unit per timed batch
    paper: ClassVar[str] = "Situ et al. 2021, Learning to Explain (L2E), §4.5"
    family: ClassVar[str] = "cost"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))
    compares: ClassVar[str] = "teacher"

    def compute(self, data: MetricInput) -> MetricOutput:
        teachers = {a.example_id: a for a in data.reference.attributions}
        values = np.array(
            [
                teachers[a.example_id].seconds / a.seconds if a.seconds > 0 else float("nan")
                for a in data.attributions
            ],
            dtype=np.float64,
        )
        return MetricOutput(values, units=_shared_batch_units(data.attributions, teachers))


def _shared_batch_units(
    students: Sequence[Attribution], teachers: dict[str, Attribution]
) -> list[str] | None:
    """The student's ``"batch {b}"``, with student batches merged where one teacher batch spans them
    (a value depends on both timings); None when any batch is unknown."""
    pairs = [(a.batch, teachers[a.example_id].batch) for a in students]
    if any(student is None or teacher is None for student, teacher in pairs):
        return None
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(node: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for student, teacher in pairs:
        a, b = root(("student", student)), root(("teacher", teacher))
        if a != b:
            parent[max(a, b)] = min(a, b)  # ("student", ·) < ("teacher", ·): a student batch names it
    first = {}
    for student, _ in pairs:
        first.setdefault(root(("student", student)), student)
    return [f"batch {first[root(('student', student))]}" for student, _ in pairs]
