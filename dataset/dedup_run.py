"""A dedup pass over a run's accepted samples; every drop becomes a ``dedup.dropped`` event.

The samples are read in plan order (the sample id), so the result does not depend on concurrency,
and samples an earlier pass dropped are not compared again. Finding the duplicates is
dataset/dedup.py (pure); this module reads the texts, turns index pairs into sample ids, and records
the outcome. Nothing is deleted: export asks ``teacherforge.store.dedup_events.dropped_sample_ids``
which samples to leave out, and SQL sees the drops in the ``dedup_drops`` view.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import duckdb

from teacherforge.dataset.dedup import (
    DEFAULT_THRESHOLDS,
    FIELDS,
    METHODS,
    DedupError,
    embed_fn,
    find_duplicates,
)
from teacherforge.retrieval.embedder import DEFAULT_EMBEDDER
from teacherforge.store.dedup_events import dedup_candidates
from teacherforge.store.events import EventLog
from teacherforge.store.run_queries import run_exists

__all__ = ["DedupError", "DedupResult", "Drop", "dedup_texts", "new_dedup_id", "record", "run_dedup"]


@dataclass(frozen=True)
class Drop:
    sample_id: str
    kept_sample_id: str
    similarity: float
    method: str  # exact | minhash | embedding
    threshold: float


@dataclass
class DedupResult:
    dedup_id: str
    run_id: str
    field: str
    method: str
    threshold: float
    candidates: int
    drops: list[Drop] = field(default_factory=list)

    def summary(self) -> dict:
        exact = sum(d.method == "exact" for d in self.drops)
        return {
            "dedup_id": self.dedup_id,
            "run_id": self.run_id,
            "field": self.field,
            "method": self.method,
            "threshold": self.threshold,
            "candidates": self.candidates,
            "dropped": len(self.drops),
            "exact": exact,
            "near": len(self.drops) - exact,
        }


def new_dedup_id() -> str:
    return f"dedup-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def dedup_texts(
    con: duckdb.DuckDBPyConnection, run_id: str, on: str
) -> tuple[list[str], list[str], list[list[str]]]:
    """Accepted, not yet dropped samples in plan order: ids, texts, and each one's turn contents."""
    if on not in FIELDS:
        raise DedupError(f"--on must be first-turn or conversation (got '{on}')")
    ids, texts, parts = [], [], []
    for sample_id, roles, contents in dedup_candidates(con, run_id):
        contents = [c or "" for c in contents]
        if on == "first-turn":
            first = next((c for r, c in zip(roles, contents, strict=True) if r == "user"), "")
            texts.append(first)
            parts.append([first])
        else:
            texts.append("\n".join(f"{r}: {c}" for r, c in zip(roles, contents, strict=True)))
            parts.append(contents)
        ids.append(sample_id)
    return ids, texts, parts


def run_dedup(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    on: str = "first-turn",
    method: str = "minhash",
    threshold: float | None = None,
    shingle_size: int = 3,
    number_guard: bool = True,
    embedder: str = DEFAULT_EMBEDDER,
) -> DedupResult:
    """Find what to drop (nothing is written; see ``record``)."""
    if method not in METHODS:
        raise DedupError(f"--method must be minhash or embedding (got '{method}')")
    if not run_exists(con, run_id):
        raise DedupError(f"no run '{run_id}' in this database; list runs with: teacherforge runs")
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else threshold
    ids, texts, parts = dedup_texts(con, run_id, on)
    embed = embed_fn(parts, embedder) if method == "embedding" and texts else None
    found = find_duplicates(texts, method, threshold, shingle_size, number_guard, embed)
    result = DedupResult(new_dedup_id(), run_id, on, method, threshold, len(ids))
    for dropped, kept, sim, how in found:
        used = 1.0 if how == "exact" else threshold
        result.drops.append(Drop(ids[dropped], ids[kept], sim, how, used))
    return result


def record(log: EventLog, result: DedupResult, shingle_size: int, number_guard: bool) -> None:
    """One ``dedup.dropped`` per drop (in the dropped sample's stream), then a run-level summary."""
    for drop in result.drops:
        log.append(
            result.run_id,
            "dedup.dropped",
            {
                "sample_id": drop.sample_id,
                "kept_sample_id": drop.kept_sample_id,
                "similarity": drop.similarity,
                "threshold": drop.threshold,
                "method": drop.method,
                "field": result.field,
                "dedup_id": result.dedup_id,
            },
            sample_id=drop.sample_id,
        )
    log.append(
        result.run_id,
        "dedup.finished",
        {**result.summary(), "shingle_size": shingle_size, "number_guard": number_guard},
    )
    log.flush()
