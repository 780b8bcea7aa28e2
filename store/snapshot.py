"""Reading the log while a run writes it: the writer publishes a snapshot when a reader asks for one.

DuckDB locks the file for the writing process; no other process can open it, not even read-only.
So a reader that finds the file locked asks the writer for a copy: it bumps the mtime of
``<db>.snapshot.request`` (the writer creates that file, holding its PID, so a reader knows someone
will answer). The writer thread looks at that mtime after each batch and every quarter second when
idle (one stat), and copies the log to ``<db>.snapshot.duckdb``: events, documents and chunks
(without embeddings), plus the same views, in a temp file renamed into place (a reader never sees a
half-written snapshot). Its ``snapshot_info`` names the request it answers, so the reader takes it
only when it started after the reader asked. A writer nobody asks never copies: at a million events
one copy costs about 10 s. If no answer comes within a few seconds, the reader opens the snapshot
that is there, with a notice that says its age; without one it fails naming the holder's PID.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import glob
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from teacherforge.store.database import DatabaseError, connect

SUFFIX = ".snapshot.duckdb"
REQUEST_SUFFIX = ".snapshot.request"
REQUEST_WAIT_S = 5.0  # how long a reader waits for the writer's answer before it reads what is there
COPY_WAIT_S = 60.0  # with no snapshot to read instead, how long it waits for a copy under way (big logs)
POLL_S = 0.25  # how often an idle writer looks for a request; a busy one looks after every batch
COPY_SHARE = 4  # after a copy of d seconds the next waits 4*d: readers asking in a loop get at most a fifth
HOLDER_PID = re.compile(r"\(PID (\d+)\)")
_ALIAS = "tf_snapshot"


def snapshot_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + SUFFIX)


def request_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + REQUEST_SUFFIX)


class SnapshotPublisher:
    """Answers readers' requests; called on the EventLog's writer thread only (its cursor sees the
    committed batches). ``pending`` is one stat, so the writer can ask it after every batch.

    The copy grows with the log (about 1 s per hundred thousand events), so after a copy the next
    one waits COPY_SHARE times as long: however often readers ask, the log is not spent copying itself.
    """

    def __init__(self, db: str | Path, poll_s: float = POLL_S):
        self.path = snapshot_path(db)
        self.request = request_path(db)
        self.poll_s = poll_s
        self.error: str | None = None
        self._answered = 0  # mtime (ns) of the request the last snapshot answered
        self._next_at = 0.0  # monotonic time before which no copy starts
        self._pid = os.getpid()
        try:  # our PID in it tells readers a live writer answers; an older request is stale
            self.request.write_text(str(self._pid), encoding="utf-8")
            self._answered = self.request.stat().st_mtime_ns
        except OSError:
            pass  # a read-only folder: readers find no request file and read what is there
        atexit.register(self._at_exit)  # a writer that dies on an exception leaves no files behind

    def pending(self) -> int | None:
        """The stamp of a request to answer now, or None: nobody asked, or the last copy was too recent."""
        try:
            asked = self.request.stat().st_mtime_ns
        except OSError:
            return None
        if asked <= self._answered or time.monotonic() < self._next_at:
            return None
        return asked

    def publish(self, cur: duckdb.DuckDBPyConnection, answers: int = 0) -> None:
        """Copy what ``cur`` sees into the snapshot file; ``answers`` is the request stamp it serves."""
        started = time.monotonic()
        self._answered = max(self._answered, answers)  # even if the copy fails: the reader falls back
        try:
            self._copy(cur, answers)
        finally:
            ended = time.monotonic()
            self._next_at = ended + COPY_SHARE * (ended - started)

    def _copy(self, cur: duckdb.DuckDBPyConnection, answers: int) -> None:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        _remove(tmp)
        quoted = str(tmp).replace("'", "''")
        cur.execute(f"ATTACH '{quoted}' AS {_ALIAS}")
        try:
            cur.execute(f"CREATE TABLE {_ALIAS}.events AS SELECT * FROM events")
            tables = {r[0] for r in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()}  # fmt: skip
            if "documents" in tables:
                cur.execute(f"CREATE TABLE {_ALIAS}.documents AS SELECT * FROM documents")
            if "chunks" in tables:  # embeddings stay behind: large, and no recipe reads them
                cur.execute(f"CREATE TABLE {_ALIAS}.chunks AS SELECT * EXCLUDE (embedding) FROM chunks")
            cur.execute(
                f"CREATE TABLE {_ALIAS}.snapshot_info AS SELECT ? AS pid, ? AS taken_at, "
                f"(SELECT count(*) FROM {_ALIAS}.events) AS events, ?::BIGINT AS request_ns",
                [os.getpid(), dt.datetime.now(dt.UTC).replace(tzinfo=None), answers],
            )
            cur.execute(f"CHECKPOINT {_ALIAS}")
        finally:
            cur.execute(f"DETACH {_ALIAS}")
        from teacherforge.store.views import create_views  # views imports events, which uses us

        con = duckdb.connect(str(tmp))  # its own file: the views bind to the snapshot's tables
        try:
            create_views(con)
        finally:
            con.close()
        os.replace(tmp, self.path)

    def failed(self, exc: BaseException) -> None:
        """Readers just see an older snapshot (or none); say so once, on stderr."""
        if self.error is None:
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"warning: cannot publish {self.path} for readers ({self.error})", file=sys.stderr)

    def remove(self) -> None:
        """The writer is done: readers open the database itself again."""
        atexit.unregister(self._at_exit)
        _remove(self.path)
        _remove(self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}"))
        with contextlib.suppress(OSError):
            self.request.unlink()

    def _at_exit(self) -> None:
        if os.getpid() == self._pid:  # not in a forked child: the files are the parent's
            self.remove()


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}.wal")):
        with contextlib.suppress(OSError):  # never stop the writer over a leftover file
            p.unlink()


def lock_holder_pid(message: str) -> int | None:
    """DuckDB names the holder: 'Conflicting lock is held in /usr/bin/python (PID 123) by user …'."""
    found = HOLDER_PID.search(message)
    return int(found.group(1)) if found else None


def request_snapshot(db: str | Path, holder_pid: int | None = None) -> int | None:
    """Ask the writer of ``db`` for a fresh snapshot; the stamp its answer will carry, or None if no
    live writer takes requests (none, not TeacherForge, or one that is gone: the file names its PID).
    """
    path = request_path(db)
    try:
        owner = int(path.read_text(encoding="utf-8") or 0)
    except (OSError, ValueError):
        return None
    if holder_pid is not None and owner != holder_pid:
        return None
    stamp = time.time_ns()  # finer than the kernel's file clock: two readers get two stamps
    try:
        os.utime(path, ns=(stamp, stamp))
    except PermissionError:  # another user's file: only "now" needs no ownership
        with contextlib.suppress(OSError):
            os.utime(path)
    except OSError:
        return None
    try:
        seen = path.stat().st_mtime_ns
    except OSError:
        return None
    return min(stamp, seen)  # a file system that rounds times stores (and answers) the rounded stamp


def _open_snapshot(path: Path) -> tuple[duckdb.DuckDBPyConnection, dict[str, Any]] | None:
    """The snapshot read-only, with its snapshot_info row (request_ns is 0 in older snapshots)."""
    con = None
    try:
        con = duckdb.connect(str(path), read_only=True)
        cur = con.execute("SELECT * FROM snapshot_info")
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            raise IndexError("empty snapshot_info")
    except (duckdb.Error, IndexError):
        if con is not None:
            con.close()
        return None
    return con, {"request_ns": 0, **dict(zip(names, row, strict=True))}


def _wait_for_answer(
    db: str | Path, pid: int | None, asked: int, wait_s: float
) -> tuple[duckdb.DuckDBPyConnection, dict[str, Any] | None] | None:
    """The snapshot answering ``asked``, or the database itself if the writer finished meanwhile."""
    path, seen = snapshot_path(db), None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:  # none yet, or removed by a writer that is closing: then the file opens soon
            with contextlib.suppress(DatabaseError):
                return connect(db, read_only=True), None
            continue
        if mtime == seen:
            continue
        seen = mtime
        opened = _open_snapshot(path)
        if opened is None:
            continue
        con, info = opened
        if info["request_ns"] >= asked and (pid is None or info["pid"] == pid):
            return con, info
        con.close()
    return None


def _copying(snapshot: Path) -> bool:
    """A writer's temp copy is there: a snapshot is on its way (a big log takes seconds to copy)."""
    return any(snapshot.parent.glob(f"{glob.escape(snapshot.name)}.tmp-*"))


