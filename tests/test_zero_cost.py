import json
import math
import random
import re
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

import mbnas
from mbnas.budget import Budget
from mbnas.config import compose_config
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.evaluators import EvaluationContext, evaluator_config, make_evaluator
from mbnas.evaluators.zero_cost import computing_layers
from mbnas.resources import search_spaces_dir
from mbnas.run_folder import RunFolder
from mbnas.search import SearchConfig, space_defaults
from mbnas.search.config import hydra_value
from mbnas.space import load_space


@pytest.fixture(scope="module")
def space():
    return load_space("tests/fixtures/tiny_space.yaml").replace(resolution=16)


def zero_cost(space, **settings):
    cfg = evaluator_config({"name": "zero_cost", "features": {"naswot": 1.0}, "batch_size": 8,
                            "reference_archs": 4, **settings})
    context = EvaluationContext(data=DataConfig(resolution=16, synthetic_size=64),
                                device=torch.device("cpu"), seed=0, space=space,
                                budget=Budget())
    return make_evaluator(cfg, context)


def test_scores_are_standardised_repeatable_and_the_reference_is_kept(space, tmp_path):
    evaluator = zero_cost(space, features={"naswot": 1.0, "depth": 0.5, "macs": 0.0})
    run = RunFolder(tmp_path / "run")
    evaluator.prepare(run)
    saved = json.loads((run.path / "zero_cost_reference.json").read_text())
    assert set(saved["reference"]) == {"naswot", "depth"}  # a weight of 0 is off
    arch = space.largest()
    first = evaluator.evaluate(arch)
    assert math.isfinite(first.score) and first.seconds >= 0
    assert evaluator.evaluate(arch).score == pytest.approx(first.score)
    restored = zero_cost(space, features={"naswot": 1.0, "depth": 0.5, "macs": 0.0})
    restored.restore(run)
    assert restored.evaluate(arch).score == pytest.approx(first.score)


def test_architecture_features_alone_read_no_images(space, tmp_path):
    assert zero_cost(space).cfg.reads_data and zero_cost(space).cfg.builds_networks
    missing = DataConfig(name="cifar10", root=str(tmp_path / "absent"), resolution=16)
    context = EvaluationContext(data=missing, device=torch.device("cpu"), seed=0, space=space,
                                budget=Budget())
    cfg = evaluator_config({"name": "zero_cost",
                            "features": {"macs": 1.0, "activations": 1.0, "swap": 0.0},
                            "reference_archs": 4})
    assert not cfg.reads_data and not cfg.builds_networks
    evaluator = make_evaluator(cfg, context)  # would fail on the missing folder if it read it
    evaluator.prepare(RunFolder(tmp_path / "run"))
    assert evaluator.evaluate(space.largest()).score > evaluator.evaluate(space.smallest()).score


def test_depth_counts_the_layers_that_are_not_skip():
    space = load_space("nas_bench_macro")
    evaluator = zero_cost(space, features={"depth": 1.0})
    assert evaluator.features(space.smallest()) == {"depth": 0.0}
    assert evaluator.features(space.largest()) == {"depth": 8.0}


def test_depth_stops_counting_at_its_cap():
    space = load_space("nas_bench_macro")  # 8 layers, of which 6 are 3/4
    capped = zero_cost(space, features={"depth": 1.0}, depth_cap=0.75)
    assert capped.features(space.largest()) == {"depth": 6.0}
    rng = random.Random(0)
    members = [space.sample_random(rng) for _ in range(40)]
    depths = [computing_layers(arch) for arch in members]
    assert min(depths) < 6 < max(depths)
    assert [capped.features(arch)["depth"] for arch in members] == [min(d, 6.0) for d in depths]


@pytest.mark.parametrize("settings, message", [
    ({"features": {"accuracy": 1.0}}, r"evaluator\.features\.accuracy: is not a feature"),
    ({"features": {"naswot": 0}}, r"evaluator\.features: no feature has a weight"),
    ({"batch_size": 1}, r"evaluator\.batch_size"),
    ({"depth_cap": 0.0}, r"evaluator\.depth_cap: 0\.0 is out of range"),
    ({"depth_cap": 1.5}, r"evaluator\.depth_cap: 1\.5 is out of range"),
])
def test_bad_settings_name_the_key(space, settings, message):
    with pytest.raises(ConfigError, match=message):
        zero_cost(space, **settings)


