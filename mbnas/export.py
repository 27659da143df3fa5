"""Export an architecture: ArchSpec YAML, a timm-style string, weights, ONNX and TorchScript."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from mbnas.arch import ArchSpec, BlockConfig, StageSpec
from mbnas.errors import MbnasError
from mbnas.nn import build
from mbnas.nn.blocks import Skip

_TIMM_BLOCK = {"mbconv": "ir", "fused": "er", "ds": "ds", "conv": "cn"}
_TIMM_ACT = {"relu": "re", "relu6": "r6", "hswish": "hs", "silu": "sw"}


class TimmUnsupported(MbnasError):
    """The architecture has a layer that timm's arch_def grammar cannot express."""


def _block_fields(stage: StageSpec, block: BlockConfig, index: int) -> list[str]:
    """timm fields of one block except repeats and stride, from the stage's declared values."""
    fields = [_TIMM_BLOCK[block.type], f"k{block.kernel}"]
    if block.type in ("mbconv", "fused"):
        expand = stage.value("expand", index)
        fields.append(f"e{expand if expand is not None else block.mid_ch / block.in_ch:.4g}")
    fields.append(f"c{block.out_ch}")
    if block.se_ch:
        fields.append(f"se{stage.value('se', index):.4g}")
    return fields + [f"n{_TIMM_ACT[block.act]}"]


def arch_string(arch: ArchSpec) -> list[list[str]]:
    """timm-style ``arch_def``, e.g. ``ir_r2_k3_s2_e6_c24_nre``: per stage, runs of equal blocks.

    As in timm, ``rN`` repeats a block N times and its stride applies to the first of them only.
    Absolute expanded widths (``mid``) appear as the ratio mid / input width.
    """
    stages = []
    for number, (stage, blocks) in enumerate(zip(arch.stages, arch.stage_blocks(), strict=True),
                                             start=1):
        runs: list[tuple[list[str], int, int]] = []  # fields, stride, repeats
        for index, block in enumerate(blocks):
            if block.type == "skip":
                if Skip.projects(block):
                    raise TimmUnsupported(f"stage{number}.block{index + 1}: a skip layer that "
                                          "projects (linear 1x1 conv + BN) has no timm block")
                continue  # the identity: timm's network simply has no layer there
            fields = _block_fields(stage, block, index)
            if runs and runs[-1][0] == fields and block.stride == 1:
                runs[-1] = (fields, runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((fields, block.stride, 1))
        stages.append(["_".join([f[0], f"r{n}", f[1], f"s{stride}", *f[2:]])
                       for f, stride, n in runs])
    return stages


def export_arch(arch: ArchSpec, path: str | Path, extra: dict | None = None) -> Path:
    """Write the ArchSpec YAML, preceded by comments with its timm string and any ``extra``."""
    lines = [f"# {key}: {value}" for key, value in (extra or {}).items()]
    try:
        lines += ["# timm-style arch_def:"] + [f"#   {stage}" for stage in arch_string(arch)]
    except TimmUnsupported as error:
        lines += [f"# timm-style arch_def: none ({error})"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + arch.to_yaml())
    return path


def export_torchscript(model: torch.nn.Module, arch: ArchSpec, path: str | Path) -> Path:
    """A traced TorchScript file of the network in eval mode, at the deployment resolution."""
    example = torch.randn(1, arch.in_channels, arch.resolution, arch.resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still used
        traced = torch.jit.trace(model.eval(), example)
        traced.save(str(path))
    return Path(path)


def export_onnx(model: torch.nn.Module, arch: ArchSpec, path: str | Path) -> Path:
    """An ONNX file of the network in eval mode (needs the ``onnx`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise MbnasError("ONNX export needs the onnx packages; install them with "
                         "`pip install -c constraints.txt -e \".[onnx]\"`") from None
    example = torch.randn(1, arch.in_channels, arch.resolution, arch.resolution)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations
        torch.onnx.export(model.eval(), (example,), str(path), input_names=["image"],
                          output_names=["logits"], dynamo=True, external_data=False,
                          verbose=False)
    return Path(path)


def export_trial(arch: ArchSpec, stem: Path, summary: dict, model: torch.nn.Module | None = None,
                 *, onnx: bool = False, torchscript: bool = False) -> list[Path]:
    """``stem``.yaml always; with a model, its weights (.pt) and, on request, .onnx / .ts."""
    paths = [export_arch(arch, stem.with_suffix(".yaml"), summary)]
    if model is None and (onnx or torchscript):
        model = build(arch)  # no inherited weights: the deployable graph still is the point
    elif model is not None:
        torch.save(model.state_dict(), stem.with_suffix(".pt"))
        paths.append(stem.with_suffix(".pt"))
    if torchscript:
        paths.append(export_torchscript(model.cpu(), arch, stem.with_suffix(".torchscript.pt")))
    if onnx:
        paths.append(export_onnx(model.cpu(), arch, stem.with_suffix(".onnx")))
    return paths
