"""timm's recipe for an ArchSpec: the model class, ``arch_def`` strings and keyword arguments
with which timm builds exactly mbnas's network (stem, blocks, head, classifier).

The grammar is timm's own (``timm/models/_efficientnet_builder.py``, ``_decode_block_str``):
``ir`` always has a 1x1 expansion conv; ``ds`` is depthwise -> (SE) -> linear 1x1, residual where
the shape allows; ``dsa`` activates its 1x1 conv and never adds a residual; ``er`` is a kxk
expansion -> (SE) -> linear 1x1; ``cn`` is a conv + BN + act without SE, residual only with
``_skip``. Every width timm will derive (expanded, SE, rounded outputs) is computed here as timm
computes it and compared with mbnas's; where they differ, or a block has no timm form, the recipe
is refused with :class:`TimmUnsupported` naming the block: never a string that builds another
network. Callables are given by name (see :func:`timm_recipe`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mbnas.arch import ArchSpec, BlockConfig
from mbnas.channels import make_divisible
from mbnas.errors import MbnasError
from mbnas.nn.blocks import Skip

# Names for timm's get_act_layer, and the codes of the arch_def's ``_n`` option.
TIMM_ACT = {"relu": "relu", "relu6": "relu6", "hswish": "hard_swish", "silu": "swish"}
TIMM_ACT_CODE = {"relu": "re", "relu6": "r6", "hswish": "hs", "silu": "sw"}
# mbnas's SE activation and gate per style (mbnas.nn.blocks.SE_ACTIVATIONS) as timm names.
TIMM_SE = {"mobilenetv3": {"gate_layer": "hard_sigmoid", "force_act_layer": "relu"},
           "efficientnet": {"gate_layer": "sigmoid", "force_act_layer": "swish"}}
RATIO_FORMATS = (".4g", ".6g", ".10g")


class TimmUnsupported(MbnasError):
    """The architecture has a layer that timm's arch_def grammar cannot express."""


@dataclass(frozen=True)
class TimmModel:
    """What is fixed for the whole timm network: the class's SE rule and model activation."""

    act: str  # mbnas name of the model's act_layer (stem, head)
    se_from_exp: bool  # SE width from the expanded width (MobileNetV3) or the input (EfficientNet)
    se_rounds: bool  # rd_round_fn=round_channels (mobilenetv3 SE style) or round


def timm_divisible(channels: float) -> int:
    """timm's ``round_channels``/``make_divisible`` (multiple of 8, at most 10% down)."""
    return make_divisible(channels)


def _ratio_strings(*values: float) -> Iterator[str]:
    """Each value written as a short decimal first, then with more digits."""
    for fmt in RATIO_FORMATS:
        for value in values:
            yield format(value, fmt)


def _expansion(block: BlockConfig, where: str, declared: float | None) -> str:
    """The shortest ``e`` for which timm's make_divisible(in * e) is mbnas's expanded width."""
    candidates = ([declared] if declared else []) + [block.mid_ch / block.in_ch]
    for text in _ratio_strings(*candidates):
        if timm_divisible(block.in_ch * float(text)) == block.mid_ch:
            return text
    raise TimmUnsupported(
        f"{where}: expanded width {block.mid_ch} from input {block.in_ch} cannot be built by "
        f"timm, which rounds in*e to a multiple of 8 ({timm_divisible(block.mid_ch)} here)")


def _se_width(model: TimmModel, channels: int, ratio: float, expansion: float) -> int:
    """The SE bottleneck width timm builds on ``channels`` for the arch_def ratio ``ratio``."""
    ratio = ratio if model.se_from_exp else ratio / expansion
    return timm_divisible(channels * ratio) if model.se_rounds else round(channels * ratio)


def _se_ratio(model: TimmModel, block: BlockConfig, channels: int, expansion: float,
              declared: float, where: str) -> str:
    """An ``se`` ratio for which timm builds mbnas's SE width on ``channels``."""
    exact = block.se_ch / channels
    scale = 1.0 if model.se_from_exp else expansion
    for text in _ratio_strings(declared, declared * scale, exact * scale):
        if _se_width(model, channels, float(text), expansion) == block.se_ch:
            return text
    raise TimmUnsupported(f"{where}: SE width {block.se_ch} on {channels} channels cannot be "
                          "built by timm's SqueezeExcite")


