"""Reads of the dedup pass's events (``dedup.dropped``, ``dedup.finished``) and of the samples it compares.

Why here: export, the report and the dedup pass itself all ask which samples a pass dropped; the
question is answered once, in store/ with the rest of the SQL. Callers pass and get plain values.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

DROPPED_SQL = "SELECT DISTINCT sample_id FROM events WHERE type = 'dedup.dropped' AND run_id = ?"

# Accepted samples of a run that no earlier pass dropped, in plan order, with their turns in order.
CANDIDATES_SQL = """
SELECT s.sample_id, list(t.role ORDER BY t.turn_index), list(t.content ORDER BY t.turn_index)
FROM samples s JOIN turns t USING (sample_id)
WHERE s.run_id = ? AND s.status = 'accepted'
  AND s.sample_id NOT IN (SELECT sample_id FROM events WHERE type = 'dedup.dropped' AND run_id = ?)
GROUP BY s.sample_id ORDER BY s.sample_id"""

DROPS_SQL = (
    "SELECT sample_id, payload->>'kept_sample_id' AS kept_sample_id, payload->>'method' AS method, "
    "payload->>'field' AS field, CAST(payload->>'similarity' AS DOUBLE) AS similarity "
    "FROM events WHERE type = 'dedup.dropped' AND run_id = ? ORDER BY sample_id"
)
PASSES_SQL = "SELECT payload FROM events WHERE type = 'dedup.finished' AND run_id = ? ORDER BY ts"


def dropped_sample_ids(con: duckdb.DuckDBPyConnection, run_id: str) -> set[str]:
    """Samples of ``run_id`` that a dedup pass dropped: export leaves these out."""
    return {r[0] for r in con.execute(DROPPED_SQL, [run_id]).fetchall()}


def dedup_candidates(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[str, list[str], list[str]]]:
    """``(sample_id, roles, contents)`` of each accepted, not yet dropped sample, in plan order."""
    return [(r[0], list(r[1]), list(r[2])) for r in con.execute(CANDIDATES_SQL, [run_id, run_id]).fetchall()]


def dedup_drops(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """One row per ``dedup.dropped`` event: sample_id, kept_sample_id, method, field, similarity."""
    cur = con.execute(DROPS_SQL, [run_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def dedup_passes(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """The ``dedup.finished`` payloads of the run in time order: each pass's settings and counts."""
    rows = con.execute(PASSES_SQL, [run_id]).fetchall()
    return [json.loads(raw) if isinstance(raw, str) else raw for (raw,) in rows]
