"""Checking user-supplied option values: one place for the rules every option shares."""

from __future__ import annotations

from numbers import Integral

from irlm_env.errors import IrlmError


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
