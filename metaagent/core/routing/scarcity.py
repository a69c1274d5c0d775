"""The router's ``scarcity`` part: what taking a multi-capability spec costs its other work.

A spec's pressure from another capability it offers is its share of that capability's slots
times the share of the time ahead that the capability's work needs of them: its queued plus
half its pending tasks, at the capability's learned mean duration, over its slots, against the
whole pool's queued plus half pending work over all slots (``work_ahead``), at most 1. A sole
server whose own work is the bottleneck is priced its full run; one whose work needs half the
time ahead, half of it, so a rare server with spare time takes other work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from metaagent.core.spec_entry import SpecEntry

_MIN_S = 1e-6


def work_ahead(
    waiting: Mapping[str, int],
    pending: Mapping[str, int],
    unit: Callable[[str], float | None],
    slots: int,
) -> float:
    """The pool's work ahead (queued plus half the pending, in expected seconds) over all its
    slots: how long until it runs out of work, were every slot busy."""
    work = 0.0
    for counts, share in ((waiting, 1.0), (pending, 0.5)):
        for c, n in counts.items():
            if n > 0:
                work += share * n * _or_one(unit(c))
    return max(work / slots, _MIN_S) if slots > 0 else _MIN_S


def pressure(
    entry: SpecEntry,
    cap: str,
    waiting: Mapping[str, int],
    pending: Mapping[str, int],
    slots_of: Mapping[str, int],
    unit: Callable[[str], float | None],
    horizon: float,
) -> float:
    """Over the spec's capabilities other than ``cap``: its share of their slots times the
    share of the time ahead (``horizon``, from ``work_ahead``) their work needs of them."""
    own = entry.slots
    total = 0.0
    for other in entry.spec.capabilities:
        if other == cap:
            continue
        demand = waiting.get(other, 0) + 0.5 * pending.get(other, 0)
        if demand <= 0:
            continue
        slots = slots_of.get(other, 0)
        if slots <= 0:
            continue
        need = demand * _or_one(unit(other)) / slots
        total += (own / slots) * min(1.0, need / horizon)
    return total


def _or_one(unit: float | None) -> float:
    return 1.0 if unit is None else unit
