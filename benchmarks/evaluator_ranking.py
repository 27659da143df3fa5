"""How well mbnas's evaluators rank architectures against ground truth (used by
``nas_bench_macro.py rank``): rank metrics, the data, and each evaluator run as the search runs it.

Metrics: Kendall tau and Spearman rho of the scores against the true accuracies; tau inside the
slice of architectures whose MACs lie between the sample's 40th and 60th percentile (where MACs
alone say nothing); top-10% recall (the share of the truly best 10% that the scores also put in
their best 10%); seconds per architecture.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from scipy import stats

from mbnas.arch import ArchSpec
from mbnas.budget import Budget
from mbnas.data import DataConfig
from mbnas.evaluators import EvaluationContext, Evaluator, evaluator_config, make_evaluator
from mbnas.resources import conf_dir
from mbnas.run_folder import RunFolder
from mbnas.space import SearchSpace

ROOT = Path(__file__).resolve().parent.parent
UNPACK = ROOT / "../shared/tools/cifar10_full.py"
CACHE = Path.home() / ".cache" / "mbnas-data"


def ranking_metrics(scores: Sequence[float], truth: Sequence[float],
                    macs: Sequence[float]) -> dict[str, float]:
    """Kendall tau, Spearman rho, tau in the 40th-60th percentile MAC slice, top-10% recall."""
    scores, truth, macs = (np.asarray(v, dtype=float) for v in (scores, truth, macs))
    low, high = np.percentile(macs, [40, 60])
    in_slice = (macs >= low) & (macs <= high)
    top = max(1, round(0.1 * len(truth)))
    best_true = set(np.argsort(-truth, kind="stable")[:top])
    best_scored = set(np.argsort(-scores, kind="stable")[:top])
    return {"kendall_tau": float(stats.kendalltau(scores, truth)[0]),
            "spearman_rho": float(stats.spearmanr(scores, truth)[0]),
            # A slice of fewer than two networks has no order (a handful of networks).
            "slice_kendall_tau": float(stats.kendalltau(scores[in_slice], truth[in_slice])[0])
            if in_slice.sum() >= 2 else float("nan"),
            "top10_recall": len(best_true & best_scored) / top}


def full_cifar10(cache: Path = CACHE) -> Path:
    """The full CIFAR-10 training set as python batches, unpacked from ../shared once."""
    root = cache / "cifar-10-batches-py"
    if not (root / "data_batch_5").is_file():
        subprocess.run([sys.executable, str(UNPACK), str(cache)], check=True)
    return root


def evaluator_settings(name: str, overrides: Sequence[str],
                       replacing: Mapping[str, Any] | None = None) -> Any:
    """The shipped ``conf/evaluator/NAME.yaml`` with settings ``replacing`` its own (a space's,
    each replaced whole), then ``key=value`` overrides; typed and checked."""
    values = OmegaConf.load(conf_dir() / "evaluator" / f"{name}.yaml")
    for key, value in (replacing or {}).items():
        values[key] = value
    return evaluator_config(OmegaConf.merge(values, OmegaConf.from_dotlist(list(overrides))))


def build_evaluator(name: str, overrides: Sequence[str], space: SearchSpace, data: DataConfig,
                    seed: int, device: str = "cpu", budget: Budget | None = None) -> Evaluator:
    """An evaluator as a search of ``space`` within ``budget`` (none: no budget) would build it,
    on ``device``: the space's own settings apply when ``name`` is the space's evaluator."""
    context = EvaluationContext(data=data, device=torch.device(device), seed=seed, space=space,
                                budget=budget or Budget())
    replacing = space.evaluator_settings if name == space.evaluator else None
    return make_evaluator(evaluator_settings(name, overrides, replacing), context)


def warmup_steps_for(minutes: float, space: SearchSpace, data: DataConfig, seed: int,
                     overrides: Sequence[str], scratch: Path, device: str = "cpu") -> int:
    """Sandwich steps that fit ``minutes`` here, timed on a few steps of a throwaway warm-up."""
    probe_steps = 4
    probe = build_evaluator("supernet", [*overrides, f"warmup_steps={probe_steps}"], space, data,
                            seed, device)
    start = time.perf_counter()
    probe.prepare(RunFolder(scratch / "probe"))
    seconds_per_step = (time.perf_counter() - start) / probe_steps
    return max(1, int(minutes * 60 / seconds_per_step))


def score_all(evaluator: Evaluator, archs: Sequence[ArchSpec],
              progress: Callable[[int], None] | None = None
              ) -> tuple[list[float], float, dict[str, list[float]]]:
    """Every architecture's score, the mean seconds one took, and each raw feature the scores
    were made of (proxies, predictions), architecture by architecture."""
    scores, seconds, features = [], 0.0, defaultdict(list)
    for index, arch in enumerate(archs, start=1):
        evaluation = evaluator.evaluate(arch)
        scores.append(finite_or_worst(evaluation.score))
        seconds += evaluation.seconds
        for name, value in evaluation.features.items():
            features[name].append(finite_or_worst(value))
        if progress:
            progress(index)
    return scores, seconds / len(archs), dict(features)


def finite_or_worst(value: float) -> float:
    """A score as ranked: a non-finite one ranks last."""
    return value if math.isfinite(value) else -math.inf


def setting_digest(evaluator: Evaluator) -> str:
    """A short digest of the evaluator's whole setting: cached preparations are keyed by it, so
    that an edited shipped default is prepared afresh."""
    setting = json.dumps(dataclasses.asdict(evaluator.cfg), sort_keys=True, default=str)
    return hashlib.sha1(setting.encode()).hexdigest()[:10]
