"""Reading YAML input files and describing what is wrong with them, by file, line and field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml

from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from pathlib import Path

    from pydantic import ValidationError


def read_yaml(file: Path, what: str) -> object:
    """Parse a YAML file. Raises ``WorkflowError`` naming the file (and line and column)."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise WorkflowError(f"cannot read {what}: {exc.strerror}", where=str(file)) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowError(f"invalid YAML: {problem}", where=where) from exc


def describe_errors(
    exc: ValidationError, raw: dict[object, object], *, skip: Collection[str] = ()
) -> str:
    """Pydantic's errors as ``tasks[2] (id 'x').timeout_s: message`` lines.

    ``skip`` names tags pydantic adds for the chosen member of a tagged union (a runner's
    ``type``, say): they are not fields the user wrote.
    """
    return "; ".join(f"{_where(err['loc'], raw, skip)}: {err['msg']}" for err in exc.errors())


def _where(loc: Sequence[int | str], raw: dict[object, object], skip: Collection[str]) -> str:
    """An error's location as the user wrote it: list items named by their id (or name)."""
    parts: list[str] = []
    node: object = raw
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
            node = node[p] if isinstance(node, list) and p < len(node) else None
            parts[-1] += _label(node)
        # pydantic names the chosen union member (e.g. "command"): not a user field
        elif not (isinstance(node, dict) and p not in node and p in skip):
            parts.append(str(p))
            node = node.get(p) if isinstance(node, dict) else None
    return ".".join(parts) if parts else "(top level)"


def _label(node: object) -> str:
    """`` (id 'x')`` for a list item with a string id (or name), else nothing."""
    if isinstance(node, dict) and isinstance(node.get("id") or node.get("name"), str):
        key = "id" if "id" in node else "name"
        return f" ({key} {node[key]!r})"
    return ""
