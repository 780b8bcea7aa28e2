"""CLI commands that read the event log: replay (and fork), runs, verify.

While another process writes the database (DuckDB then refuses every other opener), these read the
snapshot that process publishes, after a one-line notice on stderr (store/snapshot.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from teacherforge.cli.common import (
    DEFAULT_DB,
    USER_ERRORS,
    DbOption,
    app,
    emit_rows,
    err,
    fail,
    open_for_reading,
    open_writer,
    out,
    server_error_types,
)
from teacherforge.store.sql_access import event_count, runs_table


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
    step: Annotated[
        bool, typer.Option("--step", help="Pause after each event (Enter = next, q = quit).")
    ] = False,
) -> None:
    """One conversation's full history: timeline, conversations, and each revision as a diff.

    With ``--from EVENT_ID`` the sample is forked: re-run from that event as a new, linked sample;
    unchanged requests reuse the recorded replies, changed ones call the model (not with --offline).
    """
    from teacherforge.cli.replay_view import print_replay, replay_json
    from teacherforge.store.projection import load_events

    if step and fmt == "json":
        fail("--step pauses the text view; drop --format json")
    try:
        if from_event is not None:
            sample_id = _fork(
                db, from_event, offline, {"prompt_dir": prompt_dir, "llm_url": llm_url, "model": model}
            )
        con = open_for_reading(db)
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
        print_replay(out, sample_id, events, show_prompts=show == "prompts", pause=_pause if step else None)


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


def _pause(event: dict, position: int, total: int) -> bool:
    """--step: wait for Enter (next) or q (quit); the end of input quits too."""
    if position == total:
        return True
    out.print(f"[dim]({position}/{total}) Enter = next, q = quit[/dim] ", end="")
    sys.stdout.flush()  # the hint has no newline: show it before blocking on input
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        out.print()  # a terminal echoes the Enter; piped input does not
    return bool(answer) and answer.strip().lower() not in ("q", "quit")


@app.command()
def runs(
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
) -> None:
    """List runs with status, counts and config hash."""
    try:
        con = open_for_reading(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    cursor = runs_table(con)
    _print_rows(cursor, fmt)


@app.command()
def verify(db: DbOption = DEFAULT_DB) -> None:
    """Check the log's integrity (seq gaps, orphans, unfinished samples, projection mismatches)."""
    from teacherforge.store.verify import verify as verify_log

    try:
        con = open_for_reading(db)
    except USER_ERRORS as exc:
        fail(str(exc))
    problems = verify_log(con)
    events = event_count(con)
    for problem in problems:
        out.print(problem, highlight=False)
    if problems:
        fail(f"{len(problems)} problem(s) in {db}", code=1)
    out.print(f"ok: {events} events in {db} are consistent")


def _print_rows(cursor, fmt: str) -> None:
    emit_rows([d[0] for d in cursor.description or []], cursor.fetchall(), fmt, sys.stdout, out)
