"""The UI's in-memory index of samples and runs, kept current by reading only the newest events.

Why in memory: at a million events any SQL that reads ``payload`` costs about a second (the column
is decompressed whole), while the list page must answer in well under 300 ms and refresh during a
run. So the index is built once from the events it needs (store/ui_queries.py), then each request
applies only the events written since (``ts`` after the newest it has seen). When the counts say
some new event is not newer (a merge, two events in one microsecond), it rebuilds from scratch.
Sample state follows the same rules as the fold (store/projection.py): a restart starts over, the
latest approve/reject wins, an edit replaces a turn's text.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb

from teacherforge.store.ui_queries import call_totals, events_after, index_events, log_position

TERMINAL = {"sample.accepted": "accepted", "sample.rejected": "rejected", "sample.failed": "failed"}
DIMENSIONS = ("groundedness", "persona_fidelity", "tier_match", "refusal_correctness", "naturalness")


@dataclass
class SampleRow:
    """What the list shows of one sample (and what it filters, sorts and searches on)."""

    sample_id: str
    run_id: str
    status: str = "running"
    tier: str | None = None
    persona: str | None = None
    technique: str | None = None
    category: str | None = None
    parent_sample_id: str | None = None
    seeded: bool = False
    revisions: int = 0
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, int] | None = None
    verdict: str | None = None  # the last verify.checked: passed / failed; None if the run has no verifier
    decision: str | None = None  # a person's latest approve/reject
    decision_reason: str | None = None
    reviewer: str | None = None
    tags: list[str] = field(default_factory=list)
    edited_turns: list[int] = field(default_factory=list)
    duplicate: bool = False  # dropped by dedup
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    turns: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (role, content)
    _text: str | None = None

    @property
    def min_score(self) -> int | None:
        return min(self.scores.values()) if self.scores else None

    @property
    def first_question(self) -> str:
        return self.turns[0][1] if 0 in self.turns else ""

    @property
    def text(self) -> str:
        """Every turn's current text, lower-cased, for the search box (cached until a turn changes)."""
        if self._text is None:
            self._text = "\n".join(content for _, content in self.turns.values()).lower()
        return self._text


@dataclass
class RunRow:
    run_id: str
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    status: str = "running"
    target: int | None = None


@dataclass
class CallTotals:
    """Model calls of one run, per agent: calls, tokens, errors, replies reused from the log."""

    per_agent: dict[str, Counter] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        counter = self.per_agent.setdefault(row["agent"] or "?", Counter())
        counter.update({k: row[k] or 0 for k in ("calls", "tokens_in", "tokens_out", "errors", "reused")})


