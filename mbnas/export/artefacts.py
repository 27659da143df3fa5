"""The files of an exported architecture, each written to a temporary name and renamed into place.

``<stem>.yaml`` (the ArchSpec, always), ``<stem>.timm.json`` (timm's recipe, where timm can build
the network), ``<stem>.pt`` (weights), ``<stem>.onnx``, ``<stem>.torchscript.pt`` and ``<stem>.pt2``
(a ``torch.export`` program, where PyTorch's deployment tools start). An export
replaces a whole set: the old YAML goes first and the new one is renamed into place last, and
files of the old set that the new one lacks are removed, so whenever ``<stem>.yaml`` exists every
file beside it belongs to it, however an export was interrupted.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mbnas.arch import PER_BLOCK_FIELDS, ArchSpec
from mbnas.cost import count
from mbnas.cost.runtimes import require_onnx
from mbnas.export.timm import TimmUnsupported, timm_recipe
from mbnas.nn import build

SUFFIXES = (".yaml", ".timm.json", ".pt", ".onnx", ".torchscript.pt", ".pt2")
# How to use each file; {path} is the file, {init} what `train init=` takes.
USES = {
    ".yaml": "python -m mbnas train arch={path}",
    ".timm.json": "timm: build_timm(json.load(...)) as in benchmarks/timm_compat.py",
    ".pt": "python -m mbnas train init={init}, or mbnas.build(yaml).load_state_dict(torch.load)",
    ".onnx": "onnxruntime.InferenceSession('{path}').run(None, {{'image': x}})",
    ".torchscript.pt": "torch.jit.load('{path}')(x)",
    ".pt2": "torch.export.load('{path}').module()(x)",
}


@dataclass(frozen=True)
class Exported:
    """What an export wrote, and timm's recipe or why there is none."""

    files: list[Path]
    timm: dict[str, Any] | None
    timm_refused: str | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``files``, ``timm`` and, where refused, ``timm_refused``."""
        out = {"files": [str(path) for path in self.files], "timm": self.timm}
        return out | ({"timm_refused": self.timm_refused} if self.timm_refused else {})

    def usage(self, init: str | Path | None = None) -> str:
        """One line: each file written and how to use it."""
        parts = []
        for path in self.files:
            suffix = next(s for s in SUFFIXES[::-1] if path.name.endswith(s))
            parts.append(f"{path} ({USES[suffix].format(path=path, init=init or path.parent)})")
        timm = "" if self.timm else f"; no timm recipe: {self.timm_refused}"
        return "wrote " + "; ".join(parts) + timm


def artefact(stem: Path, suffix: str) -> Path:
    """``stem`` with one of SUFFIXES (``best`` -> ``best.timm.json``)."""
    return stem.parent / f"{stem.name}{suffix}"


def scalar_arch(arch: ArchSpec) -> ArchSpec:
    """``arch`` with per-block lists whose values are all equal written as one value."""
    stages = []
    for stage in arch.stages:
        same = {name: getattr(stage, name)[0] for name in PER_BLOCK_FIELDS
                if isinstance(getattr(stage, name), tuple) and len(set(getattr(stage, name))) == 1}
        stages.append(dataclasses.replace(stage, **same))
    return arch.replace(stages=tuple(stages))


def timm_or_reason(arch: ArchSpec) -> tuple[dict[str, Any] | None, str | None]:
    """timm's recipe for ``arch``, or None and why timm cannot build it."""
    try:
        return timm_recipe(arch), None
    except TimmUnsupported as error:
        return None, str(error)


def arch_text(arch: ArchSpec, extra: dict | None = None) -> str:
    """The ArchSpec YAML, preceded by comments with ``extra`` and timm's arch_def (or why not)."""
    lines = [f"# {key}: {value}" for key, value in (extra or {}).items()]
    recipe, refused = timm_or_reason(arch)
    if recipe:
        lines += [f"# timm-style arch_def (timm {recipe['class']}; recipe: .timm.json):"]
        lines += [f"#   {stage}" for stage in recipe["arch_def"]]
    else:
        lines += [f"# timm-style arch_def: none ({refused})"]
    return "\n".join(lines) + "\n" + scalar_arch(arch).to_yaml()


def temporary(path: Path) -> Path:
    """The name ``path`` is written under before it is renamed into place."""
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then rename ``tmp`` to ``path``: readers see the old file or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_arch(arch: ArchSpec, path: str | Path, extra: dict | None = None) -> Path:
    """Write the ArchSpec YAML (atomically), with comments: ``extra`` and timm's arch_def."""
    text = arch_text(arch, extra)
    return write_atomically(path, lambda tmp: tmp.write_text(text))


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence third-party warnings and log lines while a model is traced or exported."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def example_input(arch: ArchSpec, batch: int = 1) -> torch.Tensor:
    """A random batch at the deployment resolution."""
    return torch.randn(batch, arch.in_channels, arch.resolution, arch.resolution)


def export_torchscript(model: torch.nn.Module, arch: ArchSpec, path: str | Path) -> Path:
    """A traced TorchScript file of the network in eval mode (any batch size)."""
    with quiet_exporters():
        traced = torch.jit.trace(model.eval(), example_input(arch))
    return write_atomically(path, lambda tmp: traced.save(str(tmp)))


