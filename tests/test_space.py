import dataclasses
import random

import optuna
import pytest
import yaml

import mbnas
from mbnas.arch import ArchSpec
from mbnas.errors import ConfigError
from mbnas.space import available_spaces, load_space, space_from_dict

SHIPPED = ["cifar", "default", "efficientnet_v2", "mobilenet_v3"]

TINY = {
    "name": "tiny", "resolution": 32, "num_classes": 10, "per": "block",
    "stem": {"out": [8, 16], "stride": 1},
    "stages": [
        {"block": ["mbconv", "fused"], "kernel": [3, 5], "expand": 1, "depth": [1, 2],
         "out": 16, "stride": 1},
        {"block": "mbconv", "kernel": 3, "expand": [1, 4], "se": [0, 0.25], "depth": 1,
         "out": [16, 24], "stride": 2},
    ],
    "head": {"channels": 32},
}


def ask(study: optuna.Study, space):
    trial = study.ask()
    return trial, space.sample(trial)


def test_shipped_spaces_load_and_default_is_default():
    assert set(SHIPPED) <= set(available_spaces())
    assert load_space().name == "default"
    assert load_space(None) == load_space("default")
    for name in SHIPPED:
        assert load_space(name).name == name


def test_cifar_space_is_for_small_images():
    space = load_space("cifar")
    assert (space.resolution, space.num_classes) == (32, 10)
    def strided(space):
        return [space.stem_stride, *(stage.stride for stage in space.stages)].count(2)

    assert strided(space) < strided(load_space("default"))


def test_unknown_space_lists_shipped_ones():
    with pytest.raises(ConfigError, match="unknown search space 'nope'.*cifar, default"):
        load_space("nope")


@pytest.mark.parametrize("change, match", [
    (lambda d: d["stages"][0].update(kernel=[3, 4]), r"stages\[0\]\.kernel\[1\]: 4 is not allowed"),
    (lambda d: d["stages"][0].update(block=["mbconv", "ds"]),
     r"block\[1\]: 'ds' is not allowed; choose one of mbconv, fused"),
    (lambda d: d["stages"][1].update(colour=1), r"stages\[1\]\.colour: unknown key"),
    (lambda d: d["stages"][1].update(depth=[]), r"depth: empty list"),
    (lambda d: d["stages"][1].update(out=[16, 16]), r"out: repeated choices"),
    (lambda d: d["stages"][1].pop("expand"), r"stages\[1\]\.expand: missing required key"),
    (lambda d: d.update(per="cell"),
     r"per: 'cell' is not allowed; choose one of block, stage, layer"),
    (lambda d: d["head"].update(channels=0), r"head\.channels: 0 is not allowed"),
    (lambda d: d["head"].update(hidden=[-1, 24]), r"head\.hidden\[0\]: -1 is not allowed"),
])
def test_validation_names_file_key_value_and_choices(tmp_path, change, match):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=match) as error:
        load_space(path)
    assert "bad.yaml" in str(error.value)


def test_per_block_names_follow_sampled_depth():
    space = load_space("mobilenet_v3")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial, arch = ask(study, space)
        params = trial.params
        for index, stage in enumerate(arch.stages, start=1):
            sampled_blocks = {name.split(".")[1] for name in params
                              if name.startswith(f"stage{index}.block")}
            if len(space.stages[index - 1].kernel) > 1:
                assert sampled_blocks == {f"block{j}" for j in range(1, stage.depth + 1)}
        assert "stage2.block1.kernel" in params and "stage2.depth" in params
        assert "stage1.depth" not in params            # a single choice is never suggested
        assert space.contains(arch)


def test_per_stage_names():
    space = load_space("efficientnet_v2")
    trial, arch = ask(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)), space)
    assert {"stage4.block", "stage4.kernel", "stage4.expand", "stage5.depth"} <= set(trial.params)
    assert not any(".block1." in name for name in trial.params)
    for stage in arch.stages:
        assert not isinstance(stage.kernel, tuple)


