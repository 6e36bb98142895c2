"""The four plugin kinds. Subclass one, give it a ``name``, a ``Params`` model and a docstring, and
return the class from the matching hook in ``harness.hookspecs``.

Lifecycle (one module owns each arrow)::

    suite.py     YAML  -> Suite (validated, typed)
    grid.py      Suite -> cells (dataset, model, variant, explainer+params, metric+params, seed)
    plan.py      cells -> tasks; runner.py drives them through an executor (executors.py)
    stages.py    task -> Dataset.load -> Model.build -> Explainer.fit/explain -> Metric.compute
    store/       per-example metric values -> records (SQLite; writer and queries)
    report/      records -> tables (mean, bootstrap CI, n, best per column) -> renderers
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationInfo, field_validator

from harness.attribution import LABEL_VALUES, Attribution
from harness.cache import Cache
from harness.classifier import Classifier, Encoding
from harness.data import Example, TextDataset

ScoreOrder = Literal["signed", "absolute"]  # how an explanation's units are ranked: by score or |score|

T = TypeVar("T")


class Params(BaseModel):
    """Base of every plugin's parameters: unknown keys are errors, values are immutable, and a value is
    never read as another kind than it is written (``_coercion``): pydantic would take YAML's ``true``
    as the number 1, and the text ``"20"`` (or ``1e-3``, which PyYAML reads as text) as a number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _written_as_meant(cls, value: Any, info: ValidationInfo) -> Any:
        problem = _coercion(value, cls.model_fields[info.field_name].annotation)
        if problem is not None:
            raise ValueError(problem)
        return value


_SEQUENCES = (list, tuple, set, frozenset, Sequence, typing.Sequence)


def _arms(annotation: Any) -> list[Any]:
    """The alternatives of an annotation, each stripped of ``Annotated``: ``int | None`` -> int, None."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [arm for part in typing.get_args(annotation) for arm in _arms(part)]
    return [annotation]


def _coercion(value: Any, annotation: Any) -> str | None:
    """What is wrong when ``value`` fits ``annotation`` only by being read as another kind (pydantic's
    lax mode turns ``True`` into 1, ``"20"`` into 20 and ``1`` into ``True``), or None. A value that fits
    one alternative as written is fine; one that fits none is left to pydantic's own message."""
    problems = []
    for arm in _arms(annotation):
        fit, problem = _fit(value, arm)
        if fit:
            return None
        if problem is not None:
            problems.append(problem)
    return problems[0] if problems else None


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fit(value: Any, arm: Any) -> tuple[bool, str | None]:
    """(whether ``value`` fits ``arm`` as written, else what reading it as ``arm`` would change)."""
    origin = typing.get_origin(arm)
    if arm is bool:
        if isinstance(value, bool):
            return True, None
        if isinstance(value, str | numbers.Number):
            return False, f"{value!r} is not a boolean: write true or false, without quotes"
        return False, None
    if arm in (int, float):
        if isinstance(value, bool):
            return False, f"YAML reads {str(value).lower()} as a boolean, not a number: write the number"
        if isinstance(value, numbers.Real):
            return True, None
        if isinstance(value, str) and _reads_as_number(value):
            if re.fullmatch(r"\s*[-+]?[0-9]+[eE][-+]?[0-9]+\s*", value):
                return False, (
                    f"{value!r} is text, not a number: PyYAML reads an exponent without a dot as text; "
                    f"write {float(value)!r} or {value.strip().replace('e', '.0e').replace('E', '.0E')}"
                )
            return False, f"{value!r} is text, not a number: write the number without quotes"
        return False, None
    if origin is Literal:
        return any(type(choice) is type(value) and choice == value for choice in typing.get_args(arm)), None
    if origin in _SEQUENCES or arm in _SEQUENCES:
        if not isinstance(value, list | tuple):
            return False, None
        items = typing.get_args(arm)  # (T,) for list[T], (T, ...) for tuple[T, ...], one per place otherwise
        if len(items) == 2 and items[1] is Ellipsis:
            items = items[:1]
        for index, item in enumerate(value):
            if len(items) != 1 and index >= len(items):
                break
            problem = _coercion(item, items[0] if len(items) == 1 else items[index])
            if problem is not None:
                return False, f"item {index}: {problem}"
        return True, None
    if origin is dict and isinstance(value, dict) and len(typing.get_args(arm)) == 2:
        for key, item in value.items():
            problem = _coercion(item, typing.get_args(arm)[1])
            if problem is not None:
                return False, f"key {key!r}: {problem}"
        return True, None
    if arm is type(None):
        return value is None, None
    if arm is str:
        return isinstance(value, str), None
    return True, None  # Any, paths, enums, models, tensors: pydantic validates them as it always has


