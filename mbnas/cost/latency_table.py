"""Predicted latency: a portable per-block lookup table, as ProxylessNAS, FBNet and once-for-all
use, measured on the device and runtime the network will be deployed with.

A table is a JSON document (:data:`~mbnas.cost.device_script.TABLE_FORMAT`): ``meta`` (space, its
block-set digest, resolution, classes, runtime, versions, device, threads, batch, dtype, layout,
date), ``model`` (the runtime's per-call overhead and the fitted coefficients), ``entries`` (ms per
block key in the table's statistic, see :mod:`mbnas.cost.block_set`), each entry's input+output
``elements`` and ``params``, and the large entries' ``cold_extra`` (ms more with cold caches). A
network's prediction is ``offset + (scale + scale_per_mparam · M) · Σ (entry − call overhead) +
cold_scale · ramp(M) · Σ cold_extra``: each entry was timed alone and paid the call overhead that
the whole network pays only once, and with its weights in cache, which a network's other blocks
evict (more so the more parameters ``M``, in millions, the network has); see
:mod:`mbnas.cost.device_script`. Tables built before cold timings predict without that term.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mbnas.arch import ArchSpec
from mbnas.cost.block_set import arch_entries, block_set_digest, space_entries
from mbnas.cost.device_script import TABLE_FORMAT, predict
from mbnas.cost.runtimes import RuntimeSettings
from mbnas.errors import ConfigError
from mbnas.space import SearchSpace


class LatencyTable:
    """A latency table document with lookup and the checks that it fits a space."""

    def __init__(self, document: dict[str, Any], source: str = "<table>"):
        self.document, self.source = document, source

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """The table stored at ``path``; ConfigError if it is missing or not a table."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("latency.table", f"{path} does not exist",
                              "build one with `python -m mbnas latency build space=<space> "
                              f"out={path}`")
        try:
            document = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError("latency.table", f"{path} is not readable JSON ({error})") from None
        found = document.get("format") if isinstance(document, dict) else None
        if found != TABLE_FORMAT:
            if str(found).startswith(TABLE_FORMAT.split("/")[0]):
                space = (document.get("meta") or {}).get("space", "<space>")
                raise ConfigError("latency.table", f"{path} is a table of format {found}, this "
                                  f"mbnas reads {TABLE_FORMAT}", "rebuild it with `python -m "
                                  f"mbnas latency build space={space} out={path}`")
            raise ConfigError("latency.table", f"{path} is not an mbnas latency table",
                              "build one with `python -m mbnas latency build`")
        return cls(document, str(path))

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (atomically) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.document, indent=1))
        tmp.replace(path)
        self.source = str(path)
        return path

    @property
    def meta(self) -> dict[str, Any]:
        """Space, runtime, versions, device, threads, batch, dtype, layout, date, errors."""
        return self.document["meta"]

    @property
    def entries(self) -> dict[str, float]:
        """Latency (ms, the table's statistic) per entry key, each timed alone."""
        return self.document["entries"]

    def runtime_settings(self) -> RuntimeSettings:
        """The runtime, threads, batch, dtype and layout the table was measured in."""
        m = self.meta
        return RuntimeSettings(runtime=m["runtime"], threads=m["threads"], batch=m["batch"],
                               dtype=m.get("dtype", "float32"), layout=m.get("layout", "NCHW"))

    def describe(self) -> str:
        """One line: space, runtime, threads, batch, device, date."""
        m = self.meta
        return (f"space {m['space']!r} at {m['resolution']}px, {m['runtime']} "
                f"{m['versions'].get(m['runtime'], '')}, {m['threads']} thread(s), batch "
                f"{m['batch']}, {m['dtype']} {m['layout']}, on {m['device']}, {m['date']}")

    def check_space(self, space: SearchSpace) -> None:
        """ConfigError unless the table was built for ``space``'s block set (and classes)."""
        m, build = self.meta, f"`python -m mbnas latency build space={space.name} out=FILE`"
        if m["space"] != space.name:
            raise ConfigError("latency.table", f"{self.source} was built for space "
                              f"{m['space']!r}, not {space.name!r}", f"build one with {build}")
        if m["num_classes"] != space.num_classes:
            raise ConfigError("latency.table", f"{self.source} was built for "
                              f"{m['num_classes']} classes, the search has {space.num_classes}",
                              f"build it with {build[:-1]} num_classes={space.num_classes}`")
        if m["block_set"] != block_set_digest(e.key for e in space_entries(space)):
            raise ConfigError("latency.table", f"{self.source} was built for another block set "
                              f"of space {space.name!r} (its choices, widths or resolution "
                              "changed since)", f"rebuild it with {build}")

    def missing(self, arch: ArchSpec) -> list[str]:
        """The keys of ``arch``'s entries that the table lacks."""
        return [e.key for e in arch_entries(arch) if e.key not in self.entries]

    def predict(self, arch: ArchSpec) -> float:
        """Predicted latency (ms) of ``arch`` in the table's runtime and settings."""
        missing = self.missing(arch)
        if missing:
            raise ConfigError("latency.table", f"{self.source} has no entry for {missing[0]} "
                              f"({len(missing)} missing for {arch.name!r}; a table built from "
                              "a sample of members covers only their blocks)",
                              "build the full table (leave out members=)")
        return predict(self.document, [e.key for e in arch_entries(arch)])
