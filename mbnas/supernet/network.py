"""The weight-sharing supernet of a search space: every member is a slice of one set of weights.

Each block position of each stage holds one maximum-size static block per allowed block type
(MBConv and Fused-MBConv keep separate weights), wrapped in :class:`ElasticWeights`. In a stage
of candidate ops, ``sharing`` decides: ``nested`` (once-for-all) keeps one such block per block
type, so ops of one type share the leading channels and kernel centre; ``separate`` (SPOS)
gives every op weights of its own; a ``skip`` op owns only its projection, where it has one.
A member (an ArchSpec of the space) runs as its own static network, ``mbnas.build(arch)``'s
modules made on the ``meta`` device, with every parameter and buffer lent from the shared weights
for the length of a call:
elastic depth keeps the first ``d`` blocks of a stage, elastic width and expansion the leading
channels, elastic kernel the transformed centre of the largest kernel (see
:mod:`mbnas.supernet.elastic`). SE on/off and the activation are properties of the static block,
so they are elastic for free.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
from torch import nn

from mbnas.arch import ArchSpec, HeadSpec
from mbnas.nn.blocks import BLOCKS, ConvBNAct
from mbnas.nn.builder import Head, MobileNet, init_weights
from mbnas.space import SearchSpace, StageChoices, load_space, probe_block
from mbnas.supernet.elastic import (
    ElasticWeights,
    Loan,
    lend,
    mid_channel_dims,
    return_loans,
    widest_block,
)
from mbnas.validation import check_choice

_TEMPLATE_CACHE = 512
SHARING = ("nested", "separate")


def largest_head(space: SearchSpace, in_ch: int) -> Head:
    """A head every member's head is a slice of. Where the space offers a hidden layer and no
    hidden layer, the classifier reads either the hidden layer or the pooled features, so it is
    made as wide as the wider of the two."""
    hidden = max((width for width in space.head_hidden or () if width), default=None)
    channels = max(space.head_channels)
    head = Head(in_ch, HeadSpec(channels, space.head_act, hidden), space.num_classes,
                space.dropout, space.bn)
    if hidden and None in space.head_hidden and channels > hidden:
        head.classifier = nn.Linear(channels, space.num_classes)
    return head


class Supernet(nn.Module):
    """All members of a search space in one module; ``set_active(arch)`` picks the one to run."""

    def __init__(self, space: SearchSpace | str | None = None, sharing: str = "nested"):
        super().__init__()
        space = load_space(space)
        self.space = space
        self.sharing = check_choice(sharing, "supernet sharing", SHARING)
        bn = space.bn
        self.stem = ElasticWeights(ConvBNAct(space.in_channels, max(space.stem_out),
                                             space.stem_kernel, space.stem_stride,
                                             act=space.stem_act, bn=bn))
        stages, inputs = [], space.stem_out
        for stage in space.stages:
            stages.append(nn.ModuleList(
                block_alternatives(space, stage, index, inputs if index == 0 else stage.out,
                                   sharing)
                for index in range(max(stage.depth))))
            inputs = stage.out
        self.stages = nn.ModuleList(stages)
        self.head = ElasticWeights(largest_head(space, max(inputs)))
        init_weights(self)
        self._templates: OrderedDict[ArchSpec, tuple[MobileNet, list[Loan]]] = OrderedDict()
        self.active = space.largest()

    def set_active(self, arch: ArchSpec) -> None:
        """Make ``arch`` (a member of the space, at any resolution) the network ``forward`` runs."""
        if arch != self.active:
            self.space.choices(arch.replace(resolution=self.space.resolution))
            self.active = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the active member on ``x`` with the shared weights (gradients flow into them)."""
        template, loans = self._template(self.active)
        if template.training != self.training:
            template.train(self.training)
        lend(loans)
        try:
            return template(x)
        finally:
            return_loans(loans)

    def sliced_state(self, arch: ArchSpec) -> dict[str, torch.Tensor]:
        """The state dict of ``mbnas.build(arch)``, cut from the shared weights (not copied)."""
        return {loan.key: loan.tensor() for loan in self._template(arch)[1]}

    def _loans(self, arch: ArchSpec, template: MobileNet) -> list[Loan]:
        """Every tensor of ``template`` (the static network of ``arch``) and where it comes from."""
        keys = self._alternative_keys(arch)
        loans = self.stem.loans(template.stem, "stem.")
        for i, blocks in enumerate(template.stages):
            for j, block in enumerate(blocks):
                loans += self.stages[i][j][keys[i][j]].loans(block, f"stages.{i}.{j}.")
        return loans + self.head.loans(template.head, "head.")

    def extract(self, arch: ArchSpec) -> MobileNet:
        """A static network equal to ``mbnas.build(arch)`` holding copies of the shared weights."""
        self.space.choices(arch.replace(resolution=self.space.resolution))
        with torch.no_grad():
            state = {name: tensor.detach().clone()
                     for name, tensor in self.sliced_state(arch).items()}
        with torch.device("meta"):
            model = MobileNet(arch)
        model.load_state_dict(state, strict=True, assign=True)
        return model.train(self.training)

    def reorder_channels(self) -> None:
        """Sort every block's expanded channels by importance, most important first.

        Importance is the L1 norm of a channel's weights in the projection conv (once-for-all's
        rule), so the narrower expansions, which keep the leading channels, keep the important
        ones. The largest member computes the same function before and after; optimizer state
        (momentum) is not permuted, so call this between training phases.
        """
        for stage in self.stages:
            for alternatives in stage:
                for weights in alternatives.values():
                    if not weights.config.expands:
                        continue
                    project = weights.module.project.conv.weight
                    importance = project.detach().abs().sum(dim=(0, 2, 3))
                    order = torch.argsort(importance, descending=True, stable=True)
                    weights.permute(order, mid_channel_dims(weights.config.type, weights.config))

    def _alternative_keys(self, arch: ArchSpec) -> list[list[str]]:
        """Per block of ``arch``, which of its position's weights it borrows."""
        keys = [[cfg.type for cfg in blocks] for blocks in arch.stage_blocks()]
        if self.sharing == "separate":
            choices = self.space.choices(arch.replace(resolution=self.space.resolution))
            for i, blocks in enumerate(keys):
                for j in range(len(blocks)):
                    op = choices.get(f"stage{i + 1}.block{j + 1}.op",
                                     choices.get(f"stage{i + 1}.op"))
                    blocks[j] = op or blocks[j]
        return keys

    def _template(self, arch: ArchSpec) -> tuple[MobileNet, list[Loan]]:
        """The static network of ``arch`` (structure only: made on the meta device, it holds
        real tensors only while it runs) and the loans that fill it."""
        cached = self._templates.get(arch)
        if cached is None:
            with torch.device("meta"):
                template = MobileNet(arch)
            cached = self._templates[arch] = (template, self._loans(arch, template))
            if len(self._templates) > _TEMPLATE_CACHE:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(arch)
        return cached

    def reset_kernel_transforms(self) -> None:
        """Set all kernel-transformation matrices to the identity (plain centre crops)."""
        for module in self.modules():
            if isinstance(module, ElasticWeights):
                module.reset_transforms()



