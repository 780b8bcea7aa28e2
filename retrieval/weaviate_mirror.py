"""Keeping a Weaviate collection in step with the DuckDB chunk index, and searching it.

DuckDB stays the record: ingest writes there first (events, provenance joins from retrievals to
chunk text), and Weaviate is a search index mirrored from it. A ``weaviate_mirror`` table in the
same file remembers which version (content hash, embedder) of each document was pushed to which
target (URL + collection), so a sync pushes only changed documents and removes deleted ones; if the
collection had to be created (new or wiped server), that memory is cleared and everything is pushed.
That table and its SQL are in store/weaviate_mirror_table.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import numpy as np

from teacherforge.retrieval.embedder import Embedder, QueryVectors
from teacherforge.retrieval.retriever import ScoredChunk, SearchMode, can_search
from teacherforge.retrieval.weaviate_store import WeaviateChunkStore, WeaviateStoreError
from teacherforge.store import chunk_tables
from teacherforge.store import weaviate_mirror_table as mirror_table
from teacherforge.store.table_info import has_table

ROW_COLUMNS = ["chunk_id", "document", "category", "section", "text", "page", "start_char", "end_char"]


@dataclass
class SyncReport:
    target: str
    pushed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks: int = 0
    created: bool = False


def document_rows(con: duckdb.DuckDBPyConnection, document: str) -> tuple[list[dict], np.ndarray]:
    """A document's chunks as Weaviate properties, plus their vectors (row-aligned)."""
    cols = chunk_tables.document_chunk_columns(con, document, ROW_COLUMNS)
    n = len(cols["chunk_id"])
    lists = {c: cols[c].tolist() for c in ROW_COLUMNS}
    rows = [{c: lists[c][i] for c in ROW_COLUMNS} for i in range(n)]
    for row in rows:
        row["section"] = row["section"] or ""
    vectors = np.stack(cols["embedding"]).astype(np.float32) if n else np.zeros((0, 0), np.float32)
    return rows, vectors


def sync_to_weaviate(
    con: duckdb.DuckDBPyConnection,
    store: WeaviateChunkStore,
    on_document: Callable[[str, int], None] | None = None,
) -> SyncReport:
    """Push every document whose indexed version differs from what the target holds."""
    mirror_table.ensure_mirror_table(con)
    target = store.settings.target
    report = SyncReport(target, created=store.ensure_collection())
    if report.created:
        mirror_table.forget_target(con, target)
    indexed = chunk_tables.document_versions(con)
    mirrored = mirror_table.mirrored_versions(con, target)
    for document in sorted(set(mirrored) - set(indexed)):
        store.delete_document(document)
        mirror_table.forget_document(con, target, document)
        report.removed.append(document)
    for document, version in sorted(indexed.items()):
        if mirrored.get(document) == version:
            report.unchanged += 1
            continue
        rows, vectors = document_rows(con, document)
        store.replace_document(document, rows, vectors)
        mirror_table.record_push(con, target, document, version, len(rows))
        report.pushed.append(document)
        report.chunks += len(rows)
        if on_document:
            on_document(document, len(rows))
    return report


def stale_documents(con: duckdb.DuckDBPyConnection, target: str) -> list[str]:
    """Documents whose indexed version the target does not hold (or holds but should not)."""
    indexed = chunk_tables.document_versions(con) if has_table(con, "documents") else {}
    if not has_table(con, "weaviate_mirror"):
        return sorted(indexed)
    mirrored = mirror_table.mirrored_versions(con, target)
    return sorted(d for d in set(indexed) | set(mirrored) if indexed.get(d) != mirrored.get(d))


class WeaviateRetriever:
    """The ``Retriever`` protocol over a Weaviate collection; categories and size come from DuckDB."""

    def __init__(self, store: WeaviateChunkStore, embedder: Embedder, categories: list[str], count: int):
        self.store = store
        self.embedder = embedder
        self._queries = QueryVectors(embedder)
        self._categories = categories
        self._count = count

    @classmethod
    def from_index(
        cls, con: duckdb.DuckDBPyConnection, store: WeaviateChunkStore, embedder: Embedder
    ) -> WeaviateRetriever:
        stale = stale_documents(con, store.settings.target)
        if stale:
            raise WeaviateStoreError(
                f"{store.settings.target} is behind the database ({len(stale)} document(s), "
                f"e.g. {stale[0]}); run 'teacherforge ingest ... --store weaviate' to sync it"
            )
        cats = chunk_tables.distinct_categories(con)
        return cls(store, embedder, sorted(cats), chunk_tables.chunk_count(con))

    def categories(self) -> list[str]:
        return list(self._categories)

    def count(self) -> int:
        return self._count

    def search(
        self,
        query: str,
        k: int = 3,
        mode: SearchMode = "hybrid",
        category: str | None = None,
        exclude_documents: set[str] | None = None,
    ) -> list[ScoredChunk]:
        if not can_search(mode, k, self._count):
            return []
        vector = None if mode == "bm25" else self._queries.vector(query)
        return self.store.query(query, vector, k, mode, category, exclude_documents)

    def close(self) -> None:
        self.store.client.close()
