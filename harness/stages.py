"""Plan → artefacts: the work of one task, as a function of the task, its inputs' artefacts and a
workspace.

A stage rebuilds what it needs from the task's plain data (plugin identities, variant, seed, selection),
reads and writes the content-addressed cache, and returns a small artefact; it never writes the results
store and never touches the terminal (progress goes to the workspace's reporter, which shows nothing in a
worker). The driver (``harness.runner``) records artefacts in the store; an executor
(``harness.executors``) decides where stages run. So the same stage runs in the driver's process, in a
local pool's worker or on a Ray node, and gives the same artefact.

A ``Workspace`` is what one process keeps between the tasks it runs: the suite's plugins by identity,
the cache, the device, and a few loaded datasets and models, bounded (``Workspace.MODELS_KEPT``): a
model that no later task of this process asks for is dropped as others come, and one evicted too early
is read back from the cache. Artefacts are built only from the cache and the task, so a task gives the
same result whichever process ran the tasks before it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from harness import keys
from harness.attribution import Attribution
from harness.boundary import (
    attribution_problem,
    attributions_copy,
    curves_problem,
    undefined_where_degenerate,
    values_problem,
)
from harness.cache import Cache
from harness.classifier import Classifier
from harness.data import Example, TextDataset, fingerprint_examples
from harness.entries import PluginEntry, canonical_json
from harness.errors import BenchError, PluginError
from harness.explaining import check_target, explain_batch
from harness.forward import FORWARD_ROWS, forward_service
from harness.grid import Cell, expand
from harness.modelstate import ModelState
from harness.perturb import evaluate_together
from harness.plan import Task, declared_need, source_identity
from harness.plugin import FitContext, MetricInput, MetricOutput
from harness.progress import NullReporter, Reporter
from harness.suite import LoadedSuite

log = logging.getLogger("bench.run")
LOAD_CHECK_EXAMPLES = 4  # test examples of the training dataset a loaded model is checked on

# Cached attributions are stored as {"schema": ATTRIBUTIONS_SCHEMA, "timing": ..., "attributions": [...]};
# an entry of another schema (or unreadable) is recomputed, never a failed cell. 3: attributions carry
# groups, group_scores, extras and their own schema (harness.attribution.ATTRIBUTION_SCHEMA).
ATTRIBUTIONS_SCHEMA = 3

# Cached metric values: {"schema", "values", "curves", "units", "reference_values", "notes"}.
METRIC_SCHEMA = 2


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise BenchError(
            "device: 'cuda' was requested but CUDA is not available here; use --device cpu or auto"
        )
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    """The device as keys and timings record it: ``cpu``, or ``cuda:<GPU name>``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- artefacts: what stages return (small, picklable) ----------------------------------------------------
@dataclass(frozen=True)
class DatasetFacts:
    """A loaded dataset's fingerprint and class names."""

    fingerprint: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ModelFacts:
    """A built model: its cache key and its training report."""

    key: str
    training: dict


@dataclass(frozen=True)
class FitFacts:
    """What fitting a student explainer reported."""

    report: dict


@dataclass
class Explained:
    """One explanation of the grid: its attributions with their cache key, where and when they were timed
    (``timing``: host, device, measured_at, threads, batch size), the explained examples' fingerprint
    and count, the explainer's fit report, the model's facts on the evaluated dataset (cache key, class
    names, test accuracy and predictions, training report) and each attribution's gold label, for the
    store."""

    attributions: list[Attribution]
    key: str
    timing: dict
    fingerprint: str
    n_examples: int
    fit_report: dict
    model: dict
    gold_labels: list[int | None] = field(default_factory=list)  # aligned with ``attributions``
    # extra examples (``Metric.extra_examples``) only: the explain task of the sample they extend, and
    # for each need (canonical JSON) each sample example's extra example ids
    extends: str | None = None
    related: dict[str, dict[str, list[str]]] | None = None


@dataclass(frozen=True)
class Perturbed:
    """What planning an explanation's removal metrics together did: the metrics planned (those whose
    values were not cached yet), the rows they asked for and the rows run through the model."""

    metrics: int
    requested: int
    computed: int
    seconds: float


@dataclass(frozen=True)
class Scored:
    """A cell's values (one per explained example, in the attributions' order) and what came with them."""

    example_ids: list[str]
    values: list[float]
    curves: list | None
    units: list[str] | None
    reference_values: list[float] | None
    notes: list[str]
    seconds: float


# -- the workspace ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """What every process running stages must share (picklable, sent to workers once)."""

    loaded: LoadedSuite
    cache_dir: str
    use_cache: bool
    device: str  # as requested ("auto", "cpu", "cuda"); each process resolves it
    limit: int | None
    written_since: float | None = None  # with use_cache off: entries written since then are this run's
    # torch's threads in every process running stages: float sums over another number of threads
    # differ in the last bits, enough to change trained weights' bytes (and what hashes them)
    threads: int | None = None
    # datasets the driver loaded to check them (``harness.datachecks``), by source: a workspace in the
    # driver's process starts with them instead of loading them again; never sent to other processes
    datasets: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def batch_size(self) -> int:
        return self.loaded.suite.batch_size

    def __getstate__(self) -> dict:
        return {**self.__dict__, "datasets": {}}


