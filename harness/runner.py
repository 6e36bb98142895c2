"""Grid → cells → records: runs a suite with caching, resume and per-cell failure isolation.

Work is shared along the grid: a dataset is loaded once, a model trained (or read from the cache)
once per (dataset, model, variant, seed), attributions computed once per explainer, then each metric
cell reads them. Every stage is cached by content; the model is loaded only if something still needs
it, so a warm re-run reads caches and writes records.
"""

from __future__ import annotations

import logging
import random
import secrets
import socket
import subprocess
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from rich.console import Console

from harness import __version__, keys
from harness.attribution import Attribution, aggregate_words, attributions_from_batch
from harness.cache import Cache, default_cache_dir
from harness.classifier import Classifier
from harness.data import Example, TextDataset, fingerprint_examples
from harness.entries import PluginEntry
from harness.errors import BenchError, PluginError
from harness.grid import Cell, expand
from harness.plugin import Explanation, FitContext, MetricInput, MetricOutput
from harness.progress import NullReporter, Reporter, RichReporter
from harness.store import CellProvenance, Store
from harness.suite import LoadedSuite

log = logging.getLogger("bench.run")


@dataclass
class RunOptions:
    results_dir: Path = Path("results")
    cache_dir: Path | None = None
    use_cache: bool = True
    device: str | None = None  # overrides the suite's device
    limit: int | None = None  # examples per dataset
    resume: bool = True  # continue the latest interrupted run of the same suite and options
    progress: bool = True
    allow_remote_code: bool = False  # --allow-remote-code: the suite may run code downloaded with models


@dataclass
class RunResult:
    run_id: str
    cells: int
    computed: int
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    resumed: bool = False
    log: Path | None = None  # the run's log file, with the full traceback of every failed cell


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


def git_revision() -> str | None:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return revision.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _resume_mismatch(stored: dict, device: str, versions: dict, options: dict) -> str | None:
    """Why an interrupted run cannot be continued by this one (None when it can): a run is measured on
    one device with one set of versions and options, never half on one and half on another."""
    if stored.get("device") != device:
        return f"it ran on {stored.get('device')}, this run is on {device}"
    old = stored.get("versions") or {}
    changed = sorted(
        name for name in set(old) | set(versions) if name != "plugins" and old.get(name) != versions.get(name)
    )
    plugins_old, plugins_new = old.get("plugins") or {}, versions.get("plugins") or {}
    changed += sorted(
        f"plugin {name}"
        for name in set(plugins_old) | set(plugins_new)
        if plugins_old.get(name) != plugins_new.get(name)
    )
    if changed:
        name = changed[0]
        key = name.removeprefix("plugin ")
        before, after = (
            (plugins_old.get(key), plugins_new.get(key))
            if name.startswith("plugin ")
            else (old.get(name), versions.get(name))
        )
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        return f"{name} changed from {before} to {after}{more}"
    stored_options = stored.get("options") or {}
    for option, value in options.items():
        if stored_options.get(option) != value:
            return f"option {option} was {stored_options.get(option)!r}, now {value!r}"
    return None


