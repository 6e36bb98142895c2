"""The explainer's cost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from harness import Attribution, Metric, MetricInput, MetricOutput, Params


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

    An explainer may state its cost instead (``Explanation.seconds``): ``precomputed`` reports the
    seconds its file states, and leaves the value undefined (NaN, with a note) where the file states
    none, rather than timing how long reading the file took.
    """

    name: ClassVar[str] = "runtime"
    version: ClassVar[str] = "2"  # 2: one unit per timed batch
    family: ClassVar[str] = "cost"
    chance_applies: ClassVar[bool] = False  # random, doing nothing, costs nothing
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))

    def compute(self, data: MetricInput) -> MetricOutput:
        values = np.array([attribution.seconds for attribution in data.attributions], dtype=np.float64)
        unknown = int(np.isnan(values).sum())
        notes = (
            [
                f"{unknown} of {len(values)} examples have no runtime: their explainer states no cost for "
                "them (e.g. precomputed attributions whose file gives no seconds)"
            ]
            if unknown
            else []
        )
        return MetricOutput(values, units=_batch_units(data.attributions), notes=notes)


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
    chance_applies: ClassVar[bool] = False  # random, doing nothing, costs nothing
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))
    compares: ClassVar[str] = "teacher"

    def compute(self, data: MetricInput) -> MetricOutput:
        return _seconds_ratio(data)


class DeviceSpeedUpParams(Params):
    reference: Literal["cpu", "cuda"] = Field(
        "cpu", description="the device compared with: its seconds are the numerator"
    )


class DeviceSpeedUp(Metric):
    """How many times faster the explainer is on this cell's device than on the reference device, per
    document: seconds of the same explainer on the same document with the same model on ``reference``
    (default cpu) / seconds on this cell's device. A suite lists the model once per device
    (``models: [{name: m, device: cpu}, {name: m, device: cuda}]``); the cells on the reference device
    are the denominators' side and get no cell of this metric.

    Both times are the runner's ``runtime`` measurement (explanation only, after a warm-up call; CUDA
    synchronised before the clock is read). Units as ``speed-up``'s: this cell's timed batch, merged
    where one batch on the reference device spans several.
    """

    name: ClassVar[str] = "device-speed-up"
    Params = DeviceSpeedUpParams
    family: ClassVar[str] = "cost"
    chance_applies: ClassVar[bool] = False  # random, doing nothing, costs nothing
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))
    compares: ClassVar[str] = "device"

    def compute(self, data: MetricInput) -> MetricOutput:
        return _seconds_ratio(data)


def _seconds_ratio(data: MetricInput) -> MetricOutput:
    """The reference's seconds / the cell's seconds on each document (NaN where the cell took none),
    paired by example id, one unit per timed batch (``_shared_batch_units``)."""
    references = {a.example_id: a for a in data.reference.attributions}
    values = np.array(
        [
            references[a.example_id].seconds / a.seconds if a.seconds > 0 else float("nan")
            for a in data.attributions
        ],
        dtype=np.float64,
    )
    return MetricOutput(values, units=_shared_batch_units(data.attributions, references))


def _shared_batch_units(cells: Sequence[Attribution], references: dict[str, Attribution]) -> list[str] | None:
    """The cell's ``"batch {b}"``, with its batches merged where one batch of the reference (the
    teacher, the other device) spans them (a value depends on both timings); None when any batch is
    unknown."""
    pairs = [(a.batch, references[a.example_id].batch) for a in cells]
    if any(cell is None or reference is None for cell, reference in pairs):
        return None
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(node: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for cell, reference in pairs:
        a, b = root(("cell", cell)), root(("reference", reference))
        if a != b:
            parent[max(a, b)] = min(a, b)  # ("cell", ·) < ("reference", ·): a batch of the cell names it
    first = {}
    for cell, _ in pairs:
        first.setdefault(root(("cell", cell)), cell)
    return [f"batch {first[root(('cell', cell))]}" for cell, _ in pairs]
