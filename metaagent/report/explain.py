"""Why a task went where it went: the decision trail of one task of a journaled run. Pure.

``explain_task`` reads a ``StoredRun`` (``journal.load_run``): every decision that touched the
task, and for each routing decision every candidate's score breakdown and why the winner won:
its margin over the runner-up and the weighted score parts that made that margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metaagent.core.decisions import SCORE_PARTS
from metaagent.core.routing.router import RoutingWeights

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from metaagent.journal.base import StoredRun

_TOLERANCE = 2e-3  # journaled scores and parts are rounded to 4 places


@dataclass(frozen=True, slots=True)
class Contribution:
    """One score part's share of the winner's margin: ``weight * (winner - runner_up)``."""

    part: str
    weight: float
    winner: float
    runner_up: float

    @property
    def delta(self) -> float:
        return self.weight * (self.winner - self.runner_up)

    def to_json(self) -> dict[str, object]:
        return {
            "part": self.part,
            "weight": self.weight,
            "winner": self.winner,
            "runner_up": self.runner_up,
            "delta": round(self.delta, 4),
        }


@dataclass(frozen=True, slots=True)
class CandidateView:
    """A candidate as scored: its total, its parts and the parts times their weights."""

    agent: str
    score: float
    breakdown: dict[str, float]
    weighted: dict[str, float]

    def to_json(self) -> dict[str, object]:
        return {
            "agent": self.agent,
            "score": self.score,
            "breakdown": self.breakdown,
            "weighted": {k: round(v, 4) for k, v in self.weighted.items()},
        }


@dataclass(frozen=True, slots=True)
class RouteWhy:
    """Why one routing decision chose its winner."""

    attempt: int
    instance: str
    spec: str
    score: float
    candidates: tuple[CandidateView, ...]
    runner_up: str | None
    margin: float | None  # winner's score minus the runner-up's (negative: affinity won)
    contributions: tuple[Contribution, ...]  # largest share of the margin first
    affinity: bool
    summary: str

    def to_json(self) -> dict[str, object]:
        return {
            "attempt": self.attempt,
            "instance": self.instance,
            "spec": self.spec,
            "score": self.score,
            "candidates": [c.to_json() for c in self.candidates],
            "runner_up": self.runner_up,
            "margin": None if self.margin is None else round(self.margin, 4),
            "contributions": [c.to_json() for c in self.contributions],
            "affinity": self.affinity,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One decision that touched the task, in journal order."""

    type: str
    at: float
    agent: str | None
    reason: str
    route: RouteWhy | None = None
    detail: str | None = None  # how a decision about several tasks touched this one

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": self.type,
            "at": self.at,
            "agent": self.agent,
            "reason": self.reason,
        }
        if self.detail is not None:
            out["detail"] = self.detail
        if self.route is not None:
            out["route"] = self.route.to_json()
        return out


@dataclass(frozen=True, slots=True)
class TaskTrail:
    """The decision trail of one task, with its attempts and final state."""

    run_id: str
    task_id: str
    capability: str
    state: str
    agent: str | None
    error: str | None
    attempts: tuple[dict[str, object], ...]
    steps: tuple[Step, ...]
    weights: dict[str, float] = field(default_factory=dict)
    weights_note: str | None = None  # set when the weights do not reproduce the scores

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "capability": self.capability,
            "state": self.state,
            "agent": self.agent,
            "error": self.error,
            "attempts": list(self.attempts),
            "weights": self.weights,
            "weights_note": self.weights_note,
            "decisions": [s.to_json() for s in self.steps],
        }


def explain_task(
    stored: StoredRun, task_id: str, weights: RoutingWeights | None = None
) -> TaskTrail:
    """The trail of ``task_id`` in ``stored``. Raises ``KeyError`` for an unknown task.

    ``weights`` are those the run routed with (default: ``RoutingWeights()``); if they do not
    reproduce the journaled scores, the trail says so in ``weights_note``.
    """
    task = next((t for t in stored.tasks if t.id == task_id), None)
    if task is None:
        raise KeyError(task_id)
    w = weights or RoutingWeights()
    wmap = w.signed()  # each part's weight in the score: costs count against it
    steps: list[Step] = []
    mismatch = 0
    for d in stored.decisions:
        step = _step(d, task_id, wmap)
        if step is None:
            continue
        if step.route is not None:
            mismatch += sum(
                1 for c in step.route.candidates if abs(sum(c.weighted.values()) - c.score)
                > _TOLERANCE
            )  # fmt: skip
        steps.append(step)
    result = stored.results.get(task_id)
    attempts = stored.attempts.get(task_id, [])
    state = result.state.value if result is not None else ("running" if any(
        a.finished_at is None for a in attempts) else "pending")  # fmt: skip
    note = None
    if mismatch:
        note = (
            f"{mismatch} candidate score(s) differ from the weighted sum of their parts: the run "
            "routed with other weights (or a baseline policy), so the shares of a margin are "
            "approximate"
        )
    return TaskTrail(
        run_id=stored.info.run_id,
        task_id=task_id,
        capability=task.capability,
        state=state,
        agent=attempts[-1].agent if attempts else None,
        error=None if result is None else result.error,
        attempts=tuple(
            {
                "number": a.number,
                "agent": a.agent,
                "instance": a.agent_instance,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "outcome": None if a.outcome is None else a.outcome.value,
                "error": a.error,
            }
            for a in attempts
        ),
        steps=tuple(steps),
        weights=wmap,
        weights_note=note,
    )