def describe_error(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    expected = PluginError | BenchError | StageFailed  # messages written for the user, shown as they are
    return text if isinstance(error, expected) else f"{type(error).__name__}: {text}"


class StageFailed(Exception):
    """An earlier stage (dataset, model, explainer) failed; every cell that depends on it fails too."""


class _Once:
    """Compute a value once; remember a failure so dependent cells fail with the original error."""

    def __init__(self, compute: Callable):
        self._compute = compute
        self._done = False
        self._value = None
        self._error: str | None = None

    def __call__(self):
        if self._error is not None:
            raise StageFailed(self._error)
        if not self._done:
            try:
                self._value = self._compute()
            except Exception as error:
                self._error = describe_error(error)
                log.error("%s", traceback.format_exc())
                raise StageFailed(self._error) from error
            self._done = True
        return self._value

    @property
    def done(self) -> bool:
        """Whether the value is there (computed without error): reading it then costs nothing."""
        return self._done


@dataclass
class ModelHandle:
    """A trained model known by its cache key; loaded into memory only when something needs it."""

    key: str
    load: Callable[[], Classifier]
    facts: dict = field(default_factory=dict)  # test accuracy and predictions, training report


# Cached attributions are stored as {"schema": ATTRIBUTIONS_SCHEMA, "timing": ..., "attributions": [...]};
# an entry of another schema (or unreadable) is recomputed, never a failed cell. 3: attributions carry
# groups, group_scores, extras and their own schema (harness.attribution.ATTRIBUTION_SCHEMA).
ATTRIBUTIONS_SCHEMA = 3


@dataclass
class Explained:
    """One explanation of the grid: the examples, the model and the attributions with their cache key,
    and where and when their timings were measured (``timing``: host, device, measured_at)."""

    dataset: TextDataset
    examples: list[Example]
    model: ModelHandle
    attributions: list[Attribution]
    key: str
    timing: dict = field(default_factory=dict)
    fingerprint: str = ""  # of the examples (ids and texts): what the store keeps with each cell

    def metric_input(self, batch_size: int) -> MetricInput:
        return MetricInput(
            attributions=self.attributions,
            examples={example.id: example for example in self.examples},
            dataset=self.dataset,
            load_classifier=self.model.load,
            batch_size=batch_size,
        )


class Runner:
    def __init__(
        self,
        loaded: LoadedSuite,
        options: RunOptions,
        console: Console | None = None,
        reporter: Reporter | None = None,
    ):
        """``reporter`` hears of the run's progress; by default bars on ``console`` (``RichReporter``),
        or nothing when ``options.progress`` is off."""
        self.loaded = loaded
        self.suite = loaded.suite
        self.options = options
        self.console = console or Console(stderr=True)
        if reporter is None:
            reporter = RichReporter(self.console) if options.progress else NullReporter()
        self.reporter = reporter
        loaded.check_remote_code(options.allow_remote_code)
        self.store = Store(options.results_dir)
        self.cache = Cache(options.cache_dir or default_cache_dir(), read=options.use_cache)
        self.device = resolve_device(options.device or self.suite.device)
        self.device_name = device_name(self.device)
        self.libraries = keys.environment()["libraries"]
        self._training_datasets: dict[PluginEntry, TextDataset] = {}

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cells = expand(self.loaded)
        run_id, resumed, lock = self._start_run()
        handler = self._log_to_file(run_id)
        try:
            done = self.store.done_cells(run_id)
            pending = [cell for cell in cells if cell.id not in done]
            if resumed:
                self.console.print(
                    f"[bold]resuming run {run_id}[/]: {len(cells) - len(pending)} of {len(cells)} "
                    "cells already done"
                )
            result = RunResult(
                run_id, len(cells), len(pending), resumed=resumed, log=self.store.log_path(run_id)
            )
            self._execute(run_id, pending, result)
            self.store.finish_run(run_id, "complete-with-failures" if result.failed else "complete")
            return result
        finally:
            logging.getLogger("bench").removeHandler(handler)
            handler.close()
            lock.release()

    def _versions(self) -> dict:
        """Python, the harness, its code paths, the numeric libraries, every plugin package and every
        plugin class version the suite uses: a resumed run must match all of them."""
        versions = {
            "bench": __version__,
            "python": ".".join(map(str, sys.version_info[:3])),
            **self.libraries,
            "code": keys.CODE_VERSIONS,
        }
        plugins = {}
        for section in self.loaded.entries.values():
            for entry in section:
                versions[entry.package] = entry.package_version
                for plugin in (entry, entry.teacher, entry.train_on):
                    if plugin is not None:
                        plugins[f"{plugin.kind}:{plugin.name}"] = plugin.cls.version
        versions["plugins"] = dict(sorted(plugins.items()))
        return versions

    def _start_run(self) -> tuple[str, bool, FileLock]:
        """The run to work on, resumed or new, with its lock held by this process."""
        options = {
            "limit": self.options.limit,
            "use_cache": self.options.use_cache,
            "cache_dir": str(self.cache.root),
            "device": self.options.device,
            "profile": self.suite.profile,
            "batch_size": self.suite.batch_size,
        }
        versions = self._versions()
        if self.options.resume:
            candidate = self.store.resumable_run(self.loaded.hash)
            if candidate:
                stored = self.store.run(candidate)
                lock = self.store.run_lock(candidate)
                reason = _resume_mismatch(stored, self.device_name, versions, options)
                if reason is None:
                    try:
                        lock.acquire(timeout=0)
                    except Timeout:
                        reason = "another process is running it"
                if reason is None:
                    self.store.claim_run(candidate, self.device_name)
                    return candidate, True, lock
                self.console.print(
                    f"not resuming run {candidate}: {reason}; starting a new run",
                    highlight=False,
                    markup=False,
                )
                log.warning("not resuming run %s: %s", candidate, reason)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{self.suite.name}-{secrets.token_hex(3)}"
        lock = self.store.run_lock(run_id)
        lock.acquire(timeout=0)
        self.store.create_run(
            run_id,
            self.suite,
            self.loaded.hash,
            self.loaded.path,
            self.loaded.text,
            self.device_name,
            git_revision(),
            versions,
            options,
        )
        return run_id, False, lock

    def _log_to_file(self, run_id: str) -> logging.Handler:
        path = self.store.log_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("bench")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        return handler

    def _execute(self, run_id: str, pending: Sequence[Cell], result: RunResult) -> None:
        by_explanation: dict[tuple, list[Cell]] = defaultdict(list)
        for cell in pending:
            by_explanation[cell.explanation].append(cell)
        # Explanations that other cells compare with stay in memory for the whole run.
        self._referenced = {cell.reference.explanation for cell in pending if cell.reference is not None}
        self._sources: dict[tuple, _Once] = {}  # loaded datasets, shared by entries of other splits/samples
        self._datasets: dict[PluginEntry, _Once] = {}
        self._models: dict[tuple, _Once] = {}
        self._explanations: dict[tuple, _Once] = {}
        self._recorded_models: set[tuple] = set()
        # Stages get ``label``, the description the reporter shows for the work in progress, which
        # theirs extend (an explainer's fit steps, a teacher's attributions).
        reporter = self.reporter
        reporter.start_run(len(pending))
        try:
            for explanation_id, cells in by_explanation.items():
                dataset_entry, model_entry, _, explainer_entry, seed = explanation_id
                explanation = (
                    f"{dataset_entry.label} · {model_entry.label} · {explainer_entry.label} · seed {seed}"
                )
                reporter.start_explanation(explanation)
                try:
                    explained = self._explanation(run_id, cells[0], explanation)
                except StageFailed as error:
                    for cell in cells:
                        self._fail(run_id, cell, str(error), result)
                        reporter.cell_done()
                    reporter.end_explanation()
                    continue
                for cell in cells:
                    label = f"{explanation} · {cell.metric.label}"
                    reporter.step(description=label)
                    self._metric(run_id, cell, explained, label, result)
                    reporter.cell_done()
                if explanation_id not in self._referenced:
                    self._explanations.pop(explanation_id, None)  # free the attributions
                reporter.end_explanation()
        finally:
            reporter.close()

    def _explanation(self, run_id: str, cell: Cell, label: str) -> Explained:
        """The attributions of a cell's explanation (dataset, model, variant, explainer, seed), computed
        or read from the cache once per run; raises ``StageFailed`` when a stage fails."""
        if cell.dataset.source not in self._sources:
            self._sources[cell.dataset.source] = _Once(
                lambda entry=cell.dataset: entry.cls(entry.params).load()
            )
        if cell.dataset not in self._datasets:
            self._datasets[cell.dataset] = _Once(
                lambda entry=cell.dataset, load=self._sources[cell.dataset.source]: self._select(
                    entry, load()
                )
            )
        load_data = self._datasets[cell.dataset]
        model_id = (cell.dataset.source, cell.model, cell.variant, cell.seed)
        if model_id not in self._models:
            self._models[model_id] = _Once(
                lambda: self._model(load_data(), cell.dataset, cell.model, cell.variant, cell.seed)
            )
        if cell.explanation not in self._explanations:

            def explain() -> Explained:
                dataset, examples = load_data()
                model = self._models[model_id]()
                self._record_model(run_id, cell, model)
                attributions, key, timing = self._attributions(run_id, cell, dataset, examples, model, label)
                fingerprint = fingerprint_examples(examples)
                return Explained(dataset, examples, model, attributions, key, timing, fingerprint)

            self._explanations[cell.explanation] = _Once(explain)
        return self._explanations[cell.explanation]()

    def _fail(self, run_id: str, cell: Cell, error: str, result: RunResult) -> None:
        log.error("cell failed: %s: %s", cell.describe(), error)
        self.store.fail_cell(run_id, cell, error, self._provenance(cell))
        result.failed.append((cell, error))

    def _provenance(
        self, cell: Cell, explained: Explained | None = None, reference: Explained | None = None
    ) -> CellProvenance:
        """What the store keeps with a cell so that two runs can be compared cell by cell; its timings
        are the cell's attributions' and, for a metric comparing two cells (speed-up), the reference's."""
        fingerprint, examples = None, None
        if explained is not None:
            fingerprint, examples = explained.fingerprint, explained.examples
        elif (data := self._datasets.get(cell.dataset)) is not None and data.done:
            examples = data()[1]  # a cell failed after its examples were selected
            fingerprint = fingerprint_examples(examples)
        return CellProvenance(
            identity=cell.identity,
            examples=fingerprint,
            n_examples=None if examples is None else len(examples),
            limit=self.options.limit,
            timings=[e.timing for e in (explained, reference) if e is not None and e.timing] or None,
        )

    # -- stages ---------------------------------------------------------------------------------
    def _select(self, entry: PluginEntry, dataset: TextDataset) -> tuple[TextDataset, list[Example]]:
        """The examples a dataset entry explains: its split, its sample, then ``--limit``."""
        examples = list(dataset.split(entry.spec.split))
        if entry.spec.sample is not None:
            examples = examples[: entry.spec.sample]
        if self.options.limit is not None:
            examples = examples[: self.options.limit]
        if not examples:
            raise PluginError(f"dataset '{entry.label}' has no examples in its {entry.spec.split} split")
        return dataset, examples

    def _record_model(self, run_id: str, cell: Cell, model: ModelHandle) -> None:
        """The model's facts, stored once per run for each dataset entry it is evaluated with."""
        recorded = (cell.dataset, cell.model, cell.variant, cell.seed)
        if recorded in self._recorded_models:
            return
        self._recorded_models.add(recorded)
        facts = model.facts
        self.store.record_model(
            run_id, cell.dataset, cell.model, cell.variant, cell.seed, model.key, facts["test_accuracy"],
            facts["n_test"], facts["training"], facts["test_predictions"],
        )  # fmt: skip

    def _model(
        self, data, dataset_entry: PluginEntry, model_entry: PluginEntry, variant: str, seed: int
    ) -> ModelHandle:
        dataset, _ = data
        train_data = dataset
        if model_entry.train_on is not None:
            train_data = self._load_training_dataset(model_entry.train_on)
            if tuple(train_data.labels) != tuple(dataset.labels):
                raise PluginError(
                    f"model trained on '{model_entry.train_on.label}' predicts {list(train_data.labels)} but "
                    f"dataset '{dataset_entry.label}' has classes {list(dataset.labels)}"
                )
        plugin = model_entry.cls(model_entry.params)
        key = keys.key(
            keys.model_parts(
                model_entry.identity, variant, seed, train_data.fingerprint, plugin.weights_identity(),
                self.device_name,
            )
        )  # fmt: skip
        trainable = model_entry.cls.trainable

        def build() -> tuple[Classifier, dict]:
            started = time.perf_counter()
            seed_everything(seed)
            classifier = plugin.build(train_data, seed=seed, device=self.device, variant=variant)
            meta = {
                "training": {
                    **plugin.training_report(classifier),
                    "build_seconds": round(time.perf_counter() - started, 3),
                }
            }
            return classifier, meta

        def store(classifier: Classifier, meta: dict, replace: bool) -> None:
            self.cache.put_directory(
                "models", key, lambda path: plugin.save(classifier, path), replace=replace
            )
            self.cache.put_json("model-meta", key, meta)

        meta = self.cache.get_json("model-meta", key) if trainable else None
        directory = self.cache.get_directory("models", key) if meta else None
        if not (isinstance(meta, dict) and isinstance(meta.get("training"), dict)) or directory is None:
            classifier, meta = build()
            if trainable:
                store(classifier, meta, replace=False)
            loader = _Once(lambda: classifier)
        else:

            def load() -> Classifier:
                try:
                    return plugin.load(directory, dataset, self.device)
                except Exception as error:  # an unreadable or outdated entry: rebuild it, never fail
                    log.warning(
                        "cached model %s is unreadable (%s); rebuilding it", key, describe_error(error)
                    )
                    classifier, fresh = build()
                    store(classifier, fresh, replace=True)
                    return classifier

            loader = _Once(load)
        # Test accuracy and predictions on the evaluated dataset's whole test split, cached per
        # (model, dataset); the predictions let reports compare variants (shared predictions).
        accuracy_key = keys.key(
            keys.test_predictions_parts(key, dataset.fingerprint, self.suite.batch_size, self.device_name)
        )
        evaluation = self.cache.get_json("accuracy", accuracy_key)
        if not (isinstance(evaluation, dict) and {"test_accuracy", "test_predictions"} <= set(evaluation)):
            predictions = predict(loader(), dataset.test, self.suite.batch_size)
            correct = sum(p == example.label for p, example in zip(predictions, dataset.test, strict=True))
            evaluation = {
                "test_accuracy": correct / len(predictions) if predictions else None,
                "test_predictions": predictions,
            }
            self.cache.put_json("accuracy", accuracy_key, evaluation)
        facts = {**evaluation, "n_test": len(dataset.test), "training": meta["training"]}
        return ModelHandle(key, loader, facts)

    def _load_training_dataset(self, entry: PluginEntry) -> TextDataset:
        if entry not in self._training_datasets:
            self._training_datasets[entry] = entry.cls(entry.params).load()
        return self._training_datasets[entry]

    def _attributions(
        self,
        run_id: str,
        cell: Cell,
        dataset: TextDataset,
        examples: list[Example],
        model: ModelHandle,
        label: str,
    ) -> tuple[list[Attribution], str, dict]:
        """A cell's attributions (cached), recorded with the run along with the explainer's fit report."""
        attributions, key, fit_report, timing = self._cached_attributions(
            cell.explainer, cell.seed, cell.dataset.spec.split, dataset, examples, model, label
        )
        self.store.record_attributions(run_id, cell, attributions)
        if fit_report or cell.explainer.teacher is not None:
            self.store.record_fit(run_id, cell, fit_report)
        return attributions, key, timing

    def _cached_attributions(
        self,
        explainer: PluginEntry,
        seed: int,
        split: str,
        dataset: TextDataset,
        examples: Sequence[Example],
        model: ModelHandle,
        label: str,
    ) -> tuple[list[Attribution], str, dict, dict]:
        """Attributions of ``examples`` (from ``split``) by one explainer on one model: read from the cache
        or computed and cached, with the explainer's fit report and where and when they were timed.
        Teachers' attributions for a student come through here too, so they are shared with any cell that
        evaluates the teacher."""
        key = keys.key(
            keys.attributions_parts(
                model.key, explainer.identity, seed, split, fingerprint_examples(examples),
                self.suite.batch_size, self.device_name,
            )
        )  # fmt: skip
        cached = self.cache.get_json("attributions", key)
        if cached is not None:
            try:
                if cached.get("schema") != ATTRIBUTIONS_SCHEMA:
                    raise ValueError(f"schema {cached.get('schema')!r}, expected {ATTRIBUTIONS_SCHEMA}")
                attributions = [Attribution.from_dict(item) for item in cached["attributions"]]
                fit_report = self.cache.get_json("fit-reports", key) or {}
                return attributions, key, fit_report, dict(cached["timing"])
            except (AttributeError, KeyError, TypeError, ValueError) as error:
                log.warning("cached attributions %s are unreadable or outdated (%s); recomputing", key, error)
        try:
            attributions, fit_report = self._explain(explainer, seed, dataset, examples, model, label)
        except StageFailed:
            raise
        except Exception as error:
            log.error("%s", traceback.format_exc())
            raise StageFailed(describe_error(error)) from error
        timing = {
            "host": socket.gethostname(),
            "device": self.device_name,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "threads": torch.get_num_threads(),
            "batch_size": self.suite.batch_size,
        }
        entry = {
            "schema": ATTRIBUTIONS_SCHEMA,
            "timing": timing,
            "attributions": [a.to_dict() for a in attributions],
        }
        self.cache.put_json("attributions", key, entry)
        if fit_report:
            self.cache.put_json("fit-reports", key, fit_report)
        return attributions, key, fit_report, timing

    def _fit_context(
        self,
        entry: PluginEntry,
        seed: int,
        dataset: TextDataset,
        model: ModelHandle,
        label: str,
    ) -> FitContext:
        current = label  # the fit's latest step, which a teacher's attributions extend

        def teacher_attributions(examples: Sequence[Example], split: str) -> list[Attribution]:
            attributions, _, _, _ = self._cached_attributions(
                entry.teacher, seed, split, dataset, examples, model, current
            )
            return attributions

        def report_progress(description: str, done: int, total: int) -> None:
            nonlocal current
            current = f"{label} · {description}"
            self.reporter.step(description=current, done=done, total=total)

        return FitContext(
            cache=self.cache,
            key=keys.key(
                keys.fit_parts(
                    model.key,
                    entry.identity,
                    seed,
                    dataset.fingerprint,
                    self.suite.batch_size,
                    self.device_name,
                )
            ),
            seed=seed,
            batch_size=self.suite.batch_size,
            teacher_attributions=None if entry.teacher is None else teacher_attributions,
            progress=report_progress,
        )

    def _explain(
        self,
        entry: PluginEntry,
        seed: int,
        dataset: TextDataset,
        examples: Sequence[Example],
        model: ModelHandle,
        label: str,
    ) -> tuple[list[Attribution], dict]:
        classifier = model.load()
        params = entry.params
        explainer = entry.cls(params, seed=seed)
        target = getattr(params, "target", "predicted")
        granularity = getattr(params, "granularity", "token")
        if target != "predicted" and target >= len(classifier.labels):
            raise PluginError(
                f"target class {target} does not exist: the model has {len(classifier.labels)} classes"
            )
        seed_everything(seed)
        explainer.fit(classifier, dataset, self._fit_context(entry, seed, dataset, model, label))
        fit_report = explainer.fit_report()
        seed_everything(seed)
        self.reporter.step(description=label, done=0, total=len(examples))
        done = 0
        cuda = classifier.device.type == "cuda"
        attributions: list[Attribution] = []
        for start in range(0, len(examples), self.suite.batch_size):
            batch = examples[start : start + self.suite.batch_size]
            encoding = classifier.encode(batch)
            encoding.example_ids = [example.id for example in batch]
            log_probabilities = classifier.log_probabilities(encoding)
            predicted = log_probabilities.argmax(dim=-1)
            targets = predicted if target == "predicted" else torch.full_like(predicted, target)
            if start == 0:
                # Warm-up, untimed, on the first batch's first example: lazy imports, allocator, CUDA
                # kernels and one-time set-up would otherwise be charged to whichever explainer runs first.
                warm = classifier.encode(batch[:1])
                warm.example_ids = encoding.example_ids[:1]
                explainer.explain(classifier, warm, targets[:1])
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            output = explainer.explain(classifier, encoding, targets)
            if cuda:
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - started) / len(batch)
            explanation = output if isinstance(output, Explanation) else Explanation(output)
            problem = explanation.problem(tuple(encoding.input_ids.shape))
            if problem is not None:
                raise PluginError(f"explainer '{entry.name}' returned {problem}")
            scores = explanation.scores
            extras = {
                name: values if values.is_floating_point() else values.float()
                for name, values in (explanation.extras or {}).items()
            }
            if granularity == "word":
                scores = aggregate_words(scores, encoding, params.word_reduction)
                extras = {n: aggregate_words(v, encoding, params.word_reduction) for n, v in extras.items()}
            checked = {"scores": scores} | {f"extras[{n!r}]": v for n, v in extras.items()}
            for what, values in checked.items():
                if not torch.isfinite(values[~encoding.special_mask.to(values.device)]).all():
                    raise PluginError(f"explainer '{entry.name}' returned non-finite {what}")
            attributions += attributions_from_batch(
                encoding.example_ids,
                encoding,
                scores,
                targets,
                log_probabilities,
                seconds,
                labels=explanation.labels,
                batch=start // self.suite.batch_size,
                groups=explanation.groups,
                group_scores=explanation.group_scores,
                extras=extras if explanation.extras is not None else None,
            )
            done += len(batch)
            self.reporter.step(done=done)
        return attributions, fit_report

    def _metric(self, run_id: str, cell: Cell, explained: Explained, label: str, result: RunResult) -> None:
        metric = cell.metric
        started = time.perf_counter()
        try:
            reference = None if cell.reference is None else self._explanation(run_id, cell.reference, label)
        except StageFailed as error:
            self._fail(run_id, cell, f"reference variant '{cell.reference.variant}': {error}", result)
            return
        key = keys.key(
            keys.metric_parts(
                explained.key, metric.identity, None if reference is None else reference.key,
                self.suite.batch_size, self.device_name,
            )
        )  # fmt: skip
        cached = self.cache.get_json("metric-values", key)
        n = len(explained.attributions)
        if cached is not None and not _valid_metric_entry(cached, n):
            log.warning("cached metric values %s are unreadable or outdated; recomputing", key)
            cached = None
        if cached is None:
            try:
                seed_everything(cell.seed)
                data = explained.metric_input(self.suite.batch_size)
                if reference is not None:
                    data.reference = reference.metric_input(self.suite.batch_size)
                output = metric.cls(metric.params).compute(data)
                if not isinstance(output, MetricOutput):
                    output = MetricOutput(output)
                cached = {
                    "schema": METRIC_SCHEMA,
                    "values": [float(value) for value in output.values],
                    "curves": None if output.curves is None else list(output.curves),
                    "units": None if output.units is None else [str(unit) for unit in output.units],
                    "reference_values": (
                        None
                        if output.reference_values is None
                        else [float(value) for value in output.reference_values]
                    ),
                    "notes": [str(note) for note in output.notes],
                }
                for what in ("values", "curves", "units", "reference_values"):
                    if cached[what] is not None and len(cached[what]) != n:
                        raise PluginError(
                            f"metric '{metric.name}' returned {len(cached[what])} {what} for {n} examples"
                        )
            except Exception as error:
                if not isinstance(error, StageFailed):  # a failed stage was logged where it failed
                    log.error("%s", traceback.format_exc())
                self._fail(run_id, cell, describe_error(error), result)
                return
            self.cache.put_json("metric-values", key, cached)
        self.store.record_cell(
            run_id,
            cell,
            [a.example_id for a in explained.attributions],
            cached["values"],
            time.perf_counter() - started,
            curves=cached["curves"],
            units=cached["units"],
            reference_values=cached["reference_values"],
            notes=cached["notes"],
            provenance=self._provenance(cell, explained, reference),
        )


METRIC_SCHEMA = (
    2  # cached metric values: {"schema", "values", "curves", "units", "reference_values", "notes"}
)


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


def predict(classifier: Classifier, examples: Sequence[Example], batch_size: int) -> list[int]:
    """The classifier's predicted class for each example."""
    predictions: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(examples), max(batch_size, 32)):
            batch = examples[start : start + max(batch_size, 32)]
            predictions += classifier.log_probabilities(classifier.encode(batch)).argmax(dim=-1).tolist()
    return predictions


def summary_line(result: RunResult) -> str:
    failed = len(result.failed)
    text = f"run {result.run_id}: {result.cells - failed} of {result.cells} cells done"
    if failed:
        log = result.log or f"results/logs/{result.run_id}.log"
        text += f", {failed} failed (see the report and {log})"
    return text + "."
