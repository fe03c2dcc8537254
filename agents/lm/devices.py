"""Turn a device name into a ``torch.device`` or say plainly why it cannot be used.

Torch and SB3 happily accept ``"cuda"`` on a machine without a GPU (SB3 even swaps in the CPU
without a word). A run that was meant for a GPU and silently crawls on the CPU wastes hours, so
here an unavailable device is an error that lists what this machine does have.

``"auto"`` is an explicit request for the best device present: CUDA if available, else Apple MPS,
else the CPU. That is a documented choice, not a fallback: any named device must exist.
"""

from __future__ import annotations

import torch

from irlm_env.errors import IrlmError

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device names usable on this machine, best first (for error messages and docs)."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def _unavailable(spec: str, why: str) -> IrlmError:
    return IrlmError(
        f"device {spec!r} is not usable: {why}; available on this machine: "
        f"{', '.join(available_devices())} (or 'auto' to pick the best of them)"
    )


def resolve_device(spec: str | torch.device) -> torch.device:
    """Return the torch device for ``spec`` ("cpu", "cuda", "cuda:N", "mps", "auto")."""
    if isinstance(spec, torch.device):
        device = spec
        name = str(spec)
    elif isinstance(spec, str):
        name = spec.strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            device = torch.device(name)
        except RuntimeError:
            raise IrlmError(
                f"unknown device {spec!r}; use one of {', '.join(DEVICE_NAMES)}; "
                f"available on this machine: {', '.join(available_devices())}"
            ) from None
    else:
        raise IrlmError(f"device must be a string such as 'cpu' or 'auto', got {type(spec).__name__}")

    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _unavailable(name, "CUDA is not available (no GPU, or torch was built without CUDA)")
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise _unavailable(name, f"there are only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise _unavailable(name, "Apple MPS is not available on this machine")
        return torch.device("mps")
    raise IrlmError(
        f"unsupported device {name!r}; use one of {', '.join(DEVICE_NAMES)}; "
        f"available on this machine: {', '.join(available_devices())}"
    )
