"""The naive baseline the diversity numbers are compared with: one plain prompt per seed context.

Same chunks as the dataset's samples, no persona, tier, Evol operator or critic: "here is a text,
write a question about it". If TeacherForge's first user turns are not more diverse than this, the
planning machinery is not paying for itself. Needs an LLM, so it runs only when asked
(``--baseline-url``); its questions are written next to the report for inspection.

The prompt is ``prompts/en/report_baseline.j2`` and the call is the agent in
agents/report_baseline.py, through ``StructuredLLM`` like every other model call.

Why the calls are not ``llm.call`` events: the report has no event log to write to. It opens the
database read-only (``teacherforge report`` reads the snapshot while a run may hold the file), so a
report can never change the run it describes, and the baseline's requests belong to no run. Every
attempt is kept in :attr:`Baseline.calls` for a caller that does have a log; the questions
themselves are saved as ``baseline.jsonl`` next to the report.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from teacherforge.agents import report_baseline as questioner
from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import (
    Endpoint,
    LLMCallFailed,
    LLMCallRecord,
    RetryPolicy,
    SamplingParams,
    StructuredLLM,
)
from teacherforge.dataset.report_data import RunData
from teacherforge.prompts import PromptLibrary

MAX_TOKENS = 200
# One retry: a reply that does not parse is worth a second try, but an unreachable server should not
# hold the report for long (the requests go one after the other).
RETRY = RetryPolicy(max_attempts=2, initial_wait_s=0.5, max_wait_s=5.0)


@dataclass
class Baseline:
    url: str
    model: str
    questions: list[dict] = field(default_factory=list)  # {sample_id, question}
    errors: list[str] = field(default_factory=list)
    calls: list[LLMCallRecord] = field(default_factory=list)  # every attempt, in order


def resolve_endpoint(data: RunData, url: str, model: str | None) -> tuple[str, str]:
    """``--baseline-url run`` reuses the run's recorded generator endpoint (and model)."""
    generator = data.endpoints.get("generator") or {}
    if url == "run":
        url = generator.get("url") or ""
        if not url:
            raise ValueError("the run recorded no generator URL; give --baseline-url URL")
    model = model or generator.get("model") or data.config.get("model")
    if not model:
        raise ValueError("no model for the baseline; give --baseline-model NAME")
    return url.rstrip("/"), model


def generate_baseline(data: RunData, url: str, model: str, limit: int, timeout_s: float = 120.0) -> Baseline:
    """One question per dataset sample (first ``limit``), from that sample's seed chunks."""
    return asyncio.run(_generate(data, url, model, limit, timeout_s))


async def _generate(data: RunData, url: str, model: str, limit: int, timeout_s: float) -> Baseline:
    baseline = Baseline(url, model)
    key = os.environ.get(data.config.get("api_key_env") or "OPENAI_API_KEY") or "local"
    params = SamplingParams(
        temperature=data.config.get("temperature", 0.7), max_tokens=MAX_TOKENS, timeout_s=timeout_s
    )
    llm = StructuredLLM(Endpoint(url, model, key), params, RETRY)
    agents = AgentContext(generator=llm, critic=llm, prompts=PromptLibrary())
    seed = int(data.config.get("seed") or 0)
    try:
        for index, sample in enumerate(data.dataset[:limit]):
            context = "\n\n".join(data.chunk_text.get(c, "") for c in sample.seed_chunk_ids).strip()
            if not context:
                baseline.errors.append(f"{sample.sample_id}: no seed chunks recorded")
                continue
            try:
                result = await questioner.ask(agents, context, seed * 100_003 + index)
            except LLMCallFailed as exc:
                baseline.calls.extend(exc.calls)
                last = exc.calls[-1].error if exc.calls else str(exc)
                baseline.errors.append(f"{sample.sample_id}: {(last or 'failed')[:200]}")
                continue
            baseline.calls.extend(result.calls)
            question = result.output.question.strip()
            if question:
                baseline.questions.append({"sample_id": sample.sample_id, "question": question})
    finally:
        await agents.aclose()
    return baseline
