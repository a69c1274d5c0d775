"""The public names: frozen here, each exists, is importable, and is listed once.

``PUBLIC_NAMES`` is today's ``metaagent.__all__``, written out (as trio's ``test_exports`` does):
adding or dropping a public name is a deliberate edit of this list, not a side effect.
"""

from __future__ import annotations

import importlib
import inspect
from collections import Counter

import metaagent

PUBLIC_NAMES = [
    "AgentCrash",
    "AgentFailure",
    "AgentSpec",
    "AgentTask",
    "Attempt",
    "AttemptContext",
    "BatchResult",
    "CancelTask",
    "Candidate",
    "CapacityError",
    "Clock",
    "CommandRunner",
    "CycleError",
    "Decision",
    "Event",
    "FailTask",
    "FunctionRunner",
    "ManualClock",
    "MetaAgentError",
    "OptimizeWorkflow",
    "Orchestrator",
    "OrchestratorConfig",
    "Outcome",
    "ProcessLimits",
    "RetryPolicy",
    "RetryTask",
    "RouteTask",
    "RoutingWeights",
    "RunFailed",
    "RunHandle",
    "Runner",
    "ScaleResources",
    "Scheduler",
    "SchedulerConfig",
    "SkipTask",
    "SpawnAgent",
    "SystemClock",
    "TaskResult",
    "TaskState",
    "TaskTimeout",
    "TerminateAgent",
    "UnknownCapabilityError",
    "VerificationFailed",
    "VerifySpec",
    "WorkflowError",
    "__version__",
]


def test_the_public_names_are_exactly_the_frozen_list() -> None:
    added = sorted(set(metaagent.__all__) - set(PUBLIC_NAMES))
    dropped = sorted(set(PUBLIC_NAMES) - set(metaagent.__all__))
    assert (added, dropped) == ([], []), "edit PUBLIC_NAMES if this change is meant"
    assert sorted(metaagent.__all__) == PUBLIC_NAMES


def test_the_frozen_list_is_sorted_and_unique() -> None:
    assert sorted(set(PUBLIC_NAMES)) == PUBLIC_NAMES


def test_all_has_no_duplicates() -> None:
    dupes = [name for name, n in Counter(metaagent.__all__).items() if n > 1]
    assert dupes == []


def test_every_exported_name_exists() -> None:
    missing = [name for name in metaagent.__all__ if not hasattr(metaagent, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from metaagent import *", namespace)
    exported = {k for k in namespace if k != "__builtins__"}
    assert exported == set(metaagent.__all__)


def test_exported_objects_come_from_the_package() -> None:
    for name in metaagent.__all__:
        obj = getattr(metaagent, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("metaagent"), (name, obj.__module__)
            # Importable from the module that defines it, under the same name.
            home = importlib.import_module(obj.__module__)
            assert getattr(home, obj.__name__) is obj, name


def test_version_is_a_string() -> None:
    assert isinstance(metaagent.__version__, str)
    assert metaagent.__version__.count(".") >= 1
