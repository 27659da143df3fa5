import dataclasses
import random

import pytest
import torch
from conftest import supernet_space

import mbnas
from mbnas.errors import ConfigError
from mbnas.space import load_space
from mbnas.supernet import Supernet
from mbnas.supernet.elastic import ElasticWeights

SHIPPED = ["cifar", "default", "efficientnet_v2", "mobilenet_v3"]
RESOLUTION = {"cifar": 32, "default": 48, "efficientnet_v2": 48, "mobilenet_v3": 40}


def scramble(supernet: Supernet, seed: int = 0) -> Supernet:
    """Non-trivial BN statistics, kernel transforms and classifier so outputs are informative."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*supernet.named_parameters(), *supernet.named_buffers()]:
            if name.endswith(("running_var", "bn.weight")):
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith(("running_mean", "bn.bias")):
                tensor.normal_(0.0, 0.2, generator=generator)
            elif "transforms" in name:
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif "classifier" in name or "hidden" in name:
                tensor.normal_(0.0, 0.2, generator=generator)
    return supernet


@pytest.fixture(scope="module", params=SHIPPED)
def space_and_supernet(request):
    space = load_space(request.param).replace(resolution=RESOLUTION[request.param])
    return space, scramble(Supernet(space)).eval()


def test_extracted_subnets_equal_the_supernet(space_and_supernet):
    space, supernet = space_and_supernet
    rng = random.Random(0)
    archs = [space.smallest(), space.largest()] + [space.sample_random(rng) for _ in range(10)]
    x = torch.randn(2, space.in_channels, space.resolution, space.resolution)
    for arch in archs:
        supernet.set_active(arch)
        with torch.no_grad():
            expected = supernet(x)
            model = supernet.extract(arch).eval()
            got = model(x)
        assert expected.abs().max() > 1e-3                     # informative, not all zero
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        built = mbnas.build(arch)
        built.load_state_dict(model.state_dict(), strict=True)
        assert sum(p.numel() for p in model.parameters()) == mbnas.count(arch).params
        assert type(model) is type(built)


def test_members_with_and_without_a_hidden_head_layer_share_one_head():
    space = supernet_space(dropout=0.0).replace(head_hidden=(None, 24))
    supernet = scramble(Supernet(space)).eval()
    x = torch.randn(2, space.in_channels, space.resolution, space.resolution)
    largest = space.largest()
    for hidden in (None, 24):
        arch = largest.replace(head=dataclasses.replace(largest.head, hidden=hidden))
        supernet.set_active(arch)
        with torch.no_grad():
            torch.testing.assert_close(supernet.extract(arch).eval()(x), supernet(x))


def test_both_block_types_and_every_kernel_are_covered():
    supernet = Supernet(load_space("cifar").replace(resolution=32))
    alternatives = supernet.stages[1][0]
    assert set(alternatives) == {"mbconv", "fused"}
    mbconv = alternatives["mbconv"]
    assert mbconv.module.dw.conv.weight.shape[-1] == 7
    shapes = sorted(tuple(m.shape) for m in mbconv.transforms.values())
    assert shapes == [(9, 9), (25, 25)]
    assert alternatives["fused"].module.conv.conv.weight.data_ptr() != \
        mbconv.module.expand.conv.weight.data_ptr()


def expand_one(space, block):
    """A member whose second stage uses expansion 1 blocks of the given type."""
    arch = space.largest()
    stage = arch.stages[1]
    one = dataclasses.replace(stage, block=block, expand=(1,) * stage.depth)
    return arch.replace(stages=(arch.stages[0], one, *arch.stages[2:]))


@pytest.mark.parametrize("block", ["mbconv", "fused"])
def test_expansion_one_blocks_match_build(block):
    space = load_space("cifar")
    supernet = scramble(Supernet(space)).eval()
    arch = expand_one(space, block)
    assert space.contains(arch)
    assert not any(cfg.expands for cfg in arch.stage_blocks()[1])
    x = torch.randn(2, 3, 32, 32)
    supernet.set_active(arch)
    with torch.no_grad():
        torch.testing.assert_close(supernet.extract(arch).eval()(x), supernet(x))


def test_training_forward_updates_shared_weights_and_statistics():
    space = load_space("cifar")
    supernet = Supernet(space).train()
    arch = space.sample_random(random.Random(4))
    supernet.set_active(arch)
    stem_mean = supernet.stem.module.bn.running_mean
    before = stem_mean.clone()
    supernet(torch.randn(4, 3, 32, 32)).square().mean().backward()
    width = arch.stem.out
    assert not torch.equal(stem_mean[:width], before[:width])
    assert torch.equal(stem_mean[width:], before[width:])         # inactive channels untouched
    grad = supernet.stem.module.conv.weight.grad
    assert grad[:width].abs().sum() > 0 and grad[width:].abs().sum() == 0
    kernels = [cfg.kernel for cfg in arch.blocks()]
    if any(k < 7 for k in kernels):
        assert any(m.grad is not None and m.grad.abs().sum() > 0
                   for w in supernet.modules() if isinstance(w, ElasticWeights)
                   for m in w.transforms.values())


def test_a_member_runs_on_the_shared_tensors_of_the_moment():
    space = load_space("cifar")
    supernet = scramble(Supernet(space)).eval()
    arch = space.sample_random(random.Random(5))
    supernet.set_active(arch)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = supernet(x)
    supernet.double()            # new buffer tensors, the same parameter objects with new data
    with torch.no_grad():
        after = supernet(x.double())
    assert after.dtype == torch.float64
    torch.testing.assert_close(after.float(), before, rtol=1e-4, atol=1e-5)


def test_reorder_channels_keeps_the_largest_member():
    space = load_space("cifar")
    supernet = scramble(Supernet(space)).eval()
    largest = space.largest()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        supernet.set_active(largest)
        before = supernet(x)
        supernet.reorder_channels()
        torch.testing.assert_close(supernet(x), before, rtol=1e-4, atol=1e-5)
    block = supernet.stages[2][0]["mbconv"].module
    importance = block.project.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_set_active_rejects_non_members_and_ignores_resolution():
    space = load_space("cifar")
    supernet = Supernet(space)
    with pytest.raises(ConfigError, match="not a choice"):
        supernet.set_active(mbnas.load_arch("mobilenet_v3_small").replace(num_classes=10))
    arch = space.smallest().replace(resolution=64)
    supernet.set_active(arch)
    assert supernet(torch.randn(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_supernet_runs_unchanged_on_cuda():
    space = load_space("cifar")
    supernet = scramble(Supernet(space)).cuda().eval()
    arch = space.sample_random(random.Random(5))
    supernet.set_active(arch)
    x = torch.randn(2, 3, 32, 32, device="cuda")
    with torch.no_grad():
        model = supernet.extract(arch)
        assert next(model.parameters()).is_cuda
        torch.testing.assert_close(model.eval()(x), supernet(x))
