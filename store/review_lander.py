"""Landing queued review decisions in the event log from ``teacherforge ui``, in short turns.

Why short: while the UI holds the writer lock no ``run`` can start, so it takes the lock only when
nobody holds it (asking the kernel first, store/ui_access.py), appends what is queued through an
``EventLog`` like any writer, and lets go at once. If a writer holds the file, nothing is taken
and the decisions stay queued, durable, until the next try or until that writer drains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from teacherforge.store.database import DatabaseError
from teacherforge.store.db_lock import DatabaseLocked, connect_writer, release
from teacherforge.store.events import EventLog
from teacherforge.store.review_queue import drain, pending
from teacherforge.store.ui_access import writer_pid
from teacherforge.store.views import create_views


@dataclass
class Landing:
    landed: int  # events appended by this call
    pending: int  # decisions still queued afterwards
    blocked_by: str | None = None  # why nothing could land (a writer holds the file)


def land_pending(db: Path) -> Landing:
    """Append every queued decision if the database is free; otherwise leave them queued."""
    queued = len(pending(db))
    if not queued:
        return Landing(0, 0)
    owner = writer_pid(db)
    if owner is not None:
        return Landing(0, queued, f"PID {owner} is writing {db.name}")
    try:
        con = connect_writer(db, wait=False)
    except DatabaseLocked as exc:  # a writer started in between, or another process has DuckDB open
        release(db)
        return Landing(0, queued, str(exc))
    except DatabaseError:
        release(db)
        raise
    try:
        create_views(con)
        log = EventLog(con)
        try:
            landed = drain(db, con, log)
        finally:
            log.close()
    finally:
        con.close()
        release(db)
    return Landing(landed, len(pending(db)))
