import json
import random
from pathlib import Path

import pytest

import mbnas
from mbnas.__main__ import main
from mbnas.cost.latency import measure
from mbnas.cost.latency_table import LatencyTable, arch_entries, device_key
from mbnas.space import load_space

TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MBNAS_CACHE", str(tmp_path))
    return tmp_path


def test_measured_latency_is_a_positive_median():
    latency = measure("mobilenet_v3_small", threads=1, warmup=1, repeats=3)
    assert latency.median_ms > 0 and latency.repeats == 3 and latency.threads == 1


def test_entries_cover_stem_every_block_and_head():
    arch = mbnas.load_arch("mobilenet_v2")
    keys = [key for key, _, _ in arch_entries(arch)]
    assert keys[0].startswith("stem|") and keys[-1].startswith("head|")
    assert len(keys) == arch.total_blocks + 2
    assert "|r112" in keys[1]  # the first block sees the stem's 112x112 output


def test_table_is_cached_per_device_key_and_grows_lazily(cache):
    space = load_space(TINY_SPACE)
    table = LatencyTable.for_space(space.name, space.resolution, threads=1, repeats=2, warmup=1)
    assert table.path.parent == cache / "latency" and space.name in table.path.name
    arch = space.sample_random(random.Random(0))
    first = table.predict(arch)
    assert first > 0 and table.path.is_file()
    stored = json.loads(table.path.read_text())
    assert stored["meta"]["threads"] == "1" and stored["meta"]["torch"] == device_key(1)["torch"]
    again = LatencyTable.for_space(space.name, space.resolution, threads=1)
    assert again.missing([arch]) == [] and again.predict(arch) == pytest.approx(first)


def test_calibration_fits_a_line_through_measured_members(cache):
    space = load_space(TINY_SPACE)
    table = LatencyTable.for_space(space.name, space.resolution, repeats=2, warmup=1)
    rng = random.Random(1)
    members = [space.sample_random(rng) for _ in range(4)]
    # Pretend whole networks take 2 ms more and twice as long as their summed blocks.
    offset, scale = table.calibrate((a, 2.0 + 2.0 * table.block_sum(a)) for a in members)
    assert scale == pytest.approx(2.0) and offset == pytest.approx(2.0)
    assert table.predict(members[0]) == pytest.approx(2.0 + 2.0 * table.block_sum(members[0]))


def test_latency_command_reports_the_tables_error(cache, capsys):
    assert main(["latency", f"space={TINY_SPACE}", "members=2", "calibrate=3", "check=2",
                 "repeats=2", "warmup=1", "format=json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["space"] == "tiny" and len(result["checks"]) == 2
    assert result["median_error"] >= 0 and Path(result["table"]).is_file()
