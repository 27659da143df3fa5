"""A search space's latency table: build it here through a runtime, export its blocks for a
device to measure, and check a table against members measured end to end."""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mbnas.arch import ArchSpec
from mbnas.cost import device_script
from mbnas.cost.block_set import Entry, arch_entries, block_set_digest, space_entries
from mbnas.cost.device_script import (
    BUNDLE_FORMAT,
    NETWORK_REPEATS,
    OVERHEAD_ELEMENTS,
    OtherLoad,
    build_table,
    machine_info,
    measure_in_chunks,
    score_check,
)
from mbnas.cost.latency import LatencyConfig
from mbnas.cost.latency_table import LatencyTable
from mbnas.cost.runtimes import (
    Identity,
    RuntimeSettings,
    batched,
    check_runtime,
    make_call,
    onnx_bytes,
    runtime_versions,
    torch_threads,
    without_weights,
)
from mbnas.errors import ConfigError
from mbnas.nn import build
from mbnas.space import SearchSpace

DEVICE_SCRIPT = device_script.DEVICE_SCRIPT_NAME
DRIFT_REFERENCES = 8  # calibration members a check times again to see the machine's drift


@dataclass(frozen=True)
class TableSample:
    """Which entries a table holds and which members fit and check it.

    ``members=None``: every block any member can hold (a table for the whole space); a number:
    only the blocks of that many random members and of the calibration and check members (a
    quick table, enough to measure its error, that refuses other members).
    """

    members: int | None = None
    calibrate: int = 16
    check: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Network:
    """A whole member measured to fit (``calibrate``) or test (``check``) the table."""

    name: str
    role: str
    arch: ArchSpec

    def manifest(self, file: str, batch: int) -> dict[str, Any]:
        """Its description in a bundle or table: name, role, file, input shape, entry keys and
        the architecture (so that a check can time the member again)."""
        a = self.arch
        return {"name": self.name, "role": self.role, "file": file,
                "shape": [batch, a.in_channels, a.resolution, a.resolution],
                "keys": [e.key for e in arch_entries(a)], "arch": a.to_dict()}


def table_networks(space: SearchSpace, sample: TableSample) -> list[Network]:
    """Random members to calibrate, other random ones to check.

    Random, as the members a search draws: the smallest and largest member (calibrators until
    2026-11-28) sit where the cache effect of a network's weights stops growing, and pulled the
    fit away from the typical member (measured in BENCHMARKS.md, Latency table error).
    """
    rng = random.Random(sample.seed)
    calibrate = [space.sample_random(rng) for _ in range(sample.calibrate)]
    check = [space.sample_random(random.Random(rng.random())) for _ in range(sample.check)]
    return ([Network(f"calibrate-{i:03d}", "calibrate", a) for i, a in enumerate(calibrate)]
            + [Network(f"check-{i:03d}", "check", a) for i, a in enumerate(check)])


def table_entries(space: SearchSpace, sample: TableSample, networks: list[Network]
                  ) -> list[Entry]:
    """The entries the table measures: the whole block set, or the sampled members' blocks."""
    if sample.members is None:
        return space_entries(space)
    rng = random.Random(sample.seed + 1)
    archs = [n.arch for n in networks] + [space.sample_random(rng) for _ in range(sample.members)]
    found = {e.key: e for arch in archs for e in arch_entries(arch)}
    return [found[key] for key in sorted(found)]


def table_meta(space: SearchSpace, entries: list[Entry]) -> dict[str, Any]:
    """What a table records about the space: name, resolution, classes, block set, coverage."""
    block_set = [e.key for e in space_entries(space)]
    return {"space": space.name, "resolution": space.resolution,
            "num_classes": space.num_classes, "block_set": block_set_digest(block_set),
            "complete": {e.key for e in entries} >= set(block_set)}


def build_space_table(space: SearchSpace, sample: TableSample, cfg: LatencyConfig,
                      log: Callable[[str], None] = print) -> LatencyTable:
    """Measure ``space``'s table here, through ``cfg``'s runtime; the table with its errors."""
    settings = cfg.settings()
    networks = table_networks(space, sample)
    entries = table_entries(space, sample, networks)

    def maker(module: Callable[[], Any], shape: tuple[int, ...]) -> Callable[[], Any]:
        return lambda: make_call(module(), shape, settings)

    sizes = {e.key: module_sizes(e.module(), batched(e.shape, settings.batch)) for e in entries}
    with torch_threads(settings.threads):
        document = build_table(
            {**table_meta(space, entries), **settings.describe()},
            {e.key: maker(e.module, e.shape) for e in entries},
            {key: elements for key, (elements, _) in sizes.items()},
            {key: params for key, (_, params) in sizes.items()},
            {n: make_call(Identity(), overhead_shape(n), settings) for n in OVERHEAD_ELEMENTS},
            [n.manifest("", settings.batch) for n in networks],
            {n.name: (lambda a=n.arch: member_call(a, settings)) for n in networks},
            cfg.warmup, cfg.repeats, cfg.statistic, cfg.clock, log)
    return LatencyTable(document)


