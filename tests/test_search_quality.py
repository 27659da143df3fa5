"""benchmarks/search_quality.py: random members as ground-truth entries, the collect stage that
keeps what a cut-short train stage finished, and the rank stage that says how well an evaluator
ranks the trained members of the space."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

import mbnas
from mbnas.run_folder import RunFolder

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
    args = argparse.Namespace(data=str(CIFAR), seed=0, rank_seeds=1, evaluator=None,
                              space=sq.SPACE,
                              all_entries=False, results="results.json", also_results=[],
                              # A weight of 0 turns the space's activations off: MACs is left.
                              set=["reference_archs=3", "features.activations=0"])
    result = sq.rank_stage(args, BUDGET, tmp_path)
    assert result["entries"] == [f"(d) random member {i}" for i in range(4)]
    assert result["baselines"]["macs"] == pytest.approx(1.0)
    (seed,) = result["seeds"]
    # The cifar space's own evaluator and settings apply: its score is MACs, as is the accuracy.
    assert set(seed["features"]) == {"macs"}
    assert len(seed["scores"]) == 4 and seed["kendall_tau"] == pytest.approx(1.0)


def test_an_entry_trained_in_several_results_files_ranks_by_its_mean(tmp_path):
    def row(entry, accuracy):
        return {"entry": entry, "arch": f"{entry}.yaml", "accuracy": accuracy}

    (tmp_path / "cpu.json").write_text(json.dumps({"rows": [row("a", 0.80), row("b", 0.70)]}))
    (tmp_path / "gpu.json").write_text(json.dumps({"rows": [row("b", 0.74), row("c", 0.90)]}))
    rows = sq.trained_rows(tmp_path, ["cpu.json", "gpu.json"])
    assert [(r["entry"], r["accuracy"]) for r in rows] == [
        ("a", 0.80), ("b", pytest.approx(0.72)), ("c", 0.90)]


def test_help_lists_every_option(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["search_quality.py", "--help"])
    with pytest.raises(SystemExit) as done:
        sq.main()
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--space" in text and "90% of the budget" in text


def test_a_space_file_travels_with_the_folder_its_entries_came_from(tmp_path):
    variant = tmp_path / "variant.yaml"
    variant.write_text((ROOT / "search_spaces" / "cifar.yaml").read_text())
    out = tmp_path / "run"
    out.mkdir()
    assert sq.searched_space("cifar", out) == "cifar"
    copy = sq.searched_space(str(variant), out)
    assert Path(copy) == out / "space.yaml" and Path(copy).read_text() == variant.read_text()
    # The folder is copied elsewhere (e.g. to a GPU host): later stages find the copy there.
    moved = tmp_path / "moved"
    manifest = {"args": {"space": copy}}
    assert sq.recorded_space(manifest, moved) == str(moved / "space.yaml")
    assert sq.recorded_space({"args": {"space": "nas_bench_macro"}}, moved) == "nas_bench_macro"
    assert sq.recorded_space({"args": {}}, moved) == sq.SPACE  # folders made before --space
    with pytest.raises(SystemExit, match="no such file"):
        sq.searched_space(str(tmp_path / "missing.yaml"), out)


def test_collect_keeps_the_entries_whose_every_training_finished(tmp_path):
    entries = sq.member_entries(3, BUDGET, seed=0, out=tmp_path)
    args = argparse.Namespace(seed=0, train_seeds=2, groups=None, entries=[])
    finished = {(0, 0): 0.61, (0, 1): 0.63, (1, 0): 0.5, (2, 0): 0.7, (2, 1): 0.72}
    for (index, seed), accuracy in finished.items():
        result = RunFolder.named(tmp_path, sq.training_name(index, seed)).result
        result.parent.mkdir(parents=True)
        result.write_text(json.dumps({"accuracy": accuracy}))
    rows = sq.collect_stage(args, {"entries": entries}, tmp_path)
    # Entry 1 lacks its second seed: a mean of one training is not the recipe's, so it is left out.
    assert [(row["entry"], row["accuracies"]) for row in rows] == [
        ("(d) random member 0", [0.61, 0.63]), ("(d) random member 2", [0.7, 0.72])]
    assert rows[0]["accuracy"] == pytest.approx(0.62)
    assert rows[0]["macs"] == mbnas.count(mbnas.load_arch(tmp_path / rows[0]["arch"])).macs


def test_groups_choose_entries_and_keep_their_training_folders(tmp_path):
    manifest = {"entries": {"(a) tpe seed 0": {}, "(c) mobilenet_v2": {}, "(d) random member 0": {},
                            "(e) member near budget 0": {}}}
    chosen = sq.chosen_entries(manifest, argparse.Namespace(groups="a,e", entries=[]))
    assert [(index, label) for index, (label, _) in chosen] == [(0, "(a) tpe seed 0"),
                                                                (3, "(e) member near budget 0")]
    assert len(sq.chosen_entries(manifest, argparse.Namespace(groups=None, entries=[]))) == 4
    one = sq.chosen_entries(manifest, argparse.Namespace(groups=None,
                                                         entries=["(c) mobilenet_v2"]))
    assert [index for index, _ in one] == [1]


def recipe(**changes):
    return argparse.Namespace(**{"epochs": 12, "batch_size": 256, "lr": 0.2, "seed": 0,
                                 "train_seeds": 1, "train_set": ["amp=off", "channels_last=true"],
                                 **changes})


def test_results_accumulate_over_sessions_for_one_recipe_only(tmp_path):
    manifest = {"entries": {"(a) tpe seed 0": {}, "(a) tpe seed 1": {}, "(b) random seed 0": {}}}
    results = tmp_path / "results-12ep.json"
    earlier = [{"entry": "(b) random seed 0", "accuracy": 0.8}, {"entry": "(a) tpe seed 0",
                                                                 "accuracy": 0.7}]
    results.write_text(json.dumps({"args": vars(recipe(train_set=["channels_last=true",
                                                                  "amp=off"])),
                                   "rows": earlier}))
    new = [{"entry": "(a) tpe seed 1", "accuracy": 0.75}, {"entry": "(a) tpe seed 0",
                                                           "accuracy": 0.71}]
    merged = sq.with_earlier_rows(new, recipe(), manifest, results)
    # In the entries' order; a row trained again replaces the earlier one.
    assert [(row["entry"], row["accuracy"]) for row in merged] == [
        ("(a) tpe seed 0", 0.71), ("(a) tpe seed 1", 0.75), ("(b) random seed 0", 0.8)]
    with pytest.raises(SystemExit, match=r"holds another recipe's trainings \(epochs 12 -> 30\)"):
        sq.with_earlier_rows(new, recipe(epochs=30), manifest, results)
    assert sq.with_earlier_rows(new, recipe(), manifest, tmp_path / "none.json") == new
