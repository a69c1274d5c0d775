"""The prompts: ``plan_workflow(goal)`` (write a valid workflow from the catalog's roles and the
rules ``metaagent validate`` checks) and ``triage_run(run_id)`` (what failed and what next)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from metaagent.catalog import load_catalog
from metaagent.mcp.api import ApiError
from metaagent.mcp.views import run_summary

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from metaagent.mcp.api import Api

__all__ = ["PROMPT_NAMES", "plan_text", "register_prompts"]

PROMPT_NAMES = ("plan_workflow", "triage_run")

_EXAMPLE = """\
name: add-login
agents:
  - name: backend
    role: python_backend_coder          # a catalog role: its capabilities and concurrency
    runner: {type: command, argv: ["my-agent", "--task", "{prompt}"]}
  - name: tester
    capabilities: {testing: 0.9}        # or capabilities of its own (proficiency 0..1)
    runner: {type: command, argv: ["my-tester", "{prompt}"]}
tasks:
  - {id: api, capability: backend, prompt: "Add POST /login"}
  - {id: tests, capability: testing, prompt: "Test /login", depends_on: [api]}
"""

_RULES = """\
The rules every workflow must pass (what `metaagent validate` checks; submit_run checks the
same and answers with the message naming what and where):
- top level: `name`, `agents` (a list), `tasks` (a list); optional `settings`;
- every agent: a unique `name`, a `runner` (type `command` with `argv`, `{prompt}`,
  `{task_id}` filled in; `persistent`; `function`; `llm`), and `capabilities` or a catalog
  `role` (its fields are used where the entry leaves them out);
- every task: a unique `id` and a `capability` that some agent offers (an unknown one is
  refused with the list of the known ones); optional `prompt` (what the agent is asked),
  `depends_on` (ids of tasks in the same workflow), `priority`, `max_attempts`, `timeout_s`,
  `resources` (held exclusively), `verify: {argv: [...]}` (a check that must exit 0);
- the dependencies form no cycle; `settings.min_instances` stays within `max_agents`."""


def plan_text(goal: str) -> str:
    """The ``plan_workflow`` prompt's text for ``goal``."""
    catalog = load_catalog()
    roles = "\n".join(
        f"- {r.role} (concurrency {r.concurrency}): "
        + ", ".join(f"{c} {p:.2f}" for c, p in sorted(r.capabilities.items(), key=lambda x: -x[1]))
        + (f". {r.description}" if r.description else "")
        for r in catalog.roles.values()
    )
    return (
        f"Plan a metaagent workflow for this goal:\n\n{goal}\n\n"
        "Split it into tasks that can run in parallel where they do not depend on each other; "
        "give each task the one capability it needs, and each agent a runner that really "
        "does the work (a command on this machine). Use the roles of the catalog below "
        "where they fit.\n\n"
        f"Catalog roles ({len(catalog.roles)}): role (slots): capability proficiency\n{roles}\n\n"
        f"{_RULES}\n\nA workflow looks like this:\n\n```yaml\n{_EXAMPLE}```\n\n"
        "Then submit it with the submit_run tool (workflow_yaml), fix whatever it refuses, "
        "and follow the run with wait_run."
    )


def register_prompts(server: MCPServer[Any], api: Api) -> None:
    """Add the prompts of ``PROMPT_NAMES`` to ``server``."""

    @server.prompt()
    def plan_workflow(goal: str) -> str:
        """Write a valid metaagent workflow for a goal, from the agent catalog's roles and
        capabilities and the rules `metaagent validate` checks."""
        return plan_text(goal)

    @server.prompt()
    async def triage_run(run_id: str) -> str:
        """Find out why a run failed (or is stuck) and what to do next."""
        try:
            report = await api.call("GET", f"/v1/runs/{run_id}")
        except ApiError as exc:
            return (
                f"metaagent could not read run {run_id!r}: {exc.detail}. "
                "Use the list_runs tool to find the run meant, then triage it."
            )
        summary = json.dumps(run_summary(report), indent=1)
        return (
            f"Triage metaagent run {run_id}. Its summary now:\n\n```json\n{summary}\n```\n\n"
            "For each failed task: read it with get_task (its error, log tail and attempts) and "
            "explain_task (which agents it went to, and why). Skipped tasks name the failed "
            "task upstream; fix that one. Say for each failure whether it is the task's own "
            "error (fix the prompt, the workflow or the code, then submit_run again) or the "
            "agent's (crash, lost, timeout: retry_run re-runs what failed and keeps what "
            "succeeded). A run in state running is not finished: wait_run first; interrupted "
            "means nobody executes it now."
        )
