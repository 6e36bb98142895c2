"""Plugin discovery: every plugin, built-in or third-party, comes through one entry-point group.

Discovery tolerates a broken plugin (a warning names it and its package; everything else loads) but
never tolerates ambiguity (two plugins of one kind with one name is an error naming both packages).

**API versions.** An entry-point module declares the plugin API it was written for as
``BENCH_API_VERSION = "MAJOR.MINOR"`` (see ``harness.API_VERSION``). It is compatible when its major
version is the harness's and its minor version is not newer (a minor release only adds names). An
incompatible package is refused: a one-line warning names it, its package and both versions, and a suite
naming one of its plugins fails with that reason instead of "unknown plugin". A package declaring nothing
loads with a warning asking it to declare.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

import harness
from harness import hookspecs
from harness.errors import BenchError
from harness.plugin import PLUGIN_KINDS, Plugin, metadata_problem


class PluginLoadWarning(UserWarning):
    """A plugin could not be imported or its hook failed; the rest of the registry still loads."""


API_DECLARATION = "BENCH_API_VERSION"


def api_problem(declared: object, provided: str | None = None) -> str | None:
    """Why a plugin written for API ``declared`` cannot run on this harness, or None when it can."""
    provided = provided or harness.API_VERSION
    if not isinstance(declared, str) or not _is_version(declared):
        return f"declares {API_DECLARATION} = {declared!r}, which is not a version like '1.0'"
    major, minor = map(int, declared.split("."))
    have_major, have_minor = map(int, provided.split("."))
    if major != have_major or minor > have_minor:
        return f"is written for plugin API {declared}, but this harness provides {provided}: " + (
            "upgrade xai-bench-harness"
            if (major, minor) > (have_major, have_minor)
            else f"install a version of the plugin written for API {have_major}.x"
        )
    return None


def _is_version(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 2 and all(part.isdigit() for part in parts)


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    cls: type[Plugin]
    package: str
    version: str
    api_version: str | None = None  # what its package declares (``BENCH_API_VERSION``)

    @property
    def description(self) -> str:
        return self.cls.description()

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "plugin_version": self.cls.version,
            "api_version": self.api_version,
            "description": self.description,
        }


class Registry:
    """Plugins by (kind, name), with the package that provides each."""

    def __init__(
        self,
        plugins: Iterable[PluginInfo],
        load_errors: Iterable[str] = (),
        refused: dict[tuple[str, str], str] | None = None,
    ):
        self._plugins: dict[tuple[str, str], PluginInfo] = {}
        self.refused = dict(refused or {})  # (kind, name) of a plugin of an incompatible package → why
        for info in plugins:
            key = (info.kind, info.name)
            if key in self._plugins:
                other = self._plugins[key]
                raise BenchError(
                    f"two {info.kind} plugins are named '{info.name}': one from package "
                    f"'{other.package}', one from package '{info.package}'; uninstall or rename one"
                )
            self._plugins[key] = info
        self.load_errors = list(load_errors)

    @classmethod
    def discover(cls, group: str = hookspecs.ENTRY_POINT_GROUP) -> Registry:
        """Import every entry point of ``group`` and collect the classes their hooks return."""
        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        packages: dict[str, tuple[str, str]] = {}
        apis: dict[str, str | None] = {}
        incompatible: dict[str, str] = {}  # entry point → the refusal, one line
        load_errors: list[str] = []
        for entry_point in sorted(
            entry_points(group=group), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name)
        ):
            package = entry_point.dist.name if entry_point.dist else "?"
            version = entry_point.dist.version if entry_point.dist else "?"
            plugin_name = f"{package}:{entry_point.name}"
            try:
                module = entry_point.load()
                manager.register(module, name=plugin_name)
            except Exception as error:  # a broken plugin must not take the others down
                load_errors.append(_warn(entry_point.name, package, f"failed to import: {error}"))
                continue
            packages[plugin_name] = (package, version)
            declared = getattr(module, API_DECLARATION, None)
            apis[plugin_name] = declared if isinstance(declared, str) else None
            if declared is None:
                load_errors.append(
                    _warn(
                        entry_point.name,
                        package,
                        f"declares no {API_DECLARATION}; assumed {harness.API_VERSION}: add "
                        f'{API_DECLARATION} = "{harness.API_VERSION}" to its module {entry_point.value}',
                    )
                )
            elif (problem := api_problem(declared)) is not None:
                incompatible[plugin_name] = _warn(entry_point.name, package, f"is refused: it {problem}")
                load_errors.append(incompatible[plugin_name])

        refused: dict[tuple[str, str], str] = {}

        infos = []
        for kind, hook_name in hookspecs.HOOK_FOR_KIND.items():
            for hookimpl in getattr(manager.hook, hook_name).get_hookimpls():
                package, version = packages[hookimpl.plugin_name]
                try:
                    classes = list(hookimpl.function())
                except Exception as error:
                    load_errors.append(_warn(hookimpl.plugin_name, package, f"{hook_name} failed: {error}"))
                    continue
                for plugin_cls in classes:
                    if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, PLUGIN_KINDS[kind])):
                        load_errors.append(
                            _warn(
                                hookimpl.plugin_name,
                                package,
                                f"{hook_name} returned {plugin_cls!r}, "
                                f"not a harness.{PLUGIN_KINDS[kind].__name__} subclass",
                            )
                        )
                        continue
                    if hookimpl.plugin_name in incompatible:
                        refused[(kind, getattr(plugin_cls, "name", "?"))] = incompatible[hookimpl.plugin_name]
                        continue
                    problem = metadata_problem(plugin_cls)
                    if problem:
                        load_errors.append(
                            _warn(hookimpl.plugin_name, package, f"{plugin_cls.__name__} {problem}")
                        )
                        continue
                    infos.append(
                        PluginInfo(
                            kind, plugin_cls.name, plugin_cls, package, version, apis[hookimpl.plugin_name]
                        )
                    )
        return cls(infos, load_errors, refused)

    def get(self, kind: str, name: str) -> PluginInfo:
        try:
            return self._plugins[(kind, name)]
        except KeyError:
            raise BenchError(self.missing(kind, name)) from None

    def missing(self, kind: str, name: str) -> str:
        """Why ``name`` is no plugin of ``kind`` here: its package was refused (and why), or it is unknown
        (with the closest name, or the choices)."""
        if (kind, name) in self.refused:
            return f"{kind} '{name}' cannot be used: {self.refused[(kind, name)]}"
        return f"unknown {kind} '{name}'{suggest(name, self.names(kind))}"

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self._plugins if k == kind)

    def all(self) -> list[PluginInfo]:
        order = list(PLUGIN_KINDS)
        return sorted(self._plugins.values(), key=lambda info: (order.index(info.kind), info.name))


def suggest(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest choice, or the list of choices when nothing is close."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; choose one of: {', '.join(choices)}" if choices else ""


def _warn(plugin: str, package: str, what: str) -> str:
    message = f"plugin '{plugin}' from package '{package}' {what}"
    warnings.warn(message, PluginLoadWarning, stacklevel=3)
    return message


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _registry
    if _registry is None:
        _registry = Registry.discover()
    return _registry
