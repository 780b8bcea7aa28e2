"""The durable queue of human review decisions waiting for the writer: ``<db>.reviews.jsonl``.

Why a queue: DuckDB lets one process write the file, and while ``run`` writes it nobody else may
even open it. A decision made in ``teacherforge ui`` meanwhile must not be lost, so it is appended
to this file (one JSON line, fsync'ed) and lands in the event log later, through whichever process
holds the writer: the UI as soon as the lock is free (store/review_lander.py), or any writer that
opens the database through ``cli.common.open_writer`` (``run``, ``ingest``, a fork) at its start.

Landing is idempotent: every decision carries a ``review_id``, and ``drain`` skips the ones already
in the log, so a crash between appending the events and emptying the file duplicates nothing.
Every reader and writer of the file holds ``flock`` on it; an emptied file is removed under the
lock, and an opener that finds its file replaced opens the new one (the same guard as db_lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from teacherforge.store.events import EventLog
from teacherforge.store.review_queries import landed_review_ids

SUFFIX = ".reviews.jsonl"
ACTIONS = {
    "approve": "review.approved",
    "reject": "review.rejected",
    "edit": "review.edited",
    "tag": "review.tagged",
}
AGENT = "reviewer"


def queue_path(db: str | Path) -> Path:
    db = Path(db)
    return db.with_name(db.name + SUFFIX)


def new_decision(action: str, run_id: str, sample_id: str, reviewer: str, **fields: Any) -> dict[str, Any]:
    """One decision as queued and as landed: the event type, its stream and its payload (who, when)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
    payload = {"review_id": uuid.uuid4().hex, "reviewer": reviewer, "decided_at": now}
    payload.update({k: v for k, v in fields.items() if v is not None})
    return {"type": ACTIONS[action], "run_id": run_id, "sample_id": sample_id, "payload": payload}


@contextlib.contextmanager
def _locked(path: Path, create: bool) -> Iterator[int | None]:
    """The queue file's descriptor under an exclusive flock (None if there is no file and create is off)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            yield None
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # a drainer removed it while we waited: open the current one
    try:
        yield fd
    finally:
        os.close(fd)  # closing drops the flock


def enqueue(db: str | Path, decision: dict[str, Any]) -> None:
    """Append one decision and fsync it (and the folder, for a new file) before returning."""
    path = queue_path(db)
    existed = path.exists()
    line = (json.dumps(decision, ensure_ascii=False) + "\n").encode()
    with _locked(path, create=True) as fd:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a crash tore the last line: start on a fresh one, keep this decision
        os.write(fd, line)  # one write of the whole line (O_APPEND): never interleaved
        os.fsync(fd)
    if not existed:
        _fsync_folder(path.parent)


def pending(db: str | Path) -> list[dict[str, Any]]:
    """Every queued decision, oldest first; a torn line (a crash mid-write) is skipped."""
    with _locked(queue_path(db), create=False) as fd:
        return [] if fd is None else _read(fd)


def drain(db: str | Path, con: duckdb.DuckDBPyConnection, log: EventLog) -> int:
    """Append the queued decisions not yet in the log through ``log`` (the writer), then empty the queue.

    Returns how many events were appended. The queue is emptied only after ``log.flush()``: the
    events are in the database by then.
    """
    path = queue_path(db)
    with _locked(path, create=False) as fd:
        if fd is None:
            return 0
        decisions = _read(fd)
        seen = landed_review_ids(con, [d["payload"]["review_id"] for d in decisions])
        fresh = []
        for d in decisions:  # once each: already in the log, or queued twice (a client's retry)
            if d["payload"]["review_id"] not in seen:
                seen.add(d["payload"]["review_id"])
                fresh.append(d)
        for d in fresh:
            log.append(d["run_id"], d["type"], d["payload"], sample_id=d["sample_id"], agent=AGENT)
        if fresh:
            log.flush()
        os.unlink(path)  # under the lock: a waiting enqueuer sees the file replaced and reopens
        _fsync_folder(path.parent)
    return len(fresh)


def _read(fd: int) -> list[dict[str, Any]]:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, 1 << 20):
        chunks.append(block)
    found = []
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
            if record["payload"]["review_id"] and record["type"] in ACTIONS.values():
                found.append(record)
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