def _step(d: Mapping[str, object], task_id: str, w: Mapping[str, float]) -> Step | None:
    kind = str(d.get("type", "?"))
    at = _num(d.get("at"))
    agent = d.get("agent")
    agent_s = agent if isinstance(agent, str) else None
    reason = str(d.get("reason", ""))
    if d.get("task_id") == task_id:
        route = explain_route(d, w) if kind == "route_task" else None
        return Step(kind, at, agent_s, reason, route)
    order = d.get("order")
    if kind == "optimize_workflow" and isinstance(order, list) and task_id in order:
        pos = order.index(task_id) + 1
        changes = d.get("changes")
        rank = changes.get(task_id) if isinstance(changes, dict) else None
        detail = f"placed {pos} of {len(order)} in the ready order"
        if isinstance(rank, int | float):
            detail += f" (critical-path rank {rank})"
        return Step(kind, at, agent_s, reason, detail=detail)
    subtasks = d.get("subtasks")
    if kind == "decompose_task" and isinstance(subtasks, list) and task_id in subtasks:
        detail = f"created as a sub-task of {d.get('task_id')!r}"
        return Step(kind, at, agent_s, reason, detail=detail)
    return None


def explain_route(d: Mapping[str, object], weights: Mapping[str, float]) -> RouteWhy:
    """Why a journaled ``route_task`` decision (its JSON form) chose its winner."""
    instance = str(d.get("instance", ""))
    spec = str(d.get("agent", ""))
    score = _num(d.get("score"))
    winner_parts = _parts(d.get("breakdown"))
    cands: list[CandidateView] = []
    raw = d.get("candidates")
    for c in raw if isinstance(raw, list) else []:
        if not isinstance(c, dict):
            continue
        parts = _parts(c.get("breakdown"))
        weighted = {p: weights.get(p, 0.0) * v for p, v in parts.items()}
        cands.append(CandidateView(str(c.get("agent", "")), _num(c.get("score")), parts, weighted))
    cands.sort(key=lambda c: -c.score)
    others = [c for c in cands if c.agent != instance]
    reason = str(d.get("reason", ""))
    cheapest = reason.startswith("cheapest meeting")  # objective cheapest_meeting: by price
    affinity = "affinity" in reason or (
        not cheapest and bool(others) and others[0].score > score + _TOLERANCE
    )
    if not others:
        summary = (
            f"{instance} was the only free candidate (score {score:.3f})"
            if cands
            else f"{instance} was chosen (no candidates were recorded)"
        )
        return RouteWhy(_int(d.get("attempt")), instance, spec, score, tuple(cands), None, None,
                        (), affinity, summary)  # fmt: skip
    rival = others[0]
    margin = score - rival.score
    contributions = sorted(
        (
            Contribution(p, weights.get(p, 0.0), winner_parts.get(p, 0.0), rival.breakdown[p])
            for p in SCORE_PARTS
            if p in rival.breakdown
        ),
        key=lambda c: -c.delta,
    )
    summary = _summary(instance, score, rival, margin, contributions, affinity)
    if cheapest:
        summary = _cheapest_summary(instance, winner_parts, rival, "no candidate" in reason)
    return RouteWhy(_int(d.get("attempt")), instance, spec, score, tuple(cands), rival.agent,
                    margin, tuple(contributions), affinity, summary)  # fmt: skip


def _summary(
    instance: str,
    score: float,
    rival: CandidateView,
    margin: float,
    contributions: Sequence[Contribution],
    affinity: bool,
) -> str:
    helped = [c for c in contributions if c.delta > 5e-5]
    hurt = [c for c in contributions if c.delta < -5e-5]
    if affinity and margin < 0:
        return (
            f"{instance} ({score:.3f}) was chosen for group affinity: it ran earlier tasks of the "
            f"group, and scored within the affinity margin of {rival.agent} ({rival.score:.3f})"
        )
    if abs(margin) <= 5e-5 and not helped:
        return (
            f"{instance} tied with {rival.agent} at {score:.3f}; the tie went to the first listed"
        )
    text = (
        f"{instance} won with {score:.3f} over {rival.agent} ({rival.score:.3f}), by {margin:.3f}"
    )
    if helped:
        text += ": mostly " + ", ".join(_share(c) for c in helped[:2])
    if hurt:
        text += "; despite " + ", ".join(_share(c) for c in hurt[:2])
    return text


def _cheapest_summary(
    instance: str, parts: Mapping[str, float], rival: CandidateView, none_met: bool
) -> str:
    """The objective ``cheapest_meeting``: price and expected success decided, not the score."""
    cost, p = parts.get("cost", 0.0), parts.get("success", 0.0)
    theirs = f"{rival.agent} (${rival.breakdown.get('cost', 0.0):.4g}, success " + (
        f"{rival.breakdown.get('success', 0.0):.2f})"
    )
    if none_met:
        return (
            f"{instance} had the best expected success ({p:.2f}, ${cost:.4g} per attempt) with "
            f"no candidate reaching the success target; runner-up {theirs}"
        )
    return (
        f"{instance} was the cheapest candidate reaching the success target: ${cost:.4g} per "
        f"attempt, success {p:.2f}; runner-up {theirs}"
    )


def _share(c: Contribution) -> str:
    return f"{c.part} ({c.delta:+.3f}: {c.winner:.2f} vs {c.runner_up:.2f}, weight {c.weight:g})"


def _parts(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    return {p: _num(raw[p]) for p in SCORE_PARTS if p in raw}


def _num(v: object) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return 0.0


def _int(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0
