"""Suites: YAML files validated into typed objects.

Every error is one line ``FILE:LINE: yaml.path: what is wrong`` (with "did you mean" for unknown keys
and plugin names) raised as ``BenchError``; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.entries import PluginEntry, device_twins
from harness.errors import BenchError
from harness.inert import without_format_characters
from harness.plugin import VARIANT_PATTERN, canonical_variant
from harness.registry import Registry, suggest

SEED_LIMIT = 2**32  # numpy's generators take seeds below 2**32
# The suite's numbers are strict: YAML reads true and false as booleans, and Python counts those as the
# integers 1 and 0, so pydantic would otherwise read ``seeds: [true]`` as seed 1 (``_Locator.error`` says
# what a boolean there is). A strict integer takes no float either: ``16.0`` is not read as 16.
NUMBER_TYPES = ("int_type", "float_type")
KINDS = {"datasets": "dataset", "models": "model", "explainers": "explainer", "metrics": "metric"}


class Spec(BaseModel):
    """One plugin in a suite: its registered name and its parameters. A mapping under ``params.grid``
    holds lists; their cartesian product expands the spec into several grid entries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(
        None,
        description="the name shown in reports (default: name and params); {param} inserts a parameter "
        "set here, so that each entry of a grid gets its own label",
    )


class DatasetSpec(Spec):
    split: Literal["test", "validation", "train"] = Field(
        "test", description="split whose examples are explained"
    )
    sample: int | None = Field(
        None,
        ge=1,
        strict=True,
        description="explain only the first N examples of the split (the split order is fixed)",
    )


def variant_name(value: Any) -> Any:
    """A variant as written → its canonical name: ``{init: 2}`` (the mapping form) → ``"init:2"``,
    ``init:1`` → ``default`` (the same model); anything else passes through to validation."""
    if isinstance(value, dict) and list(value) == ["init"] and isinstance(value["init"], int):
        value = f"init:{value['init']}"
    return canonical_variant(value) if isinstance(value, str) else value


