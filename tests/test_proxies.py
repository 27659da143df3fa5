import math

import pytest
import torch

import mbnas
from mbnas.proxies import PROXIES, RECTIFIERS, eigenvalue_entropy, expressivity, naswot, swap

TINY = mbnas.ArchSpec.from_dict({
    "resolution": 16, "num_classes": 4, "stem": {"out": 8, "stride": 1},
    "stages": [{"block": ["mbconv", "skip"], "expand": 3, "out": 16, "depth": 2, "stride": 2,
                "act": "hswish"}],
    "head": {"channels": 32}})


def batch(count: int = 8):
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(count, 3, 16, 16, generator=generator),
            torch.randint(0, 4, (count,), generator=generator))


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_proxy_is_finite_repeatable_and_leaves_the_weights_alone(name):
    torch.manual_seed(0)
    model = mbnas.build(TINY)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k}
    images, labels = batch()
    first, second = PROXIES[name](model, images, labels), PROXIES[name](model, images, labels)
    assert math.isfinite(first) and first == pytest.approx(second, rel=1e-6)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_naswot_counts_distinct_activation_patterns():
    # Images that activate the same units give a singular kernel; distinct ones do not.
    torch.manual_seed(0)
    model = mbnas.build(TINY)
    images, labels = batch()
    same = images[:1].repeat(8, 1, 1, 1)
    assert naswot(model, images, labels) > naswot(model, same + 1e-3 * images, labels)


def test_swap_counts_distinct_sample_wise_patterns():
    # One image repeated gives every unit a constant pattern (at most two distinct: all on or
    # all off); distinct images give many, at most one per unit.
    torch.manual_seed(0)
    model = mbnas.build(TINY)
    images, labels = batch(16)
    units = []
    hooks = [m.register_forward_pre_hook(lambda _m, inputs: units.append(inputs[0][0].numel()))
             for m in model.modules() if isinstance(m, RECTIFIERS)]
    model(images[:1])
    for hook in hooks:
        hook.remove()
    assert swap(model, images[:1].repeat(16, 1, 1, 1), labels) <= 2
    assert 2 < swap(model, images, labels) <= sum(units)


def test_eigenvalue_entropy_is_high_for_isotropic_features_and_zero_for_one_direction():
    generator = torch.Generator().manual_seed(0)
    isotropic = torch.randn(64, 8, 4, 4, generator=generator)
    assert eigenvalue_entropy(isotropic) == pytest.approx(math.log(8), rel=0.01)
    one_direction = torch.randn(64, 1, 4, 4, generator=generator).repeat(1, 8, 1, 1)
    assert eigenvalue_entropy(one_direction) == pytest.approx(0.0, abs=1e-6)
    assert eigenvalue_entropy(torch.ones(4, 8, 2, 2)) == 0.0  # a dead block


def test_expressivity_adds_the_entropy_of_every_block_output():
    torch.manual_seed(0)
    model = mbnas.build(TINY)
    images, labels = batch()
    outputs = []
    hooks = [block.register_forward_hook(lambda _m, _i, output: outputs.append(output))
             for stage in model.stages for block in stage]
    with torch.no_grad():
        model.train()(images)
    for hook in hooks:
        hook.remove()
    expected = sum(eigenvalue_entropy(output) for output in outputs)
    assert len(outputs) == 2 and expressivity(model, images, labels) == pytest.approx(expected)
