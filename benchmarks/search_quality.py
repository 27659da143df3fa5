"""Does the search find better networks than the obvious alternatives at the same MAC budget?

    python benchmarks/search_quality.py --data ../shared/data/cifar-10-batches-py \
        --budget 20M --candidates 20 --epochs 15 [--search-seeds 2 --jobs 6]

``--stage search`` writes entries.json (searched on this machine), ``--stage train`` trains what
it names (on another, e.g. a GPU host, with the same ``--out`` folder copied there:
benchmarks/device_bundle.py and device_train.sh), ``--stage collect`` writes results.json of the
trainings that finished when a train stage was cut short, ``--stage rank`` scores the trained
members of the space with an evaluator and says how well it ranks them.

On real CIFAR-10 images with the CIFAR-style space and one MAC budget, compares
  (a) the best architecture mbnas's search finds (TPE, the space's default evaluator unless
      ``--evaluator`` names another),
  (b) the best of random search with the same number of evaluated candidates (same evaluator),
  (c) MobileNetV2, MobileNetV3-Small and MobileNetV3-Large, adapted to 32 px inputs as is usual
      for CIFAR (stride-1 stem, the first stride-2 stage at stride 1) and width-scaled to the
      same budget,
  (d) with ``--members N``, N random members of the space within the budget (no search): with
      the winners they are ground truth for ranking in this space, which NAS-Bench-Macro's
      fixed widths cannot be,
  (e) with ``--near-budget N``, N random members with 90% of the budget or more: ground truth
      among members of nearly equal MACs, the ones a search ends up choosing between,
each then trained from scratch with one recipe (`mbnas train`) and scored on the same
validation split. Prints a table and writes it as JSON next to the runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch
from evaluator_ranking import build_evaluator, ranking_metrics, score_all, setting_digest
from scipy import stats

import mbnas
from mbnas.arch import ArchSpec
from mbnas.budget import Budget, WithinBudget
from mbnas.config import load_config
from mbnas.cost.device_script import keep_freed_memory
from mbnas.data import DataConfig
from mbnas.locking import file_lock
from mbnas.run_folder import RunFolder
from mbnas.scaling import scale_arch
from mbnas.search import SearchConfig, run_search, space_defaults
from mbnas.trainer import TrainConfig, train
from mbnas.units import format_count, parse_count

REFERENCES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
SPACE = "cifar"  # --space's default
SPACE_FILE = "space.yaml"  # a --space YAML file's copy in --out
NEAR_BUDGET = 0.9  # --near-budget members have this share of the budget or more
NEAR_BUDGET_TRIES = 10_000


def cifar_variant(arch: ArchSpec) -> ArchSpec:
    """The usual CIFAR adaptation: keep 4x4 maps at the end of a 32 px network."""
    stages = list(arch.stages)
    first_down = next(i for i, s in enumerate(stages) if s.stride == 2)
    stages[first_down] = replace(stages[first_down], stride=1)
    return arch.replace(name=f"{arch.name}_cifar", resolution=32, num_classes=10,
                        stem=replace(arch.stem, stride=1), stages=tuple(stages))


def fit_width(arch: ArchSpec, budget: int) -> tuple[ArchSpec, float]:
    """The widest width multiplier (in steps of 0.01) whose network fits the MAC budget."""
    for hundredths in range(200, 4, -1):
        scaled = scale_arch(arch, width=hundredths / 100)
        if mbnas.count(scaled).macs <= budget:
            return scaled.replace(name=f"{arch.name}_w{hundredths / 100:g}"), hundredths / 100
    raise SystemExit(f"{arch.name} does not fit {budget} MACs at any width ≥ 0.05")


def search(label: str, sampler: str, seed: int, args: argparse.Namespace, out: Path
           ) -> tuple[Path, float]:
    overrides = [f"+budget.macs={args.budget}", f"space={args.space}", "data=cifar10",
                 f"data.root={args.data}", f"n_trials={args.candidates}", f"sampler={sampler}",
                 "latency=none", f"runs_dir={out}", f"name={label}", f"seed={seed}",
                 f"startup_trials={args.startup}", "data.workers=0",
                 *([f"evaluator={args.evaluator}"] if args.evaluator else []),
                 *(f"evaluator.{o}" for o in args.set)]
    start = time.perf_counter()
    run_search(load_config("search", space_defaults(overrides), SearchConfig))
    return out / label / "best.yaml", time.perf_counter() - start


def train_winner(name: str, arch_path: Path, seed: int, args: argparse.Namespace, out: Path
                 ) -> float:
    overrides = [f"arch={arch_path}", "data=cifar10", f"data.root={args.data}",
                 f"epochs={args.epochs}", f"runs_dir={out}", f"name={name}",
                 f"seed={seed}", f"data.workers={args.workers}", "progress=false",
                 f"data.batch_size={args.batch_size}", f"optim.lr={args.lr}", *args.train_set]
    accuracy = train(load_config("train", overrides, TrainConfig)).result["accuracy"]
    print(f"trained {name} ({arch_path.name}): {accuracy:.4f}", flush=True)
    return accuracy


def init_worker(jobs: int) -> None:
    """Each of ``jobs`` worker processes gets its share of the cores (no oversubscription) and
    keeps freed memory, as an mbnas command does (a spawned worker does not inherit it)."""
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // jobs))
    keep_freed_memory()


def run_all(calls: list[tuple], jobs: int) -> list:
    """``(function, *arguments)`` calls, ``jobs`` processes at a time, results in order."""
    if jobs <= 1:
        return [call[0](*call[1:]) for call in calls]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=init_worker,
                             initargs=(jobs,)) as pool:
        futures = [pool.submit(*call) for call in calls]
        return [future.result() for future in futures]


def search_stage(args: argparse.Namespace, budget: int, out: Path) -> dict:
    """Runs the searches and writes the entries to train (winners, width-scaled references,
    random members). A search that already finished in ``out`` (an earlier entries.json names
    its best.yaml) is kept as it is, its time too: members can be added to searched entries."""
    earlier = (json.loads((out / "entries.json").read_text())["entries"]
               if (out / "entries.json").is_file() else {})
    searches = [(f"({letter}) {name} seed {seed}", name, seed)
                for letter, name in (("a", "tpe"), ("b", "random"))
                for seed in range(args.search_seeds)]
    entries = {label: earlier[label] for label, _, _ in searches
               if label in earlier and (out / earlier[label]["arch"]).is_file()}
    to_run = [(label, name, seed) for label, name, seed in searches if label not in entries]
    found = run_all([(search, f"{name}-{seed}", name, seed, args, out)
                     for _, name, seed in to_run], args.jobs)
    entries.update({label: {"arch": str(path.relative_to(out)), "search_s": seconds}
                    for (label, _, _), (path, seconds) in zip(to_run, found)})
    entries = {label: entries[label] for label, _, _ in searches}  # in the table's order
    for name in REFERENCES:
        arch, width = fit_width(cifar_variant(mbnas.load_arch(name)), budget)
        entries[f"(c) {name} ×{width:g}"] = {"arch": arch.save(out / f"{arch.name}.yaml").name,
                                             "search_s": None}
    entries.update(member_entries(args.members, budget, args.seed, out, space=args.space))
    entries.update(member_entries(args.near_budget, budget, args.seed, out, NEAR_BUDGET,
                                  space=args.space))
    manifest = {"args": vars(args), "entries": entries}
    (out / "entries.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def member_entries(count: int, budget: int, seed: int, out: Path, share: float = 0.0,
                   space: str = SPACE) -> dict[str, dict]:
    """``count`` random members of the space within ``budget``, saved as entries to train; with
    ``share`` (``--near-budget``), members with that share of the budget or more: members a MAC
    count cannot tell apart, as the last candidates of a search are."""
    members = WithinBudget(mbnas.load_space(space), Budget(macs=budget), seed=seed)
    near = share > 0
    rng = random.Random(seed + near)  # the plain members stay those of earlier folders
    label, prefix = ("(e) member near budget", "near") if near else ("(d) random member", "member")
    entries = {}
    for index in range(count):
        arch = draw_member(members, rng, share * budget).replace(name=f"{prefix}-{index}")
        entries[f"{label} {index}"] = {"arch": arch.save(out / f"{arch.name}.yaml").name,
                                       "search_s": None}
    return entries


def draw_member(members: WithinBudget, rng: random.Random, least_macs: float) -> ArchSpec:
    """A random member within budget with ``least_macs`` MACs or more."""
    for _ in range(NEAR_BUDGET_TRIES):
        arch = members.sample_random(rng)
        if mbnas.count(arch).macs >= least_macs:
            return arch
    raise SystemExit(f"search_quality.py: no member of {members.name} has "
                     f"{format_count(int(least_macs))} MACs or more in {NEAR_BUDGET_TRIES} "
                     "draws; raise --budget or leave out --near-budget")


def train_stage(args: argparse.Namespace, manifest: dict, out: Path) -> list[dict]:
    """Trains every entry from scratch with one recipe, once per training seed (a training that
    finished in ``out`` before is not repeated)."""
    entries = chosen_entries(manifest, args)
    calls = [(train_winner, training_name(index, seed), out / entry["arch"], seed, args, out)
             for index, (_, entry) in entries for seed in training_seeds(args)]
    accuracies = iter(run_all(calls, args.jobs))
    return [result_row(label, entry, [next(accuracies) for _ in training_seeds(args)], out)
            for _, (label, entry) in entries]


def collect_stage(args: argparse.Namespace, manifest: dict, out: Path) -> list[dict]:
    """The rows of the entries whose every training has finished in ``out``: what a train stage
    stopped before the end (e.g. by a device's time limit) leaves."""
    rows = []
    for index, (label, entry) in chosen_entries(manifest, args):
        results = [RunFolder.named(out, training_name(index, seed)).result
                   for seed in training_seeds(args)]
        if all(result.is_file() for result in results):
            runs = [json.loads(result.read_text())["accuracy"] for result in results]
            rows.append(result_row(label, entry, runs, out))
    return rows


def chosen_entries(manifest: dict, args: argparse.Namespace) -> list[tuple[int, tuple[str, dict]]]:
    """``(index, (label, entry))`` of the entries in the ``--groups`` and ``--entries`` chosen
    (all by default); the index names the training's folder, so it stays that of the whole
    list."""
    groups = args.groups.split(",") if args.groups else None
    return [(index, (label, entry)) for index, (label, entry)
            in enumerate(manifest["entries"].items())
            if (groups is None or label[1:].split(")")[0] in groups)
            and (not args.entries or label in args.entries)]


def training_name(index: int, seed: int) -> str:
    """The train run folder of entry ``index``, training seed ``seed``."""
    return f"train-{index}-s{seed}"


def training_seeds(args: argparse.Namespace) -> range:
    return range(args.seed, args.seed + args.train_seeds)


def result_row(label: str, entry: dict, accuracies: list[float], out: Path) -> dict:
    cost = mbnas.count(mbnas.load_arch(out / entry["arch"]))
    return {"entry": label, "arch": entry["arch"], "macs": cost.macs, "params": cost.params,
            "accuracies": accuracies, "accuracy": statistics.mean(accuracies),
            "search_s": entry["search_s"]}


RECIPE = ("epochs", "batch_size", "lr", "train_set", "seed", "train_seeds")


def with_earlier_rows(rows: list[dict], args: argparse.Namespace, manifest: dict,
                      results: Path) -> list[dict]:
    """``rows`` and the rows of other entries that ``results`` already holds from the same
    recipe, in the entries' order: accuracies accumulate over sessions (a pair of trainings at
    a time on a CPU); a file of another recipe is refused rather than mixed."""
    if not results.is_file():
        return rows
    earlier = json.loads(results.read_text())
    then, now = ({key: sorted(a[key]) if key == "train_set" else a[key] for key in RECIPE}
                 for a in (earlier["args"], vars(args)))
    if then != now:
        differ = ", ".join(f"{key} {then[key]} -> {now[key]}" for key in RECIPE
                           if then[key] != now[key])
        raise SystemExit(f"search_quality.py: {results} holds another recipe's trainings "
                         f"({differ}); name a new file with --results")
    merged = {row["entry"]: row for row in earlier["rows"]} | {row["entry"]: row for row in rows}
    return [merged[label] for label in manifest["entries"] if label in merged]


def rank_stage(args: argparse.Namespace, budget: int, out: Path) -> dict:
    """How well an evaluator (the space's default unless ``--evaluator``) ranks the trained
    entries that are members of the space (every entry with ``--all-entries``), as a search of
    that budget would prepare it, once per ranking seed; beside it MACs and parameters, and each
    feature the score is made of."""
    space = mbnas.load_space(args.space)
    files = [args.results, *args.also_results]
    rows = [row for row in trained_rows(out, files)
            if args.all_entries or space.contains(mbnas.load_arch(out / row["arch"]))]
    if len(rows) < 3:
        raise SystemExit(f"search_quality.py: {', '.join(files)} in {out} hold {len(rows)} trained "
                         f"members of the {space.name} space; ranking needs 3 or more (add "
                         "--members N to the search stage)")
    archs = [mbnas.load_arch(out / row["arch"]) for row in rows]
    truth = [row["accuracy"] for row in rows]
    macs = [row["macs"] for row in rows]
    name = args.evaluator or space.evaluator or "supernet"
    data = DataConfig(name="cifar10", root=args.data, seed=args.seed)
    result = {"entries": [row["entry"] for row in rows], "accuracy": truth,
              "evaluator": name, "settings": args.set,
              "baselines": {"macs": kendall(macs, truth),
                            "params": kendall([row["params"] for row in rows], truth)},
              "seeds": []}
    for seed in range(args.seed, args.seed + args.rank_seeds):
        evaluator = build_evaluator(name, args.set, space, data, seed, budget=Budget(macs=budget))
        evaluator.prepare(RunFolder(out / "rank" / f"{name}-{seed}-{setting_digest(evaluator)}"))
        scores, seconds, features = score_all(evaluator, archs)
        result["seeds"].append({"seed": seed, **ranking_metrics(scores, truth, macs),
                                "seconds_per_arch": seconds, "scores": scores,
                                "features": {feature: kendall(values, truth)
                                             for feature, values in features.items()}})
    return result


def trained_rows(out: Path, files: list[str]) -> list[dict]:
    """The rows of the results ``files`` in ``out``, one per entry: an entry trained in several
    (the same recipe on two hosts, say) gets the mean of their accuracies."""
    by_entry: dict[str, list[dict]] = {}
    for name in files:
        for row in json.loads((out / name).read_text())["rows"]:
            by_entry.setdefault(row["entry"], []).append(row)
    return [{**rows[0], "accuracy": statistics.mean(row["accuracy"] for row in rows)}
            for rows in by_entry.values()]


def kendall(values: list[float], truth: list[float]) -> float:
    return float(stats.kendalltau(values, truth)[0])


def print_rank(result: dict) -> None:
    print(f"\n{len(result['accuracy'])} trained networks; evaluator {result['evaluator']} "
          f"{' '.join(result['settings'])}".rstrip())
    print(f"Kendall tau of MACs {result['baselines']['macs']:+.2f}, of parameters "
          f"{result['baselines']['params']:+.2f}")
    for row in result["seeds"]:
        features = ", ".join(f"{name} {tau:+.2f}" for name, tau in row["features"].items())
        # Below 20 members the top 10% is one network: its recall says little.
        recall = (f", top-10% recall {row['top10_recall']:.2f}"
                  if len(result["accuracy"]) >= 20 else "")
        print(f"seed {row['seed']}: tau {row['kendall_tau']:+.2f}, rho "
              f"{row['spearman_rho']:+.2f}{recall}, {row['seconds_per_arch']:.2f} s/arch; "
              f"features: {features}")


def print_table(args: argparse.Namespace, budget: int, rows: list[dict]) -> None:
    print(f"\nbudget {format_count(budget)} MACs at 32 px, {args.candidates} evaluated candidates "
          f"per search, each entry trained {args.epochs} epochs from scratch "
          f"({args.train_seeds} seed(s), mean)")
    print(f"{'entry':<34} {'MACs':>8} {'params':>8} {'val acc':>8} {'runs':>16} {'search':>8}")
    for r in rows:
        search_time = f"{r['search_s'] / 60:.1f} min" if r["search_s"] else "-"
        runs = " ".join(f"{a:.4f}" for a in r["accuracies"])
        print(f"{r['entry']:<34} {format_count(r['macs']):>8} {format_count(r['params']):>8} "
              f"{r['accuracy']:>8.4f} {runs:>16} {search_time:>8}")


def searched_entries(out: Path) -> dict:
    """The entries.json a search stage wrote in ``out``."""
    if not (out / "entries.json").is_file():
        raise SystemExit(f"search_quality.py: {out / 'entries.json'} is missing: run --stage "
                         "search with this --out first (or copy its folder here)")
    return json.loads((out / "entries.json").read_text())


def searched_space(space: str, out: Path) -> str:
    """A space given as a YAML file is copied into ``out`` as space.yaml, so that the folder
    keeps the space its entries came from (and the stages after search find it there)."""
    path = Path(space)
    if path.suffix not in (".yaml", ".yml"):
        return space
    if not path.is_file():
        raise SystemExit(f"search_quality.py: --space {space}: no such file (give a space "
                         "name such as cifar, or the path of a space YAML file)")
    copy = out / SPACE_FILE
    if path.resolve() != copy.resolve():
        copy.write_text(path.read_text())
    return str(copy)


def recorded_space(manifest: dict, out: Path) -> str:
    """The space the search stage of ``out`` searched: a name, or space.yaml in ``out``."""
    space = manifest["args"].get("space") or SPACE  # folders made before --space: cifar
    return str(out / SPACE_FILE) if Path(space).name == SPACE_FILE else space


def main() -> None:
    keep_freed_memory()  # as an mbnas command does: trainings here run in this process too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar-10-batches-py")
    parser.add_argument("--stage", choices=("all", "search", "train", "collect", "rank"),
                        default="all",
                        help="search: write entries.json; train: train what entries.json names "
                             "(e.g. searched on a CPU, trained on a GPU); collect: results.json "
                             "of the trainings that finished (a train stage cut short); rank: "
                             "how well the evaluator ranks the trained members (reads "
                             "results.json)")
    parser.add_argument("--budget", default="20M")
    parser.add_argument("--space", default=None,
                        help=f"the searched space (a name or a YAML file; default {SPACE}): its "
                             "winners and members are the entries, and rank ranks its members; "
                             "in an --out that has entries.json, the space it records")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--startup", type=int, default=8)
    parser.add_argument("--evaluator", default=None, help="default: the space's own")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an evaluator setting, e.g. warmup_steps=300")
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the trainings, e.g. amp=off")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64, help="of the trainings")
    parser.add_argument("--lr", type=float, default=0.05, help="of the trainings")
    parser.add_argument("--workers", type=int, default=0, help="data workers of a training")
    parser.add_argument("--seed", type=int, default=0, help="first seed of the trainings")
    parser.add_argument("--train-seeds", type=int, default=1, help="trainings per entry")
    parser.add_argument("--search-seeds", type=int, default=1, help="searches per sampler")
    parser.add_argument("--members", type=int, default=0,
                        help="random members within budget to train too (ground truth)")
    parser.add_argument("--near-budget", type=int, default=0,
                        help=f"random members with {NEAR_BUDGET:.0%}% of the budget or more, to "
                             "train too (ground truth among equal MACs)")
    parser.add_argument("--rank-seeds", type=int, default=1,
                        help="evaluator seeds of --stage rank")
    parser.add_argument("--all-entries", action="store_true",
                        help="--stage rank: the references too (not members of the space; only "
                             "for evaluators that score any network, such as zero_cost)")
    parser.add_argument("--jobs", type=int, default=1, help="searches/trainings in parallel")
    parser.add_argument("--out", default="runs/search_quality")
    parser.add_argument("--groups", default=None,
                        help="train/collect only these groups of entries, e.g. a,b,c,e (the "
                             "letters of the table: a TPE, b random, c references, d members, "
                             "e members near the budget; other letters: entries added to "
                             "entries.json by hand, e.g. f for ablations)")
    parser.add_argument("--entries", action="append", default=[], metavar="LABEL",
                        help="train/collect only these entries, e.g. '(a) tpe seed 1' "
                             "(repeat it; with --groups, entries in both)")
    parser.add_argument("--results", default="results.json",
                        help="the trainings' file in --out (written by train and collect, which "
                             "keep its rows of other entries; read by rank): one per recipe, "
                             "e.g. results-12ep.json")
    parser.add_argument("--also-results", action="append", default=[], metavar="FILE",
                        help="rank: also these trainings' files in --out (repeat it), e.g. the "
                             "same recipe on another host; an entry in several gets the mean")
    args = parser.parse_args()
    budget, out = parse_count(args.budget), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.stage in ("train", "collect", "rank"):
        manifest = searched_entries(out)
        # The searches as they ran (their budget and candidates), not this command's defaults.
        args.candidates = manifest["args"]["candidates"]
        budget = parse_count(manifest["args"]["budget"])
        args.space = args.space or recorded_space(manifest, out)
    else:
        # Searching again in a folder (to add entries) keeps its space unless told otherwise.
        earlier = recorded_space(searched_entries(out), out) if (out / "entries.json").is_file() \
            else SPACE
        args.space = searched_space(args.space or earlier, out)
        manifest = search_stage(args, budget, out)
    if args.stage == "rank":
        for name in (args.results, *args.also_results):
            if not (out / name).is_file():
                raise SystemExit(f"search_quality.py: {out / name} is missing: run "
                                 "--stage train with this --out first")
        result = rank_stage(args, budget, out)
        (out / "rank.json").write_text(json.dumps({"args": vars(args), **result}, indent=2))
        print_rank(result)
        return
    if args.stage == "search":
        print(json.dumps(manifest["entries"], indent=2))
        return
    rows = (collect_stage if args.stage == "collect" else train_stage)(args, manifest, out)
    results = out / args.results
    # Train processes started one after another may finish together: one merge at a time.
    with file_lock(results.with_name(f"{results.name}.lock"), "the results file"):
        rows = with_earlier_rows(rows, args, manifest, results)
        results.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print_table(args, budget, rows)


if __name__ == "__main__":
    main()
