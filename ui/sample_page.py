"""Everything the sample page shows of one sample, built from its events (the same fold as export).

Why from the events and not the index: the page needs every event (the timeline, each revision,
the retrieval behind each turn), and one sample's events are a small read even in a big log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from teacherforge.store.projection import SampleView, fold, load_events
from teacherforge.store.ui_queries import chunk_details
from teacherforge.ui.diff import DiffRow, Segments, mark_quotes, side_by_side


@dataclass
class ChunkCard:
    chunk_id: str
    score: float | None
    cited: bool
    document: str | None
    section: str | None
    page: int | None
    segments: Segments  # the chunk text with the turn's evidence quotes marked


@dataclass
class TurnCard:
    index: int
    role: str
    content: str
    thought: str | None = None
    evidence: list[dict[str, str]] = field(default_factory=list)
    chunks: list[ChunkCard] = field(default_factory=list)
    query: str | None = None
    original: str | None = None  # the generated text, when a person edited the turn


@dataclass
class RevisionCard:
    revision: int | None
    failed_dimensions: list[str]
    problems: list[dict[str, Any]]
    gate_failures: list[dict[str, Any]]
    changes: list[tuple[int, list[DiffRow]]]


@dataclass
class SamplePage:
    sample_id: str
    view: SampleView
    turns: list[TurnCard]
    seed_chunks: list[ChunkCard]
    timeline: list[dict[str, Any]]
    revisions: list[RevisionCard]
    edits: list[tuple[dict[str, Any], list[DiffRow]]]
    events: list[dict[str, Any]]


def _retrievals(events: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """The last retrieval per assistant turn index ('seed' for the seed context), after any restart."""
    found: dict[Any, dict[str, Any]] = {}
    for e in events:
        if e["type"] == "sample.restarted":
            found = {}
        elif e["type"] == "retrieval.done":
            p = e["payload"]
            found["seed" if p.get("purpose") == "seed" else p.get("turn_index")] = p
    return found


def _cards(
    ids: list[str], scores: list[float], chunks: dict, quotes: dict, cited: set[str]
) -> list[ChunkCard]:
    cards = []
    for i, chunk_id in enumerate(ids):
        c = chunks.get(chunk_id, {})
        text = c.get("text") or "(this chunk is no longer in the index)"
        cards.append(ChunkCard(chunk_id, scores[i] if i < len(scores) else None, chunk_id in cited,
                               c.get("document"), c.get("section"), c.get("page"),
                               mark_quotes(text, quotes.get(chunk_id, []))))  # fmt: skip
    return cards


def timeline_note(event: dict[str, Any]) -> str:
    """One line about an event for the timeline (the reasons of a rejection each once)."""
    p, kind = event["payload"], event["type"]
    if kind == "llm.call":
        return p.get("error") or p.get("template") or ""
    if kind in ("rules.checked", "verify.checked"):
        names = [f.get("rule") or f.get("check") or "?" for f in p.get("failures", [])]
        return "passed" if p.get("passed") else ", ".join(dict.fromkeys(names)) or "failed"
    if kind == "critique.done":
        scores = " ".join(f"{k}={v}" for k, v in (p.get("scores") or {}).items())
        return ("passed " if p.get("passed") else "failed ") + scores
    if kind == "refine.done":
        return f"revision {p.get('revision')}: rewrote turns {p.get('changed_turns', [])}"
    if kind in ("sample.rejected", "sample.failed"):
        return "; ".join(dict.fromkeys(str(r) for r in p.get("reasons", []))) or str(p.get("error") or "")
    if kind == "turn.added" or kind == "turn.revised":
        return f"turn {p.get('turn_index')} ({p.get('role')})"
    if kind == "retrieval.done":
        return f"{p.get('purpose')}: {len(p.get('chunk_ids', []))} chunks"
    if kind.startswith("review."):
        detail = (
            p.get("reason") or p.get("tag") or (f"turn {p.get('turn_index')}" if "turn_index" in p else "")
        )
        return f"{p.get('reviewer')}: {detail}".rstrip(": ")
    return ""


def _timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t0 = events[0]["ts"] if events else None
    rows = []
    for e in events:
        p = e["payload"]
        call = e["type"] == "llm.call"
        rows.append({"event_id": e["event_id"], "seq": e["seq"], "offset_s": (e["ts"] - t0).total_seconds(),
                     "agent": e.get("agent") or "", "type": e["type"], "call": call,
                     "latency_ms": p.get("latency_ms") if call else None,
                     "tokens": f"{p.get('tokens_in') or 0}/{p.get('tokens_out') or 0}" if call else "",
                     "error": bool(call and p.get("error")), "note": timeline_note(e)})  # fmt: skip
    return rows


def _revisions(events: list[dict[str, Any]]) -> list[RevisionCard]:
    """Each refine step: what the critic and the gate found, then each rewritten turn before/after."""
    cards: list[RevisionCard] = []
    turns: dict[int, str] = {}
    critiques: dict[int, dict] = {}
    gate: dict[int, list[dict]] = {}
    changes: list[tuple[int, list[DiffRow]]] = []
    for e in events:
        kind, p = e["type"], e["payload"]
        if kind == "sample.restarted":
            cards, turns, critiques, gate, changes = [], {}, {}, {}, []
        elif kind == "turn.added":
            turns[p.get("turn_index", len(turns))] = p.get("content", "")
        elif kind == "turn.revised":
            index = p.get("turn_index")
            changes.append((index, side_by_side(turns.get(index, ""), p.get("content", ""))))
            turns[index] = p.get("content", "")
        elif kind == "critique.done":
            critiques[p.get("revision", 0)] = p
        elif kind in ("rules.checked", "verify.checked"):
            gate.setdefault(p.get("revision", 0), []).extend(p.get("failures", []))
        elif kind == "refine.done":
            before = p.get("revision", 1) - 1
            dims = (critiques.get(before) or {}).get("failed_dimensions", [])
            blocking = [f for f in gate.get(before, []) if not f.get("advisory")]
            cards.append(RevisionCard(p.get("revision"), dims, p.get("problems", []), blocking, changes))
            changes = []
    if changes:
        cards.append(RevisionCard(None, [], [], [], changes))
    return cards


def build(con: duckdb.DuckDBPyConnection, sample_id: str) -> SamplePage | None:
    events = load_events(con, sample_id=sample_id)
    if not events:
        return None
    view = fold(sample_id, events)
    retrievals = _retrievals(events)
    wanted = [c for r in retrievals.values() for c in r.get("chunk_ids", [])]
    chunks = chunk_details(con, wanted)
    originals = {}
    edits = []
    for e in events:
        if e["type"] == "review.edited":
            p = e["payload"]
            originals.setdefault(p.get("turn_index"), p.get("before", ""))
            edits.append((e, side_by_side(p.get("before", ""), p.get("after", ""))))
    cards = []
    for i, turn in enumerate(view.turns):
        card = TurnCard(i, turn.get("role", ""), turn.get("content", ""), turn.get("thought"),
                        turn.get("evidence") or [], original=originals.get(i))  # fmt: skip
        retrieval = retrievals.get(i)
        if turn.get("role") == "assistant" and retrieval:
            quotes: dict[str, list[str]] = {}
            for ev in card.evidence:
                quotes.setdefault(ev.get("chunk_id", ""), []).append(ev.get("quote", ""))
            card.query = retrieval.get("query")
            card.chunks = _cards(retrieval.get("chunk_ids", []), retrieval.get("scores", []), chunks, quotes,
                                 set(turn.get("cited_chunk_ids") or []))  # fmt: skip
        cards.append(card)
    seed = retrievals.get("seed") or {}
    seed_cards = _cards(seed.get("chunk_ids", []), seed.get("scores", []), chunks, {}, set())
    return SamplePage(
        sample_id, view, cards, seed_cards, _timeline(events), _revisions(events), edits, events
    )
