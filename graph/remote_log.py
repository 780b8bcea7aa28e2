"""The event log seen from a Ray worker: appends are buffered and shipped to the driver in batches.

Why: DuckDB allows one writing process per file, and ``EventLog.append`` assigns each event its id,
its gap-free ``seq`` and its parent per stream (per sample). So the driver keeps the only
``EventLog``; a worker's nodes append to a ``RemoteSink`` (the same ``append`` signature, so the graph
and its nodes do not know where they run), and the driver replays each batch into its log in order.
A sample runs on exactly one worker at a time, so its stream is appended in the order the worker
produced it and gets the same seqs and parents as in a single-process run. Timestamps are the
driver's (the moment a batch is appended), so they are ordered within the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


class EventSink(Protocol):
    """What the graph needs of an event log: ``EventLog`` and ``RemoteSink`` both provide it."""

    def append(
        self,
        run_id: str,
        type: str,
        payload: dict[str, Any] | None = None,
        sample_id: str | None = None,
        agent: str | None = None,
        parent_event_id: str | None = None,
    ) -> Any: ...


class PendingEvent(NamedTuple):
    """An event as appended in a worker, before the driver gives it an id, a seq and a parent."""

    run_id: str
    type: str
    payload: dict[str, Any]
    sample_id: str | None
    agent: str | None
    parent_event_id: str | None


@dataclass
class Batch:
    """What a worker ships at once: its events in append order, then the samples that ended.

    A sample is listed in ``done`` only after its last event was appended, so the driver that
    applies ``events`` before ``done`` never counts a sample whose events it has not written.
    """

    events: list[PendingEvent] = field(default_factory=list)
    done: list[tuple[str, str]] = field(default_factory=list)  # (sample_id, status or "abandoned")
    # sample_id -> why the run budget refused its next call (status "budget"): the run stops for it
    refusals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.done)


class RemoteSink:
    """The worker's event log: ``append`` is a tuple and a list append; ``take`` swaps the batch out.

    ``append`` may be called from the worker's event loop or a helper thread (an endpoint pool's
    callback), hence the lock; ``wait`` wakes the long-poll of the driver when something arrived.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batch = Batch()
        self._arrived: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def append(
        self,
        run_id: str,
        type: str,
        payload: dict[str, Any] | None = None,
        sample_id: str | None = None,
        agent: str | None = None,
        parent_event_id: str | None = None,
    ) -> PendingEvent:
        event = PendingEvent(run_id, type, payload or {}, sample_id, agent, parent_event_id)
        with self._lock:
            self._batch.events.append(event)
        self._wake()
        return event

    def finished(self, sample_id: str, status: str, refusal: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._batch.done.append((sample_id, status))
            if refusal is not None:
                self._batch.refusals[sample_id] = refusal
        self._wake()

    def pending(self) -> bool:
        return bool(self._batch)

    def has_done(self) -> bool:
        return bool(self._batch.done)

    def take(self) -> Batch:
        with self._lock:
            batch, self._batch = self._batch, Batch()
        if self._arrived is not None:
            self._arrived.clear()
        return batch

    async def wait(self, timeout_s: float) -> None:
        """Return when there is something to ship, or after ``timeout_s``."""
        if self._arrived is None:
            self._arrived, self._loop = asyncio.Event(), asyncio.get_running_loop()
        if self._batch:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout_s)

    def _wake(self) -> None:
        arrived, loop = self._arrived, self._loop
        if arrived is None or loop is None or arrived.is_set():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            arrived.set()
        else:  # an append from a helper thread: asyncio objects are set on their own loop
            loop.call_soon_threadsafe(arrived.set)


def replay_batch(
    batch: Batch,
    sink: EventSink,
    owns: Callable[[str], bool],
    on_event: Callable[[PendingEvent], None] | None = None,
) -> list[tuple[str, str]]:
    """Append a worker's events to the driver's log; return the samples that ended.

    ``owns(sample_id)`` says whether this worker still holds that sample: events of a sample that was
    taken from the worker (it was declared lost and the sample restarted elsewhere) are dropped, so a
    stream never mixes two attempts after its ``sample.restarted``. Run-level events always pass.
    """
    for event in batch.events:
        if event.sample_id is not None and not owns(event.sample_id):
            continue
        sink.append(
            event.run_id,
            event.type,
            event.payload,
            sample_id=event.sample_id,
            agent=event.agent,
            parent_event_id=event.parent_event_id,
        )
        if on_event is not None:
            on_event(event)
    return [(sid, status) for sid, status in batch.done if owns(sid)]
