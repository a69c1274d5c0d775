"""Role presets: the system prompt and the check (``verify``) a coding or LLM agent bound to a
role of the default catalog gets when it names none itself (``presets.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaagent.errors import WorkflowError
from metaagent.workflow.reader import describe_errors, read_yaml

__all__ = ["PRESETS_FILE", "RolePreset", "role_preset", "role_presets"]

PRESETS_FILE = Path(__file__).with_name("presets.yaml")


class _PresetModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str = ""
    verify: list[str] | None = Field(default=None, min_length=1)


class _PresetsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    presets: dict[str, _PresetModel]


@dataclass(frozen=True, slots=True)
class RolePreset:
    """A role's system prompt and check argv (``{python}`` not yet expanded), or none."""

    system: str = ""
    verify: tuple[str, ...] | None = None


@cache
def role_presets() -> dict[str, RolePreset]:
    raw = read_yaml(PRESETS_FILE, "role presets")
    if not isinstance(raw, dict):
        raise WorkflowError("the top level must be a mapping with presets", where=str(PRESETS_FILE))
    try:
        model = _PresetsModel.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(describe_errors(exc, raw), where=str(PRESETS_FILE)) from None
    return {
        role: RolePreset(p.system.strip(), None if p.verify is None else tuple(p.verify))
        for role, p in model.presets.items()
    }


def role_preset(role: str | None) -> RolePreset:
    """The preset of ``role``; an empty one for no role or a role it does not know (a custom
    catalog's)."""
    return role_presets().get(role or "", RolePreset())