def _se_fields(model: TimmModel, block: BlockConfig, channels: int, expansion: float,
               declared: float, where: str) -> list[str]:
    if not block.se_ch:
        return []
    return [f"se{_se_ratio(model, block, channels, expansion, declared, where)}"]


def _unsupported(block: BlockConfig, where: str) -> str | None:
    """Why ``block`` has no timm block, or None."""
    if block.type == "skip" and Skip.projects(block):
        return "a skip layer that projects (linear 1x1 conv + BN) has no timm block"
    if block.type == "fused" and not block.expands and block.se_ch:
        return "a non-expanding Fused-MBConv with SE (timm's cn block has no SE)"
    if block.type == "conv" and block.se_ch:
        return "a conv with SE (timm's cn block has no SE)"
    if timm_divisible(block.out_ch) != block.out_ch:
        return (f"output width {block.out_ch}, which timm rounds to "
                f"{timm_divisible(block.out_ch)} (a multiple of 8)")
    return None


def block_fields(model: TimmModel, block: BlockConfig, where: str, declared: dict[str, Any]
                 ) -> list[str] | None:
    """timm fields of one block except repeats and stride; None for an identity skip layer."""
    reason = _unsupported(block, where)
    if reason:
        raise TimmUnsupported(f"{where}: {reason}; no timm recipe for this architecture")
    if block.type == "skip":
        return None  # the identity: timm's network simply has no layer there
    kernel, se = f"k{block.kernel}", declared.get("se") or 0.0
    if block.type in ("mbconv", "fused") and block.expands:
        expand = _expansion(block, where, declared.get("expand"))
        kind = "ir" if block.type == "mbconv" else "er"
        se_fields = _se_fields(model, block, block.mid_ch, float(expand), se, where)
        fields = [kind, kernel, f"e{expand}", f"c{block.out_ch}", *se_fields]
    elif block.type == "mbconv":
        fields = ["ds", kernel, f"c{block.out_ch}",
                  *_se_fields(model, block, block.in_ch, 1.0, se, where)]
    elif block.type == "ds":
        fields = ["dsa", kernel, f"c{block.out_ch}",
                  *_se_fields(model, block, block.in_ch, 1.0, se, where)]
    elif block.type == "fused":
        fields = ["cn", kernel, "e1", f"c{block.out_ch}", "skip"]
    else:
        fields = ["cn", kernel, f"c{block.out_ch}"]
    if block.act != model.act:
        fields.append(f"n{TIMM_ACT_CODE[block.act]}")
    return fields


