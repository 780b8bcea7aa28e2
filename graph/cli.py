"""The ``teacherforge`` command line (Typer). Thin: parse, call the runner/store, print.

Contract for scripts (docs/cli.md): ``run`` prints the run id as its first stdout line and, with
``--json``, a final JSON summary line; ``sql``/``replay``/``search`` take ``--format json``; errors
are one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from teacherforge.graph.config import ConfigError, load_config
from teacherforge.graph.endpoints import EndpointError
from teacherforge.graph.runner import RunError, generate, new_run_id
from teacherforge.graph.session import run_endpoints
from teacherforge.store.database import DatabaseError, connect
from teacherforge.store.embedder import EmbedderUnavailable
from teacherforge.store.events import EventLog
from teacherforge.store.views import create_views

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Distil documents into training conversations."
)
out = Console(soft_wrap=True)
err = Console(stderr=True)

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB file with the event log and chunk index.")]
DEFAULT_DB = Path("teacherforge.duckdb")
USER_ERRORS = (ConfigError, DatabaseError, RunError, EndpointError, EmbedderUnavailable, FileNotFoundError)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _server_error_types() -> tuple[type[Exception], ...]:
    try:
        from teacherforge.graph.serve.local import LocalServerError

        return (LocalServerError,)
    except ImportError:  # pragma: no cover - the serve package is part of the install
        return ()


def _open_writer(db: Path):
    con = connect(db)
    create_views(con)
    return con, EventLog(con)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    db: DbOption = DEFAULT_DB,
    category_from: Annotated[str, typer.Option(help="folder|frontmatter|none")] = "folder",
    embedder: Annotated[str | None, typer.Option(help="minilm-onnx-int8 (default) or st:<model>")] = None,
) -> None:
    """Load, chunk, embed and index documents (re-ingesting unchanged files is a no-op)."""
    from teacherforge.graph.ingest import ingest as run_ingest

    if category_from not in ("folder", "frontmatter", "none"):
        fail(f"--category-from must be folder, frontmatter or none (got '{category_from}')")
    try:
        con, log = _open_writer(db)
        with err.status("ingesting…") as status:
            summary = run_ingest(con, log, paths, category_from, embedder, on_file=lambda f: status.update(f))
        log.close()
    except USER_ERRORS as exc:
        fail(str(exc))
    out.print(
        f"ingested {len(summary.added)} new, {len(summary.updated)} changed, "
        f"{len(summary.unchanged)} unchanged document(s); {summary.chunks} chunk(s) written; "
        f"{len(summary.skipped)} skipped"
    )
    for path, reason in summary.skipped:
        out.print(f"  skipped {path}: {reason}", highlight=False)


@app.command()
def run(
    n: Annotated[int | None, typer.Option("--n", help="Samples to generate.")] = None,
    db: DbOption = DEFAULT_DB,
    config: Annotated[Path | None, typer.Option("--config", help="YAML run config.")] = None,
    llm_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible URL (vLLM); default: embedded.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name at --llm-url, or a GGUF path for the embedded server.")
    ] = None,
    critic_url: Annotated[str | None, typer.Option(help="Separate endpoint for the critic.")] = None,
    critic_model: Annotated[str | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    concurrency: Annotated[int | None, typer.Option()] = None,
    max_revisions: Annotated[int | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON summary line.")] = False,
    keep_server: Annotated[
        bool, typer.Option(help="Leave the embedded model server running for later runs to reuse.")
    ] = False,
) -> None:
    """Generate conversations: plan → user ⇄ teacher → rules → critic → refine → accept/reject."""
    overrides = {
        "n": n,
        "llm_url": llm_url,
        "model": model,
        "critic_url": critic_url,
        "critic_model": critic_model,
        "seed": seed,
        "concurrency": concurrency,
        "max_revisions": max_revisions,
    }
    try:
        cfg = load_config(config, overrides)
        con, log = _open_writer(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    run_id = new_run_id()
    print(run_id, flush=True)
    try:
        with run_endpoints(cfg, lambda m: err.print(m, highlight=False), keep_server) as (gen, crit):
            summary = _generate_with_progress(con, log, cfg, gen, crit, run_id)
    except USER_ERRORS + _server_error_types() as exc:
        log.close()
        fail(str(exc))
    except KeyboardInterrupt:
        log.close()
        fail(f"interrupted; events so far are in {db} (run {run_id})", code=130)
    log.close()
    err.print(
        f"run {summary.run_id}: {summary.accepted} accepted, {summary.rejected} rejected, "
        f"{summary.failed} failed, {summary.llm_calls} LLM calls in {summary.wall_s:.1f}s",
        highlight=False,
    )
    if as_json:
        print(json.dumps(summary.as_dict()), flush=True)


def _generate_with_progress(con, log, cfg, gen, crit, run_id):
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("generating", total=cfg.n)

        def done(sample_id: str, status: str) -> None:
            counts[status] = counts.get(status, 0) + 1
            label = " ".join(f"{k} {v}" for k, v in counts.items())
            progress.update(task, advance=1, description=f"generating ({label})")

        return asyncio.run(generate(con, log, cfg, gen, crit, run_id=run_id, on_sample_done=done))


def _read_only(db: Path):
    con = connect(db, read_only=True)
    return con


@app.command()
def replay(
    sample_id: Annotated[str, typer.Argument(help="Sample id (see: sql 'select sample_id from samples').")],
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="text|json")] = "text",
    show: Annotated[
        str | None, typer.Option("--show", help="'prompts' prints every LLM call's messages.")
    ] = None,
) -> None:
    """One conversation's full history: timeline, then the conversation after each step."""
    from teacherforge.graph.replay_view import print_replay, replay_json
    from teacherforge.store.projection import load_events

    try:
        con = _read_only(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    events = load_events(con, sample_id=sample_id)
    if not events:
        fail(
            f"no events for sample '{sample_id}' in {db}; "
            "list ids with: teacherforge sql 'select sample_id from samples'"
        )
    if fmt == "json":
        print(json.dumps(replay_json(sample_id, events), ensure_ascii=False, default=str))
    else:
        print_replay(out, sample_id, events, show_prompts=show == "prompts")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over events and views (samples, turns, llm_calls, ...).")],
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table|json|csv")] = "table",
) -> None:
    """Query the event log read-only."""
    import duckdb

    try:
        con = _read_only(db)
        cursor = con.execute(query)
    except USER_ERRORS as exc:
        fail(str(exc))
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        hint = " (the database is opened read-only)" if "read-only" in first.lower() else ""
        fail(f"{first}{hint}")
    columns = [d[0] for d in cursor.description or []]
    rows = cursor.fetchall()
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)


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
        con = _read_only(db)
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
) -> None:
    """Show the top-k chunks for a query (what the teacher would see)."""
    from teacherforge.graph.runner import build_retriever

    if mode not in ("vector", "bm25", "hybrid"):
        fail(f"--search must be vector, bm25 or hybrid (got '{mode}')")
    try:
        con = _read_only(db)
        hits = build_retriever(con).search(query, k, mode, category)
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


