"""``python -m mbnas train arch=<name|yaml> [init=runs/<search>] data=...``: train one network.

Output in ``runs/<name>/``: ``config.yaml`` (resolved settings), ``arch.yaml`` (the network as
trained), ``last.pt`` (checkpoint, written every epoch and on interruption), ``tb/``
(TensorBoard), and once finished ``model.pt`` (state_dict of ``mbnas.build(arch)``) and
``result.json`` (validation accuracy). Running the same command again resumes where it stopped.
"""

from __future__ import annotations

from mbnas.trainer import TrainConfig, train

Config = TrainConfig


def run(cfg: TrainConfig) -> None:
    outcome = train(cfg)
    run_dir, result = outcome.run.path, outcome.result
    if outcome.already_trained:
        print(f"{run_dir} is already trained (delete it or use another name= to retrain)")
    print(f"{outcome.run.name}: validation top-1 {100 * result['accuracy']:.2f}% (loss "
          f"{result['loss']:.4f}, {result['samples']} images) after {result['epochs']} epochs; "
          f"saved {run_dir}")
