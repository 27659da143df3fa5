"""``evaluator=counted``: candidates scored by architecture features counted from their
specification alone (logs of MACs, parameters and activations; layers that compute), never
built nor run: a candidate costs the search only its own overhead, and no images are read.

The score is :mod:`mbnas.evaluators.zero_cost`'s weighted sum of features standardised over a
reference sample of members within budget, restricted to the features that need no network. In
the 32 px ``cifar`` space, where NASWOT nearly follows the activation count, MACs + activations
ranked the trained members as well as MACs + NASWOT, and its winners of 1000 candidates trained
better (BENCHMARKS.md, Search quality): being free, it affords ten times the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

from mbnas.errors import ConfigError
from mbnas.evaluators.registry import register
from mbnas.evaluators.zero_cost import ARCH_FEATURES, FeatureScoreConfig, ZeroCostEvaluator
from mbnas.proxies import PROXIES


@dataclass
class CountedConfig(FeatureScoreConfig):
    """Schema of ``conf/evaluator/counted.yaml``."""

    name: str = "counted"

    def check(self) -> None:
        for feature, weight in self.features.items():
            if feature in ARCH_FEATURES or (feature in PROXIES and not weight):
                continue
            problem = ("is a proxy, which runs the network: evaluator=counted never does"
                       if feature in PROXIES else "is not a feature")
            raise ConfigError(f"evaluator.features.{feature}", problem,
                              f"choose from {', '.join(ARCH_FEATURES)} (for proxies: "
                              "evaluator=zero_cost)")
        super().check()


@register
class CountedEvaluator(ZeroCostEvaluator):
    """Scores a candidate by its counted features: a weighted sum of standardised values."""

    name = "counted"
    config = CountedConfig
