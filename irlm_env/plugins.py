"""The one plugin manager of irlm_env and generic registries of named factories.

Loading is lazy and happens once per process (``reset_plugins()`` starts over, for tests and
for code that installs plugins at run time). The order is fixed: the built-in hookimpl module
of every declared kind, then the ``irlm_env`` entry points, then ``check_pending()``, then every
plugin's registration hooks. A third-party plugin that fails to import, has a malformed hook,
raises while registering or registers something invalid is skipped with a
:class:`PluginWarning` naming it: its registrations are dropped and every other plugin, the
built-ins included, loads as usual. ``IRLM_STRICT_PLUGINS=1`` turns that into an error.
``IRLM_LOAD_PLUGINS`` chooses which third-party plugins load: unset loads all, empty loads
none, ``a,b`` loads those (entry-point or distribution names).

This module knows no kind of plugin by itself. A domain (rewards, corpora) declares its kind
with :func:`declare_kind`: the hook its plugins implement, its built-in hookimpl module and the
check its factories must pass. Adding a kind means a hook spec and one such declaration.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Literal

import pluggy

from irlm_env import hookspecs
from irlm_env.errors import IrlmError, suggest
from irlm_env.version import __version__

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
STRICT_ENV = "IRLM_STRICT_PLUGINS"
LOAD_ENV = "IRLM_LOAD_PLUGINS"

# Names appear on command lines and in config files: keep them plain.
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class PluginWarning(UserWarning):
    """A third-party plugin was skipped; the message names it and the reason."""


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or failed) plugin, as ``irlm plugins`` shows it."""

    name: str
    kind: Literal["builtin", "entrypoint", "registered"]
    distribution: str | None
    version: str | None
    error: str | None = None

    @property
    def label(self) -> str:
        """How messages refer to the plugin: its name plus the package it came from."""
        if self.distribution is None:
            return repr(self.name)
        return f"{self.name!r} (distribution {self.distribution} {self.version})"


@dataclass(frozen=True)
class Entry:
    """A registered factory and the plugin that registered it."""

    name: str
    factory: Callable[..., Any]
    description: str
    plugin_name: str
    plugin_version: str | None


@dataclass(frozen=True)
class PluginKind:
    """One kind of plugin item (``reward``, ``corpus``), declared by the domain that uses it.

    ``hook`` is the registration hook's name in :mod:`irlm_env.hookspecs`; ``builtin`` the
    module registering the built-in items through that same hook; ``prepare(factory, where)``
    checks a factory when it is registered and returns what the registry keeps, the factory
    itself or a wrapper; its :class:`IrlmError` message starts with ``where`` ("registers
    reward 'x'") and is shown after the plugin's name.
    """

    name: str
    hook: str
    builtin: ModuleType
    prepare: Callable[[Callable[..., Any], str], Callable[..., Any]]


