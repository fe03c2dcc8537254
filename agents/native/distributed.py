"""Data parallelism for the native agents under torchrun, so a run's results do not depend on
the number of processes.

torchrun starts N copies of the program and tells each its place (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). With N > 1 each process joins one
``torch.distributed`` group (gloo on the CPU, NCCL on CUDA, process r on ``cuda:LOCAL_RANK``)
and its :class:`Share` says what it does:

- It steps streams ``[r·n/N, (r+1)·n/N)`` of the ``n = --n-envs`` streams, each seeded as the
  single-process run seeds it (stream i with ``seed + i``): the global batch and the text it
  reads are those of one process with the same arguments.
- It draws the random numbers of the whole global batch and keeps its own rows
  (:meth:`Share.uniform`), so the sampled tokens are the single-process run's too: every
  process draws N times the numbers it uses, a few per stream and step, which is cheap beside
  the rollout's softmax.
- Its loss is its share's mean; gradients are averaged over processes before clipping and the
  optimizer step (:meth:`Share.average_gradients`), which makes them the global batch's.
- Statistics that span the batch (counts, the mean-reward baseline, the query budget's spend,
  data-dependent denominators) go through :meth:`Share.sum` or :meth:`Share.average`.

With N = 1 (no torchrun, or ``--nproc_per_node 1``) there is no group, every method is the
plain single-process computation, and nothing is communicated.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from irlm_agents.lm.devices import resolve_device
from irlm_agents.runs.run_dir import STOP_SIGNALS, StopRequested
from irlm_env.errors import IrlmError

T = TypeVar("T")


def world_size() -> int:
    """How many processes torchrun started for this job (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class StopAgreed(StopRequested):
    """Ctrl-C or SIGTERM that reached some process, acted on by all of them after the same update."""

    def __init__(self, stopped_by: signal.Signals, tokens: int) -> None:
        super().__init__(stopped_by)
        self.tokens = tokens


class StopSignals:
    """Notes Ctrl-C and SIGTERM while training, so the processes can stop together.

    Under torchrun one process must not stop alone: the others would wait for it in the next
    collective. So the signal is only noted here and shared at the next update's all-reduce
    (see ``Progress.add``), after which every process stops. A second signal gets the handler
    the process had before (Ctrl-C: ``KeyboardInterrupt``; SIGTERM: the process ends).
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._originals = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def flags(self) -> tuple[float, float]:
        """(SIGINT noted, SIGTERM noted) as numbers to all-reduce."""
        return float(self.received == signal.SIGINT), float(self.received == signal.SIGTERM)

    @contextmanager
    def watching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        replaced = {s: signal.signal(s, self._note) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in replaced.items():
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)
        original = self._originals[self.received]
        signal.signal(signum, signal.SIG_DFL if original is None else original)


@dataclass(frozen=True)
class Share:
    """This process's part of a (possibly data-parallel) run: its rank and its streams."""

    rank: int
    world_size: int
    streams: range  # the global indices of the streams this process steps
    total_streams: int
    device: torch.device  # where collectives run: the model's device (gloo: the CPU)
    stop: StopSignals = field(default_factory=StopSignals, compare=False)

    @classmethod
    def single(cls, n_envs: int, device: torch.device) -> Share:
        return cls(0, 1, range(n_envs), n_envs, device)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one process that validates, logs and writes the run directory."""
        return self.rank == 0

    def seeds(self, seed: int) -> list[int]:
        """The env seeds of this process's streams: stream i gets ``seed + i``, as in one process."""
        return [seed + i for i in self.streams]

    def uniform(self, rows: int, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """U[0, 1) numbers for this process's ``rows`` streams: its rows of the global batch's draw.

        Every process draws the same global (n, columns) block from its equally seeded
        generator, so the generators stay in step and the numbers a stream gets do not depend
        on the number of processes.
        """
        if not self.distributed:
            return torch.rand(rows, columns, device=device, dtype=dtype)
        if rows != len(self.streams):
            raise ValueError(f"uniform draws are per stream: expected {len(self.streams)} rows, got {rows}")
        draws = torch.rand(self.total_streams, columns, device=device, dtype=dtype)
        return draws[self.streams.start : self.streams.stop]

    def sum(self, *values: float) -> list[float]:
        """Each value summed over all processes, in one all-reduce (float64, exact for counts)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """``value``'s mean over processes: of per-share means, the global batch's mean."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def average_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Replace each gradient by its mean over processes: one all-reduce of one flat buffer.

        This is DistributedDataParallel's arithmetic. DDP itself only reduces the gradients of a
        backward pass that follows its wrapper's ``forward``, and these agents' updates never
        call ``forward`` (the fused features pass and the head surrogate of
        ``irlm_agents.native.gradients`` use the model's parts directly). A parameter without a
        gradient has none on every process (the control flow is the same), and keeps none.
        """
        if not self.distributed:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.div_(self.world_size)
        for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
            grad.copy_(part.view_as(grad))

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters everywhere (as DDP starts): equal seeds make them equal already."""
        if self.distributed:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object) on every process."""
        if not self.distributed:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the others: it fills the corpus cache they then read.

        Its verdict is broadcast, so that bad input it finds (a missing corpus file) ends every
        process with the same one-line error rather than the others in a lost connection.
        """
        if not self.distributed:
            yield
            return
        if not self.is_main:
            error = self.broadcast(None)
            if error is not None:
                raise IrlmError(error)
            yield
            return
        try:
            yield
        except IrlmError as exc:
            self.broadcast(str(exc))
            raise
        self.broadcast(None)


def join(device_name: str, n_envs: int) -> Share:
    """This process's share, joining torchrun's process group when there is more than one process."""
    size = world_size()
    if size <= 1:
        return Share.single(n_envs, resolve_device(device_name))
    if "RANK" not in os.environ:
        raise IrlmError(f"WORLD_SIZE is {size} but RANK is not set; start the program with torchrun")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if n_envs % size:
        raise IrlmError(
            f"--n-envs {n_envs} cannot be split evenly among {size} processes; "
            f"use a multiple of {size} (it is the global number of streams)"
        )
    device = _rank_device(device_name, local_rank)
    if not dist.is_initialized():
        # Joined once per process and kept for the next run in it: a second group made after
        # destroying the first reuses its rendezvous keys in torchrun's store and can hang.
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        atexit.register(_destroy_group)
    per_rank = n_envs // size
    return Share(rank, size, range(rank * per_rank, (rank + 1) * per_rank), n_envs, device)


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """The CPU, or ``cuda:LOCAL_RANK``: one GPU per process, as torchrun's processes expect."""
    device = resolve_device(device_name)
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise IrlmError(f"under torchrun the device must be cpu or cuda, got {device_name!r}")
    if ":" in device_name:
        raise IrlmError(
            f"under torchrun each process uses cuda:LOCAL_RANK; pass --device cuda instead of {device_name!r}"
        )
    if local_rank >= torch.cuda.device_count():
        raise IrlmError(
            f"process with LOCAL_RANK {local_rank} has no GPU of its own ({torch.cuda.device_count()} "
            "visible); start at most one process per GPU (--nproc_per_node)"
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def leave(share: Share, *, together: bool) -> None:
    """End a run's part in the process group; ``together``: every process got here, so meet.

    Without the barrier a process that finished first may exit while another is still in the
    last collective, which then fails. After an error on one process there is nobody to meet
    (the others are stopped by torchrun or by their failing collective) and collectives may be
    left half done, so the group is destroyed rather than kept for another run.
    """
    if not share.distributed or not dist.is_initialized():
        return
    if together:
        dist.barrier()
    else:
        _destroy_group()


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
