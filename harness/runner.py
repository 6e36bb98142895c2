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
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness import __version__
from harness.attribution import Attribution, aggregate_words, attributions_from_batch
from harness.cache import Cache, cache_key, default_cache_dir, library_versions
from harness.classifier import Classifier
from harness.data import Example, TextDataset, fingerprint_examples
from harness.errors import BenchError, PluginError
from harness.grid import Cell, PluginEntry, expand
from harness.plugin import FitContext, LabelledScores, MetricInput, MetricOutput
from harness.store import Store
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


@dataclass
class RunResult:
    run_id: str
    cells: int
    computed: int
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    resumed: bool = False


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise BenchError(
            "device: 'cuda' was requested but CUDA is not available here; use --device cpu or auto"
        )
    return torch.device(requested)


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


@dataclass
class ModelHandle:
    """A trained model known by its cache key; loaded into memory only when something needs it."""

    key: str
    load: Callable[[], Classifier]


@dataclass
class Explained:
    """One explanation of the grid: the examples, the model and the attributions with their cache key."""

    dataset: TextDataset
    examples: list[Example]
    model: ModelHandle
    attributions: list[Attribution]
    key: str

    def metric_input(self, batch_size: int) -> MetricInput:
        return MetricInput(
            attributions=self.attributions,
            examples={example.id: example for example in self.examples},
            dataset=self.dataset,
            load_classifier=self.model.load,
            batch_size=batch_size,
        )


