"""What keeping freed memory (``keep_freed_memory``, mbnas/cost/device_script.py) does to CPU
training: step time, page faults per step and peak memory, with glibc's defaults and with it.

    python benchmarks/allocator.py [--arch mobilenet_v3_small] [--resolution 128] [--batch 64]
        [--steps 12] [--pairs 2] [--threads 2]

Each variant runs in a process of its own (the setting cannot be undone within one), the two
alternating (A B A B ...); per run the median of ``--steps`` SGD steps on random data after 3
untimed ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def one_run(args: argparse.Namespace) -> dict[str, float]:
    """Time training steps in this process, with the allocator variant ``args.variant``."""
    import torch

    from mbnas.architectures import load_arch
    from mbnas.cost.device_script import keep_freed_memory
    from mbnas.nn import build

    if args.variant == "kept":
        keep_freed_memory()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    arch = load_arch(args.arch)
    model = build(arch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(args.batch, arch.in_channels, args.resolution, args.resolution)
    labels = torch.randint(0, arch.num_classes, (args.batch,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for _ in range(3):
        step()
    faults, times = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"step_ms": statistics.median(times) * 1e3,
            "faults_per_step": (usage.ru_minflt - faults) / args.steps,
            "max_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v3_small")
    for name, default in (("resolution", 128), ("batch", 64), ("steps", 12), ("pairs", 2),
                          ("threads", 2)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--variant", choices=["system", "kept"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_run(args)))
        return
    results: dict[str, list[dict[str, float]]] = {"system": [], "kept": []}
    for _ in range(args.pairs):
        for variant in results:
            command = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
            print(variant, results[variant][-1], flush=True)
    for variant, runs in results.items():
        step = statistics.median(r["step_ms"] for r in runs)
        faults = statistics.median(r["faults_per_step"] for r in runs)
        rss = max(r["max_rss_mb"] for r in runs)
        print(f"{variant:<7} step {step:7.1f} ms   faults/step {faults:8.0f}   peak {rss:6.0f} MB")
    ratio = (statistics.median(r["step_ms"] for r in results["kept"])
             / statistics.median(r["step_ms"] for r in results["system"]))
    print(f"kept / system step time: {ratio:.2f}")


if __name__ == "__main__":
    main()
