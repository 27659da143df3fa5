"""TensorBoard logging of a search: per-trial curves and hparams, study-level summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard, never to a window
import matplotlib.pyplot as plt  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

METRICS = ("accuracy", "macs", "params", "latency_ms")


def _hparam_value(value: Any) -> int | float | str | bool:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


class TrialLog:
    """One trial's writer: brief-training curves now, its hparams row when it finishes."""

    def __init__(self, log_dir: Path, number: int):
        self.writer = SummaryWriter(str(log_dir / f"trial-{number:04d}"))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def finish(self, choices: Mapping[str, Any], metrics: Mapping[str, float | None]) -> None:
        hparams = {key: _hparam_value(value) for key, value in choices.items()}
        values = {f"hparam/{key}": float(value) for key, value in metrics.items()
                  if value is not None}
        # run_name="." keeps the hparams row in this trial's own folder beside its curves.
        self.writer.add_hparams(hparams, values, run_name=".")
        self.writer.close()


class StudyLog:
    """Study-level summaries: best-so-far, accuracy-vs-cost scatter with Pareto front, best arch."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.writer = SummaryWriter(str(log_dir / "study"))

    def trial(self, number: int, accuracy: float, best: float) -> None:
        self.writer.add_scalar("study/accuracy", accuracy, number)
        self.writer.add_scalar("study/best_accuracy", best, number)

    def scatter(self, points: Sequence[Mapping[str, float]], pareto: Sequence[int], cost_key: str,
                step: int) -> None:
        """Accuracy against ``cost_key`` for every completed trial, the Pareto front joined."""
        if not points:
            return
        scale, label = {"macs": (1e6, "MACs (M)"), "params": (1e6, "parameters (M)"),
                         "latency_ms": (1.0, "latency (ms)")}[cost_key]
        figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
        axes.scatter([p[cost_key] / scale for p in points], [p["accuracy"] for p in points],
                     s=14, alpha=0.6, label="trials")
        front = sorted((points[i] for i in pareto), key=lambda p: p[cost_key])
        axes.plot([p[cost_key] / scale for p in front], [p["accuracy"] for p in front], "o-",
                  color="tab:red", label="Pareto front")
        axes.set_xlabel(label)
        axes.set_ylabel("validation accuracy")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        self.writer.add_figure(f"study/accuracy_vs_{cost_key}", figure, step)
        plt.close(figure)

    def best_arch(self, text: str, step: int) -> None:
        # Markdown code block so the YAML keeps its line breaks in the Text dashboard.
        block = "\n".join("    " + line for line in text.splitlines())
        self.writer.add_text("study/best_architecture", block, step)

    def close(self) -> None:
        self.writer.close()

