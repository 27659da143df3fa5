"""Reading and checking user files: YAML parsing and value checks whose errors name the place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mbnas.errors import ConfigError


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning a missing file or a syntax error into a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "no such file", "check the path")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(str(path), f"not valid YAML ({error})".replace("\n", " ")) from None


class Reader:
    """Checks one mapping's keys and values, naming the source and key path in every error."""

    def __init__(self, data: Any, where: str, allowed: Sequence[str], required: Sequence[str] = ()):
        self.where = where
        if not isinstance(data, Mapping):
            raise ConfigError(where, f"expected a mapping of keys, got {data!r}")
        unknown = [key for key in data if key not in allowed]
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", "unknown key",
                              f"allowed keys are {', '.join(allowed)}")
        for key in required:
            if key not in data:
                raise ConfigError(f"{where}.{key}", "missing required key")
        self.data = data

    def has(self, key: str) -> bool:
        return key in self.data

    def int(self, key: str, default: Any = None, minimum: int = 1, odd: bool = False) -> Any:
        value = self.data.get(key, default)
        return value if value is None else check_int(value, f"{self.where}.{key}", minimum, odd)

    def float(self, key: str, default: Any = None, low: float = 0.0, high: float | None = None,
              low_inclusive: bool = True) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return None
        return check_float(value, f"{self.where}.{key}", low, high, low_inclusive)

    def choice(self, key: str, choices: Sequence[str], default: Any = None) -> Any:
        value = self.data.get(key, default)
        return check_choice(value, f"{self.where}.{key}", choices)

    def str(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}.{key}", f"{value!r} is not a string")
        return value


def check_int(value: Any, where: str, minimum: int = 1, odd: bool = False,
              maximum: int | None = None) -> int:
    allowed = f"an odd integer ≥ {minimum}" if odd else f"an integer ≥ {minimum}"
    allowed += f" and ≤ {maximum}" if maximum is not None else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"{value!r} is not an integer", f"use {allowed}")
    if value < minimum or (odd and value % 2 == 0) or (maximum is not None and value > maximum):
        raise ConfigError(where, f"{value!r} is not allowed", f"use {allowed}")
    return value


def check_float(value: Any, where: str, low: float = 0.0, high: float | None = None,
                low_inclusive: bool = True) -> float:
    allowed = f"a number {'≥' if low_inclusive else '>'} {low:g}" + (
        f" and ≤ {high:g}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(where, f"{value!r} is not a number", f"use {allowed}")
    too_low = value < low if low_inclusive else value <= low
    if too_low or (high is not None and value > high):
        raise ConfigError(where, f"{value!r} is out of range", f"use {allowed}")
    return float(value)


def check_choice(value: Any, where: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(where, f"{value!r} is not allowed", f"choose one of {', '.join(choices)}")
    return value
