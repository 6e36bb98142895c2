"""The explainer's cost."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness import Metric, MetricInput


class Runtime(Metric):
    """Seconds per example spent in the explainer (batch time / batch size).

    Measured by the runner around ``Explainer.explain`` only (the forward pass that finds the predicted
    class is not counted), after an untimed warm-up call on one example; on CUDA the device is
    synchronised before reading the clock.
    """

    name: ClassVar[str] = "runtime"
    family: ClassVar[str] = "cost"
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))

    def compute(self, data: MetricInput) -> np.ndarray:
        return np.array([attribution.seconds for attribution in data.attributions], dtype=np.float64)


class SpeedUp(Metric):
    """How many times faster the explainer is than its teacher, per document: teacher seconds / student
    seconds on the same document (L2E Figures 3–6). Only for explainers that distil a teacher.

    Both times are the runner's ``runtime`` measurement (explanation only, after a warm-up); the
    student's training is a separate, one-off cost, shown in the report's explainer-training section.
    """

    name: ClassVar[str] = "speed-up"
    paper: ClassVar[str] = "Situ et al. 2021, Learning to Explain (L2E), §4.5"
    family: ClassVar[str] = "cost"
    direction: ClassVar[str] = "higher"
    range: ClassVar[tuple[float, float]] = (0.0, float("inf"))
    compares: ClassVar[str] = "teacher"

    def compute(self, data: MetricInput) -> np.ndarray:
        teacher = {a.example_id: a.seconds for a in data.reference.attributions}
        return np.array(
            [teacher[a.example_id] / a.seconds if a.seconds > 0 else float("nan") for a in data.attributions],
            dtype=np.float64,
        )