class Plugin:
    """Common metadata. ``version`` changes whenever the plugin's results would change; it is part of
    every cache key. ``paper`` names the source of the definition.

    ``requires`` and ``provides`` are capabilities, by name. A cell applies when everything its
    plugins require (a student's teacher's included) is provided by its dataset or its model; the
    grid leaves out the others, and ``bench validate`` counts and names them, instead of failing them
    at run time. The built-in names:

    - ``"pairs"``: a dataset whose examples are text pairs (``Example.text_pair``); an explainer or
      metric that needs them.
    - ``"attentions"``: a model whose classifier returns attention weights (``Classifier.attentions``);
      an explainer that reads them (``attention``).
    - ``"class-vectors"``: a model trained with LDAV, whose classifier returns one learned vector per
      class (``Classifier.class_vectors``); the explainer that reads them (``ldav``).

    Any other string is a capability a third party defines the same way. When the answer depends on the
    parameters (the ``hf`` dataset holds pairs when ``text_pair_field`` is set), override the
    classmethods ``provides_for(params)`` / ``requires_for(params)``; they return the class
    attributes by default.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    version: ClassVar[str] = "1"
    paper: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    provides: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Params | None = None):
        self.params = params if params is not None else self.Params()

    @classmethod
    def description(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def requires_for(cls, params: Params) -> frozenset[str]:
        """The capabilities this plugin needs with these parameters: ``requires`` by default."""
        return frozenset(cls.requires)

    @classmethod
    def provides_for(cls, params: Params) -> frozenset[str]:
        """The capabilities this plugin offers with these parameters: ``provides`` by default."""
        return frozenset(cls.provides)

    @classmethod
    def runs_remote_code(cls, params: Params) -> bool:
        """Whether these parameters make the plugin run code it downloads (e.g. ``trust_remote_code``
        of a hub model). A suite that does so runs only with ``bench run --allow-remote-code``."""
        return bool(getattr(params, "trust_remote_code", False))


class Dataset(Plugin, ABC):
    """A dataset plugin: ``load`` returns the dataset with its splits.

    ``bench run`` and ``bench validate`` load every dataset of a suite and check it before anything is
    computed (``harness.datachecks``): class names, a test split, ids unique across splits, labels in
    range, texts, pairs, rationale spans, text storable as UTF-8, then the plugin's own ``check``. The
    first problem refuses the suite in one line (exit code 2), naming where through ``locate``. A
    problem ``load`` finds itself is a ``BenchError`` naming the file and line.
    """

    kind: ClassVar[str] = "dataset"

    @abstractmethod
    def load(self) -> TextDataset: ...

    def check(self, dataset: TextDataset) -> list[str]:
        """Problems with the data ``load`` returned beyond those the harness checks in every dataset,
        one line each naming where (``locate``), the field and what to do; none by default."""
        return []

    def locate(self, dataset: TextDataset, split: str | None = None, example: Example | None = None) -> str:
        """Where the data (or one of its splits, or one example of a split) comes from, as messages name
        it: a file and line when the plugin knows them. By default the dataset's name, the split and
        the example's id."""
        place = f"dataset '{dataset.name}'"
        if split is not None:
            place += f" {split} split"
        if example is not None:
            place += f" example {example.id!r}"
        return place


VARIANT_PATTERN = r"^(default|untrained|init:[1-9][0-9]*|reinit-above-embeddings)$"


def canonical_variant(variant: str) -> str:
    """The one name of a model variant: ``init:1`` is the default model (the first initialisation and
    training seed), so it is ``default`` everywhere a variant is grouped, cached or compared."""
    return "default" if variant == "init:1" else variant


