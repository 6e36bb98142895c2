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