class _Bounded(OrderedDict):
    """The ``size`` most recently used values; older ones are dropped."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make: Callable):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


@dataclass
class _ModelHandle:
    """A model known by its cache key; loaded (or built) into memory only when something needs it."""

    key: str
    plugin: object
    training: TextDataset
    entry: PluginEntry
    variant: str
    seed: int
    trainable: bool
    device: torch.device
    device_name: str  # as keys and timings record it


class Workspace:
    """What one process keeps between tasks (see the module docstring). ``reporter`` hears of the
    stages' steps; a worker's shows nothing."""

    MODELS_KEPT = 2  # loaded models kept in memory: a variant and its reference variant, say
    DATASETS_KEPT = 3

    def __init__(self, settings: Settings, reporter: Reporter | None = None):
        self.settings = settings
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        self.loaded = settings.loaded
        self.batch_size = settings.batch_size
        self.limit = settings.limit
        self.cache = Cache(Path(settings.cache_dir), read=settings.use_cache, since=settings.written_since)
        self.device = settings.device
        self.reporter = reporter or NullReporter()
        self._entries: dict[str, PluginEntry] = {}
        self._sources: dict[str, PluginEntry] = {}
        for section in self.loaded.entries.values():
            for entry in section:
                for plugin in (entry, entry.teacher, entry.train_on):
                    if plugin is not None:
                        self._entries.setdefault(canonical_json(plugin.identity), plugin)
                        if plugin.kind == "dataset":
                            self._sources.setdefault(canonical_json(source_identity(plugin)), plugin)
        self._cells: dict[str, Cell] | None = None
        self._datasets = _Bounded(self.DATASETS_KEPT)
        for source, dataset in settings.datasets.items():
            self._datasets.get_or_make(source, lambda dataset=dataset: dataset)
        self._classifiers = _Bounded(self.MODELS_KEPT)
        self._loaded_reports: dict[str, dict] = {}  # a model that is not trainable: its report when loaded
        self._states: dict[str, ModelState] = {}  # each model in memory as it was loaded, by key
        self._handles: dict[tuple, _ModelHandle] = {}

    # -- plugins by identity --------------------------------------------------------------------------
    def entry(self, identity: dict) -> PluginEntry:
        return self._entries[canonical_json(identity)]

    def source(self, identity: dict) -> PluginEntry:
        return self._sources[canonical_json(identity)]

    def cell(self, cell_id: str) -> Cell:
        if self._cells is None:
            cells = expand(self.loaded)
            self._cells = {cell.id: cell for cell in cells}
            self._cells.update({c.reference.id: c.reference for c in cells if c.reference is not None})
        return self._cells[cell_id]

    # -- data ----------------------------------------------------------------------------------------
    def dataset(self, entry: PluginEntry) -> TextDataset:
        """The entry's loaded data (shared by entries that only select another split or sample)."""
        return self._datasets.get_or_make(entry.source, lambda: entry.cls(entry.params).load())

    def examples(self, entry: PluginEntry) -> list[Example]:
        """The examples a dataset entry explains: its split, its sample, then ``--limit``."""
        examples = list(self.dataset(entry).split(entry.spec.split))
        if entry.spec.sample is not None:
            examples = examples[: entry.spec.sample]
        if self.limit is not None:
            examples = examples[: self.limit]
        if not examples:
            raise PluginError(f"dataset '{entry.label}' has no examples in its {entry.spec.split} split")
        return examples

    # -- models --------------------------------------------------------------------------------------
    def model(self, dataset: PluginEntry, model: PluginEntry, variant: str, seed: int) -> _ModelHandle:
        """The model trained for ``dataset`` (or on its ``train_on`` data), known by its cache key."""
        training_entry = model.train_on or dataset
        handle_id = (training_entry.source, model, variant, seed)
        if handle_id not in self._handles:
            training = self.dataset(training_entry)
            plugin = model.cls(model.params)
            device = resolve_device(model.device or self.device)  # an entry naming its device wins
            key = keys.key(
                keys.model_parts(
                    model.identity, variant, seed, training.fingerprint, plugin.weights_identity(),
                    device_name(device),
                )
            )  # fmt: skip
            self._handles[handle_id] = _ModelHandle(
                key, plugin, training, model, variant, seed, model.cls.trainable, device, device_name(device)
            )
        return self._handles[handle_id]

    def _build(self, handle: _ModelHandle) -> tuple[Classifier, dict]:
        started = time.perf_counter()
        seed_everything(handle.seed)
        classifier = handle.plugin.build(
            handle.training, seed=handle.seed, device=handle.device, variant=handle.variant
        )
        meta = {
            "training": {
                **handle.plugin.training_report(classifier),
                "build_seconds": round(time.perf_counter() - started, 3),
            }
        }
        return classifier, meta

    def _store(self, handle: _ModelHandle, classifier: Classifier, meta: dict, replace: bool) -> None:
        self.cache.put_directory(
            "models", handle.key, lambda path: handle.plugin.save(classifier, path), replace=replace
        )
        self.cache.put_json("model-meta", handle.key, meta)

    def ensure_model(self, handle: _ModelHandle) -> dict:
        """Build and cache the model unless the cache has it; return its training report. A model that is
        not trainable (its weights come with the plugin) is not cached: building it is loading it."""
        meta = self.cache.get_json("model-meta", handle.key) if handle.trainable else None
        directory = self.cache.get_directory("models", handle.key) if meta else None
        if isinstance(meta, dict) and isinstance(meta.get("training"), dict) and directory is not None:
            self._check_on_load(handle, None)
            return meta["training"]
        loaded = self._classifiers.get(handle.key) is not None
        if not handle.trainable and loaded and handle.key in self._loaded_reports:
            return self._loaded_reports[handle.key]  # loaded already, and still as loaded: not again
        classifier, meta = self._build(handle)
        if not handle.trainable:
            self._loaded_reports[handle.key] = meta["training"]
        if handle.trainable:
            self._store(handle, classifier, meta, replace=False)
        self._check_on_load(handle, classifier)
        self._classifiers.get_or_make(handle.key, lambda: self._serving(handle, classifier))
        return meta["training"]

    def _check_on_load(self, handle: _ModelHandle, classifier: Classifier | None) -> None:
        """For a plugin that asks for it (``Model.check_on_load``): the load checks of the conformance kit
        on the training dataset's first test examples, once per model (cached); raise ``PluginError``
        naming the first failed check, so that the model's cells fail with it instead of giving wrong
        numbers."""
        if not handle.plugin.check_on_load:
            return
        from harness.testing import LOAD_CHECKS_VERSION, load_findings

        examples = handle.training.test[:LOAD_CHECK_EXAMPLES]
        key = keys.key(keys.model_checks_parts(handle.key, LOAD_CHECKS_VERSION, handle.training.fingerprint))
        findings = self.cache.get_json("model-checks", key)
        if not isinstance(findings, list):
            if classifier is None:
                classifier = self.classifier(handle)
            findings = [[f.check, f.message] for f in load_findings(classifier, examples)] if examples else []
            self.cache.put_json("model-checks", key, findings)
        if findings:
            check, message = findings[0]
            more = f" (and {len(findings) - 1} more check(s))" if len(findings) > 1 else ""
            raise PluginError(
                f"model '{handle.entry.label}' fails the load check '{check}': {message}{more}; "
                "its numbers would be wrong, so its cells are not computed"
            )

    def classifier(self, handle: _ModelHandle) -> Classifier:
        """The model in memory: kept, read from the cache, or built (and cached) when neither has it."""
        return self._classifiers.get_or_make(handle.key, lambda: self._serving(handle, self._load(handle)))

    def _serving(self, handle: _ModelHandle, classifier: Classifier) -> Classifier:
        """The classifier with its forward-pass service keeping rows in the cache, under the model's key
        and device (``harness.forward``): a re-run or another suite on the same model reads them back.
        Its state is taken now, to check after each plugin call (``check_unchanged``) and before rows are
        stored."""
        state = self._states[handle.key] = ModelState.of(classifier)
        forward_service(classifier).attach_store(
            self.cache.root / FORWARD_ROWS,
            f"{handle.key}:{handle.device_name}",
            read=self.cache.read,
            state=state,
        )
        return classifier

    def check_unchanged(self, handle: _ModelHandle, plugin: str) -> None:
        """After ``plugin`` (e.g. "explainer 'x'") was handed the model: if the model in memory is not as
        it was loaded (``harness.modelstate``), drop it, so that the next task loads it afresh, and raise
        ``PluginError`` naming the plugin, so that its cell fails and caches nothing it computed. A model
        not in memory was not handed out. About 4 ms on minilm-head, under 1 ms on bow (``harness.modelstate``)."""
        classifier = self._classifiers.get(handle.key)
        state = self._states.get(handle.key)
        if classifier is None or state is None:
            return
        change = state.change(classifier)
        if change is None:
            return
        del self._classifiers[handle.key]
        del self._states[handle.key]
        raise PluginError(
            f"{plugin} modified the model it was handed: {change}; what it computed is not stored or cached, "
            f"and model '{handle.entry.label}' is loaded afresh for the next cells"
        )

    def _load(self, handle: _ModelHandle) -> Classifier:
        directory = self.cache.get_directory("models", handle.key) if handle.trainable else None
        if directory is not None:
            try:
                return handle.plugin.load(directory, handle.training, handle.device)
            except Exception as error:  # an unreadable or outdated entry: rebuild it, never fail
                log.warning("cached model %s is unreadable (%s); rebuilding it", handle.key, describe(error))
                classifier, meta = self._build(handle)
                self._store(handle, classifier, meta, replace=True)
                return classifier
        classifier, meta = self._build(handle)
        if handle.trainable:
            self._store(handle, classifier, meta, replace=False)
        return classifier

    def model_facts(self, dataset_entry: PluginEntry, handle: _ModelHandle) -> dict:
        """The model's cache key, training report, and test accuracy and predictions on the evaluated
        dataset's whole test split (cached per model and dataset): what the store keeps of a model."""
        dataset = self.dataset(dataset_entry)
        if tuple(handle.training.labels) != tuple(dataset.labels):
            raise PluginError(
                f"model trained on '{handle.entry.train_on.label}' predicts {list(handle.training.labels)} "
                f"but dataset '{dataset_entry.label}' has classes {list(dataset.labels)}"
            )
        training = self.ensure_model(handle)
        accuracy_key = keys.key(
            keys.test_predictions_parts(handle.key, dataset.fingerprint, self.batch_size, handle.device_name)
        )
        evaluation = self.cache.get_json("accuracy", accuracy_key)
        if not (isinstance(evaluation, dict) and {"test_accuracy", "test_predictions"} <= set(evaluation)):
            predictions = predict(self.classifier(handle), dataset.test, self.batch_size)
            correct = sum(p == example.label for p, example in zip(predictions, dataset.test, strict=True))
            evaluation = {
                "test_accuracy": correct / len(predictions) if predictions else None,
                "test_predictions": predictions,
            }
            self.cache.put_json("accuracy", accuracy_key, evaluation)
        return {
            "key": handle.key,
            "training": training,
            "n_test": len(dataset.test),
            "labels": list(dataset.labels),
            **evaluation,
        }


