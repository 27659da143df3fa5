from pathlib import Path

import pytest
import yaml
from conftest import random_arch

import mbnas
from mbnas.arch import ArchSpec
from mbnas.errors import ConfigError
from mbnas.validation import read_yaml

BUILTINS = mbnas.available_archs()


def test_builtins_are_shipped():
    assert set(BUILTINS) >= {"mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                             "efficientnet_b0", "efficientnet_b1", "efficientnet_v2_s"}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_files_round_trip_text_unchanged(name):
    import importlib.resources as resources

    text = (resources.files("mbnas.architectures") / f"{name}.yaml").read_text()
    assert mbnas.load_arch(name).to_yaml() == text


@pytest.mark.parametrize("seed", range(30))
def test_random_archs_round_trip(seed, tmp_path):
    arch = random_arch(seed)
    path = arch.save(tmp_path / "arch.yaml")
    again = mbnas.load_arch(path)
    assert again == arch
    assert again.to_yaml() == path.read_text()


def test_per_block_lists_resolve_to_blocks():
    arch = mbnas.load_arch("mobilenet_v3_large")
    blocks = arch.stage_blocks()
    assert [b.mid_ch for b in blocks[3]] == [240, 200, 184, 184]
    assert [b.stride for b in blocks[3]] == [2, 1, 1, 1]
    assert blocks[2][0].se_ch == 24  # make_divisible(72 // 4, 8)
    assert not blocks[0][0].expands and blocks[0][0].residual


def test_efficientnet_se_uses_block_input_width():
    block = next(mbnas.load_arch("efficientnet_b0").blocks())
    assert (block.in_ch, block.mid_ch, block.se_ch) == (32, 32, 8)


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def base_dict():
    return yaml.safe_load(mbnas.load_arch("mobilenet_v2").to_yaml())


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["stages"][1].update(kernel=4), ["stages[1].kernel", "4", "odd integer"]),
    (lambda d: d["stages"][0].update(act="gelu"), ["stages[0].act", "'gelu'", "relu, relu6"]),
    (lambda d: d["stages"][2].update(block="transformer"), ["stages[2].block", "mbconv, fused"]),
    (lambda d: d["stages"][2].update(kernal=3), ["stages[2].kernal", "unknown key", "kernel"]),
    (lambda d: d["stages"][2].update(kernel=[3, 5]), ["stages[2].depth", "per-block"]),
    (lambda d: d["stages"][2].update(mid=64), ["stages[2]", "both expand and mid"]),
    (lambda d: d.update(se_style="v4"), ["se_style", "mobilenetv3, efficientnet"]),
    (lambda d: d.update(resolution="big"), ["resolution", "'big'", "integer"]),
    (lambda d: d.pop("head"), ["head", "missing"]),
    (lambda d: d["stem"].update(out=-3), ["stem.out", "-3"]),
    (lambda d: d["stages"][1].pop("expand"), ["stages[1].expand", "expand: 6"]),
])
def test_invalid_files_name_file_key_value_and_choices(tmp_path, edit, expected):
    data = base_dict()
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        mbnas.load_arch(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_unknown_name_lists_builtins():
    with pytest.raises(ConfigError, match="mobilenet_v3_large"):
        mbnas.load_arch("mobilenet_v9")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        mbnas.load_arch(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(broken)


def test_from_dict_accepts_per_block_and_per_stage_values():
    arch = ArchSpec.from_dict({"resolution": 32, "stem": {"out": 16},
                               "stages": [{"out": 24, "expand": [3, 6], "kernel": 5}],
                               "head": {"channels": 64}})
    assert arch.stages[0].depth == 2
    assert [b.kernel for b in arch.blocks()] == [5, 5]
