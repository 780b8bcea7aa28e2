"""CLI commands for documents: ingest, search (export lives in cli_export.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from teacherforge.cli.common import (
    DEFAULT_DB,
    USER_ERRORS,
    DbOption,
    app,
    err,
    fail,
    open_writer,
    out,
    read_only,
)
from teacherforge.cli.retrieval import (
    DEFAULT_COLLECTION,
    StoreOption,
    WeaviateCollectionOption,
    WeaviateGrpcOption,
    WeaviateUrlOption,
    ingest_with_progress,
    search_once,
    store_settings,
    summary_lines,
    sync_weaviate,
)
from teacherforge.retrieval.documents import MAX_FILE_BYTES


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    db: DbOption = DEFAULT_DB,
    category_from: Annotated[str, typer.Option(help="folder|frontmatter|none")] = "folder",
    embedder: Annotated[str | None, typer.Option(help="minilm-onnx-int8 (default) or st:<model>")] = None,
    store: StoreOption = "duckdb",
    weaviate_url: WeaviateUrlOption = None,
    weaviate_grpc_port: WeaviateGrpcOption = 50051,
    weaviate_collection: WeaviateCollectionOption = DEFAULT_COLLECTION,
    max_file_mb: Annotated[
        float, typer.Option(help="Skip (and list) files larger than this many MiB.")
    ] = MAX_FILE_BYTES / 2**20,
    redact_pii: Annotated[
        bool,
        typer.Option(
            "--redact-pii", help="Replace e-mails, phones, card/IBAN/ID numbers, names, addresses: [KIND]."
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another process writes to --db, wait for it; do not fail.")
    ] = False,
) -> None:
    """Load, chunk, embed and index documents (re-ingesting unchanged files is a no-op)."""
    if category_from not in ("folder", "frontmatter", "none"):
        fail(f"--category-from must be folder, frontmatter or none (got '{category_from}')")
    if max_file_mb <= 0:
        fail(f"--max-file-mb must be positive (got {max_file_mb:g})")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # before the database is created or the progress bar drawn
        fail(f"{', '.join(missing)}: no such file or folder; check the path")
    try:
        settings = store_settings(store, weaviate_url, weaviate_grpc_port, weaviate_collection)
        con, log = open_writer(db, wait)
        try:
            summary = ingest_with_progress(
                con,
                log,
                paths,
                category_from,
                embedder,
                err,
                max_file_bytes=round(max_file_mb * 2**20),
                redact_pii=redact_pii,
            )
            sync = sync_weaviate(con, settings, err, log, summary.ingest_id) if settings else None
        finally:
            try:
                log.close()
            finally:
                con.close()  # now, not when the frame goes: a failing exit keeps the frame alive
    except USER_ERRORS as exc:
        fail(str(exc))
    for line in summary_lines(summary, sync):
        out.print(line, highlight=False)
    if summary.all_skipped:  # the events are recorded; the exit code tells a script nothing is there
        n = len(summary.skipped)
        kinds = ", ".join(f"{count} {kind}" for kind, count in summary.skip_kinds())
        which = f"all {n} files were" if n > 1 else "the only file was"
        fail(f"{which} skipped ({kinds}); nothing was ingested")


@app.command()
def search(
    query: Annotated[str, typer.Argument()],
    db: DbOption = DEFAULT_DB,
    k: Annotated[int, typer.Option("--k")] = 5,
    mode: Annotated[str, typer.Option("--search", help="vector|bm25|hybrid")] = "hybrid",
    category: Annotated[str | None, typer.Option()] = None,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
    store: StoreOption = "duckdb",
    weaviate_url: WeaviateUrlOption = None,
    weaviate_grpc_port: WeaviateGrpcOption = 50051,
    weaviate_collection: WeaviateCollectionOption = DEFAULT_COLLECTION,
) -> None:
    """Show the top-k chunks for a query (what the teacher would see)."""
    if mode not in ("vector", "bm25", "hybrid"):
        fail(f"--search must be vector, bm25 or hybrid (got '{mode}')")
    try:
        settings = store_settings(store, weaviate_url, weaviate_grpc_port, weaviate_collection)
        con = read_only(db)
        hits = search_once(con, settings, query, k, mode, category)
    except USER_ERRORS as exc:
        fail(str(exc))
    if fmt == "json":
        keys = ("chunk_id", "document", "score", "text", "category")
        print(json.dumps([{k_: h.as_dict()[k_] for k_ in keys} for h in hits], ensure_ascii=False))
        return
    table = Table("score", "chunk", "document", "text")
    for h in hits:
        table.add_row(f"{h.score:.4f}", h.chunk_id, h.document, h.text[:160].replace("\n", " "))
    out.print(table)
