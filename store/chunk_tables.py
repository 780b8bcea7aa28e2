"""The chunk index tables, ``documents`` and ``chunks``, in the same DuckDB file as the event log.

Why here: every statement that reads or writes these two tables lives in one module, so their
columns are named once. retrieval/ turns documents and chunks into the plain rows these functions
take, and reads whole columns back as numpy arrays (``fetchnumpy``: 100k rows in ~0.5 s where
``fetchall`` takes ~20 s).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

import duckdb
import numpy as np

from teacherforge.store.table_info import has_column

# A document's indexed version: (content hash, embedder).
Version = tuple[str, str]


class ChunkRow(NamedTuple):
    """One row of ``chunks``, fields in insert order."""

    chunk_id: str
    document: str
    category: str | None
    section: str | None
    start_char: int
    end_char: int
    text: str
    embedding: list[float]
    page: int | None


CHUNK_COLUMNS = ", ".join(ChunkRow._fields)


def ensure_chunk_tables(con: duckdb.DuckDBPyConnection, dim: int) -> None:
    """Create ``documents`` and ``chunks`` (embeddings as FLOAT[dim]) if missing; add later columns."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS documents (
            path VARCHAR PRIMARY KEY, content_hash VARCHAR NOT NULL, title VARCHAR,
            category VARCHAR, n_chunks INTEGER, embedder VARCHAR, ingested_at TIMESTAMP
        )"""
    )
    con.execute(
        f"""
        CREATE TABLE IF NOT EXISTS chunks (
            chunk_id VARCHAR PRIMARY KEY, document VARCHAR NOT NULL, category VARCHAR, section VARCHAR,
            start_char INTEGER, end_char INTEGER, text VARCHAR NOT NULL, embedding FLOAT[{dim}]
        )"""
    )
    # Added after the first release: files ingested before it get the column, NULL for old rows.
    con.execute("ALTER TABLE chunks ADD COLUMN IF NOT EXISTS page INTEGER")


def document_version(con: duckdb.DuckDBPyConnection, path: str) -> Version | None:
    """(content hash, embedder) stored for a path, or None if never ingested."""
    rows = con.execute("SELECT content_hash, embedder FROM documents WHERE path = ?", [path]).fetchall()
    return (rows[0][0], rows[0][1]) if rows else None


def document_versions(con: duckdb.DuckDBPyConnection) -> dict[str, Version]:
    """Every indexed document's path and version."""
    rows = con.execute("SELECT path, content_hash, embedder FROM documents").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def paths_with_content(con: duckdb.DuckDBPyConnection, content_hash: str, other_than: str) -> list[str]:
    """Paths of indexed documents with this content hash, except ``other_than``, sorted."""
    rows = con.execute(
        "SELECT path FROM documents WHERE content_hash = ? AND path <> ? ORDER BY path",
        [content_hash, other_than],
    ).fetchall()
    return [r[0] for r in rows]


def replace_document(
    con: duckdb.DuckDBPyConnection,
    path: str,
    content_hash: str,
    title: str | None,
    category: str | None,
    embedder: str,
    chunk_rows: list[ChunkRow],
) -> None:
    """Swap a document's row and chunks in one transaction (a reader never sees half a document)."""
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM chunks WHERE document = ?", [path])
        con.execute("DELETE FROM documents WHERE path = ?", [path])
        con.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
            [path, content_hash, title, category, len(chunk_rows), embedder, dt.datetime.now()],
        )
        if chunk_rows:
            con.executemany(
                f"INSERT INTO chunks ({CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [list(row) for row in chunk_rows],
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def chunk_columns(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Every chunk in chunk id order, column by column: chunk_id, document, category, section ('' for
    NULL), text, embedding, page (NULL in files from before the column existed), start_char, end_char."""
    page = "page" if has_column(con, "chunks", "page") else "NULL::INTEGER AS page"
    return con.execute(
        "SELECT chunk_id, document, category, coalesce(section, '') AS section, text, embedding, "
        f"{page}, start_char, end_char FROM chunks ORDER BY chunk_id"
    ).fetchnumpy()


def document_chunk_columns(
    con: duckdb.DuckDBPyConnection, document: str, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """One document's chunks in chunk id order: the named ``chunks`` columns plus ``embedding``."""
    return con.execute(
        f"SELECT {', '.join(columns)}, embedding FROM chunks WHERE document = ? ORDER BY chunk_id",
        [document],
    ).fetchnumpy()


def chunk_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every chunk id, sorted."""
    return con.execute("SELECT chunk_id FROM chunks ORDER BY chunk_id").fetchnumpy()["chunk_id"].tolist()


def chunk_texts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every chunk's text, in chunk id order (row-aligned with :func:`chunk_ids`)."""
    return con.execute("SELECT text FROM chunks ORDER BY chunk_id").fetchnumpy()["text"].tolist()


def chunk_count(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT count(*) FROM chunks").fetchone()[0])


def distinct_categories(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The chunks' distinct categories, NULL left out ('' kept), in no particular order."""
    sql = "SELECT DISTINCT category FROM chunks WHERE category IS NOT NULL"
    return [r[0] for r in con.execute(sql).fetchall()]


def document_embedders(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The distinct embedders the indexed documents were embedded with."""
    return [r[0] for r in con.execute("SELECT DISTINCT embedder FROM documents").fetchall()]


# Point lookups that generation needs outside the retriever (dry-run sizing, seed chunks, categories):
# the retriever loads the whole table for search; the planner and the feedback loop read a few rows.


def first_chunks(con: duckdb.DuckDBPyConnection, k: int) -> list[dict[str, Any]]:
    """The first ``k`` chunks by id: stand-ins of typical size when a dry run sizes prompts."""
    rows = con.execute(
        "SELECT chunk_id, document, section, text FROM chunks ORDER BY chunk_id LIMIT ?", [k]
    ).fetchall()
    return [{"chunk_id": r[0], "document": r[1], "section": r[2], "text": r[3]} for r in rows]


def chunks_by_id(con: duckdb.DuckDBPyConnection, chunk_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every column of the chunks with these ids, by id (ids no longer in the index are absent).

    Why: a seeded sample carries its chunks' text, which a seed only names by id.
    """
    cur = con.cursor()
    rows = cur.execute("SELECT * FROM chunks WHERE list_contains(?, chunk_id)", [chunk_ids]).fetchall()
    names = [d[0] for d in cur.description]
    return {r["chunk_id"]: r for r in (dict(zip(names, row, strict=True)) for row in rows)}


def chunk_categories(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The corpus's non-empty categories, sorted: a dry run plans with them without loading the index."""
    sql = "SELECT DISTINCT category FROM chunks WHERE coalesce(category, '') <> '' ORDER BY 1"
    return [r[0] for r in con.execute(sql).fetchall()]
