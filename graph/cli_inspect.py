"""CLI commands that read the event log: replay (and fork), sql, runs, verify.

While another process writes the database (DuckDB then refuses every other opener), these read the
snapshot that process publishes, after a one-line notice on stderr (store/snapshot.py).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from teacherforge.graph.cli_common import (
    DEFAULT_DB,
    USER_ERRORS,
    DbOption,
    app,
    err,
    fail,
    open_writer,
    out,
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
    step: Annotated[
        bool, typer.Option("--step", help="Pause after each event (Enter = next, q = quit).")
    ] = False,
) -> None:
    """One conversation's full history: timeline, conversations, and each revision as a diff.

    With ``--from EVENT_ID`` the sample is forked: re-run from that event as a new, linked sample;
    unchanged requests reuse the recorded replies, changed ones call the model (not with --offline).
    """
    from teacherforge.graph.replay_view import print_replay, replay_json
    from teacherforge.store.projection import load_events

    if step and fmt == "json":
        fail("--step pauses the text view; drop --format json")
    try:
        if from_event is not None:
            sample_id = _fork(
                db, from_event, offline, {"prompt_dir": prompt_dir, "llm_url": llm_url, "model": model}
            )
        con = _open(db)
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


def _open(db: Path):
    """Read-only; while another process writes the file, the snapshot it publishes (with a notice)."""
    from teacherforge.store.snapshot import open_for_reading

    con, notice = open_for_reading(db)
    if notice:
        err.print(notice, highlight=False)
    return con


SQL_FORMATS = ("table", "csv", "json", "parquet")


@app.command()
def sql(
    query: Annotated[
        str | None,
        typer.Argument(help="SQL over events and views (samples, turns, llm_calls, ...); none: a prompt."),
    ] = None,
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="table|csv|json|parquet (default: --out's suffix, else table)"),
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the result to FILE (parquet needs it).")
    ] = None,
) -> None:
    """Query the event log read-only; with no QUERY, an interactive prompt (end statements with ';')."""
    import duckdb

    fmt = _sql_format(fmt, out_path)
    if out_path is not None and not out_path.parent.exists():
        fail(f"--out {out_path}: folder {out_path.parent} does not exist")
    try:
        con = _open(db)
        # read-only covers this file; no file access and locked settings stop ATTACH of another
        # database read-write, COPY ... TO, INSTALL/LOAD and turning either back on
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        if query is None:
            _sql_shell(con, db)
            return
        result = _run_sql(con, query)
    except USER_ERRORS as exc:
        fail(str(exc))
    except duckdb.Error as exc:
        fail(_sql_error(exc))
    _write_result(*result, fmt, out_path)


def _sql_format(fmt: str | None, out_path: Path | None) -> str:
    if fmt is None:
        suffix = out_path.suffix.lstrip(".").lower() if out_path else ""
        fmt = suffix if suffix in SQL_FORMATS else "table"
    if fmt not in SQL_FORMATS:
        fail(f"--format must be one of {'|'.join(SQL_FORMATS)} (got '{fmt}')")
    if fmt == "parquet" and out_path is None:
        fail("--format parquet writes a binary file: add --out FILE.parquet")
    return fmt


def _sql_error(exc: Exception) -> str:
    first = str(exc).splitlines()[0]
    sandboxed = any(w in first.lower() for w in ("read-only", "disabled by configuration", "locked"))
    hint = " (sql is read-only: no writes, no file access, no settings)" if sandboxed else ""
    return f"{first}{hint}"


def _run_sql(con, query: str) -> tuple[list[str], list[str], list[tuple]]:
    """Columns, DuckDB type names and rows; a statement without a result gives no columns."""
    relation = con.sql(query)
    if relation is None:
        return [], [], []
    return relation.columns, [str(t) for t in relation.types], relation.fetchall()


def _write_result(
    columns: list[str], types: list[str], rows: list[tuple], fmt: str, path: Path | None
) -> None:
    if fmt == "parquet":
        _write_parquet(columns, types, rows, path)
    elif path is None:
        _emit(columns, rows, fmt, sys.stdout, out)
    else:
        with path.open("w", encoding="utf-8", newline="") as fh:
            _emit(columns, rows, fmt, fh, Console(file=fh, width=200, color_system=None, soft_wrap=True))
    if path is not None:
        err.print(f"wrote {len(rows)} row(s) to {path} ({fmt})", highlight=False)


def _emit(columns: list[str], rows: list[tuple], fmt: str, stream, console: Console) -> None:
    if fmt == "json":
        records = [dict(zip(columns, r, strict=True)) for r in rows]
        stream.write(json.dumps(records, default=str, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")  # Unix lines: shells read the output
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*(Text("" if v is None else str(v)) for v in row))
        console.print(table)


def _write_parquet(columns: list[str], types: list[str], rows: list[tuple], path: Path) -> None:
    """Through a private in-memory DuckDB: the query's own connection has no file access."""
    import duckdb

    names: list[str] = []
    for column in columns:  # 'select 1, 1' has two columns named 1; a table cannot
        name, n = column, 1
        while name in names:
            n += 1
            name = f"{column}_{n}"
        names.append(name)
    mem = duckdb.connect()
    try:
        spec = ", ".join(
            _quote(name) + (" VARCHAR" if kind.strip('"') == "NULL" else f" {kind}")
            for name, kind in zip(names, types, strict=True)
        )
        mem.execute(f"CREATE TABLE result ({spec or 'empty VARCHAR'})")
        if rows:
            appender = mem.appender("result")
            appender.append_rows(rows)
            appender.flush()
        target = str(path).replace("'", "''")
        mem.execute(f"COPY result TO '{target}' (FORMAT parquet)")
    except duckdb.Error as exc:
        fail(f"--out {path}: cannot write parquet ({str(exc).splitlines()[0]})")
    finally:
        mem.close()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


