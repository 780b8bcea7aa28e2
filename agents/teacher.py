"""Agent-Teacher: answers the last user message strictly from the chunks retrieved for it."""

from __future__ import annotations

from typing import Any

from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import AgentResult
from teacherforge.agents.schemas import Plan, TeacherReply


async def answer(
    ctx: AgentContext, plan: Plan, chunks: list[dict[str, Any]], history: list[dict[str, Any]], seed: int
) -> AgentResult[TeacherReply]:
    prompt = ctx.prompts.render("teacher", plan=plan, chunks=chunks, history=history)
    return await ctx.generator.call("teacher", TeacherReply, prompt, seed=seed)
