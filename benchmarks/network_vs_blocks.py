"""How far a whole network's time lies from the sum of its blocks timed alone, with the caches
warm (as a latency table times its entries) and with them flushed before every call.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/network_vs_blocks.py [--space cifar]
        [--runtime torch] [--members 60] [--seed 100] [--repeats 60] [--flush-mb 64]
        [--filler-mb 0]

The members are those `latency_model_error.py --seed` times (the same generator and order), so
its per-member errors can be set beside these rows. Per member: million parameters, the whole
network (fastest of ``--repeats``), the sum of its blocks warm and flushed (and, with
``--filler-mb``, each block timed right after reading that many MB of other weights), the
whole against the warm sum, and where the whole lies between the warm and flushed sums (0:
warm, 1: flushed). Then the same by size of the member's weights.

A table adds up warm entries; where a network's weights do not all stay in the cache from one
inference to the next, each block pays to fetch its weights again, which the table does not
see. Flushing also evicts what a network keeps warm (its activations, the runtime's own code and
data), so the flushed sum is an upper bound, not a prediction.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from mbnas.arch import ArchSpec
from mbnas.cost.block_set import arch_entries
from mbnas.cost.device_script import fastest_after, keep_freed_memory, sample_times
from mbnas.cost.runtimes import RuntimeSettings, make_call, torch_threads
from mbnas.space import load_space
from mbnas.space_latency import member_call

BANDS = (1.0, 2.0, 3.0)  # million parameters: the bounds of the summary's bands


def warm_min(call: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """The fastest of ``repeats`` back-to-back calls (ms), after ``warmup``."""
    sample_times(call, warmup)
    return min(sample_times(call, repeats))


def member_row(arch: ArchSpec, settings: RuntimeSettings, repeats: int,
               befores: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """One member: its parameters, whole time, its blocks' warm sum and, per name in
    ``befores``, the sum of its blocks each timed right after that call (ms)."""
    row = {"whole": warm_min(member_call(arch, settings), repeats * 3), "warm": 0.0,
           **dict.fromkeys(befores, 0.0)}
    params = 0
    for entry in arch_entries(arch):
        module = entry.module()
        params += sum(p.numel() for p in module.parameters())
        call = make_call(module, entry.shape, settings)
        row["warm"] += warm_min(call, repeats)
        for name, before in befores.items():
            row[name] += fastest_after(call, before, repeats)
    return {"mparams": params / 1e6, **row}


def band(mparams: float) -> str:
    """The summary band a member of ``mparams`` million parameters falls in."""
    low = 0.0
    for high in BANDS:
        if mparams < high:
            return f"{low:g}-{high:g} M"
        low = high
    return f">= {low:g} M"


def position(row: dict[str, float]) -> float:
    """Where the whole lies between the warm (0) and the flushed (1) sums."""
    span = row["flushed"] - row["warm"]
    return (row["whole"] - row["warm"]) / span if span > 0 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--members", type=int, default=60)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--flush-mb", type=int, default=64)
    parser.add_argument("--filler-mb", type=int, default=0,
                        help="also time each block right after a matrix-vector product over this "
                             "many MB of weights (evicts weights, leaves the runtime warm)")
    args = parser.parse_args()
    keep_freed_memory()
    space = load_space(args.space)
    rng = random.Random(args.seed)
    archs = [space.sample_random(rng) for _ in range(args.members)]
    settings = RuntimeSettings(runtime=args.runtime)
    flush = torch.zeros(args.flush_mb * 2**20 // 4)
    befores = {"flushed": lambda: flush.add_(1.0)}
    if args.filler_mb:
        weights, vector = torch.randn(args.filler_mb * 2**20 // 4 // 256, 256), torch.randn(256)
        befores["filled"] = lambda: torch.mv(weights, vector)
    started, rows = time.perf_counter(), []
    with torch_threads(settings.threads):
        for index, arch in enumerate(archs):
            row = member_row(arch, settings, args.repeats, befores)
            rows.append(row)
            sums = "  ".join(f"{name} sum {row[name]:7.3f}" for name in befores)
            print(f"member {index:3d}  {row['mparams']:5.2f} M  whole {row['whole']:7.3f} ms  "
                  f"warm sum {row['warm']:7.3f}  {sums}  "
                  f"whole/warm {row['whole'] / row['warm'] - 1:+6.1%}  "
                  f"position {position(row):+.2f}", flush=True)
    print("by the member's weights: members, median whole/warm - 1, median position"
          + ("" if len(befores) == 1 else ", median whole/filled - 1"))
    for name in sorted({band(r["mparams"]) for r in rows}):
        group = [r for r in rows if band(r["mparams"]) == name]
        filled = ("" if "filled" not in befores else
                  f"  {statistics.median(r['whole'] / r['filled'] - 1 for r in group):+6.1%}")
        print(f"  {name:<9} {len(group):3d}  "
              f"{statistics.median(r['whole'] / r['warm'] - 1 for r in group):+6.1%}  "
              f"{statistics.median(position(r) for r in group):+.2f}{filled}")
    print(f"command: python benchmarks/network_vs_blocks.py {' '.join(sys.argv[1:])}  "
          f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
