"""Wiring of the judge (agents/judge.py) into ``teacherforge eval``: every (item, system) answer is
graded concurrently, each attempt becomes an ``llm.call`` event under the eval id, and a judge whose
attempts all fail leaves the verdict empty instead of stopping the evaluation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from teacherforge.agents import judge
from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import LLMCallFailed
from teacherforge.store.events import EventLog
from teacherforge.student.calls import call_seed, record_calls
from teacherforge.student.items import EvalItem


async def grade_all(
    agents: AgentContext,
    log: EventLog,
    eval_id: str,
    items: list[EvalItem],
    systems: Sequence[str],
    concurrency: int,
) -> dict[tuple[str, str], dict]:
    """(item_id, system) -> {verdict, reason}; verdict None when the judge could not be reached."""
    sem = asyncio.Semaphore(concurrency)
    out: dict[tuple[str, str], dict] = {}

    async def one(item: EvalItem, system: str) -> None:
        async with sem:
            seed = call_seed(eval_id, item.item_id, system)
            try:
                result = await judge.grade(agents, item.history, item.answers[system], item.chunks, seed)
            except LLMCallFailed as exc:
                out[(item.item_id, system)] = {"verdict": None, "reason": str(exc)[:300]}
                record_calls(log, eval_id, exc.calls)
                return
            out[(item.item_id, system)] = result.output.model_dump()
            record_calls(log, eval_id, result.calls)

    await asyncio.gather(*(one(i, s) for i in items for s in systems))
    return out
