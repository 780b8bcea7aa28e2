"""The append-only event log, the source of truth: one table, one batched writer per process.

Callers ``append`` from any thread or coroutine; the event gets its id, its gap-free ``seq`` within
its stream (a sample, or the run itself for run-level events) and its parent (the previous event of
the stream) at once, and a background thread writes batches with DuckDB's Appender, so concurrent
samples never interleave badly and no commit is paid per event.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import duckdb

EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    sample_id VARCHAR,
    seq INTEGER NOT NULL,
    ts TIMESTAMP NOT NULL,
    type VARCHAR NOT NULL,
    agent VARCHAR,
    payload JSON,
    parent_event_id VARCHAR
)
"""

EVENT_COLUMNS = [
    "event_id",
    "run_id",
    "sample_id",
    "seq",
    "ts",
    "type",
    "agent",
    "payload",
    "parent_event_id",
]


@dataclass(frozen=True)
class Event:
    event_id: str
    run_id: str
    sample_id: str | None
    seq: int
    ts: dt.datetime
    type: str
    agent: str | None
    payload: dict[str, Any]
    parent_event_id: str | None

    def row(self) -> tuple:
        return (
            self.event_id,
            self.run_id,
            self.sample_id,
            self.seq,
            self.ts,
            self.type,
            self.agent,
            json.dumps(self.payload, ensure_ascii=False, default=str),
            self.parent_event_id,
        )


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(EVENTS_DDL)


class EventLog:
    """Assigns ids/seqs synchronously and writes asynchronously in batches on one thread."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, batch_size: int = 2000, flush_interval_s: float = 0.05
    ):
        self._con = con
        ensure_schema(con)
        self._lock = threading.Lock()
        self._next_seq: dict[str, int] = {}
        self._last_event: dict[str, str | None] = {}
        self._queue: queue.Queue[Any] = queue.Queue()
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="event-writer", daemon=True)
        self._thread.start()

    def append(
        self,
        run_id: str,
        type: str,
        payload: dict[str, Any] | None = None,
        sample_id: str | None = None,
        agent: str | None = None,
        parent_event_id: str | None = None,
    ) -> Event:
        """Queue one event and return it (with id and seq) immediately."""
        if self._error is not None:
            raise RuntimeError(f"event writer failed: {self._error}") from self._error
        stream = sample_id or f"run:{run_id}"
        with self._lock:
            if stream not in self._next_seq:
                self._load_stream(stream, run_id, sample_id)
            seq = self._next_seq[stream]
            event = Event(
                event_id=uuid.uuid4().hex,
                run_id=run_id,
                sample_id=sample_id,
                seq=seq,
                ts=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                type=type,
                agent=agent,
                payload=payload or {},
                parent_event_id=parent_event_id or self._last_event[stream],
            )
            self._next_seq[stream] = seq + 1
            self._last_event[stream] = event.event_id
            self._queue.put(event)
        return event

    def _load_stream(self, stream: str, run_id: str, sample_id: str | None) -> None:
        """Continue a stream that already has events in the file (resume, fork)."""
        cur = self._con.cursor()
        if sample_id is None:
            where, args = "run_id = ? AND sample_id IS NULL", [run_id]
        else:
            where, args = "sample_id = ?", [sample_id]
        row = cur.execute(
            f"SELECT seq, event_id FROM events WHERE {where} ORDER BY seq DESC LIMIT 1", args
        ).fetchall()
        self._next_seq[stream] = row[0][0] + 1 if row else 0
        self._last_event[stream] = row[0][1] if row else None

    def flush(self) -> None:
        """Block until every event queued before this call is in the database."""
        marker = threading.Event()
        self._queue.put(marker)
        marker.wait()
        if self._error is not None:
            raise RuntimeError(f"event writer failed: {self._error}") from self._error

    def close(self) -> None:
        self.flush()
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _write_loop(self) -> None:
        cur = self._con.cursor()
        appender = cur.appender("events", columns=EVENT_COLUMNS)
        batch: list[Event] = []

        def write() -> None:
            if batch:
                try:
                    appender.append_rows([e.row() for e in batch])
                    appender.flush()
                except Exception as exc:  # surfaced to the next append/flush, never swallowed
                    self._error = exc
                batch.clear()

        while True:
            try:
                item = self._queue.get(timeout=self._interval if batch else None)
            except queue.Empty:
                write()
                continue
            if isinstance(item, Event):
                batch.append(item)
                if len(batch) >= self._batch_size:
                    write()
            elif isinstance(item, threading.Event):
                write()
                item.set()
            elif item is _STOP:
                write()
                return


_STOP: Any = object()
