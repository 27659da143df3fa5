"""A run resumes only with what changes its results unchanged, and only in its own folder: each
refusal is one line naming the setting (then, now) and the overrides that resume it."""

import shutil
from pathlib import Path

import pytest
from test_data import write_cifar

from mbnas.__main__ import main
from mbnas.search.run import space_digest
from mbnas.space import load_space

FIXTURES = Path(__file__).parent / "fixtures"
SEARCH = ["search", "+budget.macs=0.5M", "preset=smoke", "data.synthetic_size=128",
          "latency=none", "evaluator=zero_cost", "n_trials=2", "startup_trials=2", "name=run"]


def refusal(capsys, *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A finished tiny search on synthetic data, its space a copy that tests may edit."""
    root = tmp_path_factory.mktemp("resume")
    write_cifar(root / "cifar")
    space = root / "space.yaml"
    shutil.copy(FIXTURES / "tiny_space.yaml", space)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main([*SEARCH, f"space={space}"]) == 0
    return root, space


@pytest.mark.parametrize(("change", "named", "back"), [
    (["data=cifar10", "data.root=cifar"], "data.name='synthetic', now data.name='cifar10'",
     "data.name=synthetic data.root=null"),
    (["seed=7"], "seed=0, now seed=7", "seed=0"),
    (["evaluator.batch_size=8"], "evaluator.batch_size=16, now evaluator.batch_size=8",
     "evaluator.batch_size=16"),
    (["evaluator=scratch"], "evaluator.name='zero_cost', now evaluator.name='scratch'",
     "evaluator.name=zero_cost"),
    (["preset=default"], "preset='smoke', now preset='default'", "preset=smoke"),
    (["++budget.macs=0.4M"], "budget='macs ≤ 500.00K MACs', now budget='macs ≤ 400.00K MACs'",
     ""),
    (["latency=measured"], "latency.mode='none', now latency.mode='measured'",
     "latency.mode=none"),
])
def test_a_changed_setting_is_refused_naming_it_and_the_way_back(search_run, capsys,
                                                                 monkeypatch, change, named,
                                                                 back):
    root, space = search_run
    monkeypatch.chdir(root)
    err = refusal(capsys, *SEARCH, f"space={space}", *change)
    assert "run 'run' already holds a different search" in err and named in err
    assert "choose another name= for a new run" in err
    assert f"to resume as it was: {back}" in err if back else "to resume as it was" not in err


def test_an_edited_space_file_is_refused(search_run, capsys, monkeypatch, tmp_path):
    root, space = search_run
    monkeypatch.chdir(root)
    edited = tmp_path / "space.yaml"  # the same name, other choices
    edited.write_text(space.read_text().replace("out: [16, 24]", "out: [16, 20]"))
    err = refusal(capsys, *SEARCH, f"space={edited}")
    assert "space_digest=" in err


def test_a_renamed_run_folder_starts_no_new_study_in_the_old_database(search_run, capsys,
                                                                       monkeypatch):
    root, space = search_run
    monkeypatch.chdir(root)
    shutil.copytree(root / "runs" / "run", root / "runs" / "moved")
    args = [a if a != "name=run" else "name=moved" for a in SEARCH]
    err = refusal(capsys, *args, f"space={space}")
    assert "runs/moved: holds the search 'run', not 'moved': the folder was renamed" in err
    assert "rename the folder back to 'run'" in err
    assert main(["report", "run=runs/moved"]) == 0  # reading it is harmless
    assert "study run: 2 complete" in capsys.readouterr().out


def test_an_old_run_without_a_recorded_name_is_recognised_by_its_database(search_run, capsys,
                                                                        monkeypatch):
    root, space = search_run
    monkeypatch.chdir(root)
    shutil.copytree(root / "runs" / "run", root / "runs" / "old")
    config = root / "runs" / "old" / "config.yaml"
    config.write_text(config.read_text().replace("name: run\n", "name: null\n"))
    args = [a if a != "name=run" else "name=old" for a in SEARCH]
    assert "holds the search 'run', not 'old'" in refusal(capsys, *args, f"space={space}")


def test_train_resumed_on_other_data_is_refused_with_the_way_back(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.chdir(tmp_path)
    write_cifar(tmp_path / "cifar")
    train = ["train", f"arch={FIXTURES / 'tiny_arch.yaml'}", "epochs=1", "bn_images=32",
             "data.synthetic_size=96", "data.batch_size=16", "progress=false"]
    assert main(train) == 0
    capsys.readouterr()
    err = refusal(capsys, *train, "data=cifar10", "data.root=cifar")
    assert "data.name='synthetic', now data.name='cifar10'" in err
    assert "to resume as it was: data.name=synthetic data.root=null" in err


def test_the_space_digest_covers_content_not_the_spaces_evaluator_settings():
    # A search started before spaces carried evaluator settings resumes under the same digest;
    # the settings in use are in the signature's evaluator.
    space = load_space("nas_bench_macro")
    assert space_digest(space) == space_digest(
        space.replace(evaluator_settings={"features": {"macs": 1.0}}))
    assert space_digest(space) != space_digest(space.replace(dropout=0.3))
