"""``evaluator=predictor``: a supernet labels a few hundred members, a ridge predictor learns from
the labels, and a candidate's score adds the prediction to its zero-cost proxies.

Once per run (resumable): a weight-sharing supernet is warmed up (by default one uniformly
random member per step, op weights nested where shapes allow); ``label_archs`` members within
budget are labelled with the supernet's negative loss on one fixed batch of validation images
(BatchNorm on that batch's statistics); a ridge regression on one-hot choice encodings
(:mod:`mbnas.predictor`) is fitted to the labels. A candidate's score is
``z(prediction) + proxy_weight * sum(weight * z(feature))`` over ``proxy_features`` (zero-cost
features, by default NASWOT alone), each standardised over the labelled members. The
prediction smooths the supernet's noisy labels; the proxies add what a short warm-up cannot
learn.
On NAS-Bench-Macro its prototype ranked best of everything measured; through mbnas it ranked at
about the level of ``zero_cost`` (BENCHMARKS.md), which is why that stays the default.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.budget import WithinBudget
from mbnas.data import make_loader
from mbnas.errors import ConfigError
from mbnas.evaluators.base import (
    Checkpoint,
    Evaluation,
    EvaluationContext,
    Evaluator,
    EvaluatorConfig,
)
from mbnas.evaluators.registry import register
from mbnas.evaluators.zero_cost import (
    ZeroCostConfig,
    ZeroCostEvaluator,
    check_feature_weights,
    reference_spread,
)
from mbnas.predictor import RidgePredictor
from mbnas.proxies import scoring_copy
from mbnas.run_folder import RunFolder
from mbnas.supernet import Supernet
from mbnas.supernet.network import SHARING
from mbnas.supernet.training import (
    RULES,
    SandwichConfig,
    load_finished_warmup,
    shared_warmup,
    subnet,
)
from mbnas.tensorboard import TrialLog
from mbnas.train import OptimConfig, check_finite, check_optim_config
from mbnas.validation import check_choice, check_float, check_int

LABELS_FILE = "predictor.json"


@dataclass
class PredictorConfig(EvaluatorConfig):
    """Schema of ``conf/evaluator/predictor.yaml``."""

    name: str = "predictor"
    warmup_steps: int = 1500  # supernet steps, once per run
    rule: str = "uniform"  # uniform (SPOS) | sandwich | fair (FairNAS)
    num_random: int = 1  # random members per step
    sharing: str = "nested"  # op-list stages: nested (ranked better) | separate (SPOS)
    label_archs: int = 300  # members within budget labelled by the supernet
    label_images: int = 256  # validation images of the one labelling batch
    penalty: float = 3.0  # ridge penalty
    proxy_weight: float = 1.0  # weight of the proxies' weighted sum beside the prediction
    proxy_features: dict[str, float] = field(default_factory=lambda: {"naswot": 1.0})
    proxy_depth_cap: float = 1.0  # the proxies' depth_cap, as evaluator=zero_cost's
    batch_size: int = 64  # training images the proxies see
    bn_images: int = 512  # BN recalibration of exported (inherited) weights
    optim: OptimConfig = field(default_factory=OptimConfig)

    def check(self) -> None:
        for key in ("warmup_steps", "num_random", "label_images"):
            check_int(getattr(self, key), f"evaluator.{key}", minimum=1)
        for key in ("label_archs", "batch_size"):  # a spread needs two values
            check_int(getattr(self, key), f"evaluator.{key}", minimum=2)
        check_choice(self.rule, "evaluator.rule", RULES)
        check_choice(self.sharing, "evaluator.sharing", SHARING)
        check_float(self.penalty, "evaluator.penalty", 0.0, None, low_inclusive=False)
        check_float(self.proxy_weight, "evaluator.proxy_weight", 0.0)
        check_feature_weights(self.proxy_features, "evaluator.proxy_features")
        check_float(self.proxy_depth_cap, "evaluator.proxy_depth_cap", low=0.0, high=1.0,
                    low_inclusive=False)
        check_optim_config(self.optim)

    def proxy_config(self) -> ZeroCostConfig:
        """The zero-cost features beside the prediction, as ``evaluator=zero_cost`` reads them."""
        return ZeroCostConfig(features=dict(self.proxy_features), batch_size=self.batch_size,
                              depth_cap=self.proxy_depth_cap)


@register
class PredictorEvaluator(Evaluator):
    """Ridge prediction from supernet labels plus zero-cost proxies, all standardised."""

    name = "predictor"
    score_name = "score"
    config = PredictorConfig
    exports_weights = True
    warms_up = True
    cfg: PredictorConfig

    def __init__(self, cfg: PredictorConfig, context: EvaluationContext) -> None:
        super().__init__(cfg, context)
        self.supernet = Supernet(context.space, sharing=cfg.sharing).to(context.device)
        self.train_loader = make_loader(context.data, "train", shuffle=True)
        self.proxy = ZeroCostEvaluator(cfg.proxy_config(), context)
        self.predictor: RidgePredictor | None = None
        self.reference: dict[str, tuple[float, float]] = {}

    def prepare(self, run: RunFolder) -> None:
        self.warm_up(run)
        path = run.path / LABELS_FILE
        if not path.is_file():
            self._label_and_fit(path)
        self._load(path)

    def warm_up(self, run: RunFolder) -> None:
        shared_warmup(self.supernet, self.context.space, self.context.data,
                      SandwichConfig(steps=self.cfg.warmup_steps, rule=self.cfg.rule,
                                     num_random=self.cfg.num_random, distill=False,
                                     seed=self.context.seed, optim=self.cfg.optim),
                      checkpoint=run.supernet, lock=run.supernet_lock,
                      precision=self.context.precision,
                      on_step=self.context.on_warmup_step)

    def restore(self, run: RunFolder) -> None:
        if not (run.path / LABELS_FILE).is_file() or not run.supernet.is_file():
            raise ConfigError(str(run.path), "has no fitted predictor",
                              "run the search again to warm up and fit it")
        load_finished_warmup(self.supernet, run.supernet, self.cfg.warmup_steps)
        self._load(run.path / LABELS_FILE)

    def _label_and_fit(self, path: Path) -> None:
        rng = random.Random(self.context.seed)
        members = WithinBudget(self.context.space, self.context.budget, seed=self.context.seed)
        archs = [members.sample_random(rng) for _ in range(self.cfg.label_archs)]
        images, labels = self.labelling_batch()
        space = self.context.space
        choices = [space.choices(arch.replace(resolution=space.resolution)) for arch in archs]
        targets = [self.label(arch, images, labels) for arch in archs]
        diverged = (f"the warm-up left a broken supernet: start a new run (another name=) with a "
                    f"lower evaluator.optim.lr (now {self.cfg.optim.lr:g})")
        reference_spread(targets, "the supernet's loss", diverged)
        predictor = RidgePredictor.fit(choices, targets, self.cfg.penalty)
        predictions = predictor.predict(choices).tolist()
        self.proxy.standardise_over([self.proxy.features(arch) for arch in archs],
                                    "evaluator.proxy_features")
        reference = {"prediction": reference_spread(predictions, "the prediction", diverged),
                     **self.proxy.reference}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"labels": targets, "predictor": predictor.to_dict(),
                                         "reference": reference}))
        temporary.replace(path)

    def labelling_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed validation images (and labels) every member is labelled on."""
        loader = make_loader(self.context.data, "val", shuffle=False)
        images, labels = [], []
        for x, y in loader:
            images.append(x)
            labels.append(y)
            if sum(len(b) for b in labels) >= self.cfg.label_images:
                break
        device = self.context.device
        return (torch.cat(images)[: self.cfg.label_images].to(device),
                torch.cat(labels)[: self.cfg.label_images].to(device))

    @torch.no_grad()
    def label(self, arch: ArchSpec, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The supernet's negative loss for ``arch`` on the batch, on the batch's BN statistics."""
        model = scoring_copy(self.supernet.extract(arch))
        return -float(F.cross_entropy(model(images), labels))

    def _load(self, path: Path) -> None:
        saved = json.loads(path.read_text())
        self.predictor = RidgePredictor.from_dict(saved["predictor"])
        self.reference = {name: tuple(value) for name, value in saved["reference"].items()}
        missing = set(self.proxy.cfg.used) - set(self.reference)
        if missing:
            raise ConfigError(str(path), f"has no reference for {', '.join(sorted(missing))}",
                              "run with another name= to fit the predictor with these "
                              "proxy_features, or keep the features it was fitted with")
        # Standardised over the labelled members, as the prediction is.
        self.proxy.reference = {name: self.reference[name] for name in self.proxy.cfg.used}

    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None,
                 checkpoint: Checkpoint | None = None) -> Evaluation:
        start = time.perf_counter()
        space = self.context.space
        choices = space.choices(arch.replace(resolution=space.resolution))
        values = {"prediction": float(self.predictor.predict([choices])[0]),
                  **self.proxy.features(arch)}
        for name, value in values.items():
            check_finite(value, "the supernet's prediction" if name == "prediction"
                         else f"zero-cost feature {name}")
        mean, spread = self.reference["prediction"]
        score = ((values["prediction"] - mean) / spread
                 + self.cfg.proxy_weight * self.proxy.score(values))
        seconds = time.perf_counter() - start
        if log is not None:
            log.evaluation("predictor", values, seconds)
        return Evaluation(score, seconds, values)

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        return subnet(self.supernet, arch, self.train_loader, self.cfg.bn_images)

