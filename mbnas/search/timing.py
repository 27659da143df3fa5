"""Timings of what a search will really do, measured on this machine before it starts.

A warm-up step is timed as the run takes it: :func:`train_supernet` on a throwaway supernet of
the run's space, with the evaluator's members per step (largest, smallest and random ones within
budget, or random ones only), distillation, optimiser and gradient clipping over every supernet
weight. A candidate's work is timed on random members within budget, cut from that supernet as
the search cuts them: the cut itself, a training step (optimiser and clipping included), a
forward pass without gradients and one latency measurement. A static network's training step
leaves most of that out (a supernet member's step alone costs 1.6-1.8x the static one's: see
BENCHMARKS.md, "The mission command"). The random generators are put back afterwards, so a
run's results do not depend on whether it was timed.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mbnas.arch import ArchSpec
from mbnas.budget import Budget, WithinBudget
from mbnas.data import DataConfig
from mbnas.nn import build
from mbnas.precision import FP32, Precision
from mbnas.space import SearchSpace
from mbnas.supernet import Supernet
from mbnas.supernet.training import SandwichConfig, train_supernet
from mbnas.train import (
    OptimConfig,
    capture_rng_state,
    make_optimization,
    restore_rng_state,
    train_step,
)

TIMED_STEPS = 2  # timed steps of each kind, after one untimed (allocators, kernels, templates)
TIMED_MEMBERS = 2  # random members within budget whose candidate work is timed


@dataclass(frozen=True)
class Timings:
    """Seconds on this machine, now: a warm-up step (0 when none is timed), and a candidate's
    cut from the supernet, training step and forward pass (batch ``data.batch_size``) and
    latency measurement (0 when none)."""

    warmup_step: float
    extract: float
    train_step: float
    forward: float
    latency: float


def measure(space: SearchSpace, budget: Budget, data: DataConfig,
            evaluator: Mapping[str, Any], device: torch.device, seed: int, *,
            warm_up: bool, measure_latency: Callable[[ArchSpec], Any] | None = None,
            precision: Precision = FP32) -> Timings:
    """Time a warm-up step (when ``warm_up``) and the work of a candidate, as the run with
    ``evaluator``'s settings (any evaluator's, as a mapping) will do them."""
    state = capture_rng_state()
    try:
        supernet = None
        if "warmup_steps" in evaluator:  # the evaluator cuts candidates from a supernet
            supernet = Supernet(space, sharing=evaluator.get("sharing", "nested")).to(device)
        batch = random_batch(data, space.num_classes, device)
        warmup = (time_warmup_step(supernet, warmup_members(space, budget, evaluator, seed),
                                   batch, evaluator, precision)
                  if warm_up and supernet is not None else 0.0)
        feasible = WithinBudget(space, budget, seed=seed) if budget.limits else space
        rng = random.Random(seed)
        archs = [feasible.sample_random(rng) for _ in range(TIMED_MEMBERS)]
        work = [time_candidate(supernet, arch, batch, optim_config(evaluator), precision)
                for arch in archs]
        latency = timed(measure_latency, archs[0])[1] if measure_latency else 0.0
    finally:
        restore_rng_state(state)
    extract, step, forward = (statistics.mean(column) for column in zip(*work, strict=True))
    return Timings(warmup, extract, step, forward, latency)


def warmup_members(space: SearchSpace, budget: Budget, evaluator: Mapping[str, Any],
                   seed: int) -> Any:
    """What the warm-up samples from: members within budget when it is budget-aware."""
    if evaluator.get("budget_aware") and budget.limits:
        return WithinBudget(space, budget, seed=seed)
    return space


def optim_config(evaluator: Mapping[str, Any]) -> OptimConfig:
    """The evaluator's optimiser settings (the defaults when it has none)."""
    return OptimConfig(**evaluator.get("optim", {}))


def random_batch(data: DataConfig, num_classes: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of the run's shape: timing needs no real images."""
    images = torch.randn(data.batch_size, 3, data.resolution, data.resolution, device=device)
    return images, torch.randint(0, num_classes, (data.batch_size,), device=device)


def time_warmup_step(supernet: Supernet, members: Any, batch: tuple[torch.Tensor, torch.Tensor],
                     evaluator: Mapping[str, Any], precision: Precision) -> float:
    """Median seconds of the timed warm-up steps of ``supernet`` (trained, then thrown away)."""
    stamps: list[float] = []
    cfg = SandwichConfig(steps=TIMED_STEPS + 1, num_random=int(evaluator.get("num_random", 0)),
                         distill=bool(evaluator.get("distill", False)),
                         rule=str(evaluator.get("rule", "sandwich")), seed=0,
                         optim=optim_config(evaluator))
    train_supernet(supernet, members, [batch], cfg, progress=False, precision=precision,
                   on_step=lambda _: stamps.append(time.perf_counter()))
    return statistics.median(later - earlier for earlier, later in zip(stamps, stamps[1:]))


def time_candidate(supernet: Supernet | None, arch: ArchSpec,
                   batch: tuple[torch.Tensor, torch.Tensor], optim: OptimConfig,
                   precision: Precision) -> tuple[float, float, float]:
    """Seconds to cut ``arch`` from ``supernet`` (to build it without one), and the medians of
    its training step and of its forward pass without gradients."""
    model, extract = timed(supernet.extract if supernet is not None else build, arch)
    model = precision.model(model.to(batch[0].device))
    optimizer, scheduler, criterion = make_optimization(model, optim, TIMED_STEPS + 1)
    steps = [timed(train_step, model, batch, optimizer, scheduler, criterion,
                   grad_clip=optim.grad_clip, precision=precision)[1]
             for _ in range(TIMED_STEPS + 1)]
    with torch.no_grad():
        forwards = [timed(model, batch[0])[1] for _ in range(TIMED_STEPS + 1)]
    return extract, statistics.median(steps[1:]), statistics.median(forwards[1:])


def timed(function: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``function(*args, **kwargs)`` and the seconds it took."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started
