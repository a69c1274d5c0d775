"""The reader's rules, one by one: encodings, budgets at parse time, duplicate keys, limit keys,
NUL bytes, absurd limits, programs and directories, and messages kept short."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

import pytest

from metaagent.catalog import load_catalog
from metaagent.errors import CycleError, UnknownCapabilityError, WorkflowError
from metaagent.sim.loading import load_simulation
from metaagent.workflow.build import load_workflow, parse_workflow_text
from metaagent.workflow.reader import Budget, parse_bytes

if TYPE_CHECKING:
    from pathlib import Path

AGENT = "  - {name: a, capabilities: {code: 0.9}, runner: {type: command, argv: [echo]}}\n"
TASK = "  - {id: t, capability: code}\n"


def text(tasks: str = TASK, agents: str = AGENT, head: str = "") -> str:
    return f"name: w\n{head}agents:\n{agents}tasks:\n{tasks}"


def write(tmp_path: Path, data: str | bytes, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def refused(data: str | bytes, match: str) -> WorkflowError:
    with pytest.raises(WorkflowError, match=match) as info:
        parse_workflow_text(data, source="wf.yaml")
    assert info.value.where
    assert str(info.value).startswith("wf.yaml")
    return info.value


# --- bytes ------------------------------------------------------------------------------------


def test_a_byte_that_is_not_utf8_is_named_by_line_and_column(tmp_path: Path) -> None:
    data = text().encode().replace(b"id: t", b"id: \xfft")
    with pytest.raises(WorkflowError, match=r"wf\.yaml:5:10: not valid UTF-8: byte 0xff"):
        load_workflow(write(tmp_path, data))


def test_utf8_with_a_bom_and_utf16_32_with_theirs_are_decoded(tmp_path: Path) -> None:
    for data in (b"\xef\xbb\xbf" + text().encode(), text().encode("utf-16"),
                 text().encode("utf-32")):  # fmt: skip
        assert load_workflow(write(tmp_path, data)).name == "w"


def test_utf16_without_a_bom_is_refused_clearly() -> None:
    refused(text().encode("utf-16-le"), r"wf\.yaml:1:2: holds a NUL character .*UTF-16")


def test_a_control_character_and_a_file_too_large_are_refused(tmp_path: Path) -> None:
    refused(text().replace("id: t", "id: \x07t"), r"wf\.yaml:5:10: invalid YAML: .*control")
    with pytest.raises(WorkflowError, match="larger than 100 bytes"):
        parse_bytes(text(), "wf.yaml", budget=Budget(max_bytes=100))
    with pytest.raises(WorkflowError, match="not a regular file"):
        load_workflow(tmp_path)
    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would wait for a writer forever
    with pytest.raises(WorkflowError, match="not a regular file"):
        load_workflow(tmp_path / "fifo.yaml")


# --- budgets, at parse time -------------------------------------------------------------------


@pytest.mark.timeout(30)  # refused at parse time: a parser that recursed or expanded would not end
def test_deep_nesting_is_refused_at_parse_time() -> None:
    refused(text(TASK.replace("}", ", input: " + "[" * 10_000 + "]" * 10_000 + "}")),
            r"wf\.yaml:5:\d+: invalid YAML: nested deeper than 64 levels")  # fmt: skip
    refused("- " * 10_000 + "x\n", r"wf\.yaml:1:129: invalid YAML: nested deeper than 64 levels")


def billion_laughs() -> str:
    lines = ['    a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, 10):
        lines.append(f"    a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    return "  - id: t\n    capability: code\n    input:\n  " + "\n  ".join(lines) + "\n"


@pytest.mark.timeout(30)  # expanding it (10**9 values) would not end: the budget refuses it first
def test_a_billion_laughs_in_a_tasks_input_is_refused_before_it_expands() -> None:
    message = r"wf\.yaml:\d+:\d+: invalid YAML: more than 1,000,000 values \(aliases counted"
    refused(text(billion_laughs()), message)


def test_a_few_aliases_are_fine_and_an_alias_to_itself_is_not() -> None:
    wf = parse_workflow_text(text(TASK.replace("code", "*c"), AGENT.replace("{code", "{&c code")))
    assert wf.tasks[0].capability == "code"
    refused(text(TASK.replace("}", ", input: &r [1, *r]}")), r"alias \*r refers to a node")


# --- keys -------------------------------------------------------------------------------------


def test_a_key_given_twice_is_refused_with_its_line() -> None:
    err = refused(text() + "tasks:\n" + TASK, r"wf\.yaml:6:1: invalid YAML: duplicate key 'tasks'")
    assert "in one mapping" in str(err)
    refused(text(TASK.replace("}", ", id: u}")), r"wf\.yaml:5:\d+: .*duplicate key 'id'")


def test_a_merge_key_may_be_overridden() -> None:
    tasks = "  - &base {id: t, capability: code, priority: 1}\n  - {<<: *base, id: u}\n"
    assert [t.id for t in parse_workflow_text(text(tasks)).tasks] == ["t", "u"]


def test_typos_in_limit_keys_list_the_known_names() -> None:
    head = "settings:\n  capability_limits: {cdoe: 2}\n"
    err = refused(text(head=head), r"settings\.capability_limits: unknown key 'cdoe'")
    assert "known capabilities: code" in str(err)
    head = "settings:\n  resource_limits: {gpus: 1, rep: 1}\n"
    tasks = "  - {id: t, capability: code, resources: [gpu]}\n"
    message = r"resource_limits: unknown keys 'gpus', 'rep'; known resources held by tasks: gpu"
    refused(text(tasks, head=head), r"settings\." + message)
    head = "settings:\n  capability_limits: {code: 2}\n  resource_limits: {gpu: 1}\n"
    assert parse_workflow_text(text(tasks, head=head)).settings.resource_limits == {"gpu": 1}


# --- what reaches a process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "agents", "where"),
    [
        ('  - {id: t, capability: code, prompt: "a\\0b"}\n', AGENT, r"\(id 't'\)\.prompt"),
        (TASK, AGENT.replace("[echo]", '[echo, "x\\0"]'), r"\(name 'a'\)\.runner\.argv\[1\]"),
        (TASK, AGENT.replace("argv:", 'env: {K: "\\0"}, argv:'), r"\.runner\.env\.K"),
        ('  - {id: t, capability: code, verify: {argv: ["\\0"]}}\n', AGENT, r"\.verify\.argv\[0\]"),
    ],
)  # fmt: skip
def test_a_nul_byte_that_would_reach_a_process_is_refused(
    tasks: str, agents: str, where: str
) -> None:
    refused(text(tasks, agents), where + ": Value error, holds a NUL character")


def test_an_environment_name_with_an_equals_sign_is_refused() -> None:
    refused(text(agents=AGENT.replace("argv:", "env: {'A=B': x}, argv:")), r"env\.A=B.*'='")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("memory_limit_mb", "10000000000", "more than this machine's memory"),
        ("memory_limit_mb", "8", "greater than or equal to 16"),
        ("cpu_limit_s", "0", "greater than or equal to 1"),
        ("cpu_limit_s", "40000000", "less than or equal to 31536000"),
    ],
)
def test_absurd_process_limits_are_refused_by_field(field: str, value: str, message: str) -> None:
    agents = AGENT.replace("argv:", f"{field}: {value}, argv:")
    refused(text(agents=agents), rf"agents\[0\] \(name 'a'\)\.runner\.{field}: .*{message}")


@pytest.mark.parametrize("value", ["0", "-1", "40000000", ".inf", ".nan"])
def test_a_timeout_must_be_above_0_and_within_a_year(value: str) -> None:
    refused(text(f"  - {{id: t, capability: code, timeout_s: {value}}}\n"),
            r"tasks\[0\] \(id 't'\)\.timeout_s: Input should be")  # fmt: skip
    refused(text(head=f"settings:\n  default_timeout_s: {value}\n"),
            r"settings\.default_timeout_s: Input should be")  # fmt: skip


def test_a_missing_program_or_directory_is_named_by_its_agent(tmp_path: Path) -> None:
    agent = "  - {name: a, capabilities: {code: 0.9}, runner: {type: command, %s}}\n"
    message = r"runner\.argv\[0\]: program 'no-such-program-xyz' is not found on PATH"
    refused(
        text(agents=agent % "argv: [no-such-program-xyz]"), r"agents\[0\] \(name 'a'\)\." + message
    )
    refused(text(agents=agent % f"argv: [{tmp_path}/nope]"), "does not exist")
    (tmp_path / "plain").write_text("")
    refused(text(agents=agent % f"argv: [{tmp_path}/plain]"), "is not executable")
    refused(text(agents=agent % f"argv: [echo], cwd: {tmp_path}/gone"),
            r"agents\[0\] \(name 'a'\)\.runner\.cwd: cwd '.*gone' is not a directory")  # fmt: skip
    refused(text(agents=agent % "argv: [echo], env: {PATH: /nonexistent}"), "not found on PATH")


def test_programs_known_only_at_run_time_are_not_checked(tmp_path: Path) -> None:
    agent = "  - {name: a, capabilities: {code: 0.9}, runner: {type: %s, %s}}\n"
    for kind, fields in (
        ("command", "argv: ['{prompt}']"),
        ("command", "argv: [./tool.sh]"),  # in the run's work directory
        ("command", "argv: [./tool.sh], cwd: '{workdir}/sub'"),
        ("persistent", "argv: ['{python}', '{workflow_dir}/agent.py']"),
        ("command", f"argv: [{sys.executable}], cwd: {tmp_path}"),
    ):
        wf = parse_workflow_text(text(agents=agent % (kind, fields)), base_dir=tmp_path)
        assert wf.agents[0].name == "a"


# --- short messages ---------------------------------------------------------------------------


def test_long_error_lists_are_cut_after_20() -> None:
    tasks = "".join(f"  - {{id: t{i}, capability: code, complexity: 2}}\n" for i in range(50))
    err = refused(text(tasks), r"tasks\[19\] \(id 't19'\)\.complexity: .*; \.\.\. and 30 more$")
    assert "t20" not in str(err)
    many = "".join(
        AGENT.replace("name: a", f"name: a{i}").replace("code", f"c{i}") for i in range(40)
    )
    with pytest.raises(
        UnknownCapabilityError, match=r"known capabilities: c0, c1, .*\.\.\. and 20 more"
    ):
        parse_workflow_text(text(agents=many))


def test_a_long_cycle_names_20_tasks_and_counts_the_rest() -> None:
    n = 20_000
    tasks = "".join(
        f"  - {{id: t{i}, capability: code, depends_on: [t{(i + 1) % n}]}}\n" for i in range(n)
    )
    with pytest.raises(CycleError) as info:
        parse_workflow_text(text(tasks), source="wf.yaml")
    message = str(info.value)
    assert len(info.value.cycle) == n + 1
    assert message.endswith(f" -> ... ({n} tasks)")
    assert message.count(" -> ") == 20
    assert len(message) < 400


# --- one reader for every file ----------------------------------------------------------------


def test_json_takes_the_same_path(tmp_path: Path) -> None:
    agent = {
        "name": "a",
        "capabilities": {"code": 0.9},
        "runner": {"type": "command", "argv": ["echo"]},
    }
    task = {"id": "t", "capability": "code", "timeout_s": 1e5, "input": [1e-7]}
    raw = {"name": "w", "agents": [agent], "tasks": [task]}
    data = json.dumps(raw, indent="\t").replace("100000.0", "1e5")  # a float in JSON
    wf = load_workflow(write(tmp_path, data, "wf.json"))
    assert (wf.tasks[0].timeout_s, wf.tasks[0].input) == (100000.0, [1e-7])
    dup = json.dumps(raw)[:-1] + ', "name": "again"}'
    with pytest.raises(WorkflowError, match=r"wf\.json:1:\d+: invalid JSON: duplicate key 'name'"):
        load_workflow(write(tmp_path, dup, "wf.json"))


def test_simulation_and_catalog_files_take_the_same_path(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"sim\.yaml:1:7: not valid UTF-8"):
        load_simulation(write(tmp_path, b"name: \xff\n", "sim.yaml"))
    with pytest.raises(WorkflowError, match=r"sim\.yaml:2:1: invalid YAML: duplicate key 'name'"):
        load_simulation(write(tmp_path, "name: a\nname: b\n", "sim.yaml"))
    with pytest.raises(WorkflowError, match=r"cat\.yaml:1:\d+: invalid YAML: nested deeper"):
        load_catalog(write(tmp_path, "roles: " + "[" * 100 + "]" * 100, "cat.yaml"))
    with pytest.raises(WorkflowError, match=r"cat\.yaml: roles\[0\]\.capabilities: Field required"):
        load_catalog(write(tmp_path, "roles: [{role: r}]\n", "cat.yaml"))
    with pytest.raises(WorkflowError, match=r"a\\0b: cannot read catalog: embedded null byte"):
        parse_workflow_text(text(head='catalog: "a\\0b"\n'), base_dir=tmp_path)
