import dataclasses
import random

import pytest
import torch
from conftest import supernet_space
from torch.utils.data import DataLoader, TensorDataset

from mbnas.data import DataConfig, make_loader
from mbnas.errors import ConfigError
from mbnas.space import load_space
from mbnas.supernet import Supernet
from mbnas.supernet.training import (
    SandwichConfig,
    load_finished_warmup,
    sandwich_members,
    subnet,
    train_supernet,
)
from mbnas.train import OptimConfig, save_checkpoint

SPACE = supernet_space(dropout=0.2)


class Interrupting:
    """A loader that raises KeyboardInterrupt after handing out ``limit`` batches in total."""

    def __init__(self, loader, limit):
        self.loader, self.limit, self.served = loader, limit, 0

    def __getattr__(self, name):  # sampler, generator, dataset: the wrapped loader's
        return getattr(self.loader, name)

    def __iter__(self):
        for batch in self.loader:
            if self.served == self.limit:
                raise KeyboardInterrupt
            self.served += 1
            yield batch


def plain_loader():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(40, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 4, (40,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True)


def mbnas_loader():
    return make_loader(DataConfig(resolution=16, num_classes=4, synthetic_size=48,
                                  batch_size=8, seed=1), "train")


def fresh_supernet():
    torch.manual_seed(0)
    return Supernet(SPACE)


CFG = SandwichConfig(steps=8, num_random=2, distill=True, seed=3, checkpoint_every=3,
                     optim=OptimConfig(lr=0.1, warmup_steps=2, label_smoothing=0.1))


@pytest.mark.parametrize("make_loader_", [plain_loader, mbnas_loader])
def test_resume_gives_the_same_weights(tmp_path, make_loader_):
    straight = fresh_supernet()
    torch.manual_seed(11)
    result = train_supernet(straight, SPACE, make_loader_(), CFG, checkpoint=None, progress=False)
    assert result.step == 8 and len(result.losses) == 8

    checkpoint = tmp_path / "supernet.pt"
    interrupted = fresh_supernet()
    torch.manual_seed(11)
    with pytest.raises(KeyboardInterrupt):   # interrupted after step 6 was checkpointed
        train_supernet(interrupted, SPACE, Interrupting(make_loader_(), 7), CFG,
                       checkpoint=checkpoint, progress=False)
    torch.manual_seed(999)                   # a new process: other global random state
    resumed = fresh_supernet()
    result = train_supernet(resumed, SPACE, make_loader_(), CFG, checkpoint=checkpoint,
                            progress=True)
    assert result.step == 8 and len(result.losses) == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    # A finished checkpoint makes training a no-op.
    again = train_supernet(fresh_supernet(), SPACE, make_loader_(), CFG, checkpoint=checkpoint,
                           progress=False)
    assert again.step == 8 and again.losses == ()


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    checkpoint = tmp_path / "supernet.pt"
    short = dataclasses.replace(CFG, steps=2)
    train_supernet(fresh_supernet(), SPACE, plain_loader(), short, checkpoint=checkpoint,
                   progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        train_supernet(fresh_supernet(), SPACE, plain_loader(), CFG, checkpoint=checkpoint,
                       progress=False)


def test_sandwich_training_learns_and_subnets_recalibrate():
    supernet = fresh_supernet()
    loader = plain_loader()
    cfg = dataclasses.replace(CFG, steps=40, optim=OptimConfig(optimizer="adamw", lr=3e-3))
    losses = train_supernet(supernet, SPACE, loader, cfg, progress=False).losses
    assert sum(losses[-5:]) < sum(losses[:5])
    arch = SPACE.smallest()
    model = subnet(supernet, arch, loader, num_images=16)
    assert not model.training
    shared = supernet.stem.module.bn.running_mean[:arch.stem.out]
    assert not torch.equal(model.stem.bn.running_mean, shared)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_runs_unchanged_on_cuda(tmp_path):
    supernet = fresh_supernet().cuda()
    cfg = dataclasses.replace(CFG, steps=2)
    result = train_supernet(supernet, SPACE, plain_loader(), cfg, checkpoint=tmp_path / "s.pt",
                            progress=False)
    assert result.step == 2 and next(supernet.parameters()).is_cuda


def test_uniform_rule_trains_random_members_only():
    space = load_space("nas_bench_macro")
    members = sandwich_members(space, random.Random(0), 1, rule="uniform")
    assert len(members) == 1 and space.contains(members[0])
    assert sandwich_members(space, random.Random(0), 1)[:2] == [space.largest(), space.smallest()]


def test_fair_rule_trains_the_fair_members_of_each_step():
    space = load_space("nas_bench_macro")
    members = sandwich_members(space, random.Random(0), 1, rule="fair")
    assert members == space.fair_sample(random.Random(0))
    supernet = fresh_supernet()
    before = [p.detach().clone() for p in supernet.parameters()]
    cfg = dataclasses.replace(CFG, rule="fair", distill=False, steps=2)
    assert train_supernet(supernet, SPACE, plain_loader(), cfg, progress=False).step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, supernet.parameters()))


def test_a_finished_warmup_loads_and_an_unfinished_one_is_refused(tmp_path):
    trained = Supernet(SPACE)
    checkpoint = save_checkpoint(tmp_path / "supernet.pt",
                                 {"step": 4, "model": trained.state_dict()})
    with pytest.raises(ConfigError, match=r"unfinished warm-up \(step 4 of 5\)"):
        load_finished_warmup(Supernet(SPACE), checkpoint, steps=5)
    loaded = Supernet(SPACE)
    load_finished_warmup(loaded, checkpoint, steps=4)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                  trained.state_dict().values()))
    with pytest.raises(ConfigError, match="missing"):
        load_finished_warmup(Supernet(SPACE), tmp_path / "absent.pt", steps=4)
