"""Evaluation items: each held-out user turn, with the conversation before it and the accepted reply.

Items are taken breadth-first (every conversation's first user turn, then every second one, ...)
so a small ``max_items`` still spreads over as many held-out documents as possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teacherforge.student.data import Record, training_messages, visible_reply


@dataclass
class EvalItem:
    item_id: str
    record: Record
    turn_index: int  # index among the non-system messages (the ``turns`` numbering of the run)
    messages: list[dict[str, str]]  # system + turns up to and including this user turn
    reference: str  # the teacher's accepted reply to it
    answers: dict[str, str] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def should_refuse(self) -> bool:
        return self.record.technique == "hard_negative"

    @property
    def history(self) -> list[dict[str, str]]:
        """The conversation without the system prompt (what teacher and judge templates show)."""
        return [m for m in self.messages if m["role"] != "system"]

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def build_items(records: list[Record], eval_id: str, max_items: int) -> list[EvalItem]:
    per_record = [_record_items(r) for r in records]
    ordered: list[tuple[Record, int, list[dict], str]] = []
    depth = 0
    while len(ordered) < max_items and any(depth < len(p) for p in per_record):
        ordered.extend(p[depth] for p in per_record if depth < len(p))
        depth += 1
    return [
        EvalItem(f"{eval_id}-{n:04d}", record, turn, messages, reference)
        for n, (record, turn, messages, reference) in enumerate(ordered[:max_items])
    ]


def _record_items(record: Record) -> list[tuple[Record, int, list[dict], str]]:
    messages = training_messages(record, "drop")
    out = []
    turn = -1
    for i, message in enumerate(messages):
        if message["role"] == "system":
            continue
        turn += 1
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        if message["role"] == "user" and nxt is not None and nxt["role"] == "assistant":
            out.append((record, turn, messages[: i + 1], visible_reply(nxt["content"])))
    return out


def user_turns(record: Record) -> int:
    return sum(1 for m in record.messages if m.get("role") == "user")