class ModelSpec(Spec):
    variants: list[Annotated[str, Field(pattern=VARIANT_PATTERN)]] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description=(
            "model variants (Zafar et al. 2021): default; init:N, the same model trained from the N-th "
            "initialisation and training seed (init:1 is default); untrained, its trainable layers freshly "
            "initialised and not trained; reinit-above-embeddings, the trained default model with every "
            "layer above its input embeddings freshly initialised"
        ),
    )
    train_on: Spec | None = Field(
        None, description="train on this dataset instead of the evaluated one (the class names must match)"
    )
    device: Literal["cpu", "cuda", "auto"] | None = Field(
        None,
        description="where this model runs, and its explainers with it (default: the suite's device); "
        "the same model listed on cpu and on cuda is two entries, e.g. for device-speed-up",
    )

    @model_serializer(mode="wrap")
    def _without_default_device(self, handler: SerializerFunctionWrapHandler) -> dict:
        """No ``device`` key unless one is set, so that the hash of a suite naming no model device is
        what it was before models could name one (a run started then still resumes)."""
        data = handler(self)
        if data.get("device") is None:
            data.pop("device", None)
        return data

    @field_validator("variants", mode="before")
    @classmethod
    def _variant_mappings(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        names = [variant_name(item) for item in value]
        duplicates = sorted({name for name in names if isinstance(name, str) and names.count(name) > 1})
        if duplicates:
            if duplicates[0] == "default" and any(variant_name(item) == "default" != item for item in value):
                raise ValueError(
                    "'default' and 'init:1' are the same model (init:1 is the default); list it once"
                )
            raise ValueError(f"variant {duplicates[0]!r} is listed twice")
        return names


Axis = Literal["variant", "explainer", "model"]


class _TwoSides(BaseModel):
    """What expectations and claims share: ``above`` and ``below`` naming values of one axis (absent on a
    claim about one side), ``where`` fixing others, variants written either way made canonical."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("above", "below", "where", mode="before", check_fields=False)
    @classmethod
    def _variant_mapping(cls, value: Any) -> Any:
        if isinstance(value, dict) and "variant" in value:
            return {**value, "variant": variant_name(value["variant"])}
        return value

    @property
    def axis(self) -> Axis | None:
        """The compared axis (None: a claim about one side)."""
        return None if self.above is None else next(iter(self.above))

    @property
    def above_value(self) -> str | None:
        return None if self.above is None else self.above[self.axis]

    @property
    def below_value(self) -> str | None:
        return None if self.below is None else self.below[self.axis]


class Expectation(_TwoSides):
    """An order the suite expects, tested by the report: on ``metric``, the cells at ``above`` score
    higher than those at ``below``, everything else equal (one-sided paired Wilcoxon over examples).

    Both sides name the same axis: ``{variant: init:2}`` vs ``{variant: untrained}`` (Zafar et al.'s
    randomization tests), ``{explainer: random}`` vs ``{explainer: "*"}`` ("*": every other value), or
    ``{model: bilstm-ldav-no-l2}`` vs ``{model: bilstm-ldav}`` (an ablation against the full model).
    An explainer is named by its name or its label, a model by its label.
    """

    metric: str = Field(description="metric name (every parameter set of it gets its own verdicts)")
    above: dict[Axis, str] = Field(min_length=1, max_length=1)
    below: dict[Axis, str] = Field(min_length=1, max_length=1)
    where: dict[Axis, str] = Field(
        default_factory=dict,
        description="compare only the cells with these values on the other axes, e.g. {explainer: ldav} "
        "for an ablation of the model that explanation is read from",
    )

    @model_serializer(mode="wrap")
    def _without_empty_where(self, handler: SerializerFunctionWrapHandler) -> dict:
        """No ``where`` key unless it fixes something, so that a suite's hash is what it was before
        expectations could fix other axes (a run started then still resumes)."""
        data = handler(self)
        if not data.get("where"):
            data.pop("where", None)
        return data

    @model_validator(mode="after")
    def _one_axis(self) -> Expectation:
        if set(self.above) != set(self.below):
            raise ValueError("above and below must name the same axis (variant, explainer or model)")
        if self.axis == "variant" and self.above_value == self.below_value:
            raise ValueError("above and below name the same variant")
        if self.above_value == "*" and self.below_value == "*":
            raise ValueError("at most one side can be '*'")
        if self.axis in self.where:
            raise ValueError(f"where cannot fix the compared axis ({self.axis})")
        return self

    def describe(self) -> str:
        where = "".join(f", {axis} {value}" for axis, value in self.where.items())
        return f"{self.metric}{where}: {self.axis} {self.above_value} above {self.below_value}"


TEST_ACCURACY = "test-accuracy"  # a claim's metric that reads the trained models' test accuracy, per seed
ClaimAxis = Literal["dataset", "variant", "explainer", "model"]
Criterion = Literal["direction", "significant", "within", "beyond", "near"]
CRITERIA = {
    "direction": "mean(above) > mean(below)",
    "significant": "mean(above) > mean(below), one-sided paired Wilcoxon, Holm-corrected over the run's "
    "claims, p < 0.05",
    "within": "|mean(above) - mean(below)| <= margin",
    "beyond": "mean(above) - mean(below) > margin",
    "near": "|mean - paper value| <= margin",
}


class Claim(_TwoSides):
    """A finding of the paper a suite reproduces, as data: where it comes from (``paper``, ``source``),
    what it says, the cells of ours it corresponds to and what counts as reproduced. The report's
    reproduction table shows the paper's value beside ours with a verdict (``harness.reproduction``).

    Either two sides of one axis (``above`` / ``below``, as an expectation; raw values, so a better
    explainer on a lower-is-better metric is *below*) judged by ``direction``, ``significant``,
    ``within`` or ``beyond``; or one side (no ``above`` / ``below``) judged ``near`` the paper's value;
    or ``untestable``: the claim is listed with the reason this suite cannot test it.
    """

    paper: str = Field(min_length=1, description="the paper, as a short citation (Zafar et al. 2021)")
    source: str = Field(min_length=1, description="the table and cell (or section) the claim comes from")
    claim: str = Field(min_length=1, description="what the paper finds, in a sentence")
    metric: str | None = Field(
        None,
        description=f"the metric the claim is about (its name in the suite), or {TEST_ACCURACY}: the trained "
        "models' accuracy on their whole test split, one value per seed",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="the metric parameters the claim is about (a subset of them)"
    )
    where: dict[ClaimAxis, str] = Field(
        default_factory=dict, description="the dataset, model, variant or explainer the claim is about"
    )
    above: dict[Axis, str] | None = Field(None, min_length=1, max_length=1)
    below: dict[Axis, str] | None = Field(None, min_length=1, max_length=1)
    paper_value: float | dict[Literal["above", "below"], float] | str | None = Field(
        None, description="the paper's number(s), on this metric's scale where they can be put on it"
    )
    reproduced_if: Criterion | None = Field(
        None, description="; ".join(f"{k}: {v}" for k, v in CRITERIA.items())
    )
    margin: float | None = Field(
        None, ge=0, strict=True, description="for within, beyond and near, on the metric's scale"
    )
    untestable: str | None = Field(None, min_length=1, description="why this suite cannot test the claim")

    @model_validator(mode="after")
    def _consistent(self) -> Claim:
        if self.untestable is not None:
            if self.metric is not None or self.reproduced_if is not None:
                raise ValueError("an untestable claim names no metric and no reproduced_if")
            return self
        if self.metric is None or self.reproduced_if is None:
            raise ValueError("a claim names its metric and reproduced_if (or says why it is untestable)")
        sided = self.above is not None or self.below is not None
        if sided and (self.above is None or self.below is None or set(self.above) != set(self.below)):
            raise ValueError(
                "above and below come together and name the same axis (variant, explainer or model)"
            )
        if sided and (self.axis in self.where):
            raise ValueError(f"where cannot fix the compared axis ({self.axis})")
        if sided and self.above_value == self.below_value:
            raise ValueError("above and below name the same value")
        if self.reproduced_if == "near":
            if sided:
                raise ValueError("near compares one side with the paper's value: give no above/below")
            if not isinstance(self.paper_value, int | float):
                raise ValueError("near needs paper_value, a number")
        elif not sided:
            raise ValueError(f"{self.reproduced_if} compares two sides: give above and below")
        if self.reproduced_if in ("within", "beyond", "near") and self.margin is None:
            raise ValueError(f"{self.reproduced_if} needs a margin")
        return self

    @property
    def criterion(self) -> str:
        """What counts as reproduced, in words."""
        if self.untestable is not None:
            return ""
        text = CRITERIA[self.reproduced_if]
        return text.replace("margin", f"{self.margin:g}") if self.margin is not None else text


class Suite(BaseModel):
    """A benchmark suite: the grid datasets × models × explainers × metrics × seeds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str
    description: str = ""
    seeds: list[Annotated[int, Field(ge=0, lt=SEED_LIMIT, strict=True)]] = Field(
        default_factory=lambda: [0], min_length=1, description="seeds, each in [0, 2**32) as numpy takes them"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(
        16, ge=1, strict=True, description="examples per explainer call and per metric forward batch"
    )
    datasets: list[DatasetSpec] = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    explainers: list[Spec] = Field(min_length=1)
    metrics: list[Spec] = Field(min_length=1)
    expectations: list[Expectation] = Field(
        default_factory=list, description="orders the report tests and states verdicts for"
    )
    claims: list[Claim] = Field(
        default_factory=list,
        description="the findings of the paper the suite reproduces; the report judges each in its "
        "reproduction table",
    )
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named alternatives (e.g. full: the paper's sizes for a GPU): each maps top-level keys "
        "to the values that replace the suite's when run with --profile NAME",
    )
    profile: str | None = Field(None, description="the profile applied (set by --profile, not written)")

    @field_validator("profiles")
    @classmethod
    def _profile_keys(cls, profiles: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        allowed = set(cls.model_fields) - {"name", "profiles", "profile"}
        for name, overrides in profiles.items():
            if not isinstance(overrides, dict):
                raise ValueError(f"profile '{name}' must map suite keys to values")
            for key in overrides:
                if key not in allowed:
                    raise ValueError(f"profile '{name}' cannot set '{key}'{suggest(key, sorted(allowed))}")
        return profiles

    @model_validator(mode="before")
    @classmethod
    def _seed_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            if "seeds" in data:
                raise ValueError("give either 'seed' or 'seeds', not both")
            data = {**data, "seeds": [data["seed"]]}
            del data["seed"]
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        """An integer version reads as text (``version: 2`` is "2"); a number with a point is refused,
        because YAML has already turned ``1.10`` into 1.1 and ``2.0`` into 2.0, and so is a boolean."""
        if isinstance(value, bool):
            raise ValueError(
                f"YAML reads {str(value).lower()} as a boolean, not a version: give an integer, or quote it"
            )
        if isinstance(value, float):
            raise ValueError(
                f"YAML reads this version as the number {value!r}, which may not be what is written (1.10 "
                'reads as 1.1): quote it as written, e.g. version: "1.10", or give an integer'
            )
        return str(value) if isinstance(value, int) else value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        """A seed listed twice would give every cell twice under one identity: stored once, counted
        twice."""
        repeated = next((seed for index, seed in enumerate(seeds) if seed in seeds[:index]), None)
        if repeated is not None:
            raise ValueError(f"seed {repeated} is listed twice; list each seed once")
        return seeds

    def canonical_hash(self) -> str:
        """sha256 of the validated suite (comments and formatting do not count)."""
        data = self.model_dump(mode="json")
        if not data["claims"]:  # a suite without claims hashes as before claims existed (its runs resume)
            del data["claims"]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LoadedSuite:
    """A resolved suite: the validated suite, its source text and where it came from, and its entries
    (registry classes, validated parameters, labels, identities) for the grid to expand."""

    suite: Suite
    text: str
    path: str
    entries: dict[str, list[PluginEntry]]  # section -> its entries, grid entries expanded
    remote_code: list[str] = field(
        default_factory=list
    )  # "FILE:LINE: where (label)" of entries running downloaded code

    def check_remote_code(self, allowed: bool) -> None:
        """Someone else's suite must not run downloaded code just by being run: that takes
        ``--allow-remote-code`` on the command line as well."""
        if self.remote_code and not allowed:
            raise BenchError(
                f"{self.remote_code[0]}: this entry runs code downloaded with the model (trust_remote_code); "
                "read it first, then pass --allow-remote-code to bench run"
            )

    @property
    def hash(self) -> str:
        return self.suite.canonical_hash()


def with_profile(data: dict, profile: str | None) -> dict:
    """The suite's mapping with a profile's keys replacing its own; raises ``KeyError`` for an unknown
    profile."""
    if profile is None:
        return data
    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not isinstance(profiles.get(profile), dict):
        raise KeyError(profile)
    return {**data, **profiles[profile], "profile": profile}


def load_suite(path: str | Path, registry: Registry, profile: str | None = None) -> LoadedSuite:
    """Read, parse and validate a suite file (with ``profile`` applied), and validate every plugin name
    and parameter."""
    path = Path(path)
    text = _suite_text(path)
    locator = _Locator(path, text)
    data = locator.data
    if not isinstance(data, dict):
        raise BenchError(f"{path}:1: a suite is a YAML mapping with name, version, datasets, models, ...")
    if "profile" in data:
        raise locator.fail(
            ("profile",), "choose a profile with --profile NAME; it is not written in the suite"
        )
    try:
        data = with_profile(data, profile)
    except KeyError:
        known = sorted(data.get("profiles") or {}) if isinstance(data.get("profiles"), dict) else []
        raise BenchError(
            f"{path}: --profile: the suite has no profile '{profile}'"
            + (f" (it has: {', '.join(known)})" if known else " (it defines none)")
        ) from None
    if profile is not None:
        locator.overrides = {key: ("profiles", profile) for key in data["profiles"][profile]}
    try:
        suite = Suite.model_validate(data)
    except ValidationError as error:
        raise locator.error(error.errors()[0], Suite) from None

    entries: dict[str, list[PluginEntry]] = {}
    remote_code: list[str] = []
    for section, kind in KINDS.items():
        entries[section] = []
        places: list[tuple] = []  # where each entry of the section is written
        for index, spec in enumerate(getattr(suite, section)):
            where = (section, index)
            if spec.name not in registry.names(kind):
                raise locator.fail(
                    (*where, "name"),
                    registry.missing(kind, spec.name),
                )
            info = registry.get(kind, spec.name)
            for user_params in _expand_grid(spec.params, locator, (*where, "params")):
                try:
                    params = info.cls.Params.model_validate(user_params)
                except ValidationError as error:
                    raise locator.error(
                        error.errors()[0], info.cls.Params, prefix=(*where, "params")
                    ) from None
                train_on = _train_on(spec, registry, locator, where) if isinstance(spec, ModelSpec) else None
                teacher = (
                    _teacher(info.cls, params, registry, locator, where) if kind == "explainer" else None
                )
                variants = tuple(spec.variants) if isinstance(spec, ModelSpec) else ("default",)
                compared = (
                    _reference_explainers(info.cls, params, entries["explainers"], locator, where)
                    if getattr(info.cls, "compares", None) == "explainer"
                    else [None]
                )
                for reference in compared:  # a metric comparing explainers: one entry per reference
                    own = (
                        params
                        if reference is None
                        else params.model_copy(update={"reference": reference.label})
                    )
                    try:
                        entry = PluginEntry.create(
                            info,
                            spec,
                            own,
                            user_params,
                            train_on=train_on,
                            teacher=teacher,
                            variants=variants,
                            reference_explainer=reference,
                        )
                    except (KeyError, IndexError, ValueError) as error:
                        raise locator.fail(
                            (*where, "label"),
                            f"the label names {error} but only parameters set here can be used",
                        ) from None
                    _check_distinct(entry, entries[section], places, where, locator)
                    entries[section].append(entry)
                    places.append(where)
                    for plugin in (entry, entry.teacher, entry.train_on):
                        if plugin is not None and plugin.cls.runs_remote_code(plugin.params):
                            remote_code.append(
                                f"{path}:{locator.line(where)}: {_dotted(where)} ({entry.label})"
                            )
            if isinstance(spec, ModelSpec):
                _check_variants(spec, info.cls, locator, where)
    _check_references(suite, entries, locator)
    _check_named_explainers(suite, entries, locator)
    _check_maskings(suite, entries, locator)
    _check_expectations(suite, entries, locator)
    _check_claims(suite, entries, locator)
    return LoadedSuite(suite=suite, text=text, path=str(path), entries=entries, remote_code=remote_code)


def _check_distinct(entry, earlier: list, places: list[tuple], where: tuple, locator: _Locator) -> None:
    """Within a section, an entry is listed once and its label names only it: reports show labels, and
    two entries with one label, or with labels differing only in characters no renderer shows
    (``without_format_characters``), would read as one."""
    for other, place in zip(earlier, places, strict=True):
        here = f"{_dotted(place)} (line {locator.line(place)})"
        if other == entry:
            same = "expands to the same entry twice" if place == where else f"is the same entry as {here}"
            raise locator.fail(where, f"{same} (same name and parameters); list it once")
        if other.label == entry.label:
            if place == where:
                raise locator.fail(
                    (*where, "label"),
                    f"the entries of params.grid share the label '{entry.label}'; insert the parameters "
                    'that differ, e.g. label: "name({param})"',
                )
            raise locator.fail(
                (*where, "label") if entry.spec.label else where,
                f"label '{entry.label}' is also the label of {here}; labels are unique within a section: "
                "set label: on one of them",
            )
        if without_format_characters(other.label) == without_format_characters(entry.label):
            raise locator.fail(
                (*where, "label") if entry.spec.label else where,
                f"label {entry.label!r} reads as the label {other.label!r} of {here}: they differ only in "
                "invisible format characters (zero-width, bidirectional); labels are unique within a "
                "section as a reader sees them",
            )


def _check_expectations(suite: Suite, entries: dict[str, list[Any]], locator: _Locator) -> None:
    """Expectations name metrics, variants, explainers and models the suite has."""
    metrics = {entry.name for entry in entries["metrics"]}
    known = {
        "variant": {variant for spec in suite.models for variant in spec.variants},
        "explainer": {entry.name for entry in entries["explainers"]}
        | {e.label for e in entries["explainers"]},
        "model": {entry.label for entry in entries["models"]},
    }
    for index, expectation in enumerate(suite.expectations):
        where = ("expectations", index)
        if expectation.metric not in metrics:
            raise locator.fail(
                (*where, "metric"),
                f"the suite has no metric '{expectation.metric}'{suggest(expectation.metric, sorted(metrics))}",
            )
        named = [
            (side, expectation.axis, getattr(expectation, f"{side}_value")) for side in ("above", "below")
        ]
        named += [("where", axis, value) for axis, value in expectation.where.items()]
        for side, axis, value in named:
            if value != "*" and value not in known[axis]:
                raise locator.fail(
                    (*where, side, axis),
                    f"the suite has no {axis} '{value}'{suggest(value, sorted(known[axis]))}",
                )


def _check_named_explainers(suite: Suite, entries: dict[str, list[Any]], locator: _Locator) -> None:
    """A metric parameter declared to name an explainer (``Metric.explainer_reference``, e.g.
    iou-stability's ``match``) names an explainer entry by its label, or a plugin the suite lists once."""
    explainers = entries["explainers"]
    for metric in entries["metrics"]:
        parameter = getattr(metric.cls, "explainer_reference", None)
        value = getattr(metric.params, parameter, None) if parameter else None
        if value is None:
            continue
        if any(e.label == value for e in explainers) or sum(e.name == value for e in explainers) == 1:
            continue
        index = next(i for i, spec in enumerate(suite.metrics) if spec is metric.spec)
        where = ("metrics", index, "params")
        grid = suite.metrics[index].params.get("grid", {})
        where = (*where, "grid", parameter) if parameter in grid else (*where, parameter)
        labels = [e.label for e in explainers]
        raise locator.fail(
            where,
            f"{parameter} '{value}' is not the label of an explainer of the suite, nor the name of a plugin "
            f"it lists once (its explainers: {', '.join(labels)})",
        )


def _check_maskings(suite: Suite, entries: dict[str, list[Any]], locator: _Locator) -> None:
    """An explainer, teacher or metric that removes tokens by a token of the tokenizer (``masking:
    mask``, ``unk`` or ``pad``) has it with every model of the suite that can tell before it is built
    (``Model.maskings``): a byte-level BPE tokenizer has no mask token, and its cells would all fail."""
    from harness.perturb import TOKEN_MASKINGS

    available = [(model, model.cls(model.params).maskings()) for model in entries["models"]]
    available = [(model, maskings) for model, maskings in available if maskings is not None]
    if not available:
        return
    for section, specs in (("explainers", suite.explainers), ("metrics", suite.metrics)):
        for entry in entries[section]:
            for plugin, inside in ((entry, ()), (entry.teacher, ("teacher", "params"))):
                masking = getattr(plugin.params, "masking", None) if plugin is not None else None
                if masking not in TOKEN_MASKINGS:
                    continue
                for model, maskings in available:
                    if masking in maskings:
                        continue
                    index = next(i for i, spec in enumerate(specs) if spec is entry.spec)
                    given = dict(specs[index].params or {})
                    for key in inside:
                        given = dict(given.get(key) or {})
                    where = (section, index, "params", *inside)
                    where = (
                        (*where, "masking")
                        if "masking" in {**given, **dict(given.get("grid") or {})}
                        else where
                    )
                    raise locator.fail(
                        where,
                        f"masking '{masking}' of {entry.label} is not available with model '{model.label}': its "
                        f"tokenizer has no {masking} token; set masking: auto (its mask token, else unk, else "
                        f"deleting the token) or one of {', '.join(sorted(maskings))}, delete",
                    )


def _check_claims(suite: Suite, entries: dict[str, list[Any]], locator: _Locator) -> None:
    """Claims name metrics (with parameters a metric entry has), datasets, models, variants and
    explainers the suite has."""
    metrics = {entry.name for entry in entries["metrics"]}
    known = {
        "dataset": {entry.label for entry in entries["datasets"]},
        "variant": {variant for spec in suite.models for variant in spec.variants},
        "explainer": {entry.name for entry in entries["explainers"]}
        | {e.label for e in entries["explainers"]},
        "model": {entry.label for entry in entries["models"]},
    }
    for index, claim in enumerate(suite.claims):
        where = ("claims", index)
        if claim.untestable is not None:
            continue
        if claim.metric == TEST_ACCURACY:
            if claim.params or claim.axis == "explainer" or "explainer" in claim.where:
                raise locator.fail(
                    where, f"{TEST_ACCURACY} is a model's: it takes no params and no explainer"
                )
        elif claim.metric not in metrics:
            raise locator.fail(
                (*where, "metric"),
                f"the suite has no metric '{claim.metric}'{suggest(claim.metric, sorted(metrics))}",
            )
        if claim.params and not any(
            entry.name == claim.metric and claim_params_match(claim.params, entry.params_dict)
            for entry in entries["metrics"]
        ):
            raise locator.fail(
                (*where, "params"),
                f"no entry of metric '{claim.metric}' has the parameters {json.dumps(claim.params)}",
            )
        named = [("where", axis, value) for axis, value in claim.where.items()]
        if claim.axis is not None:
            named += [("above", claim.axis, claim.above_value), ("below", claim.axis, claim.below_value)]
        for side, axis, value in named:
            if value != "*" and value not in known[axis]:
                raise locator.fail(
                    (*where, side, axis),
                    f"the suite has no {axis} '{value}'{suggest(value, sorted(known[axis]))}",
                )


def claim_params_match(wanted: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether a metric's parameters hold every parameter a claim names, with its value (numbers
    compared as numbers: 25 matches 25.0)."""
    return all(key in params and _same_value(value, params[key]) for key, value in wanted.items())


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_variants(spec: ModelSpec, cls: type, locator: _Locator, where: tuple) -> None:
    for index, variant in enumerate(spec.variants):
        if not cls.builds_variant(variant):
            raise locator.fail(
                (*where, "variants", index),
                f"model '{spec.name}' has no variant '{variant}' (it builds: {', '.join(cls.variants)})",
            )


def _check_references(suite: Suite, entries: dict[str, list[Any]], locator: _Locator) -> None:
    """A metric comparing variants names a reference variant every model of the suite can build; a
    metric comparing devices finds, for every model entry naming another device, the same entry naming
    the reference device."""
    for metric in entries["metrics"]:
        if getattr(metric.cls, "compares", None) == "device":
            _check_device_twins(suite, metric, entries["models"], locator)
        if getattr(metric.cls, "compares", None) != "variant":
            continue
        index = next(i for i, spec in enumerate(suite.metrics) if spec.name == metric.name)
        reference = canonical_variant(metric.params.reference)
        for model in entries["models"]:
            if not model.cls.builds_variant(reference):
                raise locator.fail(
                    ("metrics", index, "params", "reference"),
                    f"metric '{metric.name}' compares with variant '{reference}', which model "
                    f"'{model.name}' cannot build (it builds: {', '.join(model.cls.variants)})",
                )


def _reference_explainers(
    cls: type, params: Any, explainers: list[PluginEntry], locator: _Locator, where: tuple
) -> list[PluginEntry]:
    """The explainer entries a metric comparing explainers compares with: the one whose label its
    ``reference`` is, else every entry of the plugin it names, or every explainer of the suite for
    ``each``. A cell never compares an explainer with itself (``grid.Cell.compares_something``)."""
    reference = params.reference
    here = (*where, "params", "reference")
    if reference == "each":
        if len(explainers) < 2:
            raise locator.fail(
                here, f"metric '{cls.name}' compares explainers, but the suite lists only one: add another"
            )
        return list(explainers)
    chosen = [e for e in explainers if e.label == reference] or [e for e in explainers if e.name == reference]
    if not chosen:
        labels = [e.label for e in explainers]
        close = suggest(reference, labels)
        raise locator.fail(
            here,
            f"metric '{cls.name}' compares with explainer '{reference}', which the suite does not list"
            f"{close if 'did you mean' in close else ''} (its explainers: {', '.join(labels)}; or each)",
        )
    return chosen


def _check_device_twins(suite: Suite, metric: Any, models: list[Any], locator: _Locator) -> None:
    reference = metric.params.reference
    for model, twins in device_twins(models).items():
        if model.device in (None, reference) or any(twin.device == reference for twin in twins):
            continue
        index = next(i for i, spec in enumerate(suite.models) if spec is model.spec)
        raise locator.fail(
            ("models", index, "device"),
            f"metric '{metric.name}' compares model '{model.label}' with the same model on "
            f"{reference}, which the suite does not list: add this entry again with device: {reference}",
        )


def _teacher(cls: type, params: Any, registry: Registry, locator: _Locator, where: tuple):
    """The validated explainer entry a student distils (its ``teacher`` parameter), or None."""
    teacher = cls.teacher_of(params)
    if teacher is None:
        return None
    where = (*where, "params", "teacher")
    names = registry.names("explainer")
    if teacher.name not in names:
        raise locator.fail((*where, "name"), registry.missing("explainer", teacher.name))
    info = registry.get("explainer", teacher.name)
    if "grid" in teacher.params:
        raise locator.fail((*where, "params", "grid"), "a teacher takes one set of parameters, not a grid")
    try:
        teacher_params = info.cls.Params.model_validate(teacher.params)
    except ValidationError as error:
        raise locator.error(error.errors()[0], info.cls.Params, prefix=(*where, "params")) from None
    spec = Spec(name=teacher.name, params=teacher.params)
    nested = _teacher(info.cls, teacher_params, registry, locator, where)
    return PluginEntry.create(info, spec, teacher_params, teacher.params, teacher=nested)


def _train_on(spec: ModelSpec, registry: Registry, locator: _Locator, where: tuple):
    """The validated dataset entry a model is trained on, when the suite names one."""
    if spec.train_on is None:
        return None
    where = (*where, "train_on")
    names = registry.names("dataset")
    if spec.train_on.name not in names:
        raise locator.fail((*where, "name"), registry.missing("dataset", spec.train_on.name))
    info = registry.get("dataset", spec.train_on.name)
    if "grid" in spec.train_on.params:
        raise locator.fail(
            (*where, "params", "grid"), "a training dataset takes one set of parameters, not a grid"
        )
    try:
        params = info.cls.Params.model_validate(spec.train_on.params)
    except ValidationError as error:
        raise locator.error(error.errors()[0], info.cls.Params, prefix=(*where, "params")) from None
    return PluginEntry.create(info, spec.train_on, params, spec.train_on.params)


def _expand_grid(params: dict, locator: _Locator, where: tuple) -> list[dict]:
    grid = params.get("grid")
    if grid is None:
        return [params]
    if not isinstance(grid, dict) or not grid:
        raise locator.fail((*where, "grid"), "grid must map parameter names to lists of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise locator.fail((*where, "grid", key), "each grid entry must be a non-empty list of values")
        if key in params:
            raise locator.fail((*where, "grid", key), f"'{key}' is given both in params and in params.grid")
    fixed = {key: value for key, value in params.items() if key != "grid"}
    keys = list(grid)
    return [{**fixed, **dict(zip(keys, combo, strict=True))} for combo in itertools.product(*grid.values())]


# A suite is a short file written by hand (the largest here is 38 KB, 9 levels deep, 5,000 values).
# These bounds are far above any suite and far below what hurts: they are checked before the document
# is built, so that a hostile or mistaken file is one line of error in a second, not minutes of memory.
MAX_SUITE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000  # scalars and collections, each alias counted as the whole value it repeats
BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


def _suite_text(path: Path) -> str:
    """The suite file as text: at most ``MAX_SUITE_BYTES``, UTF-8 (a UTF-16 file, as some editors save,
    is named as such rather than failing somewhere inside the decoder)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SUITE_BYTES + 1)
    except OSError as error:
        raise BenchError(f"{path}: cannot read the suite file ({error.strerror or error})") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise BenchError(
            f"{path}: the suite file is larger than {MAX_SUITE_BYTES // (1 << 20)} MiB; a suite is a short "
            "YAML file: check that this is the file you meant"
        )
    encoding = next((name for bom, name in BOMS.items() if raw.startswith(bom)), None)
    if encoding is None and b"\x00" in raw[:64]:
        encoding = "UTF-16 or UTF-32"
    if encoding is not None:
        raise BenchError(f"{path}: the suite file is {encoding} text: save it as UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise BenchError(
            f"{path}:{line}: the suite file is not UTF-8 text (byte {error.start}): save it as UTF-8"
        ) from None


def _check_bounds(path: Path, text: str) -> None:
    """Refuse a document nested deeper than ``MAX_DEPTH`` or holding more than ``MAX_VALUES`` values,
    its aliases expanded (an alias repeats its anchor's values, at its own depth), reading its events one
    at a time (the parser does not recurse, and stops at the first excess): an alias bomb costs nothing
    here, though building it would take minutes and gigabytes wherever the suite's values are copied,
    compared or hashed, and a deep document would exhaust the recursion of the YAML composer."""
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth) of the node it names, expanded
    open_nodes: list[tuple[str | None, list[int]]] = []  # collections being read: anchor, [values, depth]
    document = [0, 0]

    def add(values: int, depth: int, event: yaml.Event) -> None:
        """A value of ``values`` values nesting ``depth`` collections, read inside the open ones."""
        line = event.start_mark.line + 1
        if len(open_nodes) + depth > MAX_DEPTH:
            raise BenchError(
                f"{path}:{line}: the YAML nests deeper than {MAX_DEPTH} levels (aliases expanded); a suite "
                "needs far fewer: check the brackets and the indentation"
            )
        parent = open_nodes[-1][1] if open_nodes else document
        parent[0] += values
        parent[1] = max(parent[1], depth + 1)
        if parent[0] > MAX_VALUES:
            raise BenchError(
                f"{path}:{line}: the YAML holds more than {MAX_VALUES:,} values once its aliases (*name) are "
                "expanded; write the values out, or repeat fewer of them"
            )

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchored[event.anchor] = (1, 0)
            add(1, 0, event)
        elif isinstance(event, yaml.AliasEvent):
            add(*anchored.get(event.anchor, (1, 0)), event)  # an unknown anchor: composing says so
        elif isinstance(event, yaml.CollectionStartEvent):
            add(0, 1, event)  # its depth, before its values are read
            open_nodes.append((event.anchor, [1, 1]))
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, (values, depth) = open_nodes.pop()
            if anchor is not None:
                anchored[anchor] = (values, depth)
            add(values, depth, event)


def _check_unique_keys(path: Path, root: yaml.Node | None) -> None:
    """A key given twice in one mapping is refused: YAML loaders keep the last silently, so the value a
    reader sees first is not the one that runs. Keys merged in by ``<<: *anchor`` may be overridden."""
    pending: list[tuple[yaml.Node, tuple]] = [(root, ())] if root is not None else []
    while pending:
        node, where = pending.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in seen:
                        raise BenchError(
                            f"{path}:{line}: {_dotted((*where, key.value))}: the key '{key.value}' is given "
                            f"twice in one mapping (first on line {seen[key.tag, key.value]}); keep one"
                        )
                    seen[key.tag, key.value] = line
                pending.append((value, (*where, key.value if isinstance(key, yaml.ScalarNode) else "?")))
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, (*where, index)) for index, item in enumerate(node.value)]


