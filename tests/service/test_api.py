"""The REST API of ``metaagent serve`` against a real server on 127.0.0.1: auth, submit (YAML,
JSON, idempotency, 422 / 429 / 413), the run list and its filters, reports, tasks, explain,
cancel, retry, agents, metrics and the schema."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from server_helpers import (
    HERE,
    READ_TOKEN,
    Server,
    running_server,
    start_server,
    wait_for_state,
    workflow,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(120)

ROUTES: list[tuple[str, str]] = [
    ("GET", "/v1/runs"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs/r"),
    ("GET", "/v1/runs/r/tasks/t"),
    ("GET", "/v1/runs/r/tasks/t/explain"),
    ("POST", "/v1/runs/r/cancel"),
    ("POST", "/v1/runs/r/retry"),
    ("GET", "/v1/agents"),
    ("GET", "/v1/runs/r/events"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("api"), args=["--max-body-mb", "1"]) as s:
        yield s


def submit(server: Server, doc: dict[str, Any], **extra: Any) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": doc, **extra})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body


def test_healthz_is_open_and_every_route_needs_the_token(server: Server) -> None:
    with server.client(token=None) as anon, server.client(token="wrong") as wrong:
        assert anon.get("/healthz").json()["ok"] is True
        for method, path in ROUTES:
            for c in (anon, wrong):
                r = c.request(method, path)
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"


def test_a_read_only_token_reads_but_may_not_change_anything(server: Server) -> None:
    with server.client(token=READ_TOKEN) as ro:
        assert ro.get("/v1/runs").status_code == 200
        assert ro.get("/v1/agents").status_code == 200
        for path in ("/v1/runs", "/v1/runs/r/cancel", "/v1/runs/r/retry"):
            r = ro.post(path, json={"workflow": workflow()})
            assert r.status_code == 403, path
            assert "only read" in r.json()["detail"]


def test_submit_yaml_then_the_report_has_the_fields_of_run_json(
    server: Server, tmp_path: Path
) -> None:
    doc = workflow(3, chain=True, name="yaml-run")
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": yaml.safe_dump(doc), "labels": {"team": "a"}})
        assert r.status_code == 201
        made = r.json()
        assert made["state"] == "running"
        assert made["tasks"] == 3
        report = wait_for_state(c, made["run_id"], ["succeeded"])
    # The same workflow through the CLI: the report keys are the contract.
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    cli = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "run", str(wf), "--json", "-", "--no-journal",
         "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert set(expected) <= set(report)
    assert report["state"] == "succeeded"
    assert report["labels"] == {"team": "a"}
    assert [t["id"] for t in report["tasks"]] == ["t0", "t1", "t2"]
    assert set(expected["tasks"][0]) <= set(report["tasks"][0])
    assert report["tasks"][2]["depends_on"] == ["t1"]
    assert {t["output"] for t in report["tasks"]} == {"t0", "t1", "t2"}, report["tasks"]


def test_submit_the_document_at_the_top_level(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/runs", json={**workflow(2, name="top"), "priority": 3})
        assert r.status_code == 201, r.text
        report = wait_for_state(c, r.json()["run_id"], ["succeeded"])
    assert report["name"] == "top"
    assert report["priority"] == 3


def test_the_same_idempotency_key_returns_the_first_run(server: Server) -> None:
    first = submit(server, workflow(1), idempotency_key="key-1")
    with server.client() as c:
        again = c.post("/v1/runs", json={"workflow": workflow(5), "idempotency_key": "key-1"})
        assert again.status_code == 200
        assert again.json()["run_id"] == first["run_id"]
        assert again.json()["tasks"] == 1


def test_a_bad_workflow_gets_422_with_the_message_the_cli_prints(
    server: Server, tmp_path: Path
) -> None:
    doc = workflow(2)
    doc["tasks"][0]["depends_on"] = ["t1"]
    doc["tasks"][1]["depends_on"] = ["t0"]
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": doc})
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert "dependency cycle" in detail
        bad_yaml = c.post("/v1/runs", json={"workflow": "name: x\ntasks: [\n"})
        assert bad_yaml.status_code == 422
        assert bad_yaml.json()["detail"].startswith("<request>:3:")
        garbage = c.post(
            "/v1/runs", content=b"\xff\xfe not json", headers={"content-type": "application/json"}
        )
        assert garbage.status_code == 422
        headers = {"content-type": "application/json"}
        assert garbage.json()["detail"].startswith("<request>")
        dup = c.post("/v1/runs", content=b'{"name": "a", "name": "b"}', headers=headers)
        assert dup.status_code == 422
        assert "duplicate key 'name'" in dup.json()["detail"]
        deep = c.post("/v1/runs", content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
        assert deep.status_code == 422
        assert "nested too deeply" in deep.json()["detail"]
        for bad in ({"workflow": doc, "priority": "high"}, {"workflow": doc, "labels": [1]},
                    {"workflow": None}, {"workflow": doc, "idempotency_key": ""}, [1]):  # fmt: skip
            r = c.post("/v1/runs", json=bad)
            assert r.status_code == 422, bad
    wf = tmp_path / "cycle.json"
    wf.write_text(json.dumps(doc))
    cli = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "validate", str(wf)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "1000", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])},  # noqa: E501
    )  # fmt: skip
    assert cli.returncode == 2
    # The CLI names its file where the service names the request; the message is the same.
    cli_message = " ".join(cli.stderr.split()).split("dependency cycle", 1)[1]
    assert cli_message.strip() in " ".join(detail.split())


def test_a_full_queue_gets_429_with_retry_after(tmp_path: Path) -> None:
    with running_server(tmp_path, args=["--max-queued", "5"]) as s, s.client() as c:
        r = c.post("/v1/runs", json={"workflow": workflow(6)})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
        assert "queue full" in r.json()["detail"]
        assert c.post("/v1/runs", json={"workflow": workflow(5)}).status_code == 201


def test_an_oversized_body_gets_413(server: Server) -> None:
    big = workflow(1)
    big["description"] = "x" * (2 * 1024 * 1024)
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": big})
        assert r.status_code == 413
        # Streamed without a length: cut off all the same.
        chunks = (b"x" * 65536 for _ in range(40))
        r = c.post("/v1/runs", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_the_run_list_filters_and_pages(server: Server) -> None:
    a = submit(server, workflow(1, name="la"), labels={"team": "red", "tier": "1"})
    b = submit(server, workflow(1, name="lb", agent="failing"), labels={"team": "red"})
    with server.client() as c:
        wait_for_state(c, a["run_id"], ["succeeded"])
        wait_for_state(c, b["run_id"], ["failed"])
        red = c.get("/v1/runs", params={"label": "team:red"}).json()["runs"]
        assert {r["run_id"] for r in red} == {a["run_id"], b["run_id"]}
        both = c.get("/v1/runs", params=[("label", "team:red"), ("label", "tier:1")]).json()
        assert [r["run_id"] for r in both["runs"]] == [a["run_id"]]
        failed = c.get("/v1/runs", params={"state": "failed", "label": "team:red"}).json()
        assert [r["run_id"] for r in failed["runs"]] == [b["run_id"]]
        everything = c.get("/v1/runs", params={"limit": 500}).json()["runs"]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/runs", params=params).json()
            seen += [r["run_id"] for r in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [r["run_id"] for r in everything]
        newest = everything[0]["created_at"]
        assert c.get("/v1/runs", params={"since": newest + 1}).json()["runs"] == []
        until = c.get("/v1/runs", params={"until": "2000-01-01T00:00:00+00:00"}).json()
        assert until["runs"] == []
        for bad in ({"cursor": "nonsense"}, {"since": "yesterday"}, {"label": "nocolon"},
                    {"state": "weird"}, {"limit": 0}):  # fmt: skip
            assert c.get("/v1/runs", params=bad).status_code == 422, bad


def test_task_detail_and_explain(server: Server, tmp_path: Path) -> None:
    made = submit(server, workflow(2, chain=True))
    rid = made["run_id"]
    with server.client() as c:
        wait_for_state(c, rid, ["succeeded"])
        task = c.get(f"/v1/runs/{rid}/tasks/t1").json()
        assert task["state"] == "succeeded"
        assert task["output"] == "t1"
        assert task["task"]["depends_on"] == ["t0"]
        assert task["attempts"][0]["outcome"] == "succeeded"
        assert [d["type"] for d in task["decisions"]] == ["route_task"]
        why = c.get(f"/v1/runs/{rid}/tasks/t1/explain").json()
        assert c.get(f"/v1/runs/{rid}/tasks/nope").status_code == 404
        assert c.get(f"/v1/runs/{rid}/tasks/nope/explain").status_code == 404
        assert c.get("/v1/runs/nope").status_code == 404
    cli = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "explain", rid, "t1", "--db", str(server.db),
         "--json"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == why


def test_cancel_a_running_run_then_retry_it(server: Server) -> None:
    made = submit(server, workflow(2, agent="slow", input_=60, name="to-cancel", chain=True))
    rid = made["run_id"]
    with server.client() as c:
        deadline = time.monotonic() + 30
        while c.get(f"/v1/runs/{rid}/tasks/t0").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = c.post(f"/v1/runs/{rid}/cancel")
        assert r.status_code == 202
        assert r.json() == {"run_id": rid, "task_ids": None}
        report = wait_for_state(c, rid, ["cancelled"])
        assert report["counts"]["cancelled"] + report["counts"]["skipped"] == 2
        assert report["tasks"][0]["state"] == "cancelled"
        assert c.post(f"/v1/runs/{rid}/cancel").status_code == 409
        assert c.post("/v1/runs/nope/cancel").status_code == 404
        retried = c.post(f"/v1/runs/{rid}/retry")
        assert retried.status_code == 202
        again = retried.json()
        assert again["retry_of"] == rid
        assert again["rerun"] == ["t0", "t1"]
        c.post(f"/v1/runs/{again['run_id']}/cancel", json={"task_ids": ["t0"]})
        second = wait_for_state(c, again["run_id"], ["cancelled", "failed"])
        assert second["retry_of"] == rid
        assert second["counts"]["cancelled"] == 1
        assert second["counts"]["skipped"] == 1


def test_retry_keeps_what_succeeded(server: Server) -> None:
    doc = workflow(2)
    doc["agents"].append({
        "name": "breaker", "capabilities": {"fragile": 0.9},
        "runner": {"type": "function", "function": "service_agents:failing"},
    })  # fmt: skip
    doc["tasks"][1]["capability"] = "fragile"
    doc["tasks"][1]["max_attempts"] = 1
    made = submit(server, doc)
    with server.client() as c:
        wait_for_state(c, made["run_id"], ["failed"])
        r = c.post(f"/v1/runs/{made['run_id']}/retry")
        assert r.status_code == 202
        assert r.json()["rerun"] == ["t1"]
        assert r.json()["kept"] == ["t0"]


def test_an_agent_redefined_by_another_workflow_is_refused(server: Server) -> None:
    doc = workflow(1, spec="shared")
    submit(server, doc)
    doc["agents"][0]["concurrency"] = 9
    with server.client() as c:
        r = c.post("/v1/runs", json={"workflow": doc})
        assert r.status_code == 422
        assert "'shared' is defined differently" in r.json()["detail"]


def test_agents_metrics_and_schema(server: Server) -> None:
    made = submit(server, workflow(3))
    with server.client() as c:
        wait_for_state(c, made["run_id"], ["succeeded"])
        pool = c.get("/v1/agents").json()
        worker = next(s for s in pool["specs"] if s["name"] == "quick")
        assert worker["capabilities"] == {"quick": 0.9}
        assert any(i["spec"] == "quick" and i["slots"] == 4 for i in pool["instances"])
        stat_ = next(s for s in pool["stats"] if s["spec"] == "quick")
        assert stat_["successes"] >= 3
        assert 0 < stat_["proficiency"] <= 1
        text = c.get("/metrics").text
        names = (
            "metaagent_tasks", "metaagent_queue_depth", "metaagent_instances",
            "metaagent_utilisation", "metaagent_dispatch_latency_seconds_bucket",
            "metaagent_attempts_total", "metaagent_journal_commit_seconds_bucket",
        )  # fmt: skip
        for name in names:
            assert name in text, name
        assert 'metaagent_attempts_total{outcome="succeeded"}' in text
        schema = c.get("/openapi.json").json()
        assert {"/v1/runs", "/v1/runs/{run_id}", "/v1/agents"} <= set(schema["paths"])


def test_a_generated_token_file_is_private_and_printed(tmp_path: Path) -> None:
    server = start_server(tmp_path, token=None, read_token=None)
    try:
        path = tmp_path / "token"
        assert f"token written to {path}" in server.stderr()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        with server.client(token=token) as c:
            assert c.get("/v1/runs").status_code == 200
    finally:
        server.stop()
    # Started again, it keeps the token; --token-file names another.
    other = tmp_path / "mine"
    other.write_text("from-a-file\n")
    with running_server(
        tmp_path, token=None, read_token=None, args=["--token-file", str(other)]
    ) as s:
        assert "token written" not in s.stderr()
        with s.client(token="from-a-file") as c:
            assert c.get("/v1/runs").status_code == 200
        with s.client(token=token) as c:
            assert c.get("/v1/runs").status_code == 401


def test_an_unreadable_token_file_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "metaagent.cli", "serve", "--port", "0", "--db",
         str(tmp_path / "j.db"), "--token-file", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "METAAGENT_TOKEN"},
    )  # fmt: skip
    assert done.returncode == 2
    assert "--token-file" in done.stderr


def test_the_dashboard_is_served_at_the_root_without_a_token(server: Server) -> None:
    with server.client(token=None) as anon:
        page = anon.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert anon.get("/no-such-asset.js").status_code == 404


def test_an_empty_dashboard_folder_is_tolerated(tmp_path: Path) -> None:
    import asyncio
    import threading

    import httpx
    import uvicorn

    from metaagent.runtime.config import OrchestratorConfig
    from metaagent.service.app import create_app
    from metaagent.service.auth import Tokens
    from metaagent.service.core import Service

    empty = tmp_path / "assets"
    empty.mkdir()
    service = Service(tmp_path / "j.db", OrchestratorConfig(workdir=str(tmp_path)))
    app = create_app(service, Tokens("t"), dashboard=empty)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    port = uv.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert c.get("/").status_code == 404
            assert c.get("/healthz").status_code == 200
            assert c.get("/v1/runs", headers={"Authorization": "Bearer t"}).status_code == 200
    finally:
        uv.should_exit = True
        thread.join(30)
