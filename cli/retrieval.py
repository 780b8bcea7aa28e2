"""CLI helpers for retrieval: the ingest progress bar, ``--store duckdb|weaviate`` and its options.

Kept out of ``cli.py`` so the command functions stay thin: each command adds the shared option
types below and calls one helper. Progress and messages go to stderr, data to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from teacherforge.retrieval.index import IndexStateError
from teacherforge.retrieval.ingest import CategoryFrom, IngestSummary, ingest
from teacherforge.retrieval.retriever import Retriever, ScoredChunk
from teacherforge.retrieval.weaviate_store import DEFAULT_COLLECTION, WeaviateSettings, WeaviateStoreError
from teacherforge.store.events import EventLog

STORES = ("duckdb", "weaviate")
StoreOption = Annotated[
    str,
    typer.Option("--store", help="duckdb (default: in the --db file) | weaviate (mirror at --weaviate-url)"),
]
WeaviateUrlOption = Annotated[
    str | None,
    typer.Option(
        "--weaviate-url", envvar="WEAVIATE_URL", help="Weaviate REST URL; API key from $WEAVIATE_API_KEY."
    ),
]
WeaviateGrpcOption = Annotated[int, typer.Option("--weaviate-grpc-port", help="Weaviate gRPC port.")]
WeaviateCollectionOption = Annotated[str, typer.Option("--weaviate-collection", help="Collection name.")]


class StoreChoiceError(Exception):
    """A --store combination that cannot work; the message says which flag to add."""


# For cli.USER_ERRORS: each is a one-line, actionable message.
RETRIEVAL_ERRORS: tuple[type[Exception], ...] = (WeaviateStoreError, IndexStateError, StoreChoiceError)


def store_settings(
    store: str, url: str | None, grpc_port: int = 50051, collection: str = DEFAULT_COLLECTION
) -> WeaviateSettings | None:
    """None for the embedded DuckDB store; the Weaviate settings otherwise."""
    if store not in STORES:
        raise StoreChoiceError(f"--store must be duckdb or weaviate (got '{store}')")
    if store == "duckdb":
        return None
    if not url:
        raise StoreChoiceError(
            "--store weaviate needs --weaviate-url (or $WEAVIATE_URL), e.g. http://127.0.0.1:8080"
        )
    return WeaviateSettings(url=url, grpc_port=grpc_port, collection=collection)


class IngestBar:
    """A Rich progress bar over the chunks to embed (cache hits advance it at once)."""

    def __init__(self, console: Console):
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        self._progress = Progress(*columns, console=console, transient=False)
        self._task: Any = None

    def __enter__(self) -> IngestBar:
        self._progress.start()
        self._task = self._progress.add_task("reading files", total=None, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def file(self, path: str) -> None:
        self._progress.update(self._task, description=f"reading {Path(path).name}")

    def planned(self, documents: int, chunks: int) -> None:
        self._progress.update(
            self._task, description=f"embedding {documents} document(s)", total=chunks, completed=0
        )

    def advance(self, chunks: int) -> None:
        self._progress.advance(self._task, chunks)
        task = self._progress.tasks[0]
        if task.speed:
            self._progress.update(self._task, rate=f"{task.speed:.1f} chunks/s")


def ingest_with_progress(
    con: duckdb.DuckDBPyConnection,
    log: EventLog,
    paths: list[Path],
    category_from: CategoryFrom,
    embedder: str | None,
    err: Console,
    **options: Any,
) -> IngestSummary:
    with IngestBar(err) as bar:
        return ingest(con, log, paths, category_from, embedder, on_file=bar.file, progress=bar, **options)


def sync_weaviate(
    con: duckdb.DuckDBPyConnection,
    settings: WeaviateSettings,
    err: Console,
    log: EventLog | None = None,
    ingest_id: str | None = None,
):
    """Push what Weaviate does not hold yet; record a ``weaviate.synced`` event; return the report."""
    from teacherforge.retrieval.weaviate_mirror import sync_to_weaviate
    from teacherforge.retrieval.weaviate_store import WeaviateChunkStore, connect_weaviate

    client = connect_weaviate(settings)
    try:
        with err.status(f"syncing {settings.target}") as status:
            store = WeaviateChunkStore(client, settings)
            report = sync_to_weaviate(con, store, on_document=lambda d, n: status.update(f"pushed {d} ({n})"))
    finally:
        client.close()
    if log is not None and ingest_id is not None:
        payload = {
            "target": report.target,
            "created": report.created,
            "pushed": len(report.pushed),
            "removed": len(report.removed),
            "unchanged": report.unchanged,
            "chunks": report.chunks,
        }
        log.append(ingest_id, "weaviate.synced", payload)
    return report


def summary_lines(summary: IngestSummary, sync: Any = None) -> list[str]:
    rate = f" at {summary.chunks_per_s:.1f} chunks/s" if summary.chunks_per_s else ""
    lines = [
        f"ingested {len(summary.added)} new, {len(summary.updated)} changed, "
        f"{len(summary.unchanged)} unchanged document(s); {summary.chunks} chunk(s) written "
        f"({summary.embedded} embedded{rate}, {summary.chunks - summary.embedded} from cache); "
        f"{len(summary.skipped)} skipped"
    ]
    lines += [f"  skipped {path}: {reason}" for path, reason in summary.skipped]
    lines += [f"  note {path}: {note}" for path, note in summary.notes]
    if sync is not None:
        lines.append(
            f"weaviate {sync.target}: pushed {len(sync.pushed)} document(s) ({sync.chunks} chunks), "
            f"removed {len(sync.removed)}, {sync.unchanged} already in step"
        )
    return lines


def open_retriever(con: duckdb.DuckDBPyConnection, settings: WeaviateSettings | None) -> Retriever:
    """The retriever for ``--store``: in-memory over DuckDB, or Weaviate (call ``close_retriever``)."""
    from teacherforge.graph.runner import build_retriever

    if settings is None:
        return build_retriever(con)
    from teacherforge.retrieval.embedder import load_embedder
    from teacherforge.retrieval.index import index_embedder
    from teacherforge.retrieval.weaviate_mirror import WeaviateRetriever
    from teacherforge.retrieval.weaviate_store import WeaviateChunkStore, connect_weaviate

    embedder = load_embedder(index_embedder(con))
    client = connect_weaviate(settings)
    try:
        return WeaviateRetriever.from_index(con, WeaviateChunkStore(client, settings), embedder)
    except Exception:
        client.close()
        raise


def close_retriever(retriever: Retriever) -> None:
    close = getattr(retriever, "close", None)
    if close:
        close()


def search_once(
    con: duckdb.DuckDBPyConnection,
    settings: WeaviateSettings | None,
    query: str,
    k: int,
    mode: str,
    category: str | None,
) -> list[ScoredChunk]:
    """One ``teacherforge search``: open the store's retriever, search, close it."""
    retriever = open_retriever(con, settings)
    try:
        return retriever.search(query, k, mode, category)  # type: ignore[arg-type]
    finally:
        close_retriever(retriever)
