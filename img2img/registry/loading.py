"""Plugin loading. Plugins are entry points in the `img2img` group, the built-ins included; each is
imported in our own loop so a plugin that fails to import is reported and skipped instead of
breaking every command, and `IMG2IMG_LOAD_PLUGINS` can choose which distributions load."""
from __future__ import annotations

import dataclasses
import importlib.metadata as md
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from types import ModuleType

import pluggy

from ..errors import PluginError
from . import hookspecs

GROUP = "img2img"
LOAD_ENV = "IMG2IMG_LOAD_PLUGINS"
TRACE_ENV = "IMG2IMG_TRACE_PLUGINS"


@dataclasses.dataclass
class PluginInfo:
    """One plugin as `img2img plugins` shows it."""

    name: str
    distribution: str
    version: str
    registered: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what we learned while loading: one `PluginInfo` per plugin."""

    def __init__(self, strict: bool = False):
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.strict = strict
        self.infos: dict[str, PluginInfo] = {}
        self.rejected: list[PluginInfo] = []  # plugins refused because their name was taken
        # Entry points left out by IMG2IMG_LOAD_PLUGINS or failing to import: what others
        # register for their models (presets) is skipped quietly rather than reported.
        self.incomplete = False

    def add(self, module: object, info: PluginInfo) -> None:
        """Register one plugin object under `info.name`; a misspelled hook fails here."""
        try:
            self.register(module, name=info.name)
            self.check_pending()
        except Exception as exc:  # pluggy raises its own validation errors
            if self.get_plugin(info.name) is not None:
                self.unregister(name=info.name)
            self.fail(info, f"invalid hook implementation: {exc}")
            return
        self.infos[info.name] = info

    def fail(self, info: PluginInfo, message: str) -> None:
        """Record a plugin's error; strict mode (tests) raises it instead."""
        info.errors.append(message)
        if self.infos.setdefault(info.name, info) is not info and info not in self.rejected:
            self.rejected.append(info)
        if self.strict:
            raise PluginError(f"plugin '{info.name}' ({info.distribution}): {message}")

    def errors(self) -> list[str]:
        return [f"plugin '{i.name}' ({i.distribution}): {e}" for i in self.all_infos()
                for e in i.errors]

    def all_infos(self) -> list[PluginInfo]:
        return sorted([*self.infos.values(), *self.rejected], key=lambda i: i.name)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _wanted(env: Mapping[str, str]) -> set[str] | None:
    """Names from IMG2IMG_LOAD_PLUGINS (None: load all; empty set: load none)."""
    if LOAD_ENV not in env:
        return None
    return {_normalise(n.strip()) for n in env[LOAD_ENV].split(",") if n.strip()}


def _distribution(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "")
    return (dist.metadata["Name"] or "unknown", dist.version or "")


def load_plugins(strict: bool = False, entry_points: Iterable[md.EntryPoint] | None = None,
                 env: Mapping[str, str] | None = None) -> PluginManager:
    """Import every `img2img` entry point into a new plugin manager, isolating failures."""
    env = os.environ if env is None else env
    pm = PluginManager(strict=strict)
    if env.get(TRACE_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(lambda line: sys.stderr.write(f"[img2img plugins] {line}"))
        pm.enable_tracing()
    wanted = _wanted(env)
    if entry_points is None:
        entry_points = md.entry_points(group=GROUP)
    for ep in sorted(entry_points, key=lambda e: e.name):
        dist, version = _distribution(ep)
        if wanted is not None and not wanted & {_normalise(ep.name), _normalise(dist)}:
            pm.incomplete = True
            continue
        info = PluginInfo(ep.name, dist, version)
        if pm.get_plugin(ep.name) is not None or ep.name in pm.infos:
            pm.fail(info, f"plugin name '{ep.name}' is already taken by "
                          f"{pm.infos[ep.name].distribution}")
            continue
        try:
            module = ep.load()
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end img2img
            last = traceback.extract_tb(exc.__traceback__)[-1]
            pm.fail(info, f"failed to import: {type(exc).__name__}: {exc} "
                          f"({last.filename}:{last.lineno})")
            pm.incomplete = True
            continue
        pm.add(module, info)
    return pm


def add_plugin(pm: PluginManager, module: ModuleType | object, name: str,
               distribution: str = "local", version: str = "") -> None:
    """Register an already imported plugin object (tests, notebooks, scripts)."""
    pm.add(module, PluginInfo(name, distribution, version))
