"""Catalog roles merged into agents: the one place workflow and simulation files take an
agent's capabilities, concurrency and description from the role it names.

An agent entry's own fields win; a field it leaves out (``None``, or an empty description) is
the role's. Every error names the entry (``where``) and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metaagent.catalog import load_catalog
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from metaagent.catalog import Catalog

__all__ = ["AgentEntry", "MergedAgent", "check_unique", "merge_role", "resolve_catalog"]


@dataclass(frozen=True, slots=True)
class AgentEntry:
    """What an agent entry of a file says itself; ``None`` leaves the field to its ``role``."""

    name: str
    role: str | None = None
    capabilities: Mapping[str, float] | None = None
    concurrency: int | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class MergedAgent:
    """An agent entry with its role's fields filled in: what an ``AgentSpec`` is built from."""

    name: str
    role: str | None
    capabilities: dict[str, float]
    concurrency: int
    description: str


def resolve_catalog(
    ref: str | None, base_dir: Path, *, needed: bool, given: Catalog | None = None
) -> Catalog | None:
    """The catalog a file's roles come from: the file ``ref`` (relative to ``base_dir``) when
    named, else ``given``, else the default catalog when ``needed`` (some entry names a role).

    Raises ``WorkflowError`` naming the catalog file when it cannot be loaded.
    """
    if ref is not None:
        path = Path(ref)
        return load_catalog(path if path.is_absolute() else base_dir / path)
    if given is None and needed:
        return load_catalog()
    return given


def merge_role(entry: AgentEntry, catalog: Catalog | None, *, where: str) -> MergedAgent:
    """``entry`` with the fields it leaves out taken from its catalog role.

    Raises ``WorkflowError`` for an unknown role (at ``{where}.role``) or an agent left with no
    capabilities (at ``where``).
    """
    caps = entry.capabilities
    concurrency = entry.concurrency
    description = entry.description
    if entry.role is not None:
        assert catalog is not None, "an entry with a role needs a catalog"
        role = catalog.get(entry.role, where=f"{where}.role")
        caps = caps if caps is not None else role.capabilities
        concurrency = concurrency if concurrency is not None else role.concurrency
        description = description or role.description
    if not caps:
        raise WorkflowError(
            "capabilities: required (or name a catalog role to take them from)", where=where
        )
    return MergedAgent(entry.name, entry.role, dict(caps), concurrency or 1, description)


def check_unique(name: str, seen: set[str], *, where: str) -> None:
    """Add ``name`` to ``seen``; raises ``WorkflowError`` if it was there already."""
    if name in seen:
        raise WorkflowError(f"duplicate agent name {name!r}", where=where)
    seen.add(name)
