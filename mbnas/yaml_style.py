"""mbnas's YAML house style: top level in blocks, table rows on one line, order kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class Row(dict):
    """A mapping written on one line, so stage rows read like a paper's table."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Row, lambda d, data: d.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))
_Dumper.add_representer(list, lambda d, data: d.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=all(not isinstance(x, dict) for x in data)))


def plain(value: Any) -> Any:
    """Tuples become lists and integral floats ints, so the YAML says ``expand: 6``."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer() and value != 0.0:
        return int(value)
    return value


def row(obj: Any, order: Sequence[str]) -> Row:
    """The named fields of a dataclass as one row, unset (None) fields left out."""
    return Row((key, plain(getattr(obj, key))) for key in order
               if getattr(obj, key) is not None)


def dump_yaml(data: Any) -> str:
    """Write YAML in mbnas's house style: top level in blocks, rows on one line, order kept."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
