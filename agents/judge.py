"""Judge: grades one answer against the reference chunks retrieved for its question (student eval).

Like the critic it runs on the critic endpoint (``eval --judge-url``, temperature 0): prompt in
(``prompts/<lang>/judge.j2``), a validated :class:`JudgeVerdict` out, every attempt recorded. The
score is derived from the verdict here, never asked of the model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult

Verdict = Literal["correct", "partially", "wrong", "refused"]
VERDICT_SCORE: dict[str, float] = {"correct": 1.0, "partially": 0.5, "wrong": 0.0, "refused": 0.0}


class JudgeVerdict(BaseModel):
    """One graded answer."""

    verdict: Verdict
    reason: str = Field(min_length=1, max_length=300, description="One sentence: why this verdict.")


async def grade(
    ctx: AgentContext, history: list[dict[str, Any]], answer: str, chunks: list[dict[str, Any]], seed: int
) -> AgentResult[JudgeVerdict]:
    """``history`` ends with the user turn being answered; ``chunks`` are the teacher's retrieval for it."""
    prompt = ctx.prompts.render("judge", history=history, answer=answer or "(empty answer)", chunks=chunks)
    return await ctx.critic.call("judge", JudgeVerdict, prompt, seed=seed)


def answer_score(verdict: str, should_refuse: bool) -> float:
    """Correctness in [0, 1]: on a hard negative only a refusal is right."""
    if should_refuse:
        return 1.0 if verdict == "refused" else 0.0
    return VERDICT_SCORE[verdict]
