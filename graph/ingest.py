"""Ingest: walk paths, load documents, chunk, embed, and index them, recording every file as an event.

Two passes: first every file is loaded and chunked (fast), so the number of chunks to embed is
known before the slow part starts and a progress bar can show a true total and chunks/s; then
the changed documents are embedded through the (model id, text hash) cache and written one by one,
so an interrupted ingest keeps what it finished and resumes from the cache. Last, the BM25 index
is rebuilt and stored in the file if the chunks changed (store/bm25_index.py).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import duckdb

from teacherforge.store import bm25_index, index
from teacherforge.store.chunking import Chunk, chunk_document
from teacherforge.store.documents import Document, SkipDocument, load_path
from teacherforge.store.embed_cache import CachedEmbedder, prune_cache
from teacherforge.store.embedder import load_embedder
from teacherforge.store.events import EventLog

CategoryFrom = Literal["folder", "frontmatter", "none"]


class IngestProgress(Protocol):
    """What a progress display needs: the planned work, then chunks as they get their vectors."""

    def planned(self, documents: int, chunks: int) -> None: ...

    def advance(self, chunks: int) -> None: ...


@dataclass
class IngestSummary:
    ingest_id: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    embedded: int = 0  # texts actually run through the model (the rest came from the cache)
    embed_s: float = 0.0

    @property
    def chunks_per_s(self) -> float | None:
        return self.embedded / self.embed_s if self.embedded and self.embed_s > 0 else None


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    replaced: bool


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return out


def _category(doc: Document, file: Path, roots: list[Path], mode: CategoryFrom) -> str | None:
    if mode == "none":
        return None
    if mode == "frontmatter" or doc.category:
        return doc.category
    for root in roots:
        if root.is_dir() and file.is_relative_to(root) and file.parent != root:
            return file.relative_to(root).parts[0]
    return file.parent.name or None


def _plan(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    summary: IngestSummary,
    files: list[Path],
    roots: list[Path],
    opts: dict,
) -> list[_Pending]:
    """Pass 1: load and chunk every file; keep only the documents whose text or embedder changed."""
    pending: list[_Pending] = []
    for file in files:
        if opts["on_file"]:
            opts["on_file"](str(file))
        try:
            docs = load_path(file)
        except (SkipDocument, OSError) as exc:
            summary.skipped.append((str(file), str(exc)))
            log.append(summary.ingest_id, "document.skipped", {"path": str(file), "reason": str(exc)})
            continue
        for doc in docs:
            doc.category = _category(doc, file, roots, opts["category_from"])
            state = index.document_state(con, doc.path)
            if state == (doc.content_hash, opts["model_id"]):
                summary.unchanged.append(doc.path)
                continue
            chunks = chunk_document(doc, opts["chunk_size"], opts["overlap"])
            pending.append(_Pending(doc, chunks, state is not None))
    return pending


def ingest(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    paths: list[Path],
    category_from: CategoryFrom = "folder",
    embedder_name: str | None = None,
    chunk_size: int = 800,
    overlap: int = 100,
    on_file: Callable[[str], None] | None = None,
    progress: IngestProgress | None = None,
) -> IngestSummary:
    files = _files(paths)
    embedder = CachedEmbedder(load_embedder(embedder_name) if embedder_name else load_embedder(), con)
    index.ensure_index_schema(con, embedder.dim)
    summary = IngestSummary(ingest_id=f"ingest-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}")
    log.append(summary.ingest_id, "ingest.started", {"paths": [str(p) for p in paths], "files": len(files)})
    opts = {
        "on_file": on_file,
        "category_from": category_from,
        "model_id": embedder.model_id,
        "chunk_size": chunk_size,
        "overlap": overlap,
    }
    pending = _plan(con, log, summary, files, paths, opts)
    if progress:
        progress.planned(len(pending), sum(len(p.chunks) for p in pending))
    for item in pending:
        doc, chunks = item.doc, item.chunks
        misses_before, started = embedder.misses, time.perf_counter()
        vectors = embedder.embed([c.text for c in chunks], progress.advance if progress else None)
        if embedder.misses > misses_before:
            summary.embed_s += time.perf_counter() - started
        index.replace_document(con, doc, chunks, vectors, embedder.model_id)
        (summary.updated if item.replaced else summary.added).append(doc.path)
        summary.chunks += len(chunks)
        log.append(
            summary.ingest_id,
            "document.ingested",
            {
                "path": doc.path,
                "chunks": len(chunks),
                "embedded": embedder.misses - misses_before,
                "category": doc.category,
                "replaced": item.replaced,
            },
        )
    summary.embedded = embedder.misses
    pruned = prune_cache(con) if pending else 0
    bm25_rebuilt = bm25_index.refresh(con)
    log.append(
        summary.ingest_id,
        "ingest.finished",
        {
            "added": len(summary.added),
            "updated": len(summary.updated),
            "unchanged": len(summary.unchanged),
            "skipped": len(summary.skipped),
            "chunks": summary.chunks,
            "embedded": summary.embedded,
            "cache_pruned": pruned,
            "bm25_rebuilt": bm25_rebuilt,
            "embedder": embedder.model_id,
        },
    )
    return summary
