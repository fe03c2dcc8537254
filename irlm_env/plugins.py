"""The one plugin manager of irlm_env and the reward and corpus registries built from it.

Loading is lazy and happens once per process (``reset_plugins()`` starts over, for tests and
for code that installs plugins at run time). The order is fixed: the built-in hookimpl modules,
then the ``irlm_env`` entry points, then ``check_pending()``. A third-party plugin that fails
to import or to validate is skipped with a :class:`PluginWarning` naming it, so one broken
package never takes the others down; ``IRLM_STRICT_PLUGINS=1`` turns that into an error.
``IRLM_LOAD_PLUGINS`` chooses which third-party plugins load: unset loads all, empty loads
none, ``a,b`` loads those (entry-point or distribution names).

Registries are built by calling each plugin's hookimpl on its own, with a ``register``
callback bound to that plugin, so every name is recorded with the plugin that registered it
and a clash can name both plugins.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from irlm_env import hookspecs
from irlm_env.errors import IrlmError, suggest

if TYPE_CHECKING:
    from irlm_env.corpus import CorpusSource

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
BUILTIN_PLUGINS = ("irlm_env.rewards.exact", "irlm_env.corpora")
STRICT_ENV = "IRLM_STRICT_PLUGINS"
LOAD_ENV = "IRLM_LOAD_PLUGINS"

# Names appear on command lines and in config files: keep them plain.
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_KINDS = {"reward": "irlm_register_rewards", "corpus": "irlm_register_corpora"}
_FIX_HOOKS = (
    "Fix the plugin's @hookimpl functions to match irlm_env.hookspecs: "
    "irlm_register_rewards(register) and irlm_register_corpora(register)."
)


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
    """A registered reward or corpus factory and the plugin that registered it."""

    name: str
    factory: Callable[..., Any]
    description: str
    plugin_name: str
    plugin_version: str | None


class Registry:
    """Named factories of one kind (``reward`` or ``corpus``), in registration order."""

    def __init__(self, kind: str, entries: Mapping[str, Entry], broken: list[PluginInfo]) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._broken = broken

    def get(self, name: str) -> Entry:
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        message = f"unknown {self.kind} {name!r}; {suggest(str(name), self._entries)}."
        if self._broken:
            failed = "; ".join(f"{info.label}: {info.error}" for info in self._broken)
            message += f" Some plugins failed to load and may have provided it: {failed}."
        else:
            message += f" Install a plugin that registers a {self.kind} of that name."
        raise IrlmError(message)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries


@dataclass
class _Loaded:
    manager: pluggy.PluginManager
    infos: dict[str, PluginInfo]


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "").strip() not in ("", "0")


def _plugin_failed(loaded: _Loaded, info: PluginInfo, problem: str, fix: str) -> None:
    """Record a broken third-party plugin; warn, or raise under IRLM_STRICT_PLUGINS=1."""
    loaded.infos[info.name] = replace(info, error=problem)
    message = f"irlm_env plugin {info.label} {problem}. {fix}"
    if _strict():
        raise IrlmError(f"{message} ({STRICT_ENV}=1 makes this fatal; unset it to skip the plugin.)")
    warnings.warn(f"{message} The plugin was skipped.", PluginWarning, stacklevel=4)


def _register_plugin(loaded: _Loaded, plugin: object, info: PluginInfo) -> str | None:
    """Register one plugin; return the problem as text instead of raising."""
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
    loaded.infos[info.name] = info
    return None


def _selected(entry_points: list[importlib.metadata.EntryPoint]) -> Iterator[importlib.metadata.EntryPoint]:
    """Apply IRLM_LOAD_PLUGINS: unset = all, empty = none, else a comma-separated allow-list."""
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        yield from entry_points
        return
    wanted = {item.strip() for item in raw.split(",") if item.strip()}
    known: set[str] = set()
    for ep in entry_points:
        names = {ep.name, ep.dist.name if ep.dist else ""}
        known |= names
        if names & wanted:
            yield ep
    for missing in sorted(wanted - known):
        message = (
            f"{LOAD_ENV} names plugin {missing!r}, which is not installed; "
            f"{suggest(missing, known - {''})}. Install it or fix {LOAD_ENV}."
        )
        if _strict():
            raise IrlmError(message)
        warnings.warn(message, PluginWarning, stacklevel=3)


@functools.cache
def _load() -> _Loaded:
    from irlm_env import __version__

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    loaded = _Loaded(manager, {})
    for module_name in BUILTIN_PLUGINS:
        info = PluginInfo(module_name, "builtin", None, __version__)
        problem = _register_plugin(loaded, importlib.import_module(module_name), info)
        if problem is not None:  # a bug in irlm_env itself, never a user's plugin
            raise RuntimeError(f"built-in plugin {module_name} {problem}")
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
        except Exception as exc:  # any import-time failure of third-party code
            _plugin_failed(
                loaded,
                info,
                f"failed to import ({ep.value}): {type(exc).__name__}: {exc}",
                f"Fix or uninstall the package, or leave it out of {LOAD_ENV}.",
            )
            continue
        problem = _register_plugin(loaded, plugin, info)
        if problem is not None:
            _plugin_failed(loaded, info, problem, _FIX_HOOKS)
    manager.check_pending()
    return loaded


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    return _load().manager


def plugin_report() -> list[PluginInfo]:
    """Every plugin considered, built-ins first, with its version and error (None if loaded)."""
    return list(_load().infos.values())


def register_plugin(plugin: object, name: str) -> None:
    """Register a plugin object or module at run time, e.g. a reward defined in a notebook.

    Unlike an entry point that fails to load, a broken plugin here raises at once: the caller
    is right there to fix it. Registries are rebuilt on next use.
    """
    loaded = _load()
    if name in loaded.infos:
        taken = loaded.infos[name].label
        raise IrlmError(f"a plugin named {name!r} is already loaded ({taken}); choose another name.")
    problem = _register_plugin(loaded, plugin, PluginInfo(name, "registered", None, None))
    if problem is not None:
        raise IrlmError(f"plugin {name!r} {problem}. {_FIX_HOOKS}")
    _registry.cache_clear()


def reset_plugins() -> None:
    """Forget the loaded plugins and registries; the next use loads them again."""
    _load.cache_clear()
    _registry.cache_clear()


@functools.cache
def _registry(kind: str) -> Registry:
    loaded = _load()
    entries: dict[str, Entry] = {}
    caller = getattr(loaded.manager.hook, _KINDS[kind])
    for impl in caller.get_hookimpls():
        info = loaded.infos[impl.plugin_name]
        pending = _call_registration_hook(kind, impl, info, entries)
        entries.update(pending)
    broken = [info for info in loaded.infos.values() if info.error is not None]
    return Registry(kind, entries, broken)


def _call_registration_hook(
    kind: str, impl: pluggy.HookImpl, info: PluginInfo, taken: Mapping[str, Entry]
) -> dict[str, Entry]:
    """Run one plugin's registration hook with a callback that validates every call at once."""
    pending: dict[str, Entry] = {}

    def register(name: str, factory: Callable[..., Any], description: str = "") -> None:
        where = f"plugin {info.label} registers {kind} {name!r}"
        if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
            raise IrlmError(
                f"plugin {info.label} registers a {kind} named {name!r}; a name must be a string of "
                "1-64 lowercase letters, digits, '_', '-' or '.', starting with a letter. Rename it."
            )
        if not callable(factory):
            raise IrlmError(
                f"{where} with a factory that is not callable ({factory!r}); pass a function or class."
            )
        if not isinstance(description, str):
            raise IrlmError(f"{where} with a description that is not a string ({description!r}).")
        _check_factory_signature(kind, factory, where)
        previous = pending.get(name) or taken.get(name)
        if previous is not None:
            raise IrlmError(
                f"{kind} {name!r} is registered by two plugins: {previous.plugin_name!r} and "
                f"{info.name!r}. Uninstall one of them, or choose which third-party plugins load "
                f"with {LOAD_ENV}=name,name."
            )
        pending[name] = Entry(name, factory, description, info.name, info.version)

    try:
        impl.function(**({"register": register} if "register" in impl.argnames else {}))
    except IrlmError:
        raise
    except Exception as exc:  # a bug in the plugin's hook: say whose
        raise IrlmError(
            f"plugin {info.label} failed while registering {kind}s: {type(exc).__name__}: {exc}. "
            f"Fix the plugin, or leave it out of {LOAD_ENV}."
        ) from exc
    return pending


