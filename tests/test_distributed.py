"""Data parallelism on CPU with two gloo processes: the same weights as one process on the same
global batch, a killed rank resumed with another number of processes, and AMP / channels_last.

Two processes are started with torch.multiprocessing (forked: no second import of torch, which
costs seconds on a busy machine) and join their group as torchrun's do, through RANK /
WORLD_SIZE / MASTER_ADDR=127.0.0.1 / MASTER_PORT. BatchNorm normalises each
rank's images on their own statistics (DistributedDataParallel's semantics without
SyncBatchNorm, which torch has for GPUs only), so "one process on the same global batch" is one
process that accumulates the gradients of the ranks' halves of each global batch (``images[r::2]``,
the interleaved shards), averaged: weights agree to atol 1e-5. `train` on two processes saves
the network it reports (each epoch's validation that of `last.pt`, the final one that of
`model.pt`, whose first BatchNorm mean is that of the 16 images one process recalibrates on),
and a NaN loss on one rank stops both at the same step with one line and exit code 2, `last.pt`
keeping the last finite checkpoint; so does a NaN loss on one rank in the supernet warm-up.

A search on two processes (`evaluator=scratch`, rank 0 leading, rank 1 following) scores each
candidate as that one process does: the same weights (atol 1e-5; BatchNorm's running statistics
those of rank 0's half, as DistributedDataParallel keeps them), the same validation accuracy
(exactly) and loss (atol 1e-5), both ranks the very same; a candidate diverging on one rank only
fails its trial on both, and the search goes on; both ranks exit cleanly.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
from pathlib import Path

import optuna
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from conftest import supernet_space

import mbnas.evaluators.brief_training as brief_training
import mbnas.search.run
import mbnas.train
from mbnas.__main__ import main
from mbnas.architectures import load_arch
from mbnas.data import DataConfig, make_loader, set_epoch
from mbnas.distributed import World, average_gradients, local_batch, setup, teardown
from mbnas.errors import ConfigError, MbnasError
from mbnas.evaluators import evaluator_config
from mbnas.nn import build
from mbnas.precision import Precision, resolve_precision
from mbnas.search.data_parallel import check_data_parallel
from mbnas.search.run import load_run
from mbnas.search.trials import TrialRecord
from mbnas.supernet import Supernet
from mbnas.supernet.training import (
    BatchStream,
    SandwichConfig,
    sandwich_members,
    sandwich_step,
    shared_warmup,
    train_supernet,
)
from mbnas.train import (
    OptimConfig,
    evaluate,
    infinite,
    load_checkpoint,
    make_optimization,
    non_finite,
    recalibrate_bn,
)
from mbnas.trainer import TrainConfig, train

ATOL = 1e-5
SPACE = supernet_space(dropout=0.0)
# 53 images: 5 for validation, 48 = 3 global batches of 16 to train on.
DATA = DataConfig(resolution=16, num_classes=4, synthetic_size=53, batch_size=16, seed=1)
WARMUP = SandwichConfig(steps=6, num_random=1, distill=True, seed=3, checkpoint_every=2,
                        optim=OptimConfig(lr=0.1, warmup_steps=2, grad_clip=5.0))
ARCH = {"name": "tiny_net", "resolution": 16, "num_classes": 4, "dropout": 0.0,
        "stem": {"out": 8, "stride": 1},
        "stages": [{"block": "mbconv", "kernel": 3, "expand": 3, "out": 16, "depth": 2,
                    "stride": 2, "se": 0.25, "act": "hswish"}],
        "head": {"channels": 32}}


# ---------------------------------------------------------------- two processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world: int, port: int, task: str, args: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    setup("cpu")
    try:
        TASKS[task](rank, **args)
    finally:
        teardown()


def run_ranks(task: str, world: int = 2, timeout: float = 120, **args) -> list[int | None]:
    """Run ``TASKS[task]`` in ``world`` fresh processes; their exit codes (None: killed here
    after ``timeout``)."""
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    port = free_port()
    processes = [context.Process(target=_worker, args=(rank, world, port, task, args))
                 for rank in range(world)]
    for process in processes:
        process.start()
    codes = []
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            codes.append(None)
        else:
            codes.append(process.exitcode)
    return codes


def warmup_task(rank: int, folder: str, kill_at: int | None = None) -> None:
    if kill_at is not None and rank == 1:
        served = {"batches": 0}
        original = BatchStream.next

        def next_or_die(self):
            served["batches"] += 1
            if served["batches"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self)

        BatchStream.next = next_or_die
    torch.manual_seed(0)
    shared_warmup(Supernet(SPACE), SPACE, DATA, WARMUP, checkpoint=Path(folder) / "supernet.pt",
                  lock=Path(folder) / "supernet.lock")


def warmup_nan_task(rank: int, folder: str, nan_at: int) -> None:
    """The warm-up, rank 1's loss NaN from its ``nan_at``-th step on, ending as the command
    ends (see :func:`train_task`)."""
    if rank == 1:
        mbnas.train.make_criterion = lambda cfg: NanFrom(nan_at,
                                                         label_smoothing=cfg.label_smoothing)
    try:
        warmup_task(rank, folder)
    except MbnasError as error:
        (Path(folder) / f"rank{rank}.err").write_text(str(error))
        os._exit(2)


def train_task(rank: int, folder: str, nan_at: int | None = None, **changes) -> None:
    """`train` of :func:`train_config` with ``changes`` ending as the command ends: an error is
    one line (kept in ``rank<r>.err``) and exit code 2. With ``nan_at``, rank 1's training loss
    is NaN from its ``nan_at``-th step on."""
    if nan_at is not None and rank == 1:
        mbnas.train.make_criterion = lambda cfg: NanFrom(nan_at,
                                                         label_smoothing=cfg.label_smoothing)
    try:
        train(dataclasses.replace(train_config(folder), **changes))
    except MbnasError as error:
        (Path(folder) / f"rank{rank}.err").write_text(str(error))
        # Ends at once (train() has left the process group): the normal exit of a forked rank
        # after a divergence was seen to hang in about 1 run of 4, its task done (cause not
        # found; torchrun's ranks are fresh processes, not forks of a test process).
        os._exit(2)


class NanFrom(torch.nn.CrossEntropyLoss):
    """The loss, then NaN from the ``start``-th call on: a network diverging at that step (on
    one rank only)."""

    def __init__(self, start: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start, self.calls = start, 0

    def forward(self, logits, labels):
        self.calls += 1
        loss = super().forward(logits, labels)
        return loss if self.calls < self.start else loss * float("nan")


def search_task(rank: int, folder: str, diverge: bool = False) -> None:
    """The search, each validation's result and network saved (``rank<r>-<call>.pt``); with
    ``diverge``, rank 1's first candidate diverges at its second step and rank 0's export
    fails."""
    original, calls = brief_training.evaluate_shards, []

    def saving(model, loader, **kwargs):
        result = original(model, loader, **kwargs)
        calls.append(result)
        torch.save({"result": result.to_dict(), "model": model.state_dict()},
                   Path(folder) / f"rank{rank}-{len(calls)}.pt")
        return result

    brief_training.evaluate_shards = saving
    if diverge and rank == 1:
        made, real = [], mbnas.train.make_criterion
        mbnas.train.make_criterion = lambda cfg: (
            real(cfg) if made.append(cfg) or len(made) > 1
            else NanFrom(2, label_smoothing=cfg.label_smoothing))
    if diverge and rank == 0:
        def failing_export(*args, **kwargs):
            raise MbnasError("the export failed")

        mbnas.search.run.export_best = failing_export
    raise SystemExit(main([*SEARCH, f"runs_dir={folder}"]))


TASKS = {"warmup": warmup_task, "warmup_nan": warmup_nan_task, "train": train_task,
         "search": search_task}
TINY_SPACE = Path(__file__).parent / "fixtures" / "tiny_space.yaml"
# Two candidates of two steps each: four global batches of 16 (86 training images, 10 for
# validation), each rank taking 8 images of each.
SEARCH = ["search", "+budget.macs=0.5M", f"space={TINY_SPACE}", "latency=none",
          "evaluator=scratch", "evaluator.train_steps=2", "evaluator.optim.warmup_steps=0",
          "n_trials=2", "startup_trials=2", "data.synthetic_size=96", "data.batch_size=16",
          "data.resolution=16", "device=cpu", "threads=1", "name=dp"]


# ---------------------------------------------------------------- one-process references


def reference_warmup(steps: int, chunked_steps: int) -> Supernet:
    """One process on the same global batches: the first ``chunked_steps`` as two accumulated
    halves (what two ranks compute), the rest whole (what one rank computes)."""
    torch.manual_seed(0)
    supernet = Supernet(SPACE)
    optimizer, scheduler, criterion = make_optimization(supernet, WARMUP.optim, WARMUP.steps)
    rng, stream = random.Random(WARMUP.seed), BatchStream(make_loader(DATA, "train",
                                                                      shuffle=True))
    for step in range(steps):
        images, labels = stream.next()
        optimizer.zero_grad(set_to_none=True)
        archs = sandwich_members(SPACE, rng, WARMUP.num_random)
        halves = 2 if step < chunked_steps else 1
        for half in range(halves):
            sandwich_step(supernet, archs, images[half::halves], labels[half::halves],
                          criterion, distill=True)
        for parameter in supernet.parameters():
            if parameter.grad is not None:
                parameter.grad /= halves
        torch.nn.utils.clip_grad_norm_(supernet.parameters(), WARMUP.optim.grad_clip)
        optimizer.step()
        scheduler.step()
    return supernet


def train_config(folder: str) -> TrainConfig:
    arch = Path(folder) / "tiny_net.yaml"
    if not arch.is_file():  # written whole: both ranks may get here at once
        temporary = arch.with_name(f"{arch.name}.{os.getpid()}")
        temporary.write_text(yaml.safe_dump(ARCH))
        os.replace(temporary, arch)
    return TrainConfig(arch=str(arch), name="tiny", runs_dir=folder, epochs=1, bn_images=0,
                       device="cpu", progress=False, data=DATA,
                       optim=OptimConfig(lr=0.1, warmup_steps=0, grad_clip=5.0))


def assert_same_parameters(state: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(state[name], parameter.detach(), atol=ATOL, rtol=0,
                                   msg=lambda message, name=name: f"{name}: {message}")


def reference_search(folder: Path) -> list[tuple[TrialRecord, dict, torch.nn.Module]]:
    """Every trained candidate of the search in ``folder`` (in the order it trained) with the
    validation result and network one process gets on the same global batches, taken in two
    halves whose gradients are averaged; BatchNorm's statistics from the first half only."""
    cfg, study = load_run(folder / "dp")
    scratch = evaluator_config(cfg.evaluator)
    train = make_loader(cfg.data, "train", shuffle=True)
    val = make_loader(cfg.data, "val", shuffle=False)
    scored = []
    for trial in study.get_trials(states=[optuna.trial.TrialState.COMPLETE]):
        batches = infinite(train)  # every candidate trains on the same batches, from the first
        record = TrialRecord.of(trial)
        arch = record.arch_spec()
        assert arch.digest() == record.digest
        torch.manual_seed(cfg.seed + int(arch.digest()[:8], 16))
        model = build(arch)
        optimizer, scheduler, criterion = make_optimization(model, scratch.optim,
                                                            scratch.train_steps)
        for _ in range(scratch.train_steps):
            images, labels = next(batches)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            statistics = [buffer.clone() for buffer in model.buffers()]
            (criterion(model(images[1::2]), labels[1::2]) / 2).backward()
            with torch.no_grad():  # rank 0's BatchNorm statistics, as DDP keeps them
                for buffer, kept in zip(model.buffers(), statistics):
                    buffer.copy_(kept)
            (criterion(model(images[0::2]), labels[0::2]) / 2).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), scratch.optim.grad_clip)
            optimizer.step()
            scheduler.step()
        scored.append((record, evaluate(model, val).to_dict(), model))
    return scored


