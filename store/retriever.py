"""Retrieval over the chunk index: exact vector top-k, BM25, and their reciprocal-rank fusion.

The index is small enough to hold in memory (100k chunks x 384 floats = 150 MB), so search is a
numpy matrix product plus a ``bm25s`` query: no database round trip per turn, and safe to call
from worker threads while the event writer owns the DuckDB file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from teacherforge.store.embedder import Embedder
from teacherforge.store.index import ChunkTable

SearchMode = Literal["vector", "bm25", "hybrid"]
RRF_K = 60


@dataclass(frozen=True)
class ScoredChunk:
    chunk_id: str
    score: float
    document: str
    category: str | None
    section: str
    text: str

    def as_dict(self) -> dict:
        return {
            "chunk_id": self.chunk_id,
            "score": round(self.score, 6),
            "document": self.document,
            "category": self.category,
            "section": self.section,
            "text": self.text,
        }


class Retriever(Protocol):
    def search(
        self,
        query: str,
        k: int = 3,
        mode: SearchMode = "hybrid",
        category: str | None = None,
        exclude_documents: set[str] | None = None,
    ) -> list[ScoredChunk]: ...


class InMemoryRetriever:
    """Default retriever, built from the DuckDB chunk table."""

    def __init__(self, table: ChunkTable, embedder: Embedder):
        import bm25s

        self.table = table
        self.embedder = embedder
        self._bm25 = bm25s.BM25()
        if table.ids:
            self._bm25.index(
                bm25s.tokenize(table.texts, stopwords="en", show_progress=False), show_progress=False
            )
        self._bm25s = bm25s

    def categories(self) -> list[str]:
        return sorted({c for c in self.table.categories if c})

    def _mask(self, category: str | None, exclude_documents: set[str] | None) -> np.ndarray:
        mask = np.ones(len(self.table.ids), dtype=bool)
        if category is not None:
            mask &= np.array([c == category for c in self.table.categories])
        if exclude_documents:
            mask &= np.array([d not in exclude_documents for d in self.table.documents])
        return mask

    def vector_scores(self, query: str) -> np.ndarray:
        return self.table.matrix @ self.embedder.embed([query])[0]

    def bm25_scores(self, query: str) -> np.ndarray:
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return np.zeros(len(self.table.ids), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(_query_tokens(tokens)), dtype=np.float32)

    def search(
        self,
        query: str,
        k: int = 3,
        mode: SearchMode = "hybrid",
        category: str | None = None,
        exclude_documents: set[str] | None = None,
    ) -> list[ScoredChunk]:
        if not self.table.ids:
            return []
        mask = self._mask(category, exclude_documents)
        if mode == "vector":
            scores = self.vector_scores(query)
        elif mode == "bm25":
            scores = self.bm25_scores(query)
        else:
            scores = _rrf([(self.vector_scores(query), False), (self.bm25_scores(query), True)], mask)
        scores = np.where(mask, scores, -np.inf)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self._scored(i, float(scores[i])) for i in order if np.isfinite(scores[i])]

    def _scored(self, i: int, score: float) -> ScoredChunk:
        t = self.table
        return ScoredChunk(t.ids[i], score, t.documents[i], t.categories[i], t.sections[i], t.texts[i])


def _query_tokens(tokenized) -> list[str]:
    inverse = {v: k for k, v in tokenized.vocab.items()}
    return [inverse[i] for i in tokenized.ids[0]]


def _rrf(score_lists: list[tuple[np.ndarray, bool]], mask: np.ndarray) -> np.ndarray:
    """Reciprocal rank fusion over the rows allowed by ``mask``.

    For a sparse method (BM25) a row with score 0 matched no query term and gets no vote.
    """
    fused = np.zeros(len(mask), dtype=np.float64)
    for scores, sparse in score_lists:
        ranked = np.argsort(-np.where(mask, scores, -np.inf), kind="stable")
        ranks = np.empty(len(ranked), dtype=np.int64)
        ranks[ranked] = np.arange(1, len(ranked) + 1)
        votes = 1.0 / (RRF_K + ranks)
        fused += np.where(scores > 0, votes, 0.0) if sparse else votes
    return fused
