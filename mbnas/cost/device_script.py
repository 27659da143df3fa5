"""Measure a latency bundle exported by mbnas on the device it will run on; write the table.

Self-contained on purpose: it needs Python 3.9+, numpy and onnxruntime, not mbnas or torch, so it
can be copied to a phone-class board or a server next to the bundle folder that
``python -m mbnas latency export space=<name> out=<folder>`` writes (the folder holds a copy of
this file)::

    python <folder>/measure_blocks.py <folder> --threads 1 --out table.json

then, back on the search machine: ``python -m mbnas search latency=table latency.table=table.json``.
Later, ``python <folder>/measure_blocks.py <folder> --check table.json`` times the bundle's members
again and says whether the table still holds on this device (its error and the drift).
mbnas itself builds tables with the same functions (``python -m mbnas latency build``).

The bundle's ONNX files leave out their float weights (latency depends on their shapes, not their
values; a bundle of the `default` space would otherwise take 5 GB): this script generates them.

The table predicts a whole network as ``offset + (scale + scale_per_mparam · M) · Σ (entry − call
overhead)``. Every entry is timed alone and so pays the runtime's per-call overhead once, while the
whole network pays it once in all: the overhead is measured on identity models, as a constant plus
a cost per element of input and output (onnxruntime copies each call's output into a new array).
An entry timed alone also finds its weights in the processor's cache, call after call; inside a
network the other blocks' weights have evicted them, so a network with more weights (``M``
million parameters, the sum of its entries') runs further above the sum of its blocks. The three
coefficients are fitted on whole members measured here, ``M`` held to the range they span.
Where that is not enough (PyTorch at 32 px: members of 3 M parameters ran 43% above the sum of
their blocks), large entries are also timed with cold caches, and the model adds
``cold_scale · ramp(M) · Σ (cold − warm entry)``, the ramp rising from 0 to 1 between two
sizes; ramp and scale are fitted on the members too, and kept only where they predict members
left out of the fit clearly better.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

TABLE_FORMAT = "mbnas-latency-table/2"
BUNDLE_FORMAT = "mbnas-latency-bundle/3"
DEVICE_SCRIPT_NAME = "measure_blocks.py"  # this file's name in a bundle folder
BUSY_SPREAD = 0.10  # interquartile range / median above which a timing is called noisy
# Cores other processes keep busy, on average, while a timing runs, above which the machine is
# called busy even when the repeats agree: they share the processor's caches and memory
# bandwidth (and, on a core with two hardware threads, the core), which the spread need not show
# (a process spinning on the other core of the 2-core VM left it at 3-9%, BENCHMARKS.md). Judged
# over a second or more of timing: /proc/stat counts in ticks of 10 ms.
BUSY_OTHER_CORES = 0.25
MIN_LOAD_WINDOW_S = 1.0
OVERHEAD_ELEMENTS = (256, 16384, 262144, 1048576)  # identity models timed for the overhead
CHUNK = 64  # models alive at once while a block set is measured
ENTRY_ORDER_SEED = 0  # the fixed shuffle of a table's entries before they are measured
MIN_SAMPLE_MS = 0.2  # calls faster than this are timed in groups, so the timer's grain is small
# Whole networks get this many times an entry's repeats: they run longer, so interference from
# other processes reaches more of their samples, and their minimum needs more samples to find
# the undisturbed time (two passes over the same 120 members agreed better in 5 of 5 runs with
# 60 repeats than with 20, and the model scored better in 4 of 5: BENCHMARKS.md).
NETWORK_REPEATS = 3
# Fewer calibration members than this fit only the line (offset, scale): three coefficients fitted
# on a handful of noisy timings would follow the noise.
MIN_MEMBERS_FOR_WEIGHTS = 6
# A network whose weights do not stay in the caches from one inference to the next pays to fetch
# them again in every block, which entries timed back to back do not see: with PyTorch at 32 px,
# members of 3 M parameters and more ran 43% (median) above the sum of their blocks, those under
# 1 M 3% (BENCHMARKS.md, Latency table error). So entries of at least COLD_MIN_PARAMS parameters
# are also timed just after EVICT_BYTES have been read and written (the fastest of COLD_REPEATS),
# and the model adds their extra time over the warm one, weighed by a ramp in the network's
# parameters (starting at one of RAMP_STARTS million, one of RAMP_WIDTHS wide) and a fitted scale.
COLD_MIN_PARAMS = 100_000
COLD_REPEATS = 5
EVICT_BYTES = 64 * 2**20  # more than the caches of the CPUs this was measured on (32 MB L3)
RAMP_STARTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
RAMP_WIDTHS = (0.5, 1.0, 2.0, 4.0, 8.0)
# A ramp is kept only where it predicts calibration members left out of its fit better than no
# ramp by this fraction (leave-one-out): `cifar`/torch's calibration members' held-out error
# fell by 61%. Noise alone can pass it too (a dozen members timed within 2%: 29 of 100 draws),
# but with a small cold scale, the predictions at most 1.6 points further from the truth.
COLD_MIN_GAIN = 0.2
# What a latency is: the minimum of the repeats (the latency without interference, the default:
# on a shared machine a long call is preempted more often than a short one, which biases
# medians of whole networks against those of blocks, and the median moves more from one process
# or minute to the next) or their median (typical latency).
STATISTICS = ("min", "median")
# Which clock times a call: wall time (what a user waits), or the CPU time of the calling thread
# (one-thread inference only): on a machine shared with other jobs, CPU time leaves out the time
# the scheduler gave to them, so tables built there still predict an idle device.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}

# glibc's malloc gives large freed blocks back to the system (blocks above a threshold it adapts
# as the program runs, and the heap's free top): the next call of a network then faults its
# activations' pages in anew, thousands of page faults per call at 224 px (measured: 6,016 a call
# of a ProxylessNAS member, about half its latency on a virtual machine), and how many depends on
# what ran before, so one network's timings differed up to twofold. Deployed runtimes keep their
# memory (onnxruntime's and TFLite's arenas, PyTorch with jemalloc or tcmalloc), and so do these
# measurements: every block comes from the heap, which is trimmed only when more than 1 GB of it
# is free. A threshold is not enough: glibc maps blocks of 32 MB and more (its largest threshold)
# on their own whatever it is set to, and PyTorch reorders the weights of a large convolution
# into such a block at every call (a `default` fused k7 192->1152 block: 10,585 page faults a
# call, 30.7 ms against 14.7 ms; BENCHMARKS.md). It applies to the whole process.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameter numbers (malloc.h)
TRIM_THRESHOLD_BYTES = 2**30

Call = Callable[[], Any]


# ----------------------------------------------------------------------------- timing

@functools.cache
def keep_freed_memory() -> str:
    """Ask the C library to keep freed memory for reuse (once per process); what it agreed to."""
    if not sys.platform.startswith("linux"):
        return "system default"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "system default"
    if mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1:
        return "glibc malloc, freed memory kept (every block from the heap, trim threshold 1 GB)"
    return "system default"


def sample_times(call: Call, repeats: int, number: int = 1, clock: str = "wall") -> list[float]:
    """``repeats`` timings (ms per call) of ``call`` run ``number`` times each."""
    now, times = CLOCKS[clock], []
    for _ in range(repeats):
        start = now()
        for _ in range(number):
            call()
        times.append((now() - start) * 1e3 / number)
    return times


def calls_per_sample(call: Call, warmup: int) -> int:
    """How many calls one timing sample groups: enough for ``MIN_SAMPLE_MS``, after warm-up."""
    times = sample_times(call, max(warmup, 1))
    return max(1, math.ceil(MIN_SAMPLE_MS / max(min(times), 1e-6)))


def summarize(times: Sequence[float]) -> dict[str, float]:
    """Median, minimum, interquartile range and spread (IQR / median) of timings in ms."""
    ordered = sorted(times)
    median = statistics.median(ordered)
    if len(ordered) > 1:
        quartiles = statistics.quantiles(ordered, n=4)
        iqr = quartiles[2] - quartiles[0]
    else:
        iqr = 0.0
    return {"median_ms": median, "min_ms": ordered[0], "iqr_ms": iqr,
            "spread": iqr / median if median > 0 else 0.0, "samples": len(ordered)}


def measure_calls(calls: dict[str, Call], warmup: int, repeats: int, rounds: int = 3,
                  clock: str = "wall") -> dict[str, dict[str, float]]:
    """Time every call in ``rounds`` interleaved passes; per call the summary of its samples.

    Interleaving spreads a burst of load from another process over many entries instead of
    letting it inflate a few, which keeps ratios between entries honest on a shared machine.
    """
    keep_freed_memory()
    rounds = max(1, min(rounds, repeats))
    number = {key: calls_per_sample(call, warmup) for key, call in calls.items()}
    samples: dict[str, list[float]] = {key: [] for key in calls}
    for index in range(rounds):
        share = repeats // rounds + (1 if index < repeats % rounds else 0)
        for key, call in calls.items():
            samples[key] += sample_times(call, share, number[key], clock)
    return {key: summarize(times) for key, times in samples.items()}


def fastest_after(call: Call, before: Callable[[], Any], repeats: int, clock: str = "wall"
                  ) -> float:
    """The fastest of ``repeats`` calls (ms), each timed right after ``before()``."""
    now, best = CLOCKS[clock], math.inf
    for _ in range(repeats):
        before()
        start = now()
        call()
        best = min(best, now() - start)
    return best * 1e3


def cold_times(calls: dict[str, Call], repeats: int = COLD_REPEATS, clock: str = "wall"
               ) -> dict[str, float]:
    """Per call the fastest of ``repeats`` (ms), each right after ``EVICT_BYTES`` were read and
    written, which evicts the call's weights from the caches."""
    if not calls:
        return {}
    import numpy

    evict = numpy.zeros(EVICT_BYTES // 8)
    return {key: fastest_after(call, lambda: numpy.add(evict, 1.0, out=evict), repeats, clock)
            for key, call in calls.items()}


def is_busy(spreads: Sequence[float], other_cores: float | None = None) -> bool:
    """Whether timings vary across repeats more than a quiet machine's do, or other processes
    kept part of the cores busy while they ran."""
    noisy = bool(spreads) and statistics.median(spreads) > BUSY_SPREAD
    return noisy or (other_cores or 0.0) >= BUSY_OTHER_CORES


def busy_reason(median_spread: float, other_cores: float | None) -> str:
    """Why timings count as busy, in words: the spread across repeats, the other processes."""
    reasons = []
    if median_spread > BUSY_SPREAD:
        reasons.append(f"timings varied {median_spread:.0%} across repeats (interquartile range "
                       f"/ median; a quiet machine: under {BUSY_SPREAD:.0%})")
    if (other_cores or 0.0) >= BUSY_OTHER_CORES:
        reasons.append(f"other processes kept {other_cores:.1f} of {os.cpu_count()} cores busy "
                       f"while timing (a quiet machine: under {BUSY_OTHER_CORES}), sharing the "
                       "processor's caches and memory with it")
    return "; ".join(reasons)


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process has used since boot, over all cores, with the time a hypervisor
    gave other guests (Linux's /proc/stat); None where the system does not say."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores other processes kept busy while ``with`` blocks ran, on average over all
    of them (so one instance can follow a whole search's timings): the machine's CPU time less
    this process's, per second of wall time."""

    def __init__(self) -> None:
        self.wall_s, self.other_s, self.supported = 0.0, 0.0, True
        self._start: tuple[float, float | None, float] | None = None

    def __enter__(self) -> OtherLoad:
        self._start = (time.perf_counter(), machine_cpu_seconds(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, machine, own = time.perf_counter(), machine_cpu_seconds(), time.process_time()
        wall0, machine0, own0 = self._start
        if machine is None or machine0 is None:
            self.supported = False
            return
        self.wall_s += wall - wall0
        self.other_s += (machine - machine0) - (own - own0)

    @property
    def cores(self) -> float | None:
        """Cores kept busy by others on average; None before ``MIN_LOAD_WINDOW_S`` of timing or
        where the system does not say."""
        if not self.supported or self.wall_s < MIN_LOAD_WINDOW_S:
            return None
        return max(0.0, self.other_s / self.wall_s)


# ----------------------------------------------------------------------------- the model

def fit_line(pairs: Sequence[Sequence[float]]) -> dict[str, float]:
    """A robust line ``measured = offset + scale · x`` (Theil-Sen: median of pairwise slopes);
    with fewer than three distinct ``x`` the median ratio and no offset."""
    xs = {round(x, 9) for x, _ in pairs}
    if len(pairs) >= 3 and len(xs) > 1:
        slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pairs)
                  for x2, y2 in pairs[i + 1:] if x2 != x1]
        scale = statistics.median(slopes)
        if scale > 0:
            offset = statistics.median(y - scale * x for x, y in pairs)
            return {"offset_ms": offset, "scale": scale}
    if pairs:
        return {"offset_ms": 0.0, "scale": statistics.median(y / x for x, y in pairs if x > 0)}
    return {"offset_ms": 0.0, "scale": 1.0}


def fit_overhead(points: Sequence[Sequence[float]]) -> dict[str, float]:
    """The per-call overhead ``c0 + c1 · elements`` (least squares, both ≥ 0) from identity
    models timed at several sizes: (elements, ms) pairs."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x) if var_x else 0.0
    slope = max(slope, 0.0)
    return {"call_overhead_ms": max(mean_y - slope * mean_x, 0.0),
            "overhead_ms_per_element": slope}


def solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """``x`` with ``matrix · x = vector`` (Gaussian elimination, partial pivoting); None when the
    matrix is singular."""
    n = len(vector)
    rows = [list(row) + [value] for row, value in zip(matrix, vector)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-12:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (rows[r][n] - sum(rows[r][c] * x[c] for c in range(r + 1, n))) / rows[r][r]
    return x


def fit_relative(features: Sequence[Sequence[float]], targets: Sequence[float],
                 iterations: int = 50) -> list[float] | None:
    """Coefficients ``b`` minimising Σ |1 − b·x / y|, the sum of relative errors (iteratively
    reweighted least squares): relative, because a table must be as good for small networks as
    for large ones; absolute values, so that one timing spoilt by another process weighs little.
    None when the features cannot be told apart."""
    weights = [1.0] * len(targets)
    coefficients = None
    for _ in range(iterations):
        rows = [[x / y * w for x in xs] for xs, y, w in zip(features, targets, weights)]
        size = len(rows[0])
        normal = [[sum(row[i] * row[j] for row in rows) for j in range(size)]
                  for i in range(size)]
        right = [sum(row[i] * w for row, w in zip(rows, weights)) for i in range(size)]
        coefficients = solve(normal, right)
        if coefficients is None:
            return None
        residuals = [abs(1 - sum(b * x for b, x in zip(coefficients, xs)) / y)
                     for xs, y in zip(features, targets)]
        weights = [1 / math.sqrt(max(r, 1e-3)) for r in residuals]
    return coefficients


def fit_model(points: Sequence[Sequence[float]], cold: Sequence[float] | None = None
              ) -> dict[str, Any]:
    """The whole-network model from calibration members: (work ms, million parameters, measured
    ms) each, and ``cold``, each one's :func:`cold_extra`. Offset, scale and scale per million
    parameters (relative-error fit) with enough members whose parameters differ; otherwise the
    robust line alone. With cold extras, the ramp and cold scale that fit best are added where
    they fit the members clearly better (``COLD_MIN_GAIN``)."""
    params = [m for _, m, _ in points]
    model: dict[str, Any] = {**fit_line([(w, y) for w, _, y in points]), "scale_per_mparam": 0.0,
                             "mparams_range": [min(params, default=0.0),
                                               max(params, default=0.0)],
                             "cold_scale": 0.0, "cold_ramp": [0.0, 1.0]}
    extras = list(cold) if cold is not None else [0.0] * len(points)
    usable = [(w, m, c, y) for (w, m, y), c in zip(points, extras) if w > 0 and y > 0]
    if len(usable) < MIN_MEMBERS_FOR_WEIGHTS or max(params) <= min(params):
        return model
    best = best_fit(usable, model["mparams_range"])
    if best is not None:
        coefficients, cold_ramp = best
        model.update(offset_ms=coefficients[0], scale=coefficients[1],
                     scale_per_mparam=coefficients[2])
        if cold_ramp is not None:
            model.update(cold_scale=coefficients[3], cold_ramp=list(cold_ramp))
    return model


def best_fit(usable: Sequence[tuple[float, float, float, float]], mparams_range: Sequence[float]
             ) -> tuple[list[float], tuple[float, float] | None] | None:
    """The coefficients, and the ramp or None, that fit ``usable`` members (work, million
    parameters, cold extra, measured): among the ramps the one with the smallest sum of
    relative errors, kept only where it also predicts members left out of the fit better by
    ``COLD_MIN_GAIN`` (leave-one-out) than no ramp; None when no fit without a ramp holds."""
    plain = fit_with_ramp(usable, None, mparams_range)
    if plain is None:
        return None
    ramps = itertools.product(RAMP_STARTS, RAMP_WIDTHS) if any(u[2] > 0 for u in usable) else ()
    fits = {r: f for r in ramps if (f := fit_with_ramp(usable, r, mparams_range))}
    if not fits:
        return plain, None
    best = min(fits, key=lambda r: relative_error(fits[r], ramp_features(usable, r), usable))
    if (held_out_error(usable, best, mparams_range)
            >= (1 - COLD_MIN_GAIN) * held_out_error(usable, None, mparams_range)):
        return plain, None
    return fits[best], best


def ramp_features(usable: Sequence[tuple[float, float, float, float]],
                  cold_ramp: tuple[float, float] | None) -> list[tuple[float, ...]]:
    """Per member (1, work, work · parameters) and, with a ramp, its weighed cold extra."""
    return [(1.0, w, w * m) + (() if cold_ramp is None else (ramp(m, *cold_ramp) * c,))
            for w, m, c, _ in usable]


def fit_with_ramp(usable: Sequence[tuple[float, float, float, float]],
                  cold_ramp: tuple[float, float] | None, mparams_range: Sequence[float]
                  ) -> list[float] | None:
    """The relative-error fit with ``cold_ramp`` (or none); None where it cannot be told apart
    or would give a network a scale or cold scale of zero or below."""
    fitted = fit_relative(ramp_features(usable, cold_ramp), [y for *_, y in usable])
    if (not fitted or not all(fitted[1] + fitted[2] * m > 0 for m in mparams_range)
            or (cold_ramp is not None and fitted[3] <= 0)):
        return None
    return fitted


def relative_error(coefficients: Sequence[float], features: Sequence[Sequence[float]],
                   usable: Sequence[tuple[float, float, float, float]]) -> float:
    """Σ |1 − predicted / measured| over the members."""
    return sum(abs(1 - sum(b * x for b, x in zip(coefficients, xs)) / member[3])
               for xs, member in zip(features, usable))


def held_out_error(usable: Sequence[tuple[float, float, float, float]],
                   cold_ramp: tuple[float, float] | None, mparams_range: Sequence[float]
                   ) -> float:
    """Σ over members of the relative error of a fit on all the others (infinite where one
    of those fits fails)."""
    total = 0.0
    for index, member in enumerate(usable):
        fitted = fit_with_ramp([*usable[:index], *usable[index + 1:]], cold_ramp, mparams_range)
        if fitted is None:
            return math.inf
        total += relative_error(fitted, ramp_features([member], cold_ramp), [member])
    return total


def ramp(mparams: float, start: float, width: float) -> float:
    """0 up to ``start`` million parameters, rising to 1 over ``width`` million."""
    return min(1.0, max(0.0, (mparams - start) / width))


def work(table: dict[str, Any], keys: Sequence[str]) -> float:
    """Σ (entry − its call overhead) over ``keys``: the blocks' own time, without their calls."""
    model, elements = table["model"], table["elements"]
    return sum(table["entries"][key] - model["call_overhead_ms"]
               - model["overhead_ms_per_element"] * elements[key] for key in keys)


def mparams(table: dict[str, Any], keys: Sequence[str]) -> float:
    """Million parameters of a network made of the entries ``keys``."""
    return sum(table["params"][key] for key in keys) / 1e6


def cold_extra(table: dict[str, Any], keys: Sequence[str]) -> float:
    """Σ over ``keys`` of the extra time of their entries with cold caches (0 where not timed
    so: small entries, or a table built before cold timings)."""
    extra = table.get("cold_extra", {})
    return sum(extra.get(key, 0.0) for key in keys)


def predict(table: dict[str, Any], keys: Sequence[str]) -> float:
    """A table's prediction (ms) for a network made of the entries ``keys``, at least one call's
    overhead: a line fitted on a few noisy calibration networks can have a negative offset, and
    a small network's prediction would then fall to zero or below."""
    model = table["model"]
    low, high = model["mparams_range"]
    size = min(max(mparams(table, keys), low), high)
    scale = model["scale"] + model["scale_per_mparam"] * size
    cold = model.get("cold_scale", 0.0) * ramp(size, *model.get("cold_ramp", (0.0, 1.0)))
    return max(model["offset_ms"] + scale * work(table, keys)
               + (cold * cold_extra(table, keys) if cold else 0.0), model["call_overhead_ms"])


def error_summary(checks: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """Median, 90th-percentile and largest |error| (fractions) of checked predictions."""
    errors = sorted(abs(c["error"]) for c in checks)
    if not errors:
        return {"median_abs_error": None, "p90_abs_error": None, "max_abs_error": None}
    p90 = errors[min(len(errors) - 1, math.ceil(0.9 * len(errors)) - 1)]
    return {"median_abs_error": statistics.median(errors), "p90_abs_error": p90,
            "max_abs_error": errors[-1]}


def compare(table: dict[str, Any], networks: Sequence[dict[str, Any]],
            measured: dict[str, float]) -> list[dict[str, Any]]:
    """Per network: measured and predicted ms and the relative error of the prediction."""
    rows = []
    for network in networks:
        truth = measured[network["name"]]
        guess = predict(table, network["keys"])
        rows.append({"name": network["name"], "measured_ms": truth, "predicted_ms": guess,
                     "error": (guess - truth) / truth})
    return rows


def statistic_key(meta: dict[str, Any]) -> str:
    """The timing key of a table's statistic (``min_ms`` or ``median_ms``), from its ``meta``;
    tables built before the statistic was recorded hold medians."""
    return f"{meta.get('statistic', 'median')}_ms"


def machine_drift(references: Sequence[dict[str, Any]], now: dict[str, float]) -> float | None:
    """How much slower (positive) or faster a table's ``references`` (its networks, with the
    ``measured_ms`` of the build) run ``now`` (ms by name): the median ratio less one; None
    without references."""
    if not references:
        return None
    return statistics.median(now[n["name"]] / n["measured_ms"] for n in references) - 1


def without_drift(rows: Sequence[dict[str, Any]], drift: float | None) -> list[dict[str, Any]]:
    """Checked ``rows`` with the machine's ``drift`` taken out of their errors."""
    if not drift:
        return list(rows)
    # Timed at the table's speed, a member would have taken measured / (1 + drift).
    return [{**r, "error": (1 + r["error"]) * (1 + drift) - 1} for r in rows]


def score_check(table: dict[str, Any], checks: Sequence[dict[str, Any]],
                references: Sequence[dict[str, Any]], timed: dict[str, dict[str, float]],
                other_cores: float | None = None) -> dict[str, Any]:
    """A check of ``table`` from networks ``timed`` again now (summaries by name): the
    ``checks`` networks' errors, the machine's drift on the ``references`` (networks of the
    build) with the errors without it, and whether the machine was busy (``other_cores``: how
    many cores other processes kept busy meanwhile, None if unknown)."""
    now = {name: stats[statistic_key(table.get("meta", {}))] for name, stats in timed.items()}
    rows = compare(table, checks, now)
    drift = machine_drift(references, now)
    spreads = [stats["spread"] for stats in timed.values()]
    return {"checks": rows, **error_summary(rows), "busy": is_busy(spreads, other_cores),
            "median_spread": statistics.median(spreads) if spreads else 0.0,
            "other_cores": other_cores,
            "drift": drift, "drift_corrected": error_summary(without_drift(rows, drift)),
            "references": [{"name": n["name"], "built_ms": n["measured_ms"],
                            "now_ms": now[n["name"]]} for n in references]}


def measure_in_chunks(makers: dict[str, Callable[[], Call]], warmup: int, repeats: int,
                      log: Callable[[str], None] = print, clock: str = "wall",
                      cold: Collection[str] = ()) -> dict[str, dict[str, float]]:
    """:func:`measure_calls` over calls made ``CHUNK`` at a time, so that a large block set
    never holds every model (or session) in memory at once; logs progress. The calls in
    ``cold`` are also timed with cold caches (:func:`cold_times`, as ``cold_ms``)."""
    keys, results = list(makers), {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        calls = {key: makers[key]() for key in chunk}
        results.update(measure_calls(calls, warmup, repeats, clock=clock))
        for key, ms in cold_times({k: c for k, c in calls.items() if k in cold},
                                  clock=clock).items():
            results[key]["cold_ms"] = ms
        log(f"  {start + len(chunk)}/{len(keys)} measured")
    return results


def shuffled(makers: dict[str, Callable[[], Call]]) -> dict[str, Callable[[], Call]]:
    """``makers`` in a fixed random order. Sorted by key, a chunk holds one kind of block (every
    fused block at 14 px, say), measured in the same minute: the machine's drift over a build
    then moves whole kinds together, which no sum over a network's blocks averages out. Between
    two builds of the `default` table with PyTorch, kinds of block disagreed by 1.6% (standard
    deviation of their median ratios) in key order and by 0.4% shuffled (BENCHMARKS.md)."""
    keys = sorted(makers)
    random.Random(ENTRY_ORDER_SEED).shuffle(keys)
    return {key: makers[key] for key in keys}


def build_table(meta: dict[str, Any], entry_makers: dict[str, Callable[[], Call]],
                elements: dict[str, int], params: dict[str, int],
                overhead_calls: dict[int, Call],
                networks: Sequence[dict[str, Any]],
                network_makers: dict[str, Callable[[], Call]], warmup: int, repeats: int,
                statistic: str = "min", clock: str = "wall",
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure entries, the call overhead and whole networks; fit the model on the networks of
    role ``calibrate`` and report the error on those of role ``check``: the table document.
    ``elements``: input and output elements of each entry's call; ``params``: its parameters."""
    cold = {key for key, count in params.items() if count >= COLD_MIN_PARAMS}
    with OtherLoad() as others:
        timings = measure_timings(entry_makers, overhead_calls, network_makers, warmup,
                                  repeats, clock, log, cold)
    return table_document(meta, timings, elements, params, networks, warmup, repeats, statistic,
                          clock, log, others.cores)


def measure_timings(entry_makers: dict[str, Callable[[], Call]], overhead_calls: dict[int, Call],
                    network_makers: dict[str, Callable[[], Call]], warmup: int, repeats: int,
                    clock: str = "wall", log: Callable[[str], None] = print,
                    cold: Collection[str] = ()) -> dict[str, dict[str, dict[str, float]]]:
    """A table's timings, every statistic kept: ``entries`` (in the shuffled order; those in
    ``cold`` with their cold time too), ``overhead`` (per element count) and ``whole`` (per
    network)."""
    log(f"measuring {len(entry_makers)} entries, {warmup} warm-up + {repeats} timed calls each"
        f" ({len(cold)} also with cold caches)")
    entries = measure_in_chunks(shuffled(entry_makers), warmup, repeats, log, clock, cold)
    overhead = measure_calls({str(n): call for n, call in overhead_calls.items()}, warmup,
                             repeats * 3, clock=clock)
    log(f"measuring {len(network_makers)} whole networks, {repeats * NETWORK_REPEATS} timed "
        "calls each")
    whole = measure_in_chunks(network_makers, warmup, repeats * NETWORK_REPEATS, log, clock)
    return {"entries": entries, "overhead": overhead, "whole": whole}


def table_document(meta: dict[str, Any], timings: dict[str, dict[str, dict[str, float]]],
                   elements: dict[str, int], params: dict[str, int],
                   networks: Sequence[dict[str, Any]], warmup: int, repeats: int,
                   statistic: str = "min", clock: str = "wall",
                   log: Callable[[str], None] = print,
                   other_cores: float | None = None) -> dict[str, Any]:
    """The table document that ``statistic`` of :func:`measure_timings`' timings gives: entries,
    the fitted model, the networks and the error on those of role ``check``. ``other_cores``:
    the cores other processes kept busy meanwhile (:class:`OtherLoad`), None if unknown."""
    value = f"{statistic}_ms"
    entries, overhead, whole = timings["entries"], timings["overhead"], timings["whole"]
    spreads = [s["spread"] for s in [*entries.values(), *whole.values()]]
    table = {"format": TABLE_FORMAT,
             "meta": {**meta, **machine_info(), "warmup": warmup, "repeats": repeats,
                      "network_repeats": repeats * NETWORK_REPEATS,
                      "statistic": statistic, "clock": clock,
                      "allocator": keep_freed_memory(),
                      "date": datetime.datetime.now().isoformat(timespec="seconds"),
                      "median_spread": statistics.median(spreads) if spreads else 0.0,
                      "other_cores": other_cores, "busy": is_busy(spreads, other_cores)},
             "model": {**fit_overhead([(int(n), s[value]) for n, s in overhead.items()]),
                       "offset_ms": 0.0, "scale": 1.0},
             "entries": {key: entries[key][value] for key in sorted(entries)},
             "elements": dict(elements), "params": dict(params),
             "cold_extra": {key: max(entries[key]["cold_ms"] - entries[key][value], 0.0)
                            for key in sorted(entries) if "cold_ms" in entries[key]}}
    calibrate = [n for n in networks if n["role"] == "calibrate"]
    points = [(work(table, n["keys"]), mparams(table, n["keys"]), whole[n["name"]][value])
              for n in calibrate]
    table["model"].update(fit_model(points, [cold_extra(table, n["keys"]) for n in calibrate]))
    table["networks"] = [{"name": n["name"], "role": n["role"], "keys": n["keys"],
                          "measured_ms": whole[n["name"]][value],
                          **({"arch": n["arch"]} if "arch" in n else {})} for n in networks]
    table["check"] = compare(table, [n for n in networks if n["role"] == "check"],
                             {name: stats[value] for name, stats in whole.items()})
    table["meta"].update(error_summary(table["check"]))
    if table["meta"]["busy"]:
        reason = busy_reason(table["meta"]["median_spread"], other_cores)
        log(f"warning: this machine is busy: {reason}; rebuild the table when it is idle")
    return table


# ----------------------------------------------------------------------------- the machine

def processor_name() -> str:
    """The CPU model from /proc/cpuinfo where available (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The device a table is measured on: processor, cores, system, Python."""
    return {"device": processor_name(), "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version()}


# ----------------------------------------------------------------------------- onnxruntime

def onnxruntime_session(model: Any, threads: int,
                        weights: Sequence[dict[str, Any]] = ()) -> Any:
    """An onnxruntime CPU session of an ONNX file or bytes, on ``threads`` intra-op threads.
    ``weights``: the float weights the exported file left out (name and shape each), generated
    here (see :func:`generated_weights`)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    arrays, buffers = generated_weights(weights), []
    if arrays:
        if not hasattr(options, "add_external_initializers"):
            raise SystemExit(f"onnxruntime {onnxruntime.__version__} cannot take the weights "
                             "this script generates (SessionOptions.add_external_initializers);"
                             " install a newer onnxruntime on this device")
        buffers = [onnxruntime.OrtValue.ortvalue_from_numpy(a) for a in arrays.values()]
        options.add_external_initializers(list(arrays), buffers)
    path_or_bytes = str(model) if isinstance(model, Path) else model
    session = onnxruntime.InferenceSession(path_or_bytes, options,
                                           providers=["CPUExecutionProvider"])
    # onnxruntime reads generated weights from these buffers without copying them.
    session.mbnas_buffers = (arrays, buffers)
    return session


def generated_weights(weights: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Float32 arrays for the weights a bundle leaves out, by name. Latency does not depend on
    the values of dense float weights, only on their shapes, so a bundle carries shapes instead
    of gigabytes of random numbers; the values keep activations finite and normal-sized: fan-in
    scaled normal for kernels, ones for per-channel vectors (positive, as a variance must be)."""
    import numpy

    rng = numpy.random.default_rng(seed)
    arrays = {}
    for weight in weights:
        shape = weight["shape"]
        if len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            arrays[weight["name"]] = (rng.standard_normal(shape)
                                      / math.sqrt(fan_in)).astype(numpy.float32)
        else:
            arrays[weight["name"]] = numpy.ones(shape, numpy.float32)
    return arrays


def onnxruntime_call(model: Any, shape: Sequence[int], threads: int,
                     weights: Sequence[dict[str, Any]] = ()) -> Call:
    """A call that runs ``model`` once on a fixed random float32 input of ``shape``."""
    import numpy

    session = onnxruntime_session(model, threads, weights)
    feeds = {session.get_inputs()[0].name:
             numpy.random.default_rng(0).standard_normal(shape).astype(numpy.float32)}
    return lambda: session.run(None, feeds)


def onnxruntime_version() -> str:
    """The installed onnxruntime's version."""
    import onnxruntime

    return onnxruntime.__version__


def measure_bundle(folder: Path, threads: int, warmup: int, repeats: int,
                   statistic: str = "min", clock: str = "wall",
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """The table of a bundle folder written by ``mbnas latency export``, through onnxruntime."""
    manifest = read_manifest(folder)
    entry_makers = {e["key"]: _maker(folder, e, threads) for e in manifest["entries"]}
    elements = {e["key"]: e["elements"] for e in manifest["entries"]}
    params = {e["key"]: e["params"] for e in manifest["entries"]}
    overhead_calls = {o["elements"]: onnxruntime_call(folder / o["file"], o["shape"], threads)
                      for o in manifest["overhead"]}
    network_makers = {n["name"]: _maker(folder, n, threads) for n in manifest["networks"]}
    meta = {**manifest["meta"], "runtime": "onnxruntime", "threads": threads,
            "versions": {**manifest["meta"].get("versions", {}),
                         "onnxruntime": onnxruntime_version()}}
    return build_table(meta, entry_makers, elements, params, overhead_calls, manifest["networks"],
                       network_makers, warmup, repeats, statistic, clock, log)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a bundle folder; SystemExit with what to do if it is not one this script
    reads."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    found = manifest.get("format")
    if found != BUNDLE_FORMAT:
        if str(found).startswith(BUNDLE_FORMAT.split("/")[0]):
            raise SystemExit(f"{folder}: bundle format {found}, this script reads "
                             f"{BUNDLE_FORMAT}; measure it with the {DEVICE_SCRIPT_NAME} the "
                             "export wrote into the folder, or export it again")
        raise SystemExit(f"{folder}: not an mbnas latency bundle (no {BUNDLE_FORMAT} manifest)")
    return manifest


def check_bundle(folder: Path, table: dict[str, Any], warmup: int, repeats: int,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time the bundle's members again here, in ``table``'s threads, clock and statistic, and
    score ``table`` (measured from this bundle) on them, as ``latency check`` does where mbnas
    is installed: the check members' errors, and ``drift``, how much slower (> 0) or faster the
    calibration members run now than when the table was built, with the errors without it."""
    manifest, meta = read_manifest(folder), table.get("meta", {})
    bundled = {n["name"]: n["keys"] for n in manifest["networks"]}
    if (table.get("format") != TABLE_FORMAT or meta.get("block_set")
            != manifest["meta"]["block_set"]
            or not table.get("networks")
            or any(bundled.get(n["name"]) != n["keys"] for n in table["networks"])):
        raise SystemExit(f"the table is not one measured from the bundle {folder}: measure the "
                         f"bundle with `{DEVICE_SCRIPT_NAME} {folder} --out TABLE` first")
    log(f"timing {len(manifest['networks'])} whole networks again")
    with OtherLoad() as others:
        timed = measure_in_chunks({n["name"]: _maker(folder, n, meta["threads"])
                                   for n in manifest["networks"]}, warmup,
                                  repeats * NETWORK_REPEATS, log, meta.get("clock", "wall"))
    return score_check(table, [n for n in table["networks"] if n["role"] == "check"],
                       [n for n in table["networks"] if n["role"] == "calibrate"], timed,
                       others.cores)


def _maker(folder: Path, model: dict[str, Any], threads: int) -> Callable[[], Call]:
    return lambda: onnxruntime_call(folder / model["file"], model["shape"], threads,
                                    model.get("weights", ()))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure a bundle folder, write its table, print its error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="folder written by `mbnas latency export`")
    parser.add_argument("--out", type=Path, default=Path("latency_table.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20,
                        help=f"timed calls per block ({NETWORK_REPEATS}x for whole networks)")
    parser.add_argument("--statistic", choices=STATISTICS, default="min")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: CPU time of the calling thread (only with --threads 1)")
    parser.add_argument("--check", type=Path, metavar="TABLE",
                        help="instead of measuring: time the bundle's members again (in TABLE's "
                             "threads, clock and statistic) and print the error of TABLE "
                             "(written from this bundle) on this device now")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1")
    if args.check:
        return print_check(check_bundle(args.bundle, read_table(args.check), args.warmup,
                                        args.repeats))
    table = measure_bundle(args.bundle, args.threads, args.warmup, args.repeats, args.statistic,
                           args.clock)
    args.out.write_text(json.dumps(table, indent=1))
    meta = table["meta"]
    if meta["median_abs_error"] is not None:
        print(f"error on {len(table['check'])} members: median {meta['median_abs_error']:.1%}, "
              f"p90 {meta['p90_abs_error']:.1%}")
    print(f"wrote {args.out} ({len(table['entries'])} entries)")
    return 0


def read_table(path: Path) -> dict[str, Any]:
    """The table at ``path``; SystemExit saying what is wrong if it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: cannot read the table ({error}); give the file that "
                         f"`{DEVICE_SCRIPT_NAME} BUNDLE --out FILE` wrote") from None


def print_check(result: dict[str, Any]) -> int:
    """The errors of :func:`check_bundle`, the drift and a busy warning; exit status 0."""
    checked = result["median_abs_error"] is not None
    if checked:
        print(f"error on {len(result['checks'])} members: median "
              f"{result['median_abs_error']:.1%}, p90 {result['p90_abs_error']:.1%}")
    else:
        print("the bundle has no check members (exported with check=0): only the drift")
    if result["drift"] is not None:
        fixed = result["drift_corrected"]
        print(f"drift: the calibration members run {result['drift']:+.1%} against the build"
              + (f"; without it: median {fixed['median_abs_error']:.1%}, p90 "
                 f"{fixed['p90_abs_error']:.1%}" if checked else ""))
    if result["busy"]:
        print(f"warning: this machine is busy: "
              f"{busy_reason(result['median_spread'], result['other_cores'])}; measure again "
              "when it is idle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
