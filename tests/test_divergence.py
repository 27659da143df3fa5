"""Diverging training and non-finite scores: `train` and the warm-up stop and keep their last
finite checkpoint; a search fails the candidate with the reason and goes on."""

import json
import math
from pathlib import Path

import pytest
import torch
from test_supernet_training import SPACE, fresh_supernet, mbnas_loader

import mbnas.train
from mbnas.__main__ import main
from mbnas.errors import Diverged
from mbnas.proxies import PROXIES
from mbnas.supernet.training import SandwichConfig, train_supernet
from mbnas.train import OptimConfig, non_finite

TINY_ARCH = Path(__file__).parent / "fixtures" / "tiny_arch.yaml"
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
TRAIN = ["train", f"arch={TINY_ARCH}", "epochs=2", "data.synthetic_size=160",
         "data.batch_size=16", "bn_images=32", "progress=false"]
SEARCH = ["search", "+budget.macs=0.5M", "preset=smoke", f"space={TINY_SPACE}",
          "data.synthetic_size=128", "latency=none", "evaluator=zero_cost", "n_trials=4",
          "startup_trials=2"]


class NanAfter(torch.nn.CrossEntropyLoss):
    """The real loss for ``good`` calls, NaN from then on: a diverging run, on cue."""

    def __init__(self, good: int, **kwargs):
        super().__init__(**kwargs)
        self.good, self.calls = good, 0

    def forward(self, logits, labels):
        self.calls += 1
        loss = super().forward(logits, labels)
        return loss if self.calls <= self.good else loss * float("nan")


def diverge_after(monkeypatch, good: int) -> None:
    monkeypatch.setattr(mbnas.train, "make_criterion",
                        lambda cfg: NanAfter(good, label_smoothing=cfg.label_smoothing))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_train_with_a_huge_learning_rate_stops_without_writing_a_model(tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "optim.lr=1e6"]) == 2
    err = one_error_line(capsys)
    assert "training diverged" in err and "optim.lr (now 1e+06)" in err
    run = tmp_path / "runs" / "tiny"
    assert not (run / "model.pt").exists() and not (run / "result.json").exists()
    if (run / "last.pt").exists():  # written before it diverged: finite, or not at all
        assert not non_finite(torch.load(run / "last.pt")["model"])


def test_train_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    diverge_after(monkeypatch, 12)  # 9 steps an epoch: diverges in the second
    assert main(TRAIN) == 2
    err = one_error_line(capsys)
    assert "after step 12 of 18" in err and "keeps step 9, the last finite checkpoint" in err
    run = tmp_path / "runs" / "tiny"
    state = torch.load(run / "last.pt")
    assert state["step"] == 9 and not non_finite(state["model"])
    assert all(math.isfinite(h["loss"]) for h in state["history"])
    assert not (run / "model.pt").exists() and not (run / "result.json").exists()


def test_diverging_warmup_keeps_its_last_finite_checkpoint(tmp_path, monkeypatch):
    diverge_after(monkeypatch, 4)  # the largest member's loss: one call a step
    checkpoint = tmp_path / "supernet.pt"
    cfg = SandwichConfig(steps=6, num_random=1, checkpoint_every=2,
                         optim=OptimConfig(lr=0.05))
    with pytest.raises(Diverged, match="after step 4 of 6") as raised:
        train_supernet(fresh_supernet(), SPACE, mbnas_loader(), cfg, checkpoint=checkpoint,
                       progress=False)
    assert f"{checkpoint} keeps step 4, the last finite checkpoint" in str(raised.value)
    state = torch.load(checkpoint)
    assert state["step"] == 4 and not non_finite(state["model"])


def infinite_after(monkeypatch, calls: int, every: int) -> None:
    """SWAP (a default feature) gives infinity to every ``every``-th candidate once ``calls``
    were scored."""
    real, seen = PROXIES["swap"], []

    def swap(model, images, labels):
        seen.append(1)
        if len(seen) > calls and len(seen) % every == 0:
            return float("inf")
        return real(model, images, labels)

    monkeypatch.setitem(PROXIES, "swap", swap)


def test_a_non_finite_score_fails_its_trial_and_the_search_goes_on(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    infinite_after(monkeypatch, calls=4, every=2)  # after the 4 reference members
    assert main([*SEARCH, "name=inf"]) == 0
    out = capsys.readouterr().out
    assert "[trial failed]" in out and "[trial 4/4]" in out
    assert main(["report", "run=runs/inf", "format=json"]) == 0
    result = json.loads(capsys.readouterr().out)
    failed = [t for t in result["trials"] if t["state"] == "fail"]
    assert failed and result["counts"]["complete"] == 4
    assert all("diverged: zero-cost feature swap is inf" in t["failed_reason"] for t in failed)
    assert result["best"] not in {t["number"] for t in failed}
    assert all(math.isfinite(t["accuracy"]) for t in result["top"])
    assert main(["report", "run=runs/inf"]) == 0
    assert "failed trials (not counted, never best):" in capsys.readouterr().out


def test_a_search_whose_candidates_all_diverge_stops_with_one_line(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    infinite_after(monkeypatch, calls=4, every=1)
    assert main([*SEARCH, "name=allinf"]) == 2
    err = one_error_line(capsys)
    assert "stopped after 5 candidates in a row failed" in err
    assert "no candidate was trained" in err
    assert not (tmp_path / "runs" / "allinf" / "best.yaml").exists()


def test_an_infinite_reference_feature_names_the_feature(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    infinite_after(monkeypatch, calls=0, every=3)
    assert main([*SEARCH, "name=ref"]) == 2
    err = one_error_line(capsys)
    assert "zero-cost feature swap is NaN or infinite for 1 of the 4 reference members" in err
    assert "evaluator.features.swap=0" in err
