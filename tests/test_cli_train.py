"""End to end: `train` and `evaluate` on tiny data, resumption, inherited weights, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_data import write_cifar

import mbnas
from mbnas.__main__ import main

TINY_ARCH = """name: tiny
resolution: 32
num_classes: 10
stem: {out: 8, stride: 2}
stages:
- {block: fused, expand: 2, out: 16, depth: 2, stride: 2}
- {block: mbconv, expand: 3, out: 24, stride: 2, se: 0.25, act: hswish}
head: {channels: 48}
dropout: 0.2
"""
SMALL = ["epochs=2", "data.synthetic_size=160", "data.batch_size=16", "bn_images=32",
         "optim.warmup_steps=2", "progress=false"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mbnas", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.fixture
def tiny_arch(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_ARCH)
    return path


@pytest.mark.slow
def test_train_then_evaluate_then_rerun(tmp_path, tiny_arch):
    done = run_cli("train", f"arch={tiny_arch}", "drop_path=0.1", *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "validation top-1" in done.stdout
    run = tmp_path / "runs" / "tiny"
    assert {"arch.yaml", "config.yaml", "last.pt", "model.pt", "result.json", "tb"} <= {
        p.name for p in run.iterdir()}
    result = json.loads((run / "result.json").read_text())
    assert 0 <= result["accuracy"] <= 1 and result["steps"] == 18 and len(result["history"]) == 2
    trained = mbnas.load_arch(run / "arch.yaml")
    assert trained.drop_path == 0.1 and trained.num_classes == 10
    assert any((run / "tb").iterdir())

    done = run_cli("evaluate", "run=runs/tiny", "format=json", "data.synthetic_size=160",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = json.loads(done.stdout)
    assert scored["split"] == "test" and scored["samples"] == 32 and 0 <= scored["accuracy"] <= 1
    own = run_cli("evaluate", "run=runs/tiny", cwd=tmp_path)  # the run's own data by default
    assert own.returncode == 0 and "synthetic test split" in own.stdout
    assert "the run's own data" in own.stdout and "not a real dataset" in own.stdout

    again = run_cli("train", f"arch={tiny_arch}", "drop_path=0.1", *SMALL, cwd=tmp_path)
    assert again.returncode == 0 and "already trained" in again.stdout


def test_resume_is_exact(tmp_path, tiny_arch, monkeypatch):
    """Interrupting mid-epoch and running the same command again gives the same weights."""
    monkeypatch.chdir(tmp_path)
    args = ["train", f"arch={tiny_arch}", "drop_path=0.2", *SMALL]
    assert main([*args, "name=straight"]) == 0

    import mbnas.trainer as command

    real_step, calls = command.train_step, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 13:  # in the middle of the second epoch of 9 steps
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(command, "train_step", interrupted)
    assert main([*args, "name=resumed"]) == 130
    assert not (tmp_path / "runs" / "resumed" / "model.pt").exists()
    assert torch.load(tmp_path / "runs" / "resumed" / "last.pt")["step"] == 12
    assert main([*args, "name=resumed"]) == 0
    straight = torch.load(tmp_path / "runs" / "straight" / "model.pt")
    resumed = torch.load(tmp_path / "runs" / "resumed" / "model.pt")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    # TensorBoard shows one curve: the killed epoch's steps replaced, those before it kept.
    assert scalars(tmp_path / "runs" / "resumed") == scalars(tmp_path / "runs" / "straight")


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    return {tag: [(e.step, round(e.value, 5)) for e in events.Scalars(tag)]
            for tag in ("train/loss", "val/accuracy")}


def test_changed_settings_refuse_to_resume(tmp_path, tiny_arch, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", f"arch={tiny_arch}", *SMALL, "epochs=1"]) == 0
    assert main(["train", f"arch={tiny_arch}", *SMALL, "epochs=3"]) == 2
    assert "epochs=1" in capsys.readouterr().err


def test_init_from_a_search_run(tmp_path, tiny_arch, monkeypatch, capsys):
    """`init=runs/<search>` takes best.yaml and best.pt, replacing the classifier's classes."""
    monkeypatch.chdir(tmp_path)
    search = tmp_path / "runs" / "search"
    arch = mbnas.load_arch(tiny_arch).replace(name="found", num_classes=5)
    arch.save(search / "best.yaml")
    torch.manual_seed(1)
    inherited = mbnas.build(arch)
    torch.save(inherited.state_dict(), search / "best.pt")
    assert main(["train", "init=runs/search", *SMALL, "epochs=1", "optim.lr=1e-9"]) == 0
    run = tmp_path / "runs" / "found"
    trained = torch.load(run / "model.pt")
    assert torch.allclose(trained["stem.conv.weight"], inherited.state_dict()["stem.conv.weight"],
                          atol=1e-6)
    assert mbnas.load_arch(run / "arch.yaml").num_classes == 10


def test_init_from_a_search_that_scored_untrained_networks(tmp_path, tiny_arch, monkeypatch,
                                                          capsys):
    """A zero_cost search writes best.yaml alone: `train init=` trains it from scratch and says
    so; `evaluate` refuses it, there being nothing trained to evaluate."""
    monkeypatch.chdir(tmp_path)
    search = tmp_path / "runs" / "search"
    mbnas.load_arch(tiny_arch).replace(name="found").save(search / "best.yaml")
    assert main(["train", "init=runs/search", *SMALL, "epochs=1"]) == 0
    assert "holds no weights" in capsys.readouterr().out
    assert (tmp_path / "runs" / "found" / "model.pt").is_file()
    assert main(["evaluate", "run=runs/search", "format=json"]) == 2
    err = capsys.readouterr().err
    assert "best.pt: missing" in err and "Traceback" not in err


def test_cifar_format_end_to_end(tmp_path, tiny_arch, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = write_cifar(tmp_path / "cifar", batches=2, per_batch=40)
    data = ["data=cifar10", f"data.root={root}", "data.workers=0"]
    assert main(["train", f"arch={tiny_arch}", "name=c", *SMALL, *data]) == 0
    capsys.readouterr()
    assert main(["evaluate", "run=runs/c", "format=json", *data]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 40 and result["split"] == "test"


@pytest.mark.parametrize("args, fragment", [
    (["data=cifar10", "data.root=/no/such/cifar"], "/no/such/cifar"),
    (["data=imagefolder"], "data.root"),
    (["arch=mobilenet_v9"], "mobilenet_v9"),
    (["optim.optimizer=lamb"], "optim.optimizer"),
    ([], "arch"),
])
def test_bad_input_gives_one_message(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    base = ["arch=mobilenet_v3_small"] if args and args[0] != "arch=mobilenet_v9" else []
    assert main(["train", *base, *args]) == 2
    assert fragment in capsys.readouterr().err


def test_bad_input_exits_2_without_traceback(tmp_path):
    done = run_cli("train", "arch=mobilenet_v3_small", "data=cifar10", "data.root=/no/such/dir",
                   cwd=tmp_path)
    assert done.returncode == 2 and "/no/such/dir" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("evaluate", "run=runs/missing", cwd=tmp_path)
    assert done.returncode == 2 and "runs/missing" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_smoke_preset_trains_a_reference_network_quickly(tmp_path):
    done = run_cli("train", "arch=mobilenet_v3_small", "preset=smoke", "name=smoke", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "runs" / "smoke" / "result.json").read_text())
    assert 0.0 <= result["accuracy"] <= 1.0
    assert mbnas.load_arch(tmp_path / "runs" / "smoke" / "arch.yaml").num_classes == 10