def variant_seed_streams(variant: str) -> tuple[str, str] | None:
    """The names of the seed streams (initialisation, training order) a trainable model draws a variant
    from, or None for a name that is not a variant. ``default`` (= ``init:1``) keeps the original names
    ``init`` and ``order``, so that the default model's weights never depend on which variants exist;
    ``init:N`` draws from ``init:N`` and ``order:N``; ``untrained`` from ``init:untrained``;
    ``reinit-above-embeddings`` is the trained default model (its re-initialisation draws from a stream
    of its own)."""
    variant = canonical_variant(variant)
    if variant in ("default", "reinit-above-embeddings"):
        return ("init", "order")
    if variant == "untrained":
        return ("init:untrained", "order:untrained")
    match = re.fullmatch(r"init:([1-9][0-9]*)", variant)
    return None if match is None else (f"init:{match.group(1)}", f"order:{match.group(1)}")


class Model(Plugin, ABC):
    """A model plugin. ``build`` returns a ready classifier, training it when ``trainable`` is true;
    the harness then caches it through ``save``/``load``, keyed by everything that determines it.

    ``variants`` lists what ``build(..., variant=)`` accepts, for randomization tests (Zafar et al.
    2021): ``default``; ``init:N`` (any N ≥ 1), the same model trained from its N-th initialisation
    and training seed, ``init:1`` being ``default``; ``untrained``, the same architecture with its
    trainable layers freshly initialised and not trained; ``reinit-above-embeddings``, the default
    model after training with every layer above its input embeddings freshly initialised (the
    embeddings, and any LDAV class vectors, kept): the deepest step of the cascading
    model-randomization test of Adebayo et al. 2018, for explanations read off the embeddings.
    """

    kind: ClassVar[str] = "model"
    trainable: ClassVar[bool] = True
    variants: ClassVar[tuple[str, ...]] = ("default",)
    # Whether a run checks the model when it first builds it (``harness.testing.load_findings``: encodings
    # aligned, logits from embeddings equal to logits from ids, predictions independent of the batch, every
    # available masking), cached by the model's key; a failed check fails the model's cells with the
    # check's name. For plugins that load models they did not make (``hf``), whose behaviour the plugin
    # cannot vouch for; a model the plugin trains itself is checked by the conformance kit instead.
    check_on_load: ClassVar[bool] = False

    @classmethod
    def builds_variant(cls, variant: str) -> bool:
        variant = canonical_variant(variant)
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

    def maskings(self) -> frozenset[str] | None:
        """Which token maskings (``mask``, ``unk``, ``pad``) the classifier will support, when the plugin
        can tell without building it (``hf`` reads its tokenizer): a suite configuring another is refused
        before anything runs. ``None`` (the default): not known before the build; a masking the model
        lacks then fails its cells with the reason."""
        return None

    def weights_identity(self) -> dict | None:
        """What identifies the weights the model starts from beyond its parameters (e.g. a content hash
        of a local checkpoint folder, or the commit a Hub revision resolves to), as JSON-able values.
        Part of every cache key derived from the model, so that cached models, attributions and metric
        values are not reused once those weights change. ``None`` (the default): the parameters and the
        plugin's version say it all (e.g. a model trained from scratch). May raise ``PluginError`` when
        the weights cannot be identified."""
        return None


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


class TeacherSpec(Params):
    """Another registered explainer, named with its parameters, that a learned explainer distils (L2E).
    An explainer whose ``Params`` has a ``teacher: TeacherSpec`` field is a *student*: the suite
    validates the teacher like any explainer, ``FitContext.teacher_attributions`` computes (and caches)
    the teacher's attributions, and metrics with ``compares = "teacher"`` compare the two."""

    name: str = Field(description="the teacher explainer's registered name")
    params: dict[str, Any] = Field(default_factory=dict, description="the teacher's parameters")


