"""``RoutingWeights``: the weights of the routing cost's parts (see ``core.routing``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoutingWeights:
    """Weights of the cost's parts (seconds per second; ``success`` per unit of probability,
    counted as a gain). Defaults: expected finish plus expected retry time, scarcity and the
    soft-fallback penalty all at face value."""

    wait: float = 1.0
    run: float = 1.0
    retry: float = 1.0
    scarcity: float = 1.0
    penalty: float = 1.0
    success: float = 0.0

    def signed(self) -> dict[str, float]:
        """Each part's weight in the score (``score = sum(signed * part)``): costs negative."""
        return {
            "wait": -self.wait, "run": -self.run, "retry": -self.retry,
            "scarcity": -self.scarcity, "penalty": -self.penalty, "success": self.success,
        }  # fmt: skip
