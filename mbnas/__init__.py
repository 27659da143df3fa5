"""mbnas: hardware-aware neural architecture search for MBConv / Fused-MBConv mobile CNNs."""

from mbnas.arch import ArchSpec, available_archs, load_arch
from mbnas.cost import Cost, count
from mbnas.errors import ConfigError, MbnasError
from mbnas.nn import build
from mbnas.nn.supernet import Supernet
from mbnas.space import SearchSpace, load_space

__version__ = "0.1.0"

__all__ = ["ArchSpec", "ConfigError", "Cost", "MbnasError", "SearchSpace", "Supernet",
           "available_archs", "build", "count", "load_arch", "load_space"]
