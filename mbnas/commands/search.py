"""``python -m mbnas search +budget.macs=300M``: search a space under hard budgets."""

from __future__ import annotations

from mbnas.search import SearchConfig, run_search

Config = SearchConfig


def run(cfg: SearchConfig) -> None:
    run_search(cfg)
