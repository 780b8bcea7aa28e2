"""The ``weaviate_mirror`` table: which version of each document was pushed to which Weaviate target.

Why: DuckDB stays the record and Weaviate a mirror of it. Remembering the (content hash, embedder)
pushed per (target, document), where a target is URL + collection, lets a sync push only changed
documents and remove deleted ones (retrieval/weaviate_mirror.py decides what to push).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from teacherforge.store.chunk_tables import Version


def ensure_mirror_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS weaviate_mirror (
            target VARCHAR NOT NULL, document VARCHAR NOT NULL, content_hash VARCHAR, embedder VARCHAR,
            n_chunks INTEGER, pushed_at TIMESTAMP, PRIMARY KEY (target, document)
        )"""
    )


def mirrored_versions(con: duckdb.DuckDBPyConnection, target: str) -> dict[str, Version]:
    """Document -> version the target was last given."""
    rows = con.execute(
        "SELECT document, content_hash, embedder FROM weaviate_mirror WHERE target = ?", [target]
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def forget_target(con: duckdb.DuckDBPyConnection, target: str) -> None:
    """Clear what the target holds (its collection was just created, so it is empty)."""
    con.execute("DELETE FROM weaviate_mirror WHERE target = ?", [target])


def forget_document(con: duckdb.DuckDBPyConnection, target: str, document: str) -> None:
    con.execute("DELETE FROM weaviate_mirror WHERE target = ? AND document = ?", [target, document])


def record_push(
    con: duckdb.DuckDBPyConnection, target: str, document: str, version: Version, n_chunks: int
) -> None:
    """The target now holds this version of the document, in ``n_chunks`` chunks."""
    con.execute(
        "INSERT OR REPLACE INTO weaviate_mirror VALUES (?, ?, ?, ?, ?, ?)",
        [target, document, version[0], version[1], n_chunks, dt.datetime.now()],
    )