# ---------------------------------------------------------------- tests


def test_shards_make_up_the_global_batch():
    data = dataclasses.replace(DATA, augment=False)
    whole = next(iter(make_loader(data, "train", shuffle=True)))[0]
    for ranks in (2, 4):
        world = World(0, ranks)
        parts = [next(iter(make_loader(data, "train", shuffle=True, shard=(rank, ranks),
                                       batch_size=local_batch(16, world))))[0]
                 for rank in range(ranks)]
        for rank, part in enumerate(parts):
            assert torch.equal(part, whole[rank::ranks])
    served = []
    for rank in range(3):  # evaluation shards serve every image once, uneven or not
        loader = make_loader(DATA, "val", shard=(rank, 3))
        set_epoch(loader, 0)
        served += list(loader.sampler)
    assert sorted(served) == list(range(5))
    with pytest.raises(ConfigError, match="data.batch_size.*multiple of 3"):
        local_batch(16, World(0, 3))


def test_warmup_on_two_processes_equals_one_on_the_global_batch(tmp_path):
    assert run_ranks("warmup", folder=str(tmp_path)) == [0, 0]
    state = load_checkpoint(tmp_path / "supernet.pt")
    assert state["step"] == WARMUP.steps
    assert_same_parameters(state["model"], reference_warmup(WARMUP.steps, WARMUP.steps))


