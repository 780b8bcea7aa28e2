"""What the quality report (dataset/report_data.py) reads from the SQL views for one run: plain rows.

Why here: each number in the dataset card traces to one query, and all of them are in this file, so
a reader can paste any of them into ``teacherforge sql`` (with the run id for ``?``). Rows come back
as dicts keyed by column name; no arithmetic happens here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

RUN_SQL = "SELECT * FROM runs WHERE run_id = ?"
SAMPLES_SQL = (
    "SELECT sample_id, status, tier, persona, technique, category, revisions FROM samples "
    "WHERE run_id = ? ORDER BY sample_id"
)
TURNS_SQL = "SELECT sample_id, role, content FROM turns WHERE run_id = ? ORDER BY sample_id, turn_index"
SAMPLE_DOCUMENTS_SQL = (
    "SELECT r.sample_id, list(DISTINCT c.document ORDER BY c.document) AS documents "
    "FROM retrievals r, unnest(r.chunk_ids) AS u(cid) JOIN chunks c ON c.chunk_id = u.cid "
    "WHERE r.run_id = ? GROUP BY 1"
)
SEED_RETRIEVALS_SQL = (
    "SELECT sample_id, chunk_ids FROM retrievals WHERE run_id = ? AND purpose = 'seed' ORDER BY ts"
)
PERSONAS_SQL = (
    "SELECT DISTINCT payload->'persona'->>'name' AS name, payload->'persona'->>'description' AS description "
    "FROM live_events WHERE run_id = ? AND type = 'sample.planned' "
    "AND (payload->'persona'->>'name') IS NOT NULL ORDER BY name"
)
CHUNK_TEXT_SQL = "SELECT chunk_id, text FROM chunks WHERE chunk_id IN ?"
LLM_USAGE_SQL = (
    "SELECT agent, model, endpoint, count(*) AS calls, count(error) AS errors, "
    "sum(reused::INT) AS reused, coalesce(sum(tokens_in), 0) AS tokens_in, "
    "coalesce(sum(tokens_out), 0) AS tokens_out FROM llm_calls WHERE run_id = ? "
    "GROUP BY ALL ORDER BY agent, model"
)
TEMPLATES_SQL = (
    "SELECT template, template_hash, count(*) AS calls FROM llm_calls "
    "WHERE run_id = ? AND template IS NOT NULL GROUP BY ALL ORDER BY template, template_hash"
)


def last_critiques_sql(dimensions: Sequence[str]) -> str:
    """Each sample's last critique (highest revision, then latest), with the score columns asked for."""
    columns = ", ".join(dimensions)
    return (
        f"SELECT sample_id, {columns} FROM critiques WHERE run_id = ? "
        "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY revision DESC, ts DESC) = 1"
    )


def _rows(con: duckdb.DuckDBPyConnection, sql: str, args: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def run_row(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """The run's row of the ``runs`` view, or None for an unknown run."""
    rows = _rows(con, RUN_SQL, [run_id])
    return rows[0] if rows else None


def sample_rows(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """sample_id, status, tier, persona, technique, category, revisions of each sample, by id."""
    return _rows(con, SAMPLES_SQL, [run_id])


def last_critiques(
    con: duckdb.DuckDBPyConnection, run_id: str, dimensions: Sequence[str]
) -> list[dict[str, Any]]:
    """sample_id and the ``dimensions`` scores of each sample's last critique."""
    return _rows(con, last_critiques_sql(dimensions), [run_id])


def turn_rows(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """sample_id, role, content of every current turn, in sample and turn order."""
    return _rows(con, TURNS_SQL, [run_id])


def sample_documents(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """sample_id and the sorted documents of every chunk retrieved for it (needs the chunk index)."""
    return _rows(con, SAMPLE_DOCUMENTS_SQL, [run_id])


def seed_retrievals(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """sample_id and chunk_ids of every seed retrieval, in time order."""
    return _rows(con, SEED_RETRIEVALS_SQL, [run_id])


def planned_personas(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, str]:
    """persona name → description, for every persona the run's samples were planned with."""
    return {r["name"]: r["description"] or "" for r in _rows(con, PERSONAS_SQL, [run_id]) if r["name"]}


def chunk_texts(con: duckdb.DuckDBPyConnection, chunk_ids: list[str]) -> dict[str, str]:
    """chunk id → text, for the ids still in the chunk index."""
    return {r["chunk_id"]: r["text"] for r in _rows(con, CHUNK_TEXT_SQL, [chunk_ids])}


def llm_usage(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """Calls, errors, reused calls and tokens per agent, model and endpoint."""
    return _rows(con, LLM_USAGE_SQL, [run_id])


def template_usage(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """Calls per prompt template and template hash."""
    return _rows(con, TEMPLATES_SQL, [run_id])
