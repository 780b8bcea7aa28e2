"""Turning judged answers into per-(item, system) rows and ``eval.item`` event payloads."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from teacherforge.agents import judge
from teacherforge.student import metrics
from teacherforge.student.items import EvalItem, user_turns


def score_rows(items: list[EvalItem], systems: Sequence[str], verdicts: dict, embed: Callable) -> list[dict]:
    """One row per (item, system): verdict, score, refusal handling, similarity to the accepted reply."""
    pairs = [(i, s) for i in items for s in systems]
    cos = metrics.cosine_pairs(embed, [i.answers[s] for i, s in pairs], [i.reference for i, _ in pairs])
    rows = []
    for (item, system), cosine in zip(pairs, cos, strict=True):
        v = verdicts[(item.item_id, system)]
        answer = item.answers[system]
        refused = v["verdict"] == "refused" or metrics.looks_like_refusal(answer)
        rows.append(
            {
                "item_id": item.item_id,
                "system": system,
                "tier": item.record.tier,
                "should_refuse": item.should_refuse,
                "answer": answer,
                "verdict": v["verdict"],
                "reason": v["reason"],
                "refused": refused,
                "score": judge.answer_score(v["verdict"], item.should_refuse) if v["verdict"] else None,
                "handled": refused == item.should_refuse,
                "cosine": round(cosine, 4),
                "rouge_l": round(metrics.rouge_l(answer, item.reference), 4),
            }
        )
    return rows


def item_payload(eval_id: str, item: EvalItem, rows: Sequence[dict]) -> dict:
    """The ``eval.item`` event: the question, its provenance, and every system's graded answer."""
    hidden = ("item_id", "tier", "should_refuse")
    return {
        "eval_id": eval_id,
        "item_id": item.item_id,
        "source_sample_id": item.record.sample_id,
        "turn_index": item.turn_index,
        "tier": item.record.tier,
        "technique": item.record.technique,
        "category": item.record.metadata.get("category"),
        "user_turns": user_turns(item.record),
        "should_refuse": item.should_refuse,
        "question": item.question,
        "reference": item.reference,
        "retrieved_chunk_ids": [c["chunk_id"] for c in item.chunks],
        "source_chunk_ids": item.record.metadata.get("source_chunk_ids") or [],
        "systems": [
            {k: v for k, v in r.items() if k not in hidden} for r in rows if r["item_id"] == item.item_id
        ],
    }