@dataclass
class FitContext:
    """What the runner lends ``Explainer.fit``: a content-addressed cache entry for what the explainer
    learns, and (for students) the teacher's attributions on any examples, computed once and cached
    exactly like the attributions of an evaluated cell (so a suite that evaluates the teacher on the
    same examples, or a second suite distilling the same teacher, reuses them).

    ``key`` determines the fit: the model's cache key, the explainer's name, version and parameters
    (the teacher's included), the seed and the numeric libraries' versions.
    """

    cache: Cache
    key: str
    seed: int
    batch_size: int
    teacher_attributions: Callable[[Sequence[Example], str], list[Attribution]] | None = None
    progress: Callable[[str, int, int], None] = lambda description, done, total: None

    def cached_directory(self, write: Callable[[Path], None]) -> Path:
        """The folder holding what this fit learned: read from the cache, else filled by ``write`` and
        stored atomically."""
        directory = self.cache.get_directory("explainer-fits", self.key)
        if directory is None:
            directory = self.cache.put_directory("explainer-fits", self.key, write)
        return directory

    def cached(self, write: Callable[[Path], None], read: Callable[[Path], T]) -> T:
        """What this fit learned, read by ``read`` from its cached folder; the folder is filled by
        ``write`` when absent, and again (replacing it) when ``read`` cannot read it: an unreadable or
        outdated entry is logged and recomputed, never a failed cell."""
        directory = self.cached_directory(write)
        try:
            return read(directory)
        except Exception as error:  # noqa: BLE001 - whatever the reader trips on, the entry is redone
            logging.getLogger("bench.cache").warning(
                "cached explainer fit %s is unreadable (%s: %s); recomputing",
                self.key,
                type(error).__name__,
                error,
            )
        return read(self.cache.put_directory("explainer-fits", self.key, write, replace=True))


@dataclass
class Explanation:
    """What an explainer returns when it gives more than one score per token (a plain (B, L) tensor is
    the same as ``Explanation(scores)``). Every tensor is aligned with the batch's tokens (B, L); values
    at padding positions are dropped when stored, at special-token positions ignored.

    - ``scores`` (B, L) floats: the attribution, what metrics rank by.
    - ``labels`` (B, L) integers: a discrete label per token, one of ``LABEL_VALUES`` (-2..2, 0 neutral:
      L2E's sequence labelling, Situ et al. 2021), read by label-wise metrics (``iou-stability``), which
      compare them with the labels of explainers that only score (``Attribution.discretised_labels``).
    - ``groups`` (B, L) integers: each token's group id within its example, -1 for none; ids are per
      example, and a group may hold tokens of both texts of a pair (GMASK's word groups, Chen et al. 2021,
      each word assigned to its most probable group).
    - ``group_scores`` (B, G) floats, only with ``groups``: the importance of group ids 0..G-1 (GMASK's
      ψ), finite; a row with fewer groups than G ends in NaN padding, dropped when stored.
    - ``extras`` {name: (B, L) floats}: further named scores per token (per-class scores, a second
      method's scores, soft group memberships...). Like ``scores`` they must be finite on real tokens,
      and an explainer with ``granularity: word`` has them aggregated per word the same way.
    - ``seconds`` (B,) floats: each example's cost as the explainer states it, replacing the runner's
      timing of the call (what ``runtime`` reports); NaN where unknown. For explainers whose work was done
      elsewhere (``precomputed``): reading their file is not their cost.

    All of it is stored with the attribution (``Attribution.labels``, ``groups``, ``group_scores``,
    ``extras``, under ``Attribution.schema``) and exported by ``bench export --attributions``.
    """

    scores: torch.Tensor
    labels: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    group_scores: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] | None = None
    seconds: torch.Tensor | None = None

    def problem(self, shape: tuple[int, ...]) -> str | None:
        """What is wrong with this explanation of a batch of ``shape`` (batch × tokens), or None."""
        shape = tuple(shape)
        extras = self.extras or {}
        if not isinstance(extras, dict) or not all(
            isinstance(name, str) and isinstance(values, torch.Tensor) for name, values in extras.items()
        ):
            return "extras that are not a dict of named tensors"
        per_token = {"scores": self.scores, "labels": self.labels, "groups": self.groups}
        per_token |= {f"extras[{name!r}]": values for name, values in extras.items()}
        given = {**per_token, "group_scores": self.group_scores, "seconds": self.seconds}
        for what, tensor in given.items():
            if tensor is not None and not isinstance(tensor, torch.Tensor):
                return f"{what} of type {type(tensor).__name__}, expected a torch.Tensor"
            if tensor is not None and tensor.is_complex():
                return f"{what} of dtype {tensor.dtype}, expected real numbers"
        for what, tensor in per_token.items():
            if tensor is not None and tuple(tensor.shape) != shape:
                return f"{what} of shape {tuple(tensor.shape)}, expected {shape} (batch × tokens)"
        if self.seconds is not None and tuple(self.seconds.shape) != shape[:1]:
            return f"seconds of shape {tuple(self.seconds.shape)}, expected ({shape[0]},) (one per example)"
        if self.groups is not None:
            if self.groups.is_floating_point() or self.groups.is_complex():
                return f"groups of dtype {self.groups.dtype}, expected integers"
            if self.groups.numel() and int(self.groups.min()) < -1:
                return f"group id {int(self.groups.min())}, expected ≥ 0 (or -1: no group)"
        if self.labels is not None:
            problem = _labels_problem(self.labels)
            if problem is not None:
                return problem
        if self.group_scores is not None:
            if self.groups is None:
                return "group_scores without groups"
            count = int(self.groups.max()) + 1 if self.groups.numel() else 0
            if self.group_scores.dim() != 2 or self.group_scores.shape[0] != shape[0]:
                return (
                    f"group_scores of shape {tuple(self.group_scores.shape)}, "
                    f"expected ({shape[0]}, G) (batch × groups)"
                )
            if self.group_scores.shape[1] < count:
                return (
                    f"group_scores of shape {tuple(self.group_scores.shape)} for group ids up to "
                    f"{count - 1}, expected ({shape[0]}, ≥ {count}) (batch × groups)"
                )
            return _group_scores_problem(self.group_scores)
        return None


