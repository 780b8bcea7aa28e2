"""Critic: scores a whole conversation against its sources; thresholds decide pass or fail."""

from __future__ import annotations

from collections.abc import Callable
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


def critique_checker(n_turns: int) -> Callable[[Critique], Critique]:
    """The check a critique must pass against the conversation it judges (StructuredLLM's ``validate``).

    The schema already bounds the scores (1-5) and the index (0-40); this adds what only the
    conversation knows: every problem names a turn that exists. Repeated problems are merged, not
    refused. A critique that names a missing turn is retried, and after the last attempt the sample
    fails with that reason; it never reaches the refiner as a list of nonsense problems.
    """

    def check(critique: Critique) -> Critique:
        problems, seen = [], set()
        for p in critique.problems:
            if not 0 <= p.turn_index < n_turns:
                raise ValueError(
                    f"problem '{p.problem[:60]}' names turn {p.turn_index}, but the conversation has "
                    f"turns 0-{n_turns - 1}"
                )
            key = (p.turn_index, " ".join(p.problem.lower().split()).rstrip("."))
            if key not in seen:
                seen.add(key)
                problems.append(p)
        return critique.model_copy(update={"problems": problems})

    return check


async def review(
    ctx: AgentContext, plan: Plan, chunks: list[dict[str, Any]], turns: list[dict[str, Any]], seed: int
) -> AgentResult[Critique]:
    prompt = ctx.prompts.render("critic", plan=plan, chunks=chunks, turns=turns)
    return await ctx.critic.call("critic", Critique, prompt, seed=seed, validate=critique_checker(len(turns)))
