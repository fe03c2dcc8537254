"""User-facing errors.

Every mistake a user can make (a wrong name, a bad file, an impossible size) raises an
``IrlmError``. It subclasses ``ValueError`` so callers that already catch ``ValueError`` keep
working, and so the command line can print it as one line without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class IrlmError(ValueError):
    """A problem with the user's input or files; the message names the problem and the fix."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return a "did you mean" hint plus the available names, for unknown-name errors."""
    available = sorted(choices)
    close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(available) if available else "(none registered)"
    return f"{hint}available: {listed}"
