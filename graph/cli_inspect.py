"""CLI commands that read the event log: replay (and fork), sql, runs, verify."""

from __future__ import annotations

import csv
import json
import sys
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
    server_error_types,
)


@app.command()
def replay(
    sample_id: Annotated[str, typer.Argument(help="Sample id (see: sql 'select sample_id from samples').")],
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="text|json")] = "text",
    show: Annotated[
        str | None, typer.Option("--show", help="'prompts' prints every LLM call's messages.")
    ] = None,
    from_event: Annotated[
        str | None, typer.Option("--from", help="Fork: re-run this sample from EVENT_ID as a new sample.")
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Fork without calling any model; list changed requests.")
    ] = False,
    prompt_dir: Annotated[Path | None, typer.Option(help="Fork with these prompt templates.")] = None,
    llm_url: Annotated[str | None, typer.Option(help="Fork against this endpoint.")] = None,
    model: Annotated[str | None, typer.Option(help="Fork with this model.")] = None,
) -> None:
    """One conversation's full history: timeline, then the conversation after each step.

    With ``--from EVENT_ID`` the sample is forked: re-run from that event as a new, linked sample;
    unchanged requests reuse the recorded replies, changed ones call the model (not with --offline).
    """
    from teacherforge.graph.replay_view import print_replay, replay_json
    from teacherforge.store.projection import load_events

    try:
        if from_event is not None:
            sample_id = _fork(
                db, from_event, offline, {"prompt_dir": prompt_dir, "llm_url": llm_url, "model": model}
            )
        con = read_only(db)
    except USER_ERRORS + server_error_types() as exc:
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


def _fork(db: Path, event_id: str, offline: bool, overrides: dict) -> str:
    from teacherforge.graph.fork import fork

    con, log = open_writer(db)
    try:
        result = fork(con, log, event_id, overrides, offline, lambda m: err.print(m, highlight=False))
    finally:
        log.close()
        con.close()
    s = result.summary
    err.print(
        f"fork {result.sample_id}: {s.llm_calls} model call(s), {s.reused_calls} reused", highlight=False
    )
    for agent, template in result.changed_requests:
        err.print(f"  changed request (not sent, --offline): {agent} via {template}", highlight=False)
    return result.sample_id


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL over events and views (samples, turns, llm_calls, ...).")],
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table|json|csv")] = "table",
) -> None:
    """Query the event log read-only."""
    import duckdb

    try:
        con = read_only(db)
        cursor = con.execute(query)
    except USER_ERRORS as exc:
        fail(str(exc))
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        hint = " (the database is opened read-only)" if "read-only" in first.lower() else ""
        fail(f"{first}{hint}")
    _print_rows(cursor, fmt)


@app.command()
def runs(
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
) -> None:
    """List runs with status, counts and config hash."""
    try:
        con = read_only(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    cursor = con.execute(
        "SELECT run_id, status, target, accepted, rejected, failed, config_hash, started_at, finished_at "
        "FROM runs ORDER BY started_at"
    )
    _print_rows(cursor, fmt)


@app.command()
def verify(db: DbOption = DEFAULT_DB) -> None:
    """Check the log's integrity (seq gaps, orphans, unfinished samples, projection mismatches)."""
    from teacherforge.store.verify import verify as verify_log

    try:
        con = read_only(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    problems = verify_log(con)
    events = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
    for problem in problems:
        out.print(problem, highlight=False)
    if problems:
        fail(f"{len(problems)} problem(s) in {db}", code=1)
    out.print(f"ok: {events} events in {db} are consistent")


def _print_rows(cursor, fmt: str) -> None:
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