def _labels_problem(labels: torch.Tensor) -> str | None:
    """What is wrong with an explanation's labels (B, L), or None: integers, each one of
    ``LABEL_VALUES``. Checked at every position, padding included, as group ids are."""
    if labels.is_floating_point() or labels.dtype == torch.bool:
        return f"labels of dtype {labels.dtype}, expected integers in {LABEL_VALUES[0]}..{LABEL_VALUES[-1]}"
    unknown = labels[~torch.isin(labels, torch.tensor(LABEL_VALUES, device=labels.device))]
    if unknown.numel():
        return f"label {int(unknown[0])}, expected one of {LABEL_VALUES} (0: neutral)"
    return None


def _group_scores_problem(group_scores: torch.Tensor) -> str | None:
    """What is wrong with an explanation's group scores (B, G), or None: finite, NaN only as a row's
    trailing padding (a NaN before a number would be stored as that group's score)."""
    if not group_scores.is_floating_point() or not group_scores.numel():
        return None
    values = group_scores.detach()
    if torch.isinf(values).any():
        return f"non-finite group_scores ({float(values[torch.isinf(values)][0])!r}), expected finite numbers"
    nan = torch.isnan(values)
    number_after = torch.flip(torch.cummax(torch.flip((~nan).int(), [1]), dim=1).values, [1]).bool()
    if (nan & number_after).any():
        return "group_scores with NaN before a number, expected NaN only as a row's trailing padding"
    return None


class LabelledScores(Explanation):
    """``Explanation(scores, labels=labels)``: scores (B, L) floats and a discrete label per token
    (B, L) integers, 0 meaning neutral (e.g. L2E's sequence labelling); kept for explainers written
    before ``Explanation``."""

    def __init__(self, scores: torch.Tensor, labels: torch.Tensor):
        super().__init__(scores, labels=labels)


