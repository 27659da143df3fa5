"""mbnas: hardware-aware neural architecture search for MBConv / Fused-MBConv mobile CNNs."""

from mbnas.arch import ArchSpec
from mbnas.architectures import available_archs, load_arch
from mbnas.cost import Cost, count
from mbnas.errors import ConfigError, MbnasError
from mbnas.nn import build
from mbnas.space import SearchSpace, load_space
from mbnas.supernet import Supernet
from mbnas.version import __version__

__all__ = ["__version__", "ArchSpec", "ConfigError", "Cost", "MbnasError", "SearchSpace",
           "Supernet", "available_archs", "build", "count", "load_arch", "load_space"]
