"""NAS-Bench-Macro against mbnas: its codes as ArchSpecs, costs checked, samplers scored.

    python benchmarks/nas_bench_macro.py arch 12021012 > a.yaml    # the ArchSpec of a code
    python -m mbnas cost arch=a.yaml format=json latency.measure=false   # the table's params
    python benchmarks/nas_bench_macro.py code runs/nbm/best.yaml   # the code of an ArchSpec
    python benchmarks/nas_bench_macro.py params                    # 6,561 codes vs the table
    python benchmarks/nas_bench_macro.py oracle [--budgets 30M,60M] [--seeds 10] \
        [--max-trials 300] [--out runs/benchmarks/nas_bench_macro_oracle.json]
    python benchmarks/nas_bench_macro.py rank [--evaluators zero_cost,supernet] [--minutes 30] \
        [--archs 300] [--set supernet.finetune_steps=0] [--out runs/benchmarks/rank.json]
    python benchmarks/nas_bench_macro.py search [--budgets 30M,60M] [--seeds 5] [-- overrides]
    python benchmarks/nas_bench_macro.py optimum [--budgets 30M,60M] [--evaluator zero_cost] \
        [--seed 0] [--top 10] [--out runs/benchmarks/optimum.json]

The table (../shared/data/nas-bench-macro/, see its README) holds 6,561 networks trained from
scratch on CIFAR-10, keyed by an 8-digit code, one digit per searchable layer of the
``nas_bench_macro`` space: 0 skip, 1 MBConv k3 e3, 2 MBConv k5 e6 (the space lists its ops in
this order, so a digit is the index of the layer's op).

``params`` costs every code with ``mbnas.count`` and compares parameters with the table's
``params`` and MACs with its ``flops`` (multiply-accumulates, despite the name).

``oracle`` asks how quickly each sampler of the search (random, tpe, nsga2) finds a good network
when the evaluator is perfect: the objective is the table's ``mean_acc``, nothing is trained.
Each trial is sampled, costed and checked against the MAC budget as the search does: an
over-budget candidate gets its constraint values (``trial.set_constraint``) and is pruned. Like
the search, a run stops after ``--max-trials`` in-budget trials or ``--max-pruned`` over-budget
ones. A *hit* is an in-budget code within ``--tolerance`` points of the best in-budget
``mean_acc``; per sampler and budget the table gives the median [quartiles] over seeds of the
in-budget trials (the search's ``n_trials``), the distinct in-budget codes among them (what the
search trains: it scores a repeated code once) and all trials up to and including the first hit;
``no hit`` marks a median or quartile that falls on runs that stopped without one.

``rank`` scores ``--archs`` codes (drawn with ``--seed``) with each evaluator, prepared as a
search prepares it (supernet warm-ups get as many steps as fit ``--minutes`` on this machine),
on the full CIFAR-10 training set (unpacked from ../shared into ``--cache`` once), and compares
the scores with the table's ``mean_acc``: Kendall tau, Spearman rho, tau inside the 40th-60th
percentile MAC slice, top-10% recall, seconds per architecture; beside the baselines MACs alone
and seed-vs-seed agreement of the table (the ceiling). No evaluator reads the table.

``search`` runs ``python -m mbnas search space=nas_bench_macro +budget.macs=B data=cifar10`` with
the default evaluator and preset for each budget and seed, and looks its ``best.yaml`` up in the
table: the fraction of in-budget networks at least as good, and whether it is in the top 2%.

``optimum`` scores every network within each budget with one evaluator, prepared as a search of
that budget prepares it (the same seed gives the same images and initialisations), and looks
its ``--top`` favourites up in the table. Its first is what a search with a perfect optimiser
would return, so a search can do no better than it: this separates the evaluator's error from
the search's. It costs one evaluation per network (2,225 within 60M, ~40 min for zero_cost on
one core).

Equivalent codes: an identity skip (any skip but one in a stage's first, strided, layer) may
move within its stage without changing the network, so the 6,561 codes are 3,969 networks; the
table measured each network once, and a hit's equivalents are hits too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from evaluator_ranking import (
    CACHE,
    build_evaluator,
    full_cifar10,
    ranking_metrics,
    score_all,
    setting_digest,
    warmup_steps_for,
)

import mbnas
from mbnas.arch import ArchSpec
from mbnas.budget import Budget
from mbnas.cost.device_script import keep_freed_memory
from mbnas.data import DataConfig
from mbnas.errors import ConfigError, MbnasError
from mbnas.evaluators.predictor import PredictorEvaluator
from mbnas.run_folder import RunFolder
from mbnas.search.callbacks import StopAtTotal
from mbnas.search.study import SAMPLERS, make_sampler  # the search's sampler factory
from mbnas.space import SearchSpace
from mbnas.units import format_count, parse_count

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "../shared/data/nas-bench-macro/nas-bench-macro_cifar10.json"
SPACE = "nas_bench_macro"

# ---------------------------------------------------------------- table, codes and archs


def load_table(path: str | Path = TABLE) -> dict[str, dict[str, Any]]:
    """The benchmark: code -> {mean_acc, test_acc, std, params, flops}."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "no NAS-Bench-Macro table there",
                          "give --table, the path of nas-bench-macro_cifar10.json")
    return json.loads(path.read_text())


