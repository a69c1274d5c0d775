"""The commands against a server (``--server URL`` or ``METAAGENT_SERVER``, with the token in
``METAAGENT_TOKEN``): the same output and exit codes as against a journal, through the HTTP API
of ``metaagent serve`` instead. Needs httpx (the ``server`` extra)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from metaagent.cli.console import ExitCode, err, invalid_input, out

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import httpx

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="METAAGENT_SERVER",
        help="Ask this metaagent server (URL) instead of the journal; token: METAAGENT_TOKEN.",
    ),
]

_TERMINAL_OK = "succeeded"


class Remote:
    """One server, its token from ``METAAGENT_TOKEN``; every failure exits 2 with a message."""

    def __init__(self, url: str) -> None:
        try:
            import httpx
        except ImportError:
            raise invalid_input("--server needs httpx: pip install 'metaagent[server]'") from None
        self.url = url.rstrip("/")
        token = os.environ.get("METAAGENT_TOKEN", "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._httpx = httpx
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.client.request(method, path, **kw)
        except self._httpx.HTTPError as exc:
            raise invalid_input(f"--server {self.url}: {exc}") from None
        if r.status_code >= 400:
            self.fail(r)
        return r.json()

    def fail(self, r: httpx.Response) -> NoReturn:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if r.status_code == 401:
            detail = f"{detail} (set METAAGENT_TOKEN to the server's token)"
        raise invalid_input(f"--server {self.url}: {r.status_code}: {detail}")

    def events(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's events over SSE, from its first, until it finishes."""
        try:
            with self.client.stream("GET", f"/v1/runs/{run_id}/events", timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    self.fail(r)
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])
        except self._httpx.HTTPError as exc:
            raise invalid_input(f"--server {self.url}: {exc}") from None


def runs(server: str, limit: int, state: str | None, as_json: bool) -> None:
    """``runs``: the server's runs, newest first (``--state`` as against a journal)."""
    remote = Remote(server)
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while len(found) < limit:
        params: dict[str, Any] = {"limit": 500 if state else limit}
        if cursor:
            params["cursor"] = cursor
        page = remote.request("GET", "/v1/runs", params=params)
        found += [r for r in page["runs"] if state is None or _in_state(r, state)]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    found = found[:limit]
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    for r in found:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(r["counts"].items())) or "-"
        out.print(f"{r['run_id']}  {r['name']}  {r['state']}  {r['tasks']} tasks  {counts}",
                  highlight=False, markup=False, soft_wrap=True)  # fmt: skip


def _in_state(r: dict[str, Any], state: str) -> bool:
    finished = r["finished_at"] is not None
    failed = any(r["counts"].get(s, 0) for s in ("failed", "skipped", "cancelled"))
    return {
        "unfinished": not finished,
        "finished": finished,
        "succeeded": finished and not failed,
        "failed": failed,
    }[state]


def show(server: str, run_id: str, as_json: bool) -> None:
    report = Remote(server).request("GET", f"/v1/runs/{run_id}")
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return
    out.print(f"{report['name']} ({run_id}): {report['state']}", highlight=False, markup=False)
    for t in report["tasks"]:
        out.print(f"  {t['id']}  {t['state']}  {t['agent'] or '-'}  {len(t['attempts'])} "
                  f"attempts  {t['error'] or ''}", highlight=False, markup=False)  # fmt: skip


def logs(server: str, run_id: str, task_id: str, attempt: int | None) -> None:
    task = Remote(server).request("GET", f"/v1/runs/{run_id}/tasks/{task_id}")
    tries = task["attempts"]
    if not tries:
        raise invalid_input(f"task {task_id!r} of run {run_id!r} has not been attempted")
    chosen = (
        tries[-1] if attempt is None else next((a for a in tries if a["number"] == attempt), None)
    )
    if chosen is None:
        numbers = ", ".join(str(a["number"]) for a in tries)
        raise invalid_input(f"task {task_id!r} has no attempt {attempt} (its attempts: {numbers})")
    ended = chosen["outcome"] or "still running"
    err.print(f"task {task_id} attempt {chosen['number']} on {chosen['agent']} "
              f"({chosen['agent_instance']}): {ended}", highlight=False, markup=False)  # fmt: skip
    log = chosen.get("log")
    if log is None:
        err.print("(no log)", highlight=False, markup=False)
    else:
        sys.stdout.write(log if log.endswith("\n") else log + "\n")
    if chosen["error"]:
        err.print(f"error: {chosen['error']}", highlight=False, markup=False)


def cancel(server: str, run_id: str, tasks: list[str] | None) -> None:
    body = {"task_ids": tasks} if tasks else None
    Remote(server).request("POST", f"/v1/runs/{run_id}/cancel", json=body)
    what = f"run {run_id}" if not tasks else f"tasks {', '.join(tasks)} of run {run_id}"
    out.print(f"cancel of {what} requested from {server}", highlight=False, soft_wrap=True)


def follow(remote: Remote, run_id: str, *, quiet: bool = False) -> str:
    """Print the run's task events as they come; its final state."""
    final = "interrupted"
    for ev in remote.events(run_id):
        if ev["type"] == "task" and not quiet:
            who = f" on {ev['instance'] or ev['agent']}" if ev["state"] == "running" else ""
            err.print(f"{ev['task_id']} {ev['state']}{who}", highlight=False, markup=False)
        if ev["type"] == "run" and ev["state"] == "finished":
            final = str(ev["run_state"])
    return final


def watch(server: str, run_id: str) -> None:
    remote = Remote(server)
    final = follow(remote, run_id)
    report = remote.request("GET", f"/v1/runs/{run_id}")
    counts = ", ".join(f"{s} {n}" for s, n in report["counts"].items() if n)
    out.print(f"run {run_id} finished: {final} ({counts})", highlight=False, markup=False)
    raise typer.Exit(ExitCode.OK if final == _TERMINAL_OK else ExitCode.FAILED)


def run(server: str, workflow: Path, json_out: Path | None, quiet: bool) -> None:
    """``run``: submit the workflow file to the server, follow the run, print its end."""
    try:
        text = workflow.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid_input(f"{workflow}: {exc}") from None
    remote = Remote(server)
    made = remote.request("POST", "/v1/runs", json={"workflow": text})
    rid = made["run_id"]
    err.print(f"run {rid} (server {server})", highlight=False, markup=False)
    _finish(remote, rid, follow(remote, rid, quiet=quiet), json_out)


def retry(server: str, run_id: str, json_out: Path | None, quiet: bool) -> None:
    remote = Remote(server)
    made = remote.request("POST", f"/v1/runs/{run_id}/retry")
    rid = made["run_id"]
    err.print(f"retrying run {run_id} as run {rid}: {len(made['rerun'])} tasks run again, "
              f"{len(made['kept'])} kept", highlight=False)  # fmt: skip
    _finish(remote, rid, follow(remote, rid, quiet=quiet), json_out)


def _finish(remote: Remote, run_id: str, final: str, json_out: Path | None) -> None:
    report = remote.request("GET", f"/v1/runs/{run_id}")
    counts = ", ".join(f"{s} {n}" for s, n in report["counts"].items() if n)
    human = err if json_out is not None and str(json_out) == "-" else out
    human.print(f"run {run_id}: {final} ({counts})", highlight=False, markup=False)
    if json_out is not None:
        text = json.dumps(report, indent=2, default=str) + "\n"
        if str(json_out) == "-":
            sys.stdout.write(text)
        else:
            json_out.write_text(text, encoding="utf-8")
    raise typer.Exit(ExitCode.OK if final == _TERMINAL_OK else ExitCode.FAILED)
