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


def print_table(rows: list[tuple[str, Row]]) -> None:
    """The table `make bench` prints: (area, row) pairs, each figure beside its target."""
    width = max([len(r.name) for _, r in rows] + [10])
    print(f"\n{'area':<10} {'figure':<{width}} {'measured':>22} {'target':>14}  ok")
    print("-" * (width + 54))
    for area, r in rows:
        mark = {True: "yes", False: "NO", None: "-"}[r.ok]
        print(f"{area:<10} {r.name:<{width}} {r.value:>22} {r.target:>14}  {mark}")
