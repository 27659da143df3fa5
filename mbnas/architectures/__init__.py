"""The built-in reference architectures, each an ArchSpec YAML file in this folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mbnas.arch import ArchSpec
from mbnas.errors import ConfigError


def available_archs() -> list[str]:
    """Names of the built-in reference architectures."""
    folder = resources.files("mbnas.architectures")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_arch(name_or_path: str | Path | ArchSpec) -> ArchSpec:
    """A built-in architecture by name, or an ArchSpec YAML file by path."""
    if isinstance(name_or_path, ArchSpec):
        return name_or_path
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return ArchSpec.from_yaml(path)
    if text in available_archs():
        resource = resources.files("mbnas.architectures") / f"{text}.yaml"
        with resources.as_file(resource) as builtin:
            return ArchSpec.from_yaml(builtin)
    raise ConfigError("arch", f"unknown architecture {text!r}",
                      f"use a YAML file path or one of {', '.join(available_archs())}")
