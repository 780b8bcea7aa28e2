"""The append-only event log, the source of truth: one table, one batched writer per process.

Callers ``append`` from any thread or coroutine; the event gets its id, its gap-free ``seq`` within
its stream (a sample, or the run itself for run-level events) and its parent (the previous event of
the stream) at once, and a background thread writes batches with DuckDB's Appender, so concurrent
samples never interleave badly and no commit is paid per event.

The caller's side is kept to a few microseconds (an id, a timestamp and a list append under one
lock); JSON encoding and the Appender run on the writer thread, which is woken once per batch,
not once per event. When a reader in another process asks, the writer also publishes a snapshot
of the log (store/snapshot.py), because DuckDB lets no other process open the file while it writes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb

if TYPE_CHECKING:
    from teacherforge.store.snapshot import SnapshotPublisher

try:  # a transitive dependency of langgraph; ~20x faster than json.dumps on our payloads
    import orjson
except ImportError:  # pragma: no cover - the plain encoder gives the same JSON values
    orjson = None

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


def _default(value: Any) -> Any:
    """What json.dumps(default=str) would write: float subclasses (numpy) as numbers, the rest as str."""
    return float(value) if isinstance(value, float) else str(value)


if orjson is not None:
    _ORJSON_OPTIONS = (
        orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    )

    def encode_payload(payload: dict[str, Any]) -> str:
        try:
            return orjson.dumps(payload, default=_default, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # e.g. an int beyond 64 bits: the standard encoder takes everything
            return json.dumps(payload, ensure_ascii=False, default=str)

else:  # pragma: no cover

    def encode_payload(payload: dict[str, Any]) -> str:
        return json.dumps(payload, ensure_ascii=False, default=str)


class Event(NamedTuple):
    """One immutable event (a NamedTuple: built in well under a microsecond on the caller's thread)."""

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
        return (*self[:7], encode_payload(self.payload), self.parent_event_id)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(EVENTS_DDL)


class _Marker:
    """A flush (or stop) request travelling in order with the events."""

    __slots__ = ("done", "stop")

    def __init__(self, stop: bool = False):
        self.done = threading.Event()
        self.stop = stop


class EventLog:
    """Assigns ids/seqs synchronously and writes asynchronously in batches on one thread."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        batch_size: int = 2000,
        flush_interval_s: float = 0.05,
        snapshot: SnapshotPublisher | None = None,
    ):
        self._con = con
        ensure_schema(con)
        self._lock = threading.Lock()
        # 32 hex digits like uuid4().hex: 80 random bits per log, then a counter. Cheaper to make,
        # and neighbouring ids keep DuckDB's primary-key index inserts local.
        self._id_prefix = os.urandom(10).hex()
        self._ids = itertools.count()
        self._next_seq: dict[str, int] = {}
        self._last_event: dict[str, str | None] = {}
        self._pending: list[Any] = []  # events and markers, in append order; swapped out per batch
        self._has_items = threading.Event()  # set when _pending becomes non-empty
        self._urgent = threading.Event()  # a full batch, a flush or close: write now, don't wait
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._snapshot = snapshot
        self._error: BaseException | None = None
        self._load_streams()
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
        """Queue one event and return it (with id and seq) immediately.

        The payload is encoded later, on the writer thread: do not mutate it after appending.
        """
        if self._error is not None:
            raise RuntimeError(f"event writer failed: {self._error}") from self._error
        stream = sample_id or f"run:{run_id}"
        event_id = f"{self._id_prefix}{next(self._ids):012x}"
        ts = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with self._lock:
            seq = self._next_seq.get(stream, 0)
            event = Event(
                event_id,
                run_id,
                sample_id,
                seq,
                ts,
                type,
                agent,
                payload or {},
                parent_event_id or self._last_event.get(stream),
            )
            self._next_seq[stream] = seq + 1
            self._last_event[stream] = event_id
            pending = self._pending
            pending.append(event)
            if len(pending) == 1:
                self._has_items.set()
            elif len(pending) == self._batch_size:  # the writer swaps the list out, so once per batch
                self._urgent.set()
        return event

    def _load_streams(self) -> None:
        """Where each stream already in the file stands (resume, fork), in one query at open.

        One aggregate instead of a query per new stream: at a million events a per-stream lookup
        costs milliseconds, paid under the lock for every new sample. Memory is two dict entries
        per stream (about 200 bytes).
        """
        rows = (
            self._con.cursor()
            .execute(
                "SELECT coalesce(nullif(sample_id, ''), 'run:' || run_id), max(seq), arg_max(event_id, seq) "
                "FROM events GROUP BY ALL"
            )
            .fetchall()
        )
        for stream, seq, event_id in rows:
            self._next_seq[stream] = seq + 1
            self._last_event[stream] = event_id

    def flush(self) -> None:
        """Block until every event queued before this call is in the database."""
        self._send(_Marker()).wait()
        if self._error is not None:
            raise RuntimeError(f"event writer failed: {self._error}") from self._error

    def close(self) -> None:
        """Write everything queued, remove the published snapshot and request file, stop the writer."""
        self._send(_Marker(stop=True)).wait()
        self._thread.join(timeout=10)
        if self._error is not None:
            raise RuntimeError(f"event writer failed: {self._error}") from self._error

    def _send(self, marker: _Marker) -> threading.Event:
        with self._lock:
            self._pending.append(marker)
            self._has_items.set()
            self._urgent.set()
        return marker.done

    def _write_loop(self) -> None:
        cur = self._con.cursor()
        appender = cur.appender("events", columns=EVENT_COLUMNS)
        snapshot = self._snapshot

        def write(events: list[Event]) -> None:
            if events:
                try:
                    appender.append_rows([e.row() for e in events])
                    appender.flush()
                except Exception as exc:  # surfaced to the next append/flush, never swallowed
                    self._error = exc

        def answer_readers() -> None:
            """Publish only if a reader asked (store/snapshot.py); when nobody did, this is one stat."""
            asked = snapshot.pending() if snapshot is not None else None
            if asked is None:
                return
            try:
                snapshot.publish(cur, asked)
            except Exception as exc:  # a reader convenience: never stop the run for it
                snapshot.failed(exc)

        idle_wait = snapshot.poll_s if snapshot is not None else None  # only a publisher needs to wake
        while True:
            if not self._has_items.wait(idle_wait):
                answer_readers()  # idle, but a reader may be waiting
                continue
            self._urgent.wait(self._interval)  # let a batch gather unless someone needs it now
            with self._lock:
                items, self._pending = self._pending, []
                self._has_items.clear()
                self._urgent.clear()
            events: list[Event] = []
            for item in items:
                if type(item) is Event:
                    events.append(item)
                    continue
                write(events)
                events = []
                if item.stop:
                    if snapshot is not None:
                        snapshot.remove()
                    item.done.set()
                    return
                item.done.set()
            write(events)
            answer_readers()