class SampleIndex:
    """Samples and runs of one database; ``refresh`` brings it up to date with an open connection."""

    def __init__(self) -> None:
        self.samples: dict[str, SampleRow] = {}
        self.runs: dict[str, RunRow] = {}
        self.position: tuple[int, dt.datetime | None] = (-1, None)
        self.calls: dict[str, CallTotals] | None = None  # built on first use (the dashboard)
        self.calls_position: tuple[int, dt.datetime | None] = (-1, None)
        self.rebuilds = 0
        self.version = 0  # bumped whenever samples change: the list caches its answers per version

    def refresh(self, con: duckdb.DuckDBPyConnection) -> None:
        """Samples and runs: apply the events after the newest seen, or rebuild (see the module doc)."""
        position = log_position(con)
        if position == self.position:
            return
        after = self._resume_point(con, self.position, position)
        if after is None:
            self.samples, self.runs, self.rebuilds = {}, {}, self.rebuilds + 1
        for event in index_events(con, after):
            self._apply(event)
        self.position, self.version = position, self.version + 1

    def refresh_calls(self, con: duckdb.DuckDBPyConnection) -> None:
        """The model calls' token totals, kept current the same way (with their own position)."""
        position = log_position(con)
        if position == self.calls_position and self.calls is not None:
            return
        after = self._resume_point(con, self.calls_position, position) if self.calls is not None else None
        calls = self.calls if after is not None and self.calls is not None else {}
        for row in call_totals(con, after):
            calls.setdefault(row["run_id"], CallTotals()).add(row)
        self.calls, self.calls_position = calls, position

    @staticmethod
    def _resume_point(
        con: duckdb.DuckDBPyConnection,
        old: tuple[int, dt.datetime | None],
        new: tuple[int, dt.datetime | None],
    ) -> dt.datetime | None:
        """The ts to read after, or None to rebuild: only if every new event is newer than the old newest."""
        count, newest = old
        if count < 0 or newest is None or new[0] < count:
            return None
        return newest if events_after(con, newest) == new[0] - count else None

    def _apply(self, event: dict[str, Any]) -> None:
        kind, payload, sid = event["type"], event["payload"], event["sample_id"]
        if sid is None:
            self._apply_run(event)
            return
        row = self.samples.get(sid)
        if kind == "sample.restarted" or (row is None and kind == "sample.planned"):
            row = self.samples[sid] = SampleRow(sid, event["run_id"])
        if row is None:
            return  # e.g. a review of a sample this log never planned (verify reports it)
        if kind == "sample.planned":
            row.tier, row.technique, row.category = (
                payload.get("tier"),
                payload.get("technique"),
                payload.get("category"),
            )
            row.persona = (payload.get("persona") or {}).get("name")
            row.parent_sample_id = payload.get("parent_sample_id")
            row.seeded, row.started_at = bool(payload.get("seeded_from")), event["ts"]
        elif kind in ("turn.added", "turn.revised"):
            row.turns[payload.get("turn_index", len(row.turns))] = (
                payload.get("role", ""),
                payload.get("content", ""),
            )
            row._text = None
        elif kind == "critique.done":
            row.scores = payload.get("scores")
        elif kind == "verify.checked":
            row.verdict = "passed" if payload.get("passed") else "failed"
        elif kind == "refine.done":
            row.revisions = payload.get("revision", row.revisions + 1)
        elif kind in TERMINAL:
            row.status, row.ended_at = TERMINAL[kind], event["ts"]
            row.reasons = [str(r) for r in payload.get("reasons") or []]
            row.revisions = payload.get("revisions", row.revisions)
            row.scores = payload.get("scores") or row.scores
        elif kind == "dedup.dropped":
            row.duplicate = True
        else:
            self._apply_review(row, kind, payload)

    @staticmethod
    def _apply_review(row: SampleRow, kind: str, payload: dict[str, Any]) -> None:
        if kind in ("review.approved", "review.rejected"):
            row.decision = "approved" if kind == "review.approved" else "rejected"
            row.decision_reason, row.reviewer = payload.get("reason"), payload.get("reviewer")
        elif kind == "review.tagged" and payload.get("tag") and payload["tag"] not in row.tags:
            row.tags.append(payload["tag"])
        elif kind == "review.edited" and payload.get("turn_index") in row.turns:
            index = payload["turn_index"]
            row.turns[index] = (row.turns[index][0], payload.get("after", ""))
            row._text = None
            if index not in row.edited_turns:
                row.edited_turns.append(index)

    def _apply_run(self, event: dict[str, Any]) -> None:
        run = self.runs.setdefault(event["run_id"], RunRow(event["run_id"]))
        if event["type"] == "run.started" and run.started_at is None:
            run.started_at, run.target = event["ts"], event["payload"].get("n")
        elif event["type"] == "run.finished":
            run.finished_at, run.status = event["ts"], event["payload"].get("status", "finished")

    def latest_run(self) -> str | None:
        started = [r for r in self.runs.values() if r.started_at is not None]
        return max(started, key=lambda r: r.started_at).run_id if started else None

    def children(self, sample_id: str) -> list[str]:
        """Samples forked from this one (their plan names it as parent)."""
        return sorted(s.sample_id for s in self.samples.values() if s.parent_sample_id == sample_id)
