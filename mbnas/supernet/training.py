"""Supernet warm-up with the sandwich rule and in-place distillation (BigNAS, AttentiveNAS).

Every step trains, on one batch, the largest member (on the labels, with label smoothing), the
smallest member and ``num_random`` random members (on the largest member's soft predictions when
``distill`` is on, else on the labels), accumulating their gradients into one optimiser step.
Training the extremes every step keeps both ends of the space good, which is what lets the
supernet rank the members in between.

Checkpoints hold the weights, optimiser, schedule, step, the batch position and every random
generator, so an interrupted run resumed from its last checkpoint ends with exactly the weights
of an uninterrupted one. The device is the supernet's: move it to CUDA and nothing else changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mbnas.arch import ArchSpec
from mbnas.data import DataConfig, EpochSampler, make_loader, set_epoch
from mbnas.distributed import (
    average_gradients,
    barrier,
    current_world,
    local_batch,
    means_across,
    read_checkpoint,
)
from mbnas.errors import ConfigError, Diverged
from mbnas.locking import file_lock
from mbnas.precision import FP32, Precision, optimizer_step, scaled_backward
from mbnas.resume import check_resumable
from mbnas.space import SearchSpace
from mbnas.supernet.network import Supernet
from mbnas.train import (
    OptimConfig,
    capture_rng_state,
    check_finite,
    check_optim_config,
    load_checkpoint,
    make_optimization,
    model_device,
    non_finite,
    recalibrate_bn,
    restore_rng_state,
    save_checkpoint,
)
from mbnas.validation import check_choice, check_int

RULES = ("sandwich", "uniform", "fair")


@dataclass
class SandwichConfig:
    """Supernet warm-up: sampling rule, steps, random members per step, distillation, optimiser.

    ``sandwich`` (once-for-all, BigNAS) trains the largest, the smallest and ``num_random`` random
    members every step; ``uniform`` (SPOS) only ``num_random`` random members, without
    distillation; ``fair`` (FairNAS) as many members as the widest decision has options, which
    together train every option of every decision equally often (``num_random`` unused).
    """

    steps: int = 300
    num_random: int = 2  # random members per step, besides the largest and the smallest
    distill: bool = True  # smaller members learn from the largest member's soft predictions
    rule: str = "sandwich"  # sandwich | uniform | fair
    seed: int = 0  # drives the choice of random members
    optim: OptimConfig = field(default_factory=OptimConfig)  # lr, warm-up, label smoothing, ...
    checkpoint_every: int = 50  # steps between checkpoints (and one at the end)


@dataclass(frozen=True)
class SandwichResult:
    """Where training stopped, and the largest member's loss on the last ``len(losses)`` steps."""

    step: int
    losses: tuple[float, ...]


def check_sandwich_config(cfg: SandwichConfig) -> None:
    """Reject settings that cannot work, naming the key."""
    check_int(cfg.steps, "sandwich.steps", minimum=0)
    check_int(cfg.num_random, "sandwich.num_random", minimum=0 if cfg.rule == "sandwich" else 1)
    check_choice(cfg.rule, "sandwich.rule", RULES)
    check_int(cfg.checkpoint_every, "sandwich.checkpoint_every", minimum=1)
    check_optim_config(cfg.optim)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability distribution (in-place distillation's loss)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def sandwich_step(supernet: Supernet, archs: list[ArchSpec], images: torch.Tensor,
                  labels: torch.Tensor, criterion: nn.Module, distill: bool, *,
                  precision: Precision = FP32, scaler: torch.amp.GradScaler | None = None,
                  agree: Callable[[list[float]], list[float]] | None = None) -> float:
    """Forward and backward every member in ``archs`` (largest first); return the first's loss.

    Gradients accumulate; the caller zeroes them before and steps the optimiser after (and, with
    several processes, averages them once: :func:`mbnas.distributed.average_gradients`). A
    member's non-finite loss raises :class:`~mbnas.errors.Diverged` before the optimiser step,
    so it never reaches the weights. ``agree`` turns this process's member losses into the ones
    all data-parallel ranks agree on (their means, :func:`mbnas.distributed.means_across`), so
    that a loss that is NaN on one rank stops every rank at the same step.
    """
    supernet.train()
    images = precision.inputs(images)
    teacher, losses = None, []
    for arch in archs:
        supernet.set_active(arch)
        with precision.autocast():
            logits = supernet(images).float()
        if teacher is None or not distill:
            loss = criterion(logits, labels)
        else:
            loss = soft_cross_entropy(logits, teacher)
        if teacher is None:
            teacher = logits.detach().softmax(dim=1)
        losses.append(loss.detach())
        scaled_backward(loss, scaler)
    values = torch.stack(losses).tolist()  # one device sync a step, not one a member
    if agree is not None:
        values = agree(values)
    for arch, value in zip(archs, values):
        check_finite(value, f"the loss of member {arch.name}")
    return values[0]


