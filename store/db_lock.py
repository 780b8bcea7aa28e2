"""One writer per database, and a clear word about who it is.

DuckDB refuses a second writing process itself, so the file is never corrupted; but its message
names only a PID and an executable. Before opening a database for writing, teacherforge takes a
POSIX lock on ``<db>.lock`` and writes its PID, command line and start time into it, so a second
writer can say *which* command holds the file, or wait for it with ``--wait``. The kernel drops the
lock when the holder exits in any way (``kill -9`` included), so a stale file never blocks anyone.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from teacherforge.store.database import DatabaseError, connect

_HELD: dict[str, int] = {}  # lock path -> open descriptor; closing it would release the lock
POLL_S = 0.5


class DatabaseLocked(DatabaseError):
    """Another process writes to this database; the message names it and the way out."""


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def holder(db: Path) -> dict | None:
    """What the lock file says about the process that holds (or last held) the database."""
    try:
        return json.loads(lock_path(db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(info: dict | None) -> str:
    if not info:
        return "another process"
    started = f", since {info['started']}" if info.get("started") else ""
    return f"pid {info.get('pid')} ({info.get('command', '?')}{started})"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # OSError (read-only folder): caller skips the lock
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def acquire(db: Path, wait: bool = False, notify: Callable[[str], None] | None = None) -> None:
    """Hold the database's writer lock until this process exits; raise DatabaseLocked or wait."""
    if str(db) == ":memory:" or not db.parent.exists():
        return  # connect() reports a missing folder with its own message
    path = lock_path(db)
    key = str(path.resolve())
    fd = _HELD.get(key)  # POSIX locks belong to the process: a second open here would not conflict
    announced = False
    while fd is None:
        try:
            fd = _try_lock(path)
        except OSError:
            return  # no lock file possible here: DuckDB's own lock still refuses a second writer
        if fd is not None:
            break
        info = holder(db)
        if not wait:
            raise DatabaseLocked(
                f"{db}: in use by {_describe(info)}; wait for it to finish, add --wait, "
                "or work on a copy of the file"
            )
        if notify and not announced:
            notify(f"{db}: waiting for {_describe(info)} to release the database")
            announced = True
        time.sleep(POLL_S)
    _HELD[key] = fd
    info = {
        "pid": os.getpid(),
        "command": " ".join(["teacherforge", *sys.argv[1:]])[:300],
        "started": dt.datetime.now().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def note_run(db: Path, run_id: str) -> None:
    """Add the run id to the lock file, so a second writer can name the run that holds the file."""
    fd = _HELD.get(str(lock_path(db).resolve())) if str(db) != ":memory:" else None
    if fd is None:
        return
    try:  # read through the held descriptor: closing any other one would drop this process's lock
        info = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:
        info = {}
    info["command"] = f"{info.get('command', '')} [{run_id}]"
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


_DUCKDB_HOLDER = re.compile(r"held in (?P<exe>\S+) \(PID (?P<pid>\d+)\)")


def connect_writer(
    db: Path, wait: bool = False, notify: Callable[[str], None] | None = None
) -> duckdb.DuckDBPyConnection:
    """Take the writer lock, then open the file; a non-teacherforge holder is named from DuckDB's error."""
    acquire(db, wait, notify)
    announced = False
    while True:
        try:
            return connect(db)
        except DatabaseError as exc:
            found = _DUCKDB_HOLDER.search(str(exc.__cause__ or ""))
            if found is None:
                raise
            who = f"pid {found['pid']} ({found['exe']})"
            if not wait:
                raise DatabaseLocked(
                    f"{db}: in use by {who}, which holds DuckDB's lock; wait for it, add --wait, "
                    "or work on a copy of the file"
                ) from exc
            if notify and not announced:
                notify(f"{db}: waiting for {who} to release the database")
                announced = True
            time.sleep(POLL_S)