@pytest.mark.parametrize("name", SHIPPED)
def test_choices_replay_the_trial_and_reenqueue(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    trial, arch = ask(study, space)
    assert space.choices(arch) == trial.params
    study.enqueue_trial(space.choices(arch))
    assert ask(study, space)[1] == arch
    # A round trip through the export format keeps membership.
    again = ArchSpec.from_dict(yaml.safe_load(arch.to_yaml()))
    assert space.choices(again) == trial.params


def test_a_hidden_head_layer_may_be_chosen_or_left_out():
    space = space_from_dict({**TINY, "head": {"channels": 32, "hidden": [0, 24]}})
    assert space.head_hidden == (None, 24)
    assert (space.smallest().head.hidden, space.largest().head.hidden) == (None, 24)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial, arch = ask(study, space)
        seen.add(arch.head.hidden)
        again = ArchSpec.from_dict(yaml.safe_load(arch.to_yaml()))
        assert again == arch and space.choices(again) == trial.params
    assert seen == {None, 24}
    fixed = space.replace(head_hidden=(24, 48))
    with pytest.raises(ConfigError, match="head.hidden: 0 is not a choice .*allowed: 24, 48"):
        fixed.choices(space.smallest())
    assert mbnas.count(space.largest()).params > mbnas.count(
        space.largest().replace(head=space.smallest().head)).params


def test_contains_rejects_non_members():
    space = load_space("mobilenet_v3")
    assert not space.contains(mbnas.load_arch("mobilenet_v3_large"))
    arch = space.sample_random(random.Random(0))
    stage = dataclasses.replace(arch.stages[1], kernel=(9,) * arch.stages[1].depth)
    wrong = arch.replace(stages=(arch.stages[0], stage, *arch.stages[2:]))
    assert not space.contains(wrong)
    with pytest.raises(ConfigError, match=r"stage2\.block1\.kernel: 9 is not a choice"):
        space.choices(wrong)
    assert not space.contains(arch.replace(num_classes=10))
    assert not space.contains(arch.replace(stages=arch.stages[:-1]))


@pytest.mark.parametrize("name", SHIPPED)
def test_smallest_and_largest_bound_the_costs(name):
    space = load_space(name)
    small, large = mbnas.count(space.smallest()).macs, mbnas.count(space.largest()).macs
    assert space.contains(space.smallest()) and space.contains(space.largest())
    rng = random.Random(3)
    for _ in range(30):
        assert small <= mbnas.count(space.sample_random(rng)).macs <= large


def test_default_space_spans_the_300m_budget():
    space = load_space()
    assert mbnas.count(space.smallest()).macs < 150e6
    assert mbnas.count(space.largest()).macs > 600e6
    for stage in space.stages:
        assert set(stage.block) == {"mbconv", "fused"}


def test_size_counts_distinct_members():
    space = space_from_dict(TINY)
    # stem 2 · stage1 (2 types · (2 + 2²) kernels) · stage2 (2 widths · 2 expand · 2 se) · head 1
    assert space.size == 2 * (2 * 6) * 8
    rng = random.Random(0)
    seen = {tuple(sorted(space.choices(space.sample_random(rng)).items())) for _ in range(3000)}
    assert len(seen) == space.size
    per_stage = space.replace(per="stage")
    assert per_stage.size == 2 * (2 * 2 * 2) * 8
    assert load_space().size > 10 ** 20


def test_proxyless_space_is_built_from_op_lists_and_holds_mobilenet_v2():
    space = load_space("proxyless")
    assert space.contains(mbnas.load_arch("mobilenet_v2"))
    assert space.smallest().stages[1].block == "skip"
    assert space.choices(mbnas.load_arch("mobilenet_v2"))["stage2.block1.op"] == \
        "mbconv_k3_e6_relu6"


def test_a_neighbour_changes_one_decision_and_draws_only_the_layers_it_adds():
    space = load_space("tests/fixtures/tiny_space.yaml")
    arch = space.smallest()  # depth 1 in both stages
    before = space.choices(arch)
    neighbours = [space.choices(n) for n in space.neighbours(arch, random.Random(0))]
    # One neighbour for every other option of every decision (kernel 3 -> 5, depth 1 -> 2, ...).
    assert len(neighbours) == sum(len(o) - 1 for o in (
        (8, 16), (64, 128), *[options for stage in space.stages for options in (
            stage.block, stage.depth, stage.out, stage.kernel, stage.expand, stage.se,
            stage.act)]))
    for after in neighbours:
        changed = {k for k in before if after[k] != before[k]}
        assert len(changed) == 1, changed
        (name,) = changed
        added = set(after) - set(before)
        if name.endswith(".depth"):  # the deeper stage's new layer, and nothing else
            stage = name.split(".")[0]
            assert added == {f"{stage}.block2.{key}" for key in ("kernel", "expand", "se", "act")}
        else:
            assert not added
    assert {"stage1.block1.kernel", "stage2.depth"} <= {
        k for after in neighbours for k in before if after[k] != before[k]}


@pytest.mark.parametrize("name", ["nas_bench_macro", "cifar"])
def test_a_fair_step_trains_every_option_of_every_decision_equally_often(name):
    space = load_space(name)
    members = space.fair_sample(random.Random(0))
    assert len(members) == space.widest_decision() == 3
    taken: dict[str, list] = {}
    for arch in members:
        for decision, value in space.choices(arch).items():
            taken.setdefault(decision, []).append(value)
    for decision, values in taken.items():
        counts = [values.count(v) for v in set(values)]
        assert max(counts) - min(counts) <= 1, decision
    # Decisions of three options, reached by all three members, take each option once.
    full = [d for d, values in taken.items() if len(values) == 3 and len(set(values)) == 3]
    assert full
    if name == "nas_bench_macro":  # every layer: three ops, each once
        assert all(len(set(values)) == 3 for values in taken.values())
