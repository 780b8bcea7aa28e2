"""The LLM judge: grades one answer against the reference chunks retrieved for its question.

It lives here, not in agents/, while student evaluation is new; it follows the agents'
contract (render a prompt, ``StructuredLLM.call``, return a validated object plus every attempt).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from teacherforge.agents.llm import AgentResult, StructuredLLM
from teacherforge.prompts import PromptLibrary

Verdict = Literal["correct", "partially", "wrong", "refused"]
VERDICT_SCORE: dict[str, float] = {"correct": 1.0, "partially": 0.5, "wrong": 0.0, "refused": 0.0}


class JudgeVerdict(BaseModel):
    """One graded answer; the score is derived from the verdict, never asked of the model."""

    verdict: Verdict
    reason: str = Field(min_length=1, max_length=300, description="One sentence: why this verdict.")


async def grade(
    llm: StructuredLLM,
    prompts: PromptLibrary,
    history: list[dict[str, Any]],
    answer: str,
    chunks: list[dict[str, Any]],
    seed: int,
) -> AgentResult[JudgeVerdict]:
    """``history`` ends with the user turn being answered; ``chunks`` are the teacher's retrieval for it."""
    prompt = prompts.render("judge", history=history, answer=answer or "(empty answer)", chunks=chunks)
    return await llm.call("judge", JudgeVerdict, prompt, seed=seed)


def answer_score(verdict: str, should_refuse: bool) -> float:
    """Correctness in [0, 1]: on a hard negative only a refusal is right."""
    if should_refuse:
        return 1.0 if verdict == "refused" else 0.0
    return VERDICT_SCORE[verdict]
