"""The study's figures: best accuracy so far per trial, and accuracy against a cost with the
Pareto front and the budget line. Titled and labelled to be read at a glance in TensorBoard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard, never to a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

COST_AXES = {"macs": (1e6, "MACs (M)", "MACs"), "params": (1e6, "parameters (M)", "parameters"),
             "latency_ms": (1.0, "latency (ms)", "latency")}


def best_so_far_figure(numbers: Sequence[int], accuracies: Sequence[float]) -> Figure:
    """Each trained trial's accuracy and the best so far, against the Optuna trial number."""
    figure, axes = plt.subplots(figsize=(6.4, 4), dpi=100)
    best, running = [], float("-inf")
    for accuracy in accuracies:
        running = max(running, accuracy)
        best.append(running)
    axes.scatter(numbers, accuracies, s=16, alpha=0.5, color="tab:blue", label="trial")
    axes.step(numbers, best, where="post", color="tab:red", linewidth=2, label="best so far")
    axes.set_title(f"Best accuracy so far: {best[-1]:.4f} after {len(numbers)} trained "
                   "candidates")
    axes.set_xlabel("Optuna trial number")
    axes.set_ylabel("validation accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def cost_figure(points: Sequence[Mapping[str, float]], pareto: Sequence[int], cost_key: str,
                budget: float | None) -> Figure:
    """Accuracy against ``cost_key`` for every trained candidate, the Pareto front joined, and
    the budget as a vertical line."""
    scale, label, name = COST_AXES[cost_key]
    figure, axes = plt.subplots(figsize=(6.4, 4), dpi=100)
    axes.scatter([p[cost_key] / scale for p in points], [p["accuracy"] for p in points],
                 s=16, alpha=0.5, label="trained candidate")
    front = sorted((points[i] for i in pareto), key=lambda p: p[cost_key])
    axes.plot([p[cost_key] / scale for p in front], [p["accuracy"] for p in front], "o-",
              color="tab:red", label="Pareto front")
    title = f"Accuracy vs {name}"
    if budget is not None:
        axes.axvline(budget / scale, color="black", linestyle="--", linewidth=1.2,
                     label=f"budget {budget / scale:g}{'' if scale == 1 else 'M'}")
        title += " (dashed: budget)"
    axes.set_title(title)
    axes.set_xlabel(label)
    axes.set_ylabel("validation accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    return figure


def close(figure: Figure) -> None:
    """Free a figure once logged."""
    plt.close(figure)
