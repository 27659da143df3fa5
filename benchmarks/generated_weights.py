"""Whether the weights a device bundle generates (instead of carrying them) change latency:
blocks and whole members timed through onnxruntime with their real weights and with generated
ones, side by side in one process.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/generated_weights.py [--space default]
        [--blocks 60] [--members 10] [--repeats 20] [--seed 0]

Per model, both sessions are timed in the same interleaved rounds (`measure_calls`); prints the
median and range of generated / real over blocks and over members, with the bytes each variant's
ONNX files take.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from mbnas.cost.block_set import space_entries
from mbnas.cost.device_script import measure_calls, onnxruntime_call
from mbnas.cost.runtimes import batched, onnx_bytes, without_weights
from mbnas.nn import build
from mbnas.space import load_space


def paired_calls(models: dict[str, tuple[Any, tuple[int, ...]]]
                 ) -> tuple[dict[str, Callable[[], Any]], dict[str, int]]:
    """Per model (module, input shape) a call with its real weights (``name/real``) and one with
    generated weights (``name/generated``); the bytes of each variant's files."""
    calls, size = {}, {"real": 0, "generated": 0}
    for name, (module, shape) in models.items():
        real = onnx_bytes(module, shape)
        stripped, weights = without_weights(real)
        calls[f"{name}/real"] = onnxruntime_call(real, shape, 1)
        calls[f"{name}/generated"] = onnxruntime_call(stripped, shape, 1, weights)
        size["real"] += len(real)
        size["generated"] += len(stripped)
    return calls, size


def ratios(timed: dict[str, dict[str, float]], names: list[str]) -> list[float]:
    """generated / real (the minimum of the repeats) per model."""
    return [timed[f"{n}/generated"]["min_ms"] / timed[f"{n}/real"]["min_ms"] for n in names]


def describe(label: str, values: list[float], size: dict[str, int]) -> str:
    return (f"{label}: generated / real median {statistics.median(values):.3f}, range "
            f"{min(values):.3f}-{max(values):.3f} over {len(values)}; files "
            f"{size['real'] / 1e6:.1f} MB real, {size['generated'] / 1e6:.2f} MB generated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="default")
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    space = load_space(args.space)
    rng = random.Random(args.seed)
    entries = rng.sample(space_entries(space), min(args.blocks, len(space_entries(space))))
    blocks = {e.key: (e.module(), batched(e.shape, 1)) for e in entries}
    archs = [space.sample_random(rng) for _ in range(args.members)]
    members = {f"member-{i}": (build(a), (1, a.in_channels, a.resolution, a.resolution))
               for i, a in enumerate(archs)}
    for label, models in (("blocks", blocks), ("members", members)):
        calls, size = paired_calls(models)
        timed = measure_calls(calls, 5, args.repeats)
        print(describe(label, ratios(timed, list(models)), size), flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
