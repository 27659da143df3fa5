"""Full training of one network in a run folder, resumable exactly, and scoring what it trained.

A train run (see :class:`mbnas.run_folder.RunFolder`) keeps its settings, the network as trained,
a checkpoint written every epoch and on interruption, TensorBoard curves and, once finished, the
weights and the validation result. Running the same settings again resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from mbnas.arch import ArchSpec
from mbnas.architectures import load_arch
from mbnas.config import merge_schema
from mbnas.cost import count
from mbnas.data import DataConfig, dataset_num_classes, make_loader, set_epoch
from mbnas.distributed import (
    World,
    average_buffers,
    barrier,
    broadcast_buffers,
    current_world,
    evaluate_shards,
    local_batch,
    mean_across,
    process_group,
    read_checkpoint,
    unwrap,
    wrap,
)
from mbnas.errors import ConfigError, Diverged, MbnasError
from mbnas.nn import build
from mbnas.precision import FP32, Precision, resolve_precision
from mbnas.resume import check_resumable
from mbnas.run_folder import RunFolder
from mbnas.train import (
    EvalResult,
    OptimConfig,
    capture_rng_state,
    check_finite,
    check_finite_weights,
    check_optim_config,
    evaluate,
    load_checkpoint,
    make_optimization,
    recalibrate_bn,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
    train_step,
)
from mbnas.validation import check_float, check_int

CHECKPOINT_FORMAT = "mbnas-train/1"
# Settings that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("progress", "device", "runs_dir", "name", "data.workers", "amp",
                     "channels_last")


@dataclass
class TrainConfig:
    """Schema of ``conf/train.yaml``."""

    arch: str | None = None  # built-in name or ArchSpec YAML; null: the one in `init`
    init: str | None = None  # a search run (best.yaml + best.pt) or train run to start from
    name: str | None = None  # run folder runs/<name>; default: the architecture's name
    runs_dir: str = "runs"
    epochs: int = 30
    drop_path: float | None = None  # stochastic depth rate of the last block; null: the arch's
    bn_images: int = 2048  # BN recalibration images, all ranks together (inherited, final); 0: off
    device: str = "auto"
    amp: str = "auto"  # auto | off | bf16 | fp16 (auto: bf16 or fp16 on CUDA, off on CPU)
    channels_last: bool | None = None  # NHWC weights and batches; None: true
    seed: int = 0
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass(frozen=True)
class TrainOutcome:
    """A train run's folder and result; ``already_trained`` when it had finished before;
    ``main``: whether this process is the one that reports (rank 0 under torchrun)."""

    run: RunFolder
    result: dict[str, Any]
    already_trained: bool
    main: bool = True


def check_train_config(cfg: TrainConfig) -> None:
    """Reject settings that cannot work, naming the key."""
    check_int(cfg.epochs, "epochs")
    check_int(cfg.bn_images, "bn_images", minimum=0)
    check_int(cfg.seed, "seed", minimum=0)
    if cfg.drop_path is not None:
        check_float(cfg.drop_path, "drop_path", 0.0, 0.9)
    check_optim_config(cfg.optim)


# ---------------------------------------------------------------- networks on disk


def weight_mismatches(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                      skip_classifier: bool) -> list[str]:
    """How ``state`` fails to fit a network whose state_dict is ``own``: missing, unexpected and
    wrongly shaped tensors (a classifier for other classes aside when ``skip_classifier``)."""
    def ignored(key: str) -> bool:
        return skip_classifier and key.startswith("head.classifier.")
    problems = [f"{k} missing" for k in own if k not in state and not ignored(k)]
    problems += [f"{k} unexpected" for k in state if k not in own]
    problems += [f"{k} is {tuple(state[k].shape)}, the architecture's {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape and not ignored(k)]
    return problems


def load_weights(model: nn.Module, path: Path, *, skip_classifier: bool = False) -> None:
    """Load a state_dict into ``model``, checked against its architecture first; a classifier
    for other classes may be left fresh."""
    state = load_checkpoint(path)
    state = state.get("model", state)
    own = model.state_dict()
    problems = weight_mismatches(own, state, skip_classifier)
    if problems:
        raise ConfigError(str(path), f"weights do not match the architecture: {len(problems)} "
                          f"tensors differ, first {problems[0]}", "use the architecture the "
                          "weights were saved with (leave arch unset), or export the run again")
    if skip_classifier:
        state = {k: v for k, v in state.items()
                 if not (k.startswith("head.classifier.") and v.shape != own[k].shape)}
    model.load_state_dict(state, strict=not skip_classifier)


def network_arch(cfg: TrainConfig, num_classes: int) -> tuple[ArchSpec, Path | None]:
    """The ArchSpec to train (classes set to the dataset's) and the weights to start from."""
    weights = None
    if cfg.init:
        arch_path, weights = RunFolder(Path(cfg.init)).network(weights_required=False)
        if weights is None:
            print(f"{cfg.init} holds no weights (its search scored networks untrained, or "
                  "exported none): training its architecture from scratch", flush=True)
        arch = load_arch(cfg.arch or arch_path)
    elif cfg.arch:
        arch = load_arch(cfg.arch)
    else:
        raise ConfigError("arch", "not given", "use arch=<built-in name or YAML path>, or "
                          "init=runs/<search run> to train the architecture a search found")
    arch = arch.replace(num_classes=num_classes)
    if cfg.drop_path is not None:
        arch = arch.replace(drop_path=cfg.drop_path)
    return arch, weights


def run_data(folder: str | Path, changes: Mapping[str, Any]) -> tuple[DataConfig, bool]:
    """The data a run was trained on (its ``config.yaml``) with ``changes`` (``None`` values:
    keep the run's own) applied; and whether the run's own settings were found."""
    saved = RunFolder(Path(folder)).saved_settings() or {}
    own = saved.get("data")
    given = {key: value for key, value in changes.items() if value is not None}
    merged = merge_schema(DataConfig, OmegaConf.merge(own or {}, given),
                          prefix="data", fix="check the data.* settings")
    return OmegaConf.to_object(merged), own is not None


def network_files(folder: str | Path) -> tuple[Path, Path]:
    """The ArchSpec and weights a finished train or search run saved."""
    arch, weights = RunFolder(Path(folder)).network()
    assert weights is not None  # network() raises when they are required and missing
    return arch, weights


def evaluate_run(folder: str | Path, data: DataConfig, device: torch.device
                 ) -> tuple[ArchSpec, EvalResult]:
    """The network a finished run saved, scored on ``data``'s split."""
    arch_path, weights = network_files(folder)
    arch = load_arch(arch_path)
    classes = dataset_num_classes(data)
    if classes != arch.num_classes:
        raise ConfigError("data", f"data={data.name} has {classes} classes but {folder} "
                          f"was trained for {arch.num_classes}", "pass the data= settings the "
                          "network was trained with")
    model = build(arch)
    load_weights(model, weights)
    model.to(device)
    return arch, evaluate(model, make_loader(data, data.split, shuffle=False))


# ---------------------------------------------------------------- the training loop


class Trainer:
    """Full training of one network with per-epoch checkpoints and exact resumption.

    ``model`` may be wrapped in DistributedDataParallel (:func:`mbnas.distributed.wrap`): then
    every rank steps on its shard, rank 0 alone writes checkpoints, logs and shows progress,
    and validation sums over the ranks' shards of rank 0's network (the one checkpointed). The
    ranks agree on every loss and on the weights they check, so a divergence on any rank stops
    all of them at the same step with the same :class:`~mbnas.errors.Diverged`.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, run: RunFolder,
                 loaders: tuple, precision: Precision = FP32) -> None:
        self.model, self.cfg, self.run = model, cfg, run
        self.network, self.main = unwrap(model), current_world().main
        self.train_loader, self.val_loader = loaders
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimization = make_optimization(model, cfg.optim, self.total_steps)
        self.precision, self.scaler = precision, precision.scaler()
        self.step, self.history = 0, []
        self.saved_step: int | None = None  # the step of the checkpoint on disk

    def save(self) -> None:
        """Checkpoint weights, optimiser, schedule, loss scale, step, history and random state
        (rank 0; every rank holds the same); weights holding NaN or infinity raise
        :class:`Diverged` and never replace a good checkpoint."""
        # Checked on every rank: all hold the same weights (parameters stepped alike, rank 0's
        # buffers broadcast before validation), so all stop together, naming the same checkpoint.
        check_finite_weights(self.network.state_dict())
        if not self.main:
            self.saved_step = self.step  # the one rank 0 writes
            return
        optimizer, scheduler, _ = self.optimization
        save_checkpoint(self.run.last_checkpoint, {
            "format": CHECKPOINT_FORMAT, "step": self.step, "history": self.history,
            "model": self.network.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state()})
        self.saved_step = self.step

    def resume(self) -> bool:
        """Load the run's checkpoint when present; whether there was one."""
        path = self.run.last_checkpoint
        state = read_checkpoint(path)
        if state is None:
            return False
        if state.get("format") != CHECKPOINT_FORMAT:
            raise MbnasError(f"{path}: not a `train` checkpoint; delete it to start afresh")
        self.network.load_state_dict(state["model"])
        self.optimization.optimizer.load_state_dict(state["optimizer"])
        self.optimization.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.history = state["step"], state["history"]
        self.saved_step = self.step
        restore_rng_state(state["rng"])
        return True

    def fit(self) -> None:
        """Train up to ``total_steps``, validating and checkpointing after every epoch."""
        # The checkpoint of step S was saved after step S's events were written: hide only
        # the later ones, which the killed run wrote and this one writes again.
        writer = SummaryWriter(str(self.run.tensorboard), purge_step=self.step + 1) \
            if self.main else None
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.run.name,
                   disable=not (self.cfg.progress and self.main), unit="step",
                   dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                self._epoch(writer, bar)
        except KeyboardInterrupt:
            self.save()
            raise
        except Diverged as error:
            raise self.diverged(error) from None
        finally:
            bar.close()
            if writer is not None:
                writer.close()

    def diverged(self, error: Diverged) -> Diverged:
        """``error`` with where and when training diverged, what was kept and how to go on."""
        kept = (f"{self.run.last_checkpoint} keeps step {self.saved_step}, the last finite "
                "checkpoint" if self.saved_step is not None else "no checkpoint was written")
        return Diverged(f"{self.run.path}: training diverged after step {self.step} of "
                        f"{self.total_steps} ({error}); {kept}; train under another name= with "
                        f"a lower optim.lr (now {self.cfg.optim.lr:g}), optim.grad_clip=1 or "
                        "more optim.warmup_steps")

    def _epoch(self, writer: SummaryWriter | None, bar: tqdm) -> None:
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        optimizer, scheduler, criterion = self.optimization
        set_epoch(self.train_loader, epoch, offset)
        for batch in self.train_loader:
            loss = train_step(self.model, batch, optimizer, scheduler, criterion,
                              grad_clip=self.cfg.optim.grad_clip, precision=self.precision,
                              scaler=self.scaler, agree=mean_across)
            self.step += 1
            if writer is not None:
                writer.add_scalar("train/loss", loss, self.step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], self.step)
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        # DistributedDataParallel hands every rank rank 0's buffers before each forward, but
        # the epoch's last step left each rank's own: validate (and save) rank 0's on all.
        broadcast_buffers(self.network)
        result = evaluate_shards(self.network, self.val_loader)
        check_finite(result.loss, "the validation loss")
        self.history.append({"epoch": epoch + 1, "step": self.step, **result.to_dict()})
        if writer is not None:
            writer.add_scalar("val/accuracy", result.accuracy, self.step)
            writer.add_scalar("val/loss", result.loss, self.step)
        bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{result.accuracy:.3f}")
        self.save()