def _check_factory_signature(kind: str, factory: Callable[..., Any], where: str) -> None:
    """Catch a factory that can never be called the way irlm_env calls it, at registration.

    Rewards are called as ``factory(corpus, **options)``, corpora as ``factory(**options)``;
    options may be required (``text`` needs ``path``), so only the positional shape is checked.
    """
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if kind == "reward":
        first = params[0] if params else None
        if first is None or first.kind not in (*positional, inspect.Parameter.VAR_POSITIONAL):
            raise IrlmError(
                f"{where} with a factory that takes no positional corpus argument; it is called as "
                "factory(corpus, **options), so make the corpus its first parameter."
            )
        params = params[1:]
    required = [p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if required:
        raise IrlmError(
            f"{where} with a factory whose parameter(s) {', '.join(required)} are positional-only; "
            "options are passed by keyword, so make them ordinary parameters."
        )


def reward_registry() -> Registry:
    """All rewards, by name (IrlmError with a suggestion on unknown names)."""
    return _registry("reward")


def corpus_registry() -> Registry:
    """All corpora, by name (IrlmError with a suggestion on unknown names)."""
    return _registry("corpus")


def bind_options(kind: str, entry: Entry, options: Mapping[str, Any], *, skip: int = 0) -> dict[str, Any]:
    """Check ``options`` against ``entry``'s factory and convert strings to its annotated types.

    Done before the factory runs so a typo is reported with the accepted options instead of a
    ``TypeError`` from deep inside a plugin, and so options typed on a command line
    (``scale=0.3``) reach the factory as the int, float or bool it declares. ``skip`` is the
    number of leading positional parameters irlm_env fills itself (the corpus, for rewards).
    """
    label = f"{kind} {entry.name!r} (plugin {entry.plugin_name!r})"
    try:
        signature = inspect.signature(entry.factory)
    except (TypeError, ValueError):  # no signature to check against
        return dict(options)
    params = list(signature.parameters.values())[skip:]
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    accepted = [p.name for p in named]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        for option in options:
            if option not in accepted:
                listed = suggest(option, accepted) if accepted else "it takes no options"
                raise IrlmError(f"{label} has no option {option!r}; {listed}.")
    missing = [p.name for p in named if p.default is p.empty and p.name not in options]
    if missing:
        raise IrlmError(
            f"{label} requires the option(s) {', '.join(missing)}; pass them in the {kind} options "
            f"(e.g. {', '.join(f'{m}=...' for m in missing)})."
        )
    hints = {p.name: _annotation(entry.factory, p) for p in named}
    return {name: _coerce(label, name, value, hints.get(name)) for name, value in options.items()}


def _annotation(factory: Callable[..., Any], param: inspect.Parameter) -> Any:
    """One parameter's type, resolved on its own: ``typing.get_type_hints`` gives up on all of
    them when any one names a type imported only under ``TYPE_CHECKING`` (as ``Corpus`` often is)."""
    annotation = param.annotation
    if annotation is param.empty:
        return None
    if isinstance(annotation, str):
        function = factory.__init__ if inspect.isclass(factory) else factory
        try:
            return eval(annotation, getattr(function, "__globals__", {}))  # what typing does too
        except Exception:  # unresolvable: nothing to convert to
            return None
    return annotation


def _coerce(label: str, option: str, value: Any, hint: Any) -> Any:
    if not isinstance(value, str) or hint is None:
        return value
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    choices = typing.get_args(hint) if union else (hint,)
    if str in choices:
        return value
    for target in (bool, int, float):
        if target not in choices:
            continue
        if target is bool:
            if value.strip().lower() in _BOOLEANS:
                return _BOOLEANS[value.strip().lower()]
        else:
            try:
                return target(value)
            except ValueError:
                pass
        raise IrlmError(f"{label} option {option}={value!r} must be of type {target.__name__}.")
    return value


def make_corpus_source(name: str, **options: Any) -> CorpusSource:
    """Run corpus ``name``'s factory with the user's options, checking options and result."""
    from irlm_env.corpus import CorpusSource

    entry = corpus_registry().get(name)
    source = entry.factory(**bind_options("corpus", entry, options))
    if not isinstance(source, CorpusSource):
        raise IrlmError(
            f"corpus {name!r} (plugin {entry.plugin_name!r}) returned {type(source).__name__}, not an "
            "irlm_env.corpus.CorpusSource; its factory must return CorpusSource(units=[...])."
        )
    return source