def describe(error: BaseException) -> str:
    """An error in one line: messages written for the user as they are, others with their type."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, PluginError | BenchError) else f"{type(error).__name__}: {text}"


# -- the stages ------------------------------------------------------------------------------------------
def load_dataset(task: Task, inputs: dict, workspace: Workspace) -> DatasetFacts:
    dataset = workspace.dataset(workspace.source(task.dataset))
    return DatasetFacts(dataset.fingerprint, tuple(dataset.labels))


def build_model(task: Task, inputs: dict, workspace: Workspace) -> ModelFacts:
    handle = workspace.model(
        workspace.source(task.dataset), workspace.entry(task.model), task.variant, task.seed
    )
    return ModelFacts(handle.key, workspace.ensure_model(handle))


def fit_explainer(task: Task, inputs: dict, workspace: Workspace) -> FitFacts:
    """Fit a student (and cache what it learned, under ``FitContext.key``); the explain tasks that use it
    fit again, reading it back from the cache."""
    dataset_entry = workspace.source(task.dataset)
    student = workspace.entry(task.explainer)
    handle = workspace.model(dataset_entry, workspace.entry(task.model), task.variant, task.seed)
    explainer = _fitted(workspace, student, task.seed, dataset_entry, handle, task.label)
    return FitFacts(explainer.fit_report())


def explain(task: Task, inputs: dict, workspace: Workspace) -> Explained:
    """The attributions of one explanation (dataset entry, model, variant, explainer, seed), read from the
    cache or computed and cached, with what the store keeps of the model; for a task of extra examples,
    theirs (``explain_extra``)."""
    if task.selection.get("extra"):
        return explain_extra(task, inputs, workspace)
    dataset_entry = _dataset_entry(workspace, task)
    model_entry = workspace.entry(task.model)
    handle = workspace.model(dataset_entry, model_entry, task.variant, task.seed)
    facts = workspace.model_facts(dataset_entry, handle)
    examples = workspace.examples(dataset_entry)
    attributions, key, fit_report, timing = _cached_attributions(
        workspace, workspace.entry(task.explainer), task.seed, dataset_entry, examples, handle, task.label
    )
    gold = {example.id: example.label for example in examples}
    return Explained(
        attributions, key, timing, fingerprint_examples(examples), len(examples), fit_report, facts,
        [gold.get(a.example_id) for a in attributions],
    )  # fmt: skip


def explain_extra(task: Task, inputs: dict, workspace: Workspace) -> Explained:
    """The attributions of the extra examples metrics declared for one explanation: for each need
    (``Metric.extra_examples``), the examples of the whole split it asks for beside each explained one
    (``Metric.find_extra_examples``, cached by the need and the split's and sample's content), then the
    explainer's attributions of those not explained already, cached like any attributions."""
    dataset_entry = _dataset_entry(workspace, task)
    handle = workspace.model(dataset_entry, workspace.entry(task.model), task.variant, task.seed)
    facts = workspace.model_facts(dataset_entry, handle)
    anchors = workspace.examples(dataset_entry)
    pool = list(workspace.dataset(dataset_entry).split(dataset_entry.spec.split))
    related = {
        canonical_json(need): _related(workspace, need, anchors, pool) for need in task.selection["extra"]
    }
    own = {example.id for example in anchors}
    wanted = {i for per_need in related.values() for ids in per_need.values() for i in ids} - own
    examples = [example for example in pool if example.id in wanted]
    attributions, key, fit_report, timing = [], "", {}, {}
    if examples:
        attributions, key, fit_report, timing = _cached_attributions(
            workspace, workspace.entry(task.explainer), task.seed, dataset_entry, examples, handle, task.label
        )
    gold = {example.id: example.label for example in examples}
    return Explained(
        attributions, key, timing, fingerprint_examples(examples), len(examples), fit_report, facts,
        [gold.get(a.example_id) for a in attributions], extends=task.inputs[-1], related=related,
    )  # fmt: skip


