"""``python -m mbnas warmup <search options>``: only the supernet warm-up of a search, e.g. under
``torchrun --nproc_per_node=N``, before search workers that then only score candidates."""

from __future__ import annotations

from mbnas.search import SearchConfig, space_defaults
from mbnas.search.warmup import warm_up_search

Config = SearchConfig


def defaults(overrides: list[str]) -> list[str]:
    """The overrides plus the space's own evaluator when the command names none (as `search`)."""
    return space_defaults(overrides)


def run(cfg: SearchConfig) -> None:
    outcome = warm_up_search(cfg)
    if not outcome.main:
        return
    print(f"supernet warmed up: {outcome.checkpoint} ({outcome.processes} process(es), "
          f"{outcome.seconds:.0f} s)")
    print("  next: start the search workers with the same options: python -m mbnas search ...; "
          "they find the warm-up done and only score candidates")
