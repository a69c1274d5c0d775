"""What the tools and resources answer, cut from the API's documents: small enough for a model's
context (a run's summary, not its whole report; output capped, with a marker saying so)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "LOG_TAIL_CHARS", "MAX_LISTED", "OUTPUT_CHARS", "TERMINAL", "agents_view", "cap_text",
    "dag_view", "run_summary", "task_view",
]  # fmt: skip

OUTPUT_CHARS = 8_000
"""A task's output is cut to this many characters (the rest is marked, never silently lost)."""
LOG_TAIL_CHARS = 4_000
MAX_LISTED = 200  # tasks (or failures) listed at most in one summary
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "skipped"})

Doc = dict[str, Any]


def cap_text(text: str | None, limit: int, *, tail: bool = False) -> str | None:
    """``text`` cut to ``limit`` characters with a marker naming how much was cut."""
    if text is None or len(text) <= limit:
        return text
    cut = len(text) - limit
    if tail:
        return f"[metaagent: {cut} earlier characters cut]\n" + text[-limit:]
    return text[:limit] + f"\n[metaagent: output cut here, {cut} more characters]"


def run_summary(report: Doc, *, include_tasks: bool = False) -> Doc:
    """A run's state, counts, timing and failures (with their errors); its tasks on request."""
    tasks: list[Doc] = report.get("tasks", [])
    failures = [
        {
            "task_id": t["id"], "state": t["state"], "agent": t.get("agent"),
            "error": cap_text(t.get("error"), 1_000), "attempts": len(t.get("attempts", ())),
        }
        for t in tasks
        if t["state"] in ("failed", "skipped", "cancelled")
    ]  # fmt: skip
    running = [t["id"] for t in tasks if t["state"] == "running"]
    doc: Doc = {
        "run_id": report.get("run_id"), "name": report.get("name"),
        "state": report.get("state"), "finished": bool(report.get("finished")),
        "ok": report.get("ok"), "tasks": len(tasks), "counts": _counts(tasks),
        "makespan_s": report.get("makespan_s"), "total_run_s": report.get("total_run_s"),
        "labels": report.get("labels", {}), "priority": report.get("priority", 0),
        "retry_of": report.get("retry_of"), "running": running[:MAX_LISTED],
        "failures": failures[:MAX_LISTED],
    }  # fmt: skip
    if len(failures) > MAX_LISTED:
        doc["failures_not_listed"] = len(failures) - MAX_LISTED
    if include_tasks:
        doc["task_list"] = [
            {"id": t["id"], "capability": t.get("capability"), "state": t["state"],
             "agent": t.get("agent"), "depends_on": t.get("depends_on", [])}
            for t in tasks[:MAX_LISTED]
        ]  # fmt: skip
        if len(tasks) > MAX_LISTED:
            doc["tasks_not_listed"] = len(tasks) - MAX_LISTED
    return doc


def _counts(tasks: list[Doc]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    return counts


def task_view(doc: Doc) -> Doc:
    """One task: its definition, state, agent, output (capped), error, log tail, attempts."""
    attempts = [
        {
            "number": a.get("number"), "agent": a.get("agent"),
            "instance": a.get("agent_instance"), "outcome": a.get("outcome"),
            "started_at": a.get("started_at"), "finished_at": a.get("finished_at"),
            "error": cap_text(a.get("error"), 1_000),
        }
        for a in doc.get("attempts", ())
    ]  # fmt: skip
    output = doc.get("output")
    text = output if isinstance(output, str) or output is None else str(output)
    return {
        "run_id": doc.get("run_id"), "task": doc.get("task"), "state": doc.get("state"),
        "agent": doc.get("agent"), "agent_instance": doc.get("agent_instance"),
        "output": cap_text(text, OUTPUT_CHARS),
        "output_chars": None if text is None else len(text),
        "error": cap_text(doc.get("error"), 2_000),
        "log_tail": cap_text(doc.get("log"), LOG_TAIL_CHARS, tail=True),
        "attempts": attempts,
    }  # fmt: skip


def dag_view(report: Doc) -> Doc:
    """A run's tasks (state and agent) and its edges (dependency -> dependent)."""
    tasks: list[Doc] = report.get("tasks", [])
    return {
        "run_id": report.get("run_id"), "state": report.get("state"),
        "tasks": [
            {"id": t["id"], "capability": t.get("capability"), "state": t["state"],
             "agent": t.get("agent")}
            for t in tasks
        ],
        "edges": [[dep, t["id"]] for t in tasks for dep in t.get("depends_on", ())],
    }  # fmt: skip


def agents_view(doc: Doc, capability: str | None) -> Doc:
    """The pool (specs, instances with load, learned proficiency), those offering
    ``capability`` only when given. ``LookupError`` naming the known ones when none does."""
    specs: list[Doc] = doc.get("specs", [])
    if capability is None:
        return doc
    chosen = [s for s in specs if capability in s.get("capabilities", {})]
    if not chosen:
        known = sorted({c for s in specs for c in s.get("capabilities", {})})
        listing = ", ".join(known) if known else "none (no agent is registered yet)"
        raise LookupError(f"unknown capability {capability!r}; known capabilities: {listing}")
    names = {s["name"] for s in chosen}
    return {
        "specs": chosen,
        "instances": [i for i in doc.get("instances", []) if i.get("spec") in names],
        "stats": [s for s in doc.get("stats", []) if s.get("capability") == capability],
        "queue_depth": {k: v for k, v in doc.get("queue_depth", {}).items() if k == capability},
    }
