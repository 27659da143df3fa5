"""``evaluator=scratch``: each candidate trained briefly from a fresh initialisation: slow, but
free of weight-sharing bias. Under torchrun every candidate trains on all processes,
data-parallel (see :mod:`mbnas.evaluators.brief_training`)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mbnas.arch import ArchSpec
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

    def check(self) -> None:
        super().check()
        check_int(self.train_steps, "evaluator.train_steps", minimum=0)


@register
class ScratchEvaluator(BriefTrainingEvaluator):
    """Each candidate trained briefly from a fresh initialisation."""

    name = "scratch"
    config = ScratchConfig
    cfg: ScratchConfig

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        self.seed_for(arch)
        model = build(arch).to(self.context.device)
        train_briefly(model, self.batches, self.cfg.train_steps, self.cfg.optim, log,
                      self.context.precision)
        return model
