"""The SQL of run leases (``journal.leases``), run inside the SQLite journal's write
transactions: taking a lease, fencing a flush by it, giving it up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.journal.leases import Lease, Owner, refuse

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

_COLUMNS = "run_id, owner, pid, host, node, since, heartbeat_at, expires_at"


class Fenced(Exception):  # a signal out of a transaction, never seen outside it
    """Raised inside a write transaction (which is then rolled back): these runs' leases are
    no longer held by the owner that writes them."""

    def __init__(self, runs: Sequence[str]) -> None:
        self.runs = list(runs)
        super().__init__(", ".join(self.runs))


def read_lease(conn: sqlite3.Connection, run_id: str) -> Lease | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else _lease(row)


def read_leases(conn: sqlite3.Connection) -> list[Lease]:
    return [_lease(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM leases")]


def _lease(row: tuple[object, ...]) -> Lease:
    rid, owner, pid, host, node, since, beat, expires = row
    return Lease(
        str(rid), Owner(str(owner), int(pid), str(host), str(node)),  # type: ignore[call-overload]
        float(since), float(beat), float(expires),  # type: ignore[arg-type]
    )  # fmt: skip


def take(conn: sqlite3.Connection, run_id: str, owner: Owner, now: float, ttl_s: float) -> Lease:
    """Take (or renew) ``owner``'s lease of a run; inside a write transaction, so that the
    check and the write are one step. Raises ``RunOwned`` while another owner's is live."""
    held = read_lease(conn, run_id)
    if held is not None and held.owner.id != owner.id and held.live(now):
        raise refuse(held, now)
    since = held.since if held is not None and held.owner.id == owner.id else now
    lease = Lease(run_id, owner, since, now, now + ttl_s)
    conn.execute(
        f"INSERT OR REPLACE INTO leases ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
        (run_id, owner.id, owner.pid, owner.host, owner.node, since, now, now + ttl_s),
    )
    return lease


def fence(
    conn: sqlite3.Connection,
    held: Sequence[tuple[str, str]],
    free: Sequence[str],
    now: float,
    ttl_s: float,
) -> None:
    """Renew the leases of (run, owner id) pairs, all in one statement, and check that the
    ``free`` runs (written without a lease: direct use of a journal) are leased by nobody.
    Raises ``Fenced`` (inside the caller's transaction) naming the runs another owner holds."""
    taken: list[str] = []
    if free:
        marks = ",".join("?" * len(free))
        taken = [
            r
            for (r,) in conn.execute(
                f"SELECT run_id FROM leases WHERE run_id IN ({marks})", list(free)
            )
        ]
    if held:
        cur = conn.executemany(
            "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE run_id = ? AND owner = ?",
            [(now, now + ttl_s, run, owner) for run, owner in held],
        )
        if cur.rowcount != len(held):
            marks = ",".join("?" * len(held))
            holders = dict(
                conn.execute(
                    f"SELECT run_id, owner FROM leases WHERE run_id IN ({marks})",
                    [r for r, _ in held],
                ).fetchall()
            )
            taken += [run for run, owner in held if holders.get(run) != owner]
    if taken:
        raise Fenced(taken)


def give_up(conn: sqlite3.Connection, held: Iterable[tuple[str, str]]) -> None:
    """Delete these (run, owner id) leases where that owner still holds them."""
    conn.executemany("DELETE FROM leases WHERE run_id = ? AND owner = ?", list(held))
