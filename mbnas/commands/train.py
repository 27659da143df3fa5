"""``python -m mbnas train arch=<name|yaml> [init=runs/<search>] data=...``: train one network.

Output in ``runs/<name>/``: ``config.yaml`` (resolved settings), ``arch.yaml`` (the network as
trained), ``last.pt`` (checkpoint, written every epoch and on interruption), ``tb/``
(TensorBoard), and once finished ``model.pt`` (state_dict of ``mbnas.build(arch)``) and
``result.json`` (validation accuracy). Running the same command again resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.architectures import load_arch
from mbnas.config import to_container
from mbnas.cost import count
from mbnas.data import DataConfig, dataset_num_classes, make_loader, set_epoch
from mbnas.errors import ConfigError, MbnasError
from mbnas.nn import build
from mbnas.train import (
    OptimConfig,
    capture_rng_state,
    evaluate,
    load_checkpoint,
    make_criterion,
    make_optimizer,
    make_scheduler,
    recalibrate_bn,
    resolve_device,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
    train_step,
)
from mbnas.validation import check_float, check_int

CHECKPOINT_FORMAT = "mbnas-train/1"
# Settings that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("progress", "device", "runs_dir", "name", "data.workers")


@dataclass
class Config:
    arch: str | None = None  # built-in name or ArchSpec YAML; null: the one in `init`
    init: str | None = None  # a search run (best.yaml + best.pt) or train run to start from
    name: str | None = None  # run folder runs/<name>; default: the architecture's name
    runs_dir: str = "runs"
    epochs: int = 30
    drop_path: float | None = None  # stochastic depth rate of the last block; null: the arch's
    bn_images: int = 2048  # images for BN recalibration of inherited and final weights; 0: off
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


# ---------------------------------------------------------------- networks on disk


def find_network(folder: str | Path, *, need_weights: bool = True) -> tuple[Path, Path | None]:
    """The ArchSpec and weights files of a train run (arch.yaml, model.pt) or search run
    (best.yaml, best.pt)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(str(folder), "no such run folder", "give runs/<name> of a finished "
                          "`train` or `search` run")
    for arch_name, weights_name in (("arch.yaml", "model.pt"), ("best.yaml", "best.pt")):
        if (folder / arch_name).is_file():
            weights = folder / weights_name
            if weights.is_file():
                return folder / arch_name, weights
            if need_weights:
                raise ConfigError(str(weights), "missing: the run has an architecture but no "
                                  "weights", "let the run finish (train) or export weights "
                                  "(search: export.weights=true)")
            return folder / arch_name, None
    raise ConfigError(str(folder), "holds neither arch.yaml (a train run) nor best.yaml (a "
                      "search run)", "give the folder of a finished run")


def load_weights(model: nn.Module, path: Path, *, skip_classifier: bool = False) -> None:
    """Load a state_dict into ``model``; a classifier for other classes may be left fresh."""
    state = load_checkpoint(path)
    state = state.get("model", state)
    own = model.state_dict()
    if skip_classifier:
        state = {k: v for k, v in state.items()
                 if not (k.startswith("head.classifier.") and v.shape != own[k].shape)}
    try:
        missing, _ = model.load_state_dict(state, strict=not skip_classifier)
    except RuntimeError as error:
        raise ConfigError(str(path), "weights do not fit the architecture "
                          f"({str(error).splitlines()[1].strip()})",
                          "use the arch the weights were saved with (leave arch unset)") from None
    if [k for k in missing if not k.startswith("head.classifier.")]:
        raise ConfigError(str(path), f"weights lack {missing[0]}", "use matching arch and weights")


def network_arch(cfg: Config, num_classes: int) -> tuple[ArchSpec, Path | None]:
    """The ArchSpec to train (classes set to the dataset's) and the weights to start from."""
    weights = None
    if cfg.init:
        arch_path, weights = find_network(cfg.init)
        arch = load_arch(cfg.arch or arch_path)
    elif cfg.arch:
        arch = load_arch(cfg.arch)
    else:
        raise ConfigError("arch", "not given", "use arch=<built-in name or YAML path>, or "
                          "init=runs/<search run> to train the architecture a search found")
    arch = arch.replace(num_classes=num_classes)
    if cfg.drop_path is not None:
        arch = arch.replace(drop_path=check_float(cfg.drop_path, "drop_path", 0.0, 0.9))
    return arch, weights


# ---------------------------------------------------------------- run folder


def settings_of(cfg: Config) -> dict[str, Any]:
    return to_container(cfg)  # type: ignore[arg-type]