def _related(
    workspace: Workspace, need: dict, anchors: Sequence[Example], pool: Sequence[Example]
) -> dict[str, list[str]]:
    """For each anchor's id, the pool example ids ``need`` asks for, from the metric entry of the suite
    declaring it; cached by the need, the metric's version and the pool's and anchors' content."""
    declaring = next(
        entry
        for entry in workspace.loaded.entries["metrics"]
        if canonical_json(declared_need(entry)) == canonical_json(need)
    )
    cls = declaring.cls
    key = keys.key(
        {
            "stage": "extra-examples",
            "metric": cls.name,
            "version": cls.version,
            "need": need,
            "pool": fingerprint_examples(pool),
            "anchors": fingerprint_examples(anchors),
        }
    )
    cached = workspace.cache.get_json("extra-examples", key)
    if isinstance(cached, dict) and set(cached) == {example.id for example in anchors}:
        return cached
    found = cls.find_extra_examples(need, anchors, pool)
    workspace.cache.put_json("extra-examples", key, found)
    return found


def score(task: Task, inputs: dict, workspace: Workspace) -> Scored:
    """A cell's values: its metric on its explanation (and, for a metric comparing two cells, the
    reference's), read from the cache or computed and cached."""
    started = time.perf_counter()
    cell = workspace.cell(task.cell)
    explained: Explained = inputs[task.inputs[0]]
    read = [(i, inputs[i]) for i in task.inputs[1:] if isinstance(inputs[i], Explained)]
    extras = {artefact.extends: artefact for _, artefact in read if artefact.extends is not None}
    reference_id, reference = next(((i, a) for i, a in read if a.extends is None), (None, None))
    extra, reference_extra = extras.get(task.inputs[0]), extras.get(reference_id)
    metric = cell.metric
    key = _metric_key(workspace, cell, explained, reference, extra, reference_extra)
    example_ids = [a.example_id for a in explained.attributions]
    n = len(explained.attributions)
    cached = _cached_metric_values(workspace, key, n)
    computed = cached is None
    if computed:
        seed_everything(cell.seed)
        data = _metric_input(workspace, cell, explained, extra)
        if reference is not None:
            data.reference = _metric_input(workspace, cell.reference, reference, reference_extra)
        output = metric.cls(metric.params).compute(data)
        _check_models_unchanged(workspace, cell, f"metric '{metric.name}'")
        if not isinstance(output, MetricOutput):
            output = MetricOutput(output)
        cached = {
            "schema": METRIC_SCHEMA,
            "values": _numbers(metric, "values", output.values),
            "curves": None if output.curves is None else list(output.curves),
            "units": None if output.units is None else [str(unit) for unit in output.units],
            "reference_values": (
                None
                if output.reference_values is None
                else _numbers(metric, "reference_values", output.reference_values)
            ),
            "notes": [str(note) for note in output.notes],
        }
        for what in ("values", "curves", "units", "reference_values"):
            if cached[what] is not None and len(cached[what]) != n:
                raise PluginError(
                    f"metric '{metric.name}' returned {len(cached[what])} {what} for {n} examples"
                )
    # Checked whether computed or read back: an entry cached before values were checked is refused too.
    for what in ("values", "reference_values"):
        problem = (
            None if cached[what] is None else values_problem(metric.cls, cached[what], example_ids, what[:-1])
        )
        if problem is not None:
            raise PluginError(f"metric '{metric.name}' returned {problem}; its values are not stored")
    problem = None if cached["curves"] is None else curves_problem(cached["curves"], example_ids)
    if problem is not None:
        raise PluginError(f"metric '{metric.name}' returned a {problem}; its values are not stored")
    if computed:
        workspace.cache.put_json("metric-values", key, cached)
    values, notes = cached["values"], cached["notes"]
    if metric.cls.ranks_units:
        values, note = undefined_where_degenerate(
            values,
            explained.attributions,
            None if reference is None else reference.attributions,
            metric.cls.score_order_for(metric.params),
        )
        notes = notes if note is None else [*notes, note]
    return Scored(
        example_ids=example_ids,
        values=values,
        curves=cached["curves"],
        units=cached["units"],
        reference_values=cached["reference_values"],
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def _numbers(metric: PluginEntry, what: str, values) -> list[float]:
    """A metric's ``values`` (or ``reference_values``) as floats; a ``PluginError`` naming the metric for
    anything that is not a number. Text is not a number even where ``float`` parses it ("0.5", b"nan"):
    a metric returning it has a bug that a parse would hide. Python and numpy numbers (bools included,
    e.g. an agreement's 1[...]) and one-element tensors are numbers."""
    values = list(values)
    text = next((value for value in values if isinstance(value, str | bytes | bytearray)), None)
    if text is not None:
        raise PluginError(
            f"metric '{metric.name}' returned {what} that are not numbers ({text!r} is "
            f"{type(text).__name__}, expected a number)"
        )
    try:
        return [float(value) for value in values]
    except (TypeError, ValueError) as error:
        raise PluginError(f"metric '{metric.name}' returned {what} that are not numbers ({error})") from None


def perturb(task: Task, inputs: dict, workspace: Workspace) -> Perturbed:
    """The perturbed inputs of every removal metric of ``task.cells`` on one explanation, planned together
    (``evaluate_together``): each distinct one through the model once, kept by the model's forward-pass
    service (in memory, and in the cache's row store) for the score tasks, which then compute nothing
    twice. Metrics whose values are cached are left out. An optimisation only: a metric whose removals
    cannot be built, or passes that fail, are left to the score tasks, which report their own errors."""
    started = time.perf_counter()
    explained: Explained = inputs[task.inputs[0]]
    requests, data = [], None
    for cell_id in task.cells or ():
        cell = workspace.cell(cell_id)
        key = _metric_key(workspace, cell, explained, None)
        if _cached_metric_values(workspace, key, len(explained.attributions), quiet=True) is not None:
            continue
        data = _metric_input(workspace, cell, explained)
        try:
            request = cell.metric.cls(cell.metric.params).perturbations(data)
        except Exception as error:
            log.debug("%s: not planned with the others (%s)", cell.describe(), describe(error))
            continue
        try:  # its score task computes it alone, and fails if it modifies the model again
            _check_models_unchanged(workspace, cell, f"metric '{cell.metric.name}'")
        except PluginError as error:
            log.warning("%s: not planned with the others (%s)", cell.describe(), describe(error))
            continue
        requests.append(request)
    requested = computed = 0
    if requests:
        service = forward_service(data.classifier)
        before = service.stats.computed
        requested = sum(sum(len(r) for r in request.removals) for request in requests)
        try:
            evaluate_together(data.classifier, requests, batch_size=workspace.batch_size)
        except Exception as error:
            log.warning(
                "%s: planned perturbations failed (%s); each metric computes its own",
                task.label,
                describe(error),
            )
        computed = service.stats.computed - before
        log.info(
            "%s: %d perturbed inputs asked for by %d metrics, %d run through the model",
            task.label, requested, len(requests), computed,
        )  # fmt: skip
    return Perturbed(len(requests), requested, computed, time.perf_counter() - started)


STAGES: dict[str, Callable[[Task, dict, Workspace], object]] = {
    "load-dataset": load_dataset,
    "build-model": build_model,
    "fit-explainer": fit_explainer,
    "explain": explain,
    "perturb": perturb,
    "score": score,
}


def run_task(task: Task, inputs: dict, workspace: Workspace):
    """The artefact of ``task``, given its inputs' artefacts (by task id)."""
    try:
        return STAGES[task.stage](task, inputs, workspace)
    finally:
        release_memory()


def _malloc_trim() -> Callable[[], object] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the memory freed since the last call back to the operating system.

    glibc's allocator keeps freed memory for reuse: after perturbation explainers' many differently
    sized tensors (lime, kernel-shap, occlusion), a process's RSS only grows, by gigabytes over a suite,
    though nothing is alive (six lime batches: 0.7 → 1.5 GB, all of it returned by one trim). Called
    after each explained batch and each task; a trim of a heap with little free costs microseconds.
    """
    if _TRIM is not None:
        _TRIM(0)


# -- helpers of the stages -------------------------------------------------------------------------------
def _dataset_entry(workspace: Workspace, task: Task) -> PluginEntry:
    """The dataset entry an explain task selects from (its source, with the selection's split and
    sample): the grid's entry for it."""
    selection = task.selection
    for entry in workspace.loaded.entries["datasets"]:
        if (
            canonical_json(source_identity(entry)) == canonical_json(task.dataset)
            and entry.spec.split == selection["split"]
            and entry.spec.sample == selection.get("sample")
        ):
            return entry
    raise KeyError(f"no dataset entry of the suite matches task {task.id} ({task.label})")


def _metric_input(
    workspace: Workspace, cell: Cell, explained: Explained, extra: Explained | None = None
) -> MetricInput:
    """What the cell's metric sees: its explanation of the sample; with ``extra`` (the extra examples
    its metric declared), with ``extra_attributions`` and ``related`` set."""
    handle = workspace.model(cell.dataset, cell.model, cell.variant, cell.seed)
    examples = {example.id: example for example in workspace.examples(cell.dataset)}
    common = {  # copies: what one metric does to them, no other metric and not the store sees
        "attributions": attributions_copy(explained.attributions),
        "dataset": workspace.dataset(cell.dataset),
        "load_classifier": lambda: workspace.classifier(handle),
        "batch_size": workspace.batch_size,
    }
    if extra is None:
        return MetricInput(examples=examples, **common)
    split = workspace.dataset(cell.dataset).split(cell.dataset.spec.split)
    wanted = {attribution.example_id for attribution in extra.attributions}
    examples |= {example.id: example for example in split if example.id in wanted}
    return MetricInput(
        examples=examples,
        extra_attributions=attributions_copy(extra.attributions),
        related=(extra.related or {}).get(canonical_json(declared_need(cell.metric))),
        **common,
    )


def _check_models_unchanged(workspace: Workspace, cell: Cell, plugin: str) -> None:
    """``Workspace.check_unchanged`` for the models a cell's metric was handed: its own and, for a metric
    comparing two cells, its reference's."""
    for checked in (cell, cell.reference):
        if checked is not None:
            handle = workspace.model(checked.dataset, checked.model, checked.variant, checked.seed)
            workspace.check_unchanged(handle, plugin)


def _metric_key(
    workspace: Workspace,
    cell: Cell,
    explained: Explained,
    reference: Explained | None,
    extra: Explained | None = None,
    reference_extra: Explained | None = None,
) -> str:
    """The cache key of a cell's metric values on its explanation (and reference, and the extra examples
    of either; a cell without extra examples has the key it always had)."""
    handle = workspace.model(cell.dataset, cell.model, cell.variant, cell.seed)
    return keys.key(
        keys.metric_parts(
            _with_extra(explained, extra), cell.metric.identity,
            None if reference is None else _with_extra(reference, reference_extra),
            workspace.batch_size, handle.device_name,
        )
    )  # fmt: skip


def _with_extra(explained: Explained, extra: Explained | None) -> str:
    """An explanation's key, joined with its extra examples' key and neighbours when it has them."""
    if extra is None:
        return explained.key
    return keys.key({"attributions": explained.key, "extra": extra.key, "related": extra.related})


def _cached_metric_values(workspace: Workspace, key: str, n: int, quiet: bool = False) -> dict | None:
    """The cached metric values under ``key`` when this version can use them (``n`` examples)."""
    cached = workspace.cache.get_json("metric-values", key)
    if cached is not None and not _valid_metric_entry(cached, n):
        if not quiet:
            log.warning("cached metric values %s are unreadable or outdated; recomputing", key)
        cached = None
    return cached


def _valid_metric_entry(entry, n: int) -> bool:
    """A cached metric entry this version can use: its schema, and one value (and curve, unit...) per
    example."""
    if not isinstance(entry, dict) or entry.get("schema") != METRIC_SCHEMA:
        return False
    if not isinstance(entry.get("values"), list) or len(entry["values"]) != n:
        return False
    if not isinstance(entry.get("notes"), list):
        return False
    return all(
        entry.get(what) is None or (isinstance(entry[what], list) and len(entry[what]) == n)
        for what in ("curves", "units", "reference_values")
    )


def _cached_attributions(
    workspace: Workspace,
    explainer: PluginEntry,
    seed: int,
    dataset_entry: PluginEntry,
    examples: Sequence[Example],
    handle: _ModelHandle,
    label: str,
    split: str | None = None,
) -> tuple[list[Attribution], str, dict, dict]:
    """Attributions of ``examples`` (from ``split``, by default the dataset entry's) by one explainer on
    one model: read from the cache or computed and cached, with the explainer's fit report and where and
    when they were timed. A student's teacher's attributions come through here too, so they are shared
    with any cell that evaluates the teacher."""
    split = split or dataset_entry.spec.split
    cache = workspace.cache
    key = keys.key(
        keys.attributions_parts(
            handle.key, explainer.identity, seed, split, fingerprint_examples(examples),
            workspace.batch_size, handle.device_name, _inputs_identity(explainer),
        )
    )  # fmt: skip
    cached = cache.get_json("attributions", key)
    if cached is not None:
        try:
            attributions = _stored_attributions(cached)
            fit_report = cache.get_json("fit-reports", key) or {}
            return attributions, key, fit_report, dict(cached["timing"])
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            log.warning("cached attributions %s are unreadable or outdated (%s); recomputing", key, error)
    attributions, fit_report, checkpointed = _explain(
        workspace, explainer, seed, dataset_entry, examples, handle, label, checkpoint=key
    )
    timing = {
        "host": socket.gethostname(),
        "device": handle.device_name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
        "batch_size": workspace.batch_size,
    }
    entry = {
        "schema": ATTRIBUTIONS_SCHEMA,
        "timing": timing,
        "attributions": [a.to_dict() for a in attributions],
    }
    cache.put_json("attributions", key, entry)
    if fit_report:
        cache.put_json("fit-reports", key, fit_report)
    for batch in checkpointed:  # the whole is cached: its parts go
        cache.discard(CHECKPOINTS, _checkpoint_key(key, batch))
    return attributions, key, fit_report, timing


# An explanation's batches, kept as they are explained, so that one interrupted (the process killed, a
# session ended) resumes after its last finished batch instead of from its first: explaining a few
# hundred text pairs with a mask learner takes hours on a CPU. Only batches that took CHECKPOINT_AFTER_S
# or more are kept (writing a cheap explainer's every batch would cost more than explaining it again),
# under the attributions' key (which holds everything they depend on, the batch size included) and the
# batch's index; removed once the whole is cached. A resumed explanation equals an uninterrupted one
# because explainers are batch-independent (their randomness drawn per example: the conformance kit
# checks it of every built-in).
CHECKPOINTS = "explain-checkpoints"
CHECKPOINT_AFTER_S = 5.0


def _stored_attributions(entry: dict) -> list[Attribution]:
    """The attributions of a cache entry (a whole explanation's or a kept batch's); raises ValueError
    (or KeyError, TypeError, AttributeError) when the entry is of another schema or an attribution is
    invalid (``attribution_problem``)."""
    if entry.get("schema") != ATTRIBUTIONS_SCHEMA:
        raise ValueError(f"schema {entry.get('schema')!r}, expected {ATTRIBUTIONS_SCHEMA}")
    attributions = [Attribution.from_dict(item) for item in entry["attributions"]]
    for attribution in attributions:
        problem = attribution_problem(attribution)
        if problem is not None:
            raise ValueError(f"example {attribution.example_id!r}: {problem}")
    return attributions


def _checkpoint_key(key: str, batch: int) -> str:
    return f"{key}-batch{batch:05d}"


def _checkpointed(
    cache: Cache, key: str, batch: int, examples: Sequence[Example]
) -> list[Attribution] | None:
    """The attributions of batch ``batch`` (of ``examples``) kept by an interrupted attempt, if valid."""
    entry = cache.get_json(CHECKPOINTS, _checkpoint_key(key, batch))
    if entry is None:
        return None
    try:
        attributions = _stored_attributions(entry)
        if [a.example_id for a in attributions] != [example.id for example in examples]:
            raise ValueError("other examples than the batch's")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        log.warning("explained batch %d of %s is unreadable (%s); explaining it again", batch, key, error)
        return None
    return attributions


def _inputs_identity(entry: PluginEntry) -> dict | None:
    """What identifies the data an explainer entry reads (``Explainer.inputs_identity``), its teacher's
    included (a student learns from the teacher's attributions); None when neither reads any."""
    own = entry.cls.inputs_identity(entry.params)
    teacher = None if entry.teacher is None else _inputs_identity(entry.teacher)
    return own if teacher is None else {"explainer": own, "teacher": teacher}


def _fitted(
    workspace: Workspace,
    entry: PluginEntry,
    seed: int,
    dataset_entry: PluginEntry,
    handle: _ModelHandle,
    label: str,
):
    """The explainer, fitted to the model (a student learns from its teacher's attributions, which are
    cached like any; what it learned is cached under the fit's key)."""
    classifier = workspace.classifier(handle)
    dataset = workspace.dataset(dataset_entry)
    current = label  # the fit's latest step, which a teacher's attributions extend

    def teacher_attributions(examples: Sequence[Example], split: str) -> list[Attribution]:
        attributions, _, _, _ = _cached_attributions(
            workspace, entry.teacher, seed, dataset_entry, examples, handle, current, split=split
        )
        return attributions

    def report_progress(description: str, done: int, total: int) -> None:
        nonlocal current
        current = f"{label} · {description}"
        workspace.reporter.step(description=current, done=done, total=total)

    context = FitContext(
        cache=workspace.cache,
        key=keys.key(
            keys.fit_parts(
                handle.key,
                entry.identity,
                seed,
                dataset.fingerprint,
                workspace.batch_size,
                handle.device_name,
                _inputs_identity(entry),
            )
        ),  # fmt: skip
        seed=seed,
        batch_size=workspace.batch_size,
        teacher_attributions=None if entry.teacher is None else teacher_attributions,
        progress=report_progress,
    )
    explainer = entry.cls(entry.params, seed=seed)
    seed_everything(seed)
    explainer.fit(classifier, dataset, context)
    workspace.check_unchanged(handle, f"explainer '{entry.name}'")
    return explainer


def _explain(
    workspace: Workspace,
    entry: PluginEntry,
    seed: int,
    dataset_entry: PluginEntry,
    examples: Sequence[Example],
    handle: _ModelHandle,
    label: str,
    checkpoint: str | None = None,
) -> tuple[list[Attribution], dict, list[int]]:
    """The attributions of ``examples``, the explainer's fit report, and the batches kept in or read
    from the cache. With ``checkpoint`` (the attributions' cache key) each batch that took
    ``CHECKPOINT_AFTER_S`` or more is kept as it is explained, and batches an interrupted attempt kept
    are read back instead of explained again."""
    classifier = workspace.classifier(handle)
    check_target(entry.params, classifier)
    explainer = _fitted(workspace, entry, seed, dataset_entry, handle, label)
    fit_report = explainer.fit_report()
    seed_everything(seed)
    reporter = workspace.reporter
    reporter.step(description=label, done=0, total=len(examples))
    batch_size = workspace.batch_size
    attributions: list[Attribution] = []
    warmed, checkpoints = False, []
    for start in range(0, len(examples), batch_size):
        batch, index = examples[start : start + batch_size], start // batch_size
        done = None if checkpoint is None else _checkpointed(workspace.cache, checkpoint, index, batch)
        if done is None:
            explained = explain_batch(
                explainer,
                classifier,
                batch,
                entry.params,
                warm_up=not warmed,  # before the first batch this process explains
                after_call=lambda: workspace.check_unchanged(handle, f"explainer '{entry.name}'"),
            )
            warmed = True
            if explained.problems:
                raise PluginError(f"explainer '{entry.name}' returned {explained.problems[0][1]}")
            done = explained.attributions(batch=index)
            if checkpoint is not None and explained.seconds * len(batch) >= CHECKPOINT_AFTER_S:
                checkpoints.append(index)
                workspace.cache.put_json(
                    CHECKPOINTS,
                    _checkpoint_key(checkpoint, index),
                    {"schema": ATTRIBUTIONS_SCHEMA, "attributions": [a.to_dict() for a in done]},
                )
        else:
            checkpoints.append(index)
        attributions += done
        reporter.step(done=len(attributions))
        release_memory()
    return attributions, fit_report, checkpoints


def predict(classifier: Classifier, examples: Sequence[Example], batch_size: int) -> list[int]:
    """The classifier's predicted class for each example."""
    predictions: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(examples), max(batch_size, 32)):
            batch = examples[start : start + max(batch_size, 32)]
            predictions += classifier.log_probabilities(classifier.encode(batch)).argmax(dim=-1).tolist()
    return predictions
