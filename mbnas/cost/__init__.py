"""Cost of an architecture: analytical MACs and parameters, measured and predicted latency."""

from mbnas.cost.macs import Cost, StageCost, count

__all__ = ["Cost", "StageCost", "count"]
