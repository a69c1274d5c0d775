"""Runner kinds by name: the config model a file's ``runner: {type: ...}`` is checked against,
and the builder that turns a checked config into a ``Runner``.

The workflow schema validates ``runner`` through this table (``RunnerConfig``) and builds it
with ``build_runner``, so a new kind of runner is one ``register`` call here, with no change to
the workflow parser. A kind must be registered before the workflow schema is imported: the
schema takes the table as it is then. A builder may import what it needs lazily (a kind whose
runner needs a heavy dependency imports it only when a file uses it).
"""

from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar, Union, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from metaagent.agents.command import CommandRunner, expand
from metaagent.agents.function import FunctionRunner
from metaagent.agents.llm import LlmConfig, LlmRunner
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.agents.process import DEFAULT_MAX_LOG_MB, DEFAULT_MAX_OUTPUT_MB, ProcessLimits
from metaagent.errors import WorkflowError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

    from metaagent.agents.base import Runner

__all__ = [
    "MAX_SECONDS",
    "MIN_MEMORY_MB",
    "BuildContext",
    "CommandRunnerModel",
    "FunctionRunnerModel",
    "LlmRunnerModel",
    "NulFree",
    "PersistentRunnerModel",
    "RunnerConfig",
    "RunnerKind",
    "RunnerModel",
    "build_runner",
    "register",
    "runner_kinds",
    "runner_types",
]

_STRICT = ConfigDict(extra="forbid")

MAX_SECONDS = 365 * 24 * 3600
"""The longest timeout or CPU limit a file may give: a year, in seconds."""
MIN_MEMORY_MB = 16
"""The smallest ``memory_limit_mb``: below it not even a shell starts."""


def _no_nul(text: str) -> str:
    if "\0" in text:
        raise ValueError("holds a NUL character, which no argument, variable or prompt may hold")
    return text


def _env_name(name: str) -> str:
    if not name or "=" in name:
        raise ValueError(f"{name!r} is not an environment variable name (empty, or holds '=')")
    return _no_nul(name)


def _machine_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):  # pragma: no cover - a platform without these
        return 1 << 40


def _within_memory(mb: int | None) -> int | None:
    if mb is not None and mb > (ram := _machine_memory_mb()):
        raise ValueError(f"{mb} MB is more than this machine's memory ({ram} MB)")
    return mb


NulFree = Annotated[str, AfterValidator(_no_nul)]
"""A string that reaches a process (an argument, a variable, a prompt): no NUL in it."""
EnvName = Annotated[str, AfterValidator(_env_name)]
MemoryMb = Annotated[int | None, Field(ge=MIN_MEMORY_MB), AfterValidator(_within_memory)]
CpuSeconds = Annotated[int | None, Field(ge=1, le=MAX_SECONDS)]
CaptureMb = Annotated[float, Field(ge=0.001, le=1024)]  # output or log kept per attempt


# --- the config models ------------------------------------------------------------------------


class RunnerModel(BaseModel):
    """The base of every runner config: ``type`` names the kind (a ``Literal`` in each)."""

    model_config = _STRICT

    type: str


class CommandRunnerModel(RunnerModel):
    """A command run once per attempt (``metaagent.agents.command``)."""

    type: Literal["command"]
    argv: list[NulFree] = Field(min_length=1)
    cwd: NulFree | None = None
    env: dict[EnvName, NulFree] = Field(default_factory=dict)
    memory_limit_mb: MemoryMb = 500
    cpu_limit_s: CpuSeconds = None
    max_output_mb: CaptureMb = DEFAULT_MAX_OUTPUT_MB  # stdout kept; the rest dropped, marked
    max_log_mb: CaptureMb = DEFAULT_MAX_LOG_MB  # stderr kept as the attempt's log


class PersistentRunnerModel(RunnerModel):
    """A long-lived process that takes attempts one by one (``metaagent.agents.persistent``)."""

    type: Literal["persistent"]
    argv: list[NulFree] = Field(min_length=1)
    cwd: NulFree | None = None
    env: dict[EnvName, NulFree] = Field(default_factory=dict)
    memory_limit_mb: MemoryMb = 500
    cpu_limit_s: CpuSeconds = None
    max_output_mb: CaptureMb = DEFAULT_MAX_OUTPUT_MB  # a reply line longer than this is refused
    max_log_mb: CaptureMb = DEFAULT_MAX_LOG_MB  # stderr kept as an attempt's log


