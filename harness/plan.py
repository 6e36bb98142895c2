"""Cells → plan: the work of a run as a graph of tasks, known before anything runs.

A resolved suite's cells (``harness.grid.expand``) become tasks of six stages, shared exactly as the
runner shares work:

- ``load-dataset``: one per dataset source (plugin and parameters); entries that only select another
  split or sample of it share the load, their selection belongs to their explain tasks;
- ``build-model``: one per (training data, model, variant, seed), the training data being the model's
  ``train_on`` dataset when it has one, else the evaluated dataset's source;
- ``fit-explainer``: one per student (an explainer with a teacher) per (dataset source, model, variant,
  seed): what ``Explainer.fit`` learns, which needs the teacher's attributions;
- ``explain``: one per ``Cell.explanation``, and one per reference explanation a ``compares`` metric
  reads (a reference variant's, a teacher's), even when no cell of its own scores it; a reference
  explainer's is the explanation of that explainer's own cells, one task for both;
- ``explain`` of extra examples: one per explanation whose examples a metric declares it needs others
  of (``Metric.extra_examples``, e.g. ``iou-stability``'s nearest neighbours in the whole split), for the
  explainer of that explanation and of its reference when the metric reads one: the same explain task
  data with ``selection["extra"]``, the distinct needs of every metric scoring it, after the explanation
  of the sample (which it reads). Its examples are found when it runs (they depend on the loaded data);
  only the score tasks of the metrics that declared them read them, so every other metric of a cell is
  computed on the sample alone;
- ``perturb``: one per explanation scored by two or more removal metrics (``RemovalMetric`` that compares
  no cells): the perturbed inputs all of them need, planned together so that each distinct one goes
  through the model once, in full passes, before any of them reduces (``harness.perturb.
  evaluate_together``). Its ``cells`` are the cells of those metrics; their score tasks read the rows
  from the model's forward-pass service (``harness.forward``; through its disk store in another
  process). An optimisation only: it fails nothing (a metric it cannot plan computes its own rows);
- ``score``: one per cell: its explain task and, for a metric comparing two cells, the reference's
  (a metric also reads the explanation's model and dataset, which its explain task needs), and its
  explanation's perturb task when it has one.

A model explaining another dataset than it was trained on is built once; its test accuracy and
predictions on each evaluated dataset, and the check that the class names match, need both, as do
the explain tasks, which is where they belong.

Tasks are plain data (plugin identities, parameters, variants, seeds, selections), serialisable as JSON;
a task's ``id`` is a short hash of that data and of its inputs' ids, so equal work is one task. The
plan holds no cache key: every key holds the content of the loaded data (a model's holds the training
data's fingerprint and the weights' identity, everything downstream holds the model's key), which is
known only once the data is loaded. ``CACHE_KEYS`` names the ``harness.keys`` function that derives
each stage's key from a task's data and those contents.

**Teacher attributions for a fit.** Which documents a student asks its teacher to explain is the
student plugin's business (``l2e``: the first ``train_documents`` of the train split and the first
``validation_documents`` of the validation split), so it depends on parameters the harness does not
read and on the loaded data. The fit task computes them itself, through
``FitContext.teacher_attributions(examples, split)``; they are cached by their examples' fingerprint
like any attributions, so a cell that explains the same documents with the teacher reads them back.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from harness.entries import PluginEntry, canonical_json, model_label, short_hash
from harness.grid import Cell
from harness.inert import json_text
from harness.perturb import RemovalMetric
from harness.suite import LoadedSuite

STAGES = ("load-dataset", "build-model", "fit-explainer", "explain", "perturb", "score")

# The function of harness.keys deriving each stage's cache key (a dataset load is not cached).
CACHE_KEYS = {
    "load-dataset": None,
    "build-model": "model_parts",
    "fit-explainer": "fit_parts",
    "explain": "attributions_parts",
    "perturb": None,  # rows are kept by the forward-pass service, content-addressed
    "score": "metric_parts",
}

PLAN_SCHEMA = 1

_DATA_FIELDS = ("dataset", "selection", "model", "variant", "seed", "explainer", "metric", "cell", "cells")


@dataclass(frozen=True)
class Task:
    """One unit of work: its stage, the tasks whose results it needs, and the plain data that
    determines it. Only the fields of its stage are set:

    - ``dataset``: the loaded data's source (plugin name, version, parameters; no split or sample);
      for ``build-model`` the training data's;
    - ``selection`` (explain): ``{"split", "sample", "limit"}``, the examples explained (the split's
      first ``sample``, then ``--limit``); with ``"extra"`` (a list of metrics' declared needs), the
      examples of the split those needs ask for beside them (``Metric.extra_examples``);
    - ``model`` (its identity, ``train_on`` included), ``variant`` (canonical) and ``seed`` (the model's
      training seed and the explainer's seed: the grid uses one seed for both);
    - ``explainer``: its identity (a student's includes its teacher's);
    - ``metric`` and ``cell`` (score): the metric's identity and the cell's id (``Cell.id``);
    - ``cells`` (perturb): the ids of the cells whose removal metrics it plans together.

    ``label`` is for display only and is not part of the id.
    """

    id: str
    stage: str
    inputs: tuple[str, ...] = ()
    dataset: dict | None = None
    selection: dict | None = None
    model: dict | None = None
    variant: str | None = None
    seed: int | None = None
    explainer: dict | None = None
    metric: dict | None = None
    cell: str | None = None
    cells: tuple[str, ...] | None = None
    label: str = field(default="", compare=False)

    @classmethod
    def create(cls, stage: str, inputs: Iterable[str] = (), label: str = "", **data: Any) -> Task:
        """A task with its id computed from its stage, inputs and data."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        inputs = tuple(dict.fromkeys(inputs))  # each input once, in order
        return cls(id=_task_id(stage, inputs, data), stage=stage, inputs=inputs, label=label, **data)

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def data(self) -> dict:
        """The fields that determine the task, beside its stage and inputs."""
        return {name: value for name in _DATA_FIELDS if (value := getattr(self, name)) is not None}

    def as_dict(self) -> dict:
        data = self.data
        if "cells" in data:
            data["cells"] = list(data["cells"])
        return {
            "id": self.id,
            "stage": self.stage,
            "inputs": list(self.inputs),
            **data,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, value: dict) -> Task:
        """A task read back from ``as_dict``; raises ``ValueError`` when its id does not match its
        content (an edited or corrupted plan)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"task {value.get('id')!r}: unknown fields {', '.join(unknown)}")
        cells = value.get("cells")
        task = cls(
            **{
                **value,
                "inputs": tuple(value.get("inputs", ())),
                "cells": None if cells is None else tuple(cells),
            }
        )
        expected = _task_id(task.stage, task.inputs, task.data)
        if task.id != expected:
            raise ValueError(f"task {task.id!r} ({task.stage}): its id does not match its content")
        return task


def _task_id(stage: str, inputs: tuple[str, ...], data: dict) -> str:
    content = {name: value for name, value in data.items() if value is not None}
    return short_hash({"stage": stage, "inputs": list(inputs), **content})


@dataclass(frozen=True)
class Plan:
    """A run's tasks in a valid topological order (every task after the tasks it needs), and the suite
    settings every cache key holds besides the tasks' data (``device`` as the suite asks for it: ``auto``
    is resolved by the executor; ``batch_size``; ``limit``)."""

    tasks: tuple[Task, ...]
    suite: dict = field(default_factory=dict)
    _index: dict[str, Task] = field(init=False, repr=False, compare=False)
    _dependents: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Task] = {}
        dependents: dict[str, list[str]] = {}
        for task in self.tasks:
            if task.id in index:
                raise ValueError(f"task {task.id} ({task.label}) is listed twice")
            for needed in task.inputs:
                if needed not in index:
                    raise ValueError(
                        f"task {task.id} ({task.label}) needs {needed}, which does not come before it"
                    )
                dependents[needed].append(task.id)
            index[task.id] = task
            dependents[task.id] = []
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_dependents", {k: tuple(v) for k, v in dependents.items()})

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def task(self, task_id: str) -> Task:
        return self._index[task_id]

    def stage(self, stage: str) -> list[Task]:
        """The tasks of one stage, in plan order."""
        return [task for task in self.tasks if task.stage == stage]

    def explanations(self, task: Task) -> tuple[str, ...]:
        """The explain tasks of the sample a score task reads, in order: its explanation's and, for a
        metric reading a reference, the reference's (not their extra examples': see ``extras``)."""
        return tuple(
            needed
            for needed in task.inputs
            if self._index[needed].stage == "explain" and not is_extra(self._index[needed])
        )

    def extras(self, task: Task) -> tuple[str, ...]:
        """The explain tasks of extra examples a score task reads (``Metric.extra_examples``)."""
        return tuple(needed for needed in task.inputs if is_extra(self._index[needed]))

    def dependents(self, task_id: str) -> tuple[Task, ...]:
        """The tasks that need ``task_id`` directly, in plan order."""
        return tuple(self._index[dependent] for dependent in self._dependents[task_id])

    def by_stage(self) -> dict[str, int]:
        """How many tasks each stage has, every stage included, in stage order."""
        counts = Counter(task.stage for task in self.tasks)
        return {stage: counts[stage] for stage in STAGES}

    def counts_line(self) -> str:
        """``2 load-dataset, 6 build-model, 0 fit-explainer, 30 explain, 70 score``."""
        return ", ".join(f"{count} {stage}" for stage, count in self.by_stage().items())

    def as_dict(self) -> dict:
        return {
            "schema": PLAN_SCHEMA,
            "suite": self.suite,
            "stages": self.by_stage(),
            "cache_keys": {
                stage: f"harness.keys.{name}" if name else None for stage, name in CACHE_KEYS.items()
            },
            "tasks": [task.as_dict() for task in self.tasks],
        }

    def as_json(self, indent: int | None = 2) -> str:
        return json_text(self.as_dict(), indent=indent)

    @classmethod
    def from_dict(cls, value: dict) -> Plan:
        if value.get("schema") != PLAN_SCHEMA:
            raise ValueError(f"plan schema {value.get('schema')!r}, expected {PLAN_SCHEMA}")
        return cls(tuple(Task.from_dict(task) for task in value["tasks"]), dict(value.get("suite") or {}))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))


def build_plan(loaded: LoadedSuite, cells: Sequence[Cell], limit: int | None = None) -> Plan:
    """The tasks that compute ``cells`` (usually ``expand(loaded)``; a resumed run may pass only its
    pending cells) with ``--limit`` ``limit``, in grid order: each cell's explanation (and what it
    needs) is planned before its score."""
    builder = _Builder(limit, planned_together(cells, limit), extra_needs(cells, limit))
    for cell in cells:
        builder.score(cell)
    suite = loaded.suite
    settings = {
        "name": suite.name,
        "version": suite.version,
        "hash": loaded.hash,
        "profile": suite.profile,
        "device": suite.device,
        "batch_size": suite.batch_size,
        "seeds": list(suite.seeds),
        "limit": limit,
    }
    return Plan(tuple(builder.tasks.values()), settings)


def source_identity(dataset: PluginEntry) -> dict:
    """What a dataset load depends on: the plugin and its parameters, not the split or sample read."""
    return {"name": dataset.name, "version": dataset.cls.version, "params": dataset.params_dict}


def selection(dataset: PluginEntry, limit: int | None) -> dict:
    """The examples a dataset entry explains: the first ``sample`` of its split, then ``--limit``."""
    return {"split": dataset.spec.split, "sample": dataset.spec.sample, "limit": limit}


def planned_together(cells: Sequence[Cell], limit: int | None) -> dict[str, tuple[str, ...]]:
    """Explain task id → the cells of the removal metrics (comparing no cells) that score it, where there
    are two or more: their perturbations are planned together (a ``perturb`` task)."""
    probe = _Builder(limit, {}, {})
    groups: dict[str, list[str]] = {}
    for cell in cells:
        metric = cell.metric.cls
        if issubclass(metric, RemovalMetric) and metric.compares is None:
            groups.setdefault(probe.explanation(cell), []).append(cell.id)
    return {explanation: tuple(ids) for explanation, ids in groups.items() if len(ids) > 1}


def is_extra(task: Task) -> bool:
    """Whether an explain task explains extra examples (``selection["extra"]``)."""
    return task.stage == "explain" and bool((task.selection or {}).get("extra"))


def declared_need(metric: PluginEntry) -> dict | None:
    """The extra examples a metric entry declares it needs (``Metric.extra_examples``), or None."""
    declare = getattr(metric.cls, "extra_examples", None)
    return declare(metric.params) if callable(declare) else None


def extra_needs(cells: Sequence[Cell], limit: int | None) -> dict[str, tuple[str, ...]]:
    """Explain task id → the distinct needs (canonical JSON, sorted) of the metrics that score it or read
    it as their reference and declare extra examples: one extra explain task serves them all."""
    probe = _Builder(limit, {}, {})
    needs: dict[str, set[str]] = {}
    for cell in cells:
        need = declared_need(cell.metric)
        if need is None:
            continue
        read = [cell] + ([cell.reference] if cell.reference not in (None, cell) else [])
        for explained in read:
            needs.setdefault(probe.explanation(explained), set()).add(canonical_json(need))
    return {explanation: tuple(sorted(found)) for explanation, found in needs.items()}


class _Builder:
    """Adds each task once (by id), after the tasks it needs."""

    def __init__(
        self,
        limit: int | None,
        together: dict[str, tuple[str, ...]],
        extras: dict[str, tuple[str, ...]],
    ):
        self.limit = limit
        self.together = together
        self.extras = extras
        self.tasks: dict[str, Task] = {}

    def _add(self, task: Task) -> str:
        self.tasks.setdefault(task.id, task)
        return task.id

    def load(self, dataset: PluginEntry) -> str:
        return self._add(Task.create("load-dataset", label=dataset.label, dataset=source_identity(dataset)))

    def model(self, dataset: PluginEntry, model: PluginEntry, variant: str, seed: int) -> str:
        training = model.train_on or dataset
        return self._add(
            Task.create(
                "build-model",
                [self.load(training)],
                label=f"{model_label(model.label, variant)} · seed {seed}"
                + ("" if model.train_on else f" · trained on {training.label}"),
                dataset=source_identity(training),
                model=model.identity,
                variant=variant,
                seed=seed,
            )
        )

    def fit(
        self, dataset: PluginEntry, model: PluginEntry, variant: str, seed: int, student: PluginEntry
    ) -> str:
        inputs = [self.load(dataset), self.model(dataset, model, variant, seed)]
        return self._add(
            Task.create(
                "fit-explainer",
                inputs,
                label=f"{student.label} · {dataset.name} · {model_label(model.label, variant)} · seed {seed}",
                dataset=source_identity(dataset),
                model=model.identity,
                variant=variant,
                seed=seed,
                explainer=student.identity,
            )
        )

    def explain(
        self,
        dataset: PluginEntry,
        model: PluginEntry,
        variant: str,
        seed: int,
        explainer: PluginEntry,
        selected: dict,
    ) -> str:
        inputs = [self.load(dataset), self.model(dataset, model, variant, seed)]
        if explainer.teacher is not None:
            inputs.append(self.fit(dataset, model, variant, seed, explainer))
        return self._add(
            Task.create(
                "explain",
                inputs,
                label=f"{dataset.label} · {model_label(model.label, variant)} · {explainer.label} · seed {seed}",
                dataset=source_identity(dataset),
                selection=selected,
                model=model.identity,
                variant=variant,
                seed=seed,
                explainer=explainer.identity,
            )
        )

    def explanation(self, cell: Cell) -> str:
        """The explain task of a cell's explanation (``Cell.explanation``)."""
        return self.explain(
            cell.dataset,
            cell.model,
            cell.variant,
            cell.seed,
            cell.explainer,
            selection(cell.dataset, self.limit),
        )

    def extra(self, explanation: str) -> str:
        """The explain task of the extra examples the metrics reading ``explanation`` declared."""
        main = self.tasks[explanation]
        return self._add(
            Task.create(
                "explain",
                [*main.inputs, explanation],
                label=f"{main.label} · extra examples",
                dataset=main.dataset,
                selection={**main.selection, "extra": [json.loads(n) for n in self.extras[explanation]]},
                model=main.model,
                variant=main.variant,
                seed=main.seed,
                explainer=main.explainer,
            )
        )

    def perturb(self, explanation: str) -> str:
        cells = self.together[explanation]
        return self._add(
            Task.create(
                "perturb",
                [explanation],
                label=f"{self.tasks[explanation].label} · perturbations of {len(cells)} metrics",
                cells=cells,
            )
        )

    def score(self, cell: Cell) -> str:
        explanation = self.explanation(cell)
        inputs = [explanation]
        reference = cell.reference
        if reference is not None and reference != cell:
            inputs.append(self.explanation(reference))
        if cell.id in self.together.get(explanation, ()):
            inputs.append(self.perturb(explanation))
        if declared_need(cell.metric) is not None:
            inputs.append(self.extra(explanation))
            if reference is not None and reference != cell:
                inputs.append(self.extra(self.explanation(reference)))
        return self._add(
            Task.create("score", inputs, label=cell.describe(), metric=cell.metric.identity, cell=cell.id)
        )
