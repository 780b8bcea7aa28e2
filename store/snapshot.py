"""Reading the log while a run writes it: the writer publishes a snapshot file, readers fall back to it.

DuckDB locks the file for the writing process; no other process can open it, not even read-only.
So the writer thread of the EventLog copies the log to ``<db>.snapshot.duckdb`` every few seconds
and at flush markers: events, documents and chunks (without embeddings), plus the same views, in a
temp file renamed into place (a reader never sees a half-written snapshot). ``open_for_reading``
opens the database read-only and, when another process holds the lock, opens that process's
snapshot instead, with a one-line notice; without one it fails naming the holder's PID.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sys
import time
from pathlib import Path

import duckdb

from teacherforge.store.database import DatabaseError, connect

SUFFIX = ".snapshot.duckdb"
HOLDER_PID = re.compile(r"\(PID (\d+)\)")
_ALIAS = "tf_snapshot"


def snapshot_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + SUFFIX)


class SnapshotPublisher:
    """Called on the EventLog's writer thread only (it owns the cursor that sees committed batches).

    The copy grows with the log (about 1 s per few hundred thousand events), so the interval
    stretches to ten times the last copy's duration: a big log is never spent copying itself.
    """

    def __init__(self, db: str | Path, interval_s: float = 5.0):
        self.path = snapshot_path(db)
        self.interval_s = interval_s
        self._last_at = time.monotonic()
        self._last_duration = 0.0
        self.error: str | None = None

    def seconds_until_due(self) -> float:
        gap = max(self.interval_s, 10 * self._last_duration)
        return self._last_at + gap - time.monotonic()

    def publish(self, cur: duckdb.DuckDBPyConnection) -> None:
        started = time.monotonic()
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
                f"(SELECT count(*) FROM {_ALIAS}.events) AS events",
                [os.getpid(), dt.datetime.now(dt.UTC).replace(tzinfo=None)],
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
        self._last_at = time.monotonic()
        self._last_duration = self._last_at - started

    def failed(self, exc: BaseException) -> None:
        """Readers just see an older snapshot (or none); say so once, on stderr."""
        self._last_at = time.monotonic()
        if self.error is None:
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"warning: cannot publish {self.path} for readers ({self.error})", file=sys.stderr)

    def remove(self) -> None:
        """The writer is done: readers open the database itself again."""
        _remove(self.path)
        _remove(self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}"))


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}.wal")):
        with contextlib.suppress(OSError):  # never stop the writer over a leftover file
            p.unlink()


def lock_holder_pid(message: str) -> int | None:
    """DuckDB names the holder: 'Conflicting lock is held in /usr/bin/python (PID 123) by user …'."""
    found = HOLDER_PID.search(message)
    return int(found.group(1)) if found else None


def open_for_reading(db: str | Path) -> tuple[duckdb.DuckDBPyConnection, str | None]:
    """A read-only connection and, when it is the writer's snapshot, the notice to print first."""
    try:
        return connect(db, read_only=True), None
    except DatabaseError as exc:
        cause = exc.__cause__
        if not isinstance(cause, duckdb.IOException) or "lock" not in str(cause).lower():
            raise
        pid = lock_holder_pid(str(cause))
    holder = f"PID {pid}" if pid is not None else "another process"
    snapshot = snapshot_path(db)
    con = None
    try:
        con = duckdb.connect(str(snapshot), read_only=True)
        info = con.execute("SELECT pid, taken_at, events FROM snapshot_info").fetchall()
        snap_pid, taken_at, events = info[0]
    except (duckdb.Error, IndexError):
        if con is not None:
            con.close()
        raise DatabaseError(
            f"{db}: locked by {holder} (a run or ingest is writing; DuckDB allows no other reader) and "
            f"no snapshot {snapshot.name} is published yet; wait for it to finish, or retry in a few seconds"
        ) from None
    if pid is not None and snap_pid != pid:
        con.close()
        raise DatabaseError(
            f"{db}: locked by {holder}, and {snapshot.name} was left by PID {snap_pid}, not the holder; "
            "wait for the holder to finish"
        )
    local = taken_at.replace(tzinfo=dt.UTC).astimezone().strftime("%H:%M:%S")
    return con, f"run in progress by {holder}; reading snapshot from {local} ({events} events)"