class Explainer(Plugin, ABC):
    """An explainer plugin: a batch of encoded texts in, one score per token out (B, L), or an
    ``Explanation`` for explainers that also label or group tokens or give further scores.

    Scores at special-token and padding positions are ignored. Randomness must come from
    ``self.seed`` so that results do not depend on batch order.

    ``baseline``: what the explainer stands for when it is a baseline rather than a method: ``"chance"``
    (``random``: scores that carry nothing of the model). Leaderboards test every other explainer against
    the chance baseline, on metrics where chance applies (``Metric.chance_applies``); None (the default):
    a method.
    """

    kind: ClassVar[str] = "explainer"
    Params: ClassVar[type[Params]] = ExplainerParams
    baseline: ClassVar[Literal["chance"] | None] = None

    @classmethod
    def score_order_for(cls, params: Params) -> ScoreOrder | None:
        """How these scores are meant to be read: "signed" (evidence for and against), "absolute" (only
        magnitudes are learned or meaningful, e.g. L2E's ranking formulation), or None: not declared.
        The report pairs a student with its teacher only on metrics in this order."""
        return None

    def __init__(self, params: Params | None = None, seed: int = 0):
        super().__init__(params)
        self.seed = seed

    def fit(  # noqa: B027 - optional hook
        self, classifier: Classifier, dataset: TextDataset, context: FitContext | None = None
    ) -> None:
        """Explainers that learn (e.g. a distilled explainer network) train here; others do nothing.
        The runner always passes ``context``; what is learned belongs in ``context.cached``."""

    def fit_report(self) -> dict:
        """Facts about fitting (documents, seconds, epochs...), stored with the run and reported as
        training cost, apart from the per-document runtime."""
        return {}

    @classmethod
    def inputs_identity(cls, params: Params) -> dict | None:
        """What identifies the data the explainer reads beyond its parameters (e.g. the content hash of a
        file of precomputed attributions), as JSON-able values. Part of the cache keys of its attributions
        and fits, so that they are not reused once that data changes. ``None`` (the default): the
        parameters and the plugin's version say it all. May raise ``PluginError`` when the data cannot be
        read."""
        return None

    @classmethod
    def teacher_of(cls, params: Params) -> TeacherSpec | None:
        """The explainer this one distils, read from its ``teacher`` parameter (None for most)."""
        teacher = getattr(params, "teacher", None)
        return teacher if isinstance(teacher, TeacherSpec) else None

    @abstractmethod
    def explain(
        self, classifier: Classifier, encoding: Encoding, targets: torch.Tensor
    ) -> torch.Tensor | Explanation: ...


@dataclass
class MetricInput:
    """What a metric sees for one (dataset, model, variant, explainer, seed) cell.

    ``reference`` is set only for metrics that compare two cells (``Metric.compares``): the same
    examples and seed explained by the same explainer on the reference variant of the model, or on the
    same model on the reference device, or by the cell's teacher or the reference explainer on the same
    model, as its own ``MetricInput``.
    """

    attributions: Sequence[Attribution]
    examples: dict[str, Example]
    dataset: TextDataset
    load_classifier: Callable[[], Classifier] = field(repr=False)
    batch_size: int = 32
    reference: MetricInput | None = None
    # Only for a metric declaring extra examples (``Metric.extra_examples``): the same explainer's
    # attributions of the extra examples, and for each example of the cell the ids of those its need
    # asked for (e.g. its nearest neighbours in the whole split; the examples are in ``examples``). The
    # metric's values are still one per ``attributions``.
    extra_attributions: Sequence[Attribution] = ()
    related: dict[str, list[str]] | None = None

    @cached_property
    def classifier(self) -> Classifier:
        """Loaded on first use, so metrics that need no model (runtime) cost nothing."""
        return self.load_classifier()

    def reference_pairs(self, same_tokens: bool = True) -> list[tuple[Attribution, Attribution]]:
        """For a metric comparing two cells: each attribution with the reference's attribution of the same
        example, in order. Raises ``PluginError`` when there is no reference, when an example has no
        reference attribution, or (``same_tokens``) when the two read the example as other tokens."""
        from harness.errors import PluginError

        if self.reference is None:
            raise PluginError("the metric compares two cells but the harness gave it no reference cell")
        references = {attribution.example_id: attribution for attribution in self.reference.attributions}
        pairs = []
        for attribution in self.attributions:
            other = references.get(attribution.example_id)
            if other is None:
                raise PluginError(
                    f"example {attribution.example_id!r} has no attribution in the reference cell"
                )
            if same_tokens and other.input_ids != attribution.input_ids:
                raise PluginError(
                    f"the two cells read example {attribution.example_id!r} as different tokens"
                )
            pairs.append((attribution, other))
        return pairs


