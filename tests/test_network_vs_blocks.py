"""benchmarks/network_vs_blocks.py: a member's parameters and timings, its band and where its
whole time lies between its blocks' warm and flushed sums."""

import importlib.util
import random
from pathlib import Path

import pytest
import torch

from mbnas.cost.block_set import arch_entries
from mbnas.cost.runtimes import RuntimeSettings
from mbnas.nn import build
from mbnas.space import load_space

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "network_vs_blocks.py"
_spec = importlib.util.spec_from_file_location("network_vs_blocks", SCRIPT)
network_vs_blocks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(network_vs_blocks)


@pytest.mark.parametrize(("mparams", "expected"), [
    (0.0, "0-1 M"), (0.99, "0-1 M"), (1.0, "1-2 M"), (2.5, "2-3 M"), (3.0, ">= 3 M"),
    (40.0, ">= 3 M")])
def test_band_bounds_are_closed_below(mparams: float, expected: str) -> None:
    assert network_vs_blocks.band(mparams) == expected


def test_position_between_warm_and_flushed_sums() -> None:
    row = {"warm": 2.0, "flushed": 4.0}
    assert network_vs_blocks.position({**row, "whole": 2.0}) == 0.0
    assert network_vs_blocks.position({**row, "whole": 3.0}) == 0.5
    assert network_vs_blocks.position({**row, "whole": 1.0}) == -0.5
    assert network_vs_blocks.position({"warm": 2.0, "flushed": 2.0, "whole": 3.0}) == 0.0


def test_member_row_counts_the_members_parameters() -> None:
    space = load_space("nas_bench_macro")
    arch = space.sample_random(random.Random(0))
    flush = torch.zeros(1024)
    row = network_vs_blocks.member_row(arch, RuntimeSettings(), repeats=2,
                                       befores={"flushed": lambda: flush.add_(1.0),
                                                "filled": lambda: None})
    expected = sum(p.numel() for p in build(arch).parameters()) / 1e6
    assert row["mparams"] == pytest.approx(expected)
    assert set(row) == {"mparams", "whole", "warm", "flushed", "filled"}
    assert all(row[key] > 0 for key in ("whole", "warm", "flushed", "filled"))
    assert flush[0] == 2 * len(arch_entries(arch))  # once before each timed call of each block
