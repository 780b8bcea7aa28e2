"""How ``teacherforge ui`` opens the database: briefly, so that a writer can start between two requests.

DuckDB lets no other process open a file that one process writes, and a writer cannot start while
anyone has it open. A long-running UI must therefore (1) hold a connection only for the length of a
request, and (2) once a writer holds ``<db>.lock`` (store/db_lock.py), read the snapshot that writer
publishes on request (store/snapshot.py) without making every page wait for a fresh one. The kernel
answers who holds the lock (F_GETLK) without our taking it, so asking never gets in a writer's way.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from teacherforge.store.db_lock import writer_pid
from teacherforge.store.snapshot import REQUEST_WAIT_S, open_for_reading, request_snapshot, snapshot_path

ASK_EVERY_S = 5.0  # a writer copies its log when asked (store/snapshot.py); the UI asks this often at most
_ASKED: dict[str, float] = {}  # database path -> when this process last asked its writer for a snapshot


def open_reader(db: Path, ask_every_s: float = ASK_EVERY_S) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """A read-only connection and, when it is a writer's snapshot, a one-line notice saying so.

    While a writer holds the file, a page must not wait for a fresh copy (at a million events one
    takes seconds), so the UI asks for one at most every ``ask_every_s`` and reads the snapshot that
    is there; only when there is none yet does it ask and wait, like the commands do.
    """
    owner = writer_pid(db)
    if owner is None:
        return open_for_reading(db)
    if not snapshot_path(db).exists():
        return open_for_reading(db, wait_s=REQUEST_WAIT_S)
    now = time.monotonic()
    if now - _ASKED.get(str(db), -ask_every_s) >= ask_every_s:
        _ASKED[str(db)] = now
        request_snapshot(db, owner)  # the answer serves the next request, not this one
    return open_for_reading(db)
