"""The layout of a run folder ``runs/<name>/``: one name for every file a command reads or writes.

A search run holds ``config.yaml``, ``study.db`` (the Optuna storage), ``supernet.pt``, ``tb/``
(TensorBoard), ``best.yaml`` (+ ``best.pt`` and other exports) and, for multi-objective runs,
``pareto/``. A train run holds ``config.yaml``, ``arch.yaml``, ``last.pt`` (the checkpoint),
``tb/`` and, once finished, ``model.pt`` and ``result.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mbnas.errors import ConfigError


@dataclass(frozen=True)
class RunFolder:
    """The files of one run; each property is a path, whether or not the file exists yet."""

    path: Path

    @classmethod
    def named(cls, runs_dir: str | Path, name: str) -> RunFolder:
        """``runs_dir/name``, refusing names that are not one plain folder."""
        if not name or "/" in name or name.startswith("."):
            raise ConfigError("name", f"{name!r} cannot name a run folder", "use a plain name")
        return cls(Path(runs_dir) / name)

    @property
    def name(self) -> str:
        """The run's name: also its Optuna study's."""
        return self.path.name

    @property
    def config(self) -> Path:
        """The resolved settings the run was started with."""
        return self.path / "config.yaml"

    @property
    def study_db(self) -> Path:
        """The default Optuna storage (SQLite)."""
        return self.path / "study.db"

    @property
    def storage_lock(self) -> Path:
        """Held by a worker while it creates or opens the study."""
        return self.path / "storage.lock"

    @property
    def supernet(self) -> Path:
        """The warmed-up supernet's checkpoint."""
        return self.path / "supernet.pt"

    @property
    def supernet_lock(self) -> Path:
        """Held by the worker warming up the supernet."""
        return self.path / "supernet.lock"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files (per trial and per study, or a train run's curves)."""
        return self.path / "tb"

    @property
    def best(self) -> Path:
        """The stem of a search's exports: ``best.yaml``, ``best.pt``, ``best.onnx``, ..."""
        return self.path / "best"

    @property
    def best_yaml(self) -> Path:
        """The best architecture a search found."""
        return self.best.with_suffix(".yaml")

    @property
    def best_weights(self) -> Path:
        """The best architecture's inherited weights."""
        return self.best.with_suffix(".pt")

    @property
    def pareto(self) -> Path:
        """A multi-objective search's Pareto set, one YAML per trial."""
        return self.path / "pareto"

    @property
    def arch(self) -> Path:
        """The ArchSpec a train run trains."""
        return self.path / "arch.yaml"

    @property
    def last_checkpoint(self) -> Path:
        """A train run's checkpoint, written every epoch and on interruption."""
        return self.path / "last.pt"

    @property
    def model(self) -> Path:
        """A finished train run's weights (state_dict of ``mbnas.build(arch)``)."""
        return self.path / "model.pt"

    @property
    def result(self) -> Path:
        """A finished train run's validation result and history."""
        return self.path / "result.json"

    def create(self) -> RunFolder:
        """Make the folder (and ``runs_dir``) if missing."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def saved_settings(self) -> dict[str, Any] | None:
        """The settings in ``config.yaml``; ``None`` before the run started."""
        if not self.config.is_file():
            return None
        return yaml.safe_load(self.config.read_text()) or {}

    def save_settings(self, settings: Mapping[str, Any]) -> None:
        """Write ``settings`` as the run's ``config.yaml``, atomically (a temporary file, then a
        rename): an interrupted write leaves the former file whole."""
        self.create()
        temporary = self.config.with_name(f".{self.config.name}.tmp")
        temporary.write_text(yaml.safe_dump(dict(settings), sort_keys=False))
        os.replace(temporary, self.config)

    def network(self, weights_required: bool = True) -> tuple[Path, Path | None]:
        """The ArchSpec and weights of a train run (arch.yaml, model.pt) or a search run
        (best.yaml, best.pt). A search writes both at once or best.yaml alone (its evaluator
        scores untrained networks, or export.weights=false): then the weights are ``None``
        unless ``weights_required``."""
        if not self.path.is_dir():
            raise ConfigError(str(self.path), "no such run folder", "give runs/<name> of a "
                              "finished `train` or `search` run")
        for arch, weights in ((self.arch, self.model), (self.best_yaml, self.best_weights)):
            if arch.is_file():
                if weights.is_file():
                    return arch, weights
                if arch == self.best_yaml and not weights_required:
                    return arch, None
                raise ConfigError(str(weights), "missing: the run has an architecture but "
                                  "no weights", "let the run finish (train) or export "
                                  "weights (search: export.weights=true, with an evaluator "
                                  "that trains)")
        raise ConfigError(str(self.path), "holds neither arch.yaml (a train run) nor best.yaml "
                          "(a search run)", "give the folder of a finished run")