def test_killed_rank_resumes_on_one_process(tmp_path):
    # Rank 1 dies fetching its 5th batch: step 4 was checkpointed, rank 0 fails at step 5.
    codes = run_ranks("warmup", folder=str(tmp_path), kill_at=5, timeout=60)
    assert codes[1] == -signal.SIGKILL and codes[0] != 0
    checkpoint = tmp_path / "supernet.pt"
    assert load_checkpoint(checkpoint)["step"] == 4
    torch.manual_seed(123)  # a new process: its own initialisation, overwritten by the resume
    resumed = Supernet(SPACE)
    result = train_supernet(resumed, SPACE, make_loader(DATA, "train", shuffle=True), WARMUP,
                            checkpoint=checkpoint, progress=False)
    assert result.step == WARMUP.steps and len(result.losses) == 2
    assert_same_parameters(dict(resumed.named_parameters()), reference_warmup(WARMUP.steps, 4))


@pytest.fixture(scope="module")
def trained_on_two(tmp_path_factory) -> Path:
    """A `train` run on two processes (one epoch, 3 global batches), with the final BatchNorm
    recalibration on 16 images."""
    folder = tmp_path_factory.mktemp("train")
    assert run_ranks("train", folder=str(folder), bn_images=16) == [0, 0]
    return folder


