"""Persona-User: writes the next user message in persona voice at the planned complexity."""

from __future__ import annotations

from typing import Any

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult
from teacherforge.agents.schemas import Plan, UserMessage


async def next_user_message(
    ctx: AgentContext, plan: Plan, seed_chunks: list[dict[str, Any]], history: list[dict[str, Any]], seed: int
) -> AgentResult[UserMessage]:
    prompt = ctx.prompts.render("persona_user", plan=plan, seed_chunks=seed_chunks, history=history)
    return await ctx.generator.call("persona_user", UserMessage, prompt, seed=seed)
