"""metaagent: run many agent tasks in parallel, each on the agent best suited to it."""

from metaagent.agents import AttemptContext, CommandRunner, FunctionRunner, Runner
from metaagent.agents.process import ProcessLimits
from metaagent.batch import BatchResult
from metaagent.clock import Clock, ManualClock, SystemClock
from metaagent.decisions import (
    CancelTask,
    Candidate,
    Decision,
    FailTask,
    OptimizeWorkflow,
    RetryTask,
    RouteTask,
    ScaleResources,
    SkipTask,
    SpawnAgent,
    TerminateAgent,
)
from metaagent.errors import (
    AgentCrash,
    AgentFailure,
    CapacityError,
    CycleError,
    MetaAgentError,
    RunFailed,
    TaskTimeout,
    UnknownCapabilityError,
    VerificationFailed,
    WorkflowError,
)
from metaagent.events import Event
from metaagent.model import (
    AgentSpec,
    AgentTask,
    Attempt,
    Outcome,
    TaskResult,
    TaskState,
    VerifySpec,
)
from metaagent.retry import RetryPolicy
from metaagent.routing import RoutingWeights
from metaagent.runtime import Orchestrator, OrchestratorConfig, RunHandle
from metaagent.scheduler import Scheduler, SchedulerConfig

__version__ = "0.1.0"

__all__ = [
    # agents
    "AgentCrash",
    "AgentFailure",
    "AgentSpec",
    # tasks and results
    "AgentTask",
    "Attempt",
    "AttemptContext",
    "BatchResult",
    # decisions
    "CancelTask",
    "Candidate",
    "CapacityError",
    # time
    "Clock",
    "CommandRunner",
    "CycleError",
    "Decision",
    "Event",
    "FailTask",
    "FunctionRunner",
    "ManualClock",
    # errors
    "MetaAgentError",
    "OptimizeWorkflow",
    # runtime
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
    # core
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
