"""Agent catalogs: named roles with capabilities, that workflows bind runners to.

The default catalog holds the 22 specialised roles planned for the system. A catalog file is YAML:
``roles: [{role, description, capabilities: {capability: proficiency}, concurrency}]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaagent.errors import WorkflowError, brief, capped
from metaagent.workflow.reader import describe_errors, read_yaml

DEFAULT_CATALOG = Path(__file__).with_name("default.yaml")


class _RoleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1)
    description: str = ""
    capabilities: dict[str, float] = Field(min_length=1)
    concurrency: int = Field(default=1, ge=1)


class _CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[_RoleModel]


@dataclass(frozen=True, slots=True)
class Role:
    """A specialised role: what it is good at, and how many tasks one instance takes at once."""

    role: str
    description: str
    capabilities: dict[str, float]
    concurrency: int


@dataclass(frozen=True, slots=True)
class Catalog:
    """Roles by name, loaded from ``source``."""

    roles: dict[str, Role]
    source: str

    def get(self, role: str, *, where: str | None = None) -> Role:
        try:
            return self.roles[role]
        except KeyError:
            raise WorkflowError(
                f"unknown role {brief(role)} (catalog {self.source}); known roles: "
                + capped(sorted(self.roles), ", "),
                where=where,
            ) from None


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load a catalog file (the default catalog when ``path`` is None).

    Raises ``WorkflowError`` naming the file and the field at fault.
    """
    file = Path(path) if path is not None else DEFAULT_CATALOG
    raw = read_yaml(file, "catalog")
    if not isinstance(raw, dict):
        raise WorkflowError("the top level must be a mapping with roles", where=str(file))
    try:
        model = _CatalogModel.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(describe_errors(exc, raw), where=str(file)) from None
    roles: dict[str, Role] = {}
    for i, r in enumerate(model.roles):
        if r.role in roles:
            raise WorkflowError(f"roles[{i}]: duplicate role {brief(r.role)}", where=str(file))
        for cap, prof in r.capabilities.items():
            if not 0.0 <= prof <= 1.0:
                raise WorkflowError(
                    f"roles[{i}].capabilities.{cap}: proficiency must be within 0..1, got {prof}",
                    where=str(file),
                )
        roles[r.role] = Role(r.role, r.description, dict(r.capabilities), r.concurrency)
    return Catalog(roles, str(file))
