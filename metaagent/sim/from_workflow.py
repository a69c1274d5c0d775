"""Simulating a workflow file: its agents and tasks on virtual time, runners never run.

Runners, prompts and inputs are read (the file is checked as ``metaagent run`` checks it) and
ignored. Each agent is simulated with ``max_instances`` instances (the most its pool may grow
to). A task's duration is its ``estimate_s`` when it has one (the scheduler is told the same);
otherwise it is drawn from a profile: ``--learned`` statistics of earlier runs where they
exist, else a ``--profile`` file (the ``default_profile:`` and ``profiles:`` sections of a
simulation file), else the default profile (lognormal, mean 1 s, cv 0.5).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaagent.errors import WorkflowError
from metaagent.sim.loading import DefaultProfileModel, ProfileModel, parse_simulation, profiles_of
from metaagent.sim.spec import SIMULATED, AgentPool, Profile, SimSettings, SimSpec
from metaagent.workflow.build import parse_workflow
from metaagent.workflow.reader import describe_errors, read_yaml

if TYPE_CHECKING:
    from collections.abc import Mapping

_SIM_ONLY = {"profiles", "default_profile", "generate", "warm_start", "ordering",
             "scale_by_complexity"}  # fmt: skip


def is_workflow(raw: object) -> bool:
    """Whether parsed YAML is a workflow file rather than a simulation file: its agents name
    runners, or its tasks carry prompts, inputs or checks (and nothing only a simulation
    file has)."""
    if not isinstance(raw, dict) or _SIM_ONLY & set(raw):
        return False
    agents = raw.get("agents")
    tasks = raw.get("tasks")
    if isinstance(agents, list) and any(isinstance(a, dict) and "runner" in a for a in agents):
        return True
    work = ("prompt", "input", "verify", "decompose", "key")
    return isinstance(tasks, list) and any(
        isinstance(t, dict) and any(k in t for k in work) for t in tasks
    )


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a whole simulation file may be given

    default_profile: DefaultProfileModel = Field(default_factory=DefaultProfileModel)
    profiles: list[ProfileModel] = Field(default_factory=list)


def _unrun(raw: object) -> object:
    """The workflow without what only running it needs: its workspace, the agents' sandboxes,
    and their runners (each replaced by a stand-in), so that a tool that is not installed, a
    repository a setup step makes, or a sandbox this machine cannot set up do not stop the
    simulation of the schedule."""
    if not isinstance(raw, dict):
        return raw
    out = {k: v for k, v in raw.items() if k != "workspace"}
    agents = out.get("agents")
    if isinstance(agents, list):
        out["agents"] = [
            {**{k: v for k, v in a.items() if k != "sandbox"}, "runner": _STAND_IN}
            if isinstance(a, dict) and "runner" in a
            else a
            for a in agents
        ]
    return out


_STAND_IN = {"type": "command", "argv": [sys.executable]}  # never started: simulated


def workflow_simulation(
    raw: object, *, source: str, base_dir: Path, profile_file: Path | None = None
) -> SimSpec:
    """A ``SimSpec`` for a workflow file already parsed (see the module's docstring)."""
    wf = parse_workflow(_unrun(raw), source=source, base_dir=base_dir)
    pools = tuple(
        AgentPool(replace(spec, runner=SIMULATED), max(1, spec.max_instances)) for spec in wf.agents
    )
    default = Profile()
    profiles: Mapping[tuple[str | None, str | None], Profile] = {}
    if profile_file is not None:
        pf = _profile_file(profile_file)
        known = sorted({c for p in pools for c in p.spec.capabilities})
        default, profiles = profiles_of(
            pf.default_profile, pf.profiles, {p.spec.name for p in pools}, known, str(profile_file)
        )
    durations = {t.id: t.estimate_s for t in wf.tasks if t.estimate_s is not None}
    settings = SimSettings(max_concurrency=wf.settings.max_concurrency)
    return SimSpec(
        pools=pools,
        tasks=tuple(wf.tasks),
        profiles=profiles,
        default=default,
        settings=settings,
        name=wf.name,
        durations=durations,
        scale_by_complexity=False,
    )


def _profile_file(path: Path) -> _ProfileFile:
    raw = read_yaml(path, "profile")
    if not isinstance(raw, dict):
        raise WorkflowError("a profile file is a mapping with default_profile/profiles",
                            where=str(path))  # fmt: skip
    try:
        return _ProfileFile.model_validate(raw)
    except ValidationError as exc:
        raise WorkflowError(describe_errors(exc, raw), where=str(path)) from exc


def load_any(path: str | Path, *, profile_file: Path | None = None) -> SimSpec:
    """A simulation file, or a workflow file simulated (``is_workflow``). Raises
    ``WorkflowError`` naming the file and the field."""
    file = Path(path)
    raw = read_yaml(file, "simulation")
    base = file.resolve().parent
    if is_workflow(raw):
        return workflow_simulation(raw, source=str(file), base_dir=base, profile_file=profile_file)
    if profile_file is not None:
        raise WorkflowError("--profile is for workflow files; a simulation file has its own "
                            "profiles", where=str(file))  # fmt: skip
    return parse_simulation(raw, source=str(file), base_dir=base)
