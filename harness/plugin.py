"""The four plugin kinds. Subclass one, give it a ``name``, a ``Params`` model and a docstring, and
return the class from the matching hook in ``harness.hookspecs``.

Lifecycle (one module owns each arrow)::

    suite.py     YAML  -> Suite (validated, typed)
    grid.py      Suite -> cells (dataset, model, variant, explainer+params, metric+params, seed)
    runner.py    cells -> Dataset.load -> Model.build -> Explainer.fit/explain -> Metric.compute
    store.py     per-example metric values -> records (SQLite)
    report.py    records -> tables (mean, bootstrap CI, n, best per column)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from harness.attribution import Attribution
from harness.classifier import Classifier, Encoding
from harness.data import Example, TextDataset


class Params(BaseModel):
    """Base of every plugin's parameters: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Plugin:
    """Common metadata. ``version`` changes whenever the plugin's results would change; it is part of
    every cache key. ``paper`` names the source of the definition."""

    kind: ClassVar[str]
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = ""

    def __init__(self, params: Params | None = None):
        self.params = params if params is not None else self.Params()

    @classmethod
    def description(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Dataset(Plugin, ABC):
    """A dataset plugin: ``load`` returns the dataset with its splits."""

    kind: ClassVar[str] = "dataset"

    @abstractmethod
    def load(self) -> TextDataset: ...


VARIANT_PATTERN = r"^(default|untrained|init:[1-9][0-9]*)$"


class Model(Plugin, ABC):
    """A model plugin. ``build`` returns a ready classifier, training it when ``trainable`` is true;
    the harness then caches it through ``save``/``load``, keyed by everything that determines it.

    ``variants`` lists what ``build(..., variant=)`` accepts, for randomization tests (Zafar et al.
    2021): ``default``; ``init:N`` (any N ≥ 1), the same model trained from its N-th initialisation
    and training seed, ``init:1`` being ``default``; ``untrained``, the same architecture with its
    trainable layers freshly initialised and not trained.
    """

    kind: ClassVar[str] = "model"
    trainable: ClassVar[bool] = True
    variants: ClassVar[tuple[str, ...]] = ("default",)

    @classmethod
    def builds_variant(cls, variant: str) -> bool:
        return variant in cls.variants or (variant.startswith("init:") and "init:N" in cls.variants)

    @abstractmethod
    def build(
        self, dataset: TextDataset, *, seed: int, device: torch.device, variant: str = "default"
    ) -> Classifier: ...

    def save(self, classifier: Classifier, directory: Path) -> None:
        raise NotImplementedError

    def load(self, directory: Path, dataset: TextDataset, device: torch.device) -> Classifier:
        raise NotImplementedError

    def training_report(self, classifier: Classifier) -> dict:
        """Facts about training (epochs, best validation accuracy...) stored with the run."""
        return dict(getattr(classifier, "training_report", {}) or {})


class ExplainerParams(Params):
    """Parameters every explainer has; the runner applies them, explainers need not."""

    target: Literal["predicted"] | NonNegativeInt = Field(
        "predicted", description="class explained: the model's prediction, or a fixed class index"
    )
    granularity: Literal["token", "word"] = Field(
        "token", description="token scores, or word scores (every sub-token of a word gets the word's score)"
    )
    word_reduction: Literal["sum", "mean", "max"] = Field(
        "sum", description="how a word's score is made from its sub-tokens' scores (granularity: word)"
    )


@dataclass
class LabelledScores:
    """What an explainer returns when it also gives each token a discrete label (e.g. L2E's sequence
    labelling): ``scores`` (B, L) floats and ``labels`` (B, L) integers, 0 meaning neutral. The labels
    are stored with the attribution (``Attribution.labels``) for label-wise metrics."""

    scores: torch.Tensor
    labels: torch.Tensor


class Explainer(Plugin, ABC):
    """An explainer plugin: a batch of encoded texts in, one score per token out (B, L), or
    ``LabelledScores`` for explainers that also label tokens.

    Scores at special-token and padding positions are ignored. Randomness must come from
    ``self.seed`` so that results do not depend on batch order.
    """

    kind: ClassVar[str] = "explainer"
    Params: ClassVar[type[Params]] = ExplainerParams

    def __init__(self, params: Params | None = None, seed: int = 0):
        super().__init__(params)
        self.seed = seed

    def fit(self, classifier: Classifier, dataset: TextDataset) -> None:  # noqa: B027 - optional hook
        """Explainers that learn (e.g. a distilled explainer network) train here; others do nothing."""

    @abstractmethod
    def explain(
        self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor
    ) -> torch.Tensor | LabelledScores: ...


@dataclass
class MetricInput:
    """What a metric sees for one (dataset, model, variant, explainer, seed) cell.

    ``reference`` is set only for metrics that compare two cells (``Metric.compares``): the same
    explainer, examples and seed on the reference variant of the model, as its own ``MetricInput``.
    """

    attributions: Sequence[Attribution]
    examples: dict[str, Example]
    dataset: TextDataset
    load_classifier: Callable[[], Classifier] = field(repr=False)
    batch_size: int = 32
    reference: MetricInput | None = None

    @cached_property
    def classifier(self) -> Classifier:
        """Loaded on first use, so metrics that need no model (runtime) cost nothing."""
        return self.load_classifier()


@dataclass
class MetricOutput:
    """Per-example values and, for curve metrics, the curve behind each value (for example
    ``{"x": [fractions removed], "y": [probabilities]}``), stored alongside the records."""

    values: Sequence[float]
    curves: Sequence[dict[str, list[float]]] | None = None


class Metric(Plugin, ABC):
    """A metric plugin: one value per attribution (NaN where undefined).

    ``family``, ``direction`` and ``range`` are read by reports and leaderboards; nothing downstream
    knows metric names.

    A metric that compares two cells sets ``compares = "variant"`` and has a ``reference`` parameter
    naming a model variant (e.g. ``init:1``): the runner then also explains the same examples with the
    same explainer and seed on that variant (cached like any explanation) and passes them as
    ``MetricInput.reference``. Cells whose variant is the reference itself are not in the grid.
    """

    kind: ClassVar[str] = "metric"
    family: ClassVar[str]
    direction: ClassVar[Literal["higher", "lower"]]
    range: ClassVar[tuple[float, float]]
    compares: ClassVar[Literal["variant"] | None] = None

    @abstractmethod
    def compute(self, data: MetricInput) -> Sequence[float] | MetricOutput: ...


def metadata_problem(cls: type[Plugin]) -> str | None:
    """What a plugin class is missing for the harness to use it, or None."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        return "has no 'name'"
    if issubclass(cls, Metric):
        if not isinstance(getattr(cls, "family", None), str):
            return f"metric '{name}' declares no 'family'"
        if getattr(cls, "direction", None) not in ("higher", "lower"):
            return f"metric '{name}' must declare direction 'higher' or 'lower'"
        bounds = getattr(cls, "range", None)
        if not (isinstance(bounds, tuple) and len(bounds) == 2 and bounds[0] <= bounds[1]):
            return f"metric '{name}' must declare range as (low, high)"
        compares = getattr(cls, "compares", None)
        if compares not in (None, "variant"):
            return f"metric '{name}': compares must be None or 'variant'"
        params = getattr(cls, "Params", None)
        if compares == "variant" and "reference" not in getattr(params, "model_fields", {}):
            return f"metric '{name}' compares variants but its Params have no 'reference' field"
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
        return f"'{name}'.Params is not a pydantic model"
    return None


PLUGIN_KINDS: dict[str, type[Plugin]] = {
    "dataset": Dataset,
    "model": Model,
    "explainer": Explainer,
    "metric": Metric,
}
