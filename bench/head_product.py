"""The output layer's product step by step (a bandit rollout) against over a whole segment (an update).

A native bandit agent must run the vocabulary-sized output layer at every step of its rollout,
over the 32 streams only, to draw its candidates before the env moves on; supervised training
runs it once over a whole segment of 32 x 35 rows. This times both shapes, and the step-by-step
product through oneDNN with the weight packed once (PyTorch's private inference kernel
``torch.ops.mkldnn._linear_pointwise``, where the build has it), on the benchmark model's head
(10,000 x 256, float32, one thread), in interleaved rounds, as microseconds per row and as
ratios to the whole-segment product of the same process.

    python bench/head_product.py
    python bench/head_product.py --rounds 8 --calls 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

VOCAB, HIDDEN, STREAMS, STEPS = 10_000, 256, 32, 35


def per_row(product: Callable[[], torch.Tensor], rows: int, calls: int) -> float:
    """Microseconds per row of ``calls`` calls of ``product`` (after a few untimed ones)."""
    for _ in range(3):
        product()
    start = time.perf_counter()
    for _ in range(calls):
        product()
    return (time.perf_counter() - start) / calls / rows * 1e6


def products(weight: torch.Tensor, bias: torch.Tensor) -> dict[str, tuple[Callable[[], torch.Tensor], int]]:
    """name -> (one call, rows per call)."""
    step = torch.randn(STREAMS, HIDDEN)
    double = torch.randn(2 * STREAMS, HIDDEN)
    segment = torch.randn(STREAMS * STEPS, HIDDEN)
    shapes: dict[str, tuple[Callable[[], torch.Tensor], int]] = {
        f"whole segment ({STREAMS * STEPS} rows)": (lambda: F.linear(segment, weight, bias), STREAMS * STEPS),
        f"step by step ({STREAMS} rows)": (lambda: F.linear(step, weight, bias), STREAMS),
        f"step by step, {2 * STREAMS} rows": (lambda: F.linear(double, weight, bias), 2 * STREAMS),
    }
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, STREAMS)
        shapes[f"step by step ({STREAMS} rows), oneDNN packed"] = (
            lambda: torch.ops.mkldnn._linear_pointwise(step, packed, bias, "none", [], ""), STREAMS)
    return shapes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=100, help="calls of the step-by-step product per round "
                                                                  "(the whole-segment product gets a 35th of them)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    options = parser.parse_args(argv)
    if options.rounds < 1 or options.calls < 35 or options.threads < 1:
        parser.error("--rounds and --threads must be at least 1 and --calls at least 35")
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    weight, bias = torch.randn(VOCAB, HIDDEN), torch.randn(VOCAB)
    shapes = products(weight, bias)
    times: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(options.rounds):
        for name, (product, rows) in shapes.items():
            times[name].append(per_row(product, rows, max(1, options.calls * STREAMS // rows)))
    reference = statistics.median(next(iter(times.values())))
    print(f"output layer {VOCAB} x {HIDDEN}, float32, {options.threads} thread(s), median of {options.rounds} rounds")
    print(f"{'product':44s} {'us/row':>7s} {'x whole segment':>16s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:44s} {median:7.1f} {median / reference:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
