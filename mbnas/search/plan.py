"""What a search is about to do and how long it should take, printed before any training.

The estimate times a couple of training steps of the largest and smallest candidates within
budget on this machine and scales them by the evaluator's step counts: rough (within a factor of
about two), but it says minutes or hours before the user waits for either.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.budget import Budget, WithinBudget
from mbnas.cost import count
from mbnas.data import DataConfig, make_loader
from mbnas.machine_load import machine_load
from mbnas.nn import build
from mbnas.search.config import SearchConfig
from mbnas.space import SearchSpace
from mbnas.units import format_count

# Forward-only work (BN statistics, validation, latency) relative to one training step.
FORWARD_SHARE = 0.35
# Seconds per trained candidate besides computing: loaders, logs, storage (measured on 2 cores).
TRIAL_OVERHEAD_S = 2.0


@dataclass(frozen=True)
class StepTimes:
    """Seconds per training step (batch of ``data.batch_size``) of the largest and smallest
    candidates within budget, and the forward time of the largest at batch 1, deployed size."""

    largest: float
    smallest: float

    @property
    def mean(self) -> float:
        return (self.largest + self.smallest) / 2


@dataclass(frozen=True)
class Estimate:
    """Expected seconds: the supernet warm-up (0 when none) and one trained candidate."""

    warmup_s: float
    trial_s: float

    def total(self, trials: int) -> float:
        """Warm-up plus ``trials`` trained candidates."""
        return self.warmup_s + trials * self.trial_s


def time_training_step(arch: ArchSpec, data: DataConfig, device: torch.device,
                       repeats: int = 2) -> float:
    """Median seconds of one SGD step of ``arch`` at the data's resolution and batch size."""
    model = build(arch.replace(num_classes=max(data.num_classes, 2))).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    images = torch.randn(data.batch_size, 3, data.resolution, data.resolution, device=device)
    labels = torch.zeros(data.batch_size, dtype=torch.long, device=device)
    times = []
    for _ in range(repeats + 1):  # the first step warms up allocators and kernels
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def step_times(space: SearchSpace, budget: Budget, data: DataConfig, device: torch.device,
               seed: int) -> StepTimes:
    """Training-step times of the extremes of what the run will train."""
    members = WithinBudget(space, budget, seed=seed) if budget.limits else space
    return StepTimes(time_training_step(members.largest(), data, device),
                     time_training_step(members.smallest(), data, device))


def estimate(evaluator: Mapping[str, Any], data: DataConfig, times: StepTimes, *,
             latency_runs: int, deployed_pixels: float, warmed_up: bool) -> Estimate:
    """Expected warm-up and per-candidate seconds for an evaluator's settings (any evaluator:
    its ``warmup_steps``, ``finetune_steps``, ``train_steps``, ``bn_images``, ``eval_batches``);
    ``latency_runs`` batch-1 forwards at ``deployed_pixels`` times the training image size."""
    sandwich = 2 + int(evaluator.get("num_random", 0))  # largest + smallest + random members
    warmup = 0.0 if warmed_up else (
        int(evaluator.get("warmup_steps", 0)) * sandwich * times.mean)
    steps = int(evaluator.get("finetune_steps", 0)) + int(evaluator.get("train_steps", 0))
    val_batches = len(make_loader(data, "val"))
    if evaluator.get("eval_batches"):
        val_batches = min(val_batches, int(evaluator["eval_batches"]))
    bn_batches = math.ceil(int(evaluator.get("bn_images", 0)) / data.batch_size)
    forward = (val_batches + bn_batches) * FORWARD_SHARE * times.mean
    latency = latency_runs * FORWARD_SHARE * times.largest / data.batch_size * deployed_pixels
    return Estimate(warmup, steps * times.mean + forward + latency + TRIAL_OVERHEAD_S)


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def threads_hint(threads: int | None) -> str:
    """A hint to set ``threads=`` when the machine is busy and PyTorch would use every core."""
    state = machine_load(torch.get_num_threads())
    if threads or torch.get_num_threads() == 1 or state is None or not state.busy:
        return ""
    return (f"hint: PyTorch uses {torch.get_num_threads()} threads here; on a busy machine "
            "threads=1 (or cores / processes) avoids oversubscription, which can slow training "
            "several-fold")


def space_size(space: SearchSpace) -> str:
    """The number of members, readable: ``6,561`` or ``2.4e+36``."""
    size = space.size
    return f"{size:,}" if size < 1e7 else f"{size:.1e}"


def data_line(data: DataConfig) -> str:
    """The data, with synthetic images called what they are."""
    if data.name == "synthetic":
        return ("SYNTHETIC images (generated, not a real dataset; for real data: "
                "data=cifar10 data.root=...)")
    return f"{data.name} from {data.root}"


def no_budget_warning(space: SearchSpace, total_s: float) -> str:
    """What a search without a budget does, how long it takes, and a budget to try instead."""
    largest = count(space.largest())
    return (f"warning: no budget given: every member of space {space.name!r} (up to "
            f"{format_count(largest.macs)} MACs, {format_count(largest.params)} parameters) is a "
            f"candidate and the warm-up trains them all: expect about {format_duration(total_s)}."
            " Add a budget, e.g. +budget.macs=300M (MobileNetV3-Large: 217M MACs), or "
            "preset=smoke for a trial run")


def plan_lines(cfg: SearchConfig, evaluator: Mapping[str, Any], budget: Budget,
               space: SearchSpace, remaining: int, expected: Estimate) -> list[str]:
    """The plan of a search, one fact per line: what runs, on which data, for how long."""
    steps = ", ".join(f"{key} {evaluator[key]}" for key in
                      ("warmup_steps", "finetune_steps", "train_steps", "bn_images")
                      if key in evaluator)
    total = expected.total(remaining)
    warmup = (f"warm-up {format_duration(expected.warmup_s)} + " if expected.warmup_s else "")
    return [
        f"  space      {space.name}: {space_size(space)} members, costed at "
        f"{space.resolution}px",
        f"  budget     {budget.describe() if budget.limits else 'none'}",
        f"  objective  {cfg.objective}, sampler {cfg.sampler}",
        f"  evaluator  {evaluator.get('name')} ({steps})",
        f"  preset     {cfg.preset}",
        f"  data       {data_line(cfg.data)}",
        f"  trials     {remaining} of {cfg.n_trials} to train (over-budget candidates "
        "are pruned untrained and not counted)",
        f"  threads    {torch.get_num_threads()} (threads=)",
        f"  expected   about {format_duration(total)} ({warmup}{remaining} × "
        f"{format_duration(expected.trial_s)}; rough, from timed steps on this machine)",
    ]