def sandwich_members(space: SearchSpace, rng: random.Random, num_random: int,
                     rule: str = "sandwich") -> list[ArchSpec]:
    """The members of one step: largest, smallest (sandwich rule only), ``num_random`` random;
    the fair rule's strictly fair set instead (:meth:`SearchSpace.fair_sample`)."""
    if rule == "fair":
        return space.fair_sample(rng)
    extremes = [space.largest(), space.smallest()] if rule == "sandwich" else []
    return [*extremes, *(space.sample_random(rng) for _ in range(num_random))]


def train_supernet(supernet: Supernet, space: SearchSpace, train_loader: Iterable,
                   cfg: SandwichConfig, *, checkpoint: Path | None = None,
                   progress: bool = True, precision: Precision = FP32,
                   on_step: Callable[[int], None] | None = None) -> SandwichResult:
    """Warm up ``supernet`` for ``cfg.steps`` sandwich steps, resuming from ``checkpoint``;
    ``on_step(step)`` after each (the search times the warm-up with it).

    A finished checkpoint makes this a no-op, so every process of a run can call it. Under
    torchrun every rank calls it with its shard of the data (``make_loader(..., shard=)`` at
    ``batch_size / ranks``): all ranks draw the same members (one seed), gradients of all
    members are averaged once per step, rank 0 alone writes the checkpoint, which any number of
    processes can resume. A non-finite loss or weights raise :class:`~mbnas.errors.Diverged`,
    the checkpoint on disk left as it was: weights holding NaN never replace finite ones (under
    torchrun on every rank at the same step: the ranks agree on the losses they check).
    """
    check_sandwich_config(cfg)
    device = model_device(supernet)
    main = current_world().main
    precision.model(supernet)
    optimizer, scheduler, criterion = make_optimization(supernet, cfg.optim, cfg.steps)
    scaler = precision.scaler()
    rng, stream, step = random.Random(cfg.seed), BatchStream(train_loader), 0
    history: list[float] = []  # every step's loss since the start, kept in the checkpoint
    settings = _settings(cfg, space)
    state = read_checkpoint(checkpoint)
    if state is not None:
        check_resumable(state.get("settings", {}), settings, where=str(checkpoint),
                        problem="was written by a run with other settings",
                        fix="use the same settings, or delete the checkpoint to start afresh")
        supernet.load_state_dict(state["model"])
        if state["optimizer"] is not None:  # a finished warm-up keeps only the weights
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        rng.setstate(_python_state(state["sampler"]))
        stream = BatchStream(train_loader, **state["data"])
        restore_rng_state(state["rng"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = state["step"]
        history = list(state.get("losses", []))
        if progress and main and step >= cfg.steps:
            print(f"supernet warm-up already done ({checkpoint}, {step} steps): its weights "
                  "are loaded, candidates are only scored", file=sys.stderr, flush=True)
    losses: list[float] = []
    saved = step if checkpoint is not None and Path(checkpoint).is_file() else None
    with tqdm(total=cfg.steps, initial=step, disable=not (progress and main),
              desc="supernet warm-up", unit="step", dynamic_ncols=True) as bar:
        while step < cfg.steps:
            images, labels = (t.to(device, non_blocking=True) for t in stream.next())
            optimizer.zero_grad(set_to_none=True)
            archs = sandwich_members(space, rng, cfg.num_random, cfg.rule)
            distill = cfg.distill and cfg.rule == "sandwich"
            try:
                loss = sandwich_step(supernet, archs, images, labels, criterion, distill,
                                     precision=precision, scaler=scaler, agree=means_across)
            except Diverged as error:
                raise warmup_diverged(error, step, cfg, checkpoint, saved) from None
            average_gradients(supernet.parameters())
            losses.append(loss)
            history.append(losses[-1])
            optimizer_step(optimizer, supernet.parameters(), cfg.optim.grad_clip, scaler)
            scheduler.step()
            step += 1
            if on_step is not None:
                on_step(step)
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.4f}")
            if checkpoint is not None and (step % cfg.checkpoint_every == 0
                                           or step == cfg.steps):
                # Every rank checks (their weights are the same), so all of them stop together.
                if non_finite(supernet.state_dict()):
                    raise warmup_diverged(Diverged("weights hold NaN or infinity"), step, cfg,
                                          checkpoint, saved)
                saved = step
            if main and saved == step:
                # Once finished, the optimiser state (as large as the weights) is never needed.
                done = step == cfg.steps
                save_checkpoint(checkpoint, {
                    "settings": settings, "step": step, "model": supernet.state_dict(),
                    "optimizer": None if done else optimizer.state_dict(),
                    "scheduler": None if done else scheduler.state_dict(),
                    "scaler": None if done else scaler.state_dict(),
                    "sampler": rng.getstate(), "data": stream.position(),
                    "rng": capture_rng_state(), "losses": history})
    barrier()  # the finished checkpoint is on disk before any rank moves on
    return SandwichResult(step, tuple(losses))


def warmup_diverged(error: Diverged, step: int, cfg: SandwichConfig, checkpoint: Path | None,
                    saved: int | None) -> Diverged:
    """``error`` with when the warm-up diverged, the checkpoint it kept and how to go on."""
    kept = (f"{checkpoint} keeps step {saved}, the last finite checkpoint" if saved is not None
            else "no checkpoint was written")
    return Diverged(f"supernet warm-up diverged after step {step} of {cfg.steps} ({error}); "
                    f"{kept}; start a new run (another name=) with a lower evaluator.optim.lr "
                    f"(now {cfg.optim.lr:g}), evaluator.optim.grad_clip=1 or more "
                    "evaluator.optim.warmup_steps")


def shared_warmup(supernet: Supernet, space: SearchSpace, data: DataConfig,
                  cfg: SandwichConfig, *, checkpoint: Path, lock: Path,
                  precision: Precision = FP32,
                  on_step: Callable[[int], None] | None = None) -> SandwichResult:
    """A run's warm-up, done once by all the processes that share its folder.

    Search workers take turns on ``lock``: the first warms up (or resumes), the others wait,
    saying so, and then load its finished checkpoint. Under torchrun (``python -m mbnas
    warmup``) the ranks train together on their shards of ``data``, rank 0 holding the lock.
    """
    world = current_world()
    loader = make_loader(data, "train", shuffle=True, shard=world.shard,
                         batch_size=local_batch(data.batch_size, world))
    what = "the supernet warm-up (another process runs it; this one will then only score)"
    guard = file_lock(lock, what) if world.main else contextlib.nullcontext()
    with guard:
        return train_supernet(supernet, space, loader, cfg, checkpoint=checkpoint,
                              progress=True, precision=precision, on_step=on_step)


def load_finished_warmup(supernet: Supernet, checkpoint: Path, steps: int) -> None:
    """Load the weights of a warm-up of ``steps`` steps that has finished, training nothing
    (what re-exporting a run needs); ConfigError if it is missing or unfinished."""
    state = read_checkpoint(checkpoint)
    if state is None:
        raise ConfigError(str(checkpoint), "missing: the weights are derived from the run's "
                          "warmed-up supernet", "pass weights=false")
    if state["step"] < steps:
        raise ConfigError(str(checkpoint), f"holds an unfinished warm-up (step {state['step']} "
                          f"of {steps})", "run the search again to finish it, or pass "
                          "weights=false")
    supernet.load_state_dict(state["model"])


def warmup_losses(checkpoint: Path) -> list[float]:
    """The largest member's loss at every warm-up step a checkpoint has seen (empty if none)."""
    if not Path(checkpoint).is_file():
        return []
    # Mapped, not read: a search looks at the history of a supernet of hundreds of MB.
    return list(load_checkpoint(checkpoint, mmap=True).get("losses", []))


def _settings(cfg: SandwichConfig, space: SearchSpace) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (not how often it is written)."""
    settings = dataclasses.asdict(cfg)
    settings.pop("checkpoint_every")
    settings["space"] = space.name
    return settings


def _python_state(state: Any) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


def subnet(supernet: Supernet, arch: ArchSpec, loader: Iterable, num_images: int = 2000
           ) -> nn.Module:
    """``arch``'s static network with inherited weights and BN statistics of its own.

    Shared BatchNorm statistics belong to no single member, so they are re-estimated on
    ``num_images`` training images (once-for-all uses about 2000) before evaluation.
    """
    model = supernet.extract(arch)
    recalibrate_bn(model, loader, num_images)
    return model.eval()


class BatchStream:
    """Batches of a loader forever, with a position (epoch, batch) to resume from exactly.

    An mbnas loader (:func:`mbnas.data.make_loader`) starts part-way through an epoch by itself.
    Any other loader is replayed: the random state it drew its order from at the start of the
    epoch is put back, the batches already used are skipped, and the global state is restored.
    """

    def __init__(self, loader: Iterable, epoch: int = 0, batch: int = 0,
                 epoch_rng: dict[str, Any] | None = None):
        self.loader, self.epoch, self.batch, self.epoch_rng = loader, epoch, batch, epoch_rng
        self._iterator: Iterator | None = None

    def position(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "epoch_rng": self.epoch_rng}

    def next(self) -> Any:
        """The next batch, starting a new epoch when the loader runs out."""
        if self._iterator is None:
            self._open()
        try:
            batch = next(self._iterator)
        except StopIteration:
            self.epoch, self.batch, self.epoch_rng = self.epoch + 1, 0, None
            self._open()
            batch = next(self._iterator)
        self.batch += 1
        return batch

    def _open(self) -> None:
        native = isinstance(getattr(self.loader, "sampler", None), EpochSampler)
        generator = getattr(self.loader, "generator", None)
        resuming = self.epoch_rng is not None
        now = torch.get_rng_state()
        if resuming:
            torch.set_rng_state(self.epoch_rng["torch"])
            if generator is not None and self.epoch_rng["generator"] is not None:
                generator.set_state(self.epoch_rng["generator"])
        else:
            self.epoch_rng = {"torch": now,
                              "generator": None if generator is None else generator.get_state()}
        set_epoch(self.loader, self.epoch, self.batch if native else 0)
        self._iterator = iter(self.loader)
        if resuming:
            if not native:
                for _ in range(self.batch):  # the first one draws the epoch's order
                    next(self._iterator)
            torch.set_rng_state(now)
