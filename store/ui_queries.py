"""What ``teacherforge ui`` reads: the events behind its sample index, one sample's chunks, one event.

Why incremental reads: at a million events every scan that touches ``payload`` decompresses the
whole column (about 0.6 s on the development machine), too slow for a page. So the UI keeps an
in-memory index and asks here only for the events after the newest one it has (``ts > ?`` is
answered from DuckDB's per-row-group min/max, so old row groups are never read); ``events_after``
with the count of the whole log tells it whether that is safe or a full rebuild is needed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb
import orjson

from teacherforge.store.table_info import has_column, has_table

# Everything the sample list and the dashboard show, except the model calls (summed separately).
INDEX_TYPES = (
    "sample.planned", "sample.restarted", "sample.accepted", "sample.rejected", "sample.failed",
    "turn.added", "turn.revised", "critique.done", "verify.checked", "refine.done", "dedup.dropped",
    "review.approved", "review.rejected", "review.edited", "review.tagged", "run.started", "run.finished",
)  # fmt: skip
TOTAL_SQL = "SELECT count(*), max(ts) FROM events"
AFTER_SQL = "SELECT count(*) FROM events WHERE ts > ?"
INDEX_SQL = (
    "SELECT event_id, run_id, sample_id, seq, ts, type, payload FROM events "
    "WHERE ts > ? AND list_contains(?, type) ORDER BY ts, sample_id, seq"
)
CALL_TOTALS_SQL = """
    SELECT run_id, coalesce(agent, '') AS agent, count(*) AS calls,
           coalesce(sum(CAST(json_extract_string(payload, 'tokens_in') AS BIGINT)), 0) AS tokens_in,
           coalesce(sum(CAST(json_extract_string(payload, 'tokens_out') AS BIGINT)), 0) AS tokens_out,
           count(*) FILTER (WHERE json_extract_string(payload, 'error') IS NOT NULL) AS errors,
           count(*) FILTER (WHERE json_extract_string(payload, 'reused') = 'true') AS reused
    FROM events WHERE type = 'llm.call' AND ts > ? GROUP BY ALL"""
CHUNKS_SQL = (
    "SELECT chunk_id, document, section, {page} AS page, text FROM chunks WHERE list_contains(?, chunk_id)"
)
EVENT_SQL = (
    "SELECT event_id, run_id, sample_id, seq, ts, type, agent, payload, parent_event_id FROM events "
    "WHERE event_id = ?"
)
EPOCH = dt.datetime(1970, 1, 1)


def log_position(con: duckdb.DuckDBPyConnection) -> tuple[int, dt.datetime | None]:
    """(number of events, newest ts): whether anything changed since the last look, at no scan cost."""
    count, newest = con.execute(TOTAL_SQL).fetchall()[0]
    return count, newest


def events_after(con: duckdb.DuckDBPyConnection, after: dt.datetime | None) -> int:
    """How many events are newer than ``after`` (all of them for None)."""
    return con.execute(AFTER_SQL, [after or EPOCH]).fetchall()[0][0]


def index_events(con: duckdb.DuckDBPyConnection, after: dt.datetime | None) -> list[dict[str, Any]]:
    """The events of ``INDEX_TYPES`` newer than ``after``, oldest first, payloads decoded."""
    rows = con.execute(INDEX_SQL, [after or EPOCH, list(INDEX_TYPES)]).fetchall()
    return [
        {"event_id": r[0], "run_id": r[1], "sample_id": r[2], "seq": r[3], "ts": r[4], "type": r[5],
         "payload": orjson.loads(r[6]) if r[6] else {}}  # ~2x json.loads on 80k payloads
        for r in rows
    ]  # fmt: skip


def call_totals(con: duckdb.DuckDBPyConnection, after: dt.datetime | None) -> list[dict[str, Any]]:
    """Model calls newer than ``after`` summed per (run, agent): calls, tokens in/out, errors, reused."""
    cur = con.execute(CALL_TOTALS_SQL, [after or EPOCH])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def chunk_details(con: duckdb.DuckDBPyConnection, chunk_ids: list[str]) -> dict[str, dict[str, Any]]:
    """chunk id → document, section, page and text, for the ids still indexed ({} without a chunk index)."""
    if not chunk_ids or not has_table(con, "chunks"):
        return {}
    page = "page" if has_column(con, "chunks", "page") else "NULL"
    rows = con.execute(CHUNKS_SQL.format(page=page), [sorted(set(chunk_ids))]).fetchall()
    keys = ("chunk_id", "document", "section", "page", "text")
    return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}


def event_by_id(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any] | None:
    """One event with its payload decoded (an ``llm.call``'s prompt and raw reply), or None."""
    rows = con.execute(EVENT_SQL, [event_id]).fetchall()
    if not rows:
        return None
    r = rows[0]
    return {"event_id": r[0], "run_id": r[1], "sample_id": r[2], "seq": r[3], "ts": r[4], "type": r[5],
            "agent": r[6], "payload": json.loads(r[7]) if r[7] else {}, "parent_event_id": r[8]}  # fmt: skip