SHELL_HELP = (
    "end a statement with ';' (it may span lines); .tables lists tables and views, "
    ".schema NAME its columns, .quit leaves"
)


def _sql_shell(con, db: Path) -> None:
    """An interactive prompt on the same read-only connection: each result as a Rich table."""
    import duckdb

    if sys.stdin.isatty():
        import readline  # noqa: F401 - line editing and history for input()
    out.print(f"teacherforge sql on {db} (read-only); {SHELL_HELP}", highlight=False)
    buffer: list[str] = []
    while True:
        try:
            line = input("...> " if buffer else "sql> ")
        except EOFError:
            out.print()
            return
        stripped = line.strip()
        if not buffer and stripped.startswith("."):
            command, _, arg = stripped.partition(" ")
            if command in (".quit", ".exit", ".q"):
                return
            statement = {
                ".tables": "SELECT table_name AS name, lower(table_type) AS kind "
                "FROM information_schema.tables ORDER BY table_type, table_name",
                ".schema": f"DESCRIBE {arg.strip()}" if arg.strip() else None,
            }.get(command)
            if statement is None:
                err.print(f"unknown command '{stripped}': {SHELL_HELP}", highlight=False)
                continue
        else:
            buffer.append(line)
            if not stripped.endswith(";"):
                continue
            statement, buffer = "\n".join(buffer), []
            if not statement.strip().rstrip(";").strip():
                continue
        try:
            columns, _, rows = _run_sql(con, statement)
        except duckdb.Error as exc:
            err.print(f"[red]error:[/red] {escape(_sql_error(exc))}", highlight=False)
            continue
        if columns:
            _emit(columns, rows, "table", sys.stdout, out)
            out.print(f"[dim]{len(rows)} row(s)[/dim]")


@app.command()
def runs(
    db: DbOption = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table",
) -> None:
    """List runs with status, counts and config hash."""
    try:
        con = _open(db)
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
        con = _open(db)
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
    _emit([d[0] for d in cursor.description or []], cursor.fetchall(), fmt, sys.stdout, out)
