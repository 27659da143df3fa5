"""How well the per-block latency table predicts whole-network latency, per search space.

    python benchmarks/latency_table.py [--spaces default mobilenet_v3 cifar] [--check 20]

For each space: builds (or extends) its table from random members, fits the whole-network line
on a few measured members, then compares prediction and measurement on other random members
(`python -m mbnas latency`), and prints the median and worst absolute error. The table cache goes
to a temporary folder, so every run measures afresh.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile

from mbnas.__main__ import main as mbnas_main


def run_space(space: str, args: argparse.Namespace) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = mbnas_main(["latency", f"space={space}", f"members={args.members}",
                           f"calibrate={args.calibrate}", f"check={args.check}",
                           f"threads={args.threads}", f"repeats={args.repeats}", "format=json"])
    if code:
        raise SystemExit(code)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["default", "mobilenet_v3", "cifar"])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--calibrate", type=int, default=5)
    parser.add_argument("--check", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MBNAS_CACHE"] = cache
        results = [run_space(space, args) for space in args.spaces]
    print(f"\n{'space':<14} {'px':>4} {'entries':>7} {'measured ms (median)':>21} "
          f"{'median |err|':>12} {'max |err|':>9}")
    for r in results:
        measured = sorted(c["measured_ms"] for c in r["checks"])[len(r["checks"]) // 2]
        print(f"{r['space']:<14} {r['resolution']:>4} {r['entries']:>7} {measured:>21.2f} "
              f"{r['median_error']:>12.1%} {r['max_error']:>9.1%}")


if __name__ == "__main__":
    main()