def test_train_on_two_processes_equals_one_on_the_global_batch(trained_on_two):
    tmp_path = trained_on_two
    result = yaml.safe_load((tmp_path / "tiny" / "result.json").read_text())
    assert result["processes"] == 2 and result["steps"] == 3
    assert result["samples"] == 5  # validation summed over both ranks' shards
    cfg = train_config(str(tmp_path))
    torch.manual_seed(cfg.seed)
    model = build(load_arch(cfg.arch))
    optimizer, scheduler, criterion = make_optimization(model, cfg.optim, 3)
    loader = make_loader(cfg.data, "train", drop_last=True)
    set_epoch(loader, 0)
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        for half in range(2):
            (criterion(model(images[half::2]), labels[half::2]) / 2).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        scheduler.step()
    assert_same_parameters(torch.load(tmp_path / "tiny" / "model.pt"), model)


def test_train_on_two_processes_reports_the_network_it_saves(trained_on_two):
    run, cfg = trained_on_two / "tiny", train_config(str(trained_on_two))
    result = yaml.safe_load((run / "result.json").read_text())
    val = make_loader(cfg.data, "val")

    def scored(state: dict) -> dict:
        model = build(load_arch(cfg.arch))
        model.load_state_dict(state)
        return evaluate(model, val).to_dict()

    # The last epoch's validation is that of the checkpoint (rank 0's network, on both ranks).
    epoch = scored(load_checkpoint(run / "last.pt")["model"])
    assert epoch["accuracy"] == result["history"][-1]["accuracy"]
    assert abs(epoch["loss"] - result["history"][-1]["loss"]) < ATOL
    # The reported result is that of model.pt: the ranks' BatchNorm statistics, averaged.
    saved = torch.load(run / "model.pt")
    final = scored(saved)
    assert (final["accuracy"], final["samples"]) == (result["accuracy"], result["samples"])
    assert abs(final["loss"] - result["loss"]) < ATOL
    # ... and the 8 images of each rank together are the 16 one process recalibrates on: the
    # first BatchNorm's mean (its input independent of batch statistics) is theirs.
    model = build(load_arch(cfg.arch))
    model.load_state_dict(saved)
    loader = make_loader(cfg.data, "train", drop_last=True)
    set_epoch(loader, cfg.epochs)
    recalibrate_bn(model, loader, 16)
    first = next(name for name in saved if name.endswith("running_mean"))
    torch.testing.assert_close(saved[first], model.state_dict()[first], atol=ATOL, rtol=0)


