"""The feedback loop: the held-out questions the tuned student got wrong become new plan seeds.

A seed keeps the item's chunks (so the next round covers the same facts) and asks for a harder
tier, or one more user turn when the tier is already the hardest, and carries its lineage (which
eval item seeded it) so the next run's samples can be traced back to the failure behind them.
``teacherforge run --from-eval EVAL_ID`` turns these dicts into plans.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

HARDER = {"direct": "reasoning", "reasoning": "edge", "edge": "edge"}
MAX_USER_TURNS = 12


class FeedbackError(Exception):
    """The eval id is unknown or has no items; the message says how to list evals."""


def is_failure(system: dict[str, Any], should_refuse: bool) -> bool:
    """Wrong or partial on an answerable question, or a refusal mishandled either way."""
    if not system.get("handled", True):
        return True
    return not should_refuse and system.get("verdict") in ("wrong", "partially", "refused", None)


def seeds_from_eval(
    con: duckdb.DuckDBPyConnection, eval_id: str, system: str = "student_tuned"
) -> list[dict]:
    """Plan seeds for the items ``system`` failed in eval ``eval_id``, in item order."""
    rows = con.execute(
        "SELECT payload FROM events WHERE run_id = ? AND type = 'eval.item' ORDER BY seq", [eval_id]
    ).fetchall()
    if not rows:
        raise FeedbackError(
            f"no eval items for '{eval_id}'; list evals with: teacherforge sql 'select eval_id from evals'"
        )
    seeds = []
    for (raw,) in rows:
        item = json.loads(raw)
        mine = next((s for s in item.get("systems", []) if s.get("system") == system), None)
        if mine is None or not is_failure(mine, bool(item.get("should_refuse"))):
            continue
        tier = item.get("tier") if item.get("tier") in HARDER else "direct"
        turns = int(item.get("user_turns") or 1)
        harder = HARDER[tier]
        seeds.append(
            {
                "chunk_ids": item.get("retrieved_chunk_ids") or item.get("source_chunk_ids") or [],
                "source_chunk_ids": item.get("source_chunk_ids") or [],
                "category": item.get("category"),
                "technique": item.get("technique") or "standard",
                "tier": harder,
                "user_turns": turns if harder != tier else min(turns + 1, MAX_USER_TURNS),
                "question": item.get("question"),
                "lineage": {
                    "eval_id": eval_id,
                    "eval_item_id": item.get("item_id"),
                    "source_sample_id": item.get("source_sample_id"),
                    "system": system,
                    "verdict": mine.get("verdict"),
                },
            }
        )
    return seeds