class FunctionRunnerModel(RunnerModel):
    """A Python callable, imported when the file is loaded (``metaagent.agents.function``)."""

    type: Literal["function"]
    function: str = Field(pattern=r"^[\w.]+:[\w.]+$", description="module.path:callable")


class LlmRunnerModel(RunnerModel):
    """An LLM agent (``metaagent.agents.llm``); needs the ``llm`` extra."""

    type: Literal["llm"]
    provider: Literal["openai", "anthropic"]
    model: str = Field(min_length=1)
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    system: NulFree = ""
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int = Field(default=4096, ge=1)
    json_output: bool = False
    return_usage: bool = False
    timeout_s: float = Field(default=120.0, gt=0, le=MAX_SECONDS)
    max_retries: int = Field(default=3, ge=0)
    max_upstream_chars: int = Field(default=24_000, ge=0)
    requests_per_min: float | None = Field(default=None, gt=0)  # per provider key
    tokens_per_min: int | None = Field(default=None, ge=1)  # per provider key


# --- the table --------------------------------------------------------------------------------

M = TypeVar("M", bound=RunnerModel)


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a builder gets besides the config: load-time placeholder ``values`` (such as
    ``workflow_dir`` and ``python``) and ``where`` the runner is in the file, for errors."""

    values: Mapping[str, str]
    where: str


@dataclass(frozen=True, slots=True)
class RunnerKind:
    """One kind of runner: its ``type`` tag, its config model and its builder."""

    tag: str
    model: type[RunnerModel]
    build: Callable[[RunnerModel, BuildContext], Runner]


_KINDS: dict[str, RunnerKind] = {}
_schema_built = False  # once a schema holds the table, a later kind would go unseen


def register(type_: str, model: type[M], build: Callable[[M, BuildContext], Runner]) -> None:
    """Add a kind of runner. ``model`` must declare ``type: Literal[type_]``; ``build`` raises
    ``WorkflowError`` (with ``where=ctx.where``) for a config it cannot build.

    Raises ``ValueError`` for a tag already registered or a model whose ``type`` is not the tag,
    ``RuntimeError`` once a schema has been built from the table.
    """
    if _schema_built:
        raise RuntimeError(
            f"runner type {type_!r}: register runner kinds before a schema using RunnerConfig "
            "is built (before metaagent.workflow.schema is imported)"
        )
    if type_ in _KINDS:
        raise ValueError(f"runner type {type_!r} is already registered")
    field = model.model_fields.get("type")
    if field is None or get_args(field.annotation) != (type_,):
        raise ValueError(f"{model.__name__}.type must be Literal[{type_!r}]")

    def checked(config: RunnerModel, ctx: BuildContext) -> Runner:
        if not isinstance(config, model):
            raise TypeError(f"runner type {type_!r} expects {model.__name__}, got {config!r}")
        return build(config, ctx)

    _KINDS[type_] = RunnerKind(type_, model, checked)


def runner_kinds() -> tuple[RunnerKind, ...]:
    """Every registered kind, in registration order."""
    return tuple(_KINDS.values())


def runner_types() -> tuple[str, ...]:
    """Every registered ``type`` tag, in registration order."""
    return tuple(_KINDS)


def build_runner(config: RunnerModel, ctx: BuildContext) -> Runner:
    """The runner a validated config describes (see ``RunnerConfig``)."""
    return _KINDS[config.type].build(config, ctx)


class _ByType:
    """Pydantic metadata: validate as the registered model that the ``type`` tag names."""

    def __get_pydantic_core_schema__(
        self, source: object, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        global _schema_built
        _schema_built = True
        models = tuple(k.model for k in _KINDS.values())
        return handler.generate_schema(
            Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
        )


RunnerConfig = Annotated[RunnerModel, _ByType()]
"""The type of a schema's ``runner`` field: any registered config, chosen by its ``type``."""


