"""The one exception type users see: bad input, explained, with how to fix it."""

from __future__ import annotations


class MbnasError(Exception):
    """A user-facing error: the CLI prints its message and exits non-zero without a traceback."""


class ConfigError(MbnasError, ValueError):
    """An invalid architecture, search space, budget or command configuration."""

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.where = where
        self.problem = problem
        self.fix = fix
        message = f"{where}: {problem}" if where else problem
        if fix:
            message += f"; {fix}"
        super().__init__(message)

    def __reduce__(self) -> tuple:
        # Rebuilt from its parts when it crosses a process boundary (worker pools, torchrun).
        return type(self), (self.where, self.problem, self.fix)


class Diverged(MbnasError):
    """Training or scoring produced a non-finite value (NaN or infinity): the weights or score
    cannot be trusted. A search fails that trial and goes on; ``train`` and the supernet warm-up
    stop, keeping their last finite checkpoint."""
