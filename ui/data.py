"""One database as the UI sees it: short read-only opens, the in-memory index, and review landing.

Why a readers-writer lock: DuckDB refuses a read-write open while the same process has the file open
read-only (and the reverse), so reads (any number at once) and the landing of reviews never overlap.
Every connection lives for one request only, so a ``run`` can take the file between two requests;
while it writes, reads go to its snapshot (store/ui_access.py). A background thread prebuilds the
index and the token totals (seconds at a million events, without blocking pages) and keeps trying
to land queued decisions while a writer holds the file.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from teacherforge.store.db_lock import writer_pid
from teacherforge.store.review_lander import Landing, land_pending
from teacherforge.store.review_queue import pending
from teacherforge.store.ui_access import open_reader
from teacherforge.ui.sample_index import SampleIndex

log = logging.getLogger("teacherforge.ui")


class SharedLock:
    """Many readers or one writer (the standard library has no such lock); a waiting writer goes first,
    so pages that keep refreshing cannot hold a review back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class Database:
    def __init__(self, db: Path):
        self.db = db
        self.lock = SharedLock()
        self.index_lock = threading.Lock()  # one refresh of the index at a time
        self.calls_lock = threading.Lock()  # the token totals: seconds to build, so on their own lock
        self.index = SampleIndex()
        self.notice: str | None = None  # "run in progress by PID …; reading its snapshot …"
        self.last_landing: Landing | None = None

    @contextlib.contextmanager
    def reading(self, with_calls: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one request, with the index (and the token totals) refreshed.

        The caller reads the index inside the block, under ``index_lock``: a refresh in another
        request never changes it underneath. ``calls_lock`` is always taken first.
        """
        with self.lock.shared():
            con, notice = open_reader(self.db)
            try:
                with self.calls_lock if with_calls else contextlib.nullcontext():
                    if with_calls:
                        self.index.refresh_calls(con)
                    with self.index_lock:
                        self.notice = notice
                        self.index.refresh(con)
                        yield con
            finally:
                con.close()

    def pending(self) -> list[dict[str, Any]]:
        return pending(self.db)

    def pending_ids(self) -> set[str]:
        return {d["sample_id"] for d in self.pending()}

    def writer(self) -> int | None:
        return writer_pid(self.db)

    def land(self) -> Landing:
        """Append queued decisions now if no writer holds the file (a few hundred ms at 1M events)."""
        with self.lock.exclusive():
            self.last_landing = land_pending(self.db)
        return self.last_landing


class Lander(threading.Thread):
    """Prebuilds the index, then lands queued decisions whenever the writer lock is free."""

    def __init__(self, database: Database, interval_s: float = 2.0):
        super().__init__(name="review-lander", daemon=True)
        self.database, self.interval_s = database, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        # The index first (pages wait for it), then the token totals (only the dashboard does).
        # A locked file without a snapshot yet: the first request builds them instead.
        for with_calls in (False, True):
            with contextlib.suppress(Exception), self.database.reading(with_calls):
                pass
        while not self.stopped.wait(self.interval_s):
            try:
                if self.database.pending() and self.database.writer() is None:
                    landing = self.database.land()
                    if landing.landed:
                        log.info("landed %d queued review decision(s)", landing.landed)
            except Exception as exc:  # keep trying: the decisions are safe in the queue file
                log.warning("could not land queued review decisions: %s", exc)

    def stop(self) -> None:
        self.stopped.set()