# --- the builders -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Process:
    """A command's fields with the load-time placeholders expanded."""

    argv: list[str]
    cwd: str | None
    env: dict[str, str]


def _process(m: CommandRunnerModel | PersistentRunnerModel, ctx: BuildContext) -> _Process:
    """The expanded fields, checked: the program and the ``cwd`` must exist, where static."""
    v = ctx.values
    p = _Process(
        [expand(a, v) for a in m.argv],
        expand(m.cwd, v) if m.cwd else None,
        {k: expand(x, v) for k, x in m.env.items()},
    )
    if p.cwd is not None and _is_static(p.cwd) and not Path(p.cwd).is_dir():
        raise WorkflowError(f"cwd {p.cwd!r} is not a directory", where=f"{ctx.where}.cwd")
    problem = _program_problem(p)
    if problem:
        raise WorkflowError(problem, where=f"{ctx.where}.argv[0]")
    return p


def _is_static(text: str) -> bool:
    """True when no run-time placeholder (``{workdir}``, ``{prompt}``, ...) is left in it."""
    return expand(text, _PROBE) == text


def _program_problem(p: _Process) -> str | None:
    """Why ``argv[0]`` cannot be started, or ``None`` (also when it is known only at run time:
    a placeholder, or a relative path resolved in the run's work directory)."""
    program = p.argv[0]
    if not _is_static(program) or not program:
        return None
    if "/" not in program:
        path = p.env.get("PATH", os.environ.get("PATH", os.defpath))
        if shutil.which(program, path=path) is None:
            return f"program {program!r} is not found on PATH"
        return None
    file = Path(program)
    if not file.is_absolute():
        if p.cwd is None or not _is_static(p.cwd):
            return None  # relative to the run's work directory
        file = Path(p.cwd) / file
    if not file.is_file():
        return f"program {program!r} does not exist"
    if not os.access(file, os.X_OK):
        return f"program {program!r} is not executable"
    return None


_PROBE = {name: "" for name in ("prompt", "task_id", "capability", "workdir", "run_id", "attempt")}


def _process_runner(
    cls: type[CommandRunner] | type[PersistentCommandRunner],
) -> Callable[[CommandRunnerModel | PersistentRunnerModel, BuildContext], Runner]:
    """The builder of a process runner: the same fields, checked once, for either kind."""

    def build(m: CommandRunnerModel | PersistentRunnerModel, ctx: BuildContext) -> Runner:
        p = _process(m, ctx)
        limits = ProcessLimits(memory_mb=m.memory_limit_mb, cpu_s=m.cpu_limit_s)
        return cls(
            p.argv, cwd=p.cwd, env=p.env, limits=limits, max_output_mb=m.max_output_mb,
            max_log_mb=m.max_log_mb,
        )  # fmt: skip

    return build


def _function(m: FunctionRunnerModel, ctx: BuildContext) -> Runner:
    module_name, _, attr = m.function.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:  # "a..b", "..a"
        raise WorkflowError(
            f"function {m.function!r} cannot be imported: {exc}", where=ctx.where
        ) from exc
    if not callable(obj):
        raise WorkflowError(f"function {m.function!r} is not callable", where=ctx.where)
    return FunctionRunner(obj, name=m.function)


def _llm(m: LlmRunnerModel, ctx: BuildContext) -> Runner:
    try:  # a missing API key or httpx is reported now, before anything runs
        return LlmRunner(LlmConfig(**m.model_dump(exclude={"type"})))
    except WorkflowError as exc:
        raise WorkflowError(str(exc), where=ctx.where) from exc


register("command", CommandRunnerModel, _process_runner(CommandRunner))
register("persistent", PersistentRunnerModel, _process_runner(PersistentCommandRunner))
register("function", FunctionRunnerModel, _function)
register("llm", LlmRunnerModel, _llm)

# The coding runner's model is built on this module's field types, so it is imported last.
from metaagent.agents.coding.config import CodingRunnerModel, build_coding  # noqa: E402

register("coding", CodingRunnerModel, build_coding)
