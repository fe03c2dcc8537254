"""Run under torchrun by tests/test_distributed.py: trains each configuration of a JSON file in
turn, every process saving its final parameters and metrics, or how its run ended, to
OUT/<name>.rank<r>.pt.

    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py CONFIGS.json OUT

Faults a configuration can ask for, on one process only (``"fault": [kind, rank, update]``):
``same_streams`` gives every process the first process's streams (the mistake the comparison
must catch); ``signal`` sends SIGINT to the process before that update's optimizer step;
``error`` raises there, as a crashing process would (run it last: the group is gone after it).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

import irlm_agents.native.training as training
from irlm_agents.native.distributed import Share, join

torch.set_num_threads(1)
RANK = int(os.environ["RANK"])


def _same_streams(device_name: str, n_envs: int) -> Share:
    share = join(device_name, n_envs)
    return dataclasses.replace(share, streams=range(0, len(share.streams)))


def _faulty_optimise(kind: str, update: int) -> Any:
    calls = 0

    def optimise(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == update and kind == "signal":
            os.kill(os.getpid(), signal.SIGINT)
        if calls == update and kind == "error":
            raise RuntimeError("this process fails on purpose")
        training.optimise(*args, **kwargs)

    return optimise


def run(config: dict[str, Any], out: Path) -> dict[str, Any]:
    module = importlib.import_module(f"irlm_agents.{config['agent']}")
    kind, rank, update = config.get("fault", (None, None, None))
    training.join = _same_streams if kind == "same_streams" and rank == RANK else join  # type: ignore[attr-defined]
    module.optimise = _faulty_optimise(kind, update) if kind in ("signal", "error") and rank == RANK else training.optimise
    try:
        result = module.train(module.Args(**config["options"], run_dir=str(out / config["name"])))
    except BaseException as exc:  # noqa: BLE001 - the test reads how each process ended
        return {"ended": type(exc).__name__, "message": str(exc), "tokens": getattr(exc, "tokens", None),
                "signal": int(getattr(exc, "signal", 0))}
    return {
        "ended": "completed",
        "params": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
        "metrics": result.metrics,
        "run_dir": str(result.run_dir),
    }


def main(configs_path: str, out: str) -> None:
    for config in json.loads(Path(configs_path).read_text()):
        torch.save(run(config, Path(out)), Path(out) / f"{config['name']}.rank{RANK}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