@dataclass
class MetricOutput:
    """What a metric returns for one cell.

    - ``values``: one value per attribution, in order; NaN where the metric is undefined for that example.
    - ``curves``: for curve metrics, the curve behind each value (for example
      ``{"x": [fractions removed], "y": [probabilities]}``), stored alongside the records: a dict of
      named lists of numbers, each finite, or NaN at a point where the metric is undefined.
    - ``units``: the independent measurement each value belongs to, when values are not independent per
      example (``runtime`` is measured once per explained batch: every example of a batch gets the batch's
      unit, e.g. ``"batch 3"``). Statistics resample and pair units, not examples. ``None``: each example
      is its own unit (its seeds are still one unit).
    - ``reference_values``: for a metric comparing two cells (``compares``), the reference's value per
      example under the same protocol when it depends on the pair (e.g. the teacher's Δlog-odds with the
      number of words matched to the student's); the report compares the two.
    - ``notes``: statements about the whole cell a reader needs, above all why values are undefined (e.g.
      "normaliser is negative: ..."); stored with the cell and shown by the report.
    """

    values: Sequence[float]
    curves: Sequence[dict[str, list[float]]] | None = None
    units: Sequence[str] | None = None
    reference_values: Sequence[float] | None = None
    notes: Sequence[str] = ()


class Metric(Plugin, ABC):
    """A metric plugin: one value per attribution (NaN where undefined).

    ``family``, ``direction`` and ``range`` are read by reports and leaderboards; nothing downstream
    knows metric names.

    A metric that compares two cells sets ``compares``:

    - ``"variant"``, with a ``reference`` parameter naming a model variant (e.g. ``init:1``): the runner
      also explains the same examples with the same explainer and seed on that variant (cached like any
      explanation) and passes them as ``MetricInput.reference``. Cells whose variant is the reference
      itself are not in the grid.
    - ``"teacher"``: the reference is the same examples explained by the cell's teacher (students
      only, see ``TeacherSpec``); cells of explainers without a teacher are not in the grid.
    - ``"device"``, with a ``reference`` parameter naming a device (``cpu`` or ``cuda``): the reference
      is the same examples explained by the same explainer on the suite's model entry that differs only
      in naming that device (``models: [{name: m, device: cpu}, {name: m, device: cuda}]``). Only cells
      whose model names another device are in the grid; the suite must list each one's twin.
    - ``"explainer"``, with a ``reference`` parameter naming another explainer entry of the suite (its
      label, or its name for every entry of that plugin) or ``each``: the reference is the same examples
      explained by that explainer on the same model, variant and seed. The suite expands the metric into
      one entry per reference explainer (whose identity is part of the metric's); ``each`` gives one per
      explainer of the suite, so one cell per ordered pair. Cells comparing an explainer with itself are
      not in the grid.

    Optional declarations, each read by the harness (never a metric's name):

    - ``explainer_reference``: the name of a parameter that, when set, names an explainer entry of the
      suite (by label, or a plugin listed once) whose attributions of the same examples the metric reads
      as ``MetricInput.reference`` (e.g. ``iou-stability``'s ``match``); checked when the suite loads.
    - ``extra_examples(params)`` / ``find_extra_examples(need, anchors, pool)``: examples of the split
      beyond the cell's sample that the metric needs explained too (e.g. each document's nearest
      neighbours in the whole split); they reach this metric only, as ``MetricInput.extra_attributions``
      and ``related``.
    - ``score_order_for(params)`` (also on explainers): "signed" or "absolute", the order in which the
      metric takes an explanation's units, or in which an explainer's scores are meant to be read; the
      report pairs a student with its teacher only on metrics in the student's order.
    - ``ranks_units``: the metric's values follow from the order an explanation ranks its units in (every
      removal metric, ``harness.RemovalMetric``, sets it). An explanation scoring every token alike
      (alike in |score| for a metric whose ``score_order_for`` is "absolute") ranks none above another, so on it such a metric would score the text's order (ties keep it), not
      the explainer's: the harness makes that example's value NaN, with a note counting such examples
      (``harness.boundary``), whether the metric computed it or its value was cached.
    - ``chance_applies``: whether scoring no better than chance on this metric says something about an
      explainer (True, the default). Leaderboards test every explainer against the run's chance baseline
      (``Explainer.baseline``) only on metrics where it does: not on cost (``runtime``), where the random
      explainer, doing nothing, costs nothing.

    What the harness checks of every metric: one value per attribution, each a number, NaN (undefined)
    or finite and inside ``range`` (to ``harness.boundary.RANGE_TOLERANCE`` for float rounding), and
    each curve a dict of named lists of numbers, finite or NaN (``curves_problem``); a violation fails the
    cell, naming the metric, and nothing of it is cached or stored. A metric is
    handed copies of the attributions: what it changes in them, no other metric and not the store sees.
    """

    kind: ClassVar[str] = "metric"
    family: ClassVar[str]
    direction: ClassVar[Literal["higher", "lower"]]
    range: ClassVar[tuple[float, float]]
    compares: ClassVar[Literal["variant", "teacher", "device", "explainer"] | None] = None
    explainer_reference: ClassVar[str | None] = None
    ranks_units: ClassVar[bool] = False
    chance_applies: ClassVar[bool] = True

    @classmethod
    def direction_for(cls, params: Params) -> Literal["higher", "lower"]:
        """Which way is better with these parameters: ``direction``, unless a parameter turns it around
        (for example a metric that can select the evidence against the prediction). Recorded per cell."""
        return cls.direction

    @classmethod
    def score_order_for(cls, params: Params) -> ScoreOrder | None:
        """The order the metric takes an explanation's units in with these parameters: "signed" (by
        score), "absolute" (by |score|), or None (it does not rank units: runtime)."""
        return None

    @classmethod
    def extra_examples(cls, params: Params) -> dict | None:
        """What the metric needs explained beyond the cell's sample with these parameters (a JSON-able
        description, part of cache keys), or None: nothing."""
        return None

    @classmethod
    def find_extra_examples(
        cls, need: dict, anchors: Sequence[Example], pool: Sequence[Example]
    ) -> dict[str, list[str]]:
        """For each anchor (an example of the cell's sample), the ids of the examples of ``pool`` (the
        whole split) that ``need`` asks for. Required when ``extra_examples`` returns a need."""
        raise NotImplementedError(f"metric '{cls.name}' declares extra examples but cannot find them")

    @abstractmethod
    def compute(self, data: MetricInput) -> Sequence[float] | MetricOutput: ...


