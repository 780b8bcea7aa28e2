"""An embedding cache keyed by (model id, text hash), in the same DuckDB file as the chunk index.

Why: embedding is the slow part of ingest (~20 chunks/s on two busy cores). A changed file mostly
keeps its sentences, the same boilerplate recurs across files, and an interrupted ingest should
resume where it stopped; none of those texts should be embedded twice. Entries no chunk uses any
more are pruned at the end of each completed ingest, so the cache stays the size of the index.
The table and its SQL are in store/embedding_cache_table.py.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable

import duckdb
import numpy as np

from teacherforge.retrieval.embedder import Embedder
from teacherforge.store import embedding_cache_table

Progress = Callable[[int], None]


def text_hash(text: str) -> str:
    """sha256 hex of the UTF-8 text; DuckDB's ``sha256(text)`` gives the same string."""
    return hashlib.sha256(text.encode()).hexdigest()


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
        embedding_cache_table.ensure_embedding_cache(con)

    def lookup(self, hashes: list[str]) -> dict[str, np.ndarray]:
        """Text hash -> cached vector, for the hashes this model has a vector for."""
        return embedding_cache_table.cached_vectors(self._con, self.model_id, hashes)

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
        embedding_cache_table.store_vectors(self._con, self.model_id, hashes, vectors)
