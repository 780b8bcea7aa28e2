"""What an export reads besides the folded samples: which runs there are, where chunks came from, and
when each sample last changed.

Why here: dataset/ builds records and splits from plain values; the SQL that fetches them lives in
store/ with the views it reads. Callers pass and get plain values.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from teacherforge.store.table_info import has_table

RUNS_BY_START_SQL = "SELECT run_id FROM runs ORDER BY started_at"
CHUNK_DOCUMENTS_SQL = "SELECT chunk_id, document FROM chunks WHERE chunk_id IN (SELECT unnest(?))"
LAST_EVENT_TIMES_SQL = (
    "SELECT sample_id, max(ts) FROM events WHERE run_id IN (SELECT unnest(?)) AND sample_id IS NOT NULL "
    "GROUP BY 1"
)


def run_ids_by_start(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every run id in the order the runs started (the last one is the latest run)."""
    return [r[0] for r in con.execute(RUNS_BY_START_SQL).fetchall()]


def chunk_documents(con: duckdb.DuckDBPyConnection, chunk_ids: list[str]) -> dict[str, str]:
    """chunk id → the document path it came from (as given to ``ingest``), for the ids still indexed.

    A file without the chunk index (copied or merged events only) gives ``{}``.
    """
    if not chunk_ids or not has_table(con, "chunks"):
        return {}
    return dict(con.execute(CHUNK_DOCUMENTS_SQL, [sorted(set(chunk_ids))]).fetchall())


def last_event_times(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> dict[str, dt.datetime]:
    """sample id → the time of its last event (UTC, naive), over the samples of ``run_ids``."""
    return dict(con.execute(LAST_EVENT_TIMES_SQL, [run_ids]).fetchall())
