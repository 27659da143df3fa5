"""End-to-end CLI tests of search, report and export on the smoke preset (tiny, still real)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import mbnas

pytestmark = pytest.mark.slow
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
SMOKE = ["preset=smoke", f"space={TINY_SPACE}", "data.synthetic_size=128"]
BUDGET = "+budget.macs=0.5M"


def mbnas_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "MBNAS_CACHE": str(cwd / "cache"), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "mbnas", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def report(run: Path) -> dict:
    return json.loads(mbnas_cli("report", f"run={run}", "format=json", cwd=run.parent.parent)
                      .stdout)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    done = mbnas_cli("search", BUDGET, "name=single", "n_trials=5", *SMOKE, cwd=root)
    return root / "runs" / "single", done


def test_search_exports_a_best_arch_within_budget(single_run):
    run, done = single_run
    assert "best: trial" in done.stdout and "[trial 5/5]" in done.stdout
    best = mbnas.load_arch(run / "best.yaml")
    assert mbnas.count(best).macs <= 500_000
    assert "timm-style arch_def" in (run / "best.yaml").read_text()
    model = mbnas.build(best)
    model.load_state_dict(torch.load(run / "best.pt"))


def test_report_json_lists_every_trial_and_no_complete_trial_exceeds_budget(single_run):
    run, _ = single_run
    result = report(run)
    assert result["counts"]["complete"] == 5 and result["counts"]["pruned"] > 0
    for trial in result["trials"]:
        assert {"number", "state", "macs", "params", "activations", "latency_ms", "accuracy",
                "choices"} <= set(trial)
        if trial["state"] == "complete":
            assert trial["macs"] <= 500_000 and 0.0 <= trial["accuracy"] <= 1.0
            assert trial["activations"] > 0
            assert trial["choices"]
        else:
            assert trial["state"] == "pruned" and "budget" in trial["pruned_reason"]
    table = mbnas_cli("report", f"run={run}", cwd=run.parent.parent).stdout
    assert "Pareto set" in table and "top" in table


def test_tensorboard_event_files_hold_curves_hparams_and_study_summaries(single_run):
    run, _ = single_run
    trial_dirs = sorted((run / "tb").glob("trial-*"))
    assert trial_dirs
    trial = EventAccumulator(str(trial_dirs[0]))
    trial.Reload()
    group = f"3 trials {int(trial_dirs[0].name[6:]) // 10 * 10:04d}-"
    scalars = trial.Tags()["scalars"]
    assert any(t.startswith(group) and t.endswith("train/loss") for t in scalars)
    assert any(t.startswith(group) and t.endswith("val/accuracy") for t in scalars)
    assert "hparam/accuracy" in trial.Tags()["scalars"]
    assert "hparam/macs" in trial.Tags()["scalars"]
    study = EventAccumulator(str(run / "tb" / "study"), size_guidance={"images": 0})
    study.Reload()
    assert "1 study/best accuracy so far" in study.Tags()["scalars"]
    assert {"1 study/a best accuracy so far", "1 study/b accuracy vs macs",
            "1 study/b accuracy vs latency"} <= set(study.Tags()["images"])
    assert "1 study/best architecture/text_summary" in study.Tags()["tensors"]
    warmup = EventAccumulator(str(run / "tb" / "supernet"))
    warmup.Reload()
    assert len(warmup.Scalars("2 supernet/warm-up loss (largest member)")) == 6


def test_same_command_resumes_and_counts_the_total(single_run, tmp_path):
    run, _ = single_run
    checkpoint = run / "supernet.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert torch.load(checkpoint, weights_only=False)["optimizer"] is None  # finished: weights only
    done = mbnas_cli("search", BUDGET, "name=single", "n_trials=7", *SMOKE,
                     cwd=run.parent.parent)
    assert "2 of 7 trials to go" in done.stdout
    result = report(run)  # the resumed sampler draws anew: it may repeat a scored member
    assert result["counts"]["complete"] - result["repeats"] == 7
    assert checkpoint.stat().st_mtime_ns == stamp  # the warm-up was reused, not redone


def test_resume_with_a_different_budget_is_refused(single_run):
    run, _ = single_run
    done = mbnas_cli("search", "+budget.macs=3M", "name=single", *SMOKE, cwd=run.parent.parent,
                     check=False)
    assert done.returncode == 2 and "different search" in done.stderr
    other = mbnas_cli("search", BUDGET, "name=single", *SMOKE, "evaluator.finetune_steps=3",
                      cwd=run.parent.parent, check=False)
    assert other.returncode == 2 and "evaluator.finetune_steps=2" in other.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["budget"] == {"macs": "0.5M"}


def test_export_command_writes_torchscript(single_run):
    run, _ = single_run
    mbnas_cli("export", f"run={run}", "torchscript=true", cwd=run.parent.parent)
    assert (run / "best.torchscript.pt").is_file() and (run / "best.pt").is_file()


def test_multi_objective_search_writes_the_pareto_set(tmp_path):
    mbnas_cli("search", BUDGET, "objective=accuracy-macs", "sampler=nsga2",
              "name=multi", "n_trials=4", "evaluator=scratch", "export.weights=false", *SMOKE,
              cwd=tmp_path)
    run = tmp_path / "runs" / "multi"
    pareto = sorted((run / "pareto").glob("*.yaml"))
    assert pareto and (run / "best.yaml").is_file()
    assert all(mbnas.count(mbnas.load_arch(p)).macs <= 500_000 for p in pareto)
    assert report(run)["pareto"]


@pytest.mark.parametrize("settings, message", [
    (["+budget.macs=lots"], "budget.macs: 'lots' is not a count"),
    (["+budget.latency_ms=fast"], "budget.latency_ms"),
    (["+budget.macs=100k"], "smallest member of space 'tiny' needs 167.81K MACs"),
    (["+budget.flops=3M"], "unknown budget"),
    # The samplers take seeds below 2**32 (they raised a traceback).
    ([BUDGET, "seed=5000000000"], "seed: 5000000000 is not allowed; use an integer ≥ 0 and ≤"),
])
def test_bad_settings_stop_before_training_without_traceback(tmp_path, settings, message):
    done = mbnas_cli("search", *settings, "name=bad", *SMOKE, cwd=tmp_path, check=False)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "bad" / "supernet.pt").exists()


def test_config_files_compose_from_any_directory(tmp_path):
    cfg = yaml.safe_load(mbnas_cli("search", "+budget.macs=300M", "--cfg", cwd=tmp_path).stdout)
    assert cfg["budget"] == {"macs": "300M"} and cfg["evaluator"]["name"] == "supernet"


def test_latency_budget_with_a_lookup_table(tmp_path):
    table = tmp_path / "tiny-table.json"
    mbnas_cli("latency", "build", f"space={TINY_SPACE}", f"out={table}", "calibrate=3", "check=0",
              "latency.repeats=2", "latency.warmup=1", cwd=tmp_path)
    done = mbnas_cli("search", "+budget.latency_ms=50ms", "latency=table",
                     f"latency.table={table}", "name=lat", "n_trials=3", "evaluator=scratch",
                     "export.weights=false", *SMOKE, cwd=tmp_path)
    assert f"latency: table {table}" in done.stdout
    trials = report(tmp_path / "runs" / "lat")["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert len(complete) == 3 and all(0 < t["latency_ms"] <= 50 for t in complete)


def test_impossible_latency_budget_names_the_fastest_member(tmp_path):
    done = mbnas_cli("search", "+budget.latency_ms=0.0001", "name=fast", *SMOKE, cwd=tmp_path,
                     check=False)
    assert done.returncode == 2 and "budget.latency_ms" in done.stderr
    assert "smallest member of space 'tiny' needs" in done.stderr and "Traceback" not in done.stderr


def test_progress_lines_name_the_score_as_the_evaluator_measures_it(single_run, tmp_path):
    def progress_lines(done):
        return [line for line in done.stdout.splitlines() if line.startswith("[trial ")]

    _, trained = single_run  # the tiny space's supernet evaluator validates: an accuracy
    assert progress_lines(trained) and all(" accuracy " in line
                                           for line in progress_lines(trained))
    untrained = mbnas_cli("search", BUDGET, "evaluator=zero_cost", "n_trials=2", *SMOKE,
                          cwd=tmp_path)
    lines = progress_lines(untrained)
    assert lines and all(" score " in line and "accuracy" not in line for line in lines)
    assert "best       trial" in untrained.stdout and ": score " in untrained.stdout
    assert "(synthetic data)" in untrained.stdout  # its proxies saw synthetic images
    assert "# train the winner from scratch" in untrained.stdout  # it has no weights to start from
    assert "# train the winner further" in trained.stdout


def test_warmup_under_torchrun_then_a_worker_only_scores(tmp_path):
    env = {**os.environ, "MBNAS_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    options = [BUDGET, "name=wide", "latency=none", *SMOKE]
    warmup = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             "--standalone", "-m", "mbnas", "warmup", *options],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert warmup.returncode == 0, warmup.stdout + warmup.stderr
    assert warmup.stdout.count("supernet warmed up") == 1  # rank 0 reports, rank 1 does not
    assert "2 process(es)" in warmup.stdout
    done = mbnas_cli("search", *options, "n_trials=1", cwd=tmp_path)
    assert "supernet warm-up already done" in done.stderr and "[trial 1/1]" in done.stdout
    refused = mbnas_cli("warmup", BUDGET, "evaluator=zero_cost", *SMOKE, cwd=tmp_path,
                        check=False)
    assert refused.returncode == 2 and "warms no supernet up" in refused.stderr


def test_multi_fidelity_search_with_a_pruner(tmp_path):
    done = mbnas_cli("search", BUDGET, "evaluator=scratch", "pruner=median",
                     "evaluator.checkpoint_every=1", "n_trials=8", "latency=none", *SMOKE,
                     "name=pruned", cwd=tmp_path)
    assert "pruner median (checks every 1 of 4 steps)" in done.stdout
    assert "expected   at most" in done.stdout and "[trial 8/8]" in done.stdout
    run = tmp_path / "runs" / "pruned"
    assert yaml.safe_load((run / "config.yaml").read_text())["pruner"] == "median"
    study = optuna.load_study(study_name="pruned", storage=f"sqlite:///{run / 'study.db'}")
    # The pruner saw every candidate's checkpoints before it ended (steps 1-3 of 4).
    evaluated = [t for t in study.trials if "accuracy" in t.user_attrs]
    assert evaluated and all(set(t.intermediate_values) <= {1, 2, 3} and t.intermediate_values
                             for t in evaluated if "duplicate_of" not in t.user_attrs)
    stopped = [t for t in evaluated if "stopped_at_step" in t.user_attrs]
    assert all(t.user_attrs["stopped_at_step"] == max(t.intermediate_values) for t in stopped)
    if stopped:
        assert f"({len(stopped)} stopped early by the pruner)" in done.stdout


def test_a_pruner_for_an_evaluator_that_cannot_stop_is_refused(tmp_path):
    done = mbnas_cli("search", BUDGET, "evaluator=zero_cost", "pruner=hyperband", *SMOKE,
                     cwd=tmp_path, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "pruner: evaluator 'zero_cost' scores a candidate in one go" in done.stderr