def export_program(model: torch.nn.Module, arch: ArchSpec, path: str | Path) -> Path:
    """A ``torch.export`` program of the network in eval mode, its batch axis dynamic (traced
    at batch 2: an example of 1 would fix the axis at 1)."""
    with quiet_exporters():
        program = torch.export.export(model.eval(), (example_input(arch, batch=2),),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    return write_atomically(path, lambda tmp: save_program(program, tmp))


def save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    # Through an open file: given a name, torch warns on the console that the temporary
    # name does not end in .pt2.
    with open(path, "wb") as file:
        torch.export.save(program, file)


def onnx_dynamic_shapes(dynamic_size: bool) -> tuple[dict[int, Any]]:
    """A dynamic batch axis always; dynamic height and width on request."""
    axes: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    if dynamic_size:
        axes.update({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC})
    return (axes,)


def export_onnx(model: torch.nn.Module, arch: ArchSpec, path: str | Path, *,
                dynamic_size: bool = False) -> Path:
    """An ONNX file (input ``image``, output ``logits``) of the network in eval mode, its batch
    axis dynamic and, with ``dynamic_size``, its height and width too."""
    require_onnx(("onnx", "onnxscript"))

    def write(tmp: Path) -> None:
        with quiet_exporters(), contextlib.redirect_stdout(None):
            torch.onnx.export(model.eval(), (example_input(arch),), str(tmp),
                              input_names=["image"], output_names=["logits"], dynamo=True,
                              external_data=False, verbose=False,
                              dynamic_shapes=onnx_dynamic_shapes(dynamic_size))
    return write_atomically(path, write)


def deployable(model: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of ``model`` in the default (NCHW) memory layout: trained channels_last, its
    weights would carry NHWC strides into the files, and torch.export then specialises the
    ONNX batch axis it was asked to keep dynamic. A copy, since a search's subnet may share
    weight tensors with its supernet."""
    return copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """The network's state_dict, for ``mbnas.build(arch).load_state_dict(torch.load(path))``."""
    return write_atomically(path, lambda tmp: torch.save(model.state_dict(), tmp))


@dataclass(frozen=True)
class ExportRequest:
    """Which optional files an export writes."""

    onnx: bool = False
    torchscript: bool = False
    dynamic_size: bool = False  # ONNX with dynamic height and width besides the batch axis
    pt2: bool = False

    @property
    def runnable(self) -> bool:
        """Whether any file that runs the network (ONNX, TorchScript, torch.export) is asked."""
        return self.onnx or self.torchscript or self.pt2


def _write_set(arch: ArchSpec, stem: Path, summary: dict, model: torch.nn.Module | None,
               request: ExportRequest, recipe: dict | None, staged: dict[str, Path]) -> None:
    """Every file of the set under its temporary name, into ``staged`` by suffix."""
    if model is not None:
        model = deployable(model)
        staged[".pt"] = save_weights(model, temporary(artefact(stem, ".pt")))
    if recipe:
        text = json.dumps(recipe, indent=2) + "\n"
        staged[".timm.json"] = temporary(artefact(stem, ".timm.json"))
        staged[".timm.json"].write_text(text)
    if request.runnable:  # of the weights given, else of a freshly built network (on the CPU)
        network = model if model is not None else build(arch)
    if request.torchscript:
        staged[".torchscript.pt"] = export_torchscript(
            network, arch, temporary(artefact(stem, ".torchscript.pt")))
    if request.onnx:
        staged[".onnx"] = export_onnx(network, arch, temporary(artefact(stem, ".onnx")),
                                      dynamic_size=request.dynamic_size)
    if request.pt2:
        staged[".pt2"] = export_program(network, arch, temporary(artefact(stem, ".pt2")))
    staged[".yaml"] = temporary(artefact(stem, ".yaml"))
    staged[".yaml"].write_text(arch_text(arch, summary))


def export_trial(arch: ArchSpec, stem: Path, summary: dict, model: torch.nn.Module | None = None,
                 request: ExportRequest | None = None) -> Exported:
    """One consistent set: ``stem``.yaml always, .timm.json where timm can build ``arch``, the
    model's weights (.pt) when given and, on request, .onnx / .torchscript.pt / .pt2 (of the
    model, or of a freshly built network)."""
    request = request or ExportRequest()
    stem.parent.mkdir(parents=True, exist_ok=True)
    recipe, refused = timm_or_reason(arch)
    for stale in stem.parent.glob(f".{stem.name}.*.tmp"):  # left by a killed export
        stale.unlink(missing_ok=True)
    staged: dict[str, Path] = {}
    try:
        _write_set(arch, stem, summary, model, request, recipe, staged)
        # The YAML says which set is complete: out first, in last; stale files of the old set go.
        artefact(stem, ".yaml").unlink(missing_ok=True)
        for suffix in SUFFIXES[1:]:
            if suffix in staged:
                os.replace(staged[suffix], artefact(stem, suffix))
            else:
                artefact(stem, suffix).unlink(missing_ok=True)
        os.replace(staged[".yaml"], artefact(stem, ".yaml"))
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    files = [artefact(stem, suffix) for suffix in SUFFIXES if suffix in staged]
    return Exported(files, recipe, refused)


def export_standalone(arch: ArchSpec, out: str | Path, request: ExportRequest | None = None
                      ) -> Exported:
    """An architecture of its own (a reference or YAML) as ``out/<name>.*``, like a run's best:
    the YAML with its MACs and parameters, timm's recipe and the requested ONNX / TorchScript /
    torch.export files."""
    cost = count(arch)
    summary = {"macs": cost.macs, "params": cost.params, "activations": cost.activations,
               "resolution": arch.resolution}
    return export_trial(arch, Path(out) / arch.name, summary, None, request)
