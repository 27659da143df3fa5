"""Does the supernet rank members truthfully? Kendall τ of inherited vs from-scratch accuracy.

Warms up a supernet of ``--space`` on the real CIFAR-10 subset with the sandwich rule, then for
``--subnets`` random members measures (a) the supernet-inherited accuracy after BatchNorm
recalibration and (b) the accuracy after brief training from scratch (the ``scratch``
evaluator's procedure), both on the same validation split. Prints both per member, Kendall's τ
between them (target ≥ 0.6), and, for context, τ between MACs and scratch accuracy.

    python benchmarks/supernet_ranking.py --supernet-steps 300 --scratch-steps 150
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

import mbnas
from mbnas.cost.device_script import keep_freed_memory
from mbnas.data import DataConfig, make_loader
from mbnas.evaluators.brief_training import train_briefly
from mbnas.space import load_space
from mbnas.supernet import Supernet
from mbnas.supernet.training import SandwichConfig, subnet, train_supernet
from mbnas.train import OptimConfig, evaluate, infinite

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "../shared/data/cifar-10-batches-py"))
    parser.add_argument("--space", default="cifar")
    parser.add_argument("--subnets", type=int, default=20)
    parser.add_argument("--supernet-steps", type=int, default=300)
    parser.add_argument("--scratch-steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--bn-images", type=int, default=1024)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)  # 2 oversubscribe a shared machine
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch-seed", type=int, default=None,
                        help="seed of the from-scratch initialisations (default: --seed)")
    parser.add_argument("--compare", default=None,
                        help="an earlier --output: also report tau between its scratch accuracies "
                             "and these (same members, other --scratch-seed: the noise ceiling)")
    parser.add_argument("--checkpoint", default=str(ROOT / "runs/benchmarks/ranking_supernet.pt"))
    parser.add_argument("--output", default=str(ROOT / "runs/benchmarks/ranking.json"))
    return parser.parse_args()


def kendall_tau(first: list[float], second: list[float]) -> float:
    """Kendall's τ-b: rank agreement in [-1, 1], ties counted as neither agreeing nor not."""
    concordant = discordant = ties_first = ties_second = 0
    for i in range(len(first)):
        for j in range(i + 1, len(first)):
            a, b = first[i] - first[j], second[i] - second[j]
            if a == 0 and b == 0:
                continue
            if a == 0:
                ties_first += 1
            elif b == 0:
                ties_second += 1
            elif (a > 0) == (b > 0):
                concordant += 1
            else:
                discordant += 1
    pairs_first = concordant + discordant + ties_first
    pairs_second = concordant + discordant + ties_second
    return (concordant - discordant) / ((pairs_first * pairs_second) ** 0.5 or 1.0)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as an mbnas command does (BENCHMARKS.md, Latency table error)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    data = DataConfig(name="cifar10", root=args.data, resolution=32, batch_size=args.batch,
                      val_fraction=args.val_fraction, seed=args.seed)
    train_loader = make_loader(data, "train")
    val_loader = make_loader(data, "val", shuffle=False, batch_size=256)
    optim = OptimConfig(lr=args.lr, warmup_steps=max(1, args.supernet_steps // 20))
    space = load_space(args.space)
    supernet = Supernet(space)
    print(f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val images; "
          f"space {space.name}; supernet {sum(p.numel() for p in supernet.parameters()) / 1e6:.1f}"
          f"M parameters", flush=True)
    Path(args.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    train_supernet(supernet, space, train_loader,
                   SandwichConfig(steps=args.supernet_steps, seed=args.seed, optim=optim),
                   checkpoint=Path(args.checkpoint), progress=True)
    warmed = time.perf_counter()
    print(f"supernet warm-up done at {warmed - started:.0f} s", flush=True)

    rng = random.Random(args.seed + 1)
    archs = [space.sample_random(rng) for _ in range(args.subnets)]
    rows = []
    scratch_optim = OptimConfig(lr=args.lr, warmup_steps=max(1, args.scratch_steps // 20))
    for index, arch in enumerate(archs, start=1):
        inherited = evaluate(subnet(supernet, arch, train_loader, args.bn_images), val_loader)
        torch.manual_seed((args.seed if args.scratch_seed is None else args.scratch_seed) + index)
        model = mbnas.build(arch)
        train_briefly(model, infinite(train_loader), args.scratch_steps, scratch_optim)
        scratch = evaluate(model, val_loader)
        rows.append({"macs": mbnas.count(arch).macs, "inherited": inherited.accuracy,
                     "scratch": scratch.accuracy, "arch": arch.to_dict()})
        print(f"member {index:2d}: {rows[-1]['macs'] / 1e6:7.1f} MMACs  inherited "
              f"{inherited.accuracy:.3f}  scratch {scratch.accuracy:.3f}  "
              f"({time.perf_counter() - started:.0f} s)", flush=True)

    inherited = [row["inherited"] for row in rows]
    scratch = [row["scratch"] for row in rows]
    macs = [float(row["macs"]) for row in rows]
    summary = {"tau_inherited_vs_scratch": kendall_tau(inherited, scratch),
               "tau_macs_vs_scratch": kendall_tau(macs, scratch),
               "supernet_s": warmed - started, "total_s": time.perf_counter() - started,
               "args": vars(args)}
    print("\n| member | MMACs | inherited acc | scratch acc |\n|---:|---:|---:|---:|")
    for index, row in enumerate(rows, start=1):
        print(f"| {index} | {row['macs'] / 1e6:.1f} | {row['inherited']:.3f} | "
              f"{row['scratch']:.3f} |")
    print(f"\nKendall tau, inherited vs scratch: {summary['tau_inherited_vs_scratch']:.3f} "
          f"(target >= 0.6)")
    print(f"Kendall tau, MACs vs scratch (baseline): {summary['tau_macs_vs_scratch']:.3f}")
    if args.compare:
        earlier = [row["scratch"] for row in json.loads(Path(args.compare).read_text())["members"]]
        summary["tau_scratch_vs_earlier_scratch"] = kendall_tau(earlier, scratch)
        print(f"Kendall tau, scratch vs {args.compare}'s scratch (noise ceiling): "
              f"{summary['tau_scratch_vs_earlier_scratch']:.3f}")
    print(f"supernet warm-up {summary['supernet_s']:.0f} s, total {summary['total_s']:.0f} s")
    Path(args.output).write_text(json.dumps({"summary": summary, "members": rows}, indent=1))


if __name__ == "__main__":
    main()
