"""Training primitives shared by full training, supernet warm-up and the search's evaluators.

Optimiser and schedule construction, one optimisation step, evaluation, BatchNorm
recalibration, atomic checkpoints and RNG state capture. The loops that use them (the ``train``
command, the supernet's sandwich rule, brief fine-tuning) live with their callers.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from mbnas.data import set_epoch
from mbnas.errors import ConfigError, Diverged, MbnasError
from mbnas.precision import FP32, Precision, optimizer_step, scaled_backward
from mbnas.validation import check_choice, check_float, check_int

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (the ``optim`` config node's schema)."""

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    warmup_steps: int = 0
    label_smoothing: float = 0.1
    grad_clip: float = 0.0  # max gradient norm; 0 turns clipping off


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (0..1), mean cross-entropy and the number of images scored."""

    accuracy: float
    loss: float
    samples: int

    def to_dict(self) -> dict[str, float | int]:
        return {"accuracy": self.accuracy, "loss": self.loss, "samples": self.samples}


# ---------------------------------------------------------------- optimisation


def check_optim_config(cfg: OptimConfig) -> None:
    """Reject optimiser settings that cannot work, naming the key."""
    check_choice(cfg.optimizer, "optim.optimizer", OPTIMIZERS)
    check_float(cfg.lr, "optim.lr", 0.0, low_inclusive=False)
    check_float(cfg.momentum, "optim.momentum", 0.0, 1.0)
    check_float(cfg.weight_decay, "optim.weight_decay", 0.0)
    check_int(cfg.warmup_steps, "optim.warmup_steps", minimum=0)
    check_float(cfg.label_smoothing, "optim.label_smoothing", 0.0, 0.99)
    check_float(cfg.grad_clip, "optim.grad_clip", 0.0)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights with decay; BatchNorm parameters and biases (1-D tensors) without."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW; no weight decay on BN and bias parameters."""
    check_choice(cfg.optimizer, "optim.optimizer", OPTIMIZERS)
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate factor at ``step``: linear warm-up to 1, then cosine decay to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``cfg.warmup_steps`` then cosine to 0 at ``total_steps``; step it
    once per optimiser step."""
    warmup = min(cfg.warmup_steps, max(0, total_steps - 1))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total_steps))


def make_criterion(cfg: OptimConfig) -> nn.Module:
    """Cross-entropy with the configured label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


