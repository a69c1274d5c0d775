"""The candidates' scores of one dispatch round, reused while nothing they depend on moved.

A dispatch round routes many ready tasks one after another at one ``now``, and most of them
are alike: the same capability, complexity, estimate, floor and last-attempt flag. Within the
round learning does not change (no attempt ends during a round), and the specs change only by
the round's own starts and claims. A start takes a free slot of its winner, which leaves every
candidate's score as it was while that spec still has a free slot (a free spec waits 0 however
many slots it has); a claim moves a busy spec's next slot. So the router keeps, per kind of
task, the scored candidates (``Router._score``: the costs and their parts, best first) and
gives the same list to the next alike task while every spec in it is as free or as busy as it
was, no claim was made and the round goes on (same ``now``, same learning).

Never kept: the scores of a task that avoids specs (its soft fallback and penalty are its
own), those of Thompson sampling (a sample per decision), and any list with a spec of several
capabilities (its scarcity reads the queues' counts, which the round's starts change). The
decisions made from a kept list are those a fresh scoring gives, explanation included
(``tests/core/test_routing_round.py`` routes the same workloads both ways).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metaagent.core.routing.order import ranked

if TYPE_CHECKING:
    from collections.abc import Collection

    from metaagent.core.instances import AgentInstance
    from metaagent.core.learning import Learning
    from metaagent.core.routing.router import Parts, Router
    from metaagent.core.spec_entry import SpecEntry
    from metaagent.core.tasks import AgentTask

Scored = list[tuple[float, int, "SpecEntry", "Parts"]]
Ranked = tuple[tuple[str, float, tuple[float, ...]], ...]
_Key = tuple[str, float, "float | None", float, bool]
_Kept = tuple[Scored, tuple[tuple["SpecEntry", bool], ...]]  # the scores, each spec: free?


class RoundScores:
    """Scored candidates by kind of task, kept for the dispatch round under way only."""

    __slots__ = ("_at", "_kept", "_learning", "_ranked", "enabled", "on", "reused")

    def __init__(self, learning: Learning) -> None:
        self._learning = learning
        self.enabled = True  # False: every decision is scored afresh (to compare, in tests)
        self.on = False  # a dispatch round is under way
        self.reused = 0  # decisions that took kept scores
        self._kept: dict[_Key, _Kept] = {}
        self._at: tuple[float, int] | None = None  # (now, learning's version) of the kept
        self._ranked: tuple[Scored, AgentInstance | None, Ranked] | None = None

    def begin(self) -> None:
        """A dispatch round starts: nothing kept from before counts."""
        self._kept.clear()
        self._at = None
        self._ranked = None
        self.on = self.enabled and self._learning.mode != "thompson"

    def end(self) -> None:
        self.on = False
        self._kept.clear()
        self._ranked = None

    def ranked(self, scored: Scored, winner: AgentInstance | None) -> Ranked:
        """``order.ranked``, made once for alike decisions in a row (the same scores
        and instance give the same runners-up)."""
        last = self._ranked
        if last is not None and last[0] is scored and last[1] is winner:
            return last[2]
        out = ranked(scored, winner)
        self._ranked = (scored, winner, out)
        return out

    def moved(self) -> None:
        """A busy spec's next slot moved (a claim): scores made before may differ now."""
        if self._kept:
            self._kept.clear()

    def scores(
        self,
        router: Router,
        task: AgentTask,
        now: float,
        avoid: Collection[str],
        penalty_s: float,
        floor: float,
        prune: bool,
        final: bool,
    ) -> Scored:
        """``router._score`` for ``task``, or the scores of an alike task of this round while
        they still hold."""
        cap = task.capability
        if avoid or not self.on:
            return router._score(task, cap, now, avoid, penalty_s, floor, prune, final)
        at = self._at
        version = self._learning.version
        if at is None or at[0] != now or at[1] != version:
            self._kept.clear()
            self._at = (now, version)
        key = (cap, task.complexity, task.estimate_s, floor, final)
        kept = self._kept.get(key)
        if kept is not None:
            for entry, free in kept[1]:
                if (entry.free > 0) is not free:
                    break
            else:
                self.reused += 1
                return kept[0]
        scored = router._score(task, cap, now, (), 0.0, floor, prune, final)
        states = []
        for s in scored:
            entry = s[2]
            if len(entry.spec.capabilities) > 1:
                return scored  # scarcity moves with the round's starts: not kept
            states.append((entry, entry.free > 0))
        self._kept[key] = (scored, tuple(states))
        return scored
