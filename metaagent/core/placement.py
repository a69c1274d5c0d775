"""``Placement``: where an agent's instances may run on a cluster backend, and what each holds.

Pure data. The Ray backend turns it into an actor's options (``num_cpus``, ``num_gpus``,
``memory``, custom ``resources``, ``runtime_env``); the local backend ignores it, so one
workflow runs on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True, slots=True)
class Placement:
    """What one instance of a spec reserves on its node. Units are in the names.

    ``num_cpus`` (default: 0 for the actor itself, so instances are not limited by CPU slots
    unless asked), ``num_gpus``, ``memory_mb`` (a reservation the scheduler of the cluster
    counts, not a limit it enforces), ``resources`` (custom resources a node must offer, such as
    ``{"gpu_box": 1}``) and ``runtime_env`` (the cluster's per-actor environment: pip packages,
    env vars, working directory), passed as given.
    """

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory_mb: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    runtime_env: Mapping[str, object] | None = None

    def demand(self) -> dict[str, float]:
        """The resources one instance asks of a node, by the cluster's names (memory in bytes)."""
        out: dict[str, float] = {"CPU": self.num_cpus or 0.0}
        if self.num_gpus:
            out["GPU"] = self.num_gpus
        if self.memory_mb:
            out["memory"] = self.memory_mb * 1024 * 1024
        out.update(self.resources)
        return {k: v for k, v in out.items() if v > 0}

    def problems(self) -> list[str]:
        out: list[str] = []
        for name, value in (
            ("num_cpus", self.num_cpus),
            ("num_gpus", self.num_gpus),
            ("memory_mb", self.memory_mb),
        ):
            if value is not None and value < 0:
                out.append(f"ray.{name}: must be at least 0, got {value}")
        for key, amount in self.resources.items():
            if not key:
                out.append("ray.resources: a resource name must be non-empty")
            elif amount <= 0:
                out.append(f"ray.resources.{key}: must be positive, got {amount}")
        return out
