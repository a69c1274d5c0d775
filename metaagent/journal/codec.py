"""Turning tasks, attempts and outputs into journal rows and back."""

from __future__ import annotations

import json

from metaagent.model import AgentTask, Attempt, Outcome, VerifySpec

TaskRow = tuple[
    str, str, int, str, str, str | None, int, str, float, float | None, int, str,
    str | None, str | None, str | None,
]  # fmt: skip


def dumps(value: object) -> str | None:
    """JSON text for a value (``None`` stays NULL); what JSON cannot hold becomes its ``str``."""
    return None if value is None else json.dumps(value, default=str, separators=(",", ":"))


def loads(text: str | None) -> object:
    return None if text is None else json.loads(text)


def task_row(run_id: str, seq: int, t: AgentTask) -> TaskRow:
    verify = (
        None
        if t.verify is None
        else dumps({"argv": t.verify.argv, "timeout_s": t.verify.timeout_s})
    )
    return (
        run_id,
        t.id,
        seq,
        t.capability,
        t.prompt,
        dumps(t.input),
        t.priority,
        json.dumps(list(t.depends_on)),
        t.complexity,
        t.timeout_s,
        t.max_attempts,
        json.dumps(list(t.resources)),
        verify,
        dumps(t.metadata) if t.metadata else None,
        t.key,
    )


def task_from_row(row: tuple[object, ...]) -> AgentTask:
    """Inverse of ``task_row`` for the columns after ``run_id`` and ``seq``."""
    (tid, cap, prompt, inp, prio, deps, cx, tmo, maxa, res, verify, meta, key) = row
    v = loads(verify) if isinstance(verify, str) else None
    return AgentTask(
        id=str(tid),
        capability=str(cap),
        prompt=str(prompt),
        input=loads(inp) if isinstance(inp, str) else None,
        priority=int(prio),  # type: ignore[call-overload]
        depends_on=tuple(json.loads(deps)) if deps != "[]" else (),  # type: ignore[arg-type]
        complexity=float(cx),  # type: ignore[arg-type]
        timeout_s=None if tmo is None else float(tmo),  # type: ignore[arg-type]
        max_attempts=int(maxa),  # type: ignore[call-overload]
        resources=tuple(json.loads(res)) if res != "[]" else (),  # type: ignore[arg-type]
        verify=VerifySpec(tuple(v["argv"]), float(v["timeout_s"])) if isinstance(v, dict) else None,
        metadata=dict(loads(meta)) if isinstance(meta, str) else {},  # type: ignore[call-overload]
        key=None if key is None else str(key),
    )


def attempt_from_row(row: tuple[object, ...]) -> Attempt:
    number, agent, instance, started, finished, outcome, error = row
    return Attempt(
        int(number),  # type: ignore[call-overload]
        str(agent),
        str(instance),
        float(started),  # type: ignore[arg-type]
        None if finished is None else float(finished),  # type: ignore[arg-type]
        None if outcome is None else Outcome(str(outcome)),
        None if error is None else str(error),
    )
