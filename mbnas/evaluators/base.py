"""The evaluator interface: an architecture in, its score and what scoring it cost out.

An evaluator is one class with a typed config (the schema of ``conf/evaluator/<name>.yaml``),
registered by name (:func:`mbnas.evaluators.register`). The search builds it once per run with an
:class:`EvaluationContext`, calls :meth:`Evaluator.prepare` before the first trial and
:meth:`Evaluator.evaluate` per candidate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from omegaconf import MISSING
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.budget import Budget
from mbnas.data import DataConfig
from mbnas.precision import FP32, Precision
from mbnas.run_folder import RunFolder
from mbnas.space import SearchSpace
from mbnas.tensorboard import TrialLog


@dataclass
class EvaluatorConfig:
    """What every evaluator's config holds: its name, as ``evaluator=NAME`` chose it."""

    name: str = MISSING

    def check(self) -> None:
        """Reject settings that cannot work, naming the key (nothing to check here)."""

    @property
    def reads_data(self) -> bool:
        """Whether scores depend on the images (so synthetic data makes them meaningless)."""
        return True

    @property
    def builds_networks(self) -> bool:
        """Whether scoring a candidate builds its network (whose reference cycles the search
        then collects after each trial; without networks that collection only walks the
        study's growing trial cache, a tenth of a 1000-candidate counted search): exactly the
        evaluators that run candidates on images."""
        return self.reads_data


# What an evaluator that trains calls at each of its checkpoints, with the training steps done
# and the validation accuracy there: True stops this candidate's training at that point (a
# multi-fidelity search lets its pruner decide).
Checkpoint = Callable[[int, float], bool]


@dataclass(frozen=True)
class Evaluation:
    """An evaluator's verdict on one architecture: a score (higher is better; validation
    accuracy for evaluators that train), the seconds it took, and the raw values the score was
    made of (proxies, predictions; empty for evaluators that train), for logs and benchmarks."""

    score: float
    seconds: float
    features: Mapping[str, float] = field(default_factory=dict)
    stopped_at: int | None = None  # the training step a checkpoint stopped it at


@dataclass(frozen=True)
class EvaluationContext:
    """What a search gives every evaluator: data, device, seed, the space and its budget, the
    precision and layout training runs in, and what to call after each supernet warm-up step
    (the search revises its expected duration from it)."""

    data: DataConfig
    device: torch.device
    seed: int
    space: SearchSpace
    budget: Budget
    precision: Precision = FP32
    on_warmup_step: Callable[[int], None] | None = None


class Evaluator(ABC):
    """Scores candidate architectures for the search."""

    name: ClassVar[str]
    config: ClassVar[type[EvaluatorConfig]]  # the schema of conf/evaluator/<name>.yaml
    # Whether :meth:`model_for` gives networks with weights worth exporting (best.pt).
    exports_weights: ClassVar[bool] = False
    # What progress lines and summaries call the score: only evaluators that train and validate
    # measure an accuracy (the study stores it as "accuracy" either way).
    score_name: ClassVar[str] = "accuracy"
    # Whether it warms a supernet up once per run (:meth:`warm_up`, `python -m mbnas warmup`).
    warms_up: ClassVar[bool] = False
    # Whether :meth:`evaluate` calls its ``checkpoint`` as it trains (so a pruner can stop it).
    stops_early: ClassVar[bool] = False
    # Whether a search under torchrun can score candidates with it, every rank calling
    # :meth:`evaluate` and :meth:`model_for` together: it then trains each candidate
    # data-parallel and every rank gets the same result (see mbnas.search.data_parallel).
    data_parallel: ClassVar[bool] = False

    def __init__(self, cfg: EvaluatorConfig, context: EvaluationContext) -> None:
        self.cfg, self.context = cfg, context

    def prepare(self, run: RunFolder) -> None:
        """Work done once per run before the first trial, resumable (nothing by default)."""
        return None

    def warm_up(self, run: RunFolder) -> None:
        """Train the run's supernet once (resumable; waits for a worker already at it);
        data-parallel under torchrun. Nothing for evaluators that do not ``warms_up``."""
        return None

    def restore(self, run: RunFolder) -> None:
        """Load what :meth:`prepare` left in ``run``, refusing to redo it (nothing by default)."""
        return None

    @abstractmethod
    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None,
                 checkpoint: Checkpoint | None = None) -> Evaluation:
        """Score ``arch``, logging curves to ``log`` when given; an evaluator that
        ``stops_early`` calls ``checkpoint`` as it trains (the others ignore it)."""

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        """``arch``'s network with the weights this evaluator gives it (see ``exports_weights``)."""
        raise NotImplementedError(f"evaluator {self.name!r} holds no weights to export")
