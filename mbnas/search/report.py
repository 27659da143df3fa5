"""What a search found: its trials, the top ones and the Pareto set, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from mbnas.search.objective import cost_metric
from mbnas.search.run import load_run
from mbnas.search.trials import best_trials, pareto_indices, trial_records

COLUMNS = ("number", "state", "accuracy", "macs", "params", "activations", "latency_ms")
# Every state an Optuna trial can be in: a report hides none (running: in flight, or left by a
# worker that died until the heartbeat fails it; waiting: enqueued, e.g. a retry).
STATES = ("complete", "pruned", "fail", "running", "waiting")


def report(study: optuna.Study, objective: str, top: int = 10) -> dict[str, Any]:
    """Every trial, the top ``top`` by accuracy, the Pareto set and the exported best."""
    rows = [record.row() for record in trial_records(study)]
    # A re-sampled architecture repeats its first trial's score: list each network once.
    complete = [r for r in rows if r["state"] == "complete" and r["duplicate_of"] is None]
    cost_key = cost_metric(objective)
    usable = [r for r in complete if r[cost_key] is not None]
    pareto = sorted((usable[i] for i in pareto_indices(usable, cost_key)),
                    key=lambda r: r[cost_key])
    best = best_trials(study)
    return {"study": study.study_name, "objective": objective, "trials": rows,
            "top": sorted(complete, key=lambda r: -r["accuracy"])[:top],
            "pareto": pareto, "pareto_cost": cost_key,
            "best": best[0].number if best else None,
            "counts": {state: sum(r["state"] == state for r in rows) for state in STATES},
            # Complete trials that took an earlier trial's score: not counted in n_trials.
            "repeats": sum(r["state"] == "complete" and r["duplicate_of"] is not None
                           for r in rows)}


def report_run(path: str | Path, top: int = 10) -> dict[str, Any]:
    """:func:`report` of the search run in folder ``path``."""
    cfg, study = load_run(path)
    return report(study, cfg.objective, top)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "accuracy":
        return f"{value:.4f}"
    if key in ("macs", "params", "activations"):
        return f"{value / 1e6:.2f}M"
    if key == "latency_ms":
        return f"{value:.2f}"
    return str(value)


def format_table(title: str, rows: list[dict[str, Any]]) -> str:
    widths = {key: max(len(key), *(len(_cell(key, r[key])) for r in rows)) if rows else len(key)
              for key in COLUMNS}
    lines = [title, "  ".join(key.rjust(widths[key]) for key in COLUMNS)]
    lines += ["  ".join(_cell(key, r[key]).rjust(widths[key]) for key in COLUMNS) for r in rows]
    return "\n".join(lines)


def _state_count(result: dict[str, Any], state: str) -> str:
    text = f"{result['counts'][state]} {state}"
    if state == "complete" and result["repeats"]:
        text += f" ({result['repeats']} of them repeats of a scored architecture, not counted)"
    return text


def format_report(result: dict[str, Any]) -> str:
    states = ", ".join(_state_count(result, state) for state in STATES)
    parts = [f"study {result['study']}: {states} (pruned: untrained, over budget or not needed); "
             f"objective {result['objective']}",
             "", format_table(f"top {len(result['top'])} by accuracy:", result["top"]), "",
             format_table(f"Pareto set (accuracy vs {result['pareto_cost']}):", result["pareto"])]
    failed = [r for r in result["trials"] if r["state"] == "fail"]
    if failed:
        parts += ["", "failed trials (not counted, never best):"]
        parts += [f"  #{r['number']}: {r['failed_reason'] or 'no reason recorded'}"
                  for r in failed]
    stopped = [r for r in result["trials"]
               if r["stopped_at_step"] is not None and r["duplicate_of"] is None]
    if stopped:
        parts += ["", f"{len(stopped)} candidates stopped early by the pruner score their "
                  "accuracy at that step: " + ", ".join(f"#{r['number']} at {r['stopped_at_step']}"
                                                       for r in stopped[:10])
                  + (", ..." if len(stopped) > 10 else "")]
    if result["best"] is not None:
        parts += ["", f"best: trial #{result['best']} (exported as best.yaml)"]
    return "\n".join(parts)
