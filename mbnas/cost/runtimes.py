"""The runtimes latency is measured through: PyTorch eager, or onnxruntime on an ONNX export.

A runtime turns a module and an input shape into a call that runs one inference; the timing
(warm-up, repeats, median) is the same for every runtime (:mod:`mbnas.cost.device_script`).
Inputs are float32 NCHW by default; the torch runtime also measures bfloat16 / float16 weights
and inputs and the NHWC (channels_last) layout, as the settings state.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from mbnas.cost.device_script import onnxruntime_call, onnxruntime_version
from mbnas.errors import ConfigError, MbnasError
from mbnas.version import __version__

RUNTIMES = ("torch", "onnxruntime")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LAYOUTS = ("NCHW", "NHWC")  # NHWC: torch.channels_last
ONNX_OPSET = 17
WEIGHTS_LEFT_OUT_BYTES = 1024  # float weights this large leave a device bundle's ONNX files
GENERATED_WEIGHTS = "generated-by-measure_blocks.py"  # their external data "file": none exists


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how an inference runs: runtime, CPU threads, batch size, dtype, layout."""

    runtime: str = "torch"
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    layout: str = "NCHW"

    def describe(self) -> dict[str, Any]:
        """The settings and library versions a table records."""
        return {"runtime": self.runtime, "threads": self.threads, "batch": self.batch,
                "dtype": self.dtype, "layout": self.layout, "versions": runtime_versions(self)}


def check_runtime(runtime: str) -> None:
    """ConfigError unless ``runtime`` is known and importable here."""
    if runtime not in RUNTIMES:
        raise ConfigError("latency.runtime", f"unknown runtime {runtime!r}",
                          f"use one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        try:
            onnxruntime_version()
        except ImportError:
            raise MbnasError("latency.runtime=onnxruntime needs onnxruntime: "
                             "`pip install -e \".[onnx]\"` (or `pip install onnxruntime`)"
                             ) from None


def check_format(runtime: str, dtype: str, layout: str) -> None:
    """ConfigError unless ``runtime`` can measure in ``dtype`` and ``layout``."""
    if dtype not in DTYPES:
        raise ConfigError("latency.dtype", f"unknown dtype {dtype!r}",
                          f"use one of {', '.join(DTYPES)}")
    if layout not in LAYOUTS:
        raise ConfigError("latency.layout", f"unknown layout {layout!r}",
                          f"use one of {', '.join(LAYOUTS)}")
    if runtime != "torch" and (dtype, layout) != ("float32", "NCHW"):
        raise ConfigError("latency.runtime", f"{runtime} measures float32 NCHW exports only",
                          "use latency.runtime=torch for other dtypes and layouts")


def runtime_versions(settings: RuntimeSettings) -> dict[str, str]:
    """The versions the measured latency depends on: mbnas, torch and the runtime's own."""
    versions = {"mbnas": __version__, "torch": torch.__version__}
    if settings.runtime == "onnxruntime":
        versions["onnxruntime"] = onnxruntime_version()
    return versions


def batched(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """``shape`` with its leading (batch) dimension set to ``batch``."""
    return (batch, *shape[1:])


def require_onnx(packages: tuple[str, ...] = ("onnx",)) -> None:
    """MbnasError naming the extra to install unless ``packages`` import: what exporting to ONNX
    needs (the TorchScript exporter: onnx; the dynamo one: onnxscript too)."""
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MbnasError(f"exporting to ONNX needs the {name} package: `pip install -c "
                             "constraints.txt -e \".[onnx]\"`") from None


def onnx_bytes(module: torch.nn.Module, shape: tuple[int, ...]) -> bytes:
    """``module`` (eval mode) as an ONNX model with one input ``image`` of ``shape``."""
    require_onnx()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter: seconds faster per block than the dynamo one, same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(*shape),), buffer, dynamo=False,
                          input_names=["image"], output_names=["output"],
                          opset_version=ONNX_OPSET)
    return buffer.getvalue()


def without_weights(model: bytes, smallest: int = WEIGHTS_LEFT_OUT_BYTES
                    ) -> tuple[bytes, list[dict[str, Any]]]:
    """The ONNX ``model`` with its float32 weights of ``smallest`` bytes or more left out (marked
    as external data that the device script generates: see
    :func:`mbnas.cost.device_script.generated_weights`), and their names and shapes. Latency
    depends on the weights' shapes, not their values; small tensors (shapes, per-channel
    constants) stay in the file."""
    require_onnx()
    import onnx

    proto = onnx.load_from_string(model)
    left_out = []
    for tensor in proto.graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.raw_data) < smallest:
            continue
        left_out.append({"name": tensor.name, "shape": list(tensor.dims)})
        size = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", GENERATED_WEIGHTS), ("offset", "0"),
                           ("length", str(size))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return proto.SerializeToString(), left_out


def make_call(module: torch.nn.Module, shape: tuple[int, ...], settings: RuntimeSettings
              ) -> Callable[[], Any]:
    """A call running ``module`` once on a fixed input through the settings' runtime."""
    shape = batched(shape, settings.batch)
    if settings.runtime == "onnxruntime":
        return onnxruntime_call(onnx_bytes(module, shape), shape, settings.threads)
    module, x = module.eval(), torch.randn(*shape)
    if settings.dtype != "float32":
        module, x = module.to(DTYPES[settings.dtype]), x.to(DTYPES[settings.dtype])
    if settings.layout == "NHWC" and len(shape) == 4:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def call() -> Any:
        with torch.inference_mode():
            return module(x)

    return call


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``threads`` for the block, then restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Identity(torch.nn.Module):
    """The cheapest model a runtime can run (its input as its output): its call overhead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