def test_a_restored_run_refuses_features_it_has_no_reference_for(space, tmp_path):
    run = RunFolder(tmp_path / "run")
    zero_cost(space, features={"depth": 1.0}).prepare(run)
    with pytest.raises(ConfigError, match="has no reference for naswot"):
        zero_cost(space, features={"naswot": 1.0}).restore(run)


def test_a_space_may_name_the_evaluator_its_searches_use():
    assert mbnas.load_space("nas_bench_macro").evaluator == "zero_cost"
    assert space_defaults(["space=nas_bench_macro"]) == ["evaluator=zero_cost",
                                                         "space=nas_bench_macro"]
    assert space_defaults(["space=nas_bench_macro", "evaluator=supernet"]) == [
        "space=nas_bench_macro", "evaluator=supernet"]
    assert space_defaults(["+budget.macs=300M"]) == ["+budget.macs=300M"]


def composed_evaluator(*overrides):
    return compose_config("search", space_defaults(list(overrides)), SearchConfig).evaluator


def test_a_space_may_set_its_evaluator_and_the_user_adds_on_top():
    cifar = mbnas.load_space("cifar")
    own = {"macs": 1.0, "activations": 1.0}
    assert (cifar.evaluator, dict(cifar.evaluator_settings)) == ("counted", {"features": own})
    # The space's mapping replaces the conf's weights whole, whether or not evaluator= is given.
    assert dict(composed_evaluator("space=cifar").features) == own
    assert dict(composed_evaluator("space=cifar", "evaluator=counted").features) == own
    assert dict(composed_evaluator("space=cifar", "+evaluator.features.depth=2",
                                   "evaluator.reference_archs=8").features) == {**own, "depth": 2}
    # Another evaluator takes its own conf's settings, not the space's.
    assert "naswot" not in composed_evaluator("space=cifar", "evaluator=zero_cost").features
    assert composed_evaluator("space=cifar", "evaluator=supernet").name == "supernet"


def test_a_weight_not_yet_in_the_mapping_is_added_with_a_plus():
    with pytest.raises(ConfigError, match=r"evaluator\.features\.macs: is not in the mapping "
                       r"yet.*add it with a leading \+: \+evaluator\.features\.macs=1"):
        composed_evaluator("space=nas_bench_macro", "evaluator.features.macs=1")


@pytest.mark.parametrize("value", [
    "a b,c", "it's", "null", "1", "back\\slash", "ends\\", "", None, True, 1e-05, 3,
    {"weights": {"x": 1.5}, "names": ["a,b", "c d"]}])
def test_space_settings_reach_hydra_as_they_were_written(value):
    parsed = OverridesParser.create().parse_override(f"evaluator.k={hydra_value(value)}")
    assert parsed.value() == value


@pytest.mark.parametrize(("value", "message"), [
    ("{name: zero_cost, featurs: {macs: 1}}", r"evaluator\.featurs: unknown option \(did you "
                                               r"mean 'evaluator\.features'\?\)"),
    ("{name: zero_cost, batch_size: -3}", r"evaluator\.batch_size: -3 is not allowed"),
    ("{name: zero_cost, features: {nope: 1}}", r"evaluator\.features\.nope: is not a feature"),
    ("{name: nonesuch}", r"evaluator: unknown choice 'nonesuch'"),
    ("nonesuch", r"evaluator: unknown choice 'nonesuch'"),
])
def test_a_mistake_in_a_spaces_evaluator_settings_names_the_space_file(tmp_path, value,
                                                                       message):
    text = (Path(search_spaces_dir()) / "cifar.yaml").read_text()
    path = tmp_path / "mine.yaml"
    path.write_text(re.sub(r"(?m)^evaluator:.*$", f"evaluator: {value}", text))
    with pytest.raises(ConfigError, match=rf"^space {re.escape(str(path))}: {message}; "
                       r"correct the evaluator: entry of that space's YAML file \(.+\)$"):
        space_defaults([f"space={path}"])


@pytest.mark.parametrize("value", ["[zero_cost]", "{features: {macs: 1}}"])
def test_a_space_evaluator_without_a_name_is_refused(tmp_path, value):
    text = (Path(search_spaces_dir()) / "cifar.yaml").read_text()
    path = tmp_path / "mine.yaml"
    path.write_text(re.sub(r"(?m)^evaluator:.*$", f"evaluator: {value}", text))
    with pytest.raises(ConfigError, match=r"mine\.yaml.*evaluator: .* names no evaluator"):
        mbnas.load_space(str(path))