class Registry:
    """Named factories of one kind, in registration order (built-ins first).

    A name two plugins register is a clash: looking it up is an error naming both (which one
    the user wants is theirs to say), while every other name works and listings show both
    entries, so that ``irlm plugins`` can show what clashes.
    """

    def __init__(self, kind: str, entries: Mapping[str, Entry], broken: list[PluginInfo],
                 clashes: Mapping[str, list[Entry]] | None = None) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._broken = broken
        self._clashes = dict(clashes or {})

    def get(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        if name in self._clashes:
            claimants = self._clashes[name]
            owners = " and ".join(repr(e.plugin_name) for e in claimants)
            raise IrlmError(
                f"{self.kind} {name!r} is registered by {len(claimants)} plugins: {owners}. Uninstall all "
                f"but one, or choose which third-party plugins load with {LOAD_ENV}=name,name."
            )
        message = f"unknown {self.kind} {name!r}; {suggest(str(name), self._entries)}."
        if self._broken:
            failed = "; ".join(f"{info.label}: {info.error}" for info in self._broken)
            message += f" Some plugins failed to load and may have provided it: {failed}."
        else:
            message += f" Install a plugin that registers a {self.kind} of that name."
        selected = os.environ.get(LOAD_ENV)
        if selected is not None:
            message += (f" {LOAD_ENV}={selected!r} loads only the installed plugins it names: add the one that "
                        f"provides it, or unset {LOAD_ENV}.")
        raise IrlmError(message)

    def names(self) -> list[str]:
        return [*self._entries, *self._clashes]

    def entries(self) -> list[Entry]:
        """Every entry, those of a clashing name once per plugin that registers it."""
        return [*self._entries.values(), *(entry for entries in self._clashes.values() for entry in entries)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._clashes


_KINDS: dict[str, PluginKind] = {}


def declare_kind(kind: PluginKind) -> PluginKind:
    """Make ``kind`` known to the plugin manager; done once, when its domain module is imported."""
    if _KINDS.get(kind.name, kind) != kind:
        raise RuntimeError(f"plugin kind {kind.name!r} is declared twice")
    _KINDS[kind.name] = kind
    reset_plugins()  # a manager loaded before would lack this kind's built-ins and items
    return kind


class _Broken(Exception):
    """A plugin's registration went wrong: ``problem`` follows the plugin's name in messages."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


@dataclass
class _Loaded:
    manager: pluggy.PluginManager
    infos: dict[str, PluginInfo]  # every plugin considered, in load order
    items: dict[str, dict[str, dict[str, Entry]]]  # plugin -> kind -> name -> entry


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip() not in ("", "0")


def _fix_hooks() -> str:
    hooks = " and ".join(f"{kind.hook}(register)" for kind in _KINDS.values())
    return f"Fix the plugin's @hookimpl functions to match irlm_env.hookspecs: {hooks}."


def _plugin_failed(loaded: _Loaded, info: PluginInfo, problem: str, fix: str) -> None:
    """Record a broken third-party plugin; warn, or raise under IRLM_STRICT_PLUGINS=1."""
    loaded.infos[info.name] = replace(info, error=problem)
    message = f"irlm_env plugin {info.label} {problem}. {fix}"
    if _strict():
        raise IrlmError(f"{message} ({STRICT_ENV}=1 makes this fatal; unset it to skip the plugin.)")
    warnings.warn(f"{message} The plugin was skipped.", PluginWarning, stacklevel=4)


def _register_plugin(loaded: _Loaded, plugin: object, info: PluginInfo) -> str | None:
    """Register one plugin's hooks; return the problem as text instead of raising."""
    manager = loaded.manager
    try:
        manager.register(plugin, name=info.name)
    except pluggy.PluginValidationError as exc:
        return f"has an invalid hook implementation: {'; '.join(str(exc).splitlines())}"
    except ValueError as exc:  # pluggy: the same module already registered under another name
        return f"could not be registered: {exc}"
    unknown = [
        impl.function.__name__
        for name, caller in vars(manager.hook).items()
        if not name.startswith("_") and not caller.has_spec()
        for impl in caller.get_hookimpls()
        if impl.plugin_name == info.name and not impl.optionalhook
    ]
    if unknown:
        manager.unregister(name=info.name)
        return f"implements unknown hook(s) {', '.join(unknown)}"
    wrappers = [impl.function.__name__ for caller in manager.get_hookcallers(plugin) or []
                for impl in caller.get_hookimpls()
                if impl.plugin_name == info.name and (impl.wrapper or impl.hookwrapper)]
    if wrappers:
        # Registration calls each hook function once with the callback; a wrapper's body would
        # only become a generator and register nothing.
        manager.unregister(name=info.name)
        return f"marks {', '.join(wrappers)} as a wrapper hook, which registers nothing (drop wrapper=True)"
    if not manager.get_hookcallers(plugin):
        # A forgotten @irlm_env.hookimpl (or a marker of another project) registers nothing:
        # say so now, not later as an "unknown reward".
        manager.unregister(name=info.name)
        return "implements no irlm_env hook (are its functions marked with @irlm_env.hookimpl?)"
    loaded.infos[info.name] = info
    return None


def _normalized(distribution: str) -> str:
    """A distribution's name as PEP 503 compares names: lowercase, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _selected(entry_points: list[importlib.metadata.EntryPoint]) -> Iterator[importlib.metadata.EntryPoint]:
    """Apply IRLM_LOAD_PLUGINS: unset = all, empty = none, else a comma-separated allow-list.

    Distribution names compare as pip compares them (``irlm_half`` is ``irlm-half``).
    """
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        yield from entry_points
        return
    wanted = {item.strip() for item in raw.split(",") if item.strip()}
    wanted_distributions = {_normalized(name) for name in wanted}
    known: set[str] = set()  # for suggestions: entry-point and distribution names as written
    known_distributions: set[str] = set()
    for ep in entry_points:
        distribution = ep.dist.name if ep.dist and ep.dist.name else None  # broken metadata has none
        known.add(ep.name)
        if distribution is not None:
            known.add(distribution)
            known_distributions.add(_normalized(distribution))
        if ep.name in wanted or (distribution is not None and _normalized(distribution) in wanted_distributions):
            yield ep
    for missing in sorted(name for name in wanted if name not in known and _normalized(name) not in known_distributions):
        message = (
            f"{LOAD_ENV} names plugin {missing!r}, which is not installed; "
            f"{suggest(missing, known - {''})}. Install it or fix {LOAD_ENV}."
        )
        if _strict():
            raise IrlmError(message)
        warnings.warn(message, PluginWarning, stacklevel=3)


# The loaded plugins, built on first use. No lock is held while third-party code is imported
# (a plugin's import could wait on another thread, or a fork copy a held lock): two threads
# using the plugins for the first time at once may both load them, and the first result is
# kept. _loading marks the thread that is loading, so that code an entry point runs when
# imported is told it cannot use the plugins yet.
_loaded: _Loaded | None = None
_loading = threading.local()


def _load() -> _Loaded:
    global _loaded
    if _loaded is not None:
        return _loaded
    if getattr(_loading, "active", False):
        raise IrlmError(
            "irlm_env's plugins were used while they were being loaded, by code an installed plugin runs when "
            "imported (register_plugin, make_reward, load_corpus at import time); an installed plugin registers "
            "through its entry point's @hookimpl functions, so drop that call from the module's top level"
        )
    _loading.active = True
    try:
        result = _load_plugins()
    finally:
        _loading.active = False
    if _loaded is None:
        _loaded = result
    return _loaded


def _load_plugins() -> _Loaded:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    loaded = _Loaded(manager, {}, {})
    for kind in _KINDS.values():
        info = PluginInfo(kind.builtin.__name__, "builtin", None, __version__)
        problem = _register_plugin(loaded, kind.builtin, info)
        if problem is not None:  # a bug in irlm_env itself, never a user's plugin
            raise RuntimeError(f"built-in plugin {info.name} {problem}")
    found = sorted(
        importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (ep.name, ep.value),
    )
    for ep in _selected(found):
        dist = ep.dist
        info = PluginInfo(ep.name, "entrypoint", dist.name if dist else None, dist.version if dist else None)
        if info.name in loaded.infos:
            _plugin_failed(
                loaded,
                replace(info, name=f"{info.name}@{info.distribution}"),
                f"uses the entry-point name {info.name!r}, already taken by plugin "
                f"{loaded.infos[info.name].label}",
                "Uninstall one of the two packages or rename the entry point.",
            )
            continue
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:  # any import-time failure of third-party code, exit() too
            _plugin_failed(
                loaded,
                info,
                f"failed to import ({ep.value}): {type(exc).__name__}: {exc}",
                f"Fix or uninstall the package, or leave it out of {LOAD_ENV}.",
            )
            continue
        problem = _register_plugin(loaded, plugin, info)
        if problem is not None:
            _plugin_failed(loaded, info, problem, _fix_hooks())
    manager.check_pending()
    for info in list(loaded.infos.values()):
        if info.error is not None:
            continue
        try:
            loaded.items[info.name] = _items_of(manager, info)
        except _Broken as broken:
            if info.kind == "builtin":
                raise RuntimeError(f"built-in plugin {info.name} {broken.problem}") from broken
            manager.unregister(name=info.name)
            _plugin_failed(loaded, info, broken.problem, broken.fix)
    return loaded


def _items_of(manager: pluggy.PluginManager, info: PluginInfo) -> dict[str, dict[str, Entry]]:
    """Run every registration hook of one plugin; any problem drops all of its items at once."""
    items: dict[str, dict[str, Entry]] = {}
    for kind in _KINDS.values():
        for impl in getattr(manager.hook, kind.hook).get_hookimpls():
            if impl.plugin_name == info.name:
                entries = items.setdefault(kind.name, {})
                registered = _call_registration_hook(kind, impl, info)
                # Two functions of one plugin can implement the hook (pluggy's specname).
                twice = sorted(registered.keys() & entries.keys())
                if twice:
                    raise _Broken(f"registers {kind.name} {twice[0]!r} twice", "Register each name once.")
                entries.update(registered)
    return items


def _call_registration_hook(kind: PluginKind, impl: pluggy.HookImpl, info: PluginInfo) -> dict[str, Entry]:
    """Run one registration hook with a callback that validates every call at once."""
    pending: dict[str, Entry] = {}
    fix = "Fix the plugin, or uninstall it."

    def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
        if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
            raise _Broken(
                f"registers a {kind.name} named {name!r}; a name must be a string of 1-64 lowercase "
                "letters, digits, '_', '-' or '.', starting with a letter",
                "Rename it.",
            )
        where = f"registers {kind.name} {name!r}"
        if not callable(factory):
            raise _Broken(f"registers {kind.name} {name!r} with a factory that is not callable ({factory!r})",
                          "Pass a function or class.")
        if not isinstance(description, str):
            raise _Broken(f"registers {kind.name} {name!r} with a description that is not a string "
                          f"({description!r})", fix)
        if name in pending:
            raise _Broken(f"registers {kind.name} {name!r} twice", "Register each name once.")
        try:
            prepared = kind.prepare(factory, where)
        except IrlmError as exc:
            raise _Broken(str(exc), fix) from None
        pending[name] = Entry(name, prepared, description, info.name, info.version)

    try:
        impl.function(**({"register": register} if "register" in impl.argnames else {}))
    except _Broken:
        raise
    except Exception as exc:  # a bug in the plugin's hook: say whose
        raise _Broken(f"failed in its {kind.hook} hook: {type(exc).__name__}: {exc}",
                      f"Fix the plugin, or leave it out of {LOAD_ENV}.") from exc
    return pending


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    return _load().manager


def plugin_report() -> list[PluginInfo]:
    """Every plugin considered, built-ins first, with its version and error (None if loaded)."""
    return list(_load().infos.values())


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object or module at run time, e.g. a reward defined in a notebook.

    Unlike an entry point that fails to load, a broken plugin here raises at once and is not
    kept: the caller is right there to fix it. That includes a plugin with no hook and one
    registering a name a loaded plugin has, which kept would break every lookup of that kind.
    Registering again under the name of an earlier run-time plugin replaces it (a notebook cell
    run again after an edit); the earlier one stays if the new one is refused. Registries are
    rebuilt on next use.
    """
    loaded = _load()
    earlier = loaded.infos.get(name)
    if earlier is not None and earlier.kind != "registered":
        raise IrlmError(f"a plugin named {name!r} is already loaded ({earlier.label}); choose another name.")
    replaced = None
    if earlier is not None:
        replaced = (loaded.manager.unregister(name=name), loaded.infos.pop(name), loaded.items.pop(name))

    def restore() -> None:
        if replaced is not None:
            loaded.manager.register(replaced[0], name=name)
            loaded.infos[name], loaded.items[name] = replaced[1], replaced[2]

    info = PluginInfo(name, "registered", None, None)
    problem = _register_plugin(loaded, plugin, info)
    if problem is not None:
        restore()
        raise IrlmError(f"plugin {name!r} {problem}. {_fix_hooks()}")
    try:
        items = _items_of(loaded.manager, info)
        _check_no_clash(loaded, items)
    except _Broken as broken:
        loaded.manager.unregister(name=name)
        del loaded.infos[name]
        restore()
        raise IrlmError(f"plugin {info.label} {broken.problem}. {broken.fix}") from None
    loaded.items[name] = items
    _registry.cache_clear()


def _check_no_clash(loaded: _Loaded, items: dict[str, dict[str, Entry]]) -> None:
    """Refuse a run-time plugin's name that a loaded plugin has: kept, it would break the whole kind."""
    for kind, entries in items.items():
        for name in entries:
            owner = next((plugin for plugin, theirs in loaded.items.items() if name in theirs.get(kind, {})), None)
            if owner is not None:
                raise _Broken(f"registers {kind} {name!r}, which plugin {owner!r} already registers",
                              "Choose another name.")


def reset_plugins() -> None:
    """Forget the loaded plugins and registries; the next use loads them again."""
    global _loaded
    _loaded = None
    _registry.cache_clear()


def registry(kind: PluginKind) -> Registry:
    """All items of ``kind``, by name (IrlmError with a suggestion on unknown names).

    Two plugins registering the same name make that one name an error naming both, not a skip
    and not a failure of the whole kind (see :class:`Registry`).
    """
    return _registry(kind.name)


@functools.cache
def _registry(kind: str) -> Registry:
    loaded = _load()
    claims: dict[str, list[Entry]] = {}
    for items in loaded.items.values():
        for name, entry in items.get(kind, {}).items():
            claims.setdefault(name, []).append(entry)
    broken = [info for info in loaded.infos.values() if info.error is not None]
    return Registry(
        kind,
        {name: entries[0] for name, entries in claims.items() if len(entries) == 1},
        broken,
        {name: entries for name, entries in claims.items() if len(entries) > 1},
    )
