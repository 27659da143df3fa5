"""Data parallelism with torch.distributed: joining the process group ``torchrun`` describes,
reading checkpoints once, and reducing gradients, BatchNorm statistics and sums across the
ranks.

``torchrun --nproc_per_node=N -m mbnas <command> ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`setup` joins
their group (gloo on CPU, NCCL on CUDA, one GPU per local rank). Without those variables a
command is one process of a world of one and every function here does nothing. Data-parallel:
``warmup``, ``train``, and ``search`` with a training evaluator, whose every candidate all ranks
train together (rank 0 leading the study, :mod:`mbnas.search.data_parallel`).

Semantics, the same for any number of processes: ``data.batch_size`` is the *global* batch;
each of N ranks takes ``batch_size / N`` images of it (see :class:`mbnas.data.EpochSampler`:
rank r takes samples r, r+N, ... of the epoch's order), gradients are averaged across ranks
once per optimiser step, and so an update is one process's update on the same global batch
except that BatchNorm normalises each rank's images with their own statistics (as
DistributedDataParallel does without SyncBatchNorm, which torch offers on GPUs only).
Checkpoints are written by rank 0 and hold no per-rank state, so a run resumes with any number
of processes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mbnas.errors import ConfigError, MbnasError
from mbnas.train import EvalResult, evaluate, load_checkpoint, resolve_device

# Gradients are all-reduced in flat buckets of at most this many elements (64 MB of float32).
BUCKET_ELEMENTS = 1 << 24
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints progress (rank 0)."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, size)``: which part of every batch this process takes."""
        return self.rank, self.size


def env_world() -> World:
    """The world ``torchrun`` described in the environment (a world of one without it)."""
    values = {}
    for key, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(key, str(default))
        try:
            values[key] = int(text)
        except ValueError:
            raise ConfigError(key, f"environment variable is {text!r}, not an integer",
                              "launch with torchrun, or unset it") from None
    world = World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ConfigError("RANK", f"rank {world.rank} of world size {world.size}",
                          "launch with torchrun, or unset RANK and WORLD_SIZE")
    return world


def current_world() -> World:
    """The world this process belongs to (a world of one outside a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), env_world().local_rank)


def setup(device_name: str = "auto") -> tuple[World, torch.device]:
    """Join the process group torchrun describes (if any) and pick this rank's device: on CUDA
    the GPU of its local rank."""
    world = env_world()
    device = resolve_device(device_name)
    if device.type == "cuda" and world.size > 1:
        if world.local_rank >= torch.cuda.device_count():
            raise ConfigError("LOCAL_RANK", f"{world.local_rank}, but this machine has "
                              f"{torch.cuda.device_count()} GPU(s)",
                              "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT,
                                rank=world.rank, world_size=world.size)
    return world, device


def local_batch(global_batch: int, world: World, key: str = "data.batch_size") -> int:
    """Each rank's share of the global batch; ConfigError unless it divides evenly."""
    if global_batch % world.size:
        raise ConfigError(key, f"{global_batch} (the global batch) does not divide among "
                          f"{world.size} processes", f"use a multiple of {world.size}")
    return global_batch // world.size


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when there are several processes, else itself."""
    if current_world().size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average every parameter's ``.grad`` across ranks, in flat buckets (one all-reduce each).

    For accumulated gradients (the sandwich rule's several members per step) that
    DistributedDataParallel would reduce once per backward. Every rank must hold gradients for
    the same parameters, which holds when all ranks run the same members.
    """
    average_across([p.grad for p in parameters if p.grad is not None])


def average_buffers(model: nn.Module) -> None:
    """Average ``model``'s floating-point buffers (BatchNorm's running statistics) across ranks.

    For statistics every rank estimated on its own images, as :func:`mbnas.train.recalibrate_bn`
    does on each rank's shard: with equally many batches on every rank the average is the
    estimate from all ranks' batches. Integer buffers (batch counters) are left as they are;
    they are equal when the ranks ran equally many batches."""
    average_across([b for b in model.buffers() if b.is_floating_point()])


def average_across(tensors: Sequence[torch.Tensor]) -> None:
    """Replace every tensor of ``tensors`` (the same shapes and order on every rank) with its
    mean over the ranks, in flat buckets (one all-reduce each)."""
    world = current_world()
    if world.size == 1:
        return
    for bucket in _buckets(tensors):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat)
        flat.div_(world.size)
        offset = 0
        for tensor in bucket:
            tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()


def _buckets(tensors: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
    buckets: list[list[torch.Tensor]] = []
    size = BUCKET_ELEMENTS
    for tensor in tensors:
        if size + tensor.numel() > BUCKET_ELEMENTS or tensor.dtype != buckets[-1][0].dtype:
            buckets.append([])
            size = 0
        buckets[-1].append(tensor)
        size += tensor.numel()
    return buckets


def sum_across(values: Sequence[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (``values`` itself in a world of one)."""
    if current_world().size == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def means_across(values: Sequence[float]) -> list[float]:
    """The element-wise mean of ``values`` over all ranks."""
    size = current_world().size
    return [total / size for total in sum_across(values)]


def mean_across(value: float) -> float:
    """The mean of ``value`` over all ranks."""
    return means_across([value])[0]


def evaluate_shards(model: nn.Module, loader: Iterable, *, max_batches: int | None = None
                    ) -> EvalResult:
    """:func:`mbnas.train.evaluate` of each rank's shard of ``loader``, summed over the ranks
    (every rank gets the same result). With ``max_batches`` and shards of ``batch / N`` images
    (:func:`local_batch`), the ranks together score the same images as one process."""
    result = evaluate(model, loader, max_batches=max_batches)
    if current_world().size == 1:
        return result
    correct, loss, samples = sum_across([result.accuracy * result.samples,
                                         result.loss * result.samples, result.samples])
    return EvalResult(round(correct) / samples, loss / samples, round(samples))


@contextlib.contextmanager
def process_group(device_name: str = "auto") -> Iterator[tuple[World, torch.device]]:
    """:func:`setup` for the block; the group is left at its end if the block joined it."""
    joined = not dist.is_initialized()
    world, device = setup(device_name)
    try:
        yield world, device
    finally:
        if joined:
            teardown()


def teardown() -> None:
    """Leave the process group (at the end of a command run under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank, as
    DistributedDataParallel makes them before each forward: after data-parallel training every
    rank then holds the network rank 0 holds (and exports)."""
    if current_world().size == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if current_world().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def read_checkpoint(path: str | Path | None) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (None if absent), read by rank 0 and sent to every rank: the
    other ranks need no access to rank 0's folder, and all resume from the same state."""
    state, error = None, None
    if current_world().main and path is not None and Path(path).is_file():
        try:
            state = load_checkpoint(path)
        except MbnasError as problem:  # every rank stops with it, none waits for rank 0
            error = str(problem)
    state, error = broadcast((state, error))
    if error is not None:
        raise MbnasError(error)
    return state


def barrier() -> None:
    """Wait until every rank gets here."""
    if current_world().size > 1:
        dist.barrier()