def block_alternatives(space: SearchSpace, stage: StageChoices, index: int,
                       inputs: tuple[int, ...], sharing: str = "nested") -> nn.ModuleDict:
    """The shared weights of block ``index`` of ``stage``, keyed by block type (or op name)."""
    alternatives = {}
    for key, (block, settings) in _weight_groups(stage, sharing).items():
        configs = [probe_block(block, in_ch, out_ch, expand, se, space.se_style)
                   for in_ch, out_ch in itertools.product(inputs, stage.out)
                   for _, expand, se in settings]
        kernels = sorted({kernel for kernel, _, _ in settings})
        cfg = widest_block(block, configs, max(kernels), stage.stride if index == 0 else 1)
        alternatives[key] = ElasticWeights(BLOCKS[block](cfg, bn=space.bn), kernels, config=cfg)
    return nn.ModuleDict(alternatives)


def _weight_groups(stage: StageChoices, sharing: str) -> dict[str, tuple[str, list]]:
    """Which blocks share one set of weights: key -> (block type, [(kernel, expand, se), ...])."""
    if not stage.ops:
        settings = list(itertools.product(stage.kernel, stage.expand, stage.se))
        return {block: (block, settings) for block in stage.block}
    groups: dict[str, tuple[str, list]] = {}
    for op in stage.ops:
        key = op.name if sharing == "separate" else op.block
        groups.setdefault(key, (op.block, []))[1].append((op.kernel, op.expand, op.se))
    return groups
