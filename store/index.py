"""The chunk index tables (``documents``, ``chunks``) in the same DuckDB file as the event log.

Documents are keyed by path; an unchanged file (same content hash) is left alone, a changed one
has its chunks replaced. Each chunk keeps its embedding in a FLOAT[dim] array column.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
from teacherforge.store.chunking import Chunk
from teacherforge.store.documents import Document


def ensure_index_schema(con: duckdb.DuckDBPyConnection, dim: int) -> None:
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


def document_state(con: duckdb.DuckDBPyConnection, path: str) -> tuple[str, str] | None:
    """(content hash, embedder) stored for a path, or None if never ingested."""
    rows = con.execute("SELECT content_hash, embedder FROM documents WHERE path = ?", [path]).fetchall()
    return (rows[0][0], rows[0][1]) if rows else None


def replace_document(
    con: duckdb.DuckDBPyConnection, doc: Document, chunks: list[Chunk], vectors: np.ndarray, embedder: str
) -> None:
    """Swap a document's chunks atomically."""
    con.execute("BEGIN")
    try:
        con.execute("DELETE FROM chunks WHERE document = ?", [doc.path])
        con.execute("DELETE FROM documents WHERE path = ?", [doc.path])
        con.execute(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
            [doc.path, doc.content_hash, doc.title, doc.category, len(chunks), embedder, dt.datetime.now()],
        )
        if chunks:
            con.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        c.chunk_id,
                        c.document,
                        c.category,
                        c.section,
                        c.start,
                        c.end,
                        c.text,
                        vectors[i].tolist(),
                    ]
                    for i, c in enumerate(chunks)
                ],
            )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


@dataclass
class ChunkTable:
    """All chunks in memory, row-aligned with their normalised embedding matrix."""

    ids: list[str]
    documents: list[str]
    categories: list[str | None]
    sections: list[str]
    texts: list[str]
    matrix: np.ndarray
    embedder: str | None

    def record(self, i: int) -> dict:
        return {
            "chunk_id": self.ids[i],
            "document": self.documents[i],
            "category": self.categories[i],
            "section": self.sections[i],
            "text": self.texts[i],
        }


def load_chunks(con: duckdb.DuckDBPyConnection) -> ChunkTable:
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "chunks" not in tables:
        return ChunkTable([], [], [], [], [], np.zeros((0, 0), dtype=np.float32), None)
    rows = con.execute(
        "SELECT chunk_id, document, category, section, text, embedding FROM chunks ORDER BY chunk_id"
    ).fetchall()
    embedders = [r[0] for r in con.execute("SELECT DISTINCT embedder FROM documents").fetchall()]
    matrix = np.array([r[5] for r in rows], dtype=np.float32) if rows else np.zeros((0, 0), np.float32)
    return ChunkTable(
        ids=[r[0] for r in rows],
        documents=[r[1] for r in rows],
        categories=[r[2] for r in rows],
        sections=[r[3] for r in rows],
        texts=[r[4] for r in rows],
        matrix=matrix,
        embedder=embedders[0] if len(embedders) == 1 else None,
    )
