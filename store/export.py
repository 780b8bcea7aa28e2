"""Export accepted samples from the event-log projection into training files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from teacherforge.store.projection import SampleView

ThoughtMode = Literal["drop", "field", "inline"]
DEFAULT_SYSTEM = "You are a helpful assistant that answers questions about the documents you were trained on."


def openai_record(view: SampleView, thought: ThoughtMode = "drop", system: str = DEFAULT_SYSTEM) -> dict:
    """``{"messages": [...], "metadata": {...}}`` in OpenAI chat fine-tuning format."""
    messages = [{"role": "system", "content": system}]
    for turn in view.turns:
        message = {"role": turn["role"], "content": turn["content"]}
        if turn["role"] == "assistant" and turn.get("thought"):
            if thought == "inline":
                message["content"] = f"<think>{turn['thought']}</think>\n{turn['content']}"
            elif thought == "field":
                message["thought"] = turn["thought"]
        messages.append(message)
    plan = view.plan
    return {
        "messages": messages,
        "metadata": {
            "run_id": view.run_id,
            "sample_id": view.sample_id,
            "status": view.status,
            "persona": (plan.get("persona") or {}).get("name"),
            "tier": plan.get("tier"),
            "technique": plan.get("technique"),
            "category": plan.get("category"),
            "source_chunk_ids": view.source_chunk_ids,
            "critic_scores": view.last_scores,
            "revisions": view.revisions,
            "teacher_model": view.teacher_model,
        },
    }


def write_jsonl(records: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(out)
