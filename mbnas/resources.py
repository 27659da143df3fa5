"""Where the shipped configs, search spaces and architectures live, installed or not."""

from __future__ import annotations

from contextlib import suppress
from importlib import resources
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def data_dir(package: str, source_folder: str) -> Path:
    """The folder of package data ``package`` (e.g. ``mbnas.conf``) as a real path."""
    with suppress(ModuleNotFoundError):
        folder = resources.files(package)
        if isinstance(folder, Path):
            return folder
    # Running from a source checkout that was never installed.
    return _SOURCE_ROOT / source_folder


def conf_dir() -> Path:
    return data_dir("mbnas.conf", "conf")


def search_spaces_dir() -> Path:
    return data_dir("mbnas.search_spaces", "search_spaces")