class Optimization(NamedTuple):
    """What a training loop steps: the optimiser, its learning-rate schedule and the loss."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    criterion: nn.Module


def make_optimization(model: nn.Module, cfg: OptimConfig, total_steps: int) -> Optimization:
    """Optimiser, warm-up + cosine schedule over ``total_steps`` and criterion for ``model``."""
    optimizer = make_optimizer(model, cfg)
    return Optimization(optimizer, make_scheduler(optimizer, cfg, total_steps),
                        make_criterion(cfg))


def train_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
               optimizer: torch.optim.Optimizer, scheduler: Any, criterion: nn.Module, *,
               grad_clip: float = 0.0, precision: Precision = FP32,
               scaler: torch.amp.GradScaler | None = None,
               agree: Callable[[float], float] | None = None) -> float:
    """One optimiser step on ``batch`` (moved to the model's device) under ``precision``
    (``scaler``: the run's loss scaler for fp16); returns the loss.

    A non-finite loss raises :class:`~mbnas.errors.Diverged` before it reaches the weights.
    ``agree`` turns this process's loss into the one all data-parallel ranks agree on (their
    mean, :func:`mbnas.distributed.mean_across`): checked before the backward pass, whose
    gradient reduction waits for every rank, it makes all ranks stop at the same step."""
    device = model_device(model)
    images, labels = (t.to(device, non_blocking=True) for t in batch)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        loss = criterion(model(precision.inputs(images)), labels)
    value = float(loss.detach())
    value = check_finite(agree(value) if agree is not None else value, "the training loss")
    scaled_backward(loss, scaler)
    optimizer_step(optimizer, model.parameters(), grad_clip, scaler)
    if scheduler is not None:
        scheduler.step()
    return value


def check_finite(value: float, what: str) -> float:
    """``value``, or :class:`~mbnas.errors.Diverged` naming ``what`` when it is NaN or infinite."""
    if not math.isfinite(value):
        raise Diverged(f"{what} is {value}")
    return value


def non_finite(state: Mapping[str, Any]) -> list[str]:
    """The names of the floating-point tensors in ``state`` (a state_dict) that hold NaN or
    infinity: weights that must never be saved over a good checkpoint."""
    return [key for key, value in state.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def check_finite_weights(state: Mapping[str, Any]) -> None:
    """:class:`~mbnas.errors.Diverged` when a tensor of ``state`` holds NaN or infinity."""
    bad = non_finite(state)
    if bad:
        raise Diverged(f"{len(bad)} weight tensors hold NaN or infinity (first {bad[0]})")


# ---------------------------------------------------------------- evaluation and BN statistics


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, *, max_batches: int | None = None) -> EvalResult:
    """Top-1 accuracy and mean cross-entropy over ``loader`` in eval mode, without gradients."""
    device, was_training = model_device(model), model.training
    model.eval()
    correct, loss_sum, samples = 0, 0.0, 0
    try:
        for index, (images, labels) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            samples += len(labels)
    finally:
        model.train(was_training)
    if samples == 0:
        raise MbnasError("evaluate: the loader gave no images; check data.split and the "
                         "dataset size")
    return EvalResult(correct / samples, loss_sum / samples, samples)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, num_images: int) -> int:
    """Re-estimate every BatchNorm's running statistics on about ``num_images`` images.

    Needed whenever weights are inherited (a subnet of a supernet): the running statistics
    belong to other networks. Statistics are reset and averaged cumulatively (momentum None)
    in train mode without gradients; momenta and the training mode are restored. Returns the
    number of images used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    device, was_training, seen = model_device(model), model.training, 0
    model.train()
    try:
        for images, _ in loader:
            if seen >= num_images:
                break
            model(images[:num_images - seen].to(device))
            seen += min(len(images), num_images - seen)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.train(was_training)
    return seen


# ---------------------------------------------------------------- checkpoints and RNG state


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str | Path, *, weights_only: bool = True,
                    mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU.

    ``weights_only`` (the safe default) accepts tensors, numbers, strings and containers, which
    is all mbnas writes; pass False only for files you trust that hold other objects. ``mmap``
    maps the tensors instead of reading them: for a look at the small entries of a large file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "no such checkpoint", "check the path or the run name")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except Exception as error:  # noqa: BLE001 (torch raises many types for a bad file)
        raise MbnasError(f"{path}: corrupt or incompatible checkpoint ({type(error).__name__}); "
                         "delete it to start afresh, or point to another file") from None
    if not isinstance(state, dict):
        raise MbnasError(f"{path}: not an mbnas checkpoint (holds {type(state).__name__}); "
                         "delete it to start afresh, or point to another file")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when available) CUDA generator states, checkpoint-safe."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "position": position, "has_gauss": has_gauss, "gauss": gauss},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states :func:`capture_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["position"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- devices and iteration


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError("device", f"{name!r} is not a device",
                          "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{name!r} requested but CUDA is not available",
                          "use device=auto or device=cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("device", f"{name!r} is not supported", "use auto, cpu, cuda or cuda:N")
    return device


def infinite(loader: Iterable, start_epoch: int = 0) -> Iterator[Any]:
    """Batches of ``loader`` forever, advancing its epoch (order and augmentation) each pass."""
    epoch = start_epoch
    while True:
        set_epoch(loader, epoch)  # no-op for loaders that are not mbnas's
        yield from loader
        epoch += 1