def layers(space: SearchSpace) -> list[tuple[str, tuple[str, ...]]]:
    """Each code digit's Optuna parameter name and op names, in code order."""
    found = []
    for i, stage in enumerate(space.stages, start=1):
        if not stage.ops or len(stage.depth) != 1 or space.per != "block":
            raise ConfigError(f"space {space.name!r}: stage{i}", "is not a fixed-depth stage of "
                              "per-layer ops", "use the nas_bench_macro space")
        found += [(f"stage{i}.block{j}.op", stage.op_names) for j in range(1, stage.depth[0] + 1)]
    return found


def arch_of_code(space: SearchSpace, code: str) -> ArchSpec:
    """The member of ``space`` a code names, e.g. ``arch_of_code(space, "12021012")``."""
    names = layers(space)
    digits = str(code)
    if len(digits) != len(names) or not all(
            d.isdigit() and int(d) < len(ops) for d, (_, ops) in zip(digits, names)):
        legend = {ops for _, ops in names}
        each = (", ".join(f"{i} {op}" for i, op in enumerate(legend.pop())) if len(legend) == 1
                else f"below its layer's op count ({''.join(str(len(o)) for _, o in names)})")
        raise ConfigError(f"code {code!r}", f"is not a code of space {space.name!r}",
                          f"give {len(names)} digits, each {each}")
    params = {name: ops[int(d)] for d, (name, ops) in zip(digits, names)}
    return space.sample(optuna.trial.FixedTrial(params)).replace(name=f"{space.name}_{digits}")


def code_of_choices(space: SearchSpace, choices: dict[str, Any]) -> str:
    """The code of a member given by its parameters (``space.choices`` or ``trial.params``)."""
    return "".join(str(ops.index(choices[name])) for name, ops in layers(space))


def code_of_arch(space: SearchSpace, arch: ArchSpec) -> str:
    """The code of a member of ``space`` (ConfigError, naming the difference, if not one)."""
    return code_of_choices(space, space.choices(arch))


def all_codes(space: SearchSpace) -> list[str]:
    return ["".join(c) for c in itertools.product(
        *(tuple(str(i) for i in range(len(ops))) for _, ops in layers(space)))]


def canonical_code(space: SearchSpace, code: str) -> str:
    """One code per network: a stage's identity skips (every skip but one in its first, strided
    layer) moved last, e.g. 00001000 and 00010000 -> 00010000 (00100000 is another network)."""
    canonical, start = "", 0
    for stage in space.stages:
        part = code[start:start + stage.depth[0]]
        identity = [d for d in part[1:] if stage.ops[int(d)].block == "skip"]
        others = [d for d in part[1:] if d not in identity]
        canonical += part[0] + "".join(others + identity)
        start += len(part)
    return canonical


