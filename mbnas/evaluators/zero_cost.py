"""``evaluator=zero_cost``: candidates scored untrained, in about a second each, by zero-cost
proxies (:mod:`mbnas.proxies`) and architecture features, combined as a weighted sum of
standardised values.

Each feature is standardised by its mean and spread over a reference sample of members within
the budget, measured once per run (unlabelled: no accuracy is needed, so nothing is trained), so
that features of different scales add up and a candidate's score does not depend on which other
candidates the search has seen. Architecture features: ``depth`` (layers that compute, i.e. not
``skip``, counted up to ``depth_cap`` of the deepest member's), ``macs``, ``params`` and
``activations`` (their logarithms; activations count the elements of every conv's output, and in
the 32 px spaces NASWOT nearly follows them: Kendall tau 0.93-0.95 over random members). On
NAS-Bench-Macro, capped depth, SWAP and expressivity together ranked best of every evaluator
measured on 2 CPU cores (BENCHMARKS.md). ``evaluator=counted`` (:mod:`mbnas.evaluators.counted`)
is the same score restricted to the architecture features.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mbnas.arch import ArchSpec
from mbnas.budget import WithinBudget
from mbnas.cost import Cost, count
from mbnas.data import make_loader
from mbnas.errors import ConfigError, Diverged
from mbnas.evaluators.base import (
    Checkpoint,
    Evaluation,
    EvaluationContext,
    Evaluator,
    EvaluatorConfig,
)
from mbnas.evaluators.registry import register
from mbnas.nn import build
from mbnas.proxies import PROXIES
from mbnas.run_folder import RunFolder
from mbnas.tensorboard import TrialLog
from mbnas.train import check_finite
from mbnas.validation import check_float, check_int


def computing_layers(arch: ArchSpec) -> float:
    """The layers of ``arch`` that compute (every block but ``skip``)."""
    return float(sum(block.type != "skip" for block in arch.blocks()))


# Each from the architecture and its cost, counted once for all of them.
ARCH_FEATURES: dict[str, Callable[[ArchSpec, Cost], float]] = {
    "depth": lambda arch, cost: computing_layers(arch),
    "macs": lambda arch, cost: math.log(cost.macs),
    "params": lambda arch, cost: math.log(cost.params),
    "activations": lambda arch, cost: math.log(cost.activations),
}
FEATURES = (*PROXIES, *ARCH_FEATURES)
REFERENCE_FILE = "zero_cost_reference.json"


def reads_images(features: dict[str, float]) -> bool:
    """Whether a score of these feature weights runs the candidate on images (a proxy has a
    weight), rather than counting architecture features alone."""
    return any(weight and name in PROXIES for name, weight in features.items())


def reference_spread(values: list[float], what: str, fix: str) -> tuple[float, float]:
    """Mean and standard deviation (1 where the values do not vary) of a reference sample;
    :class:`~mbnas.errors.Diverged` when a value is NaN or infinite (it would make every
    standardised score so)."""
    bad = sum(not math.isfinite(value) for value in values)
    if bad:
        raise Diverged(f"{what} is NaN or infinite for {bad} of the {len(values)} reference "
                       f"members; {fix}")
    return statistics.fmean(values), statistics.pstdev(values) or 1.0


def check_feature_weights(features: dict[str, float], key: str) -> None:
    """Every name a feature of :data:`FEATURES` and every weight a number; ``key`` is the
    setting the errors name (``evaluator.features``, say)."""
    for name, weight in features.items():
        if name not in FEATURES:
            raise ConfigError(f"{key}.{name}", "is not a feature",
                              f"choose from {', '.join(FEATURES)}")
        check_float(weight, f"{key}.{name}", low=float("-inf"))


@dataclass
class FeatureScoreConfig(EvaluatorConfig):
    """What every weighted sum of standardised features is configured by (``evaluator=zero_cost``
    and ``evaluator=counted``)."""

    # Weight of each standardised feature in the score: proxies of mbnas.proxies, or depth,
    # macs, params, activations; a weight of 0 turns a feature off (the shipped config lists the
    # defaults).
    features: dict[str, float] = field(default_factory=dict)
    reference_archs: int = 50  # members within budget that standardise each feature
    # Share of the deepest member's computing layers beyond which ``depth`` stops counting: on
    # NAS-Bench-Macro, past about 3/4 of the deepest, the best networks spend their MACs on
    # larger blocks, not on more of them, and uncapped depth ranked the deep ones first.
    depth_cap: float = 1.0

    @property
    def used(self) -> dict[str, float]:
        """The features with a weight other than 0."""
        return {name: weight for name, weight in self.features.items() if weight}

    @property
    def reads_data(self) -> bool:
        return reads_images(self.features)

    def check(self) -> None:
        check_feature_weights(self.features, "evaluator.features")
        if not self.used:
            raise ConfigError("evaluator.features", "no feature has a weight",
                              "give at least one, e.g. evaluator.features.macs=1")
        check_int(self.reference_archs, "evaluator.reference_archs", minimum=2)
        check_float(self.depth_cap, "evaluator.depth_cap", low=0.0, high=1.0,
                    low_inclusive=False)


@dataclass
class ZeroCostConfig(FeatureScoreConfig):
    """Schema of ``conf/evaluator/zero_cost.yaml``."""

    name: str = "zero_cost"
    batch_size: int = 64  # training images the proxies see (the same batch for every candidate)

    def check(self) -> None:
        super().check()
        check_int(self.batch_size, "evaluator.batch_size", minimum=2)


@register
class ZeroCostEvaluator(Evaluator):
    """Scores a candidate at initialisation: a weighted sum of standardised features."""

    name = "zero_cost"
    score_name = "score"
    config = ZeroCostConfig
    cfg: FeatureScoreConfig

    def __init__(self, cfg: FeatureScoreConfig, context: EvaluationContext) -> None:
        super().__init__(cfg, context)
        if cfg.reads_data:  # a ZeroCostConfig with a proxy: counted's settings never read
            self.images, self.labels = self.proxy_batch()
        self.reference: dict[str, tuple[float, float]] = {}
        self.depth_limit = cfg.depth_cap * computing_layers(context.space.largest())

    def proxy_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training images (and labels) every candidate's proxies see, drawn by the seed."""
        data = dataclasses.replace(self.context.data, batch_size=self.cfg.batch_size,
                                   augment=False)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.context.seed)
        images, labels = next(iter(make_loader(data, "train", shuffle=True)))
        torch.random.set_rng_state(generator_state)
        return images.to(self.context.device), labels.to(self.context.device)

    def features(self, arch: ArchSpec) -> dict[str, float]:
        """The raw value of every configured feature for ``arch`` (untrained, seeded by arch)."""
        cost = count(arch)
        values = {name: ARCH_FEATURES[name](arch, cost) for name in self.cfg.used
                  if name in ARCH_FEATURES}
        if "depth" in values:
            values["depth"] = min(values["depth"], self.depth_limit)
        proxies = [name for name in self.cfg.used if name in PROXIES]
        if proxies:
            torch.manual_seed(self.context.seed + int(arch.digest()[:8], 16))
            model = build(arch).to(self.context.device)
            values.update({name: PROXIES[name](model, self.images, self.labels)
                           for name in proxies})
        return values

    def prepare(self, run: RunFolder) -> None:
        path = run.path / REFERENCE_FILE
        if path.is_file():
            self.restore(run)
            return
        rng = random.Random(self.context.seed)
        members = WithinBudget(self.context.space, self.context.budget, seed=self.context.seed)
        self.standardise_over([self.features(members.sample_random(rng))
                               for _ in range(self.cfg.reference_archs)])
        run.path.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"features": self.cfg.used,
                                         "reference": self.reference}, indent=1))
        temporary.replace(path)

    def standardise_over(self, samples: list[dict[str, float]],
                         key: str = "evaluator.features") -> None:
        """Take each feature's mean and spread from ``samples`` (raw values, as
        :meth:`features` gives them); ``key`` is the setting the errors name."""
        self.reference = {
            name: reference_spread([s[name] for s in samples], f"zero-cost feature {name}",
                                   f"turn it off with {key}.{name}=0")
            for name in self.cfg.used}

    def restore(self, run: RunFolder) -> None:
        path = run.path / REFERENCE_FILE
        if not path.is_file():
            raise ConfigError(str(path), "missing: the scores are standardised by it",
                              "run the search again to measure it")
        saved = json.loads(path.read_text())
        self.reference = {name: tuple(value) for name, value in saved["reference"].items()}
        missing = set(self.cfg.used) - set(self.reference)
        if missing:
            raise ConfigError(str(path), f"has no reference for {', '.join(sorted(missing))}",
                              "delete it to measure the new features, or keep the features")

    def score(self, values: dict[str, float]) -> float:
        """The weighted sum of the standardised ``values``."""
        return sum(weight * (values[name] - self.reference[name][0]) / self.reference[name][1]
                   for name, weight in self.cfg.used.items())

    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None,
                 checkpoint: Checkpoint | None = None) -> Evaluation:
        start = time.perf_counter()
        values = self.features(arch)
        for name, value in values.items():
            check_finite(value, f"zero-cost feature {name}")
        score = self.score(values)
        seconds = time.perf_counter() - start
        if log is not None:
            log.evaluation(self.name, values, seconds)
        return Evaluation(score, seconds, values)
