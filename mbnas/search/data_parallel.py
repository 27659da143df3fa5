"""A search under torchrun: rank 0 leads, the other ranks follow, every candidate trains on all.

Rank 0 alone talks to the Optuna study (asks, prunes, tells) and writes what a search writes
(reports, TensorBoard, exports). Before each call of its evaluator it *announces* the call,
a method name and its argument, to the other ranks (``broadcast_object_list``), which make the
same call: every rank then trains the candidate together, data-parallel, on its shard of each
global batch, and gets the same score (see :mod:`mbnas.evaluators.brief_training`). The
evaluator is built on every rank from rank 0's random state, so all start from the same
weights. When rank 0's search ends, it announces the end and every rank returns.

Errors: a candidate that diverges raises :class:`~mbnas.errors.Diverged` on every rank at the
same step (the ranks agree on each loss and on the validation result), so rank 0 fails its trial
and goes on, and the others wait for the next call. Any other error ends its process: raised on
rank 0 between calls, the end is announced first; raised during a call (when the other ranks may
be inside a collective operation) nothing more is announced, and the process group's broken
connection, or torchrun, ends the others.

In a world of one nothing is announced: the evaluator is called as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import torch
from torch import nn

from mbnas.arch import ArchSpec
from mbnas.distributed import World, broadcast, local_batch
from mbnas.errors import ConfigError, Diverged
from mbnas.evaluators import Checkpoint, Evaluation, Evaluator, evaluator_class
from mbnas.run_folder import RunFolder
from mbnas.tensorboard import TrialLog

BUILD, END = "build", "end"
# The calls the other ranks repeat; a Diverged from "evaluate" fails one trial, not the search.
CALLS = ("prepare", "evaluate", "model_for")


def check_data_parallel(evaluator: str, batch_size: int, world: World) -> None:
    """Refuse a search on several processes that cannot share its candidates: an evaluator that
    trains none, or a global batch that does not divide among the processes."""
    local_batch(batch_size, world)
    if world.size > 1 and not evaluator_class(evaluator).data_parallel:
        raise ConfigError(
            "evaluator", f"{evaluator!r} trains no candidate, so the {world.size} processes "
            "torchrun started could only repeat each other's work", "run `python -m mbnas "
            "search` without torchrun (several workers: one process each), or use "
            "evaluator=scratch or evaluator=supernet")


class Lead:
    """Rank 0's side: announces the calls of its evaluator, and the end when its block ends."""

    def __init__(self) -> None:
        self.busy = False  # inside an announced call: the others may be in a collective

    def __enter__(self) -> Lead:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.busy:  # a call left half done is never followed by an announcement
            return
        if error is None:
            broadcast((END, None))
            return
        # The others may have ended already (Ctrl-C reaches them too): the error to report is
        # this one, not the broken connection.
        with contextlib.suppress(RuntimeError):
            broadcast((END, None))

    def build(self, make: Callable[[], Evaluator]) -> Evaluator:
        """The evaluator ``make`` builds, built on every rank from this rank's torch random
        state (the same initial weights everywhere), its calls announced."""
        with self.announced(BUILD, torch.get_rng_state()):
            return Leading(make(), self)

    @contextlib.contextmanager
    def announced(self, method: str, argument: Any) -> Iterator[None]:
        """Announce ``method(argument)``, then run the block: the other ranks' same call."""
        broadcast((method, argument))
        self.busy = True
        try:
            yield
        except Diverged:
            # Agreed on by every rank: all are back in step, whatever rank 0 does next.
            if method == "evaluate":
                self.busy = False
            raise
        self.busy = False


class Leading(Evaluator):
    """``inner`` on rank 0, each call announced first so that every rank makes it."""

    def __init__(self, inner: Evaluator, lead: Lead) -> None:
        super().__init__(inner.cfg, inner.context)
        self.inner, self.lead = inner, lead
        # What the search reads off an evaluator, as the inner one says.
        self.name, self.config = inner.name, inner.config
        self.exports_weights, self.score_name = inner.exports_weights, inner.score_name
        self.warms_up, self.data_parallel = inner.warms_up, inner.data_parallel
        self.stops_early = inner.stops_early

    def prepare(self, run: RunFolder) -> None:
        with self.lead.announced("prepare", run):
            self.inner.prepare(run)

    def evaluate(self, arch: ArchSpec, log: TrialLog | None = None,
                 checkpoint: Checkpoint | None = None) -> Evaluation:
        # A checkpoint's verdict would be rank 0's alone: with several ranks the search
        # refuses a pruner, so only a world of one gets one.
        with self.lead.announced("evaluate", arch):
            return self.inner.evaluate(arch, log, checkpoint)

    def model_for(self, arch: ArchSpec, log: TrialLog | None = None) -> nn.Module:
        with self.lead.announced("model_for", arch):
            return self.inner.model_for(arch, log)


def follow(make: Callable[[], Evaluator]) -> None:
    """A rank other than 0: build the evaluator when rank 0 does (from its random state); make
    each call rank 0 announces, and return at its end."""
    evaluator = None
    while True:
        method, argument = broadcast(None)
        if method == END:
            return
        if method == BUILD:
            torch.set_rng_state(argument)
            evaluator = make()
        elif method in CALLS and evaluator is not None:
            try:
                getattr(evaluator, method)(argument)
            except Diverged:
                if method != "evaluate":
                    raise
        else:  # only a rank 0 of another mbnas version would announce it
            raise ConfigError("torchrun", f"rank 0 announced {method!r}, which this rank "
                              "cannot follow", "run the same mbnas on every process")