def export_bundle(space: SearchSpace, sample: TableSample, folder: Path, batch: int = 1) -> Path:
    """Write ONNX files of the space's entries, the overhead model and the calibration and check
    members, a manifest and a copy of the device script into ``folder``; its manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "blocks").mkdir(exist_ok=True)
    (folder / "networks").mkdir(exist_ok=True)
    settings = RuntimeSettings(runtime="onnxruntime", batch=batch)
    networks = table_networks(space, sample)
    entries = table_entries(space, sample, networks)
    manifest_entries = []
    for index, entry in enumerate(entries):
        file = f"blocks/{index:05d}.onnx"
        module, shape = entry.module(), batched(entry.shape, batch)
        weights = write_onnx(folder / file, module, shape)
        elements, params = module_sizes(module, shape)
        manifest_entries.append({"key": entry.key, "file": file, "shape": list(shape),
                                 "elements": elements, "params": params, "weights": weights})
    network_weights = {
        n.name: write_onnx(folder / f"networks/{n.name}.onnx", build(n.arch),
                           batched(_input_shape(n.arch), batch)) for n in networks}
    overhead = []
    for n in OVERHEAD_ELEMENTS:
        file = f"overhead-{n}.onnx"
        (folder / file).write_bytes(onnx_bytes(Identity(), overhead_shape(n)))
        overhead.append({"elements": n, "file": file, "shape": list(overhead_shape(n))})
    # The runtime, its version and the thread count are the device's to state.
    meta = {**table_meta(space, entries), "batch": batch, "dtype": settings.dtype,
            "layout": settings.layout, "versions": runtime_versions(RuntimeSettings())}
    manifest = {"format": BUNDLE_FORMAT, "meta": meta,
                "overhead": overhead,
                "entries": manifest_entries,
                "networks": [{**n.manifest(f"networks/{n.name}.onnx", batch),
                              "weights": network_weights[n.name]} for n in networks]}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.copyfile(device_script.__file__, folder / DEVICE_SCRIPT)
    return folder / "manifest.json"


def write_onnx(path: Path, module: torch.nn.Module, shape: tuple[int, ...]
               ) -> list[dict[str, Any]]:
    """Write ``module`` as ONNX for a device bundle, without its float weights; their names and
    shapes, for the device script to generate."""
    model, weights = without_weights(onnx_bytes(module, shape))
    path.write_bytes(model)
    return weights


def check_space_table(space: SearchSpace, table: LatencyTable, members: int, seed: int,
                      warmup: int, repeats: int) -> dict[str, Any]:
    """Measure ``members`` random members end to end here, in the table's runtime and settings,
    and compare with the table's predictions: errors as fractions. Each is timed ``repeats`` ×
    ``NETWORK_REPEATS`` times, as the table's own members were.

    A few of the table's own calibration members are timed again beside them: how much faster
    or slower they run now than when the table was built (``drift``) is the machine's change,
    not the table's error, and the errors with that factor taken out are reported beside the
    raw ones (a virtual machine's speed was measured to drift 5-25% within minutes).
    """
    table.check_space(space)
    m, settings = table.meta, table.runtime_settings()
    check_runtime(m["runtime"])
    rng = random.Random(seed)
    networks = [Network(f"member-{i:03d}", "check", space.sample_random(rng))
                for i in range(members)]
    for network in networks:
        table.predict(network.arch)  # a table that lacks a member's blocks says so first
    references = drift_references(table)
    timed = networks + [Network(n["name"], "reference", ArchSpec.from_dict(n["arch"]))
                        for n in references]
    with torch_threads(settings.threads), OtherLoad() as others:
        measured = measure_in_chunks(
            {n.name: (lambda a=n.arch: member_call(a, settings)) for n in timed}, warmup,
            repeats * NETWORK_REPEATS, log=lambda _: None, clock=m.get("clock", "wall"))
    here = machine_info()["device"]
    return {"space": space.name, "table": table.source, "runtime": m["runtime"],
            "threads": m["threads"], "batch": m["batch"], "table_device": m["device"],
            "device": here, "same_device": here == m["device"],
            **score_check(table.document,
                          [n.manifest("", settings.batch) for n in networks], references,
                          measured, others.cores)}


def drift_references(table: LatencyTable) -> list[dict[str, Any]]:
    """Up to ``DRIFT_REFERENCES`` of the table's calibration members (those that record their
    architecture), spread over its list."""
    stored = [n for n in table.document.get("networks", [])
              if n["role"] == "calibrate" and "arch" in n]
    step = max(1, len(stored) // DRIFT_REFERENCES)
    return stored[::step][:DRIFT_REFERENCES]


def load_table_for(space: SearchSpace, path: str | None) -> LatencyTable:
    """The table at ``path``, refused unless it was built for ``space``."""
    if not path:
        raise ConfigError("latency.table", "is not set",
                          f"build a table with `python -m mbnas latency build space={space.name}"
                          " out=FILE` and pass latency.table=FILE")
    table = LatencyTable.load(path)
    table.check_space(space)
    return table


def overhead_shape(elements: int) -> tuple[int, ...]:
    """The input shape of the identity model with ``elements`` elements."""
    return (1, 1, 1, elements)


def module_sizes(module: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """How many numbers a call of ``module`` (eval mode) on an input of ``shape`` takes in and
    gives back, and how many parameters it holds (BatchNorm included)."""
    with torch.no_grad():
        out = module(torch.zeros(shape))
    return math.prod(shape) + out.numel(), sum(p.numel() for p in module.parameters())


def member_call(arch: ArchSpec, settings: RuntimeSettings) -> Callable[[], Any]:
    """A call running the whole member ``arch`` once through the settings' runtime."""
    return make_call(build(arch), _input_shape(arch), settings)


def _input_shape(arch: ArchSpec) -> tuple[int, ...]:
    return (1, arch.in_channels, arch.resolution, arch.resolution)