# ---------------------------------------------------------------- arch, code, params


def command_arch(args: argparse.Namespace) -> int:
    arch = arch_of_code(mbnas.load_space(SPACE), args.code)
    print(f"# NAS-Bench-Macro code {args.code}\n{arch.to_yaml()}", end="")
    return 0


def command_code(args: argparse.Namespace) -> int:
    print(code_of_arch(mbnas.load_space(SPACE), mbnas.load_arch(args.file)))
    return 0


def command_params(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    table, space = load_table(args.table), mbnas.load_space(SPACE)
    mismatches, codes = [], all_codes(space)
    for code in codes:
        cost, row = mbnas.count(arch_of_code(space, code)), table.get(code)
        if row is None or (cost.params, cost.macs) != (row["params"], row["flops"]):
            mismatches.append((code, cost, row))
    checked = len(codes)
    print(f"{'checked':>8} {'params ≠':>9} {'MACs ≠':>7} {'time':>7}")
    print(f"{checked:>8} {sum(r is None or c.params != r['params'] for _, c, r in mismatches):>9}"
          f" {sum(r is None or c.macs != r['flops'] for _, c, r in mismatches):>7}"
          f" {time.perf_counter() - start:>6.1f}s")
    for code, cost, row in mismatches[:10]:
        print(f"  {code}: mbnas {cost.params} params / {cost.macs} MACs, table "
              f"{row and row['params']} / {row and row['flops']}", file=sys.stderr)
    if len(table) != checked:
        print(f"  the table has {len(table)} codes, the space {checked}", file=sys.stderr)
    return 1 if mismatches or len(table) != checked else 0


# ---------------------------------------------------------------- oracle


def within(table: dict, macs: int) -> dict[str, dict[str, Any]]:
    """The table's rows of the codes within ``macs``; a clear error when none fits."""
    fits = {code: row for code, row in table.items() if row["flops"] <= macs}
    if not fits:
        raise ConfigError("--budgets", f"{macs_text(macs)} MACs fits no code", "the smallest "
                          f"needs {macs_text(min(row['flops'] for row in table.values()))}")
    return fits


def ranked_accuracies(table: dict, macs: int) -> list[float]:
    """The ``mean_acc`` of every code within ``macs``, best first."""
    return sorted((row["mean_acc"] for row in within(table, macs).values()), reverse=True)


def targets(table: dict, macs: int, tolerance: float) -> dict[str, Any]:
    """The in-budget codes and the hits: within ``tolerance`` points of the best of them."""
    fits = within(table, macs)
    best = max(sorted(fits), key=lambda code: fits[code]["mean_acc"])  # ties: the lowest code
    hits = sorted(c for c, row in fits.items()
                  if row["mean_acc"] >= fits[best]["mean_acc"] - tolerance)
    return {"macs": macs, "in_budget": len(fits), "best_code": best,
            "best_mean_acc": fits[best]["mean_acc"], "hits": hits}


class TableObjective:
    """The search's per-trial path (sample, cost, budget check) with the table as evaluator."""

    def __init__(self, space: SearchSpace, table: dict, budget: Budget):
        self.space, self.table, self.budget = space, table, budget
        self.costs: dict[str, dict[str, int]] = {}

    def __call__(self, trial: optuna.Trial) -> float:
        arch = self.space.sample(trial)
        code = code_of_choices(self.space, trial.params)
        if code not in self.costs:
            cost = mbnas.count(arch)
            self.costs[code] = {"macs": cost.macs, "params": cost.params}
        costs = self.costs[code]
        trial.set_user_attr("code", code)
        for key, value in self.budget.constraints(costs).items():
            trial.set_constraint(key, value)
        reasons = self.budget.violations(costs)
        if reasons:
            raise optuna.TrialPruned("over budget: " + "; ".join(reasons))
        return self.table[code]["mean_acc"]


def first_hit(study: optuna.Study, hits: set[str]) -> dict[str, Any]:
    """Trials up to and including the first hit (``None`` counts when there was none)."""
    complete, distinct = 0, set()
    for trial in study.get_trials(deepcopy=False):
        if trial.state != optuna.trial.TrialState.COMPLETE:
            continue
        complete += 1
        distinct.add(trial.user_attrs["code"])
        if trial.user_attrs["code"] in hits:
            return {"found": True, "in_budget": complete, "distinct": len(distinct),
                    "all": trial.number + 1, "code": trial.user_attrs["code"]}
    return {"found": False, "in_budget": None, "distinct": None, "all": None,
            "ran": len(study.trials)}


def run_sampler(name: str, seed: int, objective: TableObjective, hits: set[str],
                args: argparse.Namespace) -> dict[str, Any]:
    study = optuna.create_study(direction="maximize",
                                sampler=make_sampler(name, seed, args.startup_trials))

    def stop_at_hit(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["code"] in hits:
            study.stop()

    study.optimize(objective, callbacks=[StopAtTotal(args.max_trials, args.max_pruned),
                                         stop_at_hit])
    return {"seed": seed, **first_hit(study, hits)}


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile; ``inf`` (no hit) wherever it touches one."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    if math.isinf(ordered[low]) or (math.isinf(ordered[high]) and position > low):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(runs: list[dict], key: str) -> dict[str, float | None]:
    """Quartiles over runs; ``None`` where one falls on runs that stopped without a hit."""
    values = [math.inf if run[key] is None else run[key] for run in runs]
    quartiles = [quantile(values, q) for q in (0.25, 0.5, 0.75)]
    return dict(zip(("q1", "median", "q3"),
                    (None if math.isinf(v) else v for v in quartiles)))


def shown(stats: dict[str, float | None]) -> str:
    text = ["no hit" if v is None else f"{round(v, 1):g}"
            for v in (stats["median"], stats["q1"], stats["q3"])]
    return f"{text[0]} [{text[1]}–{text[2]}]"


def random_median(hits: int, population: int) -> int:
    """Median draws until a hit when drawing uniformly, with replacement, from ``population``."""
    p = hits / population
    return 1 if p >= 1 else math.ceil(math.log(0.5) / math.log1p(-p))


def macs_text(macs: int) -> str:
    return format_count(macs).replace(".00", "")


def command_oracle(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table, space = load_table(args.table), mbnas.load_space(SPACE)
    budgets = [parse_count(text, "--budgets") for text in args.budgets.split(",")]
    samplers = args.samplers.split(",")
    for name in samplers:
        if name not in SAMPLERS:
            raise ConfigError("--samplers", f"unknown sampler {name!r}",
                              f"use some of {', '.join(SAMPLERS)}")
    results: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "run"},
                               "codes": len(table), "budgets": [], "rows": []}
    for macs in budgets:
        goal = targets(table, macs, args.tolerance)
        networks = {canonical_code(space, c) for c in goal["hits"]}
        goal |= {"hit_networks": len(networks), "random_median_in_budget":
                 random_median(len(goal["hits"]), goal["in_budget"]),
                 "random_median_all": random_median(len(goal["hits"]), len(table))}
        results["budgets"].append(goal)
        objective, hits = TableObjective(space, table, Budget(macs=macs)), set(goal["hits"])
        for name in samplers:
            start = time.perf_counter()
            runs = [run_sampler(name, seed, objective, hits, args) for seed in range(args.seeds)]
            row = {"sampler": name, "macs": macs, "seconds": time.perf_counter() - start,
                   "found": sum(run["found"] for run in runs), "runs": runs}
            row |= {key: summary(runs, key) for key in ("in_budget", "distinct", "all")}
            results["rows"].append(row)
            print(f"  {name} at {macs_text(macs)} MACs: {row['found']}/{args.seeds} found, "
                  f"{row['seconds']:.0f} s", file=sys.stderr, flush=True)
    print_oracle(results, args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def print_oracle(results: dict[str, Any], args: argparse.Namespace) -> None:
    for goal in results["budgets"]:
        print(f"{macs_text(goal['macs'])} MACs: {goal['in_budget']} of {results['codes']} "
              f"codes fit; best mean_acc {goal['best_mean_acc']:.2f} ({goal['best_code']}); "
              f"{len(goal['hits'])} codes ({goal['hit_networks']} networks) within "
              f"{args.tolerance:g}; uniform sampling needs a median "
              f"{goal['random_median_in_budget']} in-budget / {goal['random_median_all']} trials")
    print(f"\nmedian [quartiles] over {args.seeds} seeds, trials up to the first hit "
          f"(runs stop after {args.max_trials} in-budget or {args.max_pruned} over-budget)")
    print("| sampler | budget | found | in-budget trials | distinct codes | all trials | time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in results["rows"]:
        print(f"| {row['sampler']} | {macs_text(row['macs'])} | {row['found']}/{args.seeds} "
              f"| {shown(row['in_budget'])} | {shown(row['distinct'])} | {shown(row['all'])} "
              f"| {row['seconds']:.0f} s |")


# ---------------------------------------------------------------- rank


def sample_codes(table: dict, count: int, seed: int) -> list[str]:
    """``count`` codes drawn without replacement, the same for every evaluator and run."""
    codes = sorted(table)
    return [codes[i] for i in np.random.RandomState(seed).choice(len(codes), count, replace=False)]


def evaluator_specs(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """label -> (evaluator name, its overrides) from --evaluators and --set."""
    specs = {}
    for item in filter(None, args.evaluators.split(",")):
        label, _, name = item.rpartition("=")
        specs[label or name] = (name, [])
    for setting in args.set:
        label, _, override = setting.partition(".")
        if label not in specs or "=" not in override:
            raise ConfigError(f"--set {setting}", "names no evaluator of --evaluators",
                              "write LABEL.KEY=VALUE with a LABEL from --evaluators")
        specs[label][1].append(override)
    return specs


def command_rank(args: argparse.Namespace) -> int:
    table, space = load_table(args.table), mbnas.load_space(SPACE)
    codes = sample_codes(table, args.archs,
                         args.seed if args.sample_seed is None else args.sample_seed)
    archs = [arch_of_code(space, code) for code in codes]
    truth = [table[c]["mean_acc"] for c in codes]
    macs = [table[c]["flops"] for c in codes]
    cache = Path(args.cache).expanduser()
    data = DataConfig(name="cifar10", root=str(full_cifar10(cache)), seed=args.seed)
    results: dict[str, Any] = {"default": space.evaluator or "supernet", "archs": len(codes),
                               "codes": codes,
                               "minutes": args.minutes, "device": args.device,
                               "evaluators": {}, "baselines": {
        "flops": ranking_metrics(macs, truth, macs),
        "seed_vs_seed": ranking_metrics([table[c]["test_acc"][0] for c in codes],
                                        [table[c]["test_acc"][1] for c in codes], macs)}}
    for label, (name, overrides) in evaluator_specs(args).items():
        results["evaluators"][label] = rank_one(label, name, overrides, archs, truth, macs,
                                                data, cache / "rank", args)
        if args.out:  # after every evaluator: a long run stopped later keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=1))
    print_rank(results)
    return 0


def rank_one(label: str, name: str, overrides: list[str], archs: list[ArchSpec],
             truth: list[float], macs: list[float], data: DataConfig, folder: Path,
             args: argparse.Namespace) -> dict[str, Any]:
    """One evaluator prepared as a search would (warm-up, reference sample), then scoring all."""
    if name == "supernet" and not any(o.startswith("warmup_steps=") for o in overrides):
        steps = warmup_steps_for(args.minutes, mbnas.load_space(SPACE), data,
                                 args.seed, overrides, folder / label, args.device)
        overrides = [*overrides, f"warmup_steps={steps}"]
    evaluator = build_evaluator(name, overrides, mbnas.load_space(SPACE), data, args.seed,
                                args.device)
    start = time.perf_counter()
    evaluator.prepare(RunFolder(folder / (f"{label}-{'-'.join(overrides) or 'shipped'}-"
                                          f"{setting_digest(evaluator)}")))
    prepare_minutes = (time.perf_counter() - start) / 60

    def progress(done: int) -> None:
        if done % 25 == 0 or done == len(archs):
            print(f"  {label}: {done}/{len(archs)} scored", file=sys.stderr, flush=True)

    scores, seconds, features = score_all(evaluator, archs, progress)
    components = {feature: ranking_metrics(values, truth, macs)
                  for feature, values in features.items()}
    if args.diagnose and isinstance(evaluator, PredictorEvaluator):
        # The supernet's own labels of the ranked codes: what the ridge prediction smooths.
        images, labels = evaluator.labelling_batch()
        components["supernet_label"] = ranking_metrics(
            [evaluator.label(arch, images, labels) for arch in archs], truth, macs)
    return {"evaluator": name, "settings": overrides, "prepare_minutes": prepare_minutes,
            **ranking_metrics(scores, truth, macs), "seconds_per_arch": seconds,
            "components": components, "values": {"score": scores, **features}}


def print_rank(results: dict[str, Any]) -> None:
    print(f"{results['archs']} NAS-Bench-Macro codes; default evaluator {results['default']}")
    print("| evaluator | Kendall tau | Spearman rho | slice tau | top-10% recall | s/arch "
          "| prepare min |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for label, row in results["evaluators"].items():
        rows[label] = row
        rows.update({f"{label} · {feature}": part
                     for feature, part in row.get("components", {}).items()})
    rows.update({f"baseline: {k}": v for k, v in results["baselines"].items()})
    for label, row in rows.items():
        seconds = row.get("seconds_per_arch")
        prepare = row.get("prepare_minutes")
        print(f"| {label} | {row['kendall_tau']:.3f} | {row['spearman_rho']:.3f} "
              f"| {row['slice_kendall_tau']:.3f} | {row['top10_recall']:.2f} "
              f"| {'' if seconds is None else f'{seconds:.2f}'} "
              f"| {'' if prepare is None else f'{prepare:.1f}'} |")


# ---------------------------------------------------------------- search


def command_search(args: argparse.Namespace) -> int:
    """Run ``python -m mbnas search`` on the space per budget and seed; judge best.yaml."""
    table, space = load_table(args.table), mbnas.load_space(SPACE)
    root = full_cifar10(Path(args.cache).expanduser())
    rows = []
    for budget in args.budgets.split(","):
        macs = parse_count(budget, "--budgets")
        in_budget = ranked_accuracies(table, macs)
        for seed in range(args.seeds):
            name = f"nbm-{budget}-seed{seed}"
            command = [sys.executable, "-m", "mbnas", "search", f"space={SPACE}",
                       f"+budget.macs={budget}", "data=cifar10", f"data.root={root}",
                       f"seed={seed}", f"name={name}", f"runs_dir={args.runs_dir}", *args.extra]
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            minutes = (time.perf_counter() - start) / 60
            arch = ArchSpec.from_yaml(Path(args.runs_dir) / name / "best.yaml")
            code = code_of_arch(space, arch)
            accuracy = table[code]["mean_acc"]
            rows.append({"budget": budget, "seed": seed, "code": code, "mean_acc": accuracy,
                         "top_fraction": top_fraction(accuracy, in_budget), "minutes": minutes,
                         "best_in_budget": in_budget[0]})
            print(f"{budget} seed {seed}: {code} {accuracy:.2f} (best {in_budget[0]:.2f}), "
                  f"top {100 * rows[-1]['top_fraction']:.1f}% of {len(in_budget)}, "
                  f"{minutes:.1f} min", flush=True)
    print_search(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


def command_optimum(args: argparse.Namespace) -> int:
    """Every network within each budget scored by one evaluator; its favourites in the table."""
    table, space = load_table(args.table), mbnas.load_space(SPACE)
    budgets = {budget: parse_count(budget, "--budgets") for budget in args.budgets.split(",")}
    accuracies = {budget: ranked_accuracies(table, macs) for budget, macs in budgets.items()}
    data = DataConfig(name="cifar10", root=str(full_cifar10(Path(args.cache).expanduser())),
                      seed=args.seed)
    rows = []
    for budget, macs in budgets.items():
        in_budget = accuracies[budget]
        codes = sorted({canonical_code(space, code) for code in within(table, macs)})
        evaluator = build_evaluator(args.evaluator, args.set, space, data, args.seed,
                                    args.device, Budget(macs=macs))
        start = time.perf_counter()
        evaluator.prepare(RunFolder(Path(args.cache).expanduser() / "optimum" / (
            f"{args.evaluator}-{budget}-seed{args.seed}-{setting_digest(evaluator)}")))

        def progress(done: int, budget: str = budget, total: int = len(codes)) -> None:
            if done % 100 == 0 or done == total:
                print(f"  {budget}: {done}/{total} scored", file=sys.stderr, flush=True)

        scores, _, _ = score_all(evaluator, [arch_of_code(space, c) for c in codes], progress)
        first = sorted(zip(scores, codes), reverse=True)[:args.top]
        favourites = [{"code": code, "score": score, "mean_acc": table[code]["mean_acc"],
                       "top_fraction": top_fraction(table[code]["mean_acc"], in_budget)}
                      for score, code in first]
        rows.append({"budget": budget, "networks": len(codes), "in_budget": len(in_budget),
                     "minutes": (time.perf_counter() - start) / 60, "favourites": favourites})
        print_optimum(rows[-1])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"evaluator": args.evaluator, "settings": args.set,
                                              "seed": args.seed, "rows": rows}, indent=1))
    return 0


def top_fraction(accuracy: float, in_budget: list[float]) -> float:
    """The share of in-budget codes at least as good as ``accuracy`` (itself included)."""
    return (sum(a > accuracy for a in in_budget) + 1) / len(in_budget)


def print_optimum(row: dict[str, Any]) -> None:
    favourites = row["favourites"]
    in_top = sum(f["top_fraction"] <= 0.02 for f in favourites)
    print(f"{row['budget']}: {row['networks']} networks scored in {row['minutes']:.1f} min; "
          f"the evaluator's first is top {100 * favourites[0]['top_fraction']:.1f}% of "
          f"{row['in_budget']} codes, {in_top} of its {len(favourites)} first in the top 2%")
    print("| rank | code | score | mean_acc | top |\n|---:|---|---:|---:|---:|")
    for place, f in enumerate(favourites, start=1):
        print(f"| {place} | {f['code']} | {f['score']:.3f} | {f['mean_acc']:.2f} "
              f"| {100 * f['top_fraction']:.1f}% |")


def print_search(rows: list[dict[str, Any]]) -> None:
    print("| budget | median top fraction | runs in the top 2% | median mean_acc | best in budget "
          "| median minutes |")
    print("|---|---:|---:|---:|---:|---:|")
    for budget in dict.fromkeys(row["budget"] for row in rows):
        mine = [row for row in rows if row["budget"] == budget]
        print(f"| {budget} | {100 * quantile([r['top_fraction'] for r in mine], 0.5):.1f}% "
              f"| {sum(r['top_fraction'] <= 0.02 for r in mine)}/{len(mine)} "
              f"| {quantile([r['mean_acc'] for r in mine], 0.5):.2f} "
              f"| {mine[0]['best_in_budget']:.2f} "
              f"| {quantile([r['minutes'] for r in mine], 0.5):.1f} |")


# ---------------------------------------------------------------- command line


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(TABLE), help="nas-bench-macro_cifar10.json")
    commands = parser.add_subparsers(dest="command", required=True)
    arch = commands.add_parser("arch", help="print the ArchSpec YAML of an 8-digit code")
    arch.add_argument("code")
    arch.set_defaults(run=command_arch)
    code = commands.add_parser("code", help="print the code of an ArchSpec YAML of the space")
    code.add_argument("file")
    code.set_defaults(run=command_code)
    params = commands.add_parser("params", help="check every code's params and MACs")
    params.set_defaults(run=command_params)
    oracle = commands.add_parser("oracle", help="trials each sampler needs, table as objective")
    oracle.add_argument("--budgets", default="30M,60M", help="MAC budgets, comma-separated")
    oracle.add_argument("--samplers", default=",".join(SAMPLERS))
    oracle.add_argument("--seeds", type=int, default=10)
    oracle.add_argument("--max-trials", type=int, default=300, help="in-budget trials per run")
    oracle.add_argument("--max-pruned", type=int, default=2000,
                        help="over-budget trials per run (the search's max_pruned_trials)")
    oracle.add_argument("--startup-trials", type=int, default=10,
                        help="the search's startup_trials")
    oracle.add_argument("--tolerance", type=float, default=0.3, help="points of mean_acc")
    oracle.add_argument("--out", default=None, help="write the results as JSON")
    oracle.set_defaults(run=command_oracle)
    rank = commands.add_parser("rank", help="evaluators' rankings of sampled codes vs the table")
    rank.add_argument("--evaluators", default="zero_cost,supernet",
                      help="comma-separated NAME or LABEL=NAME (an evaluator of mbnas)")
    rank.add_argument("--set", action="append", default=[], metavar="LABEL.KEY=VALUE",
                      help="override an evaluator setting, e.g. supernet.finetune_steps=0")
    rank.add_argument("--minutes", type=float, default=30.0,
                      help="CPU budget of supernet warm-ups (steps timed on this machine)")
    rank.add_argument("--archs", type=int, default=300, help="codes sampled (fixed seed)")
    rank.add_argument("--seed", type=int, default=0, help="of the evaluators (and the codes)")
    rank.add_argument("--sample-seed", type=int, default=None,
                      help="of the sampled codes, when other than --seed (the same evaluator "
                           "scoring another sample: its warm-up is reused from --cache)")
    rank.add_argument("--cache", default=str(CACHE), help="where CIFAR-10 and warm-ups go")
    rank.add_argument("--out", default=None, help="write the results as JSON")
    rank.add_argument("--diagnose", action="store_true",
                      help="also rank by the predictor's raw supernet labels of the codes")
    rank.add_argument("--device", default="cpu",
                      help="cpu, or cuda: ranking figures should not depend on it; times do")
    rank.set_defaults(run=command_rank)
    search = commands.add_parser("search", help="mbnas search on the space, judged by the table")
    search.add_argument("--budgets", default="30M,60M")
    search.add_argument("--seeds", type=int, default=5)
    search.add_argument("--runs-dir", default="runs/benchmarks/nas_bench_macro")
    search.add_argument("--cache", default=str(CACHE), help="where CIFAR-10 is unpacked")
    search.add_argument("--out", default=None, help="write the results as JSON")
    search.add_argument("extra", nargs="*", help="more overrides for every search")
    search.set_defaults(run=command_search)
    optimum = commands.add_parser("optimum", help="an evaluator's favourites among every network "
                                  "within each budget, judged by the table")
    optimum.add_argument("--budgets", default="30M,60M")
    optimum.add_argument("--evaluator", default="zero_cost", help="an evaluator of mbnas")
    optimum.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override an evaluator setting, e.g. features.depth=0.5")
    optimum.add_argument("--seed", type=int, default=0, help="the search's seed= it stands for")
    optimum.add_argument("--top", type=positive, default=10, help="favourites listed per budget")
    optimum.add_argument("--cache", default=str(CACHE), help="where CIFAR-10 is unpacked")
    optimum.add_argument("--device", default="cpu")
    optimum.add_argument("--out", default=None, help="write the results as JSON")
    optimum.set_defaults(run=command_optimum)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep_freed_memory()  # as an mbnas command does (BENCHMARKS.md, Latency table error)
    try:
        return args.run(args)
    except MbnasError as error:
        print(f"nas_bench_macro {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
