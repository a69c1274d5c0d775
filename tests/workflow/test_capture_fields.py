"""The command runners' capture limits come from the workflow file, with the runners' defaults."""

from __future__ import annotations

import pytest

from metaagent import CommandRunner, WorkflowError
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.agents.process import DEFAULT_MAX_LOG_MB, DEFAULT_MAX_OUTPUT_MB
from metaagent.workflow.build import parse_workflow


def _wf(runner: dict[str, object]) -> dict[str, object]:
    return {
        "name": "caps",
        "agents": [{"name": "a", "capabilities": {"code": 0.9}, "runner": runner}],
        "tasks": [{"id": "t", "capability": "code"}],
    }


KINDS = [("command", CommandRunner), ("persistent", PersistentCommandRunner)]


@pytest.mark.parametrize(("kind", "cls"), KINDS)
def test_capture_limits_are_read_and_default_to_the_runners(kind: str, cls: type) -> None:
    caps = {"max_output_mb": 2, "max_log_mb": 0.5}
    given = parse_workflow(_wf({"type": kind, "argv": ["true"], **caps}))
    runner = given.agents[0].runner
    assert isinstance(runner, cls)
    assert (runner.max_output_mb, runner.max_log_mb) == (2, 0.5)  # type: ignore[attr-defined]
    plain = parse_workflow(_wf({"type": kind, "argv": ["true"]})).agents[0].runner
    assert (plain.max_output_mb, plain.max_log_mb) == (DEFAULT_MAX_OUTPUT_MB, DEFAULT_MAX_LOG_MB)  # type: ignore[attr-defined]


def test_a_capture_limit_out_of_range_names_the_field() -> None:
    with pytest.raises(WorkflowError, match="max_output_mb"):
        parse_workflow(_wf({"type": "command", "argv": ["true"], "max_output_mb": 0}))
