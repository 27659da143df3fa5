"""Scale out: supernet warm-up and candidate training throughput with 1 and N processes, with
AMP and channels_last; on CUDA also the largest subnet trained through the supernet vs the same
architecture built as a plain static network (the elastic overhead).

Every figure is images per second of training data: a warm-up step takes one global batch and
runs the sandwich members (largest, smallest, ``--random`` random ones, in-place distillation)
on it with the library's own steps (``sandwich_step``, ``average_gradients``,
``optimizer_step``); each configuration replays the same members, once untimed (first calls of
every conv shape: cuDNN builds its plans, slow for channels_last on GPUs) and then
``--repeats`` times timed, medians. ``--quick`` repeats one set of members every step (fewer
shapes to build plans for) and stops starting new configurations after ``--max-seconds``.

    python benchmarks/scale_out.py --threads 2                     # CPU: this machine
    python benchmarks/scale_out.py --device cuda --quick --out scale_out.json   # a GPU, ~3 min
    python benchmarks/scale_out.py --device cuda --gpu-parts elastic --gpu-spaces cifar

CPU: 1 process with all ``--threads`` vs ``--processes`` gloo processes sharing them (the same
global batch), side by side in each repeat, for the warm-up and for a training evaluator's
candidate (the space's largest member, built and trained ``--steps`` steps by ``train_briefly``
as ``evaluator=scratch`` trains it: DistributedDataParallel with several processes, its set-up
included); then fp32 vs bf16 autocast, NCHW vs channels_last. ``--parts`` picks among
``warmup,candidate,precision,layout``; ``layout`` times float32 NCHW against channels_last
step by step (the two take turns), for ``--layout-archs`` trained as static networks and for the
space's warm-up: what the CPU default layout rests on.
CUDA: per space (mobilenet_v3 at 224 px, batch 256; cifar at 32 px, batch 512) the warm-up in
fp32 / bf16 / fp16 x NCHW / channels_last, and the largest member as a subnet vs static, in
fp32 NCHW and in bf16 channels_last (target: ratio <= 1.1). The table comes last; ``--out``
writes everything as JSON. Needs torch, numpy, pyyaml, tqdm, pillow, hydra-core and omegaconf
(mbnas's modules import the last two), not optuna.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import platform
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MISSING = [name for name in ("torch", "numpy", "yaml", "tqdm", "PIL", "hydra", "omegaconf")
           if importlib.util.find_spec(name) is None]
if MISSING:
    sys.exit(f"scale_out.py: missing modules {', '.join(MISSING)}: pip install torch numpy "
             "pyyaml tqdm pillow hydra-core omegaconf (offline: the wheels of "
             "benchmarks/device_bundle.py, installed first)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mbnas from this checkout

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from mbnas.architectures import load_arch  # noqa: E402
from mbnas.budget import Budget, WithinBudget  # noqa: E402
from mbnas.cost.device_script import keep_freed_memory  # noqa: E402
from mbnas.distributed import average_gradients, setup, teardown  # noqa: E402
from mbnas.evaluators.brief_training import train_briefly  # noqa: E402
from mbnas.nn import build  # noqa: E402
from mbnas.precision import Precision, optimizer_step  # noqa: E402
from mbnas.space import load_space  # noqa: E402
from mbnas.supernet import Supernet  # noqa: E402
from mbnas.supernet.training import sandwich_members, sandwich_step  # noqa: E402
from mbnas.train import OptimConfig, make_optimization, train_step  # noqa: E402
from mbnas.units import parse_count  # noqa: E402

GPU_CASES = (("mobilenet_v3", 224, 256), ("cifar", 32, 512))
LAYOUTS = {"NCHW": False, "channels_last": True}
GRAD_CLIP = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="few steps (GPU: about 3 minutes)")
    parser.add_argument("--space", default="cifar", help="CPU: the space")
    parser.add_argument("--resolution", type=int, default=32, help="CPU: training resolution")
    parser.add_argument("--batch", type=int, default=64, help="CPU: the global batch")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--random", type=int, default=2, help="random members per step")
    parser.add_argument("--threads", type=int, default=2, help="CPU: cores to use in all")
    parser.add_argument("--processes", type=int, default=2, help="CPU: data-parallel processes")
    parser.add_argument("--parts", default="warmup,candidate,precision",
                        help="CPU: what to measure (comma-separated; also: layout)")
    parser.add_argument("--layout-archs", default="mobilenet_v2,mobilenet_v3_large,"
                        "efficientnet_b0", help="CPU layout part: static networks to train")
    parser.add_argument("--layout-batch", type=int, default=16,
                        help="CPU layout part: the static networks' batch")
    parser.add_argument("--budget", default=None,
                        help="CPU layout part: warm up members within this many MACs (e.g. 20M), "
                             "as a search's budget-aware warm-up does; default: the whole space")
    parser.add_argument("--gpu-parts", default="warmup,elastic",
                        help="CUDA: what to measure (comma-separated)")
    parser.add_argument("--gpu-spaces", default=",".join(case[0] for case in GPU_CASES),
                        help="CUDA: which of the spaces (comma-separated)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="GPU: start no configuration after this (default: 200 with --quick)")
    args = parser.parse_args(argv)
    quick_steps, quick_repeats = (4, 2) if args.quick else (10, 3)
    args.steps = args.steps or quick_steps
    args.repeats = args.repeats or quick_repeats
    if args.max_seconds is None:
        args.max_seconds = 200.0 if args.quick else float("inf")
    return args


# ---------------------------------------------------------------- measured steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(space, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    size = space.resolution
    images = torch.randn(batch, space.in_channels, size, size, generator=generator)
    labels = torch.randint(0, space.num_classes, (batch,), generator=generator)
    return images.to(device), labels.to(device)


class Warmup:
    """A supernet with the warm-up's optimiser, stepped on one batch with the library's steps."""

    def __init__(self, space, device: torch.device, precision: Precision, members: int,
                 fixed: bool = False, drawn_from=None):
        torch.manual_seed(0)
        self.space, self.device, self.precision, self.members = space, device, precision, members
        # What the members come from: the space, or its members within a budget (as a search's
        # budget-aware warm-up draws them).
        self.drawn_from = drawn_from or space
        self.fixed = fixed  # one set of members every step (quick runs: fewer shapes)
        self.supernet = precision.model(Supernet(space).to(device))
        self.optimizer, _, self.criterion = make_optimization(self.supernet,
                                                              OptimConfig(lr=0.01), 10**6)
        self.scaler = precision.scaler()

    def steps(self, images: torch.Tensor, labels: torch.Tensor, count: int, seed: int) -> float:
        """Seconds for ``count`` steps on the members seed ``seed`` draws."""
        rng = random.Random(seed)
        archs = sandwich_members(self.drawn_from, rng, self.members)
        synchronize(self.device)
        start = time.perf_counter()
        for step in range(count):
            if step and not self.fixed:
                archs = sandwich_members(self.drawn_from, rng, self.members)
            self.optimizer.zero_grad(set_to_none=True)
            sandwich_step(self.supernet, archs, images, labels, self.criterion, True,
                          precision=self.precision, scaler=self.scaler)
            average_gradients(self.supernet.parameters())
            optimizer_step(self.optimizer, self.supernet.parameters(), GRAD_CLIP, self.scaler)
        synchronize(self.device)
        return time.perf_counter() - start


def warmup_rate(space, batch: int, device: torch.device, precision: Precision,
                args: argparse.Namespace) -> list[float]:
    """Images per second of the warm-up, one figure per repeat (after untimed steps)."""
    images, labels = synthetic_batch(space, batch, device)
    warmup = Warmup(space, device, precision, args.random, fixed=args.quick)
    warmup.steps(images, labels, args.steps, seed=1)  # the same members untimed: allocations,
    # member templates, kernels
    return [batch * args.steps / warmup.steps(images, labels, args.steps, seed=1)
            for _ in range(args.repeats)]


# ---------------------------------------------------------------- CPU: processes side by side


def candidate_seconds(space, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Seconds to build the space's largest member and train it ``steps`` steps on this rank's
    share of one batch with ``train_briefly`` (data-parallel in a process group)."""
    start = time.perf_counter()
    torch.manual_seed(0)
    train_briefly(build(space.largest()), itertools.repeat((images, labels)), steps,
                  OptimConfig(lr=0.01, grad_clip=GRAD_CLIP))
    return time.perf_counter() - start


