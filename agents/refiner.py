"""Refiner: rewrites the failing assistant turns from the critic's problems and the same context."""

from __future__ import annotations

from typing import Any

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult
from teacherforge.agents.schemas import Plan, Refinement, TurnProblem


async def refine(
    ctx: AgentContext,
    plan: Plan,
    chunks: list[dict[str, Any]],
    turns: list[dict[str, Any]],
    problems: list[TurnProblem],
    failing_turns: list[int],
    seed: int,
) -> AgentResult[Refinement]:
    prompt = ctx.prompts.render(
        "refiner", plan=plan, chunks=chunks, turns=turns, problems=problems, failing_turns=failing_turns
    )
    return await ctx.generator.call("refiner", Refinement, prompt, seed=seed)
