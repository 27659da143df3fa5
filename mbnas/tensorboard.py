"""TensorBoard logging of a search, laid out to be read top-down: study views first, then the
supernet warm-up, then per-trial curves in groups of ten, and hparams last.

TensorBoard sorts tag groups by name, hence the numbered groups: ``1 study`` (best accuracy so
far, accuracy against MACs and latency with the budget line, the best architecture),
``2 supernet`` (the warm-up loss), ``3 trials 0000-0009`` ... (each trial's brief-training curves,
ten runs per chart instead of every run in one), then ``hparam/`` (the HParams dashboard's
metrics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from mbnas.plots import best_so_far_figure, close, cost_figure

METRICS = ("accuracy", "macs", "params", "latency_ms")
STUDY, SUPERNET = "1 study", "2 supernet"
TRIALS_PER_GROUP = 10


def trial_group(number: int) -> str:
    """The tag group of a trial's curves: ``3 trials 0010-0019`` for trial 13."""
    first = number // TRIALS_PER_GROUP * TRIALS_PER_GROUP
    return f"3 trials {first:04d}-{first + TRIALS_PER_GROUP - 1:04d}"


def hparam_value(value: Any) -> int | float | str | bool:
    """A value the HParams dashboard accepts: numbers, strings and booleans as they are."""
    return value if isinstance(value, (int, float, str, bool)) else str(value)


class TrialLog:
    """One trial's writer: brief-training curves now, its hparams row when it finishes."""

    def __init__(self, log_dir: Path, number: int):
        self.group = trial_group(number)
        self.writer = SummaryWriter(str(log_dir / f"trial-{number:04d}"))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """A curve point, filed under the trial's group (``train/loss`` → ``3 trials .../
        train/loss``)."""
        self.writer.add_scalar(f"{self.group}/{tag}", value, step)

    def evaluation(self, group: str, values: Mapping[str, float], seconds: float) -> None:
        """What a candidate was scored from (``group/name``: its proxies, predictions, validation
        metrics) and the seconds scoring took."""
        for name, value in values.items():
            self.scalar(f"{group}/{name}", value, 0)
        self.scalar("time/evaluation_s", seconds, 0)

    def finish(self, choices: Mapping[str, Any], metrics: Mapping[str, float | None]) -> None:
        """The trial's HParams row: its architecture choices and its metrics."""
        hparams = {key: hparam_value(value) for key, value in choices.items()}
        values = {f"hparam/{key}": float(value) for key, value in metrics.items()
                  if value is not None}
        # run_name="." keeps the hparams row in this trial's own folder beside its curves.
        self.writer.add_hparams(hparams, values, run_name=".")
        self.writer.close()

    def close(self) -> None:
        """End a trial that failed: its curves so far stay, without an HParams row."""
        self.writer.close()


class StudyLog:
    """Study-level views: best so far, accuracy against costs, the warm-up, the best arch."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.writer = SummaryWriter(str(log_dir / "study"))

    def trial(self, number: int, accuracy: float, best: float) -> None:
        """One trained trial's accuracy and the best so far, against its trial number."""
        self.writer.add_scalar(f"{STUDY}/best accuracy so far", best, number)
        self.writer.add_scalar(f"{STUDY}/accuracy", accuracy, number)

    def best_so_far(self, numbers: Sequence[int], accuracies: Sequence[float], step: int
                    ) -> None:
        """The best-so-far figure over every trained trial."""
        figure = best_so_far_figure(numbers, accuracies)
        self.writer.add_figure(f"{STUDY}/a best accuracy so far", figure, step)
        close(figure)

    def cost_scatter(self, points: Sequence[Mapping[str, float]], pareto: Sequence[int],
                     cost_key: str, budget: float | None, step: int) -> None:
        """Accuracy against ``cost_key`` with its Pareto front and budget line."""
        if not points:
            return
        figure = cost_figure(points, pareto, cost_key, budget)
        name = cost_key.removesuffix("_ms")
        self.writer.add_figure(f"{STUDY}/b accuracy vs {name}", figure, step)
        close(figure)

    def best_arch(self, text: str, step: int) -> None:
        """The best architecture's YAML, as a code block in the Text dashboard."""
        block = "\n".join("    " + line for line in text.splitlines())
        self.writer.add_text(f"{STUDY}/best architecture", block, step)

    def close(self) -> None:
        self.writer.close()


def log_warmup(log_dir: Path, losses: Sequence[float]) -> None:
    """The supernet warm-up's loss per step (largest member) in its own run, ``tb/supernet``;
    written once, so a resumed search does not draw it twice."""
    run = log_dir / "supernet"
    if run.is_dir() and any(run.iterdir()):
        return
    writer = SummaryWriter(str(run))
    for step, loss in enumerate(losses, start=1):
        writer.add_scalar(f"{SUPERNET}/warm-up loss (largest member)", loss, step)
    writer.close()
