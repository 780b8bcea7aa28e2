"""One writer per database, and a clear word about who it is.

DuckDB refuses a second writing process itself, so the file is never corrupted; but its message
names only a PID and an executable. Before opening a database for writing, teacherforge takes a
POSIX lock on ``<db>.lock`` and writes its PID, command line and start time into it, so a second
writer can say *which* command holds the file, or wait for it with ``--wait``. The kernel drops the
lock when the holder exits in any way (``kill -9`` included), so a stale file never blocks anyone.

On a normal exit (an uncaught exception included) the holder unlinks the file while it still holds
the lock, so none is left beside the database. A waiter may have opened that file just before it
was unlinked and lock it just after: it would then hold a lock on a file nobody else can see, next
to a writer that created a new one. So a lock only counts once the path still names the locked
file (same inode); if not, the waiter closes it and tries again on the current file.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from teacherforge.store.database import DatabaseError, connect

_HELD: dict[str, int] = {}  # lock path -> open descriptor; closing it would release the lock
_TAKEN_BY: dict[str, int] = {}  # lock path -> pid that took it (a forked child inherits _HELD, not the lock)
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


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still refers to the file open as ``fd`` (a leaving holder unlinks it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _try_lock(path: Path) -> int | None:
    """The locked descriptor of the file at ``path``, or None while another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # OSError (read-only folder): caller skips the lock
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        if _names(path, fd):
            return fd
        os.close(fd)  # locked a file its last holder unlinked on exit: a newer one (or none) is there now


def _release_all() -> None:
    """At exit: unlink each lock file while still holding it, then let it go (see the module doc)."""
    for key, fd in list(_HELD.items()):
        if _TAKEN_BY.get(key) != os.getpid():
            continue  # a forked child's copy: the lock (POSIX locks are not inherited) is the parent's
        path = Path(key)
        if _names(path, fd):  # not if someone replaced it by hand: that file is not ours to remove
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)
        del _HELD[key], _TAKEN_BY[key]


def acquire(db: Path, wait: bool = False, notify: Callable[[str], None] | None = None) -> int | None:
    """Hold the database's writer lock until this process exits; raise DatabaseLocked or wait.

    Returns the pid of the holder it waited for, if any: that process may keep DuckDB's own lock a
    few milliseconds longer while it exits, and ``connect_writer`` need not announce it twice.
    """
    if str(db) == ":memory:" or not db.parent.exists():
        return None  # connect() reports a missing folder with its own message
    path = lock_path(db)
    key = str(path.resolve())
    fd = _HELD.get(key)  # POSIX locks belong to the process: a second open here would not conflict
    announced = False
    waited_for = None
    while fd is None:
        try:
            fd = _try_lock(path)
        except OSError:
            return None  # no lock file possible here: DuckDB's own lock still refuses a second writer
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
        waited_for = (info or {}).get("pid", waited_for)
        time.sleep(POLL_S)
    if not _TAKEN_BY:
        atexit.register(_release_all)
    _HELD[key], _TAKEN_BY[key] = fd, os.getpid()
    info = {
        "pid": os.getpid(),
        "command": " ".join(["teacherforge", *sys.argv[1:]])[:300],
        "started": dt.datetime.now().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return waited_for


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
    waited_for = acquire(db, wait, notify)
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
            if notify and not announced and int(found["pid"]) != waited_for:  # not the one on its way out
                notify(f"{db}: waiting for {who} to release the database")
            announced = True
            time.sleep(POLL_S)


def release(db: Path) -> None:
    """Let the writer lock go before exit (``teacherforge ui`` writes reviews in short turns).

    The same order as at exit: unlink the lock file while still holding it, then close it.
    Nothing happens if this process does not hold the lock.
    """
    key = str(lock_path(db).resolve())
    fd, taken_by = _HELD.pop(key, None), _TAKEN_BY.pop(key, None)
    if fd is None:
        return
    if taken_by == os.getpid() and _names(Path(key), fd):
        with contextlib.suppress(OSError):
            Path(key).unlink()
    with contextlib.suppress(OSError):
        os.close(fd)
    if not _TAKEN_BY:
        atexit.unregister(_release_all)


def writer_pid(db: Path) -> int | None:
    """PID of another process holding the writer lock of ``db``, or None; takes no lock itself.

    Asked with F_GETLK: taking the lock even briefly could make a writer starting at that moment fail.
    F_GETLK does not see a lock this process holds.
    """
    try:
        fd = os.open(lock_path(db), os.O_RDONLY)
    except OSError:
        return None  # no lock file: no writer
    try:
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)  # struct flock, whole file
        kind, _, _, _, pid = struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, query))
    except OSError:
        return None
    finally:
        os.close(fd)
    return pid if kind != fcntl.F_UNLCK else None
