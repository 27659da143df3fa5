"""The README's latency-table commands fit together as written: every table a block builds or
has a device measure is accepted by the commands that use it (same space, same classes).

Building a whole space's table takes minutes, so the commands are not run; their settings are
resolved by the commands' own config code, and the tables they would write are described by the
same functions `latency build` and `latency export` use.
"""

import re
import shlex
from pathlib import Path

from omegaconf import OmegaConf

from mbnas.commands import latency
from mbnas.config import compose_config
from mbnas.search import SearchConfig, space_defaults
from mbnas.search.run import search_space

README = Path(__file__).resolve().parent.parent / "README.md"
DEVICE_SCRIPT = "measure_blocks.py"


def latency_section_commands() -> list[list[str]]:
    """The commands of the bash blocks in the README's "Latency tables" section: continued lines
    joined, comments dropped, `a && b` split."""
    text = README.read_text()
    start = text.index("### Latency tables")
    section = text[start:text.index("\n## ", start)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            for part in line.split("#")[0].split("&&"):
                if part.strip():
                    commands.append(shlex.split(part))
    return commands


def mbnas_args(command: list[str]) -> list[str] | None:
    """What follows `python -m mbnas` in ``command`` (None for other commands)."""
    for i in range(len(command) - 2):
        if command[i:i + 3] == ["python", "-m", "mbnas"]:
            return command[i + 3:]
    return None


def option(args: list[str], key: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")), None)


def latency_space(args: list[str]):
    cfg = OmegaConf.to_object(compose_config("latency", [f"action={args[1]}", *args[2:]],
                                             latency.Config))
    return latency.command_space(cfg)


def test_every_table_in_the_readme_is_accepted_where_it_is_used():
    tables, bundles, uses = {}, {}, 0
    for command in latency_section_commands():
        args = mbnas_args(command)
        if args is None:
            script = next((w for w in command if w.endswith(DEVICE_SCRIPT)), None)
            if script is None:
                continue
            bundle = command[command.index(script) + 1]
            if "--out" in command:  # the device measures the bundle into a table
                tables[command[command.index("--out") + 1]] = bundles[bundle]
            else:  # the device checks a table against the bundle it was measured from
                assert tables[command[command.index("--check") + 1]] == bundles[bundle]
                uses += 1
            continue
        if args[:2] in (["latency", "build"], ["latency", "export"]):
            space = latency_space(args)
            written = tables if args[1] == "build" else bundles
            written[option(args, "out")] = (space.name, space.num_classes)
        elif args[0] == "search" and option(args, "latency.table"):
            cfg = OmegaConf.to_object(compose_config("search", space_defaults(args[1:]),
                                                     SearchConfig))
            space = search_space(cfg)
            table = option(args, "latency.table")
            assert tables[table] == (space.name, space.num_classes), (
                f"{table} is built for {tables[table]}, `{shlex.join(args)}` searches "
                f"{(space.name, space.num_classes)}")
            uses += 1
        elif args[:2] == ["latency", "check"]:
            assert option(args, "space") == tables[option(args, "latency.table")][0]
            uses += 1
    assert uses >= 3 and len(tables) >= 2, "the README's latency section lost its examples"


def test_a_check_takes_the_tables_classes_unless_told():
    cfg = latency.Config(action="check", space="proxyless")
    assert latency.command_space(cfg, table_classes=10).num_classes == 10
    assert latency.command_space(cfg).num_classes == 1000
    cfg.num_classes = 7
    assert latency.command_space(cfg, table_classes=10).num_classes == 7
