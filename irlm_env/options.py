"""Checking user-supplied option values: one place for the rules every option shares.

Two jobs: :func:`check_int` for the integer settings irlm_env and irlm_agents take, and
:func:`bind_options` for the options a plugin factory takes, which arrive as keywords from
Python or as strings from a command line and are checked against the factory's signature.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from numbers import Integral, Number, Real
from typing import Any

import numpy as np

from irlm_env.errors import IrlmError, suggest

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# The types a string option can be converted to, in the order they are tried.
_CONVERTIBLE = (bool, int, float)
# Annotations that take any value: text that reads as a number or bool becomes one.
_ANY = (object, typing.Any)
# The bool spellings that cannot be numbers, for an option that takes a bool or a number.
_WORDS = ("true", "yes", "false", "no")
#: The largest seed numpy's legacy seeding (``np.random.seed``) takes; every seed option keeps to it.
SEED_MAX = 2**32 - 1


def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]``, or an error naming the option.

    ``bool`` is refused although it is an ``int`` subclass: ``n_envs=True`` is a slip, not 1.
    numpy integers are accepted, since they arrive from arrays and from seeding helpers.
    """
    if maximum is not None:
        kind = f"an integer from {minimum} to {maximum}"
    else:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise IrlmError(f"{name} must be {kind}, got {value!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise IrlmError(f"{name} must be {kind}, got {number}")
    return number


def bind_options(
    label: str, factory: Callable[..., Any], options: Mapping[str, Any], *, skip: int = 0, kind: str = "plugin"
) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s signature and convert strings to its annotated types.

    Done before the factory runs so a typo is reported with the accepted options instead of a
    ``TypeError`` from deep inside a plugin, and so options typed on a command line
    (``scale=0.3``) reach the factory as the int, float or bool it declares. ``label`` names the
    factory in messages, ``kind`` says whose options they are (``reward``, ``corpus``), and
    ``skip`` is the number of leading positional parameters irlm_env fills itself.
    """
    try:
        signature = inspect.signature(factory)
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
    function = factory.__init__ if inspect.isclass(factory) else factory
    namespace = getattr(function, "__globals__", {})
    choices = {p.name: _choices(p.annotation, namespace) for p in named if p.annotation is not p.empty}
    bound = {name: _coerce(label, name, value, choices.get(name, ())) for name, value in options.items()}
    for name, value in bound.items():
        _check_type(label, name, value, choices.get(name, ()))
    return bound


def _choices(annotation: Any, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    """The types an annotation allows, as far as conversion cares (``int | None`` -> int, None).

    String annotations (``from __future__ import annotations``) are read with ``ast`` and their
    names looked up, never evaluated: a plugin's annotation is not code irlm_env should run,
    and ``typing.get_type_hints`` gives up on every parameter when one names a type imported
    only under ``TYPE_CHECKING`` (as ``Corpus`` often is). What cannot be read converts nothing.
    """
    if isinstance(annotation, str):
        try:
            return _read(ast.parse(annotation, mode="eval").body, namespace)
        except SyntaxError:
            return ()
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _read(node: ast.expr, namespace: Mapping[str, Any]) -> tuple[Any, ...]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _read(node.left, namespace) + _read(node.right, namespace)
    if isinstance(node, ast.Constant):
        if node.value is None:
            return (type(None),)
        return _choices(node.value, namespace) if isinstance(node.value, str) else ()
    if isinstance(node, ast.Subscript):
        origin = _lookup(node.value, namespace)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if origin is typing.Optional:
            return _read(args[0], namespace) + (type(None),)
        if origin is typing.Union:
            return tuple(choice for arg in args for choice in _read(arg, namespace))
        return (object,)  # list[int], Literal[...]: allows values this module does not check
    found = _lookup(node, namespace)
    return (object,) if found is None else (found,)


def _lookup(node: ast.expr, namespace: Mapping[str, Any]) -> Any:
    """A plain name (``int``) or a module attribute (``typing.Optional``), looked up statically."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id, vars(builtins).get(node.id))
    if isinstance(node, ast.Attribute):
        module = _lookup(node.value, namespace)
        if isinstance(module, types.ModuleType):
            return vars(module).get(node.attr)
    return None


# The annotations whose values are checked; an annotation naming anything else allows anything.
_CHECKED: dict[Any, Callable[[Any], bool]] = {
    bool: lambda value: isinstance(value, (bool, np.bool_)),
    int: lambda value: isinstance(value, Integral) and not isinstance(value, (bool, np.bool_)),
    float: lambda value: isinstance(value, Real) and not isinstance(value, (bool, np.bool_)),
    str: lambda value: isinstance(value, str),
    type(None): lambda value: value is None,
}


def _check_type(label: str, option: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Refuse a value its plain annotation (``float``, ``int | None``) does not allow.

    Said here, a wrong type names the user's option; passed on, it fails inside the plugin or is
    blamed on it when the reward returns nonsense.
    """
    if not choices or not all(choice in _CHECKED for choice in choices):
        return
    if not any(_CHECKED[choice](value) for choice in choices):
        allowed = " or ".join("None" if choice is type(None) else choice.__name__ for choice in choices)
        raise IrlmError(f"{label} option {option}={value!r} must be of type {allowed}, got {type(value).__name__}.")


def _literal(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true`` -> True; anything else, ``NaN`` included, stays text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value if isinstance(value, (bool, int, float)) else text


def _target(choice: Any) -> type | None:
    """The conversion an annotated type asks for: its own for bool, int and float, int for the
    integer ABC and numpy's integer types, float for the other number ABCs and numpy's floats.

    Other classes built on numbers (an ``IntEnum``, ``Fraction``) read text their own way, so
    their text passes through unconverted.
    """
    if choice in _CONVERTIBLE:
        return choice  # type: ignore[no-any-return]
    if choice is Integral or (isinstance(choice, type) and issubclass(choice, np.integer)):
        return int
    if choice in (Number, Real, np.number) or (isinstance(choice, type) and issubclass(choice, np.floating)):
        return float
    return None


def _coerce(label: str, option: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """A string option converted to the first annotated type it reads as.

    ``None`` first where allowed (``str | None`` takes ``none`` as None, not as the text), then
    text where ``str`` is allowed (so ``float | str`` keeps ``0.5`` as text: the annotation does
    not say which), then bool, int and float in turn, any number type counting as int or float;
    where a number is allowed too, only a word (``true``, ``no``) is a bool. No annotation, or
    one that takes any value (``Any``), gets a number or bool if the text reads as one; text that
    no allowed number type reads goes to another class the union allows (``Path``) as it is.
    """
    if not isinstance(value, str):
        return value
    allowed = [choice for choice in choices if choice is not type(None)]
    word = value.strip().lower()
    if len(allowed) < len(choices) and word in ("none", "null"):
        return None
    if str in allowed:
        return value
    if not allowed or any(choice in _ANY for choice in allowed):
        return _literal(value)
    targets = sorted({t for t in map(_target, allowed) if t is not None}, key=_CONVERTIBLE.index)
    for target in targets:
        if target is bool:
            if word in (_WORDS if len(targets) > 1 else _BOOLEANS):
                return _BOOLEANS[word]
            continue
        try:
            converted = target(value)
        except ValueError:
            continue
        if target is float and not math.isfinite(converted):
            raise IrlmError(f"{label} option {option}={value!r} must be a finite number.")
        return converted
    if targets and all(_target(choice) is not None for choice in allowed):
        kinds = " or ".join(target.__name__ for target in targets)
        raise IrlmError(f"{label} option {option}={value!r} must be of type {kinds}.")
    return value