def _is_range(bounds: object) -> bool:
    """Whether ``bounds`` is a metric's ``range`` the harness can check values against and store: a pair
    of real numbers (not bools, not NaN; ±inf for an open end), low ≤ high."""
    return (
        isinstance(bounds, tuple)
        and len(bounds) == 2
        and all(isinstance(b, numbers.Real) and not isinstance(b, bool) and not math.isnan(b) for b in bounds)
        and bounds[0] <= bounds[1]
    )


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
        if not _is_range(getattr(cls, "range", None)):
            return (
                f"metric '{name}' must declare range as (low, high): two real numbers, low ≤ high, "
                f"not NaN (±inf for an open end); it declares {getattr(cls, 'range', None)!r}"
            )
        named = getattr(cls, "explainer_reference", None)
        if named is not None and named not in getattr(getattr(cls, "Params", None), "model_fields", {}):
            return f"metric '{name}' declares explainer_reference '{named}', which its Params do not have"
        compares = getattr(cls, "compares", None)
        if compares not in (None, "variant", "teacher", "device", "explainer"):
            return f"metric '{name}': compares must be None, 'variant', 'teacher', 'device' or 'explainer'"
        params = getattr(cls, "Params", None)
        if compares in ("variant", "device", "explainer") and "reference" not in getattr(
            params, "model_fields", {}
        ):
            return f"metric '{name}' compares {compares}s but its Params have no 'reference' field"
        if not isinstance(getattr(cls, "chance_applies", True), bool):
            return f"metric '{name}': chance_applies must be True or False"
    if issubclass(cls, Explainer) and getattr(cls, "baseline", None) not in (None, "chance"):
        return f"explainer '{name}': baseline must be None (a method) or 'chance'"
    for declared in ("requires", "provides"):
        names = getattr(cls, declared, frozenset())
        if not (isinstance(names, set | frozenset) and all(isinstance(n, str) and n for n in names)):
            return f"'{name}'.{declared} must be a set of capability names, e.g. {{\"pairs\"}}"
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
        return f"'{name}'.Params is not a pydantic model"
    return None


PLUGIN_KINDS: dict[str, type[Plugin]] = {
    "dataset": Dataset,
    "model": Model,
    "explainer": Explainer,
    "metric": Metric,
}
