"""Is the machine busy? Other processes on the CPU slow a run down and make latency noisy;
a run says so, with how much longer it will take, instead of staying silent."""

from __future__ import annotations

import os
from dataclasses import dataclass

IDLE_MINUTES = 10  # the default search on 2 idle cores (BENCHMARKS.md, "The mission command")


@dataclass(frozen=True)
class MachineLoad:
    """The 1-minute load average, the cores, and the threads this run wants."""

    load: float
    cores: int
    threads: int

    @property
    def others(self) -> float:
        """Runnable processes besides this one (the load average counts this run once)."""
        return max(0.0, self.load - 1.0)

    @property
    def slowdown(self) -> float:
        """How many times longer CPU work takes than on an idle machine (≥ 1)."""
        return max(1.0, (self.others + self.threads) / self.cores)

    @property
    def busy(self) -> bool:
        """Whether other processes take a noticeable share of the cores."""
        return self.slowdown >= 1.25


def machine_load(threads: int) -> MachineLoad | None:
    """The machine's load now, or None where the system does not report a load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return MachineLoad(load, os.cpu_count() or 1, threads)


def busy_note(threads: int, idle_minutes: float = IDLE_MINUTES) -> str | None:
    """A line saying that the machine is busy and how long the run may take; None when idle."""
    state = machine_load(threads)
    if state is None or not state.busy:
        return None
    return (f"note: the machine is busy (load average {state.load:.1f} on {state.cores} cores): "
            f"expect about {state.slowdown:.1f}x the idle duration (this search: "
            f"~{minutes(idle_minutes)} min idle, ~{minutes(idle_minutes * state.slowdown)} min "
            "now), and noisy measured latencies (latency=table measures nothing during the "
            "search)")


def minutes(value: float) -> str:
    """``0.4``, ``2.5``, ``25``: a tenth below ten minutes."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
