"""Refiner: rewrites the failing assistant turns from the critic's problems and the same context."""

from __future__ import annotations

from typing import Any

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult
from teacherforge.agents.schemas import Plan, Refinement, TurnProblem


async def refine(
    ctx: AgentContext,
    plan: Plan,
    turn_chunks: dict[int, list[dict[str, Any]]],
    turns: list[dict[str, Any]],
    problems: list[TurnProblem],
    seed: int,
) -> AgentResult[Refinement]:
    """``turn_chunks`` maps each failing assistant turn to the chunks retrieved for it."""
    prompt = ctx.prompts.render(
        "refiner",
        plan=plan,
        turn_chunks=turn_chunks,
        turns=turns,
        problems=problems,
        failing_turns=list(turn_chunks),
    )
    return await ctx.generator.call("refiner", Refinement, prompt, seed=seed)
