"""One run budget for all of a run's Ray workers: a keeper actor holds the meter, workers ask it first.

Why an actor: a budget is a promise about the whole run's bill, and each attempt reserves its worst
case before it is sent (graph/budget.py). Split into static shares, one worker would stop while
another still had room; so the same ``CallMeter`` that gates a local run lives in one small Ray
actor, and each worker's agents reach it through :class:`RemoteGate` (the ``CallGate`` of
agents/llm.py). It costs one actor call per attempt, far less than a model call. The driver still
counts what was spent from the ``llm.call`` events it writes, as in a local run, and stops the run
when the cap is reached; the keeper only decides whether the next attempt may go out.
"""

from __future__ import annotations

import itertools
from typing import Any

from teacherforge.agents.llm import CallRefused, LLMCallRecord
from teacherforge.graph.budget import Budget, CallMeter, Reservation, prompt_chars


class BudgetKeeper:
    """The run's meter as a gate shared by every worker (no Ray decorator: graph/workers.py adds it).

    Each admitted attempt gets a ticket, noted with its worker, so a lost worker's reservations can
    be dropped (``forget_worker``); left held, they would keep later attempts waiting for good.
    """

    def __init__(self, budget: Budget, tokens_in: int = 0, tokens_out: int = 0):
        self.meter = CallMeter(budget)
        self.meter.tokens_in, self.meter.tokens_out = tokens_in, tokens_out  # a resumed run's spending
        self.held: dict[int, tuple[int, Reservation]] = {}  # ticket -> (worker, reservation)
        self._tickets = itertools.count()

    async def admit(self, worker: int, chars: int, max_tokens: int) -> int | dict[str, Any]:
        """A ticket, or the refusal's detail (returned, not raised: Ray would wrap the exception)."""
        try:
            r = await self.meter.admit_chars(chars, max_tokens)
        except CallRefused as exc:
            return exc.detail
        ticket = next(self._tickets)
        self.held[ticket] = (worker, r)
        return ticket

    async def settle(self, ticket: int, tokens_in: int | None, tokens_out: int | None) -> None:
        """The attempt is over: free its reservation and count what it used."""
        held = self.held.pop(ticket, None)
        if held is None:  # its worker was declared lost meanwhile: already freed
            return
        self.meter.release(held[1], tokens_in)
        self.meter.tokens_in += tokens_in or 0
        self.meter.tokens_out += tokens_out or 0

    async def forget_worker(self, worker: int) -> int:
        """Free what a lost worker held (its calls' spending, if any, is unknown); returns how many."""
        tickets = [t for t, (w, _) in self.held.items() if w == worker]
        for ticket in tickets:
            self.meter.release(self.held.pop(ticket)[1], None)
        return len(tickets)


class RemoteGate:
    """A worker's ``CallGate``: admits and settles each attempt at the run's :class:`BudgetKeeper`."""

    def __init__(self, keeper: Any, worker: int):
        self.keeper, self.worker = keeper, worker  # the actor handle; this worker's index

    async def admit(self, messages: list[dict[str, str]], max_tokens: int) -> int:
        answer = await self.keeper.admit.remote(self.worker, prompt_chars(messages), max_tokens)
        if isinstance(answer, dict):
            raise CallRefused("the run's budget has no room for the next call", answer)
        return answer

    def settle(self, ticket: int, record: LLMCallRecord) -> None:
        # not awaited: the next admit of this worker reaches the keeper after it (one caller, in order)
        self.keeper.settle.remote(ticket, record.tokens_in, record.tokens_out)
