"""Queries over student-evaluation events that the feedback loop (``run --from-eval``) reads.

Why apart from eval_views.py: those are the views users query; these are what the next round of
generation reads back from an eval, and the lineage recipe docs/student.md prints.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

# Which eval failure seeded which sample: one row per seeded sample (documented in docs/student.md).
SEEDED_SAMPLES_SQL = """
SELECT s.sample_id, s.run_id, s.status, s.tier, s.user_turns,
       p.payload->'seeded_from'->>'eval_id' AS eval_id,
       p.payload->'seeded_from'->>'eval_item_id' AS eval_item_id,
       p.payload->'seeded_from'->>'source_sample_id' AS failed_sample_id,
       p.payload->'seeded_from'->>'verdict' AS student_verdict,
       p.payload->'seeded_from'->>'why' AS why,
       CAST(p.payload->'seeded_from'->'chunk_ids' AS VARCHAR[]) AS seed_chunk_ids
FROM samples s JOIN live_events p ON p.sample_id = s.sample_id AND p.type = 'sample.planned'
WHERE (p.payload->'seeded_from') IS NOT NULL"""


def eval_item_payloads(con: duckdb.DuckDBPyConnection, eval_id: str) -> list[dict[str, Any]]:
    """Every ``eval.item`` payload of an eval in recorded order: the failures there seed the next round."""
    rows = con.execute(
        "SELECT payload FROM events WHERE run_id = ? AND type = 'eval.item' ORDER BY seq", [eval_id]
    ).fetchall()
    return [json.loads(raw) for (raw,) in rows]
