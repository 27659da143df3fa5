"""Export an architecture: ArchSpec YAML, timm recipe, weights, ONNX, TorchScript and a
``torch.export`` program."""

from mbnas.export.artefacts import (
    Exported,
    ExportRequest,
    export_arch,
    export_onnx,
    export_program,
    export_standalone,
    export_torchscript,
    export_trial,
    save_weights,
    scalar_arch,
    write_atomically,
)
from mbnas.export.timm import TimmUnsupported, arch_def, timm_recipe

__all__ = ["ExportRequest", "Exported", "TimmUnsupported", "arch_def", "export_arch",
           "export_onnx", "export_program", "export_standalone", "export_torchscript",
           "export_trial", "save_weights", "scalar_arch", "timm_recipe", "write_atomically"]
