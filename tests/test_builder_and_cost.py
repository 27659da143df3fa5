import pytest
import torch
from conftest import random_arch
from torch.utils.flop_counter import FlopCounterMode

import mbnas
from mbnas.nn.blocks import FusedMBConv, MBConv, StochasticDepth
from mbnas.scaling import scale_arch

PUBLISHED = {  # torchvision's figures (MobileNetV1: the paper's and Keras'): parameters, MACs
    "mobilenet_v1": (4_231_976, 568_740_352),
    "mobilenet_v2": (3_504_872, 300_774_272),
    "mobilenet_v3_large": (5_483_032, 216_589_760),
    "efficientnet_b0": (5_288_548, 385_814_752),
    "efficientnet_v2_s": (21_458_488, 8_365_617_152),
    "mobilenet_v3_small": (2_542_856, None),
    "efficientnet_b1": (7_794_184, None),
}


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measured_macs(model: torch.nn.Module, resolution: int, in_channels: int = 3) -> int:
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, in_channels, resolution, resolution))
    return counter.get_total_flops() // 2


def measured_activations(model: torch.nn.Module, resolution: int) -> int:
    """Elements of every conv and linear output of one image, counted as the network runs."""
    outputs = []
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    hooks = [layer.register_forward_hook(lambda _m, _i, output: outputs.append(output[0].numel()))
             for layer in layers]
    model.eval()(torch.zeros(1, 3, resolution, resolution))
    for hook in hooks:
        hook.remove()
    return sum(outputs)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reference_architectures_match_published_figures(name):
    params, macs = PUBLISHED[name]
    cost = mbnas.count(name)
    assert cost.params == params
    assert parameters(mbnas.build(name)) == params
    if macs is not None:
        assert cost.macs == macs


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b1", "mobilenet_v2",
                                  "mobilenet_v1"])
def test_reference_macs_match_flop_counter(name):
    arch = mbnas.load_arch(name)
    assert measured_macs(mbnas.build(arch), arch.resolution) == mbnas.count(arch).macs


@pytest.mark.parametrize("seed", range(40))
def test_cost_model_matches_built_module_on_random_archs(seed):
    arch = random_arch(seed)
    model = mbnas.build(arch)
    cost = mbnas.count(arch)
    assert cost.params == parameters(model)
    assert cost.macs == measured_macs(model, arch.resolution)
    assert cost.activations == measured_activations(model, arch.resolution)
    assert model(torch.randn(2, 3, arch.resolution, arch.resolution)).shape == (2, arch.num_classes)


def test_per_stage_breakdown_adds_up():
    cost = mbnas.count("efficientnet_b0")
    assert [row.name for row in cost.stages] == ["stem"] + [f"stage{i}" for i in range(1, 8)] + [
        "head"]
    assert sum(r.macs for r in cost.stages) == cost.macs
    assert sum(r.params for r in cost.stages) == cost.params
    assert sum(r.activations for r in cost.stages) == cost.activations
    assert [r.resolution for r in cost.stages[:8]] == [112, 112, 56, 28, 14, 14, 7, 7]


def test_activations_match_the_published_figure():
    # pycls's model zoo (Radosavovic et al. 2020) lists EfficientNet-B0 at 6.7M activations and
    # B1 (240 px) at 10.9M, counted as the cost model counts them (conv outputs).
    assert round(mbnas.count("efficientnet_b0").activations / 1e5) == 67
    assert round(mbnas.count("efficientnet_b1").activations / 1e5) == 109


def test_count_at_another_resolution():
    assert mbnas.count("mobilenet_v2", resolution=160).macs < mbnas.count("mobilenet_v2").macs


def test_block_structure_follows_the_definitions():
    model = mbnas.build("efficientnet_v2_s")
    first = model.stages[0][0]
    assert isinstance(first, FusedMBConv) and isinstance(first.project, torch.nn.Identity)
    assert first.residual
    mb = model.stages[3][0]
    assert isinstance(mb, MBConv) and isinstance(mb.project.act, torch.nn.Identity)
    assert mb.se.reduce.out_channels == 16  # a quarter of the 64-channel block input


def test_stochastic_depth_only_in_training_and_on_residual_blocks():
    model = mbnas.build("efficientnet_b0")
    rates = [m.rate for m in model.modules() if isinstance(m, StochasticDepth)]
    assert rates[0] == 0.0 and max(rates) < 0.2 and rates[-2] > 0.0
    drop = StochasticDepth(0.5).train()
    x = torch.ones(64, 4, 2, 2)
    out = drop(x)
    assert {round(v, 3) for v in out[:, 0, 0, 0].tolist()} <= {0.0, 2.0}
    assert torch.equal(drop.eval()(x), x)


def test_bn_settings_follow_the_arch():
    model = mbnas.build("mobilenet_v3_large")
    bn = model.stem.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def test_mobilenet_v1_scales_like_the_paper():
    # The paper's 0.5 MobileNet-160: 76M MACs, 1.32M parameters.
    arch = scale_arch(mbnas.load_arch("mobilenet_v1"), width=0.5, resolution=160)
    cost = mbnas.count(arch)
    assert round(cost.macs / 1e6) == 77 and round(cost.params / 1e4) == 133
    assert parameters(mbnas.build(arch)) == cost.params


def test_skip_layers_are_identities_or_linear_projections():
    arch = mbnas.ArchSpec.from_dict({
        "resolution": 16, "stem": {"out": 8, "stride": 1}, "head": {"channels": 16},
        "stages": [{"block": ["skip", "skip"], "out": 16, "depth": 2, "stride": 2}]})
    model = mbnas.build(arch).eval()
    first, second = model.stages[0]
    assert isinstance(second.project, torch.nn.Identity) and not second.residual
    assert isinstance(first.project.act, torch.nn.Identity) and first.project.conv.stride == (2, 2)
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(second(x), x)
    assert mbnas.count(arch).params == parameters(model)
