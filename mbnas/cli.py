"""The command line: ``python -m mbnas <command> [Hydra overrides]`` parsed, composed and run.

:mod:`mbnas.__main__` calls :func:`main` once it can catch a Ctrl-C (exit code 130)."""

from __future__ import annotations

import importlib
import sys

from omegaconf import OmegaConf

from mbnas.cli_help import command_help
from mbnas.config import compose_config, compose_raw, did_you_mean
from mbnas.errors import MbnasError

# Each command module defines ``Config`` (its schema) and ``run(cfg) -> int | None``, which gets
# an instance of ``Config``: the typed settings, checked once here.
COMMANDS = {
    "search": ("mbnas.commands.search", "search a space under MAC / latency / parameter budgets"),
    "warmup": ("mbnas.commands.warmup", "only a search's supernet warm-up (e.g. under torchrun)"),
    "report": ("mbnas.commands.report", "top trials and Pareto set of a search run"),
    "export": ("mbnas.commands.export", "write a run's best architecture, weights, ONNX"),
    "latency": ("mbnas.commands.latency", "build / check / export a space's latency table"),
    "cost": ("mbnas.commands.cost", "MACs, parameters and CPU latency of an architecture"),
    "train": ("mbnas.commands.train", "train an architecture (from scratch or search weights)"),
    "evaluate": ("mbnas.commands.evaluate", "top-1 accuracy of a trained run on a data split"),
}

USAGE = """usage: python -m mbnas <command> [key=value ...] [--cfg] [-h]

Commands:
{commands}

`python -m mbnas <command> --help` lists a command's options with their defaults.
Options are Hydra overrides of conf/<command>.yaml, e.g. `arch=efficientnet_b0 width=0.75`;
add a key that the config leaves out with `+`, e.g. `+budget.macs=300M`.
`--cfg` prints the resolved config and exits.

Start here: python -m mbnas search +budget.macs=300M preset=smoke   (a trial run, ~2 min)"""
HELP_FLAGS = ("-h", "--help")
MEMORY_MODULE = "mbnas.cost.device_script"  # keep_freed_memory: applied before every command


def usage() -> str:
    """The list of commands."""
    lines = "\n".join(f"  {name:<10} {help}" for name, (_, help) in COMMANDS.items())
    return USAGE.format(commands=lines)


def print_command_help(command: str, overrides: list[str]) -> int:
    """Print ``command``'s options as composed with ``overrides`` (or its defaults)."""
    module = importlib.import_module(COMMANDS[command][0])
    try:
        cfg, choices = compose_raw(command, getattr(module, "defaults", list)(overrides))
    except Exception:  # noqa: BLE001 - help must print even when the overrides are broken
        cfg, choices = compose_raw(command, [])
    print(command_help(command, COMMANDS[command][1], cfg, choices))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input prints one message and returns non-zero, no traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in (*HELP_FLAGS, "help"):
        if len(argv) > 1 and argv[1] in COMMANDS:  # python -m mbnas help search
            return print_command_help(argv[1], [])
        print(usage())
        return 0 if argv else 2
    command = argv[0]
    overrides = [a for a in argv[1:] if a not in ("--cfg", *HELP_FLAGS)]
    if command not in COMMANDS:
        print(f"mbnas: unknown command {command!r}{did_you_mean(command, list(COMMANDS))}"
              f"\n\n{usage()}", file=sys.stderr)
        return 2
    if any(a in HELP_FLAGS for a in argv[1:]):
        return print_command_help(command, overrides)
    flags = [a for a in argv[1:] if a.startswith("-") and a != "--cfg"]
    if flags:
        print(f"mbnas {command}: error: unknown flag {flags[0]!r}"
              f"{did_you_mean(flags[0], ['--cfg', '--help'])}; options are key=value "
              f"(see `python -m mbnas {command} --help`)", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if overrides and "=" not in overrides[0] and hasattr(module, "ACTIONS"):
        overrides = [f"action={overrides[0]}", *overrides[1:]]  # `latency build ...`
    try:
        # A command may add defaults that depend on other options (search: the space's evaluator).
        overrides = getattr(module, "defaults", list)(overrides)
        cfg = compose_config(command, overrides, module.Config)
        if "--cfg" in argv[1:]:
            print(OmegaConf.to_yaml(cfg), end="")
            return 0
        # Every command trains or times networks: with freed memory kept, each step stops
        # faulting its activations in anew (benchmarks/allocator.py: CPU training steps 0.86x
        # and 0.92x the time, peak memory +2-4%; latency timings steady, BENCHMARKS.md).
        # Loaded here, like the command, so that usage and unknown commands stay quick.
        importlib.import_module(MEMORY_MODULE).keep_freed_memory()
        return module.run(OmegaConf.to_object(cfg)) or 0
    except MbnasError as error:
        print(f"mbnas {command}: error: {error}", file=sys.stderr)
        return 2
