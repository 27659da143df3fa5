"""PyTorch modules: the static blocks, the network builder and the weight-sharing supernet."""

from mbnas.nn.builder import MobileNet, build

__all__ = ["MobileNet", "build"]
