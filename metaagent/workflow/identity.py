"""Workflow identity: the key that tells a run of the same workflow (and inputs) again, and
what differs between a journaled workflow and the file as it is now."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from metaagent.core.specs import AgentSpec
    from metaagent.core.tasks import AgentTask
    from metaagent.workflow.build import Workflow

_TASK_FIELDS = (
    "capability", "prompt", "input", "depends_on", "priority", "complexity", "timeout_s",
    "max_attempts", "resources", "verify", "metadata", "group", "decompose",
)  # fmt: skip
"""The task fields that change what a run does (``key``, the idempotency key, does not)."""
_MAX_DEPTH = 8  # nesting followed into runner objects; deeper values count by their type only
# Fields added after keys were journaled: left out while unset, so that a run journaled before
# them is still recognised (an agent's declared price).
_LATE_FIELDS = frozenset({"cost_per_call_usd"})
_LISTED = 5  # task ids a change names at most


def batch_key(
    name: str,
    tasks: Sequence[AgentTask],
    workdir: str,
    agents: Sequence[AgentSpec] | None = None,
) -> str:
    """A workflow run's identity, ``wf:<32 hex digits>``: the same name, tasks, workdir and
    agents give the same key.

    ``agents`` are the agents' whole definitions (capabilities, slots, instances, rate and every
    public setting of the runner: argv, environment, limits, an LLM's model and prompt...).
    Without them the key is the one journals written before agents counted hold (name,
    workdir and the tasks' original fields), so that those runs can still be recognised.
    """
    if agents is None:
        canon: list[object] = [
            [t.id, t.capability, t.prompt, t.input, list(t.depends_on), t.priority, t.complexity,
             t.timeout_s, t.max_attempts, list(t.resources),
             None if t.verify is None else list(t.verify.argv), t.metadata]
            for t in tasks
        ]  # fmt: skip
        blob = json.dumps([name, workdir, canon], sort_keys=True, default=str)
    else:
        canon = [[t.id, _task_canon(t)] for t in tasks]
        blob = json.dumps(
            [name, workdir, canon, [_canon(a) for a in agents]], sort_keys=True, default=str
        )
    return "wf:" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def workflow_key(wf: Workflow, workdir: str) -> str:
    """The identity of a run of ``wf`` in ``workdir`` (absolute), as ``metaagent run`` keys it."""
    return batch_key(wf.name, wf.tasks, workdir, wf.agents)


def identity_change(
    journaled: str | None,
    wf: Workflow,
    workdir: str,
    recorded: Callable[[], tuple[str, Sequence[AgentTask]]],
) -> str | None:
    """Why ``wf`` (as loaded now) is not the workflow whose run journaled the key
    ``journaled``, or None when it is. ``recorded`` gives the run's journaled name and tasks,
    read only when the keys differ, to name what changed.

    A run without a key, or with the key of journals written before agents counted (see
    ``batch_key``) that still matches, is taken as the same: its agents cannot be checked.
    """
    now = workflow_key(wf, workdir)
    if journaled in (None, now, batch_key(wf.name, wf.tasks, workdir)):
        return None
    what = describe_change(recorded(), (wf.name, wf.tasks)) or ["the agents' definitions"]
    return f"journaled identity {journaled}, now {now}: {'; '.join(what)}"


def describe_change(
    was: tuple[str, Sequence[AgentTask]], now: tuple[str, Sequence[AgentTask]]
) -> list[str]:
    """What differs between two workflows given as ``(name, tasks)``: the name, the tasks
    added, removed or changed (with the fields that changed). Empty when both are the same:
    a key that differs then comes from the agents (or the workdir).

    Sub-tasks a decomposition added to a journaled run (metadata ``parent``) are left out.
    """
    out: list[str] = []
    if was[0] != now[0]:
        out.append(f"name {was[0]!r} -> {now[0]!r}")
    old = {t.id: t for t in was[1] if "parent" not in (t.metadata or {})}
    new = {t.id: t for t in now[1]}
    added = [tid for tid in new if tid not in old]
    removed = [tid for tid in old if tid not in new]
    if added:
        out.append("tasks added: " + _some(added))
    if removed:
        out.append("tasks removed: " + _some(removed))
    changed = []
    for tid in new.keys() & old.keys():
        fields = _changed_fields(old[tid], new[tid])
        if fields:
            changed.append(f"{tid} ({', '.join(fields)})")
    if changed:
        out.append("tasks changed: " + _some(sorted(changed)))
    return out


def _some(items: Sequence[str]) -> str:
    more = len(items) - _LISTED
    return ", ".join(items[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def _changed_fields(a: AgentTask, b: AgentTask) -> list[str]:
    ca, cb = _task_canon(a), _task_canon(b)
    return [f for f in _TASK_FIELDS if _dump(ca[f]) != _dump(cb[f])]


def _dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _task_canon(t: AgentTask) -> dict[str, object]:
    return {f: _canon(getattr(t, f)) for f in _TASK_FIELDS}


def _canon(value: object, depth: int = 0) -> object:
    """``value`` as JSON-able data that is equal for equal definitions: plain values as they
    are, containers item by item, functions and classes by name, other objects as their type
    with their public fields (dataclass fields, slots or attributes; private ones, such as a
    runner's API key or random generator, are left out)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth >= _MAX_DEPTH:
        return _name(type(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _canon(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon(v, depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_dump(_canon(v, depth + 1)) for v in value)
    if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        return _name(value)
    fields = {
        f: _canon(getattr(value, f, None), depth + 1) for f in _public_fields(value)
        if not (f in _LATE_FIELDS and getattr(value, f, None) is None)
    }  # fmt: skip
    return {"__type__": _name(type(value)), **fields}


def _name(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _public_fields(value: object) -> list[str]:
    if dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
    else:
        slots = [getattr(k, "__slots__", ()) for k in type(value).__mro__]
        names = [n for s in slots for n in ((s,) if isinstance(s, str) else s)]
        names += list(getattr(value, "__dict__", {}))
    return sorted({n for n in names if not n.startswith("_")})