def _age(taken_at: dt.datetime) -> str:
    seconds = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - taken_at).total_seconds()
    return f"{max(seconds, 0):.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def open_for_reading(db: str | Path, wait_s: float = 0.0) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """A read-only connection and, when it is the writer's snapshot, the notice to print first.

    With ``wait_s``, a locked file makes it ask the writer for a fresh snapshot and wait that long
    for it (REQUEST_WAIT_S suits commands); without, it reads the snapshot that is there.
    """
    try:
        return connect(db, read_only=True), None
    except DatabaseError as exc:
        cause = exc.__cause__
        if not isinstance(cause, duckdb.IOException) or "lock" not in str(cause).lower():
            raise
        pid = lock_holder_pid(str(cause))
    holder = f"PID {pid}" if pid is not None else "another process"
    snapshot = snapshot_path(db)
    asked = request_snapshot(db, pid) if wait_s > 0 else None
    answer = _wait_for_answer(db, pid, asked, wait_s) if asked is not None else None
    if answer is None and asked is not None and not snapshot.exists() and _copying(snapshot):
        answer = _wait_for_answer(db, pid, 0, COPY_WAIT_S)  # nothing else to read: take the first copy
    if answer is not None and answer[1] is None:
        return answer[0], None  # the writer finished while we waited
    opened = answer or _open_snapshot(snapshot)
    if opened is None:
        with contextlib.suppress(DatabaseError):  # it may just have finished
            return connect(db, read_only=True), None
        raise DatabaseError(
            f"{db}: locked by {holder} (a run or ingest is writing; DuckDB allows no other reader) and "
            f"no snapshot {snapshot.name} is published; wait for it to finish, or retry in a few seconds"
        )
    con, info = opened
    if pid is not None and info["pid"] != pid:
        con.close()
        raise DatabaseError(
            f"{db}: locked by {holder}, and {snapshot.name} was left by PID {info['pid']}, not the holder; "
            "wait for the holder to finish"
        )
    taken_at = info["taken_at"]
    local = taken_at.replace(tzinfo=dt.UTC).astimezone().strftime("%H:%M:%S")
    fresh = asked is not None and info["request_ns"] >= asked  # taken after we asked; else say its age
    age = "" if fresh else f", {_age(taken_at)} old"
    return con, f"run in progress by {holder}; reading snapshot from {local} ({info['events']} events{age})"
