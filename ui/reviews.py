"""A person's decision about a sample: checked, queued durably, then landed in the log if it can be.

Why queue first, always: the queue file is fsync'ed before anything else happens, so a decision
survives a crash, a locked database or a landing that fails; landing (store/review_lander.py) then
turns it into a ``review.*`` event, idempotently. The answer says which of the two it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from teacherforge.store.review_queue import ACTIONS, enqueue, new_decision
from teacherforge.ui.data import Database

MAX_REASON, MAX_TAG, MAX_CONTENT, MAX_REVIEWER = 2_000, 64, 20_000, 64


class ReviewError(ValueError):
    """The decision cannot be taken as given; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ReviewResult:
    review_id: str
    event_type: str
    sample_id: str
    landed: bool
    pending: int  # decisions still queued (for this database)
    blocked_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"review_id": self.review_id, "event_type": self.event_type, "sample_id": self.sample_id,
                "state": "landed" if self.landed else "pending", "pending": self.pending,
                "blocked_by": self.blocked_by}  # fmt: skip


def _text(value: Any, name: str, limit: int, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ReviewError(f"'{name}' is required for this action")
        return None
    if not isinstance(value, str):
        raise ReviewError(f"'{name}' must be a string")
    if len(value) > limit:
        raise ReviewError(f"'{name}' is longer than {limit} characters")
    return value


def decide(database: Database, sample_id: str, body: dict[str, Any], default_reviewer: str) -> ReviewResult:
    """Check ``body`` ({action, reason?, turn?, content?, tag?, reviewer?}), queue it, then land it."""
    action = body.get("action")
    if action not in ACTIONS:
        raise ReviewError(f"'action' must be one of {', '.join(ACTIONS)}")
    reviewer = _text(body.get("reviewer"), "reviewer", MAX_REVIEWER, required=False) or default_reviewer
    with database.reading():
        row = database.index.samples.get(sample_id)
        if row is None:
            raise ReviewError(f"no sample '{sample_id}'", 404)
        if row.status == "running":
            raise ReviewError(f"{sample_id} is still being generated; review it once it is finished", 409)
        if row.status == "failed" and action in ("approve", "edit"):
            raise ReviewError(f"{sample_id} failed before its conversation was complete; it can only be "
                              "rejected or tagged", 409)  # fmt: skip
        fields: dict[str, Any] = {}
        if action == "reject":
            fields["reason"] = _text(body.get("reason"), "reason", MAX_REASON).strip()
        elif action == "approve":
            fields["reason"] = _text(body.get("reason"), "reason", MAX_REASON, required=False)
        elif action == "tag":
            fields["tag"] = _text(body.get("tag"), "tag", MAX_TAG).strip()
        else:
            fields.update(_edit(database, row.turns, sample_id, body))
        decision = new_decision(action, row.run_id, sample_id, reviewer, **fields)
    enqueue(database.db, decision)
    landing = database.land()
    review_id = decision["payload"]["review_id"]
    landed = review_id not in {d["payload"]["review_id"] for d in database.pending()}
    return ReviewResult(review_id, decision["type"], sample_id, landed, landing.pending, landing.blocked_by)


def _edit(
    database: Database, turns: dict[int, tuple[str, str]], sample_id: str, body: dict[str, Any]
) -> dict:
    turn = body.get("turn")
    try:
        index = int(turn)
    except (TypeError, ValueError):
        raise ReviewError("'turn' (the turn index, from 0) is required to edit") from None
    if index not in turns:
        raise ReviewError(f"{sample_id} has no turn {index} (it has {len(turns)})")
    content = _text(body.get("content"), "content", MAX_CONTENT)
    before = turns[index][1]
    for queued in database.pending():  # an edit still queued is what the person saw last
        p = queued["payload"]
        if (
            queued["sample_id"] == sample_id
            and queued["type"] == "review.edited"
            and p.get("turn_index") == index
        ):
            before = p.get("after", before)
    if content == before:
        raise ReviewError(f"turn {index} already reads exactly like that", 409)
    return {"turn_index": index, "role": turns[index][0], "before": before, "after": content}