def test_a_divergence_on_one_rank_stops_both_and_keeps_the_last_checkpoint(tmp_path):
    # Two epochs of 3 steps; rank 1's loss is NaN at step 5, after epoch 1's checkpoint.
    assert run_ranks("train", folder=str(tmp_path), nan_at=5, epochs=2, timeout=60) == [2, 2]
    messages = [(tmp_path / f"rank{rank}.err").read_text() for rank in (0, 1)]
    assert messages[0] == messages[1] and "\n" not in messages[0]
    assert "training diverged after step 4 of 6 (the training loss is nan)" in messages[0]
    assert "keeps step 3, the last finite checkpoint" in messages[0]
    state = load_checkpoint(tmp_path / "tiny" / "last.pt")
    assert state["step"] == 3 and not non_finite(state["model"])
    assert not (tmp_path / "tiny" / "model.pt").exists()
    assert not (tmp_path / "tiny" / "result.json").exists()


def test_a_warmup_diverging_on_one_rank_stops_both_at_the_same_step(tmp_path):
    # Six steps, a checkpoint every two; rank 1's loss is NaN at step 5 (distillation: the
    # criterion scores the largest member only, once a step).
    assert run_ranks("warmup_nan", folder=str(tmp_path), nan_at=5, timeout=60) == [2, 2]
    messages = [(tmp_path / f"rank{rank}.err").read_text() for rank in (0, 1)]
    assert messages[0] == messages[1] and "\n" not in messages[0]
    assert "supernet warm-up diverged after step 4 of 6" in messages[0]
    assert "keeps step 4, the last finite checkpoint" in messages[0]
    state = load_checkpoint(tmp_path / "supernet.pt")
    assert state["step"] == 4 and not non_finite(state["model"])


def test_average_gradients_is_a_no_op_in_one_process():
    parameter = torch.nn.Parameter(torch.ones(3))
    parameter.grad = torch.full((3,), 2.0)
    average_gradients([parameter])
    assert torch.equal(parameter.grad, torch.full((3,), 2.0))


# ---------------------------------------------------------------- precision and layout


def test_precision_defaults_and_refusals():
    cpu = resolve_precision("auto", None, torch.device("cpu"))
    assert (cpu.amp, cpu.channels_last) == ("off", True)
    assert resolve_precision("bf16", True, torch.device("cpu")) == Precision("bf16", True, "cpu")
    with pytest.raises(ConfigError, match="amp"):
        resolve_precision("fp8", None, torch.device("cpu"))


