"""A search's supernet warm-up on its own: run once (data-parallel under torchrun) before the
search workers, which then find it done and only score candidates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mbnas.distributed import process_group
from mbnas.errors import ConfigError
from mbnas.evaluators import evaluator_class, make_evaluator
from mbnas.search.config import SearchConfig
from mbnas.search.run import evaluation_context, prepare
from mbnas.train import seed_everything


@dataclass(frozen=True)
class WarmupOutcome:
    """Where the warmed-up supernet is, and how it was trained."""

    checkpoint: Path
    processes: int
    main: bool  # whether this process is rank 0 (the one that reports)
    seconds: float


def warm_up_search(cfg: SearchConfig) -> WarmupOutcome:
    """Warm up the supernet of the search ``cfg`` describes, in its run folder (resumable).

    Under torchrun every rank trains on its shard of each global batch of ``data.batch_size``
    images and rank 0 writes ``supernet.pt``; without it this is the warm-up `search` itself
    would run first.
    """
    run = prepare(cfg)
    name = run.evaluator.name
    if not evaluator_class(name).warms_up:
        raise ConfigError("evaluator", f"{name!r} warms no supernet up",
                          "use evaluator=supernet or evaluator=predictor, or run `search`")
    started = time.perf_counter()
    folder = run.folder.create()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)  # every rank builds the same initial supernet
    with process_group(cfg.device) as (world, _):
        evaluator = make_evaluator(run.evaluator, evaluation_context(run.cfg, run.space,
                                                                     run.budget))
        evaluator.warm_up(folder)
    return WarmupOutcome(folder.supernet, world.size, world.main,
                         time.perf_counter() - started)
