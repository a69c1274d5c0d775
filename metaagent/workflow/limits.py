"""The keys of a workflow's ``capability_limits`` and ``resource_limits``: each must name a
capability an agent offers, or a resource a task holds. A typo would otherwise be a limit on
nothing, silently."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.errors import WorkflowError, brief, capped

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from metaagent.core.tasks import AgentTask
    from metaagent.workflow.schema import SettingsModel

__all__ = ["check_limit_keys"]


def check_limit_keys(
    settings: SettingsModel, capabilities: Iterable[str], tasks: Iterable[AgentTask], source: str
) -> None:
    """Raises ``WorkflowError`` at ``settings.capability_limits`` (or ``resource_limits``)
    naming the unknown keys and listing the known ones."""
    resources = {r for t in tasks for r in t.resources}
    _check("capability_limits", settings.capability_limits, set(capabilities), "capabilities",
           source)  # fmt: skip
    _check("resource_limits", settings.resource_limits, resources, "resources held by tasks",
           source)  # fmt: skip


def _check(field: str, limits: Mapping[str, int], known: set[str], what: str, source: str) -> None:
    unknown = [brief(k) for k in limits if k not in known]
    if not unknown:
        return
    listing = capped(sorted(known), ", ") if known else "(none)"
    raise WorkflowError(
        f"unknown key{'s' if len(unknown) > 1 else ''} {capped(unknown, ', ')}; known {what}: "
        f"{listing}",
        where=f"{source}: settings.{field}",
    )
