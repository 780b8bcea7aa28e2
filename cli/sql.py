"""The `sql` command: read-only SQL over the event log and its views, or an interactive prompt.

While another process writes the database, it reads the snapshot that process publishes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich.console import Console
from rich.markup import escape

from teacherforge.cli.common import (
    DEFAULT_DB,
    USER_ERRORS,
    DbOption,
    app,
    emit_rows,
    err,
    fail,
    open_for_reading,
    out,
)
from teacherforge.store.sql_access import TABLES_QUERY, describe_query, lock_down, run_query, write_parquet

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
    fmt = _sql_format(fmt, out_path)
    if out_path is not None and not out_path.parent.exists():
        fail(f"--out {out_path}: folder {out_path.parent} does not exist")
    try:
        con = open_for_reading(db)
        lock_down(con)
        if query is None:
            _sql_shell(con, db)
            return
        result = run_query(con, query)
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


def _write_result(
    columns: list[str], types: list[str], rows: list[tuple], fmt: str, path: Path | None
) -> None:
    if fmt == "parquet":
        try:
            write_parquet(columns, types, rows, path)
        except duckdb.Error as exc:
            fail(f"--out {path}: cannot write parquet ({str(exc).splitlines()[0]})")
    elif path is None:
        emit_rows(columns, rows, fmt, sys.stdout, out)
    else:
        with path.open("w", encoding="utf-8", newline="") as fh:
            emit_rows(columns, rows, fmt, fh, Console(file=fh, width=200, color_system=None, soft_wrap=True))
    if path is not None:
        err.print(f"wrote {len(rows)} row(s) to {path} ({fmt})", highlight=False)


SHELL_HELP = (
    "end a statement with ';' (it may span lines); .tables lists tables and views, "
    ".schema NAME its columns, .quit leaves"
)


def _sql_shell(con, db: Path) -> None:
    """An interactive prompt on the same read-only connection: each result as a Rich table."""
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
                ".tables": TABLES_QUERY,
                ".schema": describe_query(arg.strip()) if arg.strip() else None,
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
            columns, _, rows = run_query(con, statement)
        except duckdb.Error as exc:
            err.print(f"[red]error:[/red] {escape(_sql_error(exc))}", highlight=False)
            continue
        if columns:
            emit_rows(columns, rows, "table", sys.stdout, out)
            out.print(f"[dim]{len(rows)} row(s)[/dim]")
