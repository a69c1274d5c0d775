"""A tighter lower bound on the makespan of a DAG on a pool of unrelated-speed agents.

The pool: agent ``a`` has ``s_a`` slots (each runs one task at a time) and, for each
capability ``c`` it serves, a speed ``r_ac``: a task of base work ``w`` takes ``w / r_ac`` on
one of its slots. ``W_c`` is the base work of the capability-``c`` tasks of a set.

**Load (weak LP duality).** Take any *dual-feasible* point: ``v_a >= 0`` with
``sum_a s_a v_a <= 1`` and ``0 <= u_c <= v_a / r_ac`` for every agent ``a`` serving ``c``. In
any schedule that finishes the set within a window of length ``L``, let ``x_ac`` be the base
work of ``c`` done on ``a``; then ``sum_a x_ac = W_c`` and agent ``a``'s busy time
``sum_c x_ac / r_ac <= s_a L``. Hence

    sum_c u_c W_c = sum_ac u_c x_ac <= sum_a v_a sum_c x_ac / r_ac <= sum_a v_a s_a L <= L.

So ``L >= max_k u^k . W`` over any dual-feasible points ``u^k``; over the vertices of the dual
polytope (enumerated exactly once per pool, ``dual_vertices``) this maximum *is* the optimum of
the fractional assignment LP (min L: each capability's work split over the agents serving it
at their speeds, each agent's busy time at most its slots times L), by strong duality. It is
never weaker than counting, per set of capabilities, their work over the slots serving them.

**Heads and tails.** A task's *head* ``h_t`` is the longest path of its ancestors at their
fastest durations (it cannot start before), its *tail* ``q_t`` the same over its descendants
(the makespan ``T`` is at least its end plus ``q_t``). For thresholds ``a, b``, at most
``r_c (a - h_t)`` of a task's base work (``r_c`` the fastest speed of its capability) can be
done before ``a`` and at most ``r_c (b - q_t)`` after ``T - b``; the rest, when positive, must
be done inside the window ``[a, T - b]``, which is then not empty, so ``T >= a + b + load(the
rests)``. With ``a = b = 0`` this is the plain load bound. The bound is the maximum of the
critical path (at fastest durations) and these, over a set of head values ``a`` and tail
values ``b`` (the smallest ones and a spread of the rest: any threshold gives a valid bound,
fewer only weaken it).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from metaagent.core.tasks import AgentTask

_EPS = 1e-9


def dual_vertices(pool: Mapping[str, tuple[int, Mapping[str, float]]]) -> list[dict[str, float]]:
    """The ``u`` parts of the dual polytope's vertices that no other vertex dominates.

    Variables ``u_c`` (capabilities) then ``v_a`` (agents); constraints ``u_c >= 0``,
    ``v_a >= 0``, ``u_c - v_a / r_ac <= 0`` and ``sum s_a v_a <= 1``. A vertex is where a set of
    as many independent constraints as variables is tight and every constraint holds.
    """
    caps = sorted({c for _, speeds in pool.values() for c in speeds})
    agents = sorted(pool)
    n = len(caps) + len(agents)
    rows: list[tuple[list[float], float]] = []  # a . x <= rhs
    for i in range(n):  # -x_i <= 0
        rows.append(([-1.0 if j == i else 0.0 for j in range(n)], 0.0))
    for ai, agent in enumerate(agents):
        for c, speed in pool[agent][1].items():
            row = [0.0] * n
            row[caps.index(c)] = 1.0
            row[len(caps) + ai] = -1.0 / speed
            rows.append((row, 0.0))
    row = [0.0] * len(caps) + [float(pool[a][0]) for a in agents]
    rows.append((row, 1.0))
    found: list[list[float]] = []
    for pick in itertools.combinations(range(len(rows)), n):
        x = _solve([rows[k][0] for k in pick], [rows[k][1] for k in pick])
        if x is None or any(_dot(r, x) > rhs + _EPS for r, rhs in rows):
            continue
        u = x[: len(caps)]
        if not any(all(abs(p - q) <= _EPS for p, q in zip(u, f, strict=True)) for f in found):
            found.append(u)
    keep = [u for u in found if not any(f is not u and _covers(f, u) for f in found)]
    return [dict(zip(caps, u, strict=True)) for u in keep if any(p > _EPS for p in u)]


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(p * q for p, q in zip(a, b, strict=True))


def _covers(f: Sequence[float], u: Sequence[float]) -> bool:
    """``f >= u`` in every component (so ``f . W >= u . W`` for every ``W >= 0``)."""
    return all(q >= p - _EPS for p, q in zip(u, f, strict=True))


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; ``None`` when singular."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[piv][col]) < 1e-12:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(n):
            if r != col and m[r][col] != 0.0:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


def load(work: Mapping[str, float], vertices: Sequence[Mapping[str, float]]) -> float:
    """The fractional assignment LP's optimum for ``work`` (base work per capability)."""
    return max((sum(u.get(c, 0.0) * w for c, w in work.items()) for u in vertices), default=0.0)


def heads_tails(
    tasks: Sequence[AgentTask], fastest: Callable[[AgentTask], float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each task's head and tail (longest ancestor and descendant paths at fastest speeds);
    ``tasks`` are listed parents first."""
    head: dict[str, float] = {}
    below: dict[str, list[str]] = {t.id: [] for t in tasks}
    took = {t.id: fastest(t) for t in tasks}
    for t in tasks:
        head[t.id] = max((head[d] + took[d] for d in t.depends_on), default=0.0)
        for d in t.depends_on:
            below[d].append(t.id)
    tail: dict[str, float] = {}
    for t in reversed(tasks):
        tail[t.id] = max((tail[c] + took[c] for c in below[t.id]), default=0.0)
    return head, tail


def tight_bound(
    tasks: Sequence[AgentTask],
    base: Callable[[AgentTask], float],
    fastest: Callable[[AgentTask], float],
    vertices: Sequence[Mapping[str, float]],
    top: Mapping[str, float],
    steps: int = 12,
) -> float:
    """max(critical path, max over head/tail thresholds a, b of a + b + load(what must run
    inside [a, T - b])); ``top`` is each capability's fastest speed. See the module docstring
    for why it is a lower bound."""
    head, tail = heads_tails(tasks, fastest)
    best = max(head[t.id] + fastest(t) + tail[t.id] for t in tasks)
    rows = [(head[t.id], tail[t.id], base(t), top[t.capability], t.capability) for t in tasks]
    for a in _thresholds(head.values(), steps):
        for b in _thresholds(tail.values(), steps):
            work: dict[str, float] = {}
            for h, q, w, r, c in rows:
                # at most r * (a - h) of it done before a, r * (b - q) after T - b
                left = w - r * (max(0.0, a - h) + max(0.0, b - q))
                if left > 0.0:
                    work[c] = work.get(c, 0.0) + left
            if work:  # some work must run inside [a, T - b]: the window is not empty
                best = max(best, a + b + load(work, vertices))
    return best


def _thresholds(values: Iterable[float], steps: int) -> list[float]:
    """The ``steps`` smallest distinct values, then ``steps`` more spread over the rest
    (any threshold gives a valid bound: fewer only weaken it)."""
    ordered = sorted(set(values))
    rest = ordered[steps:]
    if len(rest) > steps:
        rest = [rest[round(i * (len(rest) - 1) / (steps - 1))] for i in range(steps)]
    return ordered[:steps] + rest
