"""bench/gpu_check.py on a machine without a GPU: one clear line and its documented exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: run bench/gpu_check.py itself")
def test_gpu_check_says_there_is_no_cuda_device() -> None:
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("no CUDA device: torch ") and len(done.stderr.splitlines()) == 1
    assert done.stdout == ""
