"""Export records built from the event-log projection: one neutral record per conversation.

A *record* is ``{"messages": [...], "metadata": {...}}`` with every assistant message's hidden
``thought`` kept as a field; the formats (dataset/export_formats.py, dataset/export_hf.py) decide what
to do with it. Building from the fold, not from graph state, keeps what a user replays identical to
what was exported. ``metadata.source_documents`` names the ingested paths of the record's chunks so
the split by document can be checked from the files alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from teacherforge.dataset.splits import DEFAULT_RATIOS, SplitPlan, assign_splits, document_of_chunk
from teacherforge.store.dataset_queries import chunk_documents
from teacherforge.store.projection import SampleView

ThoughtMode = Literal["drop", "field", "inline"]
DEFAULT_SYSTEM = "You are a helpful assistant that answers questions about the documents you were trained on."
UNINDEXED = "unindexed:"  # split key of a chunk whose document is no longer in the index


def base_record(
    view: SampleView, system: str = DEFAULT_SYSTEM, documents: dict[str, str] | None = None
) -> dict:
    """The neutral record: system + turns (assistant ``thought`` and ``evidence`` kept), and metadata."""
    messages = [{"role": "system", "content": system}]
    for turn in view.turns:
        message = {"role": turn["role"], "content": turn["content"]}
        if turn["role"] == "assistant":
            if turn.get("thought"):
                message["thought"] = turn["thought"]
            if turn.get("evidence"):
                message["evidence"] = turn["evidence"]
        messages.append(message)
    documents = documents or {}
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
            "source_documents": sorted({documents[c] for c in view.source_chunk_ids if c in documents}),
            "critic_scores": view.last_scores,
            "revisions": view.revisions,
            "teacher_model": view.teacher_model,
            **({"review": view.review} if view.review else {}),  # a person's decision, tags, edited turns
        },
    }


def split_keys(record: dict, documents: dict[str, str]) -> frozenset[str]:
    """What the split must keep on one side: the record's documents, or for a chunk whose document was
    re-ingested since, its content-hash prefix (every chunk id is ``<document hash[:10]>-<n>``)."""
    ids = record["metadata"]["source_chunk_ids"]
    return frozenset(documents.get(c) or UNINDEXED + document_of_chunk(c) for c in ids)


@dataclass
class Built:
    """Records ready to format (``metadata.split`` set), and the straddling ones that were left out."""

    records: list[dict]
    plan: SplitPlan
    dropped: list[str] = field(default_factory=list)


def build_records(
    con: duckdb.DuckDBPyConnection,
    views: list[SampleView],
    system: str = DEFAULT_SYSTEM,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
) -> Built:
    """Neutral records for ``views`` with their documents resolved and a split by document assigned."""
    documents = chunk_documents(con, [c for v in views for c in v.source_chunk_ids])
    records = [base_record(v, system, documents) for v in views]
    plan = assign_splits([split_keys(r, documents) for r in records], ratios, seed)
    kept, dropped = [], []
    for record, name in zip(records, plan.assignment, strict=True):
        if name is None:
            dropped.append(record["metadata"]["sample_id"])
        else:
            record["metadata"]["split"] = name
            kept.append(record)
    return Built(records=kept, plan=plan, dropped=dropped)


def with_thought(messages: list[dict], thought: ThoughtMode) -> list[dict]:
    """Messages with each assistant ``thought`` dropped, kept as a field, or inlined as ``<think>``.

    ``evidence`` (chunk ids and quotes) is hidden reasoning too: kept only with ``field``, so the
    training text of ``drop`` and ``inline`` is exactly the conversation (and ``teacherforge check``
    can verify a ``field`` export against the corpus).
    """
    out = []
    for message in messages:
        message = dict(message)
        reasoning = message.pop("thought", None)
        evidence = message.pop("evidence", None)
        if reasoning and thought == "inline":
            message["content"] = f"<think>{reasoning}</think>\n{message['content']}"
        elif reasoning and thought == "field":
            message["thought"] = reasoning
        if evidence and thought == "field":
            message["evidence"] = evidence
        out.append(message)
    return out


def redacted(records: list[dict], redact: Callable[[list[dict]], list[dict]]) -> list[dict]:
    """Records with ``redact`` applied to their messages (thought fields included) before formatting."""
    return [{**r, "messages": redact(r["messages"])} for r in records]


def openai_record(
    view: SampleView,
    thought: ThoughtMode = "drop",
    system: str = DEFAULT_SYSTEM,
    documents: dict[str, str] | None = None,
) -> dict:
    """``{"messages": [...], "metadata": {...}}`` in OpenAI chat fine-tuning format."""
    record = base_record(view, system, documents)
    return {"messages": with_thought(record["messages"], thought), "metadata": record["metadata"]}


def write_jsonl(records: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(out)
