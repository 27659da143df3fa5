"""The framework's own overhead per trial: everything but the candidate's training and scoring.

    python benchmarks/search_overhead.py [--trials 12] [--space tests/fixtures/tiny_space.yaml]
    python benchmarks/search_overhead.py --mission --trials 6 --threads 1   # the real candidates

Runs small searches (smoke-sized training, so overhead is as large a share as it ever gets) with
latency measured and without, and reports per trained trial the median of its wall time, its
evaluation time (fine-tune + validation) and the rest: sampling, cost model, latency, budget
checks, Optuna storage, TensorBoard logging. Over-budget trials are pure overhead and listed
apart; ``per trained s`` is every trial's time (over-budget ones included) per trained one.
``--mission`` runs the default space and evaluator at +budget.macs=300M instead (the warm-up cut
to 2 steps: candidates cost the same on an untrained supernet); run it with PYTHONPATH set to
two checkouts in turn to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import optuna

from mbnas.config import load_config
from mbnas.search import SearchConfig, run_search

ROOT = Path(__file__).resolve().parent.parent


def durations(study: optuna.Study, state: optuna.trial.TrialState) -> list[tuple[float, float]]:
    rows = []
    for trial in study.get_trials(states=(state,)):
        total = (trial.datetime_complete - trial.datetime_start).total_seconds()
        rows.append((total, trial.user_attrs.get("evaluation_s", 0.0)))
    return rows


def run(label: str, overrides: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as runs:
        cfg = load_config("search", [*overrides, f"runs_dir={runs}", f"name={label}"],
                          SearchConfig)
        study = run_search(cfg)
    trained = durations(study, optuna.trial.TrialState.COMPLETE)
    pruned = durations(study, optuna.trial.TrialState.PRUNED)
    every = sum(t for t, _ in trained + pruned)
    total = statistics.median(t for t, _ in trained)
    evaluation = statistics.median(e for _, e in trained)
    overhead = statistics.median(t - e for t, e in trained)
    return {"trained": len(trained), "trial_s": total, "evaluation_s": evaluation,
            "overhead_s": overhead, "share": overhead / total, "pruned": len(pruned),
            "pruned_s": statistics.median(t for t, _ in pruned) if pruned else float("nan"),
            "per_trained_s": every / len(trained)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--space", default=str(ROOT / "tests/fixtures/tiny_space.yaml"))
    parser.add_argument("--budget", default="0.6M")
    parser.add_argument("--mission", action="store_true",
                        help="the default space and evaluator at 300M MACs, latency measured")
    parser.add_argument("--threads", type=int, default=0, help="threads= (0: PyTorch's default)")
    args = parser.parse_args()
    threads = [f"threads={args.threads}"] if args.threads else []
    if args.mission:
        mission = ["+budget.macs=300M", f"n_trials={args.trials}", "evaluator.warmup_steps=2",
                   "export.weights=false", *threads]
        results = {"mission": run("mission", mission)}
    else:
        base = [f"+budget.macs={args.budget}", f"space={args.space}", f"n_trials={args.trials}",
                "evaluator.warmup_steps=20", "evaluator.finetune_steps=20",
                "evaluator.bn_images=256", "data.synthetic_size=1024", "export.weights=false",
                *threads]
        results = {"latency=measured": run("measured", [*base, "latency=measured"]),
                   "latency=none": run("none", [*base, "latency=none"])}
    print(f"\n{'setting':<18} {'trained':>7} {'trial s':>8} {'eval s':>7} {'overhead s':>10} "
          f"{'share':>6} {'pruned':>6} {'pruned s':>8} {'per trained s':>13}")
    for label, r in results.items():
        print(f"{label:<18} {r['trained']:>7} {r['trial_s']:>8.3f} {r['evaluation_s']:>7.3f} "
              f"{r['overhead_s']:>10.3f} {r['share']:>6.1%} {r['pruned']:>6} {r['pruned_s']:>8.3f} "
              f"{r['per_trained_s']:>13.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
