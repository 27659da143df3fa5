"""The "next:" block commands end with."""

from pathlib import Path

from mbnas.next_steps import next_steps
from mbnas.run_folder import RunFolder
from mbnas.search.summary import next_commands


def test_comments_line_up_after_the_longest_command():
    lines = next_steps([("short", "one"), ("a longer command", "two"), ("bare", "")])
    assert lines == ["  next:",
                     "    short              # one",
                     "    a longer command   # two",
                     "    bare"]


def test_a_search_suggests_the_quick_tours_commands_for_its_folder():
    folder = RunFolder(Path("runs/demo"))
    lines = next_steps(next_commands(folder, "sqlite:///runs/demo/study.db"))
    assert lines[1].startswith("    tensorboard --logdir runs/demo ")
    assert len({line.index("#") for line in lines[1:]}) == 1
    assert any(f"cost arch={folder.best_yaml}" in line for line in lines)
