"""Shared pieces of the CLI: the Typer app, consoles, the one-line error, database openers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from teacherforge.graph.budget import BudgetError
from teacherforge.graph.cli_retrieval import RETRIEVAL_ERRORS
from teacherforge.graph.config import ConfigError
from teacherforge.graph.endpoints import EndpointError
from teacherforge.graph.runner import RunError
from teacherforge.store.database import DatabaseError, connect
from teacherforge.store.embedder import EmbedderUnavailable
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
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def server_error_types() -> tuple[type[Exception], ...]:
    try:
        from teacherforge.graph.serve.local import LocalServerError

        return (LocalServerError,)
    except ImportError:  # pragma: no cover - the serve package is part of the install
        return ()


def open_writer(db: Path, wait: bool = False):
    """The database for writing: one writer at a time, named if busy (graph/db_lock.py)."""
    from teacherforge.graph.db_lock import connect_writer

    con = connect_writer(db, wait, lambda m: err.print(m, highlight=False))
    create_views(con)
    # other processes cannot open the file now: sql/replay/runs read this snapshot (store/snapshot.py)
    snapshot = SnapshotPublisher(db) if str(db) != ":memory:" else None
    return con, EventLog(con, snapshot=snapshot)


def read_only(db: Path):
    return connect(db, read_only=True)
