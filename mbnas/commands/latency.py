"""``python -m mbnas latency build|check|export space=<name> ...``: latency lookup tables.

- ``build out=FILE``: measure the space's table here, through ``latency.runtime``.
- ``check latency.table=FILE``: measure random members end to end here; print the table's error.
- ``export out=FOLDER``: ONNX files of the space's blocks plus a script that measures them with
  onnxruntime on another device and writes the table there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbnas.config import OutputFormat
from mbnas.cost.device_script import busy_reason
from mbnas.cost.latency import LatencyConfig
from mbnas.cost.latency_table import LatencyTable
from mbnas.errors import ConfigError
from mbnas.space import SearchSpace, load_space
from mbnas.space_latency import (
    DEVICE_SCRIPT,
    TableSample,
    build_space_table,
    check_space_table,
    export_bundle,
    load_table_for,
)
from mbnas.validation import check_choice, check_int

# The word after `latency` (see mbnas.cli): what to do.
ACTIONS = ("build", "check", "export")
DRIFT_NOTED = 0.03  # a drift of the machine's speed larger than this is pointed out
USAGE = ("say what to do: `python -m mbnas latency build space=<name> out=FILE`, "
         "`latency check space=<name> latency.table=FILE` or `latency export space=<name> "
         "out=FOLDER` (the former `python -m mbnas latency space=...` is `latency build`)")


@dataclass
class TableLatencyConfig(LatencyConfig):
    """The ``latency`` node of `latency`: runtime settings, and the table that `check` reads."""

    warmup: int = 5
    repeats: int = 20
    table: str | None = None


@dataclass
class Config:
    action: str | None = None
    space: str | None = None
    out: str | None = None
    members: int | None = None
    calibrate: int = 16
    check: int = 10
    num_classes: int | None = None
    seed: int = 0
    format: OutputFormat = OutputFormat.table
    latency: TableLatencyConfig = field(default_factory=TableLatencyConfig)


def run(cfg: Config) -> None:
    if cfg.action is None:
        raise ConfigError("latency", USAGE)
    check_choice(cfg.action, "latency <action>", ACTIONS)
    for key in ("calibrate", "check"):
        check_int(getattr(cfg, key), key, minimum=0)
    if cfg.members is not None:
        check_int(cfg.members, "members", minimum=0)
    {"build": build, "check": check, "export": export}[cfg.action](cfg)


def command_space(cfg: Config, table_classes: int | None = None) -> SearchSpace:
    """The space a table is built, exported or checked for: ``space=``, its classifier sized by
    ``num_classes=``, else by ``table_classes`` (check: the table's), else the space's own."""
    space = load_space(cfg.space)
    classes = cfg.num_classes if cfg.num_classes is not None else table_classes
    if classes is None:
        return space
    return space.replace(num_classes=check_int(classes, "num_classes"))


def output_path(cfg: Config) -> Path:
    """The ``out=`` path, required by build and export."""
    if not cfg.out:
        raise ConfigError("out", "required", f"add out=... to `python -m mbnas latency "
                          f"{cfg.action}`")
    return Path(cfg.out)


def build(cfg: Config) -> None:
    """Build, save and report a table."""
    out, space = output_path(cfg), command_space(cfg)
    quiet = cfg.format is OutputFormat.json
    table = build_space_table(space, TableSample(cfg.members, cfg.calibrate, cfg.check, cfg.seed),
                              cfg.latency, log=(lambda _: None) if quiet else print)
    table.save(out)
    result = {"table": str(out), "entries": len(table.entries), **table.meta,
              **table.document["model"], "checks": table.document["check"]}
    if quiet:
        print(json.dumps(result))
        return
    print(f"wrote {out}: {len(table.entries)} entries; {table.describe()}")
    print_model(table.document["model"])
    print_errors(result)


def check(cfg: Config) -> None:
    """Measure members end to end and print the table's error (with the table's classes unless
    ``num_classes=`` says otherwise: the classifier the table was built for)."""
    if not cfg.latency.table:
        load_table_for(command_space(cfg), None)  # says how to build one
    table = LatencyTable.load(cfg.latency.table)
    space = command_space(cfg, table.meta["num_classes"])
    result = check_space_table(space, table, check_int(cfg.check, "check"), cfg.seed,
                               cfg.latency.warmup, cfg.latency.repeats)
    if cfg.format is OutputFormat.json:
        print(json.dumps(result))
        return
    print(f"table {table.source}: {table.describe()}")
    if not result["same_device"]:
        print(f"note: measured here on {result['device']}, not the table's device: the errors "
              "include the difference between the two machines")
    print_errors(result)


def export(cfg: Config) -> None:
    """Write a bundle of ONNX files and the device script."""
    folder, space = output_path(cfg), command_space(cfg)
    sample = TableSample(cfg.members, cfg.calibrate, cfg.check, cfg.seed)
    manifest = export_bundle(space, sample, folder, batch=cfg.latency.batch)
    count = len(json.loads(manifest.read_text())["entries"])
    if cfg.format is OutputFormat.json:
        print(json.dumps({"bundle": str(folder), "entries": count}))
        return
    print(f"wrote {folder}: {count} block ONNX files, calibration and check members, "
          f"{DEVICE_SCRIPT}")
    print(f"on the device: python {folder.name}/{DEVICE_SCRIPT} {folder.name} --threads 1 "
          f"--out {space.name}-table.json   (needs numpy and onnxruntime)")


def print_model(model: dict[str, Any]) -> None:
    """The fitted whole-network model."""
    low, high = model["mparams_range"]
    cold = ""
    if model.get("cold_scale"):
        start, width = model["cold_ramp"]
        cold = (f" + {model['cold_scale']:.3f} × ramp(M: {start:g} → {start + width:g}) × "
                "Σ (cold − warm entry)")
    print(f"whole network = {model['offset_ms']:.3f} ms + ({model['scale']:.3f} + "
          f"{model['scale_per_mparam']:.4f} × M) × Σ (entry − call overhead){cold}, M = its "
          f"million parameters held to {low:.2f}-{high:.2f}; call overhead = "
          f"{model['call_overhead_ms']:.4f} ms + {model['overhead_ms_per_element'] * 1e6:.3f} ms "
          "per million input+output elements")


def print_errors(result: dict[str, Any]) -> None:
    """Per checked member measured vs predicted, then median / p90 |error| and busy warning."""
    for c in result["checks"]:
        print(f"  {c['name']}: measured {c['measured_ms']:8.2f} ms  predicted "
              f"{c['predicted_ms']:8.2f} ms  error {c['error']:+.1%}")
    if result.get("median_abs_error") is not None:
        print(f"|error| median {result['median_abs_error']:.1%}, p90 "
              f"{result['p90_abs_error']:.1%}, max {result['max_abs_error']:.1%} over "
              f"{len(result['checks'])} members")
    drift = result.get("drift")
    if drift is not None and abs(drift) > DRIFT_NOTED:
        fixed = result["drift_corrected"]
        print(f"note: the table's calibration members run {abs(drift):.0%} "
              f"{'slower' if drift > 0 else 'faster'} here now than when it was built: the "
              "machine's speed changed (or this is another machine). Without that change: "
              f"|error| median {fixed['median_abs_error']:.1%}, p90 {fixed['p90_abs_error']:.1%}")
    if result.get("busy"):
        print(f"warning: the machine was busy: "
              f"{busy_reason(result['median_spread'], result.get('other_cores'))}; these figures "
              "may be off; measure again when it is idle")
