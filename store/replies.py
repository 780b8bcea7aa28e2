"""Recorded model replies, addressed by request content hash: the event log as a cache.

A request's hash covers model, messages, sampling params and schema (not the endpoint), so a resume,
a fork or a re-run with a changed config sends only the requests that actually changed.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

REPLY_FIELDS = ("raw", "parsed", "tokens_in", "tokens_out")


def recorded_replies(
    con: duckdb.DuckDBPyConnection,
    run_id: str | None = None,
    sample_id: str | None = None,
    up_to_seq: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Successful ``llm.call`` replies by request hash (filtered by run, or by sample up to a seq)."""
    where = ["type = 'llm.call'", "(payload->>'error') IS NULL", "(payload->'parsed') IS NOT NULL"]
    args: list[Any] = []
    if run_id is not None:
        where.append("run_id = ?")
        args.append(run_id)
    if sample_id is not None:
        where.append("sample_id = ?")
        args.append(sample_id)
    if up_to_seq is not None:
        where.append("seq <= ?")
        args.append(up_to_seq)
    rows = con.execute(
        f"SELECT payload->>'request_hash', payload FROM events WHERE {' AND '.join(where)} ORDER BY ts", args
    ).fetchall()
    replies: dict[str, dict[str, Any]] = {}
    for request_hash, payload in rows:
        data = json.loads(payload)
        if data.get("parsed") is not None:
            replies.setdefault(request_hash, {k: data.get(k) for k in REPLY_FIELDS})
    return replies
