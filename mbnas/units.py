"""Quantities as people write them: ``300M``, ``1.2G``, ``3e8`` MACs; ``25ms`` latency."""

from __future__ import annotations

import re

from mbnas.errors import ConfigError

_SUFFIXES = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "t": 1e12,
             "T": 1e12}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*$")
_TIME = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s|us|µs)?\s*$")
_TIME_SCALE = {None: 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}


def parse_count(value: object, where: str = "value") -> int:
    """An integer count from ``300M``, ``1.2G``, ``3e8``, ``5_000_000`` or a number."""
    if isinstance(value, bool):
        raise ConfigError(where, f"{value!r} is not a count", "write it like 300M, 1.2G or 3e8")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _COUNT.match(str(value).replace("_", "").replace(",", ""))
        if not match:
            raise ConfigError(where, f"{value!r} is not a count", "write it like 300M, 1.2G or 3e8")
        number = float(match.group(1)) * _SUFFIXES[match.group(2)]
    if number <= 0:
        raise ConfigError(where, f"{value!r} must be positive", "write it like 300M, 1.2G or 3e8")
    return int(round(number))


def parse_milliseconds(value: object, where: str = "value") -> float:
    """Milliseconds from ``25ms``, ``0.025s``, ``25`` (bare numbers are milliseconds)."""
    match = None if isinstance(value, bool) else _TIME.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(where, f"{value!r} is not a positive duration",
                          "write it like 25ms, 25 or 0.025s")
    return float(match.group(1)) * _TIME_SCALE[match.group(2)]


def format_count(value: float) -> str:
    """A short human form: 300774272 → ``300.77M``."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:g}"
