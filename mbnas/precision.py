"""Mixed precision and memory layout of training: ``amp`` and ``channels_last``, with torch's own
engines (``torch.autocast``, ``torch.amp.GradScaler``, ``torch.channels_last``).

``amp=bf16`` runs the forward pass under autocast in bfloat16 (no loss scaling: bfloat16 has
float32's range); ``amp=fp16`` in float16 with a GradScaler, which scales the loss so small
gradients survive and skips a step whose gradients overflowed; ``amp=off`` is float32.
``channels_last`` stores the network's weights and its input batches NHWC, the layout tensor cores
and oneDNN convolutions prefer. ``auto`` picks what is right for the device: on CUDA bf16 where
the GPU supports it (else fp16); on CPU float32, since CPU autocast mostly converts back and
forth; channels_last on both (on a 2-core AVX2 CPU, float32 training steps ran 1.2-1.7x faster
than NCHW, all but an unbudgeted 32 px warm-up at 0.96x). Small images are the exception on
CUDA: at 32 px a step is too short for half precision to pay for autocast's casts (bf16 ran at
0.65-0.94x of float32 on an H100, float32 channels_last at 1.15x), so ``auto`` keeps float32
below :data:`AMP_MIN_RESOLUTION` (BENCHMARKS.md, "Scale out").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from mbnas.errors import ConfigError
from mbnas.validation import check_choice

AMP = ("auto", "off", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AMP_MIN_RESOLUTION = 64  # measured: slower at 32 px, 2.8x faster at 224 px; nothing in between


@dataclass(frozen=True)
class Precision:
    """How a training step computes: autocast dtype (``off``: float32) and memory layout."""

    amp: str = "off"  # off | bf16 | fp16
    channels_last: bool = False
    device_type: str = "cpu"

    @property
    def dtype(self) -> torch.dtype:
        """The dtype autocast computes in (float32 when off)."""
        return DTYPES.get(self.amp, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's context: autocast to :attr:`dtype`, or nothing when off."""
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A loss scaler: active for fp16 only (a pass-through otherwise)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.amp == "fp16")

    def model(self, module: nn.Module) -> nn.Module:
        """``module`` in the chosen memory layout (in place, as ``Module.to`` is)."""
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of images in the chosen memory layout."""
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def describe(self) -> str:
        """One phrase for plans and logs, e.g. ``bf16 autocast, channels_last``."""
        dtype = "float32" if self.amp == "off" else f"{self.amp} autocast"
        return f"{dtype}, {'channels_last' if self.channels_last else 'NCHW'}"


FP32 = Precision()


def resolve_precision(amp: str, channels_last: bool | None, device: torch.device,
                      resolution: int | None = None) -> Precision:
    """The precision ``amp`` (auto | off | bf16 | fp16) and ``channels_last`` (None: auto) ask for
    on ``device`` for images of ``resolution`` pixels (None: unknown, taken as large);
    ConfigError for a combination the device cannot run."""
    check_choice(amp, "amp", AMP)
    cuda = device.type == "cuda"
    if amp == "auto":
        small = resolution is not None and resolution < AMP_MIN_RESOLUTION
        if cuda and not small:
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            amp = "off"
    if amp == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp", "bf16 is not supported by this GPU", "use amp=fp16 or amp=off")
    layout = True if channels_last is None else bool(channels_last)
    return Precision(amp, layout, device.type)


def scaled_backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()``, through the loss scaler when there is one."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


def optimizer_step(optimizer: torch.optim.Optimizer, parameters: Iterable[nn.Parameter],
                   grad_clip: float, scaler: torch.amp.GradScaler | None) -> None:
    """Clip (on unscaled gradients) and step; with fp16 the scaler skips overflowing steps."""
    if scaler is None:
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        return
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()
