"""Do mbnas's timm recipes build mbnas's networks in timm? Parameters and outputs, compared.

For every shipped reference architecture and ``--members`` random members of every shipped
search space, export the timm recipe (``mbnas.export.timm_recipe``), build it with timm, compare
parameter counts, transplant mbnas's state dict (in order, shapes checked; MobileNetV3's head
Linear becomes timm's 1x1 conv_head) and compare the outputs in eval mode (tolerance 1e-5).
Architectures whose recipe mbnas refuses are counted with the reason.

timm and torchvision are no dependency of mbnas: run this in a throwaway virtual environment,
outside the repository, where they install (a CUDA build of torch; fine on CPU)::

    python -m venv /tmp/timm-venv
    /tmp/timm-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/timm-venv/bin/pip install --no-deps -e .
    /tmp/timm-venv/bin/pip install optuna "hydra-core>=1.3,<1.4" tensorboard matplotlib
    OMP_NUM_THREADS=1 /tmp/timm-venv/bin/python benchmarks/timm_compat.py --members 50

``build_timm`` below is the reference for reading a ``best.timm.json`` recipe.
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from collections import Counter
from typing import Any

import timm.models
import torch
from timm.layers import get_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import decode_arch_def, round_channels

import mbnas
from mbnas.architectures import available_archs
from mbnas.export import TimmUnsupported, timm_recipe
from mbnas.space import available_spaces, load_space

TOLERANCE = 1e-5
INPUT_SIZE = 64


def resolve(name: Any) -> Any:
    """A recipe's callable given by name."""
    return round_channels if name == "round_channels" else get_act_layer(name)


def build_timm(recipe: dict[str, Any]) -> torch.nn.Module:
    """The timm network of a recipe ``{"class", "arch_def", "kwargs"}``."""
    kwargs = dict(recipe["kwargs"])
    kwargs["act_layer"] = resolve(kwargs["act_layer"])
    kwargs["se_layer"] = functools.partial(
        SqueezeExcite, **{key: resolve(value) for key, value in kwargs["se_layer"].items()})
    if "norm_layer" in kwargs:
        kwargs["norm_layer"] = functools.partial(torch.nn.BatchNorm2d, **kwargs["norm_layer"])
    model_class = getattr(timm.models, recipe["class"])
    return model_class(block_args=decode_arch_def(recipe["arch_def"]), **kwargs)


def transplant(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy ``source``'s tensors into ``target`` in registration order, shapes checked."""
    own = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    keys = [k for k in target.state_dict() if not k.endswith("num_batches_tracked")]
    if len(own) != len(keys):
        raise ValueError(f"{len(own)} tensors in mbnas's network, {len(keys)} in timm's")
    state = {}
    for (name, tensor), key in zip(own.items(), keys, strict=True):
        shape = target.state_dict()[key].shape
        if tensor.numel() != shape.numel() or tensor.dim() > len(shape):
            raise ValueError(f"{name} {tuple(tensor.shape)} does not fit {key} {tuple(shape)}")
        state[key] = tensor.reshape(shape)  # a Linear's weight as a 1x1 conv's
    target.load_state_dict(state, strict=False)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compare(arch: mbnas.ArchSpec, batch: int = 2) -> str:
    """``ok``, ``refused: <reason>`` or ``FAIL: <what differs>`` for one architecture."""
    try:
        recipe = timm_recipe(arch)
    except TimmUnsupported as error:
        return f"refused: {str(error).split(': ', 1)[1].split(';')[0]}"
    ours, theirs = mbnas.build(arch).eval(), build_timm(recipe).eval()
    if parameters(ours) != parameters(theirs):
        return f"FAIL: {parameters(ours)} parameters, timm {parameters(theirs)}"
    try:
        transplant(ours, theirs)
    except ValueError as error:
        return f"FAIL: {error}"
    with torch.no_grad():
        for module in ours.modules():  # non-trivial BN statistics, so that eps and order matter
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        transplant(ours, theirs)
        size = min(arch.resolution, INPUT_SIZE)  # fully convolutional: any size compares
        x = torch.randn(batch, arch.in_channels, size, size)
        difference = (ours(x) - theirs(x)).abs().max().item()
    return "ok" if difference <= TOLERANCE else f"FAIL: outputs differ by {difference:.2e}"


def members(space_name: str, count: int, seed: int) -> list[mbnas.ArchSpec]:
    space = load_space(space_name)
    rng = random.Random(seed)
    return [space.sample_random(rng) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50, help="random members per space")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    print(f"timm {timm.__version__}, torch {torch.__version__}; tolerance {TOLERANCE}")
    print(f"{'architectures':<34} {'n':>4} {'exact':>6} {'refused':>8} {'FAIL':>5}  s")
    groups = [("reference " + name, [mbnas.load_arch(name)]) for name in available_archs()]
    groups += [(f"space {name}", members(name, args.members, args.seed))
               for name in available_spaces()]
    reasons, failures = Counter(), []
    for label, archs in groups:
        start, results = time.perf_counter(), [compare(arch) for arch in archs]
        outcome = Counter(result.split(":")[0] for result in results)
        reasons.update(r.split(": ", 1)[1] for r in results if r.startswith("refused"))
        failures += [f"{label}: {r}" for r in results if r.startswith("FAIL")]
        print(f"{label:<34} {len(archs):>4} {outcome['ok']:>6} {outcome['refused']:>8} "
              f"{outcome['FAIL']:>5}  {time.perf_counter() - start:.1f}")
    for reason, n in reasons.most_common():
        print(f"refused x{n}: {reason}")
    for failure in failures:
        print(failure)


if __name__ == "__main__":
    main()
