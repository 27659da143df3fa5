"""Channel rounding shared by the architecture model and the scaling rules."""

from __future__ import annotations

CHANNEL_DIVISOR = 8


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
