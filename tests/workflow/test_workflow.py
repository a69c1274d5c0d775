"""Workflow files: the contract example, catalog roles, errors naming file, task and field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from contract import CONTRACT  # tests/ is on the path (rootdir conftest)

from metaagent import CommandRunner, CycleError, UnknownCapabilityError, WorkflowError
from metaagent.agents.persistent import PersistentCommandRunner
from metaagent.catalog import load_catalog
from metaagent.workflow.build import load_workflow, parse_workflow

if TYPE_CHECKING:
    from pathlib import Path


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_contract_example_loads_as_written(tmp_path: Path) -> None:
    wf = load_workflow(write(tmp_path, CONTRACT))
    assert wf.name == "contract-example"
    assert [a.name for a in wf.agents] == ["fast-coder", "careful-tester"]
    assert wf.agents[0].capabilities == {"python": 0.9, "testing": 0.4}
    assert wf.agents[0].concurrency == 2
    assert isinstance(wf.agents[0].runner, CommandRunner)
    assert [t.id for t in wf.tasks] == ["api", "db", "tests"]
    assert wf.tasks[2].depends_on == ("api", "db")
    assert wf.tasks[2].prompt == "0.3"


def base(tasks: str, agents: str = "") -> str:
    return (
        "name: w\nagents:\n"
        + (
            agents
            or "  - {name: a, capabilities: {code: 0.9}, runner: {type: command, argv: [echo]}}\n"
        )
        + "tasks:\n"
        + tasks
    )


@pytest.mark.parametrize(
    ("tasks", "error", "where"),
    [
        ("  - {id: a, capability: code, depends_on: [b]}\n", WorkflowError,
         "tasks[0] (id 'a').depends_on: depends_on names unknown task 'b'"),
        ("  - {id: a, capability: code}\n  - {id: a, capability: code}\n", WorkflowError,
         "tasks[1] (id 'a'): duplicate task id 'a'"),
        ("  - {id: a, capability: code, timeout_s: -1}\n", WorkflowError,
         "tasks[0] (id 'a').timeout_s: Input should be greater than 0"),
        ("  - {id: a, capability: code, colour: red}\n", WorkflowError,
         "tasks[0] (id 'a').colour: Extra inputs are not permitted"),
        ("  - {id: a, capability: code, complexity: 2}\n", WorkflowError,
         "tasks[0] (id 'a').complexity: Input should be less than or equal to 1"),
        ("  - {id: a, capability: cooking}\n", UnknownCapabilityError,
         "tasks[0] (id 'a').capability: unknown capability 'cooking'; known capabilities: code"),
    ],
)  # fmt: skip
def test_bad_tasks_are_named_by_file_task_and_field(
    tmp_path: Path, tasks: str, error: type[Exception], where: str
) -> None:
    path = write(tmp_path, base(tasks))
    with pytest.raises(error) as info:
        load_workflow(path)
    assert str(info.value).startswith(str(path))
    assert where in str(info.value)


def test_a_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    tasks = (
        "  - {id: a, capability: code, depends_on: [c]}\n"
        "  - {id: b, capability: code, depends_on: [a]}\n"
        "  - {id: c, capability: code, depends_on: [b]}\n"
    )
    with pytest.raises(CycleError) as info:
        load_workflow(write(tmp_path, base(tasks)))
    assert info.value.cycle == ("a", "b", "c", "a")
    assert "dependency cycle: a -> b -> c -> a" in str(info.value)


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: w\nagents: [\n  {name: a\n")
    with pytest.raises(WorkflowError, match=r"wf\.yaml:\d+:\d+: invalid YAML"):
        load_workflow(path)


def test_missing_file_and_wrong_top_level(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="cannot read workflow"):
        load_workflow(tmp_path / "nope.yaml")
    with pytest.raises(WorkflowError, match="top level must be a mapping"):
        load_workflow(write(tmp_path, "- just\n- a list\n"))


def test_bad_agent_fields_are_named(tmp_path: Path) -> None:
    agents = "  - {name: a, capabilities: {code: 1.5}, runner: {type: command, argv: [echo]}}\n"
    with pytest.raises(WorkflowError, match=r"agents\[0\] \(name 'a'\)\.capabilities\.code"):
        load_workflow(write(tmp_path, base("  - {id: t, capability: code}\n", agents)))
    agents = "  - {name: a, capabilities: {code: 0.5}, runner: {type: shell, argv: [echo]}}\n"
    with pytest.raises(WorkflowError, match=r"agents\[0\] \(name 'a'\)\.runner"):
        load_workflow(write(tmp_path, base("  - {id: t, capability: code}\n", agents)))
    agents = (
        "  - {name: a, capabilities: {code: 0.5}, runner: {type: command, argv: [echo]}}\n"
        "  - {name: a, capabilities: {code: 0.5}, runner: {type: command, argv: [echo]}}\n"
    )
    with pytest.raises(WorkflowError, match="duplicate agent name 'a'"):
        load_workflow(write(tmp_path, base("  - {id: t, capability: code}\n", agents)))


def test_a_runner_binds_to_a_catalog_role(tmp_path: Path) -> None:
    agents = "  - {name: auditor, role: security_auditor, runner: {type: command, argv: [echo]}}\n"
    catalog = load_catalog()
    role = catalog.get("security_auditor")
    cap = next(iter(role.capabilities))
    wf = load_workflow(write(tmp_path, base(f"  - {{id: t, capability: {cap}}}\n", agents)))
    assert wf.agents[0].capabilities == role.capabilities
    assert wf.agents[0].concurrency == role.concurrency
    assert wf.agents[0].role == "security_auditor"
    agents = "  - {name: x, role: wizard, runner: {type: command, argv: [echo]}}\n"
    with pytest.raises(WorkflowError, match=r"unknown role 'wizard'.*known roles: api_integrator"):
        load_workflow(write(tmp_path, base("  - {id: t, capability: code}\n", agents)))


def test_the_default_catalog_has_the_22_roles() -> None:
    roles = load_catalog().roles
    assert sorted(roles) == sorted([
        "python_backend_coder", "typescript_frontend_agent", "api_integrator", "database_designer",
        "security_auditor", "test_generator", "code_reviewer", "quality_assurance",
        "integration_tester", "documentation_writer", "technical_writer", "devops_engineer",
        "deployment_coordinator", "monitoring_agent", "configuration_manager",
        "performance_optimizer", "refactoring_specialist", "error_handler", "ui_ux_designer",
        "system_architect", "data_analyst", "strategic_planner",
    ])  # fmt: skip
    for role in roles.values():
        assert 2 <= len(role.capabilities) <= 5
        assert all(0.0 <= p <= 1.0 for p in role.capabilities.values())


def test_load_time_placeholders_and_pool_fields(tmp_path: Path) -> None:
    text = base(
        "  - {id: t, capability: code}\n",
        "  - name: p\n"
        "    capabilities: {code: 0.8}\n"
        "    min_instances: 0\n"
        "    max_instances: 4\n"
        "    rate_per_min: 30\n"
        "    runner: {type: persistent, argv: ['{python}', '{workflow_dir}/agent.py', '{workdir}']}\n",
    )
    wf = load_workflow(write(tmp_path, text))
    spec = wf.agents[0]
    assert isinstance(spec.runner, PersistentCommandRunner)
    import sys

    assert spec.runner.argv == (sys.executable, f"{tmp_path.resolve()}/agent.py", "{workdir}")
    assert (spec.min_instances, spec.max_instances, spec.rate_per_min) == (0, 4, 30)
    bad = text.replace("min_instances: 0", "min_instances: 5")
    with pytest.raises(WorkflowError, match="max_instances"):
        load_workflow(write(tmp_path, bad))


def test_templates_and_decompose_are_checked(tmp_path: Path) -> None:
    text = (
        "name: w\ntemplates:\n  feat:\n    - {id: a, capability: code}\n"
        "    - {id: b, capability: code, depends_on: [a]}\n"
        "agents:\n  - {name: x, capabilities: {code: 0.9}, runner: {type: command, argv: [echo]}}\n"
        "tasks:\n  - {id: f, capability: feature, decompose: {template: feat}}\n"
    )
    wf = load_workflow(write(tmp_path, text))
    dec = wf.tasks[0].decompose
    assert dec is not None
    assert [t.id for t in dec.template] == ["a", "b"]
    with pytest.raises(WorkflowError, match="unknown template 'nope'; templates: feat"):
        load_workflow(write(tmp_path, text.replace("{template: feat}", "{template: nope}")))
    with pytest.raises(WorkflowError, match="exactly one of"):
        load_workflow(
            write(tmp_path, text.replace("{template: feat}", "{template: feat, planner: true}"))
        )
    cyclic = text.replace(
        "depends_on: [a]}", "depends_on: [a]}\n    - {id: c, capability: code, depends_on: [c]}"
    )
    with pytest.raises(CycleError, match=r"templates\.feat"):
        load_workflow(write(tmp_path, cyclic))


def test_parse_workflow_accepts_data_already_parsed() -> None:
    raw = {
        "name": "w",
        "agents": [
            {
                "name": "a",
                "capabilities": {"code": 1.0},
                "runner": {"type": "command", "argv": ["echo"]},
            }
        ],
        "tasks": [
            {
                "id": "t",
                "capability": "code",
                "verify": {"argv": ["true"]},
                "group": "g",
                "key": "k",
            }
        ],
    }
    wf = parse_workflow(raw)
    assert wf.tasks[0].verify is not None
    assert wf.tasks[0].verify.argv == ("true",)
    assert (wf.tasks[0].group, wf.tasks[0].key) == ("g", "k")


def test_pool_settings_are_read_and_checked_by_name(tmp_path: Path) -> None:
    settings = (
        "settings:\n"
        "  spawn_threshold: 3\n"
        "  target_utilisation: 0.8\n"
        "  scale_up_window_s: 2\n"
        "  utilisation_window_s: 30\n"
    )
    wf = load_workflow(write(tmp_path, settings + base("  - {id: t, capability: code}\n")))
    s = wf.settings
    assert (s.target_utilisation, s.scale_up_window_s, s.utilisation_window_s) == (0.8, 2, 30)
    for field, value, message in (
        ("target_utilisation", "1.5", "less than or equal to 1"),
        ("target_utilisation", "-0.1", "greater than or equal to 0"),
        ("scale_up_window_s", "-1", "greater than or equal to 0"),
        ("utilisation_window_s", "-1", "greater than or equal to 0"),
    ):
        bad = f"settings:\n  {field}: {value}\n" + base("  - {id: t, capability: code}\n")
        with pytest.raises(WorkflowError, match=rf"settings\.{field}: Input should be {message}"):
            load_workflow(write(tmp_path, bad))
