"""The version of mbnas, kept low in the tree so that any module may record it."""

__version__ = "0.1.0"
