"""Evaluators that train a candidate briefly and score it on the validation split.

Under torchrun (a search whose ranks all call the evaluator together, see
:mod:`mbnas.search.data_parallel`) each rank takes its shard of every global batch of
``data.batch_size`` images, the candidate trains in DistributedDataParallel, and validation is
summed over the ranks' shards: every rank gets the score one process gets on the same global
batches (up to BatchNorm, which normalises each rank's share on its own statistics).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.data import make_loader
from mbnas.distributed import (
    broadcast_buffers,
    current_world,
    evaluate_shards,
    local_batch,
    mean_across,
    wrap,
)
from mbnas.errors import Diverged
from mbnas.evaluators.base import (
    Checkpoint,
    Evaluation,
    EvaluationContext,
    Evaluator,
    EvaluatorConfig,
)
from mbnas.precision import FP32, Precision
from mbnas.tensorboard import TrialLog
from mbnas.train import (
    EvalResult,
    OptimConfig,
    check_finite,
    check_optim_config,
    infinite,
    make_optimization,
    model_device,
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
                  log: TrialLog | None = None, precision: Precision = FP32,
                  stop: Callable[[int], bool] | None = None) -> float:
    """``steps`` optimiser steps with a cosine schedule under ``precision``; returns the last
    loss (NaN if none). A non-finite loss raises :class:`~mbnas.errors.Diverged` naming the
    step. ``stop``, called with the steps done after each step, ends the training early by
    returning True (the schedule stays the one of ``steps``).

    With several processes (every rank calling it with its shard's ``batches``) ``model``
    trains in DistributedDataParallel: gradients averaged once a step, the loss the ranks'
    mean (so that all of them diverge at the same step), and at the end every rank holds rank
    0's BatchNorm statistics, as DistributedDataParallel keeps them."""
    if steps <= 0:
        return float("nan")
    precision.model(model)
    replica = wrap(model, model_device(model))
    optimizer, scheduler, criterion = make_optimization(model, optim, steps)
    scaler = precision.scaler()
    loss = float("nan")
    for step in range(steps):
        try:
            loss = train_step(replica, next(batches), optimizer, scheduler, criterion,
                              grad_clip=optim.grad_clip, precision=precision, scaler=scaler,
                              agree=mean_across)
        except Diverged as error:
            raise Diverged(f"{error} at training step {step + 1} of {steps} (lr {optim.lr:g})"
                           ) from None
        if log is not None:
            log.scalar("train/loss", loss, step)
        if stop is not None and stop(step + 1):
            break
    broadcast_buffers(model)
    return loss


class BriefTrainingEvaluator(Evaluator):
    """Scores the network :meth:`model_for` trains, by its validation accuracy."""

    cfg: BriefTrainingConfig
    data_parallel = True

    def __init__(self, cfg: BriefTrainingConfig, context: EvaluationContext) -> None:
        super().__init__(cfg, context)
        # This rank's shard of each global batch (the whole batch in a world of one).
        world = current_world()
        batch = local_batch(context.data.batch_size, world)
        self.train_loader = make_loader(context.data, "train", shuffle=True, shard=world.shard,
                                        batch_size=batch)
        self.val_loader = make_loader(context.data, "val", shuffle=False, shard=world.shard,
                                      batch_size=batch)

    @abstractmethod
    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        """``arch``'s network after this evaluator's brief training."""

    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None,
                 checkpoint: Checkpoint | None = None) -> Evaluation:
        start = time.perf_counter()
        model = self.model_for(arch, log)
        return self.scored(model, start, log)

    def validate(self, model: nn.Module) -> EvalResult:
        """``model``'s accuracy and loss on the validation split (``eval_batches`` of it)."""
        result = evaluate_shards(model, self.val_loader, max_batches=self.cfg.eval_batches)
        check_finite(result.loss, "the validation loss")  # its accuracy would mean nothing
        return result

    def scored(self, model: nn.Module, start: float, log: TrialLog | None,
               result: EvalResult | None = None, stopped_at: int | None = None) -> Evaluation:
        """The evaluation of ``model`` (validated now unless ``result`` is given), timed from
        ``start``."""
        result = result or self.validate(model)
        seconds = time.perf_counter() - start
        if log is not None:
            log.evaluation("val", {"accuracy": result.accuracy, "loss": result.loss}, seconds)
        return Evaluation(result.accuracy, seconds, stopped_at=stopped_at)

    def seed_for(self, arch: ArchSpec) -> None:
        """Seed torch from ``arch``: the same candidate gets the same initialisation in any
        trial."""
        torch.manual_seed(self.context.seed + int(arch.digest()[:8], 16))

    def batches(self) -> Iterator:
        """The training batches of one candidate: the same ones, from the first, for every
        candidate (a fair comparison, and the same score for an architecture in any trial)."""
        return infinite(self.train_loader)
