"""Shared pieces of the CLI: the Typer app, consoles, the one-line error, database openers."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from teacherforge.cli.retrieval import RETRIEVAL_ERRORS
from teacherforge.graph.budget import BudgetError
from teacherforge.graph.config import ConfigError
from teacherforge.graph.endpoints import EndpointError
from teacherforge.graph.runner import RunError
from teacherforge.retrieval.embedder import EmbedderUnavailable
from teacherforge.store.database import DatabaseError, connect
from teacherforge.store.events import EventLog
from teacherforge.store.snapshot import SnapshotPublisher
from teacherforge.store.views import create_views

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Distil documents into training conversations."
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # one line per message: logs stay greppable

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB file with the event log and chunk index.")]
DEFAULT_DB = Path("teacherforge.duckdb")
USER_ERRORS = (
    ConfigError,
    DatabaseError,
    RunError,
    BudgetError,
    EndpointError,
    EmbedderUnavailable,
    FileNotFoundError,
    *RETRIEVAL_ERRORS,
)


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, then exit; the message is escaped (a log tail may hold ``[/INST]``)."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def server_error_types() -> tuple[type[Exception], ...]:
    try:
        from teacherforge.serve.local import LocalServerError

        return (LocalServerError,)
    except ImportError:  # pragma: no cover - the serve package is part of the install
        return ()


def open_writer(db: Path, wait: bool = False):
    """The database for writing: one writer at a time, named if busy (store/db_lock.py)."""
    from teacherforge.store.db_lock import connect_writer

    con = connect_writer(db, wait, lambda m: err.print(m, highlight=False))
    create_views(con)
    # other processes cannot open the file now: sql/replay/runs read this snapshot (store/snapshot.py)
    snapshot = SnapshotPublisher(db) if str(db) != ":memory:" else None
    log = EventLog(con, snapshot=snapshot)
    if str(db) != ":memory:":
        land_queued_reviews(db, con, log)
    return con, log


def land_queued_reviews(db: Path, con, log: EventLog) -> None:
    """Review decisions queued by 'teacherforge ui' while another writer held the file land now
    (store/review_queue.py), so a long run never keeps them waiting until it ends."""
    from teacherforge.store.review_queue import drain

    landed = drain(db, con, log)
    if landed:
        err.print(f"landed {landed} review decision(s) queued by 'teacherforge ui'", highlight=False)


def read_only(db: Path):
    return connect(db, read_only=True)


def open_for_reading(db: Path):
    """Read-only; while another process writes the file, a snapshot it publishes on our request."""
    from teacherforge.store import snapshot

    con, notice = snapshot.open_for_reading(db, wait_s=snapshot.REQUEST_WAIT_S)
    if notice:
        err.print(notice, highlight=False)
    return con


def emit_rows(columns: list[str], rows: list[tuple], fmt: str, stream, console: Console) -> None:
    """Rows as json, csv (Unix line endings: shells read it) or a Rich table."""
    if fmt == "json":
        records = [dict(zip(columns, r, strict=True)) for r in rows]
        stream.write(json.dumps(records, default=str, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns)
        for row in rows:
            table.add_row(*(Text("" if v is None else str(v)) for v in row))
        console.print(table)
