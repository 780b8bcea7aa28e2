"""CLI commands for documents and datasets: ingest, search, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from teacherforge.graph.cli_common import (
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
from teacherforge.graph.cli_retrieval import (
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
) -> None:
    """Load, chunk, embed and index documents (re-ingesting unchanged files is a no-op)."""
    if category_from not in ("folder", "frontmatter", "none"):
        fail(f"--category-from must be folder, frontmatter or none (got '{category_from}')")
    try:
        settings = store_settings(store, weaviate_url, weaviate_grpc_port, weaviate_collection)
        con, log = open_writer(db)
        try:
            summary = ingest_with_progress(con, log, paths, category_from, embedder, err)
            sync = sync_weaviate(con, settings, err, log, summary.ingest_id) if settings else None
        finally:
            log.close()
    except USER_ERRORS as exc:
        fail(str(exc))
    for line in summary_lines(summary, sync):
        out.print(line, highlight=False)


@app.command()
def export(
    out_path: Annotated[Path, typer.Option("--out", help="Output JSONL file.")],
    db: DbOption = DEFAULT_DB,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest run).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="openai")] = "openai",
    thought: Annotated[str, typer.Option(help="drop|field|inline")] = "drop",
    system: Annotated[str | None, typer.Option(help="System prompt for every record.")] = None,
    status: Annotated[
        str, typer.Option(help="accepted (training data) | rejected | all (for inspection)")
    ] = "accepted",
) -> None:
    """Write a run's accepted conversations (or, for inspection, rejected/all) as a training file."""
    from teacherforge.store.export import DEFAULT_SYSTEM, openai_record, write_jsonl
    from teacherforge.store.projection import fold_run

    if fmt != "openai":
        fail(f"--format {fmt} is not supported yet; use openai")
    if status not in ("accepted", "rejected", "all"):
        fail(f"--status must be accepted, rejected or all (got '{status}')")
    if thought not in ("drop", "field", "inline"):
        fail(f"--thought must be drop, field or inline (got '{thought}')")
    try:
        con = read_only(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    if run_id is None:
        rows = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchall()
        if not rows:
            fail(f"{db} has no runs; generate with 'teacherforge run' first")
        run_id = rows[0][0]
    views = [v for v in fold_run(con, run_id) if v.turns and (status == "all" or v.status == status)]
    records = [openai_record(v, thought, system or DEFAULT_SYSTEM) for v in views]
    write_jsonl(records, out_path)
    label = "" if status == "all" else f" {status}"
    out.print(f"wrote {len(records)}{label} conversation(s) of {run_id} to {out_path}")


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
