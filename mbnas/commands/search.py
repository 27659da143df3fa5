"""``python -m mbnas search +budget.macs=300M``: search a space under hard budgets (under
``torchrun``, with evaluator=scratch or supernet: every candidate trained data-parallel)."""

from __future__ import annotations

from mbnas.search import SearchConfig, run_search, space_defaults

Config = SearchConfig


def defaults(overrides: list[str]) -> list[str]:
    """The overrides plus the space's own evaluator when the command names none."""
    return space_defaults(overrides)


def run(cfg: SearchConfig) -> None:
    run_search(cfg)
