"""mbnas: hardware-aware neural architecture search for MBConv / Fused-MBConv mobile CNNs."""

from importlib import import_module
from typing import Any

from mbnas.version import __version__

# The public names, loaded on first use (PEP 562): `python -m mbnas` then starts without
# importing torch, so the command line catches a Ctrl-C while the libraries load.
_EXPORTS = {
    "ArchSpec": "mbnas.arch", "available_archs": "mbnas.architectures",
    "load_arch": "mbnas.architectures", "Cost": "mbnas.cost", "count": "mbnas.cost",
    "ConfigError": "mbnas.errors", "MbnasError": "mbnas.errors", "build": "mbnas.nn",
    "SearchSpace": "mbnas.space", "load_space": "mbnas.space", "Supernet": "mbnas.supernet",
}

__all__ = ["__version__", "ArchSpec", "ConfigError", "Cost", "MbnasError", "SearchSpace",
           "Supernet", "available_archs", "build", "count", "load_arch", "load_space"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mbnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
