"""``evaluator=scratch``: each candidate trained briefly from a fresh initialisation: slow, but
free of weight-sharing bias. Under torchrun every candidate trains on all processes,
data-parallel (see :mod:`mbnas.evaluators.brief_training`).

Multi-fidelity: with ``checkpoint_every`` steps it validates as it trains and offers each
accuracy to the search's checkpoint, whose pruner (``pruner=``) can stop a candidate that is
behind the others at the same step; the candidate then scores its accuracy there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mbnas.arch import ArchSpec
from mbnas.evaluators.base import Checkpoint, Evaluation
from mbnas.evaluators.brief_training import (
    BriefTrainingConfig,
    BriefTrainingEvaluator,
    train_briefly,
)
from mbnas.evaluators.registry import register
from mbnas.nn import build
from mbnas.tensorboard import TrialLog
from mbnas.validation import check_int


@dataclass
class ScratchConfig(BriefTrainingConfig):
    """Schema of ``conf/evaluator/scratch.yaml``."""

    name: str = "scratch"
    train_steps: int = 200  # per candidate
    checkpoint_every: int = 0  # steps between the validations a pruner sees (0: none)

    def check(self) -> None:
        super().check()
        check_int(self.train_steps, "evaluator.train_steps", minimum=0)
        check_int(self.checkpoint_every, "evaluator.checkpoint_every", minimum=0)


@register
class ScratchEvaluator(BriefTrainingEvaluator):
    """Each candidate trained briefly from a fresh initialisation."""

    name = "scratch"
    config = ScratchConfig
    stops_early = True
    cfg: ScratchConfig

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        model = self.initial(arch)
        self.train(model, log)
        return model

    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None,
                 checkpoint: Checkpoint | None = None) -> Evaluation:
        every, steps = self.cfg.checkpoint_every, self.cfg.train_steps
        if checkpoint is None or not every:
            return super().evaluate(arch, log)
        start = time.perf_counter()
        model = self.initial(arch)
        stopped_at, result_there = None, None

        def stop(step: int) -> bool:
            nonlocal stopped_at, result_there
            if step % every or step == steps:  # the last step's validation is the score's
                return False
            result = self.validate(model)
            if not checkpoint(step, result.accuracy):
                return False
            stopped_at, result_there = step, result
            return True

        self.train(model, log, stop)
        return self.scored(model, start, log, result_there, stopped_at)

    def initial(self, arch: ArchSpec) -> nn.Module:
        """``arch``'s network, initialised as for any trial of it."""
        self.seed_for(arch)
        return build(arch).to(self.context.device)

    def train(self, model: nn.Module, log: TrialLog | None,
              stop: Callable[[int], bool] | None = None) -> None:
        """``train_steps`` from scratch (fewer if ``stop`` says so)."""
        train_briefly(model, self.batches(), self.cfg.train_steps, self.cfg.optim, log,
                      self.context.precision, stop)
