from __future__ import annotations

import pytest
import torch

from irlm_agents.lm.devices import available_devices, resolve_device
from irlm_env.errors import IrlmError


def test_cpu_and_device_objects() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_picks_best_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:7", torch.device("cuda")])
def test_absent_cuda_is_an_error_not_a_fallback(spec: str | torch.device) -> None:
    if torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("machine really has these GPUs")
    if torch.cuda.is_available() and str(spec) != "cuda:7":
        assert resolve_device(spec).type == "cuda"
        return
    with pytest.raises(IrlmError, match="not usable.*available on this machine: .*cpu"):
        resolve_device(spec)


def test_cuda_faked_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(IrlmError, match="only 2 CUDA"):
        resolve_device("cuda:2")
    assert available_devices()[:2] == ["cuda:0", "cuda:1"]


def test_mps_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(IrlmError, match="MPS"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_names(spec: str) -> None:
    with pytest.raises(IrlmError, match="device"):
        resolve_device(spec)


def test_wrong_type() -> None:
    with pytest.raises(IrlmError, match="string"):
        resolve_device(3)  # type: ignore[arg-type]
