"""Critic: scores a whole conversation against its sources; thresholds decide pass or fail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult
from teacherforge.agents.schemas import Critique, Plan


class CriticThresholds(BaseModel):
    """Minimum score per dimension for a pass (1-5)."""

    model_config = {"extra": "forbid"}

    groundedness: int = Field(default=4, ge=1, le=5)
    persona_fidelity: int = Field(default=3, ge=1, le=5)
    tier_match: int = Field(default=3, ge=1, le=5)
    refusal_correctness: int = Field(default=4, ge=1, le=5)
    naturalness: int = Field(default=3, ge=1, le=5)


def failed_dimensions(critique: Critique, thresholds: CriticThresholds) -> list[str]:
    """Names of the dimensions scoring below their threshold (empty means pass)."""
    scores = critique.scores.model_dump()
    return [name for name, minimum in thresholds.model_dump().items() if scores[name] < minimum]


async def review(
    ctx: AgentContext, plan: Plan, chunks: list[dict[str, Any]], turns: list[dict[str, Any]], seed: int
) -> AgentResult[Critique]:
    prompt = ctx.prompts.render("critic", plan=plan, chunks=chunks, turns=turns)
    return await ctx.critic.call("critic", Critique, prompt, seed=seed)
