"""Ingest: walk paths, load documents, chunk, embed, and index them, recording every file as an event."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
from teacherforge.store import index
from teacherforge.store.chunking import chunk_document
from teacherforge.store.documents import Document, SkipDocument, load_path
from teacherforge.store.embedder import load_embedder
from teacherforge.store.events import EventLog

CategoryFrom = Literal["folder", "frontmatter", "none"]


@dataclass
class IngestSummary:
    ingest_id: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0


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


def ingest(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    paths: list[Path],
    category_from: CategoryFrom = "folder",
    embedder_name: str | None = None,
    chunk_size: int = 800,
    overlap: int = 100,
    on_file: Callable[[str], None] | None = None,
) -> IngestSummary:
    files = _files(paths)
    embedder = load_embedder(embedder_name) if embedder_name else load_embedder()
    index.ensure_index_schema(con, embedder.dim)
    summary = IngestSummary(ingest_id=f"ingest-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}")
    log.append(summary.ingest_id, "ingest.started", {"paths": [str(p) for p in paths], "files": len(files)})
    for file in files:
        if on_file:
            on_file(str(file))
        try:
            docs = load_path(file)
        except (SkipDocument, OSError) as exc:
            summary.skipped.append((str(file), str(exc)))
            log.append(summary.ingest_id, "document.skipped", {"path": str(file), "reason": str(exc)})
            continue
        for doc in docs:
            doc.category = _category(doc, file, paths, category_from)
            state = index.document_state(con, doc.path)
            if state == (doc.content_hash, embedder.model_id):
                summary.unchanged.append(doc.path)
                continue
            chunks = chunk_document(doc, chunk_size, overlap)
            vectors = embedder.embed([c.text for c in chunks])
            index.replace_document(con, doc, chunks, vectors, embedder.model_id)
            (summary.updated if state else summary.added).append(doc.path)
            summary.chunks += len(chunks)
            log.append(
                summary.ingest_id,
                "document.ingested",
                {"path": doc.path, "chunks": len(chunks), "category": doc.category, "replaced": bool(state)},
            )
    log.append(
        summary.ingest_id,
        "ingest.finished",
        {
            "added": len(summary.added),
            "updated": len(summary.updated),
            "unchanged": len(summary.unchanged),
            "skipped": len(summary.skipped),
            "chunks": summary.chunks,
        },
    )
    return summary
