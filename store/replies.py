"""Recorded model replies, addressed by request content hash: the event log as a cache.

A request's hash covers model, messages, sampling params and schema (not the endpoint), so a resume,
a fork or a re-run with a changed config sends only the requests that actually changed.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from teacherforge.store.event_filter import event_filter

REPLY_FIELDS = ("raw", "parsed", "tokens_in", "tokens_out")


def recorded_replies(
    con: duckdb.DuckDBPyConnection,
    run_id: str | None = None,
    sample_id: str | None = None,
    up_to_seq: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Successful ``llm.call`` replies by request hash (filtered by run, or by sample up to a seq)."""
    clause, args = event_filter(
        "type = 'llm.call'",
        "(payload->>'error') IS NULL",
        "(payload->'parsed') IS NOT NULL",
        run_id=run_id,
        sample_id=sample_id,
        up_to_seq=up_to_seq,
    )
    rows = con.execute(
        f"SELECT payload->>'request_hash', payload FROM events WHERE {clause} ORDER BY ts", args
    ).fetchall()
    replies: dict[str, dict[str, Any]] = {}
    for request_hash, payload in rows:
        data = json.loads(payload)
        if data.get("parsed") is not None:
            replies.setdefault(request_hash, {k: data.get(k) for k in REPLY_FIELDS})
    return replies
