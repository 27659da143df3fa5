"""Hard budgets on MACs, parameters and latency, parsed as people write them."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mbnas.cost import count
from mbnas.errors import ConfigError
from mbnas.units import format_count, parse_count, parse_milliseconds

BUDGET_KEYS = ("macs", "params", "latency_ms")


@dataclass(frozen=True)
class Budget:
    """Upper limits; ``None`` means unconstrained. Budgets are hard: never exceeded by a result."""

    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> Budget:
        """Parse ``budget.macs=300M``, ``budget.params=5M``, ``budget.latency_ms=25ms``."""
        values = dict(values or {})
        for key in values:
            if key not in BUDGET_KEYS:
                raise ConfigError(f"budget.{key}", "unknown budget",
                                  "use +budget.macs=300M, +budget.params=5M or "
                                  "+budget.latency_ms=25ms")
        parsed = {key: value for key, value in values.items() if value is not None}
        return cls(
            macs=parse_count(parsed["macs"], "budget.macs") if "macs" in parsed else None,
            params=parse_count(parsed["params"], "budget.params") if "params" in parsed else None,
            latency_ms=(parse_milliseconds(parsed["latency_ms"], "budget.latency_ms")
                        if "latency_ms" in parsed else None),
        )

    @property
    def limits(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in BUDGET_KEYS if getattr(self, key) is not None}

    @property
    def needs_latency(self) -> bool:
        return self.latency_ms is not None

    def constraints(self, measured: Mapping[str, float | None]) -> dict[str, float]:
        """Optuna constraint values, ≤ 0 when within budget: the relative excess per budget."""
        return {key: measured[key] / limit - 1.0 for key, limit in self.limits.items()
                if measured.get(key) is not None}

    def violations(self, measured: Mapping[str, float | None]) -> list[str]:
        """Human-readable reasons a candidate is over budget (empty when it fits)."""
        return [f"{describe(key, measured[key])} > budget {describe(key, limit)}"
                for key, limit in self.limits.items()
                if measured.get(key) is not None and measured[key] > limit]

    def describe(self) -> str:
        if not self.limits:
            return "no budget"
        return ", ".join(f"{key} ≤ {describe(key, limit)}" for key, limit in self.limits.items())

    def slug(self) -> str:
        """A short tag for run names, e.g. ``macs300M-lat25ms``."""
        parts = []
        if self.macs:
            parts.append(f"macs{format_count(self.macs).replace('.00', '')}")
        if self.params:
            parts.append(f"params{format_count(self.params).replace('.00', '')}")
        if self.latency_ms:
            parts.append(f"lat{self.latency_ms:g}ms")
        return "-".join(parts) or "nobudget"


def describe(key: str, value: float) -> str:
    if key == "latency_ms":
        return f"{value:.2f} ms"
    return f"{format_count(value)} {'MACs' if key == 'macs' else 'params'}"


def check_reachable(budget: Budget, smallest: Mapping[str, float | None], space_name: str) -> None:
    """Stop before any training when even the space's smallest member is over a budget."""
    for key, limit in budget.limits.items():
        value = smallest.get(key)
        if value is not None and value > limit:
            raise ConfigError(
                f"budget.{key}",
                f"{describe(key, limit)} cannot be met: the smallest member of space "
                f"{space_name!r} needs {describe(key, value)}",
                f"raise the budget to at least {describe(key, value)} or choose a space with "
                "smaller members (space=...)")


class WithinBudget:
    """The members of a space that fit a budget's MAC and parameter limits.

    Supernet warm-up samples from this view instead of the whole space (budget-aware sandwich
    rule): members over budget are never evaluated, so training them only costs time, and the
    "largest" teacher becomes the largest member that fits, found among ``probes`` samples.
    Latency limits are left to the search: measuring inside the sampling loop would cost more
    than it saves.
    """

    def __init__(self, space: Any, budget: Budget, probes: int = 64, seed: int = 0,
                 max_tries: int = 2000):
        self.space, self.budget = space, budget
        self.probes, self.seed, self.max_tries = probes, seed, max_tries
        limits = [f"{key}≤{describe(key, value)}" for key, value in budget.limits.items()
                  if key != "latency_ms"]
        self.name = f"{space.name}[{', '.join(limits)}]" if limits else space.name
        self.resolution = space.resolution
        self._largest = None

    def fits(self, arch: Any) -> bool:
        cost = count(arch)
        return not self.budget.violations({"macs": cost.macs, "params": cost.params})

    def smallest(self) -> Any:
        return self.space.smallest()

    def sample_random(self, rng: Any) -> Any:
        """A random member within budget (rejection sampling; the smallest if none is found)."""
        for _ in range(self.max_tries):
            arch = self.space.sample_random(rng)
            if self.fits(arch):
                return arch
        return self.smallest()

    def largest(self) -> Any:
        if self._largest is None:
            largest = self.space.largest()
            if not self.fits(largest):
                rng = random.Random(self.seed)
                members = [self.sample_random(rng) for _ in range(self.probes)]
                largest = max(members, key=lambda arch: count(arch).macs)
            self._largest = largest
        return self._largest
