"""What a search is about to do and how long it should take, printed before any training.

The estimate scales timings of the run's own work on this machine (a real warm-up step, a
candidate's cut from the supernet, training step, forward pass and latency measurement:
:mod:`mbnas.search.timing`) by the evaluator's settings; the run revises it from its real
timings as it goes (:mod:`mbnas.search.forecast`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mbnas.budget import Budget
from mbnas.cost import count
from mbnas.data import DataConfig, make_dataset, split_indices
from mbnas.evaluators.zero_cost import reads_images
from mbnas.machine_load import machine_load
from mbnas.search.config import SearchConfig
from mbnas.search.pruning import describe as describe_pruner
from mbnas.search.timing import Timings
from mbnas.space import SearchSpace
from mbnas.units import format_count

# Seconds per evaluated candidate besides its own work and latency: sampling it (TPE), the
# over-budget candidates between two evaluated ones, records, the study's figures. Measured on
# the idle 2-core VM (BENCHMARKS.md, "Framework overhead per trial"): 0.27 s in the mission
# search (0.15 s, and 1.4 over-budget candidates at 0.08 s), 0.26 s in a 1000-candidate counted
# search, where TPE's sampling grows with the trials; about twice that, for slower machines (on
# a busy one the timed work grows, this figure does not).
TRIAL_OVERHEAD_S = 0.5


@dataclass(frozen=True)
class Estimate:
    """Expected seconds: ``warmup_steps`` warm-up steps still to run (0 when none), once-per-run
    work after them (labelling, reference members), and one trained candidate."""

    warmup_steps: int
    warmup_step_s: float
    setup_s: float
    trial_s: float

    @property
    def warmup_s(self) -> float:
        """The warm-up still to run and the once-per-run work after it."""
        return self.warmup_steps * self.warmup_step_s + self.setup_s

    def total(self, trials: int) -> float:
        """Warm-up plus ``trials`` trained candidates."""
        return self.warmup_s + trials * self.trial_s


def validation_batches(data: DataConfig, eval_batches: int | None) -> int:
    """How many batches a candidate's validation scores (without building the split)."""
    if data.name == "synthetic":  # its size is a setting: no need to draw its images
        images = len(split_indices(data.synthetic_size, "val", data.val_fraction, data.seed))
    else:
        images = len(make_dataset(data, "val"))
    batches = math.ceil(images / data.batch_size)
    return min(batches, eval_batches) if eval_batches else batches


def estimate(evaluator: Mapping[str, Any], data: DataConfig, times: Timings, *,
             steps_done: int = 0) -> Estimate:
    """Expected warm-up and per-candidate seconds for an evaluator's settings (any evaluator's,
    by its keys). Evaluators that train a candidate (``finetune_steps``, ``train_steps``) cut
    or build it, recompute its BN statistics on ``bn_images``, train it and validate it;
    evaluators that only score it (zero-cost proxies, a predictor) cut or build it and take about
    one training step's work, once per candidate and once per reference or labelled member
    (``reference_archs``, ``label_archs``). ``steps_done``: warm-up steps a checkpoint holds."""
    steps = int(evaluator.get("finetune_steps", 0)) + int(evaluator.get("train_steps", 0))
    if "finetune_steps" in evaluator or "train_steps" in evaluator:
        forwards = (math.ceil(int(evaluator.get("bn_images", 0)) / data.batch_size)
                    + validation_batches(data, evaluator.get("eval_batches")))
        work = times.extract + steps * times.train_step + forwards * times.forward
        setup = 0.0
    else:
        work = times.extract + times.train_step if runs_candidates(evaluator) else 0.0
        setup = work * int(evaluator.get("reference_archs", 0) or evaluator.get("label_archs", 0))
    warmup = max(int(evaluator.get("warmup_steps", 0)) - steps_done, 0)
    if steps_done and not warmup:
        setup = 0.0  # a finished warm-up's run labelled its members too (resumed)
    return Estimate(warmup, times.warmup_step, setup,
                    work + times.latency + TRIAL_OVERHEAD_S)


def runs_candidates(evaluator: Mapping[str, Any]) -> bool:
    """Whether a scoring evaluator runs each candidate on images: all but a zero-cost score of
    architecture features alone (MACs, activations...), which are counted, not run."""
    features = evaluator.get("features")
    return features is None or reads_images(features)


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


def describe_evaluator(evaluator: Mapping[str, Any]) -> str:
    """The evaluator's name and what sets its cost or its score: its training steps, or the
    weights of the features it scores with."""
    steps = ", ".join(f"{key} {evaluator[key]}" for key in
                      ("warmup_steps", "finetune_steps", "train_steps", "bn_images")
                      if key in evaluator)
    details = [steps] if steps else []
    for key in ("features", "proxy_features"):
        weights = ", ".join(f"{name} {weight:g}" for name, weight in
                            (evaluator.get(key) or {}).items())
        details += [f"{key}: {weights}"] if weights else []
    return f"{evaluator.get('name')} ({'; '.join(details)})" if details else str(
        evaluator.get("name"))


def plan_lines(cfg: SearchConfig, evaluator: Mapping[str, Any], budget: Budget,
               space: SearchSpace, remaining: int, expected: Estimate) -> list[str]:
    """The plan of a search, one fact per line: what runs, on which data, for how long."""
    total = expected.total(remaining)
    warmup = (f"warm-up {format_duration(expected.warmup_s)} + " if expected.warmup_s else "")
    step = (f"{expected.warmup_step_s:.2f} s a warm-up step, " if expected.warmup_steps else "")
    return [
        f"  space      {space.name}: {space_size(space)} members, costed at "
        f"{space.resolution}px",
        f"  budget     {budget.describe() if budget.limits else 'none'}",
        f"  objective  {cfg.objective}, sampler {cfg.sampler}, pruner "
        f"{describe_pruner(cfg.pruner, evaluator)}",
        f"  evaluator  {describe_evaluator(evaluator)}",
        f"  preset     {cfg.preset}",
        f"  data       {data_line(cfg.data)}",
        f"  trials     {remaining} of {cfg.n_trials} to evaluate (over-budget candidates "
        "are pruned untrained, re-sampled ones reuse their score: neither is counted)",
        f"  threads    {torch.get_num_threads()} (threads=)",
        f"  expected   {'at most' if cfg.pruner != 'none' else 'about'} "
        f"{format_duration(total)} ({warmup}{remaining} × "
        f"{format_duration(expected.trial_s)}; {step}from this run's work timed here; "
        "revised as it goes)",
    ]
