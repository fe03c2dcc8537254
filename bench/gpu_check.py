"""GPU readiness: every agent trains on CUDA, its checkpoints load on a CPU-only process, and
two GPUs train the single-process model under torchrun with NCCL.

On a CUDA machine, for each agent (native and SB3) this trains the same short run twice, with
``--device cuda`` and ``--device cpu``, and prints both tokens/s side by side; then loads every
checkpoint written on CUDA in a fresh process that sees no GPU (``CUDA_VISIBLE_DEVICES=``) and
runs it there; then, with two or more GPUs, runs tests/test_distributed.py on CUDA (NCCL).

    python bench/gpu_check.py                       # pydocs, 20,000 tokens per run
    python bench/gpu_check.py --corpus grammar --total-tokens 5000 --agent supervised

Exit status: 0 when every check passed, 1 when one failed, 2 when there is no CUDA device (the
message says so; nothing is run).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from irlm_agents.train_command import AGENTS

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = 2
#: Loads a checkpoint and predicts with it, in a process that sees no GPU.
LOAD_ON_CPU = """
import sys, torch
from irlm_agents.lm.checkpoints import load_model
assert not torch.cuda.is_available()
model = load_model(sys.argv[1], "cpu").model
logits, _ = model(torch.zeros(2, 3, dtype=torch.long))
assert logits.device.type == "cpu" and torch.isfinite(logits).all()
"""


def train(agent: str, device: str, options: dict[str, Any], run_dir: Path) -> float:
    """Tokens per second of one short run (the run's own figure, or tokens over wall time)."""
    module = importlib.import_module(AGENTS[agent])
    start = time.perf_counter()
    result = module.train(module.Args(**options, device=device, run_dir=str(run_dir)))
    seconds = time.perf_counter() - start
    return float(result.metrics.get("tokens_per_second") or options["total_tokens"] / seconds)


def loads_on_cpu(checkpoint: Path) -> bool:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", LOAD_ON_CPU, str(checkpoint)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"    {checkpoint}: does not load on the CPU\n{done.stderr[-2000:]}")
    return done.returncode == 0


def distributed_on_gpus() -> bool:
    """tests/test_distributed.py with two processes on two GPUs (NCCL)."""
    env = {**os.environ, "IRLM_TEST_DEVICE": "cuda"}
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/test_distributed.py"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    print("\n".join(line for line in done.stdout.splitlines() if "max |single" in line or "passed" in line or "failed" in line))
    return done.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", action="append", choices=sorted(AGENTS), help="agent to check (repeatable; default all)")
    parser.add_argument("--corpus", default="pydocs")
    parser.add_argument("--total-tokens", type=int, default=20_000)
    options = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            f"no CUDA device: torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False); "
            "run this on a machine with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        return NO_CUDA
    print(f"{torch.cuda.device_count()} CUDA device(s): {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    run = {
        "corpus": options.corpus,
        "total_tokens": options.total_tokens,
        "eval_every": 10**12,
        "eval_tokens": 2000,
        "progress": False,
    }
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'agent':<14} {'cuda tok/s':>11} {'cpu tok/s':>10} {'ratio':>6}  checkpoints load on CPU")
        for agent in options.agent or list(AGENTS):
            cuda = train(agent, "cuda", run, Path(tmp) / f"{agent}-cuda")
            cpu = train(agent, "cpu", run, Path(tmp) / f"{agent}-cpu")
            loaded = all(loads_on_cpu(path) for path in sorted((Path(tmp) / f"{agent}-cuda").glob("*.irlm")))
            ok &= loaded
            print(f"{agent:<14} {cuda:>11,.0f} {cpu:>10,.0f} {cuda / cpu:>5.1f}x  {'yes' if loaded else 'NO'}", flush=True)
    if torch.cuda.device_count() >= 2:
        ok &= distributed_on_gpus()
    else:
        print("one GPU: the torchrun test on NCCL needs two, skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
