"""Retrieval over the chunk index: exact vector top-k, BM25, and their fusion (hybrid).

The index is small enough to hold in memory (100k chunks x 384 floats = 150 MB), so search is a
numpy matrix product plus a ``bm25s`` query: no database round trip per turn, and safe to call
from worker threads while the event writer owns the DuckDB file. Measured at 100k chunks, the
numpy product takes ~25 ms where DuckDB's ``array_cosine_similarity`` takes 110-200 ms
(docs/retrieval.md). Every backend (this one, Weaviate) implements :class:`Retriever`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol, get_args

import numpy as np

from teacherforge.retrieval import bm25_index
from teacherforge.retrieval.embedder import Embedder, QueryVectors
from teacherforge.retrieval.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, RRF_K, Fusion, fuse
from teacherforge.retrieval.index import ChunkTable

SearchMode = Literal["vector", "bm25", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)


@dataclass(frozen=True)
class ScoredChunk:
    chunk_id: str
    score: float
    document: str
    category: str | None
    section: str
    text: str
    page: int | None = None

    def as_dict(self) -> dict:
        return {
            "chunk_id": self.chunk_id,
            "score": round(self.score, 6),
            "document": self.document,
            "category": self.category,
            "section": self.section,
            "text": self.text,
            "page": self.page,
        }


class Retriever(Protocol):
    """One interface for every store. Scores are higher-is-better: cosine for ``vector``, BM25 for
    ``bm25``, the fused score for ``hybrid`` (retrieval/fusion.py)."""

    def search(
        self,
        query: str,
        k: int = 3,
        mode: SearchMode = "hybrid",
        category: str | None = None,
        exclude_documents: set[str] | None = None,
    ) -> list[ScoredChunk]: ...

    def categories(self) -> list[str]: ...

    def count(self) -> int: ...


@lru_cache(maxsize=1)
def _single_thread_blas() -> bool:
    """Pin BLAS to one thread, once per process; True if threadpoolctl could do it.

    A matrix-vector product is memory-bound, so a second thread gains little; on shared cores it
    costs a lot: OpenBLAS waited ~20 ms per call for its worker threads here (10k chunks: 20 ms
    with two threads, 0.6 ms with one). The limit is process-wide; ONNX Runtime has its own pool.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(1, user_api="blas")
    return True


def check_mode(mode: str) -> None:
    if mode not in SEARCH_MODES:
        raise ValueError(f"search mode must be one of {', '.join(SEARCH_MODES)} (got '{mode}')")


def can_search(mode: str, k: int, size: int) -> bool:
    """The checks every backend makes before a search, so all answer alike: an unknown mode is an
    error (``ValueError``); ``k < 1`` or an empty index (``size`` chunks) has nothing to return."""
    check_mode(mode)
    return k >= 1 and size > 0


class InMemoryRetriever:
    """Default retriever, built from the DuckDB chunk table."""

    def __init__(
        self,
        table: ChunkTable,
        embedder: Embedder,
        fusion: Fusion = DEFAULT_FUSION,
        alpha: float | None = None,
        rrf_k: int = RRF_K,
    ):
        import bm25s

        self.table = table
        self.embedder = embedder
        self._queries = QueryVectors(embedder, known=_chunk_vectors(table))
        self.fusion = fusion
        self.alpha = alpha if alpha is not None else (DEFAULT_ALPHA if fusion == "relative" else 0.5)
        self.rrf_k = rrf_k
        self._bm25 = table.bm25 if table.bm25 is not None else bm25_index.build(table.texts)
        self._bm25s = bm25s
        _single_thread_blas()
        self._categories = np.array(table.categories, dtype=object)
        self._documents = np.array(table.documents, dtype=object)

    def categories(self) -> list[str]:
        return sorted({c for c in self.table.categories if c})

    def count(self) -> int:
        return len(self.table.ids)

    def _mask(self, category: str | None, exclude_documents: set[str] | None) -> np.ndarray:
        mask = np.ones(len(self.table.ids), dtype=bool)
        if category is not None:
            mask &= self._categories == category
        if exclude_documents:
            mask &= ~np.isin(self._documents, list(exclude_documents))
        return mask

    def vector_scores(self, query: str) -> np.ndarray:
        return self.table.matrix @ self._queries.vector(query)

    def bm25_scores(self, query: str) -> np.ndarray:
        tokens = self._bm25s.tokenize(
            [query], stopwords=bm25_index.SETTINGS["stopwords"], show_progress=False
        )
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
        if not can_search(mode, k, self.count()):
            return []
        mask = self._mask(category, exclude_documents)
        if mode == "vector":
            scores = self.vector_scores(query)
        elif mode == "bm25":
            scores = self.bm25_scores(query)
            mask &= scores > 0  # a chunk sharing no query term is not a keyword hit
        else:
            dense, sparse = self.vector_scores(query), self.bm25_scores(query)
            scores = fuse(dense, sparse, mask, self.fusion, self.alpha, self.rrf_k)
        scores = np.where(mask, scores, -np.inf)
        order = _top_k(scores, k)
        return [self._scored(i, float(scores[i])) for i in order if np.isfinite(scores[i])]

    def _scored(self, i: int, score: float) -> ScoredChunk:
        t = self.table
        return ScoredChunk(
            t.ids[i], score, t.documents[i], t.categories[i], t.sections[i], t.texts[i], t.page(i)
        )


def _chunk_vectors(table: ChunkTable) -> dict[str, np.ndarray]:
    """Each chunk's text -> its stored vector (read-only rows): a query that is a chunk's text, like
    a plan's anchor search, needs no second embedding. Ingest embedded exactly these texts."""
    if not len(table.ids):
        return {}
    rows = table.matrix.view()
    rows.setflags(write=False)
    return dict(zip(table.texts, rows, strict=True))


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first; ties keep row order (chunk id order)."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    threshold = scores[part].min()
    candidates = np.flatnonzero(scores >= threshold)  # all ties at the cut, so the result is stable
    return candidates[np.argsort(-scores[candidates], kind="stable")][:k]


def _query_tokens(tokenized) -> list[str]:
    inverse = {v: k for k, v in tokenized.vocab.items()}
    return [inverse[i] for i in tokenized.ids[0]]
