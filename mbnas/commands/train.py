"""``python -m mbnas train arch=<name|yaml> [init=runs/<search>] data=...``: train one network.

Output in ``runs/<name>/``: ``config.yaml`` (resolved settings), ``arch.yaml`` (the network as
trained), ``last.pt`` (checkpoint, written every epoch and on interruption), ``tb/``
(TensorBoard), and once finished ``model.pt`` (state_dict of ``mbnas.build(arch)``) and
``result.json`` (validation accuracy). Running the same command again resumes where it stopped.
"""

from __future__ import annotations

from mbnas.next_steps import next_steps
from mbnas.trainer import TrainConfig, train
from mbnas.units import format_count

Config = TrainConfig


def run(cfg: TrainConfig) -> None:
    outcome = train(cfg)
    if not outcome.main:  # under torchrun rank 0 reports
        return
    run_dir, result = outcome.run.path, outcome.result
    if outcome.already_trained:
        print(f"{run_dir} is already trained (delete it or use another name= to retrain)")
    synthetic = " (synthetic data)" if result.get("data") == "synthetic" else ""
    print(f"{outcome.run.name}: validation top-1 {100 * result['accuracy']:.2f}%{synthetic} "
          f"(loss {result['loss']:.4f}, {result['samples']} images) after {result['epochs']} "
          f"epochs; saved {run_dir}")
    cost = (f"{format_count(result['macs'])} MACs, {format_count(result['params'])} params, "
            if "macs" in result else "")
    seconds = f"{result['seconds'] / 60:.1f} min" if "seconds" in result else ""
    print(f"  {cost}{seconds} | files: model.pt, arch.yaml, result.json, tb/")
    print("\n".join(next_steps([
        (f"python -m mbnas evaluate run={run_dir}", "test-split accuracy, same data"),
        (f"python -m mbnas cost arch={run_dir / 'arch.yaml'}", "per-stage cost + latency"),
        (f"tensorboard --logdir {run_dir / 'tb'}", "")])))
