"""Printing for benchmarks: an aligned text table for people and one JSON line for machines."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def fmt(value: object, digits: int = 3) -> str:
    """A cell's text: floats to ``digits`` places, booleans as yes/no, ``None`` as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print ``rows`` under ``headers``; numbers are right-aligned, text left-aligned."""
    cells = [[fmt(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(f"\n{title}")
    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def print_json(result: Mapping[str, object]) -> None:
    """Print the benchmark's figures as one JSON object on one line (always the last line)."""
    print(json.dumps(_finite(result), separators=(", ", ": ")))


def _finite(value: object) -> object:
    """JSON has no NaN or infinity: such floats become ``null``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def stamp() -> str:
    """When a benchmark ran: UTC, to the second, as its JSON line records it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
