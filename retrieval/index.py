"""The chunk index: documents and their chunks into the DuckDB tables, and all chunks back into memory.

The tables (``documents``, ``chunks``) live in the same DuckDB file as the event log; their SQL is
in store/chunk_tables.py. Documents are keyed by path (a JSONL record by ``path#id``): that key is
the document id. An unchanged file (same content hash and embedder) is left alone, a changed one
has its chunks replaced. Each chunk keeps its embedding in a FLOAT[dim] array column, its section
path, its character span and, for PDFs, its page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from teacherforge.retrieval import bm25_index
from teacherforge.retrieval.chunking import Chunk
from teacherforge.retrieval.documents import Document
from teacherforge.store import chunk_tables
from teacherforge.store.chunk_tables import ChunkRow
from teacherforge.store.table_info import has_table


def ensure_index_schema(con: duckdb.DuckDBPyConnection, dim: int) -> None:
    """Create the ``documents`` and ``chunks`` tables for embeddings of ``dim`` floats, if missing."""
    chunk_tables.ensure_chunk_tables(con, dim)


def replace_document(
    con: duckdb.DuckDBPyConnection, doc: Document, chunks: list[Chunk], vectors: np.ndarray, embedder: str
) -> None:
    """Swap a document's chunks atomically."""
    rows = [
        ChunkRow(c.chunk_id, c.document, c.category, c.section, c.start, c.end, c.text, v.tolist(), c.page)
        for c, v in zip(chunks, vectors, strict=True)
    ]
    chunk_tables.replace_document(con, doc.path, doc.content_hash, doc.title, doc.category, embedder, rows)


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
    pages: list[int | None] | None = None
    spans: list[tuple[int, int]] | None = None
    bm25: Any = None  # the persisted BM25 index for exactly these rows, if the file has one

    def page(self, i: int) -> int | None:
        return self.pages[i] if self.pages else None

    def record(self, i: int) -> dict:
        return {
            "chunk_id": self.ids[i],
            "document": self.documents[i],
            "category": self.categories[i],
            "section": self.sections[i],
            "text": self.texts[i],
            "page": self.page(i),
        }


def load_chunks(con: duckdb.DuckDBPyConnection) -> ChunkTable:
    """Read every chunk; columns come back as numpy arrays (100k rows in ~0.5 s, fetchall takes ~20 s)."""
    if not has_table(con, "chunks"):
        return ChunkTable([], [], [], [], [], np.zeros((0, 0), dtype=np.float32), None, [], [])
    cols = chunk_tables.chunk_columns(con)
    embedders = chunk_tables.document_embedders(con)
    n = len(cols["chunk_id"])
    ids = cols["chunk_id"].tolist()
    matrix = np.stack(cols["embedding"]).astype(np.float32, copy=False) if n else np.zeros((0, 0), np.float32)
    return ChunkTable(
        ids=ids,
        documents=cols["document"].tolist(),
        categories=[None if _missing(c) else c for c in cols["category"].tolist()],
        sections=cols["section"].tolist(),
        texts=cols["text"].tolist(),
        matrix=matrix,
        embedder=embedders[0] if len(embedders) == 1 else None,
        pages=[None if _missing(p) else int(p) for p in cols["page"].tolist()],
        spans=list(zip(cols["start_char"].tolist(), cols["end_char"].tolist(), strict=True)),
        bm25=bm25_index.load(con, ids),
    )


class IndexStateError(Exception):
    """The chunk index cannot serve searches as it is; the message says what to run."""


def index_embedder(con: duckdb.DuckDBPyConnection) -> str:
    """The one embedder every indexed document was embedded with (queries must use the same)."""
    if not has_table(con, "documents"):
        raise IndexStateError("the database has no chunks; run 'teacherforge ingest DOCS --db DB' first")
    names = chunk_tables.document_embedders(con)
    if not names:
        raise IndexStateError("the database has no chunks; run 'teacherforge ingest DOCS --db DB' first")
    if len(names) > 1:
        raise IndexStateError(f"chunks were embedded with {len(names)} models; re-ingest with one --embedder")
    return names[0]


def _missing(value: object) -> bool:
    """fetchnumpy returns NULLs of masked columns as None or NaN depending on the type."""
    return value is None or (isinstance(value, float) and value != value)
