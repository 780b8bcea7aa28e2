"""Ingest: walk paths, load documents, chunk, embed, and index them, recording every file as an event.

Two passes: first every file is loaded and chunked (fast), so the number of chunks to embed is
known before the slow part starts and a progress bar can show a true total and chunks/s; then
the changed documents are embedded through the (model id, text hash) cache and written one by one,
so an interrupted ingest keeps what it finished and resumes from the cache. Last, the BM25 index
is rebuilt and stored in the file if the chunks changed (retrieval/bm25_index.py).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import duckdb

from teacherforge.retrieval import bm25_index, index
from teacherforge.retrieval.chunking import Chunk, chunk_document
from teacherforge.retrieval.documents import MAX_FILE_BYTES, Document, SkipDocument, load_path
from teacherforge.retrieval.embed_cache import CachedEmbedder
from teacherforge.retrieval.embedder import load_embedder
from teacherforge.retrieval.redact import redact_document
from teacherforge.store import chunk_tables
from teacherforge.store.database import connect
from teacherforge.store.embedding_cache_table import prune_embedding_cache
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

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
    notes: list[tuple[str, str]] = field(default_factory=list)  # ingested, but worth a look (encoding)
    chunks: int = 0
    embedded: int = 0  # texts actually run through the model (the rest came from the cache)
    embed_s: float = 0.0

    @property
    def chunks_per_s(self) -> float | None:
        return self.embedded / self.embed_s if self.embedded and self.embed_s > 0 else None

    @property
    def all_skipped(self) -> bool:
        """Files were given and none is in the index now: a failed ingest, not a quiet success.

        Unchanged documents count as present, so re-ingesting a folder (a no-op) is not this.
        """
        return bool(self.skipped) and not (self.added or self.updated or self.unchanged)

    def skip_kinds(self) -> list[tuple[str, int]]:
        """How many were skipped for each kind of reason, most first: the one-line summary of a failure."""
        counts = Counter(skip_kind(reason) for _, reason in self.skipped)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# Reason fragment (from retrieval/documents.py, loaders_rich.py and _plan) -> its short kind; first match.
SKIP_KINDS = [
    ("unsupported file type", "unsupported type"),
    ("empty file", "empty"),
    ("binary file", "binary"),
    ("not UTF-8", "not UTF-8"),
    ("MiB limit", "too large"),
    ("encrypted PDF", "encrypted"),
    ("same text as", "duplicate"),
    ("duplicate record id", "duplicate"),
    ("needs the '", "missing package"),
    ("loader error", "loader error"),
    ("unreadable", "unreadable"),
    ("is not JSON", "unreadable"),
    ("not valid YAML", "unreadable"),
    ("no text", "no text"),
    ("has no", "no text"),
]


def skip_kind(reason: str) -> str:
    """The short kind of a skip reason ('unsupported type', 'empty', …), for counting them."""
    return next((kind for fragment, kind in SKIP_KINDS if fragment in reason), "other")


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]
    replaced: bool
    redacted: dict[str, int] = field(default_factory=dict)  # PII findings per kind (--redact-pii)


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


def _skip(log: EventLog, summary: IngestSummary, path: str, reason: str, **extra) -> None:
    summary.skipped.append((path, reason))
    log.append(summary.ingest_id, "document.skipped", {"path": path, "reason": reason, **extra})


def _duplicate_in_index(con: duckdb.DuckDBPyConnection, doc: Document) -> str | None:
    """Another indexed document with the same text whose file still exists (a renamed file is not one)."""
    paths = chunk_tables.paths_with_content(con, doc.content_hash, other_than=doc.path)
    return next((p for p in paths if Path(p.split("#", 1)[0]).exists()), None)


def _plan(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    summary: IngestSummary,
    files: list[Path],
    roots: list[Path],
    opts: dict,
) -> list[_Pending]:
    """Pass 1: load and chunk every file; keep only the documents whose text or embedder changed.

    Exact duplicates (same text under another path, or a JSONL id used twice) are skipped: a second
    copy would only make retrieval return the same passage twice and crowd out other sources.
    """
    pending: list[_Pending] = []
    seen_text: dict[str, str] = {}
    seen_paths: set[str] = set()
    for file in files:
        if opts["on_file"]:
            opts["on_file"](str(file))
        try:
            docs = load_path(file, opts["max_bytes"])
        except (SkipDocument, OSError) as exc:
            _skip(log, summary, str(file), str(exc))
            continue
        except Exception as exc:  # a loader bug must not stop the other files; it is recorded with its type
            _skip(log, summary, str(file), f"loader error ({type(exc).__name__}: {exc}); please report it")
            continue
        for doc in docs:
            if doc.path in seen_paths:
                reason = "duplicate record id in the same file; give each record its own id"
                _skip(log, summary, doc.path, reason)
                continue
            seen_paths.add(doc.path)
            redacted = redact_document(doc) if opts["redact_pii"] else {}  # before hashing: it is the text
            first = seen_text.setdefault(doc.content_hash, doc.path)
            duplicate_of = first if first != doc.path else None
            doc.category = _category(doc, file, roots, opts["category_from"])
            state = chunk_tables.document_version(con, doc.path)
            if duplicate_of is None and state == (doc.content_hash, opts["model_id"]):
                summary.unchanged.append(doc.path)
                continue
            duplicate_of = duplicate_of or _duplicate_in_index(con, doc)
            if duplicate_of is not None:
                reason = f"same text as {duplicate_of}; keep one copy"
                _skip(log, summary, doc.path, reason, duplicate_of=duplicate_of)
                continue
            if doc.encoding != "utf-8":
                note = f"read as {doc.encoding} (not UTF-8); check accented letters"
                summary.notes.append((doc.path, note))
            chunks = chunk_document(doc, opts["chunk_size"], opts["overlap"])
            pending.append(_Pending(doc, chunks, state is not None, redacted))
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
    max_file_bytes: int = MAX_FILE_BYTES,
    redact_pii: bool = False,
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
        "max_bytes": max_file_bytes,
        "redact_pii": redact_pii,
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
                "encoding": doc.encoding,
                **({"pii_redacted": item.redacted} if item.redacted else {}),
            },
        )
    summary.embedded = embedder.misses
    pruned = prune_embedding_cache(con) if pending else 0
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


def ingest_into(db: Path, paths: list[Path]) -> IngestSummary:
    """Ingest ``paths`` into the database file ``db`` with default settings, then close it.

    For fixtures, benchmarks and evals that need an ingested corpus; the CLI's ``ingest`` adds the
    writer lock, progress and a snapshot for readers.
    """
    con = connect(db)
    try:
        create_views(con)
        log = EventLog(con)
        try:
            return ingest(con, log, paths)
        finally:
            log.close()
    finally:
        con.close()
