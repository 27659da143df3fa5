"""What a finished search says last: its best network, what it wrote, and the commands to run
next."""

from __future__ import annotations

import optuna

from mbnas.next_steps import next_steps
from mbnas.run_folder import RunFolder
from mbnas.search.plan import format_duration
from mbnas.search.trials import (
    PRUNED,
    best_trials,
    count_scored,
    count_stopped,
    count_trials,
)
from mbnas.units import format_count


def next_commands(folder: RunFolder, storage: str) -> list[tuple[str, str]]:
    """The quick tour's next steps (command, comment) for a search run folder whose study is in
    ``storage`` (as shown: no password)."""
    run = folder.path
    training = ("train the winner further" if folder.best_weights.is_file()
                else "train the winner from scratch")
    return [(f"tensorboard --logdir {run}", "study plots first, then trials"),
            (f"python -m mbnas report run={run}", "top trials and the Pareto set"),
            (f"python -m mbnas export run={run} pt2=true", "deployable files"),
            (f"python -m mbnas train init={run} name=mine", training),
            (f"python -m mbnas cost arch={folder.best_yaml}", "per-stage cost + latency"),
            (f"optuna-dashboard {storage}", "optional: pip install optuna-dashboard")]


def summary_lines(study: optuna.Study, folder: RunFolder, seconds: float,
                  synthetic: bool, storage: str, score_name: str = "accuracy") -> list[str]:
    """The end of a search: trials, the best network's score (``score_name``: accuracy for
    evaluators that train; ``synthetic``: it was computed on synthetic images), MACs,
    parameters, latency, the wall time, the files written and the next commands."""
    (evaluated, repeats), pruned = count_scored(study), count_trials(study, PRUNED)
    stopped = count_stopped(study)
    stopped_text = f" ({stopped} stopped early by the pruner)" if stopped else ""
    lines = [f"mbnas search: done in {format_duration(seconds)} (this process) | "
             f"{evaluated} candidates evaluated{stopped_text}, {repeats} repeats reused a "
             f"score, {pruned} pruned over budget | {folder.path}"]
    best = best_trials(study)
    if best:
        top = best[0]
        latency = f", {top.latency_ms:.2f} ms" if top.latency_ms is not None else ""
        note = " (synthetic data)" if synthetic else ""
        lines.append(f"  best       trial #{top.number}: {score_name} {top.accuracy:.4f}{note}, "
                     f"{format_count(top.macs)} MACs, {format_count(top.params)} params{latency}")
    written = [p.name for p in (folder.best_yaml, folder.best_weights, folder.study_db,
                                folder.supernet, folder.tensorboard, folder.pareto)
               if p.exists()]
    lines.append(f"  files      {', '.join(written)}")
    lines += next_steps(next_commands(folder, storage))
    return lines
