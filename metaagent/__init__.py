"""metaagent: run many agent tasks in parallel, each on the agent best suited to it."""

from metaagent.agents import AttemptContext, CommandRunner, FunctionRunner, Runner
from metaagent.agents.process import ProcessLimits
from metaagent.clock import Clock, ManualClock, SystemClock
from metaagent.core.decisions import (
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
from metaagent.core.retry import RetryPolicy
from metaagent.core.routing.router import RoutingWeights
from metaagent.core.scheduler.config import SchedulerConfig
from metaagent.core.scheduler.scheduler import Scheduler
from metaagent.core.specs import AgentSpec
from metaagent.core.tasks import AgentTask, Attempt, Outcome, TaskResult, TaskState, VerifySpec
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
from metaagent.report.batch import BatchResult
from metaagent.runtime.config import OrchestratorConfig
from metaagent.runtime.events import Event
from metaagent.runtime.handle import RunHandle
from metaagent.runtime.orchestrator import Orchestrator

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
