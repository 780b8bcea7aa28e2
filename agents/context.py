"""What an agent needs besides the state: its model client and the prompt library."""

from __future__ import annotations

from dataclasses import dataclass

from teacherforge.agents.llm import StructuredLLM
from teacherforge.prompts import PromptLibrary


@dataclass(frozen=True)
class AgentContext:
    """Injected by the graph. Teacher and critic may use different endpoints (``--critic-url``)."""

    generator: StructuredLLM
    critic: StructuredLLM
    prompts: PromptLibrary

    async def aclose(self) -> None:
        """Close both model clients (the same object twice is fine: closing is idempotent)."""
        await self.generator.aclose()
        await self.critic.aclose()
