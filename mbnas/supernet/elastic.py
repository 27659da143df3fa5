"""Elastic operations: one set of maximum-size weights, sliced to any smaller member.

An :class:`ElasticWeights` holds an ordinary static module (a block, the stem or the head, made
by the same classes ``mbnas.build`` uses) at the largest size a search space needs. For a smaller
module of the same class (a *template*, which may live on the ``meta`` device and own no data),
:meth:`ElasticWeights.loans` says where each of that template's parameters and buffers comes
from, by the template's own names, cut out of the maximum-size ones:

- widths (input, expanded, output, SE, head) are the **leading channels** of every dimension;
- a smaller kernel is the **centre** of the largest one, passed through once-for-all's learned
  kernel-transformation matrices (one ``k²×k²`` matrix per step down, e.g. 25x25 for 7→5 and
  9x9 for 5→3), initialised to the identity;
- BatchNorm statistics are slices (views) too, so training a subnet updates the shared ones.

Because subnets and static networks share one definition of every block, running a subnet is
lending the template its cut tensors (:func:`lend`) and calling it, and exporting it is
``load_state_dict`` of the same tensors (``Supernet.sliced_state``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, MutableMapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mbnas.arch import BlockConfig
from mbnas.errors import ConfigError
from mbnas.nn.blocks import Skip


def _named_tensors(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    return itertools.chain(module.named_parameters(), module.named_buffers())


def _transform_key(name: str, big: int, small: int) -> str:
    return f"{name.replace('.', '_')}_{big}to{small}"


def _slot(module: nn.Module, name: str) -> tuple[MutableMapping[str, torch.Tensor], str]:
    """The dict that holds tensor ``name`` of ``module`` (its owner's parameters or buffers).

    A loan keeps that dict rather than the tensor: ``module.to(...)`` and
    ``load_state_dict(assign=True)`` replace tensors in these dicts, never the dicts.
    """
    path, _, attr = name.rpartition(".")
    owner = module.get_submodule(path)
    return (owner._parameters if attr in owner._parameters else owner._buffers), attr


class Loan(NamedTuple):
    """One tensor of a member, lent from the shared weights to the member's static template."""

    key: str                                    # the member's state-dict name
    lender: ElasticWeights
    name: str                                   # its name in the lender's module
    source: MutableMapping[str, torch.Tensor]   # the lender's dict holding it
    target: MutableMapping[str, torch.Tensor]   # the template's dict to put it in
    attr: str                                   # its attribute name at both ends
    shape: torch.Size

    def tensor(self) -> torch.Tensor:
        """The lent tensor as of now: the shared one itself, or a slice of it (not a copy)."""
        return self.lender.slice(self.name, self.source[self.attr], self.shape)


def lend(loans: Iterable[Loan]) -> None:
    """Put every loan's tensor into its template, so that calling the template uses them.

    The cheapest way to run a member on the shared weights: a few dict writes per tensor and
    step, where ``torch.func.functional_call`` swaps every tensor in and out again (at 32 px on a
    GPU that bookkeeping was 10% of a training step). Gradients flow into the shared weights,
    and BatchNorm updates their statistics in place, as with ``functional_call``.
    """
    for loan in loans:
        loan.target[loan.attr] = loan.tensor()


def return_loans(loans: Iterable[Loan]) -> None:
    """Empty the template again, so that a cached template keeps no tensor alive."""
    for loan in loans:
        loan.target[loan.attr] = None


class ElasticWeights(nn.Module):
    """A maximum-size static module whose weights any smaller module of its class can borrow."""

    def __init__(self, module: nn.Module, kernels: Iterable[int] = (),
                 config: BlockConfig | None = None):
        super().__init__()
        self.module = module
        self.config = config
        self.kernels = tuple(sorted(set(kernels), reverse=True))
        self.transforms = nn.ParameterDict()
        for name, param in module.named_parameters():
            if param.dim() != 4 or param.shape[-1] == 1:
                continue
            for big, small in itertools.pairwise(self.kernels):
                self.transforms[_transform_key(name, big, small)] = nn.Parameter(
                    torch.eye(small * small))

    def reset_transforms(self) -> None:
        """Set every kernel-transformation matrix to the identity (plain centre cropping)."""
        with torch.no_grad():
            for matrix in self.transforms.values():
                matrix.copy_(torch.eye(matrix.shape[0]))

    def loans(self, template: nn.Module, prefix: str = "") -> list[Loan]:
        """What the template (a smaller module of this class) borrows, named ``prefix + name``."""
        loans = []
        for name, wanted in _named_tensors(template):
            source, attr = _slot(self.module, name)
            target, _ = _slot(template, name)
            loans.append(Loan(prefix + name, self, name, source, target, attr, wanted.shape))
        return loans

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(_named_tensors(self.module))

    def slice(self, name: str, full: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Tensor ``name`` of the weights (``full``) cut to ``shape``; itself where it fits."""
        if full.shape == shape:
            return full
        if full.dim() != len(shape) or any(w > f for w, f in zip(shape, full.shape, strict=False)):
            raise ValueError(f"{name}: cannot cut {tuple(shape)} from {tuple(full.shape)}")
        if full.dim() == 4 and shape[-1] < full.shape[-1]:
            return self._shrink_kernel(name, full[: shape[0], : shape[1]], shape[-1])
        return full[tuple(slice(0, size) for size in shape)]

    def _shrink_kernel(self, name: str, weight: torch.Tensor, kernel: int) -> torch.Tensor:
        """Centre crop step by step through the kernel choices, transforming at every step."""
        if kernel not in self.kernels:
            raise ConfigError(name, f"kernel {kernel} is not a choice of this block",
                              f"choose one of {', '.join(map(str, self.kernels))}")
        for big, small in itertools.pairwise(self.kernels):
            if small < kernel:
                break
            start = (big - small) // 2
            crop = weight[..., start:start + small, start:start + small]
            matrix = self.transforms[_transform_key(name, big, small)]
            weight = F.linear(crop.reshape(-1, small * small), matrix).reshape(crop.shape)
        return weight

    def permute(self, perm: torch.Tensor, dims: dict[str, int]) -> None:
        """Reorder channels in place: tensor ``name`` (parameter or buffer) along ``dims[name]``."""
        tensors = self._tensors()
        with torch.no_grad():
            for name, dim in dims.items():
                tensor = tensors[name]
                tensor.copy_(tensor.index_select(dim, perm.to(tensor.device)))


def widest_block(block: str, configs: Sequence[BlockConfig], kernel: int,
                 stride: int) -> BlockConfig:
    """The one static block of type ``block`` whose weights contain every config's weights.

    Every width is the maximum over ``configs``. The expanded width must also hold the cases
    without an expansion conv: an MBConv at expansion 1 runs its depthwise conv on the input
    channels, a Fused-MBConv at expansion 1 is a single kxk conv straight to the output width;
    both borrow the leading channels of the expanding weights.
    """
    in_ch = max(cfg.in_ch for cfg in configs)
    out_ch = max(cfg.out_ch for cfg in configs)
    if any(cfg.expands for cfg in configs):
        mid_ch = max(max(cfg.mid_ch for cfg in configs), out_ch if block == "fused" else 0)
        if mid_ch == in_ch:
            raise ConfigError(f"{block} block", f"expanded width {mid_ch} equals the input width",
                              "use expansion ratios that widen the block")
    else:
        mid_ch = in_ch
    first = configs[0]
    widest = BlockConfig(type=block, in_ch=in_ch, out_ch=out_ch, mid_ch=mid_ch,
                         kernel=kernel, stride=stride,
                         se_ch=max(cfg.se_ch for cfg in configs), se_style=first.se_style,
                         act=first.act)
    if block == "skip" and any(Skip.projects(cfg) for cfg in configs) and \
            not Skip.projects(widest):
        raise ConfigError("skip op", f"needs a projection for some widths but not at its widest "
                          f"({in_ch} -> {out_ch} channels)",
                          "give the stage's input and output different widest widths")
    return widest


# Channels of the expanded (mid) width, per block type: convs producing them (with their BN),
# the SE that gates them, and the projection consuming them.
_MID_PRODUCERS = {"mbconv": ("expand", "dw"), "fused": ("conv",)}


def mid_channel_dims(block: str, cfg: BlockConfig) -> dict[str, int]:
    """Which tensors of a static block carry its expanded channels, and along which dimension."""
    dims = {}
    for producer in _MID_PRODUCERS[block]:
        dims[f"{producer}.conv.weight"] = 0
        for key in ("weight", "bias", "running_mean", "running_var"):
            dims[f"{producer}.bn.{key}"] = 0
    if cfg.se_ch:
        dims.update({"se.reduce.weight": 1, "se.expand.weight": 0, "se.expand.bias": 0})
    dims["project.conv.weight"] = 1
    return dims