class Runner:
    def __init__(self, loaded: LoadedSuite, options: RunOptions, console: Console | None = None):
        self.loaded = loaded
        self.suite = loaded.suite
        self.options = options
        self.console = console or Console(stderr=True)
        self.store = Store(options.results_dir)
        self.cache = Cache(options.cache_dir or default_cache_dir(), read=options.use_cache)
        self.device = resolve_device(options.device or self.suite.device)
        self.libraries = library_versions()
        self._training_datasets: dict[PluginEntry, TextDataset] = {}

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> RunResult:
        cells = expand(self.loaded)
        run_id, resumed = self._start_run()
        handler = self._log_to_file(run_id)
        try:
            done = self.store.done_cells(run_id)
            pending = [cell for cell in cells if cell.id not in done]
            if resumed:
                self.console.print(
                    f"[bold]resuming run {run_id}[/]: {len(cells) - len(pending)} of {len(cells)} "
                    "cells already done"
                )
            result = RunResult(run_id, len(cells), len(pending), resumed=resumed)
            self._execute(run_id, pending, result)
            self.store.finish_run(run_id, "complete-with-failures" if result.failed else "complete")
            return result
        finally:
            logging.getLogger("bench").removeHandler(handler)
            handler.close()

    def _start_run(self) -> tuple[str, bool]:
        options = {
            "limit": self.options.limit,
            "use_cache": self.options.use_cache,
            "cache_dir": str(self.cache.root),
            "device": self.options.device,
            "profile": self.suite.profile,
        }
        if self.options.resume:
            candidate = self.store.resumable_run(self.loaded.hash)
            if candidate and self.store.run(candidate)["options"].get("limit") == self.options.limit:
                self.store.claim_run(candidate, str(self.device))
                return candidate, True
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{self.suite.name}-{secrets.token_hex(3)}"
        versions = {
            "bench": __version__,
            "python": ".".join(map(str, sys.version_info[:3])),
            **self.libraries,
        }
        for section in self.loaded.entries.values():
            for entry in section:
                versions[entry.package] = entry.package_version
        self.store.create_run(
            run_id,
            self.suite,
            self.loaded.hash,
            self.loaded.path,
            self.loaded.text,
            str(self.device),
            git_revision(),
            versions,
            options,
        )
        return run_id, False

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
        self._datasets: dict[PluginEntry, _Once] = {}
        self._models: dict[tuple, _Once] = {}
        self._explanations: dict[tuple, _Once] = {}
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(
            *columns, console=self.console, disable=not self.options.progress, transient=True
        ) as progress:
            overall = progress.add_task("[bold]cells", total=len(pending))
            for explanation_id, cells in by_explanation.items():
                dataset_entry, model_entry, _, explainer_entry, seed = explanation_id
                explanation = (
                    f"{dataset_entry.label} · {model_entry.label} · {explainer_entry.label} · seed {seed}"
                )
                task = progress.add_task(explanation, total=None)
                try:
                    explained = self._explanation(run_id, cells[0], progress, task)
                except StageFailed as error:
                    for cell in cells:
                        self._fail(run_id, cell, str(error), result)
                        progress.advance(overall)
                    progress.remove_task(task)
                    continue
                for cell in cells:
                    progress.update(task, description=f"{explanation} · {cell.metric.label}")
                    self._metric(run_id, cell, explained, progress, task, result)
                    progress.advance(overall)
                if explanation_id not in self._referenced:
                    self._explanations.pop(explanation_id, None)  # free the attributions
                progress.remove_task(task)

    def _explanation(self, run_id: str, cell: Cell, progress: Progress, task) -> Explained:
        """The attributions of a cell's explanation (dataset, model, variant, explainer, seed), computed
        or read from the cache once per run; raises ``StageFailed`` when a stage fails."""
        if cell.dataset not in self._datasets:
            self._datasets[cell.dataset] = _Once(lambda entry=cell.dataset: self._load_dataset(entry))
        load_data = self._datasets[cell.dataset]
        model_id = (cell.dataset, cell.model, cell.variant, cell.seed)
        if model_id not in self._models:
            self._models[model_id] = _Once(lambda: self._model(run_id, load_data(), *model_id))
        if cell.explanation not in self._explanations:

            def explain() -> Explained:
                dataset, examples = load_data()
                model = self._models[model_id]()
                attributions, key = self._attributions(run_id, cell, dataset, examples, model, progress, task)
                return Explained(dataset, examples, model, attributions, key)

            self._explanations[cell.explanation] = _Once(explain)
        return self._explanations[cell.explanation]()

    def _fail(self, run_id: str, cell: Cell, error: str, result: RunResult) -> None:
        log.error("cell failed: %s: %s", cell.describe(), error)
        self.store.fail_cell(run_id, cell, error)
        result.failed.append((cell, error))

    # -- stages ---------------------------------------------------------------------------------
    def _load_dataset(self, entry: PluginEntry) -> tuple[TextDataset, list[Example]]:
        dataset = entry.cls(entry.params).load()
        examples = list(dataset.split(entry.spec.split))
        if entry.spec.sample is not None:
            examples = examples[: entry.spec.sample]
        if self.options.limit is not None:
            examples = examples[: self.options.limit]
        if not examples:
            raise PluginError(f"dataset '{entry.label}' has no examples in its {entry.spec.split} split")
        return dataset, examples

    def _model(
        self, run_id: str, data, dataset_entry: PluginEntry, model_entry: PluginEntry, variant: str, seed: int
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
        key = cache_key("model", model_entry.identity, variant, seed, train_data.fingerprint, self.libraries)
        meta = self.cache.get_json("model-meta", key) if model_entry.cls.trainable else None
        directory = self.cache.get_directory("models", key) if meta else None
        if meta is None or (model_entry.cls.trainable and directory is None):
            started = time.perf_counter()
            seed_everything(seed)
            classifier = plugin.build(train_data, seed=seed, device=self.device, variant=variant)
            meta = {
                "training": {
                    **plugin.training_report(classifier),
                    "build_seconds": round(time.perf_counter() - started, 3),
                }
            }
            if model_entry.cls.trainable:
                self.cache.put_directory("models", key, lambda path: plugin.save(classifier, path))
                self.cache.put_json("model-meta", key, meta)
            loader = _Once(lambda: classifier)
        else:
            loader = _Once(lambda: plugin.load(directory, dataset, self.device))
        # Test accuracy and predictions on the evaluated dataset's whole test split, cached per
        # (model, dataset); the predictions let reports compare variants (shared predictions).
        accuracy_key = cache_key("test-predictions", key, dataset.fingerprint)
        evaluation = self.cache.get_json("accuracy", accuracy_key)
        if evaluation is None:
            predictions = predict(loader(), dataset.test, self.suite.batch_size)
            correct = sum(p == example.label for p, example in zip(predictions, dataset.test, strict=True))
            evaluation = {
                "test_accuracy": correct / len(predictions) if predictions else None,
                "test_predictions": predictions,
            }
            self.cache.put_json("accuracy", accuracy_key, evaluation)
        self.store.record_model(
            run_id, dataset_entry.label, model_entry.label, model_entry.params_json, variant, seed, key,
            evaluation["test_accuracy"], len(dataset.test), meta["training"], evaluation["test_predictions"],
        )  # fmt: skip
        return ModelHandle(key, loader)

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
        progress: Progress,
        task,
    ) -> tuple[list[Attribution], str]:
        """A cell's attributions (cached), recorded with the run along with the explainer's fit report."""
        attributions, key, fit_report = self._cached_attributions(
            cell.explainer, cell.seed, cell.dataset.spec.split, dataset, examples, model, progress, task
        )
        self.store.record_attributions(run_id, cell, attributions)
        if fit_report or cell.explainer.teacher is not None:
            self.store.record_fit(run_id, cell, fit_report)
        return attributions, key

    def _cached_attributions(
        self,
        explainer: PluginEntry,
        seed: int,
        split: str,
        dataset: TextDataset,
        examples: Sequence[Example],
        model: ModelHandle,
        progress: Progress,
        task,
    ) -> tuple[list[Attribution], str, dict]:
        """Attributions of ``examples`` (from ``split``) by one explainer on one model: read from the cache
        or computed and cached, with the explainer's fit report. Teachers' attributions for a student
        come through here too, so they are shared with any cell that evaluates the teacher."""
        key = cache_key(
            "attributions",
            model.key,
            explainer.identity,
            seed,
            split,
            fingerprint_examples(examples),
            self.libraries,
        )
        cached = self.cache.get_json("attributions", key)
        fit_report = self.cache.get_json("fit-reports", key) or {}
        if cached is not None:
            return [Attribution.from_dict(item) for item in cached], key, fit_report
        try:
            attributions, fit_report = self._explain(
                explainer, seed, dataset, examples, model, progress, task
            )
        except StageFailed:
            raise
        except Exception as error:
            log.error("%s", traceback.format_exc())
            raise StageFailed(describe_error(error)) from error
        self.cache.put_json("attributions", key, [a.to_dict() for a in attributions])
        if fit_report:
            self.cache.put_json("fit-reports", key, fit_report)
        return attributions, key, fit_report

    def _fit_context(
        self,
        entry: PluginEntry,
        seed: int,
        dataset: TextDataset,
        model: ModelHandle,
        progress: Progress,
        task,
    ) -> FitContext:
        def teacher_attributions(examples: Sequence[Example], split: str) -> list[Attribution]:
            attributions, _, _ = self._cached_attributions(
                entry.teacher, seed, split, dataset, examples, model, progress, task
            )
            return attributions

        base = next((t.description for t in progress.tasks if t.id == task), "")

        def report_progress(description: str, done: int, total: int) -> None:
            progress.update(task, description=f"{base} · {description}", completed=done, total=total)

        return FitContext(
            cache=self.cache,
            key=cache_key(
                "explainer-fit", model.key, entry.identity, seed, dataset.fingerprint, self.libraries
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
        progress: Progress,
        task,
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
        description = next((t.description for t in progress.tasks if t.id == task), "")
        seed_everything(seed)
        explainer.fit(classifier, dataset, self._fit_context(entry, seed, dataset, model, progress, task))
        fit_report = explainer.fit_report()
        seed_everything(seed)
        progress.update(task, description=description, total=len(examples), completed=0)
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
            scores, labels = (
                (output.scores, output.labels) if isinstance(output, LabelledScores) else (output, None)
            )
            for what, tensor in (("scores", scores), ("labels", labels)):
                if tensor is not None and tuple(tensor.shape) != tuple(encoding.input_ids.shape):
                    raise PluginError(
                        f"explainer '{entry.name}' returned {what} of shape {tuple(tensor.shape)}, "
                        f"expected {tuple(encoding.input_ids.shape)} (batch × tokens)"
                    )
            if granularity == "word":
                scores = aggregate_words(scores, encoding, params.word_reduction)
            real = ~encoding.special_mask.to(scores.device)
            if not torch.isfinite(scores[real]).all():
                raise PluginError(f"explainer '{entry.name}' returned non-finite scores")
            attributions += attributions_from_batch(
                encoding.example_ids,
                encoding,
                scores,
                targets,
                log_probabilities,
                seconds,
                labels=labels,
            )
            progress.advance(task, len(batch))
        return attributions, fit_report

    def _metric(
        self, run_id: str, cell: Cell, explained: Explained, progress: Progress, task, result: RunResult
    ) -> None:
        metric = cell.metric
        started = time.perf_counter()
        try:
            reference = (
                None if cell.reference is None else self._explanation(run_id, cell.reference, progress, task)
            )
        except StageFailed as error:
            self._fail(run_id, cell, f"reference variant '{cell.reference.variant}': {error}", result)
            return
        key = cache_key(
            "metric", explained.key, metric.identity, None if reference is None else reference.key
        )
        cached = self.cache.get_json("metric-values", key)
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
                    "values": [float(value) for value in output.values],
                    "curves": None if output.curves is None else list(output.curves),
                }
                for what in ("values", "curves"):
                    if cached[what] is not None and len(cached[what]) != len(explained.attributions):
                        raise PluginError(
                            f"metric '{metric.name}' returned {len(cached[what])} {what} for "
                            f"{len(explained.attributions)} examples"
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
        text += f", {failed} failed (see the report and results/logs/{result.run_id}.log)"
    return text + "."
