"""Help and suggestions of the command line: every command's options with defaults and
explanations, and "did you mean" for mistyped commands, options and choices."""

import pytest

from mbnas.__main__ import main
from mbnas.cli import COMMANDS
from mbnas.cli_help import yaml_comments
from mbnas.resources import conf_dir


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_command_has_help_with_defaults(command, flag, capsys):
    assert main([command, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m mbnas {command}")
    assert "Options (key=value; shown with their defaults):" in out


def test_search_help_lists_options_groups_defaults_and_explanations(capsys):
    assert main(["search", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # explanations wrap
    assert "n_trials=30" in out and "distinct candidates evaluated" in out
    assert "evaluator=supernet" in out and "scratch, supernet" in out
    assert "evaluator.warmup_steps=300" in out and "preset=default" in out


def test_help_follows_the_chosen_group(capsys):
    assert main(["search", "evaluator=scratch", "--help"]) == 0
    assert "evaluator.train_steps=200" in capsys.readouterr().out


def test_top_level_help_lists_commands_and_points_to_command_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS) and "<command> --help" in out
    assert main(["help", "cost"]) == 0 and "arch=mobilenet_v3_large" in capsys.readouterr().out


@pytest.mark.parametrize("args, suggestion", [
    (["serch"], "did you mean 'search'?"),
    (["search", "+budget.macs=300M", "n_trail=3"], "did you mean 'n_trials'?"),
    (["search", "+budget.macs=300M", "+n_trail=3"], "did you mean 'n_trials'?"),
    (["search", "+budget.macs=300M", "evaluator.warmup_step=3"],
     "did you mean 'evaluator.warmup_steps'?"),
    (["search", "+budget.macs=300M", "evaluator=scrath"], "did you mean 'scratch'?"),
    (["search", "+budget.macs=300M", "preset=smok"], "did you mean 'smoke'?"),
    (["search", "budget.macs=300M"], "add it with a leading +: +budget.macs=300M"),
    (["cost", "widht=0.5"], "did you mean 'width'?"),
    (["cost", "--cgf"], "did you mean '--cfg'?"),
])
def test_typos_get_a_suggestion_without_traceback(args, suggestion, capsys):
    assert main([*args, "--cfg"] if args[0] != "serch" else args) == 2
    err = capsys.readouterr().err
    assert suggestion in err and "Traceback" not in err


def test_yaml_comments_are_read_by_dotted_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1   # first\nb:\n  c: 2  # nested\n       # continued\nd: 3\n")
    assert yaml_comments(path) == {"a": "first", "b.c": "nested continued"}
    assert "n_trials" in yaml_comments(conf_dir() / "search.yaml")


def test_the_preset_choice_is_part_of_the_search_config():
    from mbnas.config import load_config
    from mbnas.search import SearchConfig

    assert load_config("search", ["preset=smoke"], SearchConfig).preset == "smoke"
    assert load_config("search", [], SearchConfig).preset == "default"


def test_a_group_of_settings_given_one_value_names_its_settings(capsys):
    assert main(["cost", "arch=mobilenet_v3_small", "latency=none"]) == 2
    err = capsys.readouterr().err
    assert "latency: holds settings (latency." in err and "set one of them" in err
    assert "Traceback" not in err


def test_a_path_under_the_home_folder_is_written_out(monkeypatch, tmp_path):
    from mbnas.config import load_config
    from mbnas.trainer import TrainConfig

    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config("train", ["data=cifar10", "data.root=~/cifar-10-batches-py"], TrainConfig)
    assert cfg.data.root == f"{tmp_path}/cifar-10-batches-py"


def test_help_shows_the_space_s_own_evaluator(capsys):
    assert main(["search", "space=nas_bench_macro", "--help"]) == 0
    out = capsys.readouterr().out
    assert "evaluator=zero_cost" in out and "evaluator.reference_archs=" in out