class _Locator:
    """Maps a path inside the YAML document (keys and list indices) to its line number."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.overrides: dict[str, tuple] = {}  # top-level key -> where a profile gives it instead
        try:
            _check_bounds(path, text)
            self.root = yaml.compose(text, Loader=yaml.SafeLoader)
            _check_unique_keys(path, self.root)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f"{mark.line + 1}" if mark else "1"
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise BenchError(f"{path}:{line}: malformed YAML: {problem}") from None

    def line(self, location: tuple) -> int:
        if location and location[0] in self.overrides:
            location = (*self.overrides[location[0]], *location)
        node, line = self.root, 1
        for part in location:
            if node is None:
                break
            line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if match is None:
                    break
                line = match[0].start_mark.line + 1
                node = match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def fail(self, location: tuple, message: str) -> BenchError:
        location = self._as_written(location)
        return BenchError(f"{self.path}:{self.line(location)}: {_dotted(location)}: {message}")

    def _as_written(self, location: tuple) -> tuple:
        """A place in the validated suite as the file writes it: its one seed as ``seed``, when the file
        gives that rather than ``seeds`` (``Suite._seed_alias``)."""
        written = self.data if isinstance(self.data, dict) else {}
        if location[:1] == ("seeds",) and "seed" in written and "seeds" not in written:
            return ("seed", *location[2:])
        return location

    def error(self, error: dict, model: type[BaseModel], prefix: tuple = ()) -> BenchError:
        location = (*prefix, *error["loc"])
        if error["type"] == "extra_forbidden":
            key = str(error["loc"][-1])
            parent = _model_at(model, error["loc"][:-1])
            fields = list(parent.model_fields) if parent else []
            return self.fail(location, f"unknown key '{key}'{suggest(key, fields)}")
        if error["type"] == "missing":
            return self.fail(location, "required key is missing")
        message = error["msg"]
        if error["type"] in NUMBER_TYPES and isinstance(error["input"], bool):
            return self.fail(
                location,
                f"YAML reads {str(error['input']).lower()} as a boolean, not a number: write the number",
            )
        if error["type"] not in ("value_error", "assertion_error"):
            message += f" (got {error['input']!r})" if not isinstance(error["input"], dict | list) else ""
        return self.fail(location, message.removeprefix("Value error, "))


def _model_at(model: type[BaseModel], location: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``location`` (for "did you mean" on unknown keys)."""
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _dotted(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