def _runs(fields_and_strides: list[tuple[list[str], int]]) -> list[str]:
    """Equal consecutive blocks as one string ``<type>_r<N>_k.._s<stride>_...``."""
    runs: list[tuple[list[str], int, int]] = []  # fields, stride, repeats
    for fields, stride in fields_and_strides:
        if runs and runs[-1][0] == fields and stride == 1:
            runs[-1] = (fields, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((fields, stride, 1))
    return ["_".join([f[0], f"r{n}", f[1], f"s{stride}", *f[2:]]) for f, stride, n in runs]


def timm_model(arch: ArchSpec) -> TimmModel:
    """The class-wide settings: MobileNetV3 where the head has a hidden Linear."""
    mobilenetv3 = arch.se_style == "mobilenetv3"
    return TimmModel(act=arch.stem.act, se_from_exp=mobilenetv3 if arch.head.hidden else False,
                     se_rounds=mobilenetv3)


def _declared(arch: ArchSpec, stage_index: int, block_index: int) -> dict[str, Any]:
    stage = arch.stages[stage_index]
    return {"expand": stage.value("expand", block_index), "se": stage.value("se", block_index)}


def arch_def(arch: ArchSpec, model: TimmModel | None = None) -> list[list[str]]:
    """timm ``arch_def`` of the stages, e.g. ``ir_r2_k3_s2_e6_c24_se0.25``; identity skip layers
    are left out (with them any stage they empty). ``rN`` repeats a block N times; its stride
    applies to the first. Raises TimmUnsupported naming the first block timm cannot build."""
    model = model or timm_model(arch)
    stages = []
    for number, blocks in enumerate(arch.stage_blocks()):
        fields = []
        for index, block in enumerate(blocks):
            where = f"stage{number + 1}.block{index + 1}"
            found = block_fields(model, block, where, _declared(arch, number, index))
            if found is not None:
                fields.append((found, block.stride))
        if fields:
            stages.append(_runs(fields))
    return stages


def _head_stage(arch: ArchSpec, model: TimmModel) -> list[str]:
    """mbnas's head 1x1 conv as a timm ``cn`` block (MobileNetV3's form)."""
    channels = arch.head.channels
    if timm_divisible(channels) != channels:
        raise TimmUnsupported(f"head: width {channels}, which timm rounds to "
                              f"{timm_divisible(channels)}; no timm recipe for this architecture")
    act = "" if arch.head.act == model.act else f"_n{TIMM_ACT_CODE[arch.head.act]}"
    return [f"cn_r1_k1_s1_c{channels}{act}"]


def _check_stem_and_head(arch: ArchSpec) -> None:
    if arch.stem.stride != 2:
        raise TimmUnsupported(f"stem: stride {arch.stem.stride}, but timm's stems always stride "
                              "2; no timm recipe for this architecture")
    if arch.head.hidden and arch.head.act != arch.stem.act:
        raise TimmUnsupported(f"head: activation {arch.head.act} differs from the stem's "
                              f"{arch.stem.act}, but timm's MobileNetV3 uses one act_layer for "
                              "both; no timm recipe for this architecture")
    if arch.head.hidden and arch.stem.kernel != 3:
        raise TimmUnsupported(f"stem: kernel {arch.stem.kernel}, but timm's MobileNetV3 stem is "
                              "3x3; no timm recipe for this architecture")


def _norm_layer(arch: ArchSpec) -> dict[str, float]:
    """Keyword arguments of torch.nn.BatchNorm2d that differ from its defaults."""
    return {key: value for key, value in (("eps", arch.bn.eps), ("momentum", arch.bn.momentum))
            if value != {"eps": 1e-5, "momentum": 0.1}[key]}


def timm_recipe(arch: ArchSpec) -> dict[str, Any]:
    """``{"class", "arch_def", "kwargs"}`` such that ``getattr(timm.models, class)(block_args=
    decode_arch_def(arch_def), **kwargs)`` builds ``arch`` exactly, once names are resolved:
    ``act_layer`` with timm's get_act_layer; ``se_layer`` is SqueezeExcite's keyword arguments
    (``functools.partial(SqueezeExcite, ...)``, layer names resolved the same way and
    ``"round_channels"`` meaning timm's round_channels); ``norm_layer``, when present, is
    ``torch.nn.BatchNorm2d``'s keyword arguments. Raises TimmUnsupported naming the block."""
    _check_stem_and_head(arch)
    model = timm_model(arch)
    stages = arch_def(arch, model)
    se_layer = dict(TIMM_SE[arch.se_style])
    if model.se_rounds:
        se_layer["rd_round_fn"] = "round_channels"
    kwargs: dict[str, Any] = {"num_classes": arch.num_classes, "in_chans": arch.in_channels,
                              "stem_size": arch.stem.out, "fix_stem": True,
                              "act_layer": TIMM_ACT[model.act], "se_layer": se_layer}
    if arch.head.hidden:
        name = "MobileNetV3"
        if arch.head.channels:
            stages.append(_head_stage(arch, model))
        kwargs.update(num_features=arch.head.hidden, head_bias=True,
                      se_from_exp=model.se_from_exp)
    else:
        name = "EfficientNet"
        kwargs["stem_kernel_size"] = arch.stem.kernel
        if arch.head.channels and arch.head.act != model.act:
            stages.append(_head_stage(arch, model))  # its own activation: a block, not bn2's
            kwargs["num_features"] = 0
        else:
            kwargs["num_features"] = arch.head.channels or 0
    if _norm_layer(arch):
        kwargs["norm_layer"] = _norm_layer(arch)
    kwargs.update(drop_rate=arch.dropout, drop_path_rate=arch.drop_path)
    return {"class": name, "arch_def": stages, "kwargs": kwargs}
