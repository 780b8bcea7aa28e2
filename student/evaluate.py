"""``teacherforge eval``: the student without retrieval against the teacher with retrieval.

On held-out user turns (documents the student never trained on), three systems answer: the
teacher (retrieving for the question, as during generation), the base student and the tuned
student (no retrieval: what they learned is all they have). A judge grades every answer against
the chunks the teacher retrieved; answers are also compared with the teacher's accepted reply
(embedding cosine, ROUGE-L); refusals are checked on hard negatives; and the student's
assistant-token perplexity on the held-out conversations is measured before and after tuning.
Every item is an ``eval.item`` event in the run's DuckDB file, so SQL can slice the results.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teacherforge.agents import teacher
from teacherforge.agents.context import AgentContext
from teacherforge.agents.llm import LLMCallFailed
from teacherforge.agents.schemas import Persona, Plan
from teacherforge.store.events import EventLog
from teacherforge.student import base_model, generate, metrics
from teacherforge.student.calls import call_seed, record_calls
from teacherforge.student.data import load_records, training_messages
from teacherforge.student.items import EvalItem, build_items, user_turns
from teacherforge.student.judge import grade_all
from teacherforge.student.perplexity import perplexity
from teacherforge.student.scoring import item_payload, score_rows
from teacherforge.student.settings import EvalSettings
from teacherforge.student.train import read_card

SYSTEMS = ("teacher", "student_base", "student_tuned")


class EvalError(Exception):
    """Evaluation cannot start; one line that says why."""


@dataclass
class EvalInputs:
    adapter: Path
    data: Path
    agents: AgentContext
    retriever: Any
    settings: EvalSettings
    embed: Callable[[list[str]], Any]


def new_eval_id() -> str:
    return f"eval-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def _plan(item: EvalItem) -> Plan:
    meta = item.record.metadata
    return Plan(
        sample_id=item.item_id,
        index=0,
        category=meta.get("category"),
        tier=meta.get("tier") if meta.get("tier") in ("direct", "reasoning", "edge") else "direct",
        persona=Persona(name=meta.get("persona") or "user", description=""),
        technique=item.record.technique
        if item.record.technique in ("standard", "hard_negative", "multi_source")
        else "standard",
        user_turns=max(1, min(12, user_turns(item.record))),
    )


async def teacher_answers(inputs: EvalInputs, log: EventLog, eval_id: str, items: list[EvalItem]) -> None:
    """The teacher retrieves for each held-out question and answers from those chunks."""
    sem = asyncio.Semaphore(inputs.settings.concurrency)
    s = inputs.settings

    async def one(item: EvalItem) -> None:
        async with sem:
            hits = await asyncio.to_thread(inputs.retriever.search, item.question, s.top_k, s.search)
            item.chunks = [h.as_dict() for h in hits]
            try:
                seed = call_seed(eval_id, item.item_id, "t")
                result = await teacher.answer(inputs.agents, _plan(item), item.chunks, item.history, seed)
                item.answers["teacher"] = result.output.content.strip()
                record_calls(log, eval_id, result.calls)
            except LLMCallFailed as exc:
                item.answers["teacher"] = ""
                record_calls(log, eval_id, exc.calls)

    await asyncio.gather(*(one(i) for i in items))


def student_pass(
    model: Any,
    tokenizer: Any,
    items: list[EvalItem],
    heldout: list,
    system: str,
    inputs: EvalInputs,
    on_step: Callable[[str], None],
) -> float:
    """One student's answers to every item (no retrieval), then its held-out perplexity."""
    for n, item in enumerate(items, 1):
        item.answers[system] = generate.reply(model, tokenizer, item.messages, inputs.settings.max_new_tokens)
        on_step(f"{system} {n}/{len(items)}")
    return (
        round(perplexity(model, tokenizer, heldout, inputs.settings.max_len), 4) if heldout else float("nan")
    )


def evaluate(
    inputs: EvalInputs,
    log: EventLog,
    eval_id: str | None = None,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict:
    """Run the whole evaluation, record it as events, and return the JSON summary.

    One event loop for the whole run: the model clients keep connections bound to their loop.
    """
    return asyncio.run(_evaluate_and_close(inputs, log, eval_id or new_eval_id(), on_step))


async def _evaluate_and_close(inputs: EvalInputs, log: EventLog, eval_id: str, on_step) -> dict:
    try:
        return await _evaluate(inputs, log, eval_id, on_step)
    finally:
        await inputs.agents.aclose()  # on the loop the calls ran on


async def _evaluate(inputs: EvalInputs, log: EventLog, eval_id: str, on_step: Callable[[str], None]) -> dict:
    started = time.perf_counter()
    phases: dict[str, float] = {}
    card = read_card(inputs.adapter)
    thought = card["settings"].get("thought", "drop")
    wanted = set(card.get("heldout_sample_ids") or [])
    heldout = [r for r in load_records(inputs.data) if r.sample_id in wanted]
    if not heldout:
        raise EvalError(
            f"{inputs.data}: none of the adapter's {len(wanted)} held-out samples are in it; "
            "pass the file the adapter was trained from"
        )
    items = build_items(heldout, eval_id, inputs.settings.max_items)
    gen, crit = inputs.agents.generator.endpoint, inputs.agents.critic.endpoint
    log.append(
        eval_id,
        "eval.started",
        {
            "eval_id": eval_id,
            "adapter": str(inputs.adapter.resolve()),
            "data": str(inputs.data.resolve()),
            "base_model": card["result"]["base_model"],
            "settings": inputs.settings.model_dump(),
            "teacher": {"url": gen.url, "model": gen.model},
            "judge": {"url": crit.url, "model": crit.model},
            "heldout_sample_ids": sorted(wanted),
            "items": len(items),
        },
    )
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()

    on_step("teacher answering with retrieval")
    await teacher_answers(inputs, log, eval_id, items)
    phase("teacher_s")
    conversations = [training_messages(r, thought) for r in heldout]
    tokenizer = base_model.load_tokenizer(str(inputs.adapter))
    model = base_model.load_model(card["base_model_path"])
    ppl = {"base": student_pass(model, tokenizer, items, conversations, "student_base", inputs, on_step)}
    phase("student_base_s")
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, str(inputs.adapter)).eval()
    ppl["tuned"] = student_pass(model, tokenizer, items, conversations, "student_tuned", inputs, on_step)
    phase("student_tuned_s")
    on_step("judging")
    verdicts = await grade_all(inputs.agents, log, eval_id, items, SYSTEMS, inputs.settings.concurrency)
    phase("judge_s")
    rows = score_rows(items, SYSTEMS, verdicts, inputs.embed)
    for item in items:
        log.append(eval_id, "eval.item", item_payload(eval_id, item, rows))
    summary = {
        "eval_id": eval_id,
        "adapter": str(inputs.adapter),
        "base_model": card["result"]["base_model"],
        "teacher_model": gen.model,
        "judge_model": crit.model,
        "items": len(items),
        "heldout_records": len(heldout),
        "perplexity": ppl,
        "metrics": metrics.summarise(rows, SYSTEMS),
        "phases": phases,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    log.append(eval_id, "eval.finished", {"status": "finished", "summary": summary})
    log.flush()
    return summary
