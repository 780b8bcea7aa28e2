"""An embedding cache keyed by (model id, text hash), in the same DuckDB file as the chunk index.

Why: embedding is the slow part of ingest (~20 chunks/s on two busy cores). A changed file mostly
keeps its sentences, the same boilerplate recurs across files, and an interrupted ingest should
resume where it stopped; none of those texts should be embedded twice. Entries no chunk uses any
more are pruned at the end of each completed ingest, so the cache stays the size of the index.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable

import duckdb
import numpy as np

from teacherforge.retrieval.embedder import Embedder

Progress = Callable[[int], None]


def text_hash(text: str) -> str:
    """sha256 hex of the UTF-8 text; DuckDB's ``sha256(text)`` gives the same string."""
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_cache_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS embedding_cache (
            model VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, embedding FLOAT[] NOT NULL,
            PRIMARY KEY (model, text_hash)
        )"""
    )


class CachedEmbedder:
    """Wraps an embedder: looks texts up first, embeds the misses in batches, stores them at once."""

    def __init__(self, embedder: Embedder, con: duckdb.DuckDBPyConnection, batch_size: int = 64):
        self.embedder = embedder
        self.model_id = embedder.model_id
        self.dim = embedder.dim
        self.batch_size = batch_size
        self.hits = 0
        self.misses = 0
        self._con = con
        ensure_cache_schema(con)

    def lookup(self, hashes: list[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}
        sql = (
            "SELECT text_hash, embedding FROM embedding_cache "
            "WHERE model = ? AND text_hash IN (SELECT unnest(?::VARCHAR[]))"
        )
        cols = self._con.execute(sql, [self.model_id, sorted(set(hashes))]).fetchnumpy()
        pairs = zip(cols["text_hash"].tolist(), cols["embedding"], strict=True)
        return {h: np.asarray(v, dtype=np.float32) for h, v in pairs}

    def count_missing(self, texts: list[str]) -> int:
        """How many of these texts would have to be embedded (for a progress bar's total)."""
        hashes = [text_hash(t) for t in texts]
        found = self.lookup(hashes)
        return sum(1 for h in hashes if h not in found)

    def embed(self, texts: list[str], progress: Progress | None = None) -> np.ndarray:
        """Vectors for ``texts`` (row-aligned); ``progress(n)`` is called as texts get their vectors."""
        hashes = [text_hash(t) for t in texts]
        uses = Counter(hashes)
        found = self.lookup(hashes)
        self.hits += sum(uses[h] for h in found)
        if progress and found:
            progress(sum(uses[h] for h in found))
        pending = list({h: t for h, t in zip(hashes, texts, strict=True) if h not in found}.items())
        for i in range(0, len(pending), self.batch_size):
            batch = pending[i : i + self.batch_size]
            vectors = self.embedder.embed([t for _, t in batch])
            self._store([h for h, _ in batch], vectors)
            found.update({h: v for (h, _), v in zip(batch, vectors, strict=True)})
            self.misses += len(batch)
            if progress:
                progress(sum(uses[h] for h, _ in batch))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)

    def _store(self, hashes: list[str], vectors: np.ndarray) -> None:
        self._con.executemany(
            "INSERT OR IGNORE INTO embedding_cache VALUES (?, ?, ?)",
            [[self.model_id, h, v.tolist()] for h, v in zip(hashes, vectors, strict=True)],
        )


def prune_cache(con: duckdb.DuckDBPyConnection) -> int:
    """Drop entries that no indexed chunk uses (by the embedder recorded for its document)."""
    ensure_cache_schema(con)
    before = con.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
    con.execute(
        """
        DELETE FROM embedding_cache e WHERE NOT EXISTS (
            SELECT 1 FROM chunks c JOIN documents d ON d.path = c.document
            WHERE d.embedder = e.model AND sha256(c.text) = e.text_hash
        )"""
    )
    return before - con.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
