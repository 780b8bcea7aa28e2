"""Weaviate as the scale-out chunk store, behind the same ``Retriever`` result type.

Why these choices:
- Vectors are *self-provided*: we push the vectors DuckDB already holds, so both backends rank
  vector search identically and the query embedding is the same model on both sides.
- Chunk ids map to deterministic UUIDs (uuid5), so re-importing a document is idempotent.
- Hybrid search uses the same fusion as the DuckDB store: relative-score fusion with ``alpha``
  weighting the vector side (or ranked fusion, Weaviate's RRF); BM25 runs on ``text`` only, the
  other properties are for filters and display.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from teacherforge.retrieval.retriever import ScoredChunk, SearchMode, check_mode
from teacherforge.retrieval.weaviate_client import (
    DEFAULT_COLLECTION,
    WeaviateSettings,
    WeaviateStoreError,
    connect_weaviate,
    translated,
)

__all__ = [
    "DEFAULT_COLLECTION",
    "WeaviateChunkStore",
    "WeaviateSettings",
    "WeaviateStoreError",
    "connect_weaviate",
]

RETURN_PROPERTIES = ["chunk_id", "document", "category", "section", "text", "page"]
IMPORT_BATCH = 256


class WeaviateImportError(WeaviateStoreError):
    """Some objects were rejected by the server; ``errors`` maps chunk id to the server's reason."""

    def __init__(self, document: str, errors: dict[str, str], total: int):
        first = "; ".join(f"{cid}: {msg}" for cid, msg in list(errors.items())[:3])
        super().__init__(f"Weaviate rejected {len(errors)} of {total} chunk(s) of {document} ({first})")
        self.document = document
        self.errors = errors


def chunk_uuid(chunk_id: str) -> str:
    from weaviate.util import generate_uuid5

    return generate_uuid5(chunk_id)


class WeaviateChunkStore:
    """One collection of chunks: schema, per-document replace with error reporting, and queries."""

    def __init__(self, client: Any, settings: WeaviateSettings):
        self.client = client
        self.settings = settings
        self.collection = client.collections.use(settings.collection)

    def ensure_collection(self) -> bool:
        """Create the collection if it is missing; True if it was created (so it is empty)."""
        with translated("schema check", self.settings):
            if self.client.collections.exists(self.settings.collection):
                return False
        with translated("collection create", self.settings):
            self._create()
        return True

    def _create(self) -> None:
        from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

        def stored(name: str, data_type: DataType = DataType.TEXT, **kw: Any) -> Property:
            return Property(name=name, data_type=data_type, skip_vectorization=True, **kw)

        def keyword(name: str) -> Property:  # exact-match filters, not part of BM25
            return stored(name, tokenization=Tokenization.FIELD, index_searchable=False)

        cosine = {"distance_metric": VectorDistances.COSINE}
        flat = self.settings.index == "flat"
        index = Configure.VectorIndex.flat(**cosine) if flat else Configure.VectorIndex.hnsw(**cosine)
        self.client.collections.create(
            self.settings.collection,
            description="TeacherForge chunks mirrored from the DuckDB index (vectors self-provided).",
            vector_config=Configure.Vectors.self_provided(vector_index_config=index),
            properties=[
                keyword("chunk_id"),
                keyword("document"),
                keyword("category"),
                stored("section", index_searchable=False),
                stored("text", tokenization=Tokenization.WORD),
                stored("page", DataType.INT),
                stored("start_char", DataType.INT),
                stored("end_char", DataType.INT),
            ],
        )

    def delete_document(self, document: str) -> None:
        from weaviate.classes.query import Filter

        with translated("delete", self.settings):
            self.collection.data.delete_many(where=Filter.by_property("document").equal(document))

    def replace_document(self, document: str, rows: list[dict], vectors: np.ndarray) -> int:
        """Delete a document's chunks, then import the new ones in batches; raise on any rejection."""
        self.delete_document(document)
        errors: dict[str, str] = {}
        for start in range(0, len(rows), IMPORT_BATCH):
            batch = rows[start : start + IMPORT_BATCH]
            errors.update(self._insert(batch, vectors[start : start + len(batch)]))
        if errors:
            raise WeaviateImportError(document, errors, len(rows))
        return len(rows)

    def _insert(self, batch: list[dict], vectors: np.ndarray) -> dict[str, str]:
        """One gRPC BatchObjects call; returns chunk id -> the server's reason for each rejection."""
        from weaviate.classes.data import DataObject
        from weaviate.exceptions import WeaviateInsertManyAllFailedError

        objects = [
            DataObject(properties=row, vector=vector.tolist(), uuid=chunk_uuid(row["chunk_id"]))
            for row, vector in zip(batch, vectors, strict=True)
        ]
        try:
            with translated("import", self.settings):
                result = self.collection.data.insert_many(objects)
        except WeaviateStoreError as exc:
            if not isinstance(exc.__cause__, WeaviateInsertManyAllFailedError):
                raise
            text = str(exc.__cause__).split("Here is the set of all errors:", 1)[-1].strip()
            return {row["chunk_id"]: text.splitlines()[0] if text else "rejected" for row in batch}
        return {batch[i]["chunk_id"]: getattr(e, "message", str(e)) for i, e in result.errors.items()}

    def query(
        self,
        text: str,
        vector: np.ndarray | None,
        k: int,
        mode: SearchMode,
        category: str | None,
        exclude_documents: set[str] | None,
    ) -> list[ScoredChunk]:
        from weaviate.classes.query import Filter

        check_mode(mode)
        parts = [Filter.by_property("category").equal(category)] if category is not None else []
        parts += [Filter.by_property("document").not_equal(d) for d in sorted(exclude_documents or ())]
        filters = Filter.all_of(parts) if len(parts) > 1 else (parts[0] if parts else None)
        with translated(f"{mode} search", self.settings):
            return self._query(text, vector, k, mode, filters)

    def _query(
        self, text: str, vector: np.ndarray | None, k: int, mode: str, filters: Any
    ) -> list[ScoredChunk]:
        from weaviate.classes.query import HybridFusion, MetadataQuery

        common = {"limit": k, "filters": filters, "return_properties": RETURN_PROPERTIES}
        q = self.collection.query
        if mode == "vector":
            res = q.near_vector(vector.tolist(), return_metadata=MetadataQuery(distance=True), **common)
            return [_scored(o, 1.0 - float(o.metadata.distance)) for o in res.objects]
        if mode == "bm25":
            res = q.bm25(text, query_properties=["text"], return_metadata=MetadataQuery(score=True), **common)
        else:
            fusion = HybridFusion.RANKED if self.settings.fusion == "rrf" else HybridFusion.RELATIVE_SCORE
            res = q.hybrid(
                text,
                vector=vector.tolist(),
                alpha=self.settings.alpha,
                fusion_type=fusion,
                query_properties=["text"],
                return_metadata=MetadataQuery(score=True),
                **common,
            )
        return [_scored(o, float(o.metadata.score or 0.0)) for o in res.objects]


def _scored(obj: Any, score: float) -> ScoredChunk:
    p = obj.properties
    page = p.get("page")
    return ScoredChunk(
        chunk_id=str(p["chunk_id"]),
        score=score,
        document=str(p["document"]),
        category=p.get("category"),
        section=str(p.get("section") or ""),
        text=str(p["text"]),
        page=int(page) if page is not None else None,
    )
