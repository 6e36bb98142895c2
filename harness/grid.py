"""Suite → grid: expand a validated suite into cells.

A cell is (dataset, model, model variant, explainer with params, metric with params, seed). Cells that
share everything but the metric share one attribution computation (an "explanation" of the grid).

A cell applies when everything its plugins require (``Plugin.requires_for``) is provided by its dataset
or its model (``Plugin.provides_for``); ``expand`` leaves out the others and ``left_out`` says why.
A cell in the grid whose model runs on a device this machine lacks is not left out but skipped, with
its reason (``unavailable``): the runner records it, so a report says what was not measured here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from harness.entries import PluginEntry, device_twins, model_label, short_hash
from harness.errors import BenchError
from harness.plugin import canonical_variant
from harness.suite import LoadedSuite


@dataclass(frozen=True)
class Cell:
    dataset: PluginEntry
    model: PluginEntry
    variant: str
    explainer: PluginEntry
    metric: PluginEntry
    seed: int
    devices: tuple[PluginEntry, ...] = field(
        default=(), compare=False, repr=False
    )  # the suite's model entries that differ from ``model`` only in their device, itself included
    explainers: tuple[PluginEntry, ...] = field(
        default=(), compare=False, repr=False
    )  # the suite's explainer entries: whom a metric's ``explainer_reference`` parameter may name

    @property
    def explanation(self) -> tuple:
        """The cells that share attributions: everything but the metric."""
        return (self.dataset, self.model, self.variant, self.explainer, self.seed)

    @property
    def identity(self) -> dict:
        """Everything that determines the cell's values (the examples and ``--limit`` aside, which the
        store records next to it): comparable across runs."""
        return {
            "dataset": self.dataset.identity,
            "model": self.model.identity,
            "variant": self.variant,
            "explainer": self.explainer.identity,
            "metric": self.metric.identity,
            "seed": self.seed,
        }

    @property
    def id(self) -> str:
        return short_hash(self.identity)

    @property
    def reference(self) -> Cell | None:
        """For a metric comparing two cells: the cell whose attributions it compares with. Comparing
        variants: same dataset, model, explainer and seed on the reference variant. Comparing with the
        teacher: same dataset, model, variant and seed, explained by the teacher. Comparing devices:
        same everything on the suite's model entry naming the reference device (None without one).
        Comparing explainers: same everything, explained by the metric entry's reference explainer.
        A metric that compares nothing but declares ``explainer_reference`` (the name of a parameter
        naming an explainer entry by label, e.g. ``iou-stability``'s ``match``) and sets it: same
        everything, explained by that explainer (the cell itself for that explainer's own cell)."""
        named = matched_explainer(self)
        if named is not None:
            return replace(self, explainer=named)
        if self.metric.cls.compares == "variant":
            return replace(self, variant=canonical_variant(self.metric.params.reference))
        if self.metric.cls.compares == "teacher" and self.explainer.teacher is not None:
            return replace(self, explainer=self.explainer.teacher)
        if self.metric.cls.compares == "device":
            twin = next((m for m in self.devices if m.device == self.metric.params.reference), None)
            return None if twin is None else replace(self, model=twin)
        if self.metric.cls.compares == "explainer" and self.metric.reference_explainer is not None:
            return replace(self, explainer=self.metric.reference_explainer)
        return None

    @property
    def compares_something(self) -> bool:
        """False for comparisons that mean nothing: a variant with itself, a teacher-less explainer
        with its teacher, a model on the reference device with itself, a model naming no device (it
        runs wherever the suite or ``--device`` says) or one without a twin on the reference device, an
        explainer with itself."""
        if self.metric.cls.compares == "teacher":
            return self.explainer.teacher is not None
        if self.metric.cls.compares == "explainer":
            reference = self.reference
            return reference is not None and reference != self
        if self.metric.cls.compares == "device":
            reference = self.reference
            return self.model.device is not None and reference is not None and reference != self
        if self.metric.cls.compares is None:
            return True  # a metric reading an explainer it names (explainer_reference) reads itself too
        return self.reference != self

    @property
    def unmet(self) -> str | None:
        """Why the cell cannot apply, or None: the first of its plugins (dataset, model, explainer with
        its teacher, metric) requiring a capability that neither its dataset nor its model provides."""
        required = [(entry, requirements(entry)) for entry in self.entries]
        if not any(needs for _, needs in required):
            return None  # nothing to ask the dataset and model (a jsonl dataset reads its files to answer)
        provided = provisions(self.dataset) | provisions(self.model)
        for entry, needs in required:
            missing = sorted(needs - provided)
            if missing:
                names = ", ".join(f"'{name}'" for name in missing)
                return (
                    f"{entry.kind} '{entry.label}' requires {names}, which neither dataset "
                    f"'{self.dataset.label}' nor model '{self.model.label}' provides"
                )
        return None

    @property
    def in_grid(self) -> bool:
        """Whether the cell is run: it compares something and everything it requires is provided."""
        return self.compares_something and self.unmet is None

    @property
    def entries(self) -> tuple[PluginEntry, ...]:
        return (self.dataset, self.model, self.explainer, self.metric)

    def describe(self) -> str:
        return (
            f"{self.dataset.label} × {model_label(self.model.label, self.variant)} × {self.explainer.label} × "
            f"{self.metric.label} × seed {self.seed}"
        )


def matched_explainer(cell: Cell) -> PluginEntry | None:
    """The explainer entry a metric comparing nothing reads beside the cell's own through its declared
    ``explainer_reference`` parameter, or None (no such parameter, or not set). The parameter holds an
    explainer entry's label, or the name of a plugin the suite lists once. Raises ``BenchError`` when it
    names no explainer of the suite, or a plugin listed several times."""
    metric = cell.metric
    parameter = getattr(metric.cls, "explainer_reference", None)
    if metric.cls.compares is not None or not parameter:
        return None
    label = getattr(metric.params, parameter, None)
    if label is None:
        return None
    named = next((entry for entry in cell.explainers if entry.label == label), None)
    by_name = [entry for entry in cell.explainers if entry.name == label]
    if named is None and len(by_name) == 1:
        named = by_name[0]
    if named is None:
        labels = ", ".join(entry.label for entry in cell.explainers)
        raise BenchError(
            f"metric '{metric.label}': {parameter} '{label}' is not the label of an explainer of the "
            f"suite, nor the name of a plugin it lists once (its explainers: {labels})"
        )
    return named


def requirements(entry: PluginEntry) -> frozenset[str]:
    """What an entry needs with its parameters; a student needs what its teacher needs too, and a
    metric comparing explainers what its reference explainer needs."""
    needs = entry.cls.requires_for(entry.params)
    for other in (entry.teacher, entry.reference_explainer):
        if other is not None:
            needs = needs | requirements(other)
    return needs


def provisions(entry: PluginEntry) -> frozenset[str]:
    """What an entry offers with its parameters."""
    return entry.cls.provides_for(entry.params)


def expand(loaded: LoadedSuite) -> list[Cell]:
    """The cells of a suite, ordered so that work sharing a dataset, a model and an explainer is
    adjacent (each is loaded, trained or computed once). A metric comparing variants gets no cell on
    its own reference variant (the comparison with itself is trivially perfect), nor a metric comparing
    devices on the reference device, nor a metric comparing with the teacher on an explainer that has
    none, nor a metric comparing explainers on its own reference explainer; nor does a cell whose
    requirements its dataset and model do not provide (see ``left_out``).
    Cells on a device this machine lacks are in the grid: see ``unavailable``."""
    return [cell for cell in _candidates(loaded) if cell.in_grid]


def cells_to_run(loaded: LoadedSuite) -> list[Cell]:
    """``expand``, refused with the reason when it leaves no cell: a run of nothing would end at once
    with exit code 0 and an empty report, which reads as success."""
    cells = expand(loaded)
    if cells:
        return cells
    unmet = left_out(loaded)
    if unmet:
        reasons = sorted({reason for _, reason in unmet})
        why = f"every cell is left out by its requirements ({reasons[0]}" + (
            f"; and {len(reasons) - 1} more reason(s)" if len(reasons) > 1 else ""
        )
        why += "): add a dataset, model or explainer that provides what they require"
    else:
        why = (
            "every cell would compare something with itself (a variant, device or explainer with its own "
            "reference): add what the metrics compare with"
        )
    raise BenchError(f"{loaded.path}: the suite has no cells to run: {why}")


def left_out(loaded: LoadedSuite) -> list[tuple[Cell, str]]:
    """The cells ``expand`` leaves out because a requirement is not provided, each with the reason
    (``Cell.unmet``), in grid order. Comparisons that mean nothing are not among them."""
    cells = (cell for cell in _candidates(loaded) if cell.compares_something)
    return [(cell, reason) for cell in cells if (reason := cell.unmet) is not None]


def unavailable(cell: Cell, cuda_available: bool) -> str | None:
    """Why the cell cannot run on this machine, or None: its model, or the model on the reference
    device a metric comparing devices also explains on, names CUDA where there is none. The runner
    records such a cell as skipped with this reason, not as failed: the suite is right, the machine
    lacks the device. A model naming no device, or ``auto``, runs anywhere."""
    reference = cell.reference if cell.metric.cls.compares == "device" else None
    for model in (cell.model, None if reference is None else reference.model):
        if model is not None and model.device == "cuda" and not cuda_available:
            return (
                f"device 'cuda' of model '{model.label}' is not available on this machine "
                "(torch.cuda.is_available() is False); run this suite where CUDA is"
            )
    return None


def _candidates(loaded: LoadedSuite) -> Iterator[Cell]:
    entries = loaded.entries
    twins = device_twins(entries["models"])
    explainers = tuple(entries["explainers"])
    for dataset in entries["datasets"]:
        for model in entries["models"]:
            for seed in loaded.suite.seeds:
                for variant in model.variants:
                    for explainer in entries["explainers"]:
                        for metric in entries["metrics"]:
                            yield Cell(
                                dataset, model, variant, explainer, metric, seed, twins[model], explainers
                            )
