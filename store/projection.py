"""Folding a sample's events into its conversation: the projection that replay and export share.

Export is built from this fold (not from graph state), so what a user replays is exactly what
was exported.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from teacherforge.store.event_filter import event_filter

TERMINAL_TYPES = {"sample.accepted": "accepted", "sample.rejected": "rejected", "sample.failed": "failed"}
DECISIONS = {"review.approved": "approved", "review.rejected": "rejected"}


@dataclass
class SampleView:
    sample_id: str
    run_id: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    turns: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    reasons: list[str] = field(default_factory=list)
    revisions: int = 0
    critiques: list[dict[str, Any]] = field(default_factory=list)
    source_chunk_ids: list[str] = field(default_factory=list)
    teacher_model: str | None = None
    error: str | None = None
    # A person's review (teacherforge ui): decision, reason, reviewer, tags, edited_turns; {} if none.
    review: dict[str, Any] = field(default_factory=dict)

    @property
    def last_scores(self) -> dict[str, int] | None:
        return self.critiques[-1]["scores"] if self.critiques else None


def apply(view: SampleView, event: dict[str, Any]) -> SampleView:
    """Apply one event to the view in place (the fold step)."""
    kind, payload = event["type"], event["payload"]
    view.run_id = view.run_id or event["run_id"]
    if kind == "sample.restarted":  # resume: the sample starts over (recorded replies make it cheap)
        fresh = SampleView(sample_id=view.sample_id, run_id=view.run_id)
        view.__dict__.update(fresh.__dict__)
    elif kind == "sample.planned":
        view.plan = payload
    elif kind == "retrieval.done":
        for chunk_id in payload.get("chunk_ids", []):
            if chunk_id not in view.source_chunk_ids:
                view.source_chunk_ids.append(chunk_id)
    elif kind == "turn.added":
        view.turns.append(_turn(payload))
    elif kind == "turn.revised":
        index = payload["turn_index"]
        if index < len(view.turns):
            view.turns[index] = _turn(payload)
    elif kind == "llm.call" and event.get("agent") == "teacher" and not payload.get("error"):
        view.teacher_model = payload.get("model")
    elif kind == "critique.done":
        view.critiques.append(payload)
    elif kind == "refine.done":
        view.revisions = payload.get("revision", view.revisions + 1)
    elif kind in TERMINAL_TYPES:
        view.status = TERMINAL_TYPES[kind]
        view.reasons = payload.get("reasons", [])
        view.revisions = payload.get("revisions", view.revisions)
        view.error = payload.get("error")
    elif kind.startswith("review."):
        _review(view, kind, payload)
    return view


def _review(view: SampleView, kind: str, payload: dict[str, Any]) -> None:
    """A human decision: the latest approve/reject wins, tags add up, an edit replaces a turn's text."""
    review = view.review
    if kind in DECISIONS:
        review.update(decision=DECISIONS[kind], reason=payload.get("reason"))
        review["reviewer"] = payload.get("reviewer")
    elif kind == "review.tagged" and payload.get("tag") not in review.setdefault("tags", []):
        review["tags"].append(payload.get("tag"))
    elif kind == "review.edited":
        index = payload.get("turn_index")
        if isinstance(index, int) and 0 <= index < len(view.turns):
            view.turns[index] = {**view.turns[index], "content": payload.get("after", "")}
            edited = review.setdefault("edited_turns", [])
            if index not in edited:
                edited.append(index)


def _turn(payload: dict[str, Any]) -> dict[str, Any]:
    keys = ("role", "content", "thought", "evidence", "cited_chunk_ids", "retrieved_chunk_ids")
    return {k: payload[k] for k in keys if k in payload}


def fold(sample_id: str, events: list[dict[str, Any]]) -> SampleView:
    view = SampleView(sample_id=sample_id)
    for event in events:
        apply(view, event)
    return view


def fold_with_snapshots(sample_id: str, events: list[dict[str, Any]]) -> list[tuple[dict, SampleView]]:
    """Each event with the view as it stood right after it (for replay)."""
    view = SampleView(sample_id=sample_id)
    out = []
    for event in events:
        apply(view, event)
        out.append((event, copy.deepcopy(view)))
    return out


def load_events(
    con: duckdb.DuckDBPyConnection, sample_id: str | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Events of one sample (or of all samples of a run), in stream order."""
    clause, args = event_filter(sample_id=sample_id, run_id=run_id)
    rows = con.execute(
        "SELECT event_id, run_id, sample_id, seq, ts, type, agent, payload, parent_event_id "
        f"FROM events WHERE {clause} ORDER BY sample_id, seq",
        args,
    ).fetchall()
    return [
        {
            "event_id": r[0],
            "run_id": r[1],
            "sample_id": r[2],
            "seq": r[3],
            "ts": r[4],
            "type": r[5],
            "agent": r[6],
            "payload": json.loads(r[7]) if r[7] else {},
            "parent_event_id": r[8],
        }
        for r in rows
    ]


def fold_run(con: duckdb.DuckDBPyConnection, run_id: str) -> list[SampleView]:
    """Every sample of a run, folded, in sample id order."""
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for event in load_events(con, run_id=run_id):
        if event["sample_id"] is not None:
            by_sample.setdefault(event["sample_id"], []).append(event)
    return [fold(sid, evs) for sid, evs in sorted(by_sample.items())]
