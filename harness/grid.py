"""Suite → grid: expand a validated suite into cells.

A cell is (dataset, model, model variant, explainer with params, metric with params, seed). Cells that
share everything but the metric share one attribution computation (an "explanation" of the grid).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from harness.plugin import Params, Plugin
from harness.registry import PluginInfo
from harness.suite import LoadedSuite, Spec


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class PluginEntry:
    """One plugin with one set of validated parameters, as it appears in the grid."""

    kind: str
    name: str
    cls: type[Plugin] = field(compare=False, repr=False)
    package: str = field(compare=False)
    package_version: str = field(compare=False)
    params: Params = field(compare=False, repr=False)
    params_json: str  # every parameter, defaults included: what determines results
    label: str  # the name with the parameters the suite set, for tables
    spec: Spec = field(compare=False, repr=False)
    train_on: PluginEntry | None = (
        None  # models only: the dataset the model is trained on, if not the evaluated one
    )
    teacher: PluginEntry | None = None  # students only: the explainer they distil (see TeacherSpec)

    @classmethod
    def create(
        cls,
        info: PluginInfo,
        spec: Spec,
        params: Params,
        user_params: dict,
        train_on: PluginEntry | None = None,
        teacher: PluginEntry | None = None,
    ) -> PluginEntry:
        label = spec.label.format(**user_params) if spec.label else _default_label(info.name, user_params)
        if train_on is not None and not spec.label:
            label += f" trained on {train_on.label}"
        return cls(
            kind=info.kind,
            name=info.name,
            cls=info.cls,
            package=info.package,
            package_version=info.version,
            params=params,
            params_json=canonical_json(params.model_dump(mode="json")),
            label=label,
            spec=spec,
            train_on=train_on,
            teacher=teacher,
        )

    @property
    def params_dict(self) -> dict:
        return json.loads(self.params_json)

    @property
    def identity(self) -> dict:
        """What determines this plugin's results: name, plugin version, every parameter."""
        identity = {"name": self.name, "version": self.cls.version, "params": self.params_dict}
        if self.train_on is not None:
            identity["train_on"] = self.train_on.identity
        if self.teacher is not None:
            identity["teacher"] = self.teacher.identity
        return identity


def _default_label(name: str, user_params: dict) -> str:
    """The plugin's name with the parameters the suite set: ``saliency(reduction=l2)``."""
    if not user_params:
        return name
    return (
        name + "(" + ", ".join(f"{key}={_short(value)}" for key, value in sorted(user_params.items())) + ")"
    )


def _short(value: Any) -> str:
    """A parameter value as labels show it; a plugin named with its parameters (a teacher) reads
    ``name(key=value, ...)``."""
    if isinstance(value, dict) and isinstance(value.get("name"), str) and set(value) <= {"name", "params"}:
        params = value.get("params") or {}
        inner = ", ".join(f"{key}={_short(item)}" for key, item in sorted(params.items()))
        return value["name"] + (f"({inner})" if inner else "")
    return canonical_json(value) if isinstance(value, dict | list) else str(value)


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
    def id(self) -> str:
        parts = [
            self.dataset.identity,
            self.dataset.spec.split,
            self.dataset.spec.sample,
            self.model.identity,
            self.variant,
            self.explainer.identity,
            self.metric.identity,
            self.seed,
        ]
        return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]

    @property
    def reference(self) -> Cell | None:
        """For a metric comparing two cells: the cell whose attributions it compares with. Comparing
        variants: same dataset, model, explainer and seed on the reference variant. Comparing with the
        teacher: same dataset, model, variant and seed, explained by the teacher."""
        if self.metric.cls.compares == "variant":
            return replace(self, variant=self.metric.params.reference)
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
                for variant in model.spec.variants:
                    for explainer in entries["explainers"]:
                        for metric in entries["metrics"]:
                            cell = Cell(dataset, model, variant, explainer, metric, seed)
                            if cell.in_grid:
                                cells.append(cell)
    return cells