def test_auto_precision_keeps_float32_for_small_images_on_cuda():
    # Resolving asks nothing of a GPU here, so this runs without one.
    small = resolve_precision("auto", None, torch.device("cuda"), resolution=32)
    assert small == Precision("off", True, "cuda")


@pytest.mark.parametrize("precision", [Precision("bf16", True), Precision("fp16", False)])
def test_warmup_runs_in_mixed_precision_on_cpu(tmp_path, precision):
    torch.manual_seed(0)
    supernet = Supernet(SPACE)
    cfg = dataclasses.replace(WARMUP, steps=2)
    result = train_supernet(supernet, SPACE, make_loader(DATA, "train", shuffle=True), cfg,
                            checkpoint=tmp_path / "supernet.pt", progress=False,
                            precision=precision)
    assert result.step == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    if precision.channels_last:
        weight = supernet.stem.module.conv.weight
        assert weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(p).all() for p in supernet.parameters())


def test_train_records_precision_and_runs_bf16_channels_last(tmp_path):
    cfg = dataclasses.replace(train_config(str(tmp_path)), amp="bf16", channels_last=True)
    outcome = train(cfg)
    saved = yaml.safe_load((tmp_path / "tiny" / "config.yaml").read_text())
    assert (saved["amp"], saved["channels_last"]) == ("bf16", True)
    assert 0.0 <= outcome.result["accuracy"] <= 1.0
    auto = dataclasses.replace(cfg, amp="auto", channels_last=None, name="auto")
    train(auto)
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    assert (saved["amp"], saved["channels_last"]) == ("off", True)  # CPU defaults, resolved


# ---------------------------------------------------------------- a search on two processes


def test_search_on_two_processes_scores_as_one_on_the_global_batch(tmp_path):
    assert run_ranks("search", folder=str(tmp_path)) == [0, 0]  # both ranks end cleanly
    scored = reference_search(tmp_path)
    assert len(scored) == 2
    for call, (record, result, model) in enumerate(scored, start=1):
        ranks = [torch.load(tmp_path / f"rank{rank}-{call}.pt") for rank in (0, 1)]
        assert ranks[0]["result"] == ranks[1]["result"]  # both ranks scored the same network
        for name, tensor in ranks[0]["model"].items():
            assert torch.equal(tensor, ranks[1]["model"][name]), name
        assert ranks[0]["result"]["samples"] == result["samples"] == 10
        assert record.accuracy == ranks[0]["result"]["accuracy"] == result["accuracy"]
        assert abs(ranks[0]["result"]["loss"] - result["loss"]) < ATOL
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(ranks[0]["model"][name], tensor, atol=ATOL, rtol=0,
                                       msg=lambda message, name=name: f"{name}: {message}")


def test_a_candidate_diverging_on_one_rank_fails_on_both_and_the_search_goes_on(tmp_path):
    # Rank 0's error after the last candidate (its export) ends it, and rank 1 with it.
    assert run_ranks("search", folder=str(tmp_path), diverge=True) == [2, 0]
    _, study = load_run(tmp_path / "dp")
    trials = [TrialRecord.of(t) for t in study.get_trials()
              if t.state.name in ("COMPLETE", "FAIL")]
    assert [t.state for t in trials] == ["fail", "complete", "complete"]
    assert trials[0].failed_reason.startswith(
        "diverged: the training loss is nan at training step 2 of 2")
    assert not (tmp_path / "rank0-3.pt").exists()  # the failed candidate was never validated


def test_a_search_on_several_processes_refuses_what_it_cannot_share():
    check_data_parallel("zero_cost", 15, World(0, 1))
    check_data_parallel("scratch", 16, World(1, 2))
    with pytest.raises(ConfigError, match="without torchrun.*evaluator=scratch"):
        check_data_parallel("zero_cost", 16, World(0, 2))
    with pytest.raises(ConfigError, match="data.batch_size.*multiple of 2"):
        check_data_parallel("scratch", 15, World(0, 2))