# ---------------------------------------------------------------- a whole train run


def train(cfg: TrainConfig) -> TrainOutcome:
    """Train the network ``cfg`` describes in its run folder: afresh, resumed, or already done."""
    check_train_config(cfg)
    with process_group(cfg.device) as (world, device):
        return start_or_resume(cfg, world, device)


def start_or_resume(cfg: TrainConfig, world: World, device: torch.device) -> TrainOutcome:
    """:func:`train` in this process's place among the data-parallel ones."""
    precision = resolve_precision(cfg.amp, cfg.channels_last, device, cfg.data.resolution)
    # Recorded as resolved: config.yaml says what ran (bf16, not auto).
    cfg = dataclasses.replace(cfg, amp=precision.amp, channels_last=precision.channels_last)
    arch, init_weights = network_arch(cfg, dataset_num_classes(cfg.data))
    run = RunFolder.named(cfg.runs_dir, cfg.name or arch.name)
    settings = dataclasses.asdict(cfg)
    check_resumable(run.saved_settings(), settings, where=str(run.path),
                    problem="was started with other settings",
                    fix="run with another name=, or delete the folder to start over",
                    may_change=RESUMABLE_CHANGES,
                    overrides=[f.name for f in dataclasses.fields(TrainConfig)])
    if run.result.is_file():
        return TrainOutcome(run, json.loads(run.result.read_text()), already_trained=True,
                            main=world.main)
    barrier()  # every rank has read the old settings before rank 0 writes the new ones
    if world.main:
        run.save_settings(settings)
        arch.save(run.arch)
    return TrainOutcome(run, train_network(arch, init_weights, cfg, run, device, precision),
                        already_trained=False, main=world.main)


