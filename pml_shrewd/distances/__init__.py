"""PML distances for codes."""

from .manhattan import ManhattanDistance, manhattan_cdist

__all__ = ["ManhattanDistance", "manhattan_cdist"]
