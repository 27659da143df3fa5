"""The README's quick tour, run end to end as written, on tiny settings.

Each ``python -m mbnas`` line of the README's "Quick tour" block runs in a fresh folder with a few
overrides appended that only shrink the work (fewer trials and steps, smaller data); the
``tensorboard`` line is checked by the event files it would show. A change that breaks the tour
as a new user types it (run folders that collide, a command that refuses the previous one's
output) fails here.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mbnas

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parent.parent / "README.md"
TINY_DATA = ["data.synthetic_size=128", "data.batch_size=32"]
# Appended per step: they shrink the work, never change a run's name or which runs are used.
TINY = {
    "smoke": ["n_trials=2", *TINY_DATA],
    "search": ["n_trials=2", "startup_trials=2", "evaluator.warmup_steps=2",
               "evaluator.finetune_steps=1", "evaluator.bn_images=32", "evaluator.eval_batches=1",
               "latency.warmup=0", "latency.repeats=1", *TINY_DATA],
    "train": ["epochs=1", "bn_images=32", *TINY_DATA],
    "evaluate": [],
    "cost": ["latency.warmup=1", "latency.repeats=2"],
}


def tour_commands() -> list[list[str]]:
    """The commands of the README's quick tour, comments dropped."""
    text = README.read_text()
    section = text[text.index("## Quick tour"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]


def step(args: list[str]) -> str:
    """Which tiny overrides a tour command gets."""
    command = args[3]
    if command == "search":
        return "smoke" if "preset=smoke" in args else "search"
    return command


def run_step(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MBNAS_CACHE": str(cwd / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *args[1:], *TINY.get(step(args), [])], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_readme_lists_a_tour_of_every_step():
    commands = tour_commands()
    assert [c[0] for c in commands].count("python") >= 6
    assert {step(c) for c in commands if c[0] == "python"} >= {"smoke", "search", "train",
                                                                "report", "export", "cost"}
    assert any(c[0] == "tensorboard" for c in commands)


def test_the_quick_tour_runs_as_written(tmp_path):
    outputs = {}
    for args in tour_commands():
        if args[0] == "tensorboard":
            logdir = tmp_path / args[args.index("--logdir") + 1]
            assert list(logdir.rglob("events.out.tfevents.*")), f"nothing to show in {logdir}"
            continue
        assert args[:3] == ["python", "-m", "mbnas"], args
        outputs[step(args)] = run_step(args, tmp_path).stdout
    runs = tmp_path / "runs"
    smoke, real = runs / "default-macs300M-smoke", runs / "default-macs300M"
    assert (smoke / "best.yaml").is_file() and (real / "best.yaml").is_file()
    # The real run kept its own study: none of the smoke run's trials.
    assert yaml.safe_load((real / "config.yaml").read_text())["preset"] == "default"
    assert mbnas.count(mbnas.load_arch(real / "best.yaml")).macs <= 300_000_000
    assert "next:" in outputs["search"] and "SYNTHETIC" in outputs["search"]
    assert "expected" in outputs["smoke"]
