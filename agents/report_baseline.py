"""Baseline questioner: the quality report's naive baseline, one plain question about a seed text.

Deliberately plain: no persona, tier, Evol operator or critic, so the report can compare the
dataset's first user turns with what "here is a text, write a question about it" gives. Prompt in
(``prompts/<lang>/report_baseline.j2``), a validated :class:`BaselineQuestion` out, every attempt
returned as a record, like the other agents.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult

MAX_QUESTION_CHARS = 1000


class BaselineQuestion(BaseModel):
    """One question a user might ask about the text."""

    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, description="The question only, in the user's words."
    )

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> BaselineQuestion:
        """Also accept a bare question. The prompt asks for "the question only", and a server that
        ignores ``response_format`` (no guided decoding) answers with the plain text, as the baseline
        always accepted; a reply that looks like JSON must still match the schema."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError:
            text = (json_data.decode() if isinstance(json_data, bytes | bytearray) else json_data).strip()
            if not text or text.startswith(("{", "[")):
                raise
            return cls(question=text[:MAX_QUESTION_CHARS])


async def ask(ctx: AgentContext, context: str, seed: int) -> AgentResult[BaselineQuestion]:
    """One question about ``context`` (a sample's seed chunks), on the generator endpoint."""
    prompt = ctx.prompts.render("report_baseline", context=context)
    return await ctx.generator.call("report_baseline", BaselineQuestion, prompt, seed=seed)
