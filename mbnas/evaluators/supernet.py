"""``evaluator=supernet`` (default): candidates inherit the weights of a supernet warmed up once
per run with the sandwich rule (checkpointed, resumable), get BatchNorm statistics of their own,
a brief fine-tune, and are scored on the validation split."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from mbnas.arch import ArchSpec
from mbnas.budget import WithinBudget
from mbnas.data import make_loader
from mbnas.evaluators.base import EvaluationContext
from mbnas.evaluators.brief_training import (
    BriefTrainingConfig,
    BriefTrainingEvaluator,
    train_briefly,
)
from mbnas.evaluators.registry import register
from mbnas.run_folder import RunFolder
from mbnas.supernet import Supernet
from mbnas.supernet.network import SHARING
from mbnas.supernet.training import SandwichConfig, load_finished_warmup, shared_warmup, subnet
from mbnas.tensorboard import TrialLog
from mbnas.validation import check_choice, check_int


@dataclass
class SupernetConfig(BriefTrainingConfig):
    """Schema of ``conf/evaluator/supernet.yaml``."""

    name: str = "supernet"
    warmup_steps: int = 300  # sandwich-rule steps, once per run
    num_random: int = 2  # random subnets per sandwich step besides largest, smallest
    distill: bool = True  # in-place distillation from the largest subnet
    budget_aware: bool = True  # warm up only members within the MAC/params budget
    finetune_steps: int = 20  # per candidate, from the inherited weights
    finetune_lr: float = 0.01
    bn_images: int = 512  # images for BatchNorm recalibration of an inherited subnet
    sharing: str = "nested"  # op-list stages: nested (once-for-all) or separate (SPOS) weights

    def check(self) -> None:
        super().check()
        for key in ("warmup_steps", "num_random", "finetune_steps", "bn_images"):
            check_int(getattr(self, key), f"evaluator.{key}", minimum=0)
        check_choice(self.sharing, "evaluator.sharing", SHARING)


@register
class SupernetEvaluator(BriefTrainingEvaluator):
    """Candidates inherit weight-shared supernet weights, warmed up once per run."""

    name = "supernet"
    config = SupernetConfig
    exports_weights = True
    warms_up = True
    cfg: SupernetConfig

    def __init__(self, cfg: SupernetConfig, context: EvaluationContext) -> None:
        super().__init__(cfg, context)
        # Never advanced past its first epoch: every candidate's BN statistics come from the
        # same images, so candidates are compared on equal terms.
        self.bn_loader = make_loader(context.data, "train", shuffle=True)
        space, budget = context.space, context.budget
        self.warmup_space = (WithinBudget(space, budget, seed=context.seed)
                             if cfg.budget_aware and budget.limits else space)
        self.supernet = Supernet(space, sharing=cfg.sharing).to(context.device)

    def prepare(self, run: RunFolder) -> None:
        self.warm_up(run)

    def warm_up(self, run: RunFolder) -> None:
        sandwich = SandwichConfig(steps=self.cfg.warmup_steps, num_random=self.cfg.num_random,
                                  distill=self.cfg.distill, seed=self.context.seed,
                                  optim=self.cfg.optim)
        # Workers sharing a run folder take turns: the first warms up, the others resume its
        # finished checkpoint (which makes their training a no-op).
        shared_warmup(self.supernet, self.warmup_space, self.context.data, sandwich,
                      checkpoint=run.supernet, lock=run.supernet_lock,
                      precision=self.context.precision,
                      on_step=self.context.on_warmup_step)

    def restore(self, run: RunFolder) -> None:
        load_finished_warmup(self.supernet, run.supernet, self.cfg.warmup_steps)

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        self.seed_for(arch)
        model = subnet(self.supernet, arch, self.bn_loader, self.cfg.bn_images)
        finetune = dataclasses.replace(self.cfg.optim, lr=self.cfg.finetune_lr, warmup_steps=0)
        train_briefly(model, self.batches(), self.cfg.finetune_steps, finetune, log,
                      self.context.precision)
        return model
