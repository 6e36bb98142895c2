"""Suite entries: one plugin with one set of validated parameters, as the grid uses it.

``harness.suite`` resolves a suite's YAML into entries (registry lookup, parameter validation, labels,
teachers, training datasets); ``harness.grid`` expands entries into cells. Entries know their identity
(what determines their results), which everything that groups, joins or caches uses; labels are for
display.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.plugin import Params, Plugin
from harness.registry import PluginInfo

if TYPE_CHECKING:
    from harness.suite import Spec


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def short_hash(value: Any) -> str:
    """A short, stable name for a canonical value (identities, fingerprints)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PluginEntry:
    """One plugin with one set of validated parameters, as it appears in the grid.

    Two entries are the same entry exactly when their ``identity`` is equal: the plugin name, its
    version, every validated parameter and the suite fields that change results (a dataset's ``split``
    and ``sample``, a model's training dataset and named device, a student's teacher). The ``label`` is
    for display only.
    """

    kind: str
    name: str = field(compare=False)
    cls: type[Plugin] = field(compare=False, repr=False)
    package: str = field(compare=False)
    package_version: str = field(compare=False)
    params: Params = field(compare=False, repr=False)
    params_json: str = field(compare=False)  # every parameter, defaults included: what determines results
    label: str = field(compare=False)  # for tables; unique within its suite section
    spec: Spec = field(compare=False, repr=False)
    train_on: PluginEntry | None = field(
        default=None, compare=False
    )  # models only: the dataset the model is trained on, if not the evaluated one
    teacher: PluginEntry | None = field(
        default=None, compare=False
    )  # students only: the explainer they distil (see TeacherSpec)
    variants: tuple[str, ...] = field(default=("default",), compare=False)  # models: canonical variants
    device: str | None = field(
        default=None, compare=False
    )  # models only: cpu, cuda or auto as the suite names it for this entry; None: the suite's device
    reference_explainer: PluginEntry | None = field(
        default=None, compare=False
    )  # metrics comparing explainers only: the suite's explainer entry this one compares with
    identity_json: str = ""  # canonical JSON of ``identity``: what equality and hashing use

    @classmethod
    def create(
        cls,
        info: PluginInfo,
        spec: Spec,
        params: Params,
        user_params: dict,
        train_on: PluginEntry | None = None,
        teacher: PluginEntry | None = None,
        variants: tuple[str, ...] = ("default",),
        reference_explainer: PluginEntry | None = None,
    ) -> PluginEntry:
        shown = user_params
        if reference_explainer is not None:  # its label says whom it compares with, once
            user_params = {**user_params, "reference": reference_explainer.label}
            shown = {key: value for key, value in user_params.items() if key != "reference"}
        label = spec.label.format(**user_params) if spec.label else _default_label(info.name, shown)
        if not spec.label:
            label += _default_label_suffix(spec)
        if train_on is not None and not spec.label:
            label += f" trained on {train_on.label}"
        if reference_explainer is not None and "{reference}" not in (spec.label or ""):
            label += f" vs {reference_explainer.label}"
        entry = cls(
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
            variants=variants,
            device=getattr(spec, "device", None),
            reference_explainer=reference_explainer,
        )
        return replace(entry, identity_json=canonical_json(entry.identity))

    @property
    def params_dict(self) -> dict:
        return json.loads(self.params_json)

    @property
    def identity(self) -> dict:
        """What determines this plugin's results: name, plugin version, every parameter, and the suite
        fields that select what it works on (a dataset's split and sample) or where it runs (a model's
        device, only when the entry names one: the identities of suites naming none stay as they were);
        for a metric comparing explainers, the identity of the explainer compared with in place of its
        ``reference`` label."""
        identity = {"name": self.name, "version": self.cls.version, "params": self.params_dict}
        if self.kind == "dataset":
            split, sample = getattr(self.spec, "split", "test"), getattr(self.spec, "sample", None)
            identity["split"] = split
            if sample is not None:
                identity["sample"] = sample
        if self.train_on is not None:
            identity["train_on"] = self.train_on.identity
        if self.teacher is not None:
            identity["teacher"] = self.teacher.identity
        if self.device is not None:
            identity["device"] = self.device
        if self.reference_explainer is not None:
            # the explainer compared with by what determines its results, not by its label (``reference``)
            del identity["params"]["reference"]
            identity["reference_explainer"] = self.reference_explainer.identity
        return identity

    @property
    def id(self) -> str:
        """A short hash of the identity: what reports, expectations and pairings group and join by."""
        return short_hash(self.identity)

    @property
    def source(self) -> tuple[str, str]:
        """For datasets: the loaded data (name and parameters), shared by entries that only select
        another split or sample of it."""
        return (self.name, self.params_json)


def _default_label_suffix(spec: Spec) -> str:
    """A dataset explained on another split than test, and a model naming its device, say so in their
    default label (the same model on two devices is two entries, and labels are unique)."""
    split, device = getattr(spec, "split", "test"), getattr(spec, "device", None)
    return ("" if split == "test" else f" ({split})") + ("" if device is None else f" on {device}")


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


def device_twins(models: Sequence[PluginEntry]) -> dict[PluginEntry, tuple[PluginEntry, ...]]:
    """Each model entry → the entries equal to it but for the device they name, itself included: where
    a metric comparing devices finds its reference (``grid.Cell.reference``)."""
    groups: dict[str, list[PluginEntry]] = {}
    for model in models:
        groups.setdefault(_without_device(model), []).append(model)
    return {model: tuple(groups[_without_device(model)]) for model in models}


def _without_device(model: PluginEntry) -> str:
    return canonical_json({key: value for key, value in model.identity.items() if key != "device"})


def model_label(model: str, variant: str) -> str:
    """A model with its variant, as every table and log line shows it: ``minilm-head[init:2]``; the
    default model (``init:1``) is the plain label."""
    return model if variant == "default" else f"{model}[{variant}]"
