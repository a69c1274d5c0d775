"""``RoutingWeights``: the weights of the routing cost's parts and the routing objective
(see ``core.routing``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Objective = Literal["earliest_finish", "cheapest_meeting"]
OBJECTIVES: tuple[Objective, ...] = ("earliest_finish", "cheapest_meeting")


@dataclass(frozen=True, slots=True)
class RoutingWeights:
    """Weights of the cost's parts (seconds per second; ``success`` per unit of probability,
    counted as a gain; ``cost`` seconds per USD of an attempt's expected cost). Defaults:
    expected finish plus expected retry time, scarcity and the soft-fallback penalty all at
    face value; price at weight 0, so that routing is by time unless a price is given a weight.

    ``objective``: ``earliest_finish`` takes the lowest weighted cost; ``cheapest_meeting``
    takes the capable spec of the lowest expected cost per attempt among those whose expected
    success for the task reaches ``quality_target`` (ties by the weighted cost), and the one
    of the best expected success when none does.
    """

    wait: float = 1.0
    run: float = 1.0
    retry: float = 1.0
    scarcity: float = 1.0
    penalty: float = 1.0
    success: float = 0.0
    cost: float = 0.0
    objective: Objective = "earliest_finish"
    quality_target: float = 0.95

    def signed(self) -> dict[str, float]:
        """Each part's weight in the score (``score = sum(signed * part)``): costs negative."""
        return {
            "wait": -self.wait, "run": -self.run, "retry": -self.retry,
            "scarcity": -self.scarcity, "penalty": -self.penalty, "success": self.success,
            "cost": -self.cost,
        }  # fmt: skip

    def problems(self) -> list[str]:
        """What is wrong with these weights, each naming its field (empty: nothing)."""
        out: list[str] = []
        if self.objective not in OBJECTIVES:
            out.append(
                f"objective: must be earliest_finish or cheapest_meeting, got {self.objective!r}"
            )
        q = self.quality_target
        if not (isinstance(q, int | float) and 0.0 < q <= 1.0):
            out.append(f"quality_target: must be above 0 and at most 1, got {q!r}")
        if not (math.isfinite(self.cost) and self.cost >= 0):
            out.append(
                f"cost_weight: must be a finite number of seconds per USD >= 0, got {self.cost}"
            )
        return out
