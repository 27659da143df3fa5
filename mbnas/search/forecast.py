"""The run's expected duration, revised from its real warm-up timings as they come in.

The plan's estimate comes from a few steps timed before the run; the real warm-up then shows
what a step really costs now (the machine's load may have changed). After its first few steps,
again whenever the pace since the last check moves the projection by more than a quarter, and
at its end, a line gives the time left: the warm-up at its measured pace, and the candidates
scaled by the same ratio of measured to estimated speed. Once candidates are trained, each
progress line gives the time left from their own timings
(:class:`~mbnas.search.callbacks.Progress`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from mbnas.search.plan import Estimate, format_duration

FIRST_REVISION = 5  # warm-up steps timed before the first revised line (after an untimed one)
CHECK_EVERY = 25  # warm-up steps between later checks of the projection
DRIFT = 0.25  # a projection this far from the last one printed is printed again


class Forecast:
    """Call :meth:`warmup_step` after every warm-up step; it prints a revised expected duration
    when one is due (through ``write``)."""

    def __init__(self, expected: Estimate, trials: int, *,
                 clock: Callable[[], float] = time.perf_counter,
                 write: Callable[[str], None] = print):
        self.expected, self.trials, self.clock, self.write = expected, trials, clock, write
        self.first: tuple[int, float] | None = None  # (step, time) of the first step seen
        self.mark: tuple[int, float] | None = None  # (step, time) of the last check
        self.printed: float | None = None  # the time left in the last line printed
        self.printed_at = 0.0

    def warmup_step(self, step: int) -> None:
        """Record that warm-up step ``step`` is done; print a revised line when due."""
        if self.expected.warmup_steps < 2:  # nothing to time (the first step is not)
            return
        now = self.clock()
        if self.first is None:  # the time before it is unknown: timing starts here
            self.first = (step, now)
            return
        timed = step - self.first[0]
        final = step >= self.first[0] + self.expected.warmup_steps - 1
        due = timed == FIRST_REVISION or final or (timed > FIRST_REVISION
                                                   and timed % CHECK_EVERY == 0)
        if not due:
            return
        # The pace since the last check (a change shows at once); at the end, overall.
        since = self.first if final or self.mark is None else self.mark
        pace = (now - since[1]) / (step - since[0])
        self.mark = (step, now)
        left = self.left(pace, steps_left=self.first[0] + self.expected.warmup_steps - 1 - step)
        if final or self.printed is None or self.moved(left, now):
            self.write(self.line(pace, left, timed, final))
            self.printed, self.printed_at = left, now

    def scale(self, pace: float) -> float:
        """How much slower (above 1) or faster the real warm-up runs than its timed steps."""
        return pace / self.expected.warmup_step_s if self.expected.warmup_step_s > 0 else 1.0

    def left(self, pace: float, steps_left: int) -> float:
        """Seconds left: the warm-up at ``pace`` a step, the rest of the run scaled alike."""
        return steps_left * pace + self.scale(pace) * (self.expected.setup_s
                                                       + self.trials * self.expected.trial_s)

    def moved(self, left: float, now: float) -> bool:
        """Whether ``left`` differs from the last line's projection (aged to now) by more than
        DRIFT."""
        previous = max(self.printed - (now - self.printed_at), 1.0)
        return abs(left - previous) > DRIFT * previous

    def line(self, pace: float, left: float, timed: int, final: bool) -> str:
        """The revised expected duration, as the plan's ``expected`` line puts it."""
        trial = format_duration(self.scale(pace) * self.expected.trial_s)
        what = "warm-up done" if final else f"warm-up at {pace:.2f} s a step"
        return (f"  revised    about {format_duration(left)} left ({what}, measured over "
                f"{timed} steps; estimated {self.expected.warmup_step_s:.2f} s; then "
                f"{self.trials} × {trial})")
