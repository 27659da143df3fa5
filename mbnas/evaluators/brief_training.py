"""Evaluators that train a candidate briefly and score it on the validation split."""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.data import make_loader
from mbnas.errors import Diverged
from mbnas.evaluators.base import Evaluation, EvaluationContext, Evaluator, EvaluatorConfig
from mbnas.precision import FP32, Precision
from mbnas.tensorboard import TrialLog
from mbnas.train import (
    OptimConfig,
    check_finite,
    check_optim_config,
    evaluate,
    infinite,
    make_optimization,
    train_step,
)


@dataclass
class BriefTrainingConfig(EvaluatorConfig):
    """Settings of evaluators that train briefly: the optimiser, and how much to validate."""

    eval_batches: int | None = None  # cap on validation batches (None: the whole split)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def check(self) -> None:
        check_optim_config(self.optim)


def train_briefly(model: nn.Module, batches: Iterator, steps: int, optim: OptimConfig,
                  log: TrialLog | None = None, precision: Precision = FP32) -> float:
    """``steps`` optimiser steps with a cosine schedule under ``precision``; returns the last
    loss (NaN if none). A non-finite loss raises :class:`~mbnas.errors.Diverged` naming the
    step."""
    if steps <= 0:
        return float("nan")
    precision.model(model)
    optimizer, scheduler, criterion = make_optimization(model, optim, steps)
    scaler = precision.scaler()
    loss = float("nan")
    for step in range(steps):
        try:
            loss = train_step(model, next(batches), optimizer, scheduler, criterion,
                              grad_clip=optim.grad_clip, precision=precision, scaler=scaler)
        except Diverged as error:
            raise Diverged(f"{error} at training step {step + 1} of {steps} (lr {optim.lr:g})"
                           ) from None
        if log is not None:
            log.scalar("train/loss", loss, step)
    return loss


class BriefTrainingEvaluator(Evaluator):
    """Scores the network :meth:`model_for` trains, by its validation accuracy."""

    cfg: BriefTrainingConfig

    def __init__(self, cfg: BriefTrainingConfig, context: EvaluationContext) -> None:
        super().__init__(cfg, context)
        self.train_loader = make_loader(context.data, "train", shuffle=True)
        self.val_loader = make_loader(context.data, "val", shuffle=False)
        self.batches = infinite(self.train_loader)

    @abstractmethod
    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        """``arch``'s network after this evaluator's brief training."""

    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None) -> Evaluation:
        start = time.perf_counter()
        model = self.model_for(arch, log)
        result = evaluate(model, self.val_loader, max_batches=self.cfg.eval_batches)
        check_finite(result.loss, "the validation loss")  # its accuracy would mean nothing
        seconds = time.perf_counter() - start
        if log is not None:
            log.evaluation("val", {"accuracy": result.accuracy, "loss": result.loss}, seconds)
        return Evaluation(result.accuracy, seconds)

    def seed_for(self, arch: ArchSpec) -> None:
        """Seed torch from ``arch``: the same candidate gets the same initialisation and batch
        order in any trial."""
        torch.manual_seed(self.context.seed + int(arch.digest()[:8], 16))
