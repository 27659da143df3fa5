import importlib.util
import random
from pathlib import Path

import pytest
import torch
import yaml
from pg_server import postgres_server, server_bin

from mbnas.arch import ACTIVATIONS, BLOCK_TYPES, SE_STYLES, ArchSpec
from mbnas.space import SearchSpace, space_from_dict

torch.set_num_threads(1)
SUPERNET_SPACE = Path(__file__).parent / "fixtures" / "supernet_space.yaml"


def supernet_space(dropout: float) -> SearchSpace:
    """The supernet tests' tiny space (16 px, 4 classes) with the classifier ``dropout`` a test
    wants: 0 where weights are compared with a reference, some where dropout must be exercised."""
    data = {**yaml.safe_load(SUPERNET_SPACE.read_text()), "dropout": dropout}
    return space_from_dict(data, source=str(SUPERNET_SPACE))


def random_arch(seed: int, resolution: int | None = None) -> ArchSpec:
    """A random but valid ArchSpec mixing every block type, per-stage and per-block values."""
    rng = random.Random(seed)
    stages = []
    for _ in range(rng.randint(1, 4)):
        depth = rng.randint(1, 3)

        def per_block(choices, depth=depth):
            if rng.random() < 0.4:
                return [rng.choice(choices) for _ in range(depth)]
            return rng.choice(choices)

        row = {"block": per_block(BLOCK_TYPES), "kernel": per_block([1, 3, 5, 7]),
               "out": rng.choice([8, 12, 16, 24, 40]), "depth": depth,
               "stride": rng.choice([1, 2]), "se": per_block([0.0, 0.25]),
               "act": per_block(ACTIVATIONS)}
        if rng.random() < 0.3:
            row["mid"] = per_block([8, 16, 24, 48])
        else:
            row["expand"] = per_block([1, 2.5, 3, 4, 6])
        stages.append(row)
    head = {"channels": rng.choice([32, 64]), "act": rng.choice(ACTIVATIONS)}
    if rng.random() < 0.5:
        head["hidden"] = rng.choice([24, 48])
    return ArchSpec.from_dict({
        "name": f"random{seed}", "resolution": resolution or rng.choice([32, 40, 48, 57]),
        "num_classes": rng.choice([10, 100]), "se_style": rng.choice(SE_STYLES),
        "stem": {"out": rng.choice([8, 16]), "stride": rng.choice([1, 2]),
                 "act": rng.choice(ACTIVATIONS)},
        "stages": stages, "head": head,
    })


@pytest.fixture
def tmp_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of the tests' own on 127.0.0.1 (see tests/pg_server.py); skipped with
    the reason when the server programs or the driver are missing."""
    bin_dir = server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl): apt-get install postgresql")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip('no PostgreSQL driver: pip install -c constraints.txt -e ".[dev,postgres]"')
    with postgres_server(bin_dir) as server:
        yield server
