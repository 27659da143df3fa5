"""How long the analytical cost model takes per architecture (the search calls it per trial).

    python benchmarks/cost_model.py [--repeats 200]

Prints, per built-in architecture and for random members, the median time of `mbnas.count`
next to the time of building the module, so the ratio shows what the analytical model saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import mbnas
from mbnas.cost.device_script import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import random_arch  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as an mbnas command does (BENCHMARKS.md, Latency table error)
    archs = [mbnas.load_arch(name) for name in mbnas.available_archs()]
    archs += [random_arch(seed, resolution=224) for seed in range(5)]
    print(f"{'architecture':<20} {'blocks':>6} {'count() ms':>11} {'build() ms':>11} {'ratio':>7}")
    for arch in archs:
        count_s = median_seconds(lambda arch=arch: mbnas.count(arch), args.repeats)
        build_s = median_seconds(lambda arch=arch: mbnas.build(arch), max(3, args.repeats // 50))
        print(f"{arch.name:<20} {arch.total_blocks:>6} {count_s * 1e3:>11.3f} "
              f"{build_s * 1e3:>11.1f} {build_s / count_s:>6.0f}x")


if __name__ == "__main__":
    main()
