import os
import random
import subprocess
import sys

import pytest
import torch
import yaml

import mbnas
from mbnas.budget import Budget
from mbnas.config import compose_config
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.evaluators import EvaluationContext, evaluator_config, make_evaluator
from mbnas.run_folder import RunFolder
from mbnas.search import SearchConfig, space_defaults
from mbnas.space import load_space

FEATURES = {"macs": 1.0, "activations": 0.5, "depth": 0.25}


def evaluator(name, space, tmp_path, **settings):
    cfg = evaluator_config({"name": name, "features": FEATURES, "reference_archs": 6, **settings})
    # A missing folder: any attempt to read images fails.
    data = DataConfig(name="cifar10", root=str(tmp_path / "absent"), resolution=32)
    context = EvaluationContext(data=data, device=torch.device("cpu"), seed=3, space=space,
                                budget=Budget(macs=20e6))
    built = make_evaluator(cfg, context)
    built.prepare(RunFolder(tmp_path / name))
    return built


def test_scores_as_zero_cost_does_with_the_same_features_without_building(tmp_path,
                                                                        monkeypatch):
    space = load_space("cifar")
    zero_cost = evaluator("zero_cost", space, tmp_path)

    def no_network(arch):
        raise AssertionError("evaluator=counted built a network")

    monkeypatch.setattr("mbnas.evaluators.zero_cost.build", no_network)
    counted = evaluator("counted", space, tmp_path)
    assert not counted.cfg.reads_data and not counted.cfg.builds_networks
    for arch in (space.smallest(), space.sample_random(random.Random(1))):
        mine, theirs = counted.evaluate(arch), zero_cost.evaluate(arch)
        assert mine.score == pytest.approx(theirs.score)
        assert set(mine.features) == set(FEATURES)


@pytest.mark.parametrize(("settings", "message"), [
    ({"features": {"macs": 1.0, "naswot": 1.0}},
     r"evaluator\.features\.naswot: is a proxy, which runs the network.*choose from depth, "
     r"macs, params, activations \(for proxies: evaluator=zero_cost\)"),
    ({"features": {"nope": 1.0}}, r"evaluator\.features\.nope: is not a feature"),
    ({"features": {"macs": 0.0}}, r"evaluator\.features: no feature has a weight"),
    ({"batch_size": 8}, r"evaluator\.batch_size"),
])
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        evaluator_config({"name": "counted", "features": {"macs": 1.0}, **settings})


def test_a_proxy_with_weight_zero_is_not_a_mistake():
    cfg = evaluator_config({"name": "counted", "features": {"macs": 1.0, "naswot": 0.0}})
    assert cfg.used == {"macs": 1.0}


def test_the_cifar_space_searches_1000_counted_candidates_by_default():
    assert mbnas.load_space("cifar").evaluator == "counted"
    default = compose_config("search", space_defaults(["space=cifar"]), SearchConfig)
    assert default.evaluator["name"] == "counted" and default.n_trials == 1000
    smoke = compose_config("search", space_defaults(["space=cifar", "preset=smoke"]), SearchConfig)
    assert smoke.n_trials == 6
    mine = compose_config("search", space_defaults(["space=cifar", "n_trials=50"]), SearchConfig)
    assert mine.n_trials == 50


def test_a_cifar_search_counts_its_candidates_on_synthetic_data_without_warning(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mbnas", "search", "space=cifar", "+budget.macs=20M",
         "preset=smoke", "latency=none", "name=counted"],
        cwd=tmp_path, env={**os.environ, "MBNAS_CACHE": str(tmp_path / "cache")},
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "evaluator  counted (features: macs 1, activations 1)" in done.stdout
    # No image is read, so synthetic data does not make the scores meaningless.
    assert "(synthetic data)" not in done.stdout
    run = tmp_path / "runs" / "counted"
    assert yaml.safe_load((run / "config.yaml").read_text())["evaluator"]["name"] == "counted"
    best = mbnas.load_arch(run / "best.yaml")
    cost = mbnas.count(best)
    assert cost.macs <= 20e6
    # The trial's costs head the exported file, activations (the score's feature) among them.
    assert f"# activations: {cost.activations}\n" in (run / "best.yaml").read_text()
    assert not (run / "best.pt").exists()  # no weights: counted trains nothing
