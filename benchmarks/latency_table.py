"""How well a latency table predicts whole-network latency, per search space and runtime.

    python benchmarks/latency_table.py [--spaces ...] [--runtimes torch onnxruntime]
        [--members 10] [--calibrate 16] [--check 20] [--repeats 20] [--statistic min|median]
        [--clock wall|cpu] [--system-allocator] [--out-dir DIR]

For each space and runtime: `python -m mbnas latency build` with the blocks of the calibration
and check members plus ``--members`` random ones (a sampled table: the check members' blocks are
in it, their whole-network times are not used to fit it), the model fitted on the calibration
members, then the error on the check members measured end to end. Beside the table's model, the
same measurements scored by earlier models fitted on the same members: the line without the
weights term (``offset + scale · Σ (entry − call overhead)``, the model until 2026-11-28), the
line without the call-overhead term either (``offset + scale · Σ entries``), and no fit at all
(Σ entries), so the effect of each term is a side-by-side ratio.
Prints the load average before and after each build and its wall time. ``--system-allocator``
leaves the C library's malloc as the process found it instead of keeping freed memory (see
``keep_freed_memory`` in mbnas/cost/device_script.py), to measure what that setting does; run it
in a process of its own, as the setting cannot be undone within one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from mbnas.__main__ import main as mbnas_main
from mbnas.cost import device_script
from mbnas.cost.device_script import error_summary, fit_line, work

SPACES = ["default", "mobilenet_v3", "efficientnet_v2", "proxyless", "cifar", "nas_bench_macro"]


def build(space: str, runtime: str, out: Path, args: argparse.Namespace) -> dict:
    """One `latency build`; its JSON result, wall time and the load around it."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = mbnas_main(["latency", "build", f"space={space}", f"out={out}",
                           f"members={args.members}", f"calibrate={args.calibrate}",
                           f"check={args.check}", f"latency.runtime={runtime}",
                           f"latency.threads={args.threads}", f"latency.repeats={args.repeats}",
                           f"latency.statistic={args.statistic}", f"latency.clock={args.clock}",
                           "format=json"])
    if code:
        raise SystemExit(code)
    return {"wall_s": time.perf_counter() - start, "load": (load_before, os.getloadavg()[0]),
            "table": json.loads(out.read_text())}


def alternative_errors(table: dict) -> dict[str, dict[str, float | None]]:
    """|error| summaries on the check members of the earlier models and of the plain sum."""
    entries, networks = table["entries"], table["networks"]
    sums = {n["name"]: sum(entries[k] for k in n["keys"]) for n in networks}
    works = {n["name"]: work(table, n["keys"]) for n in networks}
    calibrate = [n for n in networks if n["role"] == "calibrate"]
    line = fit_line([(works[n["name"]], n["measured_ms"]) for n in calibrate])
    bare = fit_line([(sums[n["name"]], n["measured_ms"]) for n in calibrate])
    checks = [n for n in networks if n["role"] == "check"]

    def errors(guess) -> dict[str, float | None]:
        return error_summary([{"error": (guess(n) - n["measured_ms"]) / n["measured_ms"]}
                              for n in checks])

    return {"line": errors(lambda n: line["offset_ms"] + line["scale"] * works[n["name"]]),
            "line_no_overhead": errors(lambda n: bare["offset_ms"]
                                       + bare["scale"] * sums[n["name"]]),
            "plain_sum": errors(lambda n: sums[n["name"]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=SPACES)
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--calibrate", type=int, default=16)
    parser.add_argument("--check", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--statistic", choices=["median", "min"], default="min")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--system-allocator", action="store_true",
                        help="do not keep freed memory (the setting before 2026-11-28)")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the tables here")
    args = parser.parse_args()
    if args.system_allocator:
        device_script.keep_freed_memory = lambda: "system default"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for space in args.spaces:
            for runtime in args.runtimes:
                result = build(space, runtime, folder / f"{space}-{runtime}.json", args)
                rows.append((space, runtime, result))
                print(row_text(space, runtime, result), flush=True)
    print(f"\n{HEADER}")
    for space, runtime, result in rows:
        print(row_text(space, runtime, result))


HEADER = (f"{'space':<16} {'runtime':<11} {'px':>4} {'entries':>7} {'measured ms':>11} "
          f"{'median':>7} {'p90':>6} {'max':>6} {'line':>13} {'no-ovh':>7} {'sum':>7} "
          f"{'spread':>6} {'wall s':>6} {'load':>9}")


def row_text(space: str, runtime: str, result: dict) -> str:
    """One line of the results table."""
    table = result["table"]
    meta, checks = table["meta"], table["check"]
    measured = statistics.median(c["measured_ms"] for c in checks)
    other = alternative_errors(table)
    line = other["line"]
    load = "{:.1f}-{:.1f}".format(*result["load"])
    return (f"{space:<16} {runtime:<11} {meta['resolution']:>4} {len(table['entries']):>7} "
            f"{measured:>11.2f} {meta['median_abs_error']:>7.1%} {meta['p90_abs_error']:>6.1%} "
            f"{meta['max_abs_error']:>6.1%} {line['median_abs_error']:>6.1%}/"
            f"{line['p90_abs_error']:>5.1%} {other['line_no_overhead']['median_abs_error']:>7.1%} "
            f"{other['plain_sum']['median_abs_error']:>7.1%} {meta['median_spread']:>6.0%} "
            f"{result['wall_s']:>6.0f} {load:>9}")


if __name__ == "__main__":
    main()