def _rank(rank: int, world: int, port: int, what: str, args: argparse.Namespace,
          results) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, args.threads // world))
    setup("cpu")
    try:
        space = load_space(args.space).replace(resolution=args.resolution)
        images, labels = synthetic_batch(space, args.batch, torch.device("cpu"))
        share = args.batch // world
        images, labels = images[rank::world][:share], labels[rank::world][:share]
        if what == "candidate":
            candidate_seconds(space, images, labels, args.steps)  # untimed: first calls
            seconds = candidate_seconds(space, images, labels, args.steps)
        else:
            warmup = Warmup(space, torch.device("cpu"), Precision(), args.random,
                            fixed=args.quick)
            warmup.steps(images, labels, args.steps, seed=1)  # untimed, as in warmup_rate
            seconds = warmup.steps(images, labels, args.steps, seed=1)
        if rank == 0:
            results.put(args.batch * args.steps / seconds)
    finally:
        teardown()


def processes_rate(world: int, what: str, args: argparse.Namespace) -> float:
    """Images/s of ``what`` (warmup, candidate) in ``world`` forked processes sharing
    ``args.threads`` cores."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("fork")
    results = context.Queue()
    ranks = [context.Process(target=_rank, args=(rank, world, port, what, args, results))
             for rank in range(world)]
    for process in ranks:
        process.start()
    rate = results.get(timeout=1800)
    for process in ranks:
        process.join()
    return rate


def cpu_benchmark(args: argparse.Namespace) -> dict:
    space = load_space(args.space).replace(resolution=args.resolution)
    print(f"space {space.name} at {space.resolution} px, global batch {args.batch}, "
          f"{args.random} random members, {args.threads} cores, {args.steps} steps x "
          f"{args.repeats} repeats (medians)", flush=True)
    worlds = sorted({1, args.processes})
    parts = args.parts.split(",")
    measured = [what for what in ("warmup", "candidate") if what in parts]
    rates = {what: {world: [] for world in worlds} for what in measured}
    for _ in range(args.repeats):  # side by side: every repeat runs each world size
        for what in measured:
            for world in worlds:
                rates[what][world].append(processes_rate(world, what, args))
    for what in measured:
        label = "warm-up" if what == "warmup" else "candidate training"
        print(f"\n| processes | threads each | {label} images/s | vs 1 process |\n"
              "|---:|---:|---:|---:|")
        base = statistics.median(rates[what][1])
        for world in worlds:
            rate = statistics.median(rates[what][world])
            print(f"| {world} | {max(1, args.threads // world)} | {rate:.1f} | "
                  f"{rate / base:.2f}x |")
    results = {"processes" if what == "warmup" else "candidate_processes":
               {str(k): v for k, v in rates[what].items()} for what in measured}
    if "layout" in parts:
        results["layout"] = layout_benchmark(space, args)
    if "precision" not in parts:
        return results
    torch.set_num_threads(args.threads)
    precisions = {f"{amp} {layout}": Precision(amp, cl, "cpu")
                  for amp in ("off", "bf16") for layout, cl in LAYOUTS.items()}
    mixed: dict[str, list[float]] = {name: [] for name in precisions}
    for name, precision in precisions.items():
        mixed[name] = warmup_rate(space, args.batch, torch.device("cpu"), precision, args)
    print("\n| amp | layout | warm-up images/s | vs fp32 NCHW |\n|---|---|---:|---:|")
    base = statistics.median(mixed["off NCHW"])
    for name, values in mixed.items():
        amp, layout = name.split()
        rate = statistics.median(values)
        print(f"| {amp} | {layout} | {rate:.1f} | {rate / base:.2f}x |")
    return {**results, "precision": mixed}


@dataclass(frozen=True)
class LayoutCase:
    """One network the layout benchmark times: its resolution, batch, and a call that runs
    training steps in a layout and gives their seconds."""

    label: str
    size: int
    batch: int
    timed: Callable[[str], list[float]]


def static_case(name: str, precisions: dict[str, Precision],
                args: argparse.Namespace) -> LayoutCase:
    """Training steps of the named static network, one copy per layout."""
    arch = load_arch(name)
    data = synthetic_batch(arch, args.layout_batch, torch.device("cpu"))
    models = {layout: p.model(build(arch)) for layout, p in precisions.items()}

    def timed(layout: str) -> list[float]:
        return step_times(models[layout], data, precisions[layout], args.steps)
    return LayoutCase(f"{name} (static)", arch.resolution, args.layout_batch, timed)


def warmup_case(space, precisions: dict[str, Precision], args: argparse.Namespace) -> LayoutCase:
    """Supernet warm-up steps of ``space`` (members within ``--budget`` when given)."""
    budget = Budget(macs=parse_count(args.budget)) if args.budget else None
    drawn_from = WithinBudget(space, budget) if budget else space
    cpu = torch.device("cpu")
    warmups = {layout: Warmup(space, cpu, p, args.random, drawn_from=drawn_from)
               for layout, p in precisions.items()}
    images, labels = synthetic_batch(space, args.batch, cpu)

    def timed(layout: str) -> list[float]:
        return [warmups[layout].steps(images, labels, 1, seed=step)
                for step in range(args.steps)]
    within = f" (members ≤ {args.budget} MACs)" if budget else ""
    return LayoutCase(f"{space.name} warm-up{within}", space.resolution, args.batch, timed)


def layout_benchmark(space, args: argparse.Namespace) -> dict:
    """float32 NCHW vs channels_last on this CPU: training steps of static networks and the
    space's warm-up, the two layouts taking turns in every repeat (order alternating), so that
    a busy machine slows both alike; median step times and their ratio."""
    torch.set_num_threads(args.threads)
    precisions = {layout: Precision("off", last, "cpu") for layout, last in LAYOUTS.items()}
    cases = [*(static_case(name, precisions, args) for name in args.layout_archs.split(",")),
             warmup_case(space, precisions, args)]
    print("\n| network | px | batch | NCHW s/step | channels_last s/step | NCHW / channels_last |"
          "\n|---|---:|---:|---:|---:|---:|")
    results = {}
    for case in cases:
        times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
        for repeat in range(args.repeats):
            for layout in (list(LAYOUTS) if repeat % 2 == 0 else list(LAYOUTS)[::-1]):
                times[layout] += case.timed(layout)
        nchw, last = (statistics.median(times[layout]) for layout in LAYOUTS)
        print(f"| {case.label} | {case.size} | {case.batch} | {nchw:.3f} | {last:.3f} | "
              f"{nchw / last:.2f}x |", flush=True)
        results[case.label] = times
    return results


# ---------------------------------------------------------------- CUDA


def step_times(model, batch, precision: Precision, steps: int) -> list[float]:
    """Per-step seconds of ``train_step`` on ``model`` (after 3 untimed steps)."""
    optimizer, _, criterion = make_optimization(model, OptimConfig(lr=0.01), 10**6)
    scaler = precision.scaler()
    device = batch[0].device
    times = []
    for index in range(3 + steps):
        synchronize(device)
        start = time.perf_counter()
        train_step(model, batch, optimizer, None, criterion, precision=precision, scaler=scaler)
        synchronize(device)
        if index >= 3:
            times.append(time.perf_counter() - start)
    return times


def elastic_overhead(space, batch: int, device: torch.device, precision: Precision,
                     steps: int) -> dict:
    """The largest member trained as a subnet of the supernet and as ``mbnas.build``'s static
    network, steps interleaved; images/s and the ratio of median step times."""
    largest = space.largest()
    torch.manual_seed(0)
    supernet = precision.model(Supernet(space).to(device))
    supernet.set_active(largest)
    static = precision.model(build(largest).to(device))
    data = synthetic_batch(space, batch, device)
    as_subnet = step_times(supernet, data, precision, steps)
    as_static = step_times(static, data, precision, steps)
    as_subnet += step_times(supernet, data, precision, steps)  # both orders: no drift favoured
    as_static += step_times(static, data, precision, steps)
    subnet_s, static_s = statistics.median(as_subnet), statistics.median(as_static)
    del supernet, static
    torch.cuda.empty_cache()
    return {"subnet_images_s": batch / subnet_s, "static_images_s": batch / static_s,
            "ratio": subnet_s / static_s}


def cuda_plan(half: str) -> list[tuple[str, str, str, str]]:
    """(what, space, amp, layout) in order of importance: per space the float32 baseline, the
    CUDA default (bf16 channels_last), fp16 channels_last and the elastic overhead; then the
    remaining combinations."""
    first, rest = [], []
    for space, _, _ in GPU_CASES:
        first += [("warmup", space, "off", "NCHW"), ("warmup", space, half, "channels_last"),
                  ("warmup", space, "fp16", "channels_last"),
                  ("elastic", space, "off", "NCHW"), ("elastic", space, half, "channels_last")]
        rest += [("warmup", space, amp, layout) for amp in ("off", half, "fp16")
                 for layout in LAYOUTS]
    return list(dict.fromkeys(first + rest))


def cuda_benchmark(args: argparse.Namespace, device: torch.device) -> dict:
    begun = time.perf_counter()
    results: dict = {"warmup": {}, "elastic": {}, "skipped": []}
    half = "bf16" if device.type != "cuda" or torch.cuda.is_bf16_supported() else "fp16"
    cases = {name: (resolution, batch) for name, resolution, batch in GPU_CASES}
    parts, spaces = args.gpu_parts.split(","), args.gpu_spaces.split(",")
    for what, space_name, amp, layout in cuda_plan(half):
        if what not in parts or space_name not in spaces:
            continue
        key = f"{space_name} {amp} {layout}"
        if time.perf_counter() - begun > args.max_seconds:
            results["skipped"].append(f"{what} {key}")
            continue
        resolution, batch = cases[space_name]
        space = load_space(space_name).replace(resolution=resolution)
        precision = Precision(amp, LAYOUTS[layout], device.type)
        started = time.perf_counter()
        if what == "warmup":
            rates = warmup_rate(space, batch, device, precision, args)
            results["warmup"][key] = rates
            line = f"warm-up {key}: {statistics.median(rates):.0f} images/s"
        else:
            result = elastic_overhead(space, batch, device, precision, args.steps + 2)
            results["elastic"][key] = result
            line = (f"largest member {key}: subnet {result['subnet_images_s']:.0f}, static "
                    f"{result['static_images_s']:.0f} images/s, ratio {result['ratio']:.2f}x")
        torch.cuda.empty_cache()
        print(f"{line} ({time.perf_counter() - started:.0f} s)", flush=True)
    if results["skipped"]:
        print(f"skipped after --max-seconds {args.max_seconds:.0f}: "
              f"{'; '.join(results['skipped'])}", flush=True)
    print_cuda_table(results, cases)
    return results


def print_cuda_table(results: dict, cases: dict) -> None:
    print("\n| space (px, batch) | amp | layout | warm-up images/s | vs fp32 NCHW |")
    print("|---|---|---|---:|---:|")
    order = [*cases, "off", "bf16", "fp16", *LAYOUTS]  # spaces, then amp, then layout

    def rank(item: tuple[str, list[float]]) -> list[int]:
        return [order.index(word) for word in item[0].split()]

    for key, rates in sorted(results["warmup"].items(), key=rank):
        space, amp, layout = key.split()
        base = statistics.median(results["warmup"].get(f"{space} off NCHW", [float("nan")]))
        rate = statistics.median(rates)
        resolution, batch = cases[space]
        print(f"| {space} ({resolution}, {batch}) | {amp} | {layout} | {rate:.0f} | "
              f"{rate / base:.2f}x |")
    print("\n| largest member: space | amp | layout | as subnet images/s | static images/s | "
          "elastic overhead (target <= 1.1x) |")
    print("|---|---|---|---:|---:|---:|")
    for key, result in results["elastic"].items():
        space, amp, layout = key.split()
        print(f"| {space} | {amp} | {layout} | {result['subnet_images_s']:.0f} | "
              f"{result['static_images_s']:.0f} | {result['ratio']:.2f}x |")


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    keep_freed_memory()  # as an mbnas command does (BENCHMARKS.md, Latency table error)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("scale_out.py: --device cuda, but CUDA is not available here")
        results = cuda_benchmark(args, torch.device("cuda"))
    else:
        results = cpu_benchmark(args)
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.0f} s; command: python benchmarks/scale_out.py "
          f"{' '.join(sys.argv[1:])}; {machine()}")
    if args.out:
        args.out.write_text(json.dumps({"command": sys.argv, "machine": machine(),
                                        "settings": {k: str(v) for k, v in vars(args).items()},
                                        "wall_s": wall, "results": results}, indent=1))


if __name__ == "__main__":
    main()
