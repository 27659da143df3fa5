"""Elastic overhead: one sandwich step of the supernet vs the same members as standalone networks.

For a few sets of sandwich members (largest, smallest, ``--random`` random ones), times one
supernet sandwich step (every member forward + backward on one batch, one optimiser step) and,
side by side in the same loop, the sum of one training step of each member built on its own with
``mbnas.build``. Reports medians over ``--repeats`` and the ratio (target ≤ 1.3), then the peak
memory of each mode, measured in a fresh subprocess each (peak RSS on CPU, peak allocated CUDA
memory on a GPU).

    python benchmarks/supernet_overhead.py --space cifar --batch 64 --repeats 5 --sets 3
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import mbnas
from mbnas.cost.device_script import keep_freed_memory
from mbnas.space import load_space
from mbnas.supernet import Supernet
from mbnas.supernet.training import sandwich_members, sandwich_step
from mbnas.train import resolve_device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--resolution", type=int, default=None, help="default: the space's")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--random", type=int, default=2, help="random members per step")
    parser.add_argument("--sets", type=int, default=3, help="sets of sandwich members")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory", choices=("supernet", "standalone"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def setup(args: argparse.Namespace):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    space = load_space(args.space)
    space = space.replace(resolution=args.resolution or space.resolution)
    size = space.resolution
    images = torch.randn(args.batch, space.in_channels, size, size, device=device)
    labels = torch.randint(0, space.num_classes, (args.batch,), device=device)
    return device, space, images, labels


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def supernet_step(supernet, optimizer, archs, images, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    sandwich_step(supernet, archs, images, labels, torch.nn.CrossEntropyLoss(), distill=True)
    optimizer.step()


def standalone_step(model, optimizer, images, labels) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def timed(device: torch.device, function, *args) -> float:
    synchronize(device)
    start = time.perf_counter()
    function(*args)
    synchronize(device)
    return time.perf_counter() - start


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, nesterov=True)


def timing(args: argparse.Namespace) -> None:
    device, space, images, labels = setup(args)
    supernet = Supernet(space).to(device)
    optimizer = sgd(supernet)
    rng = random.Random(0)
    print(f"space {space.name} at {space.resolution} px, batch {args.batch}, device {device}, "
          f"{args.threads} threads, {args.repeats} repeats (medians)")
    print("| set | members' MMACs | supernet step ms | standalone sum ms | ratio |")
    print("|---|---|---:|---:|---:|")
    ratios = []
    for index in range(args.sets):
        archs = sandwich_members(space, rng, args.random)
        models = [mbnas.build(arch).to(device).train() for arch in archs]
        optimizers = [sgd(model) for model in models]
        supernet_step(supernet, optimizer, archs, images, labels)  # warm-up
        for model, opt in zip(models, optimizers, strict=True):
            standalone_step(model, opt, images, labels)
        super_times, alone_times = [], []
        for _ in range(args.repeats):
            super_times.append(timed(device, supernet_step, supernet, optimizer, archs, images,
                                     labels))
            alone_times.append(sum(timed(device, standalone_step, model, opt, images, labels)
                                   for model, opt in zip(models, optimizers, strict=True)))
        ratio = statistics.median(s / a for s, a in zip(super_times, alone_times, strict=True))
        ratios.append(ratio)
        macs = ", ".join(f"{mbnas.count(arch).macs / 1e6:.0f}" for arch in archs)
        print(f"| {index + 1} | {macs} | {statistics.median(super_times) * 1e3:.0f} | "
              f"{statistics.median(alone_times) * 1e3:.0f} | {ratio:.2f}x |")
    print(f"median ratio over sets: {statistics.median(ratios):.2f}x (target <= 1.30)")
    print(f"parameters: supernet {sum(p.numel() for p in supernet.parameters()) / 1e6:.1f}M")
    for mode in ("supernet", "standalone"):
        command = [sys.executable, __file__, *sys.argv[1:], "--memory", mode]
        print(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip())


def resident_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(args: argparse.Namespace) -> None:
    """Peak memory of three steps of one mode, in this fresh process."""
    device, space, images, labels = setup(args)
    archs = sandwich_members(space, random.Random(0), args.random)
    base = resident_mib("VmRSS")
    if args.memory == "supernet":
        supernet = Supernet(space).to(device)
        optimizer = sgd(supernet)
        for _ in range(3):
            supernet_step(supernet, optimizer, archs, images, labels)
    else:
        models = [mbnas.build(arch).to(device).train() for arch in archs]
        optimizers = [sgd(model) for model in models]
        for _ in range(3):
            for model, opt in zip(models, optimizers, strict=True):
                standalone_step(model, opt, images, labels)
    peak = resident_mib("VmHWM")
    line = f"peak memory, {args.memory}: {peak - base:.0f} MiB above the {base:.0f} MiB baseline"
    if device.type == "cuda":
        line += f"; CUDA peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    print(line)


if __name__ == "__main__":
    arguments = parse_args()
    keep_freed_memory()  # as an mbnas command does (BENCHMARKS.md, Latency table error)
    if arguments.memory:
        memory(arguments)
    else:
        timing(arguments)
