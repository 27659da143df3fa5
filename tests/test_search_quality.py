"""benchmarks/search_quality.py: random members as ground-truth entries, and the rank stage that
says how well an evaluator ranks the trained members of the space."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

import mbnas

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "search_quality.py"
CIFAR = ROOT / "../shared/data/cifar-10-batches-py"

sys.path.insert(0, str(SCRIPT.parent))  # as when run: the script imports its sibling modules
_spec = importlib.util.spec_from_file_location("search_quality", SCRIPT)
sq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sq)

BUDGET = 20_000_000


def test_members_are_distinct_members_within_budget(tmp_path):
    entries = sq.member_entries(4, BUDGET, seed=0, out=tmp_path)
    space = mbnas.load_space(sq.SPACE)
    archs = [mbnas.load_arch(tmp_path / entry["arch"]) for entry in entries.values()]
    assert list(entries) == [f"(d) random member {i}" for i in range(4)]
    assert all(space.contains(arch) and mbnas.count(arch).macs <= BUDGET for arch in archs)
    assert len({arch.replace(name="x").digest() for arch in archs}) == 4
    again = sq.member_entries(4, BUDGET, seed=0, out=tmp_path / "again")
    assert [mbnas.load_arch(tmp_path / "again" / e["arch"]) for e in again.values()] == archs


def test_near_budget_members_fill_the_budget(tmp_path, monkeypatch):
    near = sq.member_entries(3, BUDGET, seed=0, out=tmp_path, share=sq.NEAR_BUDGET)
    archs = [mbnas.load_arch(tmp_path / entry["arch"]) for entry in near.values()]
    assert list(near) == [f"(e) member near budget {i}" for i in range(3)]
    assert all(0.9 * BUDGET <= mbnas.count(arch).macs <= BUDGET for arch in archs)
    monkeypatch.setattr(sq, "NEAR_BUDGET_TRIES", 50)
    with pytest.raises(SystemExit, match="has 20.00M MACs or more in 50 draws"):
        sq.member_entries(1, BUDGET, seed=0, out=tmp_path, share=1.0)


@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"no CIFAR-10 subset at {CIFAR}")
def test_rank_stage_ranks_only_trained_members(tmp_path):
    entries = sq.member_entries(4, BUDGET, seed=0, out=tmp_path)
    reference, _ = sq.fit_width(sq.cifar_variant(mbnas.load_arch("mobilenet_v2")), BUDGET)
    entries["(c) mobilenet_v2"] = {"arch": reference.save(tmp_path / "mbv2.yaml").name}
    rows = []
    for label, entry in entries.items():
        cost = mbnas.count(mbnas.load_arch(tmp_path / entry["arch"]))
        # Accuracy as MACs: the MAC baseline must then rank perfectly.
        rows.append({"entry": label, "arch": entry["arch"], "macs": cost.macs,
                     "params": cost.params, "accuracy": cost.macs / BUDGET})
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    args = argparse.Namespace(data=str(CIFAR), seed=0, rank_seeds=1, evaluator="zero_cost",
                              all_entries=False,
                              set=["reference_archs=3", "batch_size=4"])
    result = sq.rank_stage(args, BUDGET, tmp_path)
    assert result["entries"] == [f"(d) random member {i}" for i in range(4)]
    assert result["baselines"]["macs"] == pytest.approx(1.0)
    (seed,) = result["seeds"]
    # The cifar space's own zero_cost settings apply: its score is MACs, as is the accuracy.
    assert set(seed["features"]) == {"macs"}
    assert len(seed["scores"]) == 4 and seed["kendall_tau"] == pytest.approx(1.0)
