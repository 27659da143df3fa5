"""Weight sharing across a search space: elastic weights, the supernet and its warm-up.

Kept apart from the static networks of :mod:`mbnas.nn` (as once-for-all keeps ``elastic_nn``
apart from its networks): the static blocks never import this package, and it sits above the
search space that configures it.
"""

from mbnas.supernet.network import Supernet

__all__ = ["Supernet"]