def train_network(arch: ArchSpec, init_weights: Path | None, cfg: TrainConfig, run: RunFolder,
                  device: torch.device, precision: Precision = FP32) -> dict[str, Any]:
    """Train (or resume) ``arch`` in ``run``; write its weights and result (rank 0).

    Under torchrun each rank trains a DistributedDataParallel replica on its shard of every
    global batch of ``data.batch_size`` images; all ranks then hold, score and report the network
    rank 0 saves (see :meth:`Trainer.save` and :func:`recalibrate`).
    """
    started = time.perf_counter()
    world = current_world()
    seed_everything(cfg.seed)
    model = build(arch)
    if init_weights is not None:
        load_weights(model, init_weights, skip_classifier=True)
    precision.model(model.to(device))
    train_loader = make_loader(cfg.data, "train", drop_last=True, shard=world.shard,
                               batch_size=local_batch(cfg.data.batch_size, world))
    if len(train_loader) == 0:
        raise ConfigError("data.batch_size", f"{cfg.data.batch_size} exceeds the "
                          f"{len(train_loader.dataset)} training images", "lower it")
    loaders = (train_loader, make_loader(cfg.data, "val", shard=world.shard))
    trainer = Trainer(wrap(model, device), cfg, run, loaders, precision)
    if trainer.resume():
        if world.main:
            print(f"resuming {run.path} at step {trainer.step}/{trainer.total_steps}")
    elif init_weights is not None:  # inherited weights come with other networks' BN statistics
        recalibrate(model, train_loader, cfg.bn_images)
    trainer.fit()
    recalibrate(model, train_loader, cfg.bn_images, epoch=cfg.epochs)
    result = evaluate_shards(model, trainer.val_loader)
    try:
        check_finite(result.loss, "the final validation loss")
        check_finite_weights(model.state_dict())
    except Diverged as error:
        raise trainer.diverged(error) from None
    if world.main:
        torch.save(model.state_dict(), run.model)
    cost = count(arch)
    summary = {"name": run.name, "arch": arch.name, **result.to_dict(), "split": "val",
               "epochs": cfg.epochs, "steps": trainer.step, "data": cfg.data.name,
               "train_resolution": cfg.data.resolution, "resolution": arch.resolution,
               "macs": cost.macs, "params": cost.params, "history": trainer.history,
               "seconds": round(time.perf_counter() - started, 2), "processes": world.size}
    if world.main:
        run.result.write_text(json.dumps(summary, indent=2))
    barrier()  # the result is on disk before any rank reports it
    return summary


def recalibrate(model: nn.Module, loader: Any, images: int, epoch: int = 0) -> None:
    """BatchNorm statistics from ``images`` training images of ``epoch`` (0: off).

    Under torchrun each rank takes its share of the images from its shard of ``loader`` and the
    ranks' statistics are averaged, so that every rank holds the network rank 0 saves and all
    of them score. Averaged rather than rank 0's broadcast: the ranks' equally many batches
    are together the images of the global batches one process would recalibrate on (each
    rank's share normalised on its own statistics, as in training), and the work is split
    over the ranks instead of done on each and kept from rank 0's shard alone."""
    if images:
        set_epoch(loader, epoch)
        recalibrate_bn(model, loader, -(-images // current_world().size))
        average_buffers(model)
