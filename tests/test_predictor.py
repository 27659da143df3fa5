import json
import math

import pytest
import torch

from mbnas.budget import Budget
from mbnas.data import DataConfig
from mbnas.errors import ConfigError
from mbnas.evaluators import EvaluationContext, evaluator_config, make_evaluator
from mbnas.predictor import RidgePredictor, encode
from mbnas.run_folder import RunFolder
from mbnas.space import load_space


def test_one_hot_encoding_ignores_choices_never_seen():
    rows = encode([{"a": 1, "b": "x"}, {"a": 2, "c": 5}], ["a=1", "a=2", "b=x"])
    assert rows.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_ridge_recovers_additive_choice_effects_and_round_trips():
    members = [{"l1": a, "l2": b} for a in "xyz" for b in "pq"]
    effect = {"x": 0.0, "y": 1.0, "z": 2.0, "p": 0.0, "q": 0.5}
    labels = [effect[m["l1"]] + effect[m["l2"]] for m in members]
    predictor = RidgePredictor.fit(members, labels, penalty=1e-6)
    assert predictor.predict(members) == pytest.approx(labels, abs=1e-4)
    again = RidgePredictor.from_dict(json.loads(json.dumps(predictor.to_dict())))
    assert again.predict(members) == pytest.approx(labels, abs=1e-4)


def predictor_evaluator(space, **settings):
    cfg = evaluator_config({"name": "predictor", "warmup_steps": 2, "label_archs": 5,
                            "label_images": 16, "batch_size": 8, "bn_images": 16, **settings})
    context = EvaluationContext(data=DataConfig(resolution=16, synthetic_size=64, batch_size=8),
                                device=torch.device("cpu"), seed=0, space=space,
                                budget=Budget())
    return make_evaluator(cfg, context)


@pytest.mark.slow
def test_predictor_warms_up_labels_fits_and_scores_repeatably(tmp_path):
    space = load_space("nas_bench_macro").replace(resolution=16)
    evaluator = predictor_evaluator(space, proxy_features={"depth": 1.0})
    run = RunFolder(tmp_path / "run")
    evaluator.prepare(run)
    saved = json.loads((run.path / "predictor.json").read_text())
    assert len(saved["labels"]) == 5 and all(math.isfinite(x) for x in saved["labels"])
    arch = space.largest()
    evaluation = evaluator.evaluate(arch)
    assert set(evaluation.features) == {"prediction", "naswot", "depth"}
    assert math.isfinite(evaluation.score)
    restored = predictor_evaluator(space, proxy_features={"depth": 1.0})
    restored.restore(run)
    assert restored.evaluate(arch).score == pytest.approx(evaluation.score)
    with pytest.raises(ConfigError, match="no reference for swap"):
        predictor_evaluator(space, proxy_features={"swap": 1.0}).restore(run)
    model = restored.model_for(arch)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_bad_predictor_settings_name_the_key():
    space = load_space("nas_bench_macro")
    with pytest.raises(ConfigError, match="evaluator.rule"):
        predictor_evaluator(space, rule="greedy")
    with pytest.raises(ConfigError, match="evaluator.penalty"):
        predictor_evaluator(space, penalty=0.0)
    with pytest.raises(ConfigError, match="optim.lr"):
        predictor_evaluator(space, optim={"lr": 0.0})
    with pytest.raises(ConfigError, match="evaluator.proxy_features.bogus"):
        predictor_evaluator(space, proxy_features={"bogus": 1.0})
    with pytest.raises(ConfigError, match="evaluator.proxy_depth_cap"):
        predictor_evaluator(space, proxy_depth_cap=0.0)


def test_predictor_proxies_cap_depth_as_zero_cost_does():
    space = load_space("nas_bench_macro")  # 8 layers, of which 6 are 3/4
    evaluator = predictor_evaluator(space, proxy_features={"depth": 1.0}, proxy_depth_cap=0.75)
    assert evaluator.proxy.features(space.largest())["depth"] == 6.0
    uncapped = predictor_evaluator(space, proxy_features={"depth": 1.0})
    assert uncapped.proxy.features(space.largest())["depth"] == 8.0
