"""Evaluators: how the search scores a candidate. One interface, chosen by ``evaluator=``.

``supernet`` (default): the supernet is warmed up once per run (checkpointed, resumable); each
candidate inherits its weights, gets BatchNorm statistics recomputed, a brief fine-tune, and is
scored on the validation split. ``scratch``: each candidate is trained briefly from scratch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.budget import Budget, WithinBudget
from mbnas.data import DataConfig, make_loader
from mbnas.locking import file_lock
from mbnas.nn import build
from mbnas.space import SearchSpace
from mbnas.supernet import Supernet
from mbnas.supernet.training import SandwichConfig, subnet, train_supernet
from mbnas.tensorboard import TrialLog
from mbnas.train import (
    OptimConfig,
    evaluate,
    infinite,
    make_criterion,
    make_optimizer,
    make_scheduler,
    train_step,
)
from mbnas.validation import check_choice, check_int

EVALUATORS = ("supernet", "scratch")


@dataclass
class EvaluatorConfig:
    """Schema of the ``evaluator`` config group."""

    name: str = "supernet"
    warmup_steps: int = 300  # supernet: sandwich-rule steps, once per run
    num_random: int = 2  # supernet: random subnets per sandwich step besides largest, smallest
    distill: bool = True  # supernet: in-place distillation from the largest subnet
    budget_aware: bool = True  # supernet: warm up only members within the MAC/params budget
    finetune_steps: int = 20  # supernet: per candidate, from the inherited weights
    finetune_lr: float = 0.01
    train_steps: int = 200  # scratch: per candidate
    bn_images: int = 512  # images for BatchNorm recalibration of an inherited subnet
    eval_batches: int | None = None  # cap on validation batches (None: the whole split)
    optim: OptimConfig = field(default_factory=OptimConfig)


def check_evaluator_config(cfg: EvaluatorConfig) -> None:
    check_choice(cfg.name, "evaluator.name", EVALUATORS)
    for key in ("warmup_steps", "finetune_steps", "train_steps", "bn_images"):
        check_int(getattr(cfg, key), f"evaluator.{key}", minimum=0)


def train_briefly(model: nn.Module, batches: Iterator, steps: int, optim: OptimConfig,
                  log: TrialLog | None = None) -> float:
    """``steps`` optimiser steps with a cosine schedule; returns the last loss (NaN if none)."""
    if steps <= 0:
        return float("nan")
    optimizer = make_optimizer(model, optim)
    scheduler = make_scheduler(optimizer, optim, steps)
    criterion = make_criterion(optim)
    loss = float("nan")
    for step in range(steps):
        loss = train_step(model, next(batches), optimizer, scheduler, criterion,
                          grad_clip=optim.grad_clip)
        if log is not None:
            log.scalar("train/loss", loss, step)
    return loss


class Evaluator:
    """Scores candidates on the validation split of ``data``; subclasses say how they train."""

    def __init__(self, cfg: EvaluatorConfig, data: DataConfig, device: torch.device, seed: int):
        check_evaluator_config(cfg)
        self.cfg, self.device, self.seed = cfg, device, seed
        self.train_loader = make_loader(data, "train", shuffle=True)
        self.val_loader = make_loader(data, "val", shuffle=False)
        # Never advanced past its first epoch: every candidate's BN statistics come from the
        # same images, so candidates are compared on equal terms.
        self.bn_loader = make_loader(data, "train", shuffle=True)
        self._batches = infinite(self.train_loader)

    def prepare(self, run_dir: Path) -> None:
        """Work done once per run before the first trial (nothing by default)."""

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        raise NotImplementedError

    def __call__(self, arch: ArchSpec, log: TrialLog | None = None) -> float:
        """Validation accuracy of ``arch`` after this evaluator's brief training."""
        start = time.perf_counter()
        model = self.model_for(arch, log)
        result = evaluate(model, self.val_loader, max_batches=self.cfg.eval_batches)
        if log is not None:
            log.scalar("val/accuracy", result.accuracy, 0)
            log.scalar("val/loss", result.loss, 0)
            log.scalar("time/evaluation_s", time.perf_counter() - start, 0)
        return result.accuracy

    def _seed(self, arch: ArchSpec) -> None:
        # The same candidate gets the same initialisation and batches order in any trial.
        torch.manual_seed(self.seed + int(arch.digest()[:8], 16))


class ScratchEvaluator(Evaluator):
    """Each candidate trained briefly from a fresh initialisation."""

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        self._seed(arch)
        model = build(arch).to(self.device)
        train_briefly(model, self._batches, self.cfg.train_steps, self.cfg.optim, log)
        return model


class SupernetEvaluator(Evaluator):
    """Candidates inherit weight-shared supernet weights, warmed up once per run."""

    def __init__(self, cfg: EvaluatorConfig, data: DataConfig, device: torch.device, seed: int,
                 space: SearchSpace, budget: Budget | None = None):
        super().__init__(cfg, data, device, seed)
        self.space = space
        self.warmup_space = (WithinBudget(space, budget, seed=seed)
                             if cfg.budget_aware and budget else space)
        self.supernet = Supernet(space).to(device)

    def prepare(self, run_dir: Path) -> None:
        sandwich = SandwichConfig(steps=self.cfg.warmup_steps, num_random=self.cfg.num_random,
                                  distill=self.cfg.distill, seed=self.seed,
                                  optim=self.cfg.optim)
        checkpoint = run_dir / "supernet.pt"
        # Workers sharing a run folder take turns: the first warms up, the others resume its
        # finished checkpoint (which makes their training a no-op).
        with file_lock(run_dir / "supernet.lock"):
            train_supernet(self.supernet, self.warmup_space, self.train_loader, sandwich,
                           checkpoint=checkpoint, progress=True)

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        self._seed(arch)
        model = subnet(self.supernet, arch, self.bn_loader, self.cfg.bn_images)
        finetune = dataclasses.replace(self.cfg.optim, lr=self.cfg.finetune_lr, warmup_steps=0)
        train_briefly(model, self._batches, self.cfg.finetune_steps, finetune, log)
        return model


def make_evaluator(cfg: EvaluatorConfig, data: DataConfig, device: torch.device, seed: int,
                   space: SearchSpace, budget: Budget | None = None) -> Evaluator:
    """The evaluator ``cfg.name`` names (configs may come as typed OmegaConf nodes)."""
    cfg, data = (OmegaConf.to_object(c) if isinstance(c, DictConfig) else c for c in (cfg, data))
    check_evaluator_config(cfg)
    if cfg.name == "scratch":
        return ScratchEvaluator(cfg, data, device, seed)
    return SupernetEvaluator(cfg, data, device, seed, space, budget)
