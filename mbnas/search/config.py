"""The settings of a search (the schema of ``conf/search.yaml``), checked once before it starts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mbnas.config import compose_config
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.evaluators import available_evaluators, evaluator_config
from mbnas.export import ExportRequest
from mbnas.search.latency import LATENCY_MODES, LatencyEstimateConfig
from mbnas.search.objective import OBJECTIVES
from mbnas.search.storage import HeartbeatConfig
from mbnas.search.study import MAX_SEED, SAMPLERS
from mbnas.space import SearchSpace, load_space
from mbnas.validation import check_choice, check_int

DUPLICATES = ("reuse", "evaluate")


@dataclass
class ExportConfig:
    """What a search exports beside best.yaml (and pareto/)."""

    weights: bool = True  # inherited (supernet) weights of the best architecture as best.pt
    onnx: bool = False  # best.onnx, its batch axis dynamic
    onnx_dynamic_size: bool = False  # best.onnx's height and width dynamic too
    torchscript: bool = False
    pt2: bool = False  # best.pt2, a torch.export program (torch.export.load(path).module())
    keep_supernet: bool = True  # false: delete supernet.pt once exported (resume warms up again)

    def request(self) -> ExportRequest:
        """The optional files these settings ask for."""
        return ExportRequest(onnx=self.onnx, torchscript=self.torchscript, pt2=self.pt2,
                             dynamic_size=self.onnx_dynamic_size)


@dataclass
class SearchConfig:
    """Schema of ``conf/search.yaml``."""

    # Mappings whose keys the user chooses (mbnas.config's typo check accepts them with a +).
    OPEN_MAPPINGS: ClassVar[tuple[str, ...]] = ("budget", "evaluator.features",
                                                "evaluator.proxy_features")
    name: str | None = None
    preset: str = "default"  # set from the preset= choice: part of the run's name and signature
    runs_dir: str = "runs"
    space: str | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    objective: str = "accuracy"
    sampler: str = "tpe"
    startup_trials: int = 10
    pruner: str = "none"  # none | median | successive_halving | hyperband (mbnas.search.pruning)
    n_trials: int = 30
    max_pruned_trials: int = 2000
    seed: int = 0
    seeds: list[str] = field(default_factory=list)
    storage: str | None = None  # a database URL, or env:NAME to read it from $NAME
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    duplicates: str = "reuse"  # reuse: a re-sampled architecture takes its earlier score
    device: str = "auto"
    amp: str = "auto"  # auto | off | bf16 | fp16: autocast of the warm-up and fine-tuning
    channels_last: bool | None = None  # NHWC weights and batches; None: true
    threads: int | None = None
    latency: LatencyEstimateConfig = field(default_factory=LatencyEstimateConfig)
    # The chosen evaluator's settings, typed by its own schema: see mbnas.evaluators.
    evaluator: dict[str, Any] = field(default_factory=lambda: {"name": "supernet"})
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def check_search_config(cfg: SearchConfig) -> None:
    """Reject settings that cannot work, naming the key."""
    check_choice(cfg.objective, "objective", tuple(OBJECTIVES))
    check_choice(cfg.sampler, "sampler", SAMPLERS)
    check_int(cfg.n_trials, "n_trials", minimum=1)
    check_int(cfg.seed, "seed", minimum=0, maximum=MAX_SEED)
    check_choice(cfg.latency.mode, "latency.mode", LATENCY_MODES)
    check_choice(cfg.duplicates, "duplicates", DUPLICATES)
    check_int(cfg.heartbeat.interval_s, "heartbeat.interval_s", minimum=1)
    check_int(cfg.heartbeat.grace_s, "heartbeat.grace_s", minimum=cfg.heartbeat.interval_s + 1)
    check_int(cfg.heartbeat.retries, "heartbeat.retries", minimum=0)


def space_defaults(overrides: list[str]) -> list[str]:
    """``overrides`` after the evaluator of the space they name (unless they choose one with
    ``evaluator=``) and that space's settings of it (whenever it is the one used): each space's
    default is the evaluator that ranked best on it. ``evaluator.KEY=`` settings apply on top."""
    spaces = [o.split("=", 1)[1] for o in overrides if o.startswith("space=")]
    space = load_space(spaces[-1] if spaces else None)
    chosen = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=")[0] == "evaluator"]
    if space.evaluator is None or (chosen and chosen[-1] != space.evaluator):
        return overrides
    check_space_settings(space, spaces[-1] if spaces else space.name)
    return [f"evaluator={space.evaluator}", *setting_overrides(space.evaluator_settings),
            *overrides]


def check_space_settings(space: SearchSpace, given: str) -> None:
    """A space's evaluator settings are checked against the evaluator's schema before they meet
    the user's: a mistake in them is the space file's, and the error says so."""
    if not space.evaluator_settings and space.evaluator in available_evaluators():
        return  # a known name alone composes as it is (checking costs a compose, ~0.2 s)
    try:
        composed = compose_config("search", [f"evaluator={space.evaluator}",
                                             *setting_overrides(space.evaluator_settings)],
                                  SearchConfig)
        evaluator_config(composed.evaluator)
    except ConfigError as error:
        fix = "correct the evaluator: entry of that space's YAML file"
        raise ConfigError(f"space {given}: {error.where}", error.problem,
                          f"{fix} ({error.fix})" if error.fix else fix) from None


def setting_overrides(settings: Mapping[str, Any]) -> list[str]:
    """Hydra overrides that give the evaluator these settings; a mapping replaces the conf's
    mapping whole rather than merging into it."""
    rendered = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            rendered += [f"~evaluator.{key}", f"+evaluator.{key}={hydra_value(value)}"]
        else:
            rendered.append(f"evaluator.{key}={hydra_value(value)}")
    return rendered


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (mappings, lists and plain values); strings are
    quoted, so commas, spaces and words such as ``null`` stay text."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{hydra_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        # Hydra reads a backslash literally unless it precedes a quote or ends the string.
        return "'" + re.sub(r"(\\*)('|$)", lambda m: m[1] * 2 + "\\" * bool(m[2]) + m[2],
                            value) + "'"
    return str(value)