def check_same_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume ``run_dir`` with different settings, naming the first difference."""
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        return
    saved = _flatten(yaml.safe_load(saved_file.read_text()) or {})
    for key, value in _flatten(settings).items():
        if key not in RESUMABLE_CHANGES and saved.get(key, value) != value:
            raise ConfigError(str(run_dir), f"was started with {key}={saved[key]!r}, now "
                              f"{key}={value!r}", "run with another name=, or delete the folder "
                              "to start over")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# ---------------------------------------------------------------- the training loop


class Trainer:
    """Full training of one network with per-epoch checkpoints and exact resumption."""

    def __init__(self, model: nn.Module, cfg: Config, run_dir: Path, loaders: tuple) -> None:
        self.model, self.cfg, self.run_dir = model, cfg, run_dir
        self.train_loader, self.val_loader = loaders
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer = make_optimizer(model, cfg.optim)
        self.scheduler = make_scheduler(self.optimizer, cfg.optim, self.total_steps)
        self.criterion = make_criterion(cfg.optim)
        self.step, self.history = 0, []

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "last.pt"

    def save(self) -> None:
        save_checkpoint(self.checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "step": self.step, "history": self.history,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": capture_rng_state()})

    def resume(self) -> bool:
        """Load ``last.pt`` when present; whether there was one."""
        if not self.checkpoint_path.is_file():
            return False
        state = load_checkpoint(self.checkpoint_path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise MbnasError(f"{self.checkpoint_path}: not a `train` checkpoint; delete it to "
                             "start afresh")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.history = state["step"], state["history"]
        restore_rng_state(state["rng"])
        return True

    def fit(self) -> None:
        """Train up to ``total_steps``, validating and checkpointing after every epoch."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step)
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.run_dir.name,
                   disable=not self.cfg.progress, unit="step", dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                self._epoch(writer, bar)
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            bar.close()
            writer.close()

    def _epoch(self, writer: Any, bar: Any) -> None:
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        set_epoch(self.train_loader, epoch, offset)
        for batch in self.train_loader:
            loss = train_step(self.model, batch, self.optimizer, self.scheduler, self.criterion,
                              grad_clip=self.cfg.optim.grad_clip)
            self.step += 1
            writer.add_scalar("train/loss", loss, self.step)
            writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
            bar.update()
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        result = evaluate(self.model, self.val_loader)
        self.history.append({"epoch": epoch + 1, "step": self.step, **result.to_dict()})
        writer.add_scalar("val/accuracy", result.accuracy, self.step)
        writer.add_scalar("val/loss", result.loss, self.step)
        bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{result.accuracy:.3f}")
        self.save()


# ---------------------------------------------------------------- the command


def check_config(cfg: Config) -> None:
    check_int(cfg.epochs, "epochs")
    check_int(cfg.bn_images, "bn_images", minimum=0)
    check_int(cfg.seed, "seed", minimum=0)


def run(cfg: Config) -> None:
    check_config(cfg)
    device = resolve_device(cfg.device)
    arch, init_weights = network_arch(cfg, dataset_num_classes(cfg.data))
    name = cfg.name or arch.name
    if not name or "/" in name or name.startswith("."):
        raise ConfigError("name", f"{name!r} cannot name a run folder", "use a plain name")
    run_dir = Path(cfg.runs_dir) / name
    settings = settings_of(cfg)
    check_same_settings(run_dir, settings)
    if (run_dir / "result.json").is_file():
        result = json.loads((run_dir / "result.json").read_text())
        print(f"{run_dir} is already trained (delete it or use another name= to retrain)")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        arch.save(run_dir / "arch.yaml")
        result = train_network(arch, init_weights, cfg, run_dir, device)
    print(f"{name}: validation top-1 {100 * result['accuracy']:.2f}% (loss {result['loss']:.4f}, "
          f"{result['samples']} images) after {result['epochs']} epochs; saved {run_dir}")


def train_network(arch: ArchSpec, init_weights: Path | None, cfg: Config, run_dir: Path,
                  device: torch.device) -> dict[str, Any]:
    """Train (or resume) ``arch`` in ``run_dir``; write model.pt and result.json."""
    started = time.perf_counter()
    seed_everything(cfg.seed)
    model = build(arch)
    if init_weights is not None:
        load_weights(model, init_weights, skip_classifier=True)
    model.to(device)
    train_loader = make_loader(cfg.data, "train", drop_last=True)
    if len(train_loader) == 0:
        raise ConfigError("data.batch_size", f"{cfg.data.batch_size} exceeds the "
                          f"{len(train_loader.dataset)} training images", "lower it")
    trainer = Trainer(model, cfg, run_dir, (train_loader, make_loader(cfg.data, "val")))
    if trainer.resume():
        print(f"resuming {run_dir} at step {trainer.step}/{trainer.total_steps}")
    elif init_weights is not None:  # inherited weights come with other networks' BN statistics
        _recalibrate(model, train_loader, cfg.bn_images)
    trainer.fit()
    _recalibrate(model, train_loader, cfg.bn_images, epoch=cfg.epochs)
    result = evaluate(model, trainer.val_loader)
    torch.save(model.state_dict(), run_dir / "model.pt")
    cost = count(arch)
    summary = {"name": run_dir.name, "arch": arch.name, **result.to_dict(), "split": "val",
               "epochs": cfg.epochs, "steps": trainer.step, "data": cfg.data.name,
               "train_resolution": cfg.data.resolution, "resolution": arch.resolution,
               "macs": cost.macs, "params": cost.params, "history": trainer.history,
               "seconds": round(time.perf_counter() - started, 2)}
    (run_dir / "result.json").write_text(json.dumps(summary, indent=2))
    return summary


def _recalibrate(model: nn.Module, loader: Any, images: int, epoch: int = 0) -> None:
    if images:
        set_epoch(loader, epoch)
        recalibrate_bn(model, loader, images)