@app.command()
def serve(
    backend: Annotated[str, typer.Option(help="llama (CPU, embedded default) | vllm (GPU box)")] = "llama",
    model: Annotated[
        str | None,
        typer.Option(help="GGUF path (llama; default: bundled SmolLM2-135M-Instruct) or HF id (vllm)"),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes the server to your network.")
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Default: a free port (llama) or 8000 (vllm).")] = None,
    threads: Annotated[int | None, typer.Option(help="llama: CPU threads (default: free cores).")] = None,
    max_model_len: Annotated[int, typer.Option(help="Context length (n_ctx for llama).")] = 8192,
    print_command: Annotated[
        bool, typer.Option(help="vllm: print the command instead of running it.")
    ] = False,
) -> None:
    """Start an OpenAI-compatible model server and print its URL (Ctrl-C stops it)."""
    if backend == "vllm":
        from teacherforge.graph.serve.vllm import DEFAULT_MODEL, VllmCommand, VllmNotInstalledError, exec_vllm

        command = VllmCommand(
            model=model or DEFAULT_MODEL, host=host, port=port or 8000, max_model_len=max_model_len
        )
        print(" ".join(command.argv()) if print_command else command.url, flush=True)
        if print_command:
            return
        try:
            exec_vllm(command)
        except VllmNotInstalledError as exc:
            fail(str(exc))
    if backend != "llama":
        fail(f"--backend must be llama or vllm (got '{backend}')")
    from teacherforge.graph.serve.local import LocalServer

    try:
        server = LocalServer(model, host=host, port=port, threads=threads, n_ctx=max_model_len).start()
    except _server_error_types() as exc:
        fail(str(exc))
    print(server.url, flush=True)
    err.print(f"serving {server.model} ({server.threads} threads); Ctrl-C stops it", highlight=False)
    try:
        signal.pause() if hasattr(signal, "pause") else time.sleep(10**9)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":  # python -m teacherforge.graph.cli
    app()
