"""What a benchmark returns: rows of a table, each a figure beside its target."""

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the `make bench` table."""

    name: str
    """What was measured."""
    value: str
    """The figure, formatted with its unit."""
    target: str
    """The target, as a person reads it (e.g. '<= 0.01')."""
    ok: bool | None
    """Whether the target is met; None for figures that have no target."""


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)
