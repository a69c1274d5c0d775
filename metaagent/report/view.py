"""A journaled run as the dashboard draws it: the report of ``metaagent run --json`` with each
task's dependencies and, per task, its routing trail (``explain``'s decisions, every candidate's
score breakdown and why the winner won). Pure: it reads a ``StoredRun``.

The trails are built in one pass over the decisions (``explain_task`` scans them all for one
task), so a 10,000-task run is viewed in linear time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.decisions import SCORE_PARTS
from metaagent.core.routing.router import RoutingWeights
from metaagent.report.explain import explain_route
from metaagent.report.stored import stored_report

if TYPE_CHECKING:
    from metaagent.journal.base import StoredRun

_TOLERANCE = 2e-3  # as explain: journaled scores and parts are rounded to 4 places
_WEIGHTS_NOTE = (
    "some candidate scores differ from the weighted sum of their parts: the run routed with "
    "other weights (or a baseline policy), so the shares of a margin are approximate"
)


def run_view(stored: StoredRun, weights: RoutingWeights | None = None) -> dict[str, object]:
    """The report of ``stored`` (the ``run --json`` contract) plus ``state``, each task's
    ``depends_on`` and ``explain``: task id -> ``{"weights", "weights_note", "decisions"}`` in
    the shape of ``metaagent explain --json``'s fields of those names."""
    report = stored_report(stored)
    deps = {t.id: list(t.depends_on) for t in stored.tasks}
    tasks = report["tasks"]
    assert isinstance(tasks, list)
    for t in tasks:
        t["depends_on"] = deps.get(t["id"], [])
    report["state"] = run_state(report)
    report["created_at"] = stored.info.created_at
    report["finished_at"] = stored.info.finished_at
    report["explain"] = trails(stored, weights)
    return report


def run_state(report: dict[str, object]) -> str:
    """``running`` until the journal recorded the run's end, then ``succeeded`` or ``failed``."""
    if not report.get("finished"):
        return "running"
    return "succeeded" if report.get("ok") else "failed"


def trails(stored: StoredRun, weights: RoutingWeights | None = None) -> dict[str, object]:
    """Per task id, the decisions that name it (routes explained), in journal order."""
    w = weights or RoutingWeights()
    wmap = {p: float(getattr(w, p)) for p in SCORE_PARTS}
    steps: dict[str, list[dict[str, object]]] = {t.id: [] for t in stored.tasks}
    off: dict[str, int] = {}
    for d in stored.decisions:
        task_id = d.get("task_id")
        if not isinstance(task_id, str) or task_id not in steps:
            continue
        step: dict[str, object] = {
            "type": d.get("type"),
            "at": d.get("at"),
            "agent": d.get("agent"),
            "reason": d.get("reason", ""),
        }
        if d.get("type") == "route_task":
            route = explain_route(d, wmap)
            step["route"] = route.to_json()
            off[task_id] = off.get(task_id, 0) + sum(
                1 for c in route.candidates if abs(sum(c.weighted.values()) - c.score) > _TOLERANCE
            )
        steps[task_id].append(step)
    return {
        task_id: {
            "weights": wmap,
            "weights_note": _WEIGHTS_NOTE if off.get(task_id) else None,
            "decisions": found,
        }
        for task_id, found in steps.items()
    }
